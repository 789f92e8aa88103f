"""textseg-train: the training package's command line.

Examples
  textseg-train export --init random --output model.onnx
  textseg-train export --dataset cityscapes --backbone stdc2 --init random --output cs.onnx
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _add_export(sub: argparse._SubParsersAction) -> None:
    from textseg_training.datasets import DATASETS
    from textseg_training.model import MODEL_BUILDERS

    parser = sub.add_parser(
        "export", help="write a model as a textseg ONNX artifact",
        description="Export a network to the textseg artifact contract: one ONNX file taking "
        "uint8 RGB [1,H,W,3] and returning uint8 class ids [1,H,W], with class names, palette "
        "and provenance in its metadata. The file is checked (onnx.checker and ONNX Runtime "
        "vs PyTorch) before it replaces OUTPUT.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--output", required=True, type=Path, help="ONNX file to write")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="camvid",
                        help="class names, palette and network input size")
    parser.add_argument("--backbone", choices=sorted(MODEL_BUILDERS), default="stdc1")
    parser.add_argument("--init", choices=["random"], required=True,
                        help="'random': a freshly initialised network (no trained weights)")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="network input size (default: the dataset's)")
    parser.add_argument("--confidence", action="store_true",
                        help="add the per-pixel 'confidence' output (max softmax * 255)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --init random")
    parser.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    import torch

    from textseg.engine.contract import ModelInfo
    from textseg_training.datasets import DATASETS
    from textseg_training.export import export_onnx
    from textseg_training.model import SegModelConfig, build_model

    spec = DATASETS[args.dataset]
    size = tuple(args.input_size) if args.input_size else spec.network_input_size
    if min(size) < 64:
        # The network downsamples by 32; smaller inputs leave nothing of the 1/32 features.
        print(f"error: --input-size {size} must be at least 64x64", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    model = build_model(SegModelConfig(backbone=args.backbone,
                                       num_classes=len(spec.class_names)), deploy=True).eval()
    info = ModelInfo(class_names=spec.class_names, palette=spec.palette,
                     network_input_size=size, architecture=f"{args.backbone}-seg",
                     dataset=spec.name, text_encoder="none", training_stage="random-init")
    mean, std = model.backbone.input_mean, model.backbone.input_std
    report = export_onnx(model, info, args.output, mean, std, with_confidence=args.confidence)
    print(f"wrote {report.path} ({report.size_bytes / 1e6:.1f} MB); ONNX Runtime vs PyTorch: "
          f"{100 * report.parity_agreement:.3f}% of {report.parity_pixels} pixels identical")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="textseg-train", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_export(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
