"""The `textseg` command: bake (where TensorRT is missing, and the cache listing), bench on the
backend alone, info."""

from __future__ import annotations

import hashlib

import pytest

from textseg.cli import main
from textseg.engine import tensorrt_problem
from textseg.engine.engine_cache import (
    EngineKey,
    EngineRecord,
    PlatformFacts,
    engine_filename,
    store_engine,
)


def test_bake_without_tensorrt_says_so(tiny_model_path, capsys):
    if tensorrt_problem() is None:
        pytest.skip("TensorRT is usable on this machine")
    assert main(["bake", str(tiny_model_path), "--size", "640x480"]) == 2
    err = capsys.readouterr().err
    assert "textseg bake: error: TensorRT is not installed on this machine" in err


def test_bake_refuses_a_non_contract_model_before_touching_tensorrt(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_text("no")
    code = main(["bake", str(bad)])
    assert code == 2
    assert "error" in capsys.readouterr().err


def test_bake_list_shows_the_cache(tmp_path, capsys):
    key = EngineKey.for_platform(hashlib.sha256(b"m").hexdigest(),
                                 PlatformFacts("10.3.0", "Orin", "8.7"), "fp16", (720, 1280))
    path = tmp_path / engine_filename("m", key)
    store_engine(path, b"plan", EngineRecord(key, "", 0, {}, False, build_seconds=321.0))
    (tmp_path / "orphan.engine").write_bytes(b"x")
    assert main(["bake", "--list", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"engine cache {tmp_path}: 2 engines" in out
    assert "fp16 1280x720, TensorRT 10.3.0 on Orin (compute capability 8.7)" in out
    assert "[ok]" in out and "321 s" in out
    assert "orphan.engine: unusable" in out


def test_bench_backend_alone_prints_a_table(tiny_model_path, camvid_dir, capsys):
    code = main(["bench", str(tiny_model_path), "--backend", "onnxruntime", "--threads", "1",
                 "--sizes", "64x48,96x72", "--frames", "3", "--no-node",
                 "--images", str(camvid_dir / "val")])
    assert code == 0
    out = capsys.readouterr().out
    assert "raw FPS" in out and "node FPS" in out and "overhead p50" in out
    assert "64x48" in out and "96x72" in out
    assert "onnxruntime" in out
    rows = [line for line in out.splitlines()
            if ("64x48" in line or "96x72" in line) and not line.startswith("raw ")]
    assert rows and all(line.rstrip().endswith(" -") for line in rows)  # no node, no outputs


def test_bench_rejects_bad_sizes(tiny_model_path, capsys):
    assert main(["bench", str(tiny_model_path), "--sizes", "big", "--no-node"]) == 2
    assert "size must look like 1280x720" in capsys.readouterr().err


def test_info(tiny_model_path, capsys):
    assert main(["info", str(tiny_model_path)]) == 0
    out = capsys.readouterr().out
    assert "confidence output  yes" in out and "classes            11" in out


def test_info_prints_the_network_size_as_width_x_height(tiny_model_path, capsys):
    assert main(["info", str(tiny_model_path)]) == 0  # a 96x128 (h, w) network
    assert "network_input_size 128x96\n" in capsys.readouterr().out


def test_help_summary_lists_every_command(capsys):
    from textseg.cli import build_parser

    with pytest.raises(SystemExit):
        main(["--help"])
    summary = capsys.readouterr().out.split("positional arguments")[0]
    parser = build_parser()
    (commands,) = [a.choices for a in parser._subparsers._group_actions]
    missing = [name for name in commands if f"textseg {name} " not in summary]
    assert missing == []
