"""textseg: the runtime's command line.

  textseg demo                 run the node on CamVid frames and show what it published
  textseg info MODEL.onnx      print what a model artifact carries
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_DEMO_IMAGES = Path("..") / "shared" / "datasets" / "camvid" / "val"


def _info(args: argparse.Namespace) -> int:
    from textseg.engine import load_backend

    backend = load_backend(args.model)
    info = backend.info
    print(f"model              {getattr(backend, 'model_path', args.model)}")
    for name in ("architecture", "dataset", "text_encoder", "training_stage", "eval_miou",
                 "network_input_size", "contract_version"):
        print(f"{name:<19}{getattr(info, name)}")
    print(f"confidence output  {'yes' if backend.has_confidence else 'no'}")
    print(f"classes            {info.num_classes}")
    for i, (name, color) in enumerate(zip(info.class_names, info.palette, strict=True)):
        print(f"  {i:>3}  {name:<20} rgb{tuple(color)}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from textseg.demo import run_demo

    return run_demo(args.images, args.count, args.model, args.output, args.encoding,
                    args.timeout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textseg", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="run segmentation_node on real frames and show what it published",
        description="Start segmentation_node in its own process, publish each image as "
        "sensor_msgs/Image over DDS (localhost only), wait for its label image and print a "
        "table; writes a PNG strip image | labels | overlay.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    demo.add_argument("--images", type=Path, default=DEFAULT_DEMO_IMAGES,
                      help="folder of images (png/jpg)")
    demo.add_argument("--count", type=int, default=20, help="number of frames to send")
    demo.add_argument("--model", default="", help="textseg ONNX model ('' = default artifact)")
    demo.add_argument("--encoding", default="rgb8",
                      choices=["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
    demo.add_argument("--output", type=Path, default=Path("out") / "demo",
                      help="folder for the PNG strip")
    demo.add_argument("--timeout", type=float, default=10.0, help="seconds to wait per frame")
    demo.set_defaults(func=_demo)
    info = sub.add_parser("info", help="print the metadata a model artifact carries")
    info.add_argument("model", nargs="?", default="", help="ONNX file ('' = default artifact)")
    info.set_defaults(func=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"textseg {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
