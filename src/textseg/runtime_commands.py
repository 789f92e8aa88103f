"""The runtime's own `textseg` commands: demo, info, bake, bench, overload.

`add_commands(subparsers)` registers them on the runtime CLI (src/textseg/cli.py).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from textseg.cli_args import BACKEND_CHOICES, DEFAULT_IMAGES, PRECISION_CHOICES, parse_size


def add_commands(sub) -> None:
    """Register demo, info, bake, bench and overload on the CLI's subparsers."""
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
    demo.add_argument("--images", type=Path, default=DEFAULT_IMAGES,
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


def _backend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default="", help="model ('' = default artifact)")
    parser.add_argument("--backend", default="auto", choices=BACKEND_CHOICES)
    parser.add_argument("--precision", default="fp16", choices=PRECISION_CHOICES)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0 = all)")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES,
                        help="folder of frames (resized to each size)")


def _demo(args: argparse.Namespace) -> int:
    from textseg.demo import DemoDataMissing, run_demo

    try:
        return run_demo(args.images, args.model, args.output, args.bags, args.limit,
                        args.quiet)
    except DemoDataMissing as exc:
        print(f"textseg demo: {exc}", file=sys.stderr)
        return 2


def _info(args: argparse.Namespace) -> int:
    from textseg.cpu import cpu_features
    from textseg.engine import BackendOptions, load_backend
    from textseg.tools.commands import int8_summary
    from textseg.tools.importer import IMPORT_KEY

    if args.nodes:
        return _info_nodes(args.model)
    # warn, not refuse: `info` is where a user looks when a model is refused.
    backend = load_backend(args.model, BackendOptions(self_check="warn", report=print))
    info = backend.info
    print(f"model              {getattr(backend, 'model_path', args.model)}")
    print(f"self-check         {backend.self_check_note}")
    print(f"cpu                {cpu_features().describe()}")
    int8 = int8_summary(getattr(backend, "model_path", args.model))
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
    print(f"health reference   {_health_summary(info)}")
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
    source = _json_or_none(info.extra.get("source_evaluation"))
    if source and not evaluation:  # a quantized file: its source's figure, named as such
        print(f"source evaluation  {source.get('dataset')}: mIoU {source.get('miou')} "
              "(the model this file was made from, not this file)")
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


def _health_summary(info) -> str:
    """What the node's health signal compares live frames with (textseg.health)."""
    from textseg.health import HealthReferenceError, read_health_reference

    try:
        reference = read_health_reference(info.extra, info.num_classes)
    except HealthReferenceError as exc:
        return f"unreadable ({exc})"
    if reference is None:
        return ("none (the node detects black and frozen streams only; `textseg "
                "health-reference MODEL FRAMES` adds one)")
    return (f"{reference.source}: mean confidence {reference.mean_confidence:.3f}, sharpness "
            f"{reference.sharpness:.1f}, brightness {reference.brightness:.0f}")


def _option_text(key: str, value) -> str:
    """An import option as `info` shows it: sizes (stored height, width) as WxH."""
    if key == "input_size" and isinstance(value, list) and len(value) == 2:
        return f"{value[1]}x{value[0]}"
    return str(value)


def _batch_axis(model) -> str:
    """The image input's batch axis: 'dynamic (...)' or 'fixed at N' ('' when unreadable)."""
    from textseg.engine.contract import INPUT_NAME
    from textseg.engine.onnx_file import read_onnx_model

    path = Path(str(model))
    if path.suffix != ".onnx" or not path.is_file():
        return ""
    spec = next((i for i in read_onnx_model(path).inputs if i.name == INPUT_NAME), None)
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
    from textseg.engine.onnx_file import read_onnx_model

    if not model:
        raise ValueError("give the ONNX file whose nodes to list (textseg info MODEL --nodes)")
    graph = read_onnx_model(model)
    width = max((len(node.name) for node in graph.nodes), default=4)
    print(f"{'node':<{width}}  op")
    for node in graph.nodes:
        print(f"{node.name or '(unnamed)':<{width}}  {node.op_type}")
    print(f"{len(graph.nodes)} nodes in {model}")
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
