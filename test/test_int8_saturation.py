"""int8 files that compute the same labels on every CPU.

Without VNNI, ONNX Runtime's x86 int8 kernels add each pair of uint8 x int8 products into a
saturating int16 (textseg.engine.int8_saturation). This machine may have VNNI and never show
it, so the checks here read the files' own weights: they fail on every machine alike.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from textseg.cpu import parse_cpuinfo
from textseg.engine import default_model_path
from textseg.engine.int8_saturation import INT16_MAX, UINT8_MAX, saturation_report

MODELS = default_model_path().parent
SHIPPED_INT8 = ("textseg_default_int8.onnx", "textseg_default_int8_cpu.onnx")


def _pairs_saturate(activations: np.ndarray, weights: np.ndarray) -> bool:
    """An exact emulation of `vpmaddubsw`: uint8 a[k] * int8 w[k] + a[k+1] * w[k+1] summed in
    int32, then compared with what an int16 can hold."""
    a = activations.astype(np.int32).reshape(-1, 2)
    w = weights.astype(np.int32).reshape(-1, 2)
    pair_sums = (a * w).sum(axis=1)
    return bool((np.abs(pair_sums) > INT16_MAX).any() or (pair_sums < -INT16_MAX - 1).any())


@pytest.mark.parametrize(("weights", "overflows"), [
    ((127, 2), True),    # 255 * 129 = 32895
    ((127, 1), False),   # 255 * 128 = 32640
    ((64, 64), False),   # 7-bit weights, the worst pair
    ((-128, -1), True),
    ((-64, -64), False),
])
def test_the_bound_is_the_emulated_worst_case(weights, overflows):
    w = np.array(weights, np.int8)
    # The worst activations for a pair: 255 where the product adds to the magnitude.
    worst = np.array([255, 255], np.uint8)
    assert _pairs_saturate(worst, w) == overflows
    assert (UINT8_MAX * int(np.abs(w.astype(np.int32)).sum()) > INT16_MAX) == overflows


@pytest.mark.parametrize("name", SHIPPED_INT8)
def test_shipped_int8_files_cannot_saturate(name):
    path = MODELS / name
    report = saturation_report(path)
    assert report.quantized_nodes >= 50, report.summary()
    assert not report.could_saturate, report.summary()
    assert report.max_abs_weight <= 64


def _quantized(tiny_model_path, tmp_path, camvid_dir, target, bits):
    pytest.importorskip("onnx", reason="the onnx package (training requirements) is needed")
    from textseg.tools.quantize import quantize_model

    output = tmp_path / f"tiny_{target}_{bits}.onnx"
    # self_check off: these files are wanted whatever they compute here (8-bit weights fail
    # it on a CPU without VNNI); the tests below open them as a node would.
    quantize_model(tiny_model_path, output, camvid_dir / "train", frames=4, target=target,
                   weight_bits=bits, self_check="off")
    return output


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_8_bit_weights_fail_and_7_bit_pass(tiny_model_path, tmp_path, camvid_dir, target):
    full = saturation_report(_quantized(tiny_model_path, tmp_path, camvid_dir, target, 8))
    reduced = saturation_report(_quantized(tiny_model_path, tmp_path, camvid_dir, target, 7))
    assert full.could_saturate and full.max_abs_weight == 127
    assert "can overflow int16 pair sums" in full.summary()
    assert reduced.quantized_nodes == full.quantized_nodes > 0
    assert not reduced.could_saturate and reduced.max_abs_weight <= 64


def test_real_activations_overflow_with_8_bit_weights_only(tiny_model_path, tmp_path,
                                                           camvid_dir):
    """A real frame's uint8 activations into a quantized 1x1 convolution, paired over input
    channels as the kernels pack them: 8-bit weights overflow an int16 pair sum, 7-bit never."""
    onnx = pytest.importorskip("onnx", reason="the onnx package is needed")
    import cv2
    import onnxruntime as ort

    from textseg.engine.onnx_file import read_onnx_model

    frame = cv2.cvtColor(cv2.imread(str(sorted((camvid_dir / "val").glob("*.png"))[0])),
                         cv2.COLOR_BGR2RGB)
    found = {}
    for bits in (8, 7):
        path = _quantized(tiny_model_path, tmp_path, camvid_dir, "cpu", bits)
        graph = read_onnx_model(path)
        producers = {out: node for node in graph.nodes for out in node.outputs}
        conv = next(n for n in graph.nodes if n.op_type == "Conv"
                    and graph.dims.get(producers[n.inputs[1]].inputs[0], (0, 0, 0))[2:] == (1, 1)
                    and producers[n.inputs[0]].op_type == "DequantizeLinear")
        activation_q = producers[conv.inputs[0]].inputs[0]  # the uint8 tensor
        weight_name = producers[conv.inputs[1]].inputs[0]
        proto = onnx.load(str(path))
        proto.graph.output.append(onnx.helper.make_tensor_value_info(
            activation_q, onnx.TensorProto.UINT8, None))
        session = ort.InferenceSession(proto.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        activations = session.run([activation_q], {"image": frame[None]})[0][0]  # [C, H, W]
        weights = np.frombuffer(graph.initializers[weight_name][1], np.int8).reshape(
            graph.dims[weight_name])[:, :, 0, 0]  # [C_out, C_in]
        channels = activations.shape[0] - activations.shape[0] % 2
        pixels = activations[:channels].reshape(channels, -1).T.astype(np.int32)  # [P, C_in]
        pairs = (pixels[:, None, :] * weights[None, :, :channels].astype(np.int32))
        pair_sums = pairs.reshape(pairs.shape[0], pairs.shape[1], -1, 2).sum(axis=3)
        found[bits] = int((np.abs(pair_sums) > INT16_MAX).sum())
    assert found[8] > 0, "8-bit weights: no real pair sum overflowed (the emulation is off)"
    assert found[7] == 0


def test_cpu_features_from_cpuinfo():
    avx2 = parse_cpuinfo("model name\t: AMD EPYC 7B12\nflags\t\t: fpu avx2 fma\n", "x86_64")
    assert avx2.int8_saturates and not avx2.has_vnni and avx2.model == "AMD EPYC 7B12"
    assert "no VNNI" in avx2.describe()
    vnni = parse_cpuinfo("model name : Xeon\nflags : avx2 avx512f avx512_vnni\n", "x86_64")
    assert vnni.has_vnni and not vnni.int8_saturates
    assert parse_cpuinfo("flags : avx2 avx_vnni\n", "x86_64").has_vnni  # Alder Lake and later
    arm = parse_cpuinfo("Features : fp asimd asimddp bf16\n", "aarch64")
    assert not arm.int8_saturates and arm.has_native_bf16
    record = avx2.record()
    assert record["vnni"] is False and record["flags"] == ["avx2"]


def test_cpuinfo_can_come_from_a_file(tmp_path, monkeypatch):
    """$TEXTSEG_CPUINFO: what an emulated CPU's results record (scripts/emulate_cpu.sh)."""
    from textseg.cpu import cpu_features

    info = tmp_path / "cpuinfo"
    info.write_text("model name\t: EPYC-Rome (emulated by QEMU)\nflags\t\t: avx2\n")
    monkeypatch.setenv("TEXTSEG_CPUINFO", str(info))
    cpu_features.cache_clear()
    try:
        assert cpu_features().model == "EPYC-Rome (emulated by QEMU)"
        assert not cpu_features().has_vnni
    finally:
        monkeypatch.delenv("TEXTSEG_CPUINFO")
        cpu_features.cache_clear()


def test_onnxruntime_refuses_a_saturating_file_on_a_cpu_without_vnni(
        tiny_model_path, tmp_path, camvid_dir, monkeypatch):
    """This machine's CPU description replaced by an AVX2-only one (the real cpuinfo of such
    a machine): the 8-bit file is refused naming the CPU feature and the file to use, the
    7-bit file opens. Described as a VNNI CPU, the weights are not held against the file;
    whether its stored self-check then passes depends on the real CPU underneath: on one
    without VNNI its sums really saturate (98.73 % on an emulated EPYC-Rome)."""
    import textseg.cpu
    from textseg.engine.onnxruntime_backend import OnnxRuntimeBackend
    from textseg.engine.self_check import SelfCheckFailed

    host = textseg.cpu.cpu_features()  # the CPU that computes, before its description is swapped
    full = _quantized(tiny_model_path, tmp_path, camvid_dir, "cpu", 8)
    reduced = _quantized(tiny_model_path, tmp_path, camvid_dir, "cpu", 7)
    avx2 = parse_cpuinfo("model name\t: AMD EPYC 7B12\nflags\t\t: fpu sse2 avx2 fma\n", "x86_64")
    monkeypatch.setattr(textseg.cpu, "cpu_features", lambda: avx2)
    with pytest.raises(SelfCheckFailed) as refused:
        OnnxRuntimeBackend(full)
    message = str(refused.value)
    assert "AMD EPYC 7B12" in message and "VNNI" in message and str(full) in message
    assert "fp32 model" in message and "7-bit weights" in message
    lines: list[str] = []
    OnnxRuntimeBackend(full, self_check="warn", report=lines.append).close()
    assert lines and lines[0].startswith("WARNING") and "saturating int16" in lines[0]
    OnnxRuntimeBackend(reduced).close()
    vnni = parse_cpuinfo("model name\t: Xeon\nflags\t\t: avx2 avx512f avx512_vnni\n", "x86_64")
    monkeypatch.setattr(textseg.cpu, "cpu_features", lambda: vnni)
    lines.clear()
    described_vnni = OnnxRuntimeBackend(full, self_check="warn", report=lines.append)
    described_vnni.close()
    assert not any("saturating int16" in line for line in lines), lines
    if host.int8_saturates:  # the stored self-check is the second line: failed, or passed
        assert described_vnni.self_check.passed or "self-check FAILED" in lines[0], lines
    else:  # exact int32 sums (or Arm's): the 8-bit file computes its reference's labels
        assert described_vnni.self_check.passed, described_vnni.self_check_note
        OnnxRuntimeBackend(full).close()


EMULATED = """
import sys
import shutil
from pathlib import Path

import numpy as np
from textseg.engine.onnxruntime_backend import OnnxRuntimeBackend
from textseg.engine.self_check import SelfCheckFailed
frame = np.load(sys.argv[1])
for model, out in zip(sys.argv[2::2], sys.argv[3::2]):
    np.save(out, OnnxRuntimeBackend(model, self_check="off").infer(frame).labels)
try:
    OnnxRuntimeBackend(sys.argv[2])
    print("REFUSED: no")
except SelfCheckFailed as exc:
    print("REFUSED:", exc)
"""


@pytest.mark.skipif(shutil.which("qemu-x86_64") is None,
                    reason="qemu-user is not installed (apt-get install qemu-user): no CPU "
                    "without VNNI to emulate")
def test_on_an_emulated_cpu_without_vnni(tiny_model_path, tmp_path, camvid_dir):
    """The tiny model's int8 files on an emulated AVX2 CPU (scripts/emulate_cpu.sh): 7-bit
    weights give the host's labels, 8-bit weights are refused naming the missing feature, and
    when forced they agree less with the fp32 labels than the 7-bit file does. Against the
    host's own 8-bit labels: other labels on a host with VNNI, the same (equally saturated)
    on a host without it."""
    import subprocess

    import cv2

    from textseg.cpu import cpu_features
    from textseg.engine.onnxruntime_backend import OnnxRuntimeBackend

    frame = cv2.cvtColor(cv2.imread(str(sorted((camvid_dir / "val").glob("*.png"))[3])),
                         cv2.COLOR_BGR2RGB)
    np.save(tmp_path / "frame.npy", frame)
    models = {bits: _quantized(tiny_model_path, tmp_path, camvid_dir, "tensorrt", bits)
              for bits in (8, 7)}
    script = tmp_path / "emulated.py"
    script.write_text(EMULATED)
    args = [str(tmp_path / "frame.npy")]
    for bits, model in models.items():
        args += [str(model), str(tmp_path / f"labels{bits}.npy")]
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([str(root / "scripts" / "emulate_cpu.sh"), str(script), *args],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "REFUSED: " in run.stdout and "emulated by QEMU" in run.stdout
    assert "no AVX512-VNNI / AVX-VNNI" in run.stdout
    fp32 = OnnxRuntimeBackend(tiny_model_path, self_check="off").infer(frame).labels
    agreement, with_fp32 = {}, {}
    for bits, model in models.items():
        host = OnnxRuntimeBackend(model, self_check="off").infer(frame).labels
        emulated = np.load(tmp_path / f"labels{bits}.npy")
        agreement[bits] = float((host == emulated).mean())
        with_fp32[bits] = float((fp32 == emulated).mean())
    print("agreement host vs emulated", agreement, "emulated vs fp32", with_fp32)
    assert agreement[7] >= 0.999, agreement
    assert with_fp32[8] < with_fp32[7], with_fp32
    if cpu_features().int8_saturates:  # this host sums in int16 pairs too
        assert agreement[8] >= 0.999, agreement
    else:
        assert agreement[8] < agreement[7], agreement


@pytest.mark.parametrize("raw", [True, False])  # raw_data, or int32_data varints
def test_weights_are_read_in_either_storage(raw):
    pytest.importorskip("onnx", reason="the onnx package is needed to build a graph")
    from onnx import TensorProto, helper

    weights = np.array([[127, -3], [64, -64]], np.int8).reshape(2, 2, 1, 1)
    inits = [helper.make_tensor("w", TensorProto.INT8, weights.shape,
                                weights.tobytes() if raw else weights.flatten().tolist(), raw=raw),
             helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]),
             helper.make_tensor("z", TensorProto.INT8, [], [0])]
    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xf"]),
             helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wf"]),
             helper.make_node("Conv", ["xf", "wf"], ["y"], name="conv")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.INT8, [1, 2, 1, 1])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], initializer=inits)
    report = saturation_report(helper.make_model(graph).SerializeToString())
    assert report.quantized_nodes == 1 and report.max_abs_weight == 127
    assert [(r.node, r.channels, r.worst_pair_sum) for r in report.risks] == [
        ("conv", 1, 255 * 130)]


def test_results_files_carry_the_cpu(tmp_path):
    import json

    from textseg.cpu import cpu_features, write_results

    path = write_results(tmp_path / "figures.json", {"p50_ms": 1.5}, indent=2)
    written = json.loads(path.read_text())
    assert written["p50_ms"] == 1.5
    assert written["cpu"]["description"] == cpu_features().describe()
    assert set(written["cpu"]) >= {"model", "vnni", "native_bf16", "int8_accumulation"}
