"""`textseg import THEIR.onnx`: the command line of tools/importer.py.

`add_commands(subparsers)` registers it on the runtime CLI (src/textseg/cli.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from textseg.cli_args import size_argument

EPILOG = """\
examples (docs/bring_your_model.md has the full recipes):
  # segmentation_models_pytorch, exported with torch.onnx.export at 384x480, ImageNet norm
  textseg import unet.onnx --classes camvid_classes.txt --frames camvid/val
  # Hugging Face SegFormer (logits at 1/4 resolution), its image processor's normalisation
  textseg import segformer.onnx --classes names.json --mean 0.485 0.456 0.406 \\
      --std 0.229 0.224 0.225 --size 512x512
  # a graph that already returns class ids, BGR input, 0..255 without normalisation
  textseg import ids.onnx --output-kind labels --color bgr --scale 1 --mean 0 0 0 \\
      --std 1 1 1 --classes road,sidewalk,car
"""


IMPORT_FRAMES = 8  # frames of --frames DIR the import checks (2 synthetic ones without it)


def add_commands(sub) -> None:
    """Register import on the CLI's subparsers."""
    from textseg.tools.importer import COLOR_ORDERS, LAYOUTS, OUTPUT_KINDS

    parser = sub.add_parser(
        "import", help="turn any semantic-segmentation ONNX file into a textseg model",
        description="Wrap a segmentation model exported by another framework "
        "(segmentation_models_pytorch, Hugging Face transformers, MMSegmentation, your own "
        "code) into the textseg artifact contract: uint8 RGB image of any size in, uint8 "
        "labels and confidence at that size out, class names and palette in its metadata. "
        "Their graph is kept unchanged; the import adds the resize to the network size, the "
        "normalisation and layout before it and the upsampling and argmax after it. It then "
        "checks the file with the ONNX checker, runs it in ONNX Runtime against the original "
        "graph on frames (the labels must be identical), stores a self-check and reports "
        "TensorRT's rules. The result runs in segmentation_node, textseg replay, bench and "
        "quantize like a trained textseg model. Needs the onnx package.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="their ONNX file")
    parser.add_argument("--classes", required=True,
                        help="class names: a,b,c or a file (one name a line, or a JSON list), "
                        "in the order of the model's output channels / ids")
    parser.add_argument("--palette", default="",
                        help="colours as a JSON list of [r, g, b] (inline or a file); default: "
                        "generated")
    parser.add_argument("--layout", default="nchw", choices=LAYOUTS,
                        help="the model's input layout (PyTorch: nchw, TensorFlow: nhwc)")
    parser.add_argument("--size", type=size_argument, default=None, metavar="WxH",
                        help="the size the network runs at, width x height like every textseg "
                        "command (required when the model's input size is dynamic), e.g. "
                        "480x384")
    parser.add_argument("--color", default="rgb", choices=COLOR_ORDERS,
                        help="the channel order the model was trained on (OpenCV-trained: "
                        "often bgr)")
    parser.add_argument("--scale", type=float, default=1 / 255,
                        help="pixel (0..255) times scale, before mean and std")
    parser.add_argument("--mean", type=float, nargs=3, default=[0.485, 0.456, 0.406],
                        help="subtracted after scaling (default: ImageNet)")
    parser.add_argument("--std", type=float, nargs=3, default=[0.229, 0.224, 0.225],
                        help="divided after the mean (default: ImageNet)")
    parser.add_argument("--output-kind", default="logits", choices=OUTPUT_KINDS,
                        help="logits: class scores [N,K,h,w] at any resolution; labels: class "
                        "ids [N,h,w] (no confidence then)")
    parser.add_argument("--output", dest="output_name", default="", metavar="NAME",
                        help="which of several outputs holds the per-pixel result")
    parser.add_argument("--frames", type=Path, default=None, metavar="DIR",
                        help="camera frames for the check (8, spread over the folder; the first "
                        "2 of them become the stored self-check) (default: 2 synthetic colour "
                        "fields)")
    parser.add_argument("--name", default="", help="architecture name shown by textseg info")
    parser.add_argument("--dataset", default="unknown", help="what the model was trained on")
    parser.add_argument("--require-tensorrt", action="store_true",
                        help="refuse a graph TensorRT's parser would refuse (default: write it "
                        "for ONNX Runtime and say why TensorRT would not take it)")
    parser.add_argument("-o", "--out", type=Path, default=None,
                        help="the textseg model to write (default: MODEL_textseg.onnx)")
    parser.set_defaults(func=_import)


def _import(args: argparse.Namespace) -> int:
    from textseg.tools.importer import (
        ImportOptions,
        import_model,
        read_class_names,
        read_palette,
    )
    from textseg.tools.quantize import calibration_frames

    options = ImportOptions(
        class_names=read_class_names(args.classes),
        palette=read_palette(args.palette) if args.palette else None,
        input_layout=args.layout, input_size=args.size, color_order=args.color,
        scale=args.scale, mean=tuple(args.mean), std=tuple(args.std),
        output=args.output_name, output_kind=args.output_kind, architecture=args.name,
        dataset=args.dataset)
    frames = ([f[0] for f in calibration_frames(args.frames, IMPORT_FRAMES, "--frames")]
              if args.frames else None)
    output = args.out or args.model.with_name(f"{args.model.stem}_textseg.onnx")
    report = import_model(args.model, output, options, frames,
                          require_tensorrt=args.require_tensorrt)
    print(report.describe())
    if report.tensorrt_violations:
        print("the file runs on ONNX Runtime; TensorRT would refuse it for the reasons above "
              "(--require-tensorrt makes that an error)")
    return 0
