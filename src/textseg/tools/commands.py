"""The `textseg` commands that make or check model files: quantize, profile, fp16, self-check.

`add_commands(subparsers)` registers them on the runtime CLI (src/textseg/cli.py).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from textseg.cli_args import BACKEND_CHOICES, DEFAULT_IMAGES, PRECISION_CHOICES, parse_size


def add_commands(sub) -> None:
    """Register quantize, profile, fp16 and self-check on the CLI's subparsers."""
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
    fp16.add_argument("--images", type=Path, default=DEFAULT_IMAGES,
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

    health = sub.add_parser(
        "health-reference", help="embed the statistics the node's health signal compares with",
        description="Run MODEL on --count frames of DIR (frames like those it was trained on) "
        "and store what its outputs and those frames look like (confidence histogram, class "
        "shares, sharpness, brightness) in its metadata (health_reference). segmentation_node "
        "compares a rolling window of live frames with it and publishes labels/health and a "
        "/diagnostics status (docs/node.md). `textseg-train export` and `textseg quantize` "
        "embed one themselves; this is for other files. Needs the confidence output.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    health.add_argument("model", help="textseg ONNX model (written in place)")
    health.add_argument("frames", type=Path, help="folder of training frames (png/jpg)")
    health.add_argument("--count", type=int, default=40,
                        help="frames used, spread evenly over the folder")
    health.set_defaults(func=_health_reference)


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
    print(f"{report.self_check.describe()}; {int8_summary(report.path)}")
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


def _self_check(args: argparse.Namespace) -> int:
    from textseg.engine import BackendOptions, load_backend
    from textseg.engine.self_check import (
        SELF_CHECK_KEY,
        SelfCheckFailed,
        check_images,
        make_self_check,
    )

    model = Path(args.model)
    if args.embed:
        from textseg.engine.onnx_file import (
            describe_model,
            model_precision,
            read_onnx_model,
            with_metadata,
        )
        from textseg.fileio import atomic_write_bytes
        from textseg.tools.quantize import calibration_frames

        reference = Path(args.reference) if args.reference else model
        if model_precision(reference) != "fp32":
            raise ValueError(f"{reference} is not an fp32 model: the self-check's labels come "
                             "from the fp32 reference (--reference FP32.onnx)")
        read_onnx_model(model)  # a clear error for a file that is not a model
        size = describe_model(reference).info.network_input_size
        frames = check_images(calibration_frames(args.embed, args.frames, "--embed"), size,
                              args.frames)
        check = make_self_check(reference, frames)
        atomic_write_bytes(model, with_metadata(model.read_bytes(),
                                                {SELF_CHECK_KEY: check.to_metadata()}))
        print(f"wrote the self-check into {model}: {len(frames)} frames of {args.embed} at "
              f"{frames[0].shape[1]}x{frames[0].shape[0]}, labels from {check.reference}")
    try:
        backend = load_backend(model, BackendOptions(
            backend=args.backend, precision=args.precision, self_check="refuse",
            report=print))
    except SelfCheckFailed as exc:
        print(f"textseg self-check: {exc}", file=sys.stderr)
        return 1
    print(f"{model}: {backend.self_check_note}")
    backend.close()
    return 0


def _health_reference(args: argparse.Namespace) -> int:
    from textseg.engine.onnx_file import read_onnx_model, with_metadata
    from textseg.fileio import atomic_write_bytes
    from textseg.health import HEALTH_KEY, reference_from_model
    from textseg.tools.quantize import calibration_frames

    model = Path(args.model)
    if args.count < 1:
        raise ValueError(f"--count must be >= 1, got {args.count}")
    read_onnx_model(model)  # a clear error for a file that is not a model
    frames = [f[0] for f in calibration_frames(args.frames, args.count, "FRAMES")]
    reference = reference_from_model(model, frames, f"{len(frames)} frames of {args.frames.name}")
    atomic_write_bytes(model, with_metadata(model.read_bytes(),
                                            {HEALTH_KEY: reference.to_metadata()}))
    print(f"wrote the health reference into {model}: {reference.source}, mean confidence "
          f"{reference.mean_confidence:.3f}, sharpness {reference.sharpness:.1f}, brightness "
          f"{reference.brightness:.0f} ± {reference.brightness_std:.0f}")
    return 0


def int8_summary(model) -> str:
    """Whether an int8 file's sums can saturate on a CPU without VNNI ('' for others)."""
    from textseg.engine.int8_saturation import saturation_report

    path = Path(str(model))
    if path.suffix != ".onnx" or not path.is_file():
        return ""
    report = saturation_report(path)
    return report.summary() if report.quantized_nodes else ""
