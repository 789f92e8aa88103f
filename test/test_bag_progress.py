"""The progress bar of the bag commands: rate, ETA, short logs when not on a terminal."""

from __future__ import annotations

import io

from textseg.replay.progress import Progress, format_duration


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_terminal_prints_a_line_per_tenth_and_the_final_figures():
    stream = io.StringIO()
    progress = Progress("replay", 50, stream=stream)
    progress.started -= 10.0  # as if 10 s had passed
    for done in range(1, 51):
        progress.update(done, f"answered {done}")
    progress.close()
    lines = stream.getvalue().splitlines()
    assert 10 <= len(lines) <= 12
    assert lines[-1].startswith("replay 50/50 [########################] 100%")
    assert "frames/s" in lines[-1] and "ETA 00:00" in lines[-1] and "answered 50" in lines[-1]
    assert "ETA 01:30" in lines[1]  # 5 of 50 in 10 s: 45 more at 0.5 frames/s


def test_terminal_redraws_in_place_and_ends_the_line():
    stream = _Terminal()
    progress = Progress("offline", 3, stream=stream, interval=0.0)
    for done in (1, 2, 3):
        progress.update(done)
    progress.close()
    text = stream.getvalue()
    assert text.count("\r\033[K") == 4 and text.endswith("\n") and text.count("\n") == 1


def test_unknown_total_and_disabled():
    stream = io.StringIO()
    progress = Progress("read", None, stream=stream)
    progress.update(7)
    progress.close()
    assert stream.getvalue().startswith("read 7 frames")
    quiet = io.StringIO()
    progress = Progress("read", 10, stream=quiet, enabled=False)
    progress.update(5)
    progress.close()
    assert quiet.getvalue() == ""


def test_format_duration():
    assert format_duration(5) == "00:05" and format_duration(3725) == "1:02:05"
    assert format_duration(None) == "--:--" and format_duration(float("nan")) == "--:--"
