"""textseg: the runtime's command line.

  textseg demo                 replay CamVid val through the node over DDS and score it
  textseg info MODEL.onnx      print what a model artifact carries
  textseg bake MODEL.onnx      build (or verify) the TensorRT engine for this machine
  textseg bench MODEL          backend and node throughput, latency and node overhead
  textseg overload MODEL       frames at 3x capacity: bounded latency, flat memory
  textseg quantize MODEL.onnx --calibration DIR   static int8 Q/DQ model (TensorRT or CPU)
  textseg profile MODEL.onnx   which operators ONNX Runtime's CPU time goes to
  textseg fp16 MODEL.onnx      float16 model for TensorRT's strongly typed builds
  textseg self-check MODEL     run (or --embed) the model's load-time label check
  textseg import THEIRS.onnx --classes a,b,c   any segmentation ONNX into a textseg model
  textseg bag-from-dataset DIR BAG   an image folder (+ labels) as a ROS 2 bag
  textseg replay BAG           play a bag through the node over DDS, score it, report
  textseg eval-offline BAG     the same scoring with the backend called directly (no ROS)
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

DEFAULT_DEMO_IMAGES = Path("..") / "shared" / "datasets" / "camvid" / "val"
BACKEND_CHOICES = ("auto", "tensorrt", "onnxruntime")
PRECISION_CHOICES = ("fp16", "fp32", "int8")


def parse_size(text: str) -> tuple[int, int]:
    from textseg.tools.benchmark import parse_size as parse

    return parse(text)


def _info(args: argparse.Namespace) -> int:
    from textseg.cpu import cpu_features
    from textseg.engine import load_backend
    from textseg.tools.importer import IMPORT_KEY

    if args.nodes:
        return _info_nodes(args.model)
    # warn, not refuse: `info` is where a user looks when a model is refused.
    backend = load_backend(args.model, self_check="warn", report=print)
    info = backend.info
    print(f"model              {getattr(backend, 'model_path', args.model)}")
    print(f"self-check         {backend.self_check_note}")
    print(f"cpu                {cpu_features().describe()}")
    int8 = _int8_summary(getattr(backend, "model_path", args.model))
    if int8:
        print(f"int8               {int8}")
    for name in ("architecture", "dataset", "text_encoder", "training_stage", "eval_miou",
                 "network_input_size", "contract_version"):
        value = getattr(info, name)
        if name == "network_input_size":  # (height, width): WxH like every command
            value = f"{value[1]}x{value[0]}"
        print(f"{name:<19}{value}")
    batch = _batch_axis(getattr(backend, "model_path", args.model))
    if batch:
        print(f"input batch        {batch}")
    print(f"confidence output  {'yes' if backend.has_confidence else 'no'}")
    quantization = _json_or_none(info.extra.get("quantization"))
    if quantization:
        print(f"quantization       {_quantization_summary(quantization)}")
    evaluation = _json_or_none(info.extra.get("evaluation"))
    iou = (evaluation or {}).get("per_class_iou", {})
    if evaluation:
        sizes = ", ".join(evaluation.get("input_sizes", []))
        print(f"evaluation         {evaluation.get('dataset')}: mIoU {evaluation.get('miou')}, "
              f"pixel accuracy {evaluation.get('pixel_accuracy')} "
              f"({evaluation.get('frames')} frames at {sizes}, {evaluation.get('runtime')})")
    for key in ("reproduce", "selected", "training_time"):
        if key in info.extra:
            print(f"{key:<19}{info.extra[key]}")
    imported = _json_or_none(info.extra.get(IMPORT_KEY))
    if imported:  # textseg import: where the graph came from and what the user said about it
        options = ", ".join(f"{k} {_option_text(k, v)}"
                            for k, v in imported.get("options", {}).items()
                            if k not in ("class_names", "architecture", "dataset")
                            and v not in (None, "", []))
        print(f"imported from      {imported.get('source')} (sha256 "
              f"{str(imported.get('source_sha256'))[:16]}..., {imported.get('source_producer')})")
        print(f"import options     {options}")
    print(f"classes            {info.num_classes}" + ("  (IoU % on the evaluation)" if iou else ""))
    for i, (name, color) in enumerate(zip(info.class_names, info.palette, strict=True)):
        score = f"  {iou[name]:6.2f}" if iou.get(name) is not None else ""
        print(f"  {i:>3}  {name:<20} {'rgb' + str(tuple(color)):<18}{score}")
    return 0


def _option_text(key: str, value) -> str:
    """An import option as `info` shows it: sizes (stored height, width) as WxH."""
    if key == "input_size" and isinstance(value, list) and len(value) == 2:
        return f"{value[1]}x{value[0]}"
    return str(value)


def _batch_axis(model) -> str:
    """The image input's batch axis: 'dynamic (...)' or 'fixed at N' ('' when unreadable)."""
    from textseg.engine.contract import INPUT_NAME
    from textseg.engine.onnx_file import read_onnx_summary

    path = Path(str(model))
    if path.suffix != ".onnx" or not path.is_file():
        return ""
    spec = next((i for i in read_onnx_summary(path).inputs if i.name == INPUT_NAME), None)
    if spec is None or not spec.shape:
        return ""
    batch = spec.shape[0]
    if isinstance(batch, int):
        return (f"fixed at {batch}" + (" (one camera per inference: export with dynamic_axes "
                                        "on dim 0 to batch cameras)" if batch == 1 else ""))
    return f"dynamic ({batch}: several cameras per inference)"


def _quantization_summary(record: dict) -> str:
    """What `textseg quantize` recorded in an int8 file, on one line."""
    parts = [f"target {record.get('target')}", f"method {record.get('calibration')}",
             f"{record.get('calibration_frames')} frames of {record.get('calibration_folder')}",
             "kept_float " + (", ".join(record.get("kept_float") or []) or "none")]
    made = record.get("self_check_where_made")
    if isinstance(made, dict):
        parts.append(f"self_check_where_made {'passed' if made.get('passed') else 'FAILED'} "
                     f"{100 * float(made.get('agreement', 0)):.2f} % on {made.get('cpu')}")
    return ", ".join(parts)


def _info_nodes(model) -> int:
    """Every node's name and operator type, in graph order (the names --keep-float takes)."""
    from textseg.engine.tensorrt_rules import read_graph

    if not model:
        raise ValueError("give the ONNX file whose nodes to list (textseg info MODEL --nodes)")
    graph = read_graph(model)
    width = max((len(node.name) for node in graph.nodes), default=4)
    print(f"{'node':<{width}}  op")
    for node in graph.nodes:
        print(f"{node.name or '(unnamed)':<{width}}  {node.op_type}")
    print(f"{len(graph.nodes)} nodes in {model}")
    return 0


def _int8_summary(model) -> str:
    """Whether an int8 file's sums can saturate on a CPU without VNNI ('' for others)."""
    from textseg.engine.int8_saturation import saturation_report

    path = Path(str(model))
    if path.suffix != ".onnx" or not path.is_file():
        return ""
    report = saturation_report(path)
    return report.summary() if report.quantized_nodes else ""


def _self_check(args: argparse.Namespace) -> int:
    from textseg.engine import load_backend
    from textseg.engine.self_check import (
        SELF_CHECK_KEY,
        SelfCheckFailed,
        check_images,
        make_self_check,
    )

    model = Path(args.model)
    if args.embed:
        from textseg.engine.onnx_file import describe_model, read_onnx_summary, with_metadata
        from textseg.tools.quantize import calibration_frames
        from textseg.engine.tensorrt_rules import model_precision
        from textseg.fileio import atomic_write_bytes

        reference = Path(args.reference) if args.reference else model
        if model_precision(reference) != "fp32":
            raise ValueError(f"{reference} is not an fp32 model: the self-check's labels come "
                             "from the fp32 reference (--reference FP32.onnx)")
        read_onnx_summary(model)  # a clear error for a file that is not a model
        size = describe_model(reference).info.network_input_size
        frames = check_images(calibration_frames(args.embed, args.frames, "--embed"), size,
                              args.frames)
        check = make_self_check(reference, frames)
        atomic_write_bytes(model, with_metadata(model.read_bytes(),
                                                {SELF_CHECK_KEY: check.to_metadata()}))
        print(f"wrote the self-check into {model}: {len(frames)} frames of {args.embed} at "
              f"{frames[0].shape[1]}x{frames[0].shape[0]}, labels from {check.reference}")
    try:
        backend = load_backend(model, args.backend, precision=args.precision,
                               self_check="refuse", report=print)
    except SelfCheckFailed as exc:
        print(f"textseg self-check: {exc}", file=sys.stderr)
        return 1
    print(f"{model}: {backend.self_check_note}")
    backend.close()
    return 0


def _json_or_none(text: str | None):
    import json

    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None


def _bake(args: argparse.Namespace) -> int:
    from textseg.engine.engine_cache import default_cache_dir, list_engines

    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    if args.list:
        entries = list_engines(cache_dir)
        print(f"engine cache {cache_dir}: {len(entries)} engines")
        for path, record, problem in entries:
            if record is None:
                print(f"  {path.name}: unusable ({problem})")
                continue
            status = f"BAD: {problem}" if problem else "ok"
            print(f"  {path.name}: {record.key.describe()}, {record.engine_size >> 20} MiB, "
                  f"built {record.created} in {record.build_seconds:.0f} s [{status}]")
        return 0
    if not args.model:
        raise ValueError("give the ONNX model to bake (or --list)")
    from textseg.engine.onnx_file import describe_model
    from textseg.engine.tensorrt_backend import TensorRTBackend, import_tensorrt
    from textseg.engine.tensorrt_rules import require_tensorrt_rules

    model = describe_model(args.model)  # clear contract errors before TensorRT is touched
    require_tensorrt_rules(model.path)  # and the parser's documented rules (tensorrt_rules)
    import_tensorrt()  # says so at once where TensorRT is missing
    sizes = [parse_size(s) for s in args.size] or [model.info.network_input_size]
    if not args.size:
        h, w = sizes[0]
        print(f"no --size given: baking for the network input size {w}x{h}; engines are per "
              "camera size, pass --size WIDTHxHEIGHT for your camera")
    started = time.monotonic()

    def report(line: str) -> None:
        print(f"[{time.monotonic() - started:7.1f} s] {line}", flush=True)

    backend = TensorRTBackend(model.path, precision=args.precision, cache_dir=cache_dir,
                              allow_build=True, calibration_dir=args.calibration,
                              workspace_mib=args.workspace, report=report,
                              max_batch=args.max_batch)
    try:
        for height, width in sizes:
            backend.prepare(height, width, force=args.force)
            batches = f", batch 1-{backend.max_batch}" if backend.max_batch > 1 else ""
            print(f"engine {backend.engine_paths[(height, width)]} ready "
                  f"({args.precision} {width}x{height}{batches})")
    finally:
        backend.close()
    return 0


def _bench(args: argparse.Namespace) -> int:
    from textseg.tools.benchmark import format_bench_table, run_bench

    sizes = tuple(parse_size(s) for s in args.sizes.split(","))
    rows = run_bench(args.model, args.backend, args.precision, sizes, args.images,
                     args.frames, args.duration, args.warmup, args.threads,
                     node=not args.no_node, rate_factor=args.rate_factor,
                     all_outputs=args.all_outputs, rounds=args.rounds,
                     spin_wait=args.spin_wait, parallel=args.parallel)
    print()
    print(format_bench_table(rows))
    if args.json:
        from dataclasses import asdict

        from textseg.cpu import write_results

        write_results(args.json, {"command": "textseg " + shlex.join(args.argv),
                                  "rows": [asdict(row) for row in rows]})
        print(f"figures written to {args.json}")
    return 0


def _overload(args: argparse.Namespace) -> int:
    from textseg.tools.benchmark import run_overload

    result = run_overload(args.model, parse_size(args.size), args.factor, args.duration,
                          args.warmup, args.backend, args.precision, args.threads, args.images)
    print(result.report())
    return 0 if result.latency_bounded and abs(result.rss_growth) < 0.05 else 1


def _demo(args: argparse.Namespace) -> int:
    from textseg.demo import DemoDataMissing, run_demo

    try:
        return run_demo(args.images, args.model, args.output, args.bags, args.limit,
                        args.quiet)
    except DemoDataMissing as exc:
        print(f"textseg demo: {exc}", file=sys.stderr)
        return 2


def _quantize(args: argparse.Namespace) -> int:
    from textseg.tools.quantize import (
        QuantizedModelFailed,
        format_bytes,
        quantize_model,
    )

    model = Path(args.model)
    suffix = "_int8" if args.target == "tensorrt" else "_int8_cpu"
    output = Path(args.output) if args.output else model.with_name(f"{model.stem}{suffix}.onnx")
    try:
        report = quantize_model(model, output, args.calibration, args.method, args.frames,
                                tuple(args.ops), tuple(args.keep_float), args.target,
                                args.weight_bits, keep_failed=args.keep_failed)
    except QuantizedModelFailed as exc:  # the file failed its own check: not written
        print(f"textseg quantize: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {report.path} ({format_bytes(report.size_bytes)}): {report.quantized_nodes} "
          f"activations quantized around {', '.join(report.ops)}, {report.method} "
          f"calibration on {report.frames} frames, in {report.seconds:.1f} s, for "
          + ("TensorRT and ONNX Runtime" if report.target == "tensorrt"
             else "ONNX Runtime CPU only (TensorRT refuses it)"))
    print(f"{report.self_check.describe()}; {_int8_summary(report.path)}")
    path, images = shlex.quote(str(report.path)), shlex.quote(str(args.calibration))
    print(f"next: textseg eval-offline BAG --model {path}  (accuracy), "
          f"textseg bench {path} --no-node --images {images}  (speed)")
    return 0


def _profile(args: argparse.Namespace) -> int:
    from textseg.tools.op_profile import op_table, profile_ops

    for model in args.models:
        rows, wall_ms = profile_ops(model, args.size[0], args.size[1], args.runs, args.threads)
        shown = rows if args.top <= 0 else rows[:args.top]
        print(op_table(shown, wall_ms, f"{model} at {args.size[1]}x{args.size[0]}, "
                                       f"{args.threads or 'all'} threads"))
        print()
    return 0


def _fp16(args: argparse.Namespace) -> int:
    from textseg.tools.fp16 import Fp16ModelFailed, convert_to_fp16
    from textseg.tools.quantize import (
        calibration_frames,
        format_bytes,
        refuse_reduced_precision,
    )

    model = Path(args.model)
    refuse_reduced_precision(model, "convert")  # before the frames are looked for
    output = Path(args.output) if args.output else model.with_name(f"{model.stem}_fp16.onnx")
    frames = calibration_frames(args.images, args.frames, "--images") if args.frames else None
    try:
        report = convert_to_fp16(model, output, frames, keep_failed=args.keep_failed)
    except Fp16ModelFailed as exc:  # would be refused by every node: not written
        print(f"textseg fp16: {exc}", file=sys.stderr)
        return 1
    agreement = report.describe_agreement()
    print(f"wrote {report.path} ({format_bytes(report.size_bytes)})"
          + (f"; {agreement}" if agreement else ""))
    if report.agreement is not None and report.agreement < report.threshold:
        print(f"note: only {100 * report.agreement:.2f} % of all pixels agree (under "
              f"{100 * report.threshold:.1f} %): the others lie at label boundaries, where "
              "the class scores are close and float16 tips them; the check, like the load-time "
              "self-check, leaves those out")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textseg", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="replay CamVid val through segmentation_node over DDS and score it",
        description="The real job on real data: CamVid's val frames as a ROS 2 bag (written "
        "once under --bags), replayed through segmentation_node in its own process over DDS "
        "(this machine only), its labels scored against the ground truth. Prints mIoU, "
        "per-class IoU, frames/s, latency p50/p99 and the ROS overhead; writes the report "
        "(report.md, frames.png: image | ground truth | prediction | overlay) to --output. "
        "Same as `textseg bag-from-dataset` then `textseg replay`. Exit code 2 when the "
        "CamVid folder is absent.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    demo.add_argument("--images", type=Path, default=DEFAULT_DEMO_IMAGES,
                      help="CamVid-layout val folder (labels in the sibling valannot/)")
    demo.add_argument("--model", default="", help="textseg ONNX model ('' = default artifact)")
    demo.add_argument("--output", type=Path, default=Path("out") / "demo",
                      help="report folder")
    demo.add_argument("--bags", type=Path, default=Path("out") / "bags",
                      help="where the bag of the frames is written once and reused")
    demo.add_argument("--limit", type=int, default=None, help="only the first N frames")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)
    info = sub.add_parser("info", help="print the metadata a model artifact carries")
    info.add_argument("model", nargs="?", default="", help="ONNX file ('' = default artifact)")
    info.add_argument("--nodes", action="store_true",
                      help="list every node's name and operator type instead (the names "
                      "`textseg quantize --keep-float NODE` takes); any ONNX file")
    info.set_defaults(func=_info)

    bake = sub.add_parser(
        "bake", help="build the TensorRT engine for this machine (cached)",
        description="Build a serialized TensorRT engine from a textseg ONNX model on this "
        "machine, for one input size per --size, and cache it (key: ONNX sha256, TensorRT "
        "version, GPU and compute capability, precision, size, batch profiles). A cached engine "
        "is reused, a stale one rebuilt. For a node with N cameras of one size (which batches "
        "them on TensorRT), bake with --max-batch N.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    bake.add_argument("model", nargs="?", default="", help="ONNX model")
    bake.add_argument("--precision", default="fp16", choices=PRECISION_CHOICES)
    bake.add_argument("--size", action="append", default=[],
                      help="camera size WIDTHxHEIGHT (repeatable; default: network size)")
    bake.add_argument("--calibration", default=None,
                      help="folder of camera images for int8 calibration")
    bake.add_argument("--cache-dir", default="",
                      help="engine cache ('' = $TEXTSEG_ENGINE_CACHE or ~/.cache/textseg/engines)")
    bake.add_argument("--workspace", type=int, default=0,
                      help="builder workspace limit in MiB (0 = TensorRT's default)")
    bake.add_argument("--max-batch", type=int, default=1,
                      help="one optimisation profile per batch size 1..N (N cameras per "
                      "inference; the node's max_batch)")
    bake.add_argument("--force", action="store_true", help="rebuild even if cached")
    bake.add_argument("--list", action="store_true", help="list the cached engines")
    bake.set_defaults(func=_bake)

    bench = sub.add_parser(
        "bench", help="backend and node throughput, latency and node overhead",
        description="Per input size, --rounds alternations of: the backend alone (latency "
        "p50/p99, FPS), then segmentation_node in its own process fed over DDS at "
        "--rate-factor x the backend's FPS (node FPS and the node's own time per frame "
        "outside inference). Best round and medians are reported: other work on the machine "
        "slows either phase at random.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _backend_arguments(bench)
    bench.add_argument("--sizes", default="960x720,1280x720", help="comma-separated WxH")
    bench.add_argument("--frames", type=int, default=30, help="backend-alone iterations")
    bench.add_argument("--duration", type=float, default=15.0, help="node phase seconds")
    bench.add_argument("--warmup", type=float, default=3.0, help="node warm-up seconds")
    bench.add_argument("--rounds", type=int, default=3,
                       help="alternations of backend alone / node (best and median reported)")
    bench.add_argument("--rate-factor", type=float, default=1.5,
                       help="publish rate as a multiple of the backend's FPS")
    bench.add_argument("--all-outputs", action="store_true",
                       help="also subscribe labels/color and labels/overlay")
    bench.add_argument("--no-node", action="store_true", help="backend alone only")
    bench.add_argument("--spin-wait", action="store_true",
                       help="ONNX Runtime threads busy-wait (node parameter spin_wait)")
    bench.add_argument("--parallel", type=int, default=1, metavar="N",
                       help="the node runs N inferences at once, each ONNX Runtime session "
                       "with threads / N threads (node parameter parallel_inferences)")
    bench.add_argument("--json", type=Path, default=None, metavar="FILE",
                       help="also write the figures, with the CPU they came from, here")
    bench.set_defaults(func=_bench)

    overload = sub.add_parser(
        "overload", help="frames at N x capacity: bounded latency, flat memory",
        description="Publish frames at --factor x what the node can process for --duration "
        "s; report latency (must stay within two inference times: no queue) and the node's "
        "memory (must stay flat). Exit code 1 when either fails.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _backend_arguments(overload)
    overload.add_argument("--size", default="1280x720", help="WxH")
    overload.add_argument("--factor", type=float, default=3.0)
    overload.add_argument("--duration", type=float, default=30.0)
    overload.add_argument("--warmup", type=float, default=5.0)
    overload.set_defaults(func=_overload)

    from textseg.tools.quantize import CALIBRATION_METHODS, DEFAULT_OPS, TARGETS, WEIGHT_BITS

    quantize = sub.add_parser(
        "quantize", help="static int8 Q/DQ model for TensorRT and ONNX Runtime, or CPU only",
        description="Write an int8 copy of a textseg model with ONNX Runtime's static "
        "quantization: Q/DQ nodes around --ops, per-channel symmetric int8 weights, "
        "activations calibrated on frames from a camera folder. --target tensorrt: symmetric "
        "int8 activations, the form TensorRT's explicit quantization takes (baked without a "
        "calibrator; also runs on ONNX Runtime), checked against TensorRT's parser rules. "
        "--target cpu: asymmetric uint8 activations, with each ReLU6 folded into its "
        "QuantizeLinear, faster on ONNX Runtime's CPU kernels; TensorRT refuses it. "
        "Metadata is carried over plus what was quantized and how. The file is checked "
        "first (its int8 labels against the fp32 model's on the self-check frames): one that "
        "fails is not written, exit code 1. Needs the onnx package.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    quantize.add_argument("model", help="fp32 textseg ONNX model")
    quantize.add_argument("--calibration", required=True, type=Path,
                          help="folder of camera frames (png/jpg) like those the model sees")
    quantize.add_argument("--target", default="tensorrt", choices=TARGETS,
                          help="tensorrt: one file for the vehicle's GPU and the CPU; "
                          "cpu: the fastest file for ONNX Runtime's CPU kernels")
    quantize.add_argument("--method", default="minmax", choices=CALIBRATION_METHODS)
    quantize.add_argument("--frames", type=int, default=32,
                          help="calibration frames, spread evenly over the folder")
    quantize.add_argument("--ops", nargs="+", default=list(DEFAULT_OPS),
                          help="operator types to quantize")
    quantize.add_argument("--keep-float", nargs="+", default=[], metavar="NODE",
                          help="node names left in float (the layers whose quantization "
                          "costs the most accuracy, e.g. the first convolution)")
    quantize.add_argument("--weight-bits", type=int, default=7, choices=WEIGHT_BITS,
                          help="7: weights in [-64, 64], right on every CPU; 8: the full "
                          "range, silently wrong on x86 CPUs without VNNI (ONNX Runtime refuses "
                          "it there)")
    _written_file_arguments(quantize, "MODEL_int8.onnx (tensorrt), MODEL_int8_cpu.onnx (cpu)",
                            "its own self-check (int8 labels against fp32")
    quantize.set_defaults(func=_quantize)

    profile = sub.add_parser(
        "profile", help="which operators a model's ONNX Runtime CPU time goes to",
        description="Run each model N times through ONNX Runtime's profiler on the CPU and "
        "print the kernel time per operator type as ONNX Runtime ran it (after its fusions: "
        "an int8 Conv that shows up as Conv, not QLinearConv, runs in float). Example: "
        "textseg profile models/textseg_default.onnx models/textseg_default_int8.onnx",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    profile.add_argument("models", nargs="+", help="textseg ONNX models")
    profile.add_argument("--size", type=parse_size, default="480x360", metavar="WxH",
                         help="input frame size")
    profile.add_argument("--runs", type=int, default=20, help="profiled inferences")
    profile.add_argument("--threads", type=int, default=2,
                         help="ONNX Runtime intra-op threads (0: all cores)")
    profile.add_argument("--top", type=int, default=12, help="rows shown (0: all)")
    profile.set_defaults(func=_profile)

    fp16 = sub.add_parser(
        "fp16", help="float16 model for TensorRT's strongly typed builds (TensorRT 11)",
        description="Write a float16 copy of a textseg model with ONNX Runtime's float16 "
        "converter: interface unchanged, Resize, the confidence's reductions (or an older "
        "model's Softmax) and Cast kept in float32, checked against TensorRT's parser rules "
        "and for label agreement with the fp32 model on --frames frames of --images, counted "
        "like the load-time self-check (pixels away from label boundaries): below its fp16 "
        "threshold (99 %) the file is not written, exit code 1. Bake it "
        "with `textseg bake MODEL_fp16.onnx --precision fp16`. Needs the onnx package.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    fp16.add_argument("model", help="fp32 textseg ONNX model")
    fp16.add_argument("--images", type=Path, default=DEFAULT_DEMO_IMAGES,
                      help="frames for the agreement check (relative to the current folder)")
    fp16.add_argument("--frames", type=int, default=20, help="0 = no agreement check")
    _written_file_arguments(fp16, "MODEL_fp16.onnx",
                            "the agreement check (fp16 labels against fp32")
    fp16.set_defaults(func=_fp16)

    from textseg.engine.self_check import CHECK_FRAMES, THRESHOLDS

    needs = ", ".join(f"{name} {100 * value:g} %" for name, value in THRESHOLDS.items())
    check = sub.add_parser(
        "self-check", help="run (or embed) a model's load-time self-check",
        description="Every textseg model carries a few frames and the labels its fp32 "
        "reference gave for them; every backend runs them when it opens the model and refuses "
        f"it when too few labels agree ({needs} of the pixels away from label boundaries). "
        "This runs the check on this machine and backend, exit code 1 on failure. --embed "
        "DIR writes a self-check into MODEL (labels from MODEL, or "
        "from --reference, an fp32 model) for files made before textseg 0.4.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    check.add_argument("model", help="textseg ONNX model or baked .engine")
    check.add_argument("--backend", default="auto", choices=BACKEND_CHOICES)
    check.add_argument("--precision", default="fp16", choices=PRECISION_CHOICES,
                       help="TensorRT engine precision")
    check.add_argument("--embed", type=Path, default=None, metavar="DIR",
                       help="folder of camera frames: write a self-check into MODEL first")
    check.add_argument("--frames", type=int, default=CHECK_FRAMES,
                       help="frames to embed (stored at the network's input size)")
    check.add_argument("--reference", default="",
                       help="fp32 model whose labels are the reference (default: MODEL)")
    check.set_defaults(func=_self_check)

    from textseg.tools.import_command import add_command as add_import_command

    add_import_command(sub)  # any segmentation ONNX into the contract

    from textseg.replay.commands import add_commands  # rosbag replay evaluation

    add_commands(sub)
    return parser


def _written_file_arguments(parser: argparse.ArgumentParser, default: str, check: str) -> None:
    """-o/--output and --keep-failed of the commands that write a checked model file."""
    parser.add_argument("-o", "--output", default="",
                        help=f"the file written (-o means that in every textseg command); "
                        f"default: {default}")
    parser.add_argument("--keep-failed", action="store_true",
                        help=f"a file that fails {check}, exit code 1) is kept beside the "
                        "output as NAME.failed-self-check.onnx, NAME being the output's file "
                        "name without .onnx (-o x.onnx: x.failed-self-check.onnx), instead of "
                        "deleted; never under the output's name")


def _backend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default="", help="model ('' = default artifact)")
    parser.add_argument("--backend", default="auto", choices=BACKEND_CHOICES)
    parser.add_argument("--precision", default="fp16", choices=PRECISION_CHOICES)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0 = all)")
    parser.add_argument("--images", type=Path, default=DEFAULT_DEMO_IMAGES,
                        help="folder of frames (resized to each size)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the results' "command"
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"textseg {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
