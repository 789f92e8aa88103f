"""`textseg robustness`: corrupted CamVid frames through a real segmentation_node over DDS, with
the shipped default model: the report says what a degraded camera costs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from textseg.cli import main  # noqa: E402
from textseg.engine import default_model_path  # noqa: E402
from textseg.replay.robustness import render_markdown  # noqa: E402

pytestmark = pytest.mark.ros


def test_a_dark_camera_costs_the_default_model_most_of_its_miou(camvid_dir, tmp_path, capsys):
    if not default_model_path().is_file():
        pytest.skip("the default model is not in models/")
    output = tmp_path / "robust"
    assert main(["robustness", "--images", str(camvid_dir / "val"), "--limit", "3",
                 "--families", "low_light", "jpeg", "--severities", "1", "5",
                 "--threads", "1", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "[1/5] clean" in printed and "[5/5] jpeg 5" in printed
    data = json.loads((output / "robustness.json").read_text())
    scores = {(c["family"], c["severity"]): c for c in data["conditions"]}
    assert list(scores) == [("clean", 0), ("low_light", 1), ("low_light", 5), ("jpeg", 1),
                            ("jpeg", 5)]
    assert all(c["frames_scored"] == 3 for c in scores.values())
    clean = scores[("clean", 0)]["miou"]
    assert clean > 40  # the trained model on real frames
    assert scores[("low_light", 5)]["miou"] < clean - 20  # a nearly black frame
    assert scores[("low_light", 5)]["miou"] < scores[("low_light", 1)]["miou"]
    assert scores[("jpeg", 5)]["miou"] < scores[("jpeg", 1)]["miou"]
    assert (output / "robustness.png").read_bytes()[:4] == b"\x89PNG"
    assert (output / "report.md").read_text() == render_markdown(data)
    assert not (output / ".bags").exists()  # each condition's bag removed once scored


def test_an_unknown_family_is_refused_before_anything_runs(camvid_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["robustness", "--families", "snow", "--output", str(tmp_path / "r")])
    assert "invalid choice: 'snow'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("case", ["no reference", "fewer frames than a window"])
def test_health_validation_that_could_judge_nothing_is_refused_before_any_replay(
        case, camvid_dir, tiny_model_path, tmp_path, capsys):
    if case == "no reference":
        model, limit, message = tiny_model_path, "40", "needs a model with a health reference"
    else:
        if not default_model_path().is_file():
            pytest.skip("the default model is not in models/")
        model, limit, message = default_model_path(), "10", "needs at least 30 frames"
    output = tmp_path / "robust"
    assert main(["robustness", "--model", str(model), "--images", str(camvid_dir / "val"),
                 "--limit", limit, "--families", "fog", "--severities", "5", "--health",
                 "--output", str(output)]) != 0
    assert message in capsys.readouterr().err
    assert not (output / "robustness.json").exists()


def test_frames_not_found_say_where_they_were_looked_for(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["robustness", "--families", "fog", "--severities", "1",
                 "--output", str(tmp_path / "r")]) != 0
    err = capsys.readouterr().err
    assert f"(from {tmp_path})" in err and "pass --images DIR" in err


def test_the_health_signal_is_validated_against_each_windows_miou(camvid_dir, tmp_path):
    """--health: the node's labels/health per frame, windows of its default 30 frames scored
    against their own mIoU; clean windows stay OK, dark ones are flagged."""
    import shutil

    if not default_model_path().is_file():
        pytest.skip("the default model is not in models/")
    model = tmp_path / "default.onnx"
    shutil.copy(default_model_path(), model)
    assert main(["health-reference", str(model), str(camvid_dir / "train"), "--count", "24"]) == 0
    output = tmp_path / "robust"
    assert main(["robustness", "--model", str(model), "--images", str(camvid_dir / "val"),
                 "--limit", "32", "--families", "low_light", "--severities", "5", "--health",
                 "--threads", "1", "--output", str(output), "--quiet"]) == 0
    data = json.loads((output / "robustness.json").read_text())
    clean, dark = data["conditions"]
    assert [w[0] for w in clean["windows"]] == [29, 30, 31]  # frames that close a window
    assert all(w[2] == 0 for w in clean["windows"]), clean["windows"]
    assert all(w[2] >= 1 for w in dark["windows"]), dark["windows"]
    validation = data["health_validation"]
    assert validation["clean_false_alarm_share"] == 0.0
    assert validation["fell_windows"] == 3 and validation["warned_when_fell"] == 1.0
    assert "## Health signal" in (output / "report.md").read_text()


def test_a_terminated_run_stops_the_node_it_started(camvid_dir, tiny_model_path, ros_env,
                                                    tmp_path):
    """TERM to `textseg robustness` (a supervisor, `timeout`) unwinds like Ctrl-C: the node
    process it started is stopped, not left running on DDS."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run = subprocess.Popen(
        [sys.executable, "-m", "textseg.cli", "robustness", "--model", str(tiny_model_path),
         "--images", str(camvid_dir / "val"), "--limit", "40", "--families", "fog",
         "--severities", "1", "--threads", "1", "--output", str(tmp_path / "r")],
        env={**os.environ, **ros_env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    children = []
    try:
        deadline = time.monotonic() + 60
        while not children and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.2)
            children = [int(p) for p in Path(f"/proc/{run.pid}/task/{run.pid}/children")
                        .read_text().split()]
        assert children, "the run never started a node"
        time.sleep(1.0)  # the node is up and serving
        run.send_signal(signal.SIGTERM)
        assert run.wait(30) == 128 + signal.SIGTERM
        time.sleep(0.5)
        assert not [pid for pid in children if Path(f"/proc/{pid}").exists()
                    and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        for pid in children:
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
