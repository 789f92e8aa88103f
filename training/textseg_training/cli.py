"""textseg-train: train, evaluate and export textseg models.

Reproduce the paper (one command per experiment; configs in training/configs/):
  textseg-train train training/configs/camvid_stdc1_stage1.yaml --clip-weights RN50.pt
  textseg-train train training/configs/camvid_stdc1_stage2.yaml --clip-weights RN50.pt
  textseg-train eval runs/camvid_stdc1_stage2/best.pt --flip
  textseg-train export --checkpoint runs/camvid_stdc1_stage2/best.pt --output camvid.onnx
  textseg-train params --input-size 512 1024 --num-classes 19

Your own data: describe it in a small YAML (images, labels, class_names, palette,
ignore_index), check it with `textseg-train check-data`, then `--set dataset=my_data.yaml`.
Several GPUs: torchrun --nproc_per_node=2 -m textseg_training.cli train CONFIG
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

CONFIG_HELP = "experiment YAML (see training/configs/)"


def _train_weak(args: argparse.Namespace, overrides: list[str]) -> int:
    from textseg_training.weak.config import WeakConfig
    from textseg_training.weak.trainer import WeakTrainer

    config = WeakConfig.from_yaml(args.config, overrides)
    if args.results and not args.row:
        raise ValueError("--results needs --row: the id this run is recorded under")
    trainer = WeakTrainer(config, resume=args.resume)
    result = trainer.fit()
    final = result.final_eval
    steps = trainer.step_seconds
    print(f"\n| run | iterations | val mIoU | step s (mean) | wall min |\n|---|---|---|---|---|\n"
          f"| {config.output_dir} | {trainer.iteration} | {100 * final.miou:.2f} | "
          f"{np.mean(steps) if steps else float('nan'):.2f} | "
          f"{result.wall_seconds / 60:.1f} |")
    for moment, score in trainer.pseudo_scores.items():
        print(f"pseudo labels at {moment} (iteration {score['iteration']}, {score['affinity']} "
              f"affinity): mIoU {score['miou']:.2f}, labelled only {score['miou_covered']:.2f}, "
              f"coverage {score['coverage']:.1f} %")
    if args.results:
        from textseg_training.results import record_run, run_entry

        entry = run_entry(args.row, str(args.config), overrides, config.to_dict(),
                          trainer.class_names, final, trainer.iteration,
                          result.wall_seconds, "fp32")
        entry.update({"pseudo_labels": trainer.pseudo_scores,
                      "step_seconds_mean": round(float(np.mean(steps)), 3) if steps else None,
                      "tag_head_loss": trainer.tag_head_losses[-1:] or None,
                      "text_encoder": trainer.text_identity})
        print(f"recorded row {args.row!r} seed {config.seed} in "
              f"{record_run(args.results, entry)}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from textseg_training.trainer.config import TrainConfig, read_yaml_with_overrides
    from textseg_training.trainer.loop import Trainer
    from textseg_training.weak.config import WEAK_STAGES

    overrides = list(args.set)
    if read_yaml_with_overrides(args.config, overrides).get("stage") in WEAK_STAGES:
        return _train_weak(args, overrides)
    if args.backbone_weights:
        overrides.append(f"backbone_weights={args.backbone_weights}")
    if args.clip_weights:
        overrides.append(f"text_weights={args.clip_weights}")
    if args.allow_random_text_encoder:
        overrides.append("allow_random_text_encoder=true")
    config = TrainConfig.from_yaml(args.config, overrides)
    if args.results and not args.row:
        raise ValueError("--results needs --row: the id this run is recorded under")
    trainer = Trainer(config, resume=args.resume, device=args.device)
    result = trainer.fit()
    best = "n/a" if result.best_miou is None else f"{result.best_miou:.2f}"
    final = "n/a" if result.final_eval is None else f"{100 * result.final_eval.miou:.2f}"
    print(f"\n| run | iterations | final val mIoU | best val mIoU | images/s | checkpoint |\n"
          f"|---|---|---|---|---|---|\n"
          f"| {result.output_dir} | {result.iterations} | {final} | {best} | "
          f"{result.images_per_second:.2f} | {result.last_checkpoint} |")
    if args.results:
        from textseg_training.results import record_run, run_entry

        if result.final_eval is None or result.iterations != config.iterations:
            raise RuntimeError("--results: the run has no evaluation at its last iteration")
        precision = ("+".join(trainer.trained_precisions)
                     if trainer.trained_precisions is not None else "unrecorded")
        evals = result.final_evals or {"val": result.final_eval}
        # The weights' moving average is a row of its own (`ROW_ema`), paired by seed.
        for suffix in ("", "_ema") if "val_ema" in evals else ("",):
            row = args.row + suffix
            entry = run_entry(row, str(args.config), overrides, config.to_dict(),
                              trainer.class_names, evals["val" + suffix], result.iterations,
                              result.wall_seconds, precision,
                              heldout=evals.get("heldout" + suffix))
            if trainer.prompt_learner is not None:
                from textseg_training.prompt_report import prompt_movement

                entry["prompts"] = prompt_movement(result.last_checkpoint, summary=True)
            print(f"recorded row {row!r} seed {config.seed} in "
                  f"{record_run(args.results, entry)}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from textseg_training.evaluate_checkpoint import evaluate_checkpoint

    report = evaluate_checkpoint(args.checkpoint, data_root=args.data_root, flip=args.flip,
                                 scales=tuple(args.scales), output_dir=args.output,
                                 device=args.device)
    print(report.read_text())
    return 0


def _export_size(values: list[str] | None) -> tuple[int, int] | None:
    """--input-size WxH -> (height, width); the old two numbers H W still work, with a
    deprecation warning."""
    from textseg.cli_args import parse_size

    if values is None:
        return None
    if len(values) == 2 and all(v.isdigit() for v in values):
        height, width = int(values[0]), int(values[1])
        print(f"textseg-train export: warning: --input-size H W is deprecated and will go; "
              f"give width x height like every textseg command: --input-size "
              f"{width}x{height}", file=sys.stderr)
        return height, width
    if len(values) != 1:
        raise ValueError(f"--input-size {' '.join(values)}: expected one WxH (width x "
                         "height), e.g. 480x360")
    return parse_size(values[0])


def _export(args: argparse.Namespace) -> int:
    from textseg_training.export import export_checkpoint, export_random

    size = _export_size(args.input_size)
    metadata = {}
    for item in args.metadata:
        key, sep, value = item.partition("=")
        if not sep or not key or key.startswith("textseg."):
            raise ValueError(f"--metadata {item!r} must look like KEY=VALUE (KEY not textseg.*)")
        metadata[key] = value
    if args.checkpoint is not None and _is_weak_checkpoint(args.checkpoint):
        from textseg_training.weak.export import export_weak_checkpoint

        if args.evaluate or metadata:
            raise ValueError("--evaluate and --metadata are not supported for weak-mode "
                             "checkpoints yet")
        report = export_weak_checkpoint(args.checkpoint, args.output,
                                        confidence=args.confidence,
                                        input_size=size)
    elif args.checkpoint is not None:
        report = export_checkpoint(args.checkpoint, args.output, confidence=args.confidence,
                                   input_size=size, evaluate=args.evaluate,
                                   metadata=metadata, ema=args.ema)
    elif args.evaluate or metadata or args.ema:
        raise ValueError("--evaluate, --metadata and --ema need --checkpoint")
    else:
        report = export_random(args.output, dataset=args.dataset, backbone=args.backbone,
                               confidence=args.confidence, input_size=size,
                               seed=args.seed)
    print(f"wrote {report.path} ({report.size_bytes / 1e6:.1f} MB); ONNX Runtime vs PyTorch: "
          f"{100 * report.parity_agreement:.3f}% of {report.parity_pixels} pixels identical")
    if report.evaluation:
        e = report.evaluation
        print(f"\n{e['dataset']}: {e['frames']} frames at {', '.join(e['input_sizes'])}, "
              f"single scale, {e['runtime']}\n\n| class | IoU % |\n|---|---:|")
        for name, iou in e["per_class_iou"].items():
            print(f"| {name} | {'n/a' if iou is None else f'{iou:.2f}'} |")
        print(f"| **mIoU** | **{e['miou']:.2f}** |\n| pixel accuracy | "
              f"{e['pixel_accuracy']:.2f} |")
    return 0


def _is_weak_checkpoint(path: Path) -> bool:
    from textseg_training.trainer.checkpoint import load_checkpoint

    return load_checkpoint(path).get("kind") == "weak"


def _layers_by_width(text: str) -> tuple[int, int]:
    try:
        layers, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NxD, e.g. 2x128") from None
    return layers, width


def _params(args: argparse.Namespace) -> int:
    from textseg_training.model import SegModelConfig, build_model
    from textseg_training.model.complexity import complexity_table, measure

    size = tuple(args.input_size)
    rows = []
    for backbone in args.backbones:
        variants = [(0, "tgm", (2, 128))]
        for fusion in args.fusions:
            sizes = args.bridge if fusion == "bridge" else [(2, 128)]
            variants += [(args.text_width, fusion, size) for size in sizes]
        for text_width, fusion, (layers, width) in variants:
            config = SegModelConfig(backbone=backbone, num_classes=args.num_classes,
                                    text_width=text_width, text_fusion=fusion,
                                    bridge_layers=layers, bridge_width=width)
            label = {"tgm": "TGM", "bridge": f"bridge N={layers} d={width}"}[fusion]
            name = f"{backbone}-seg" + (f" + {label} (text width {text_width})" if text_width
                                        else "")
            rows.append(measure(name, build_model(config, deploy=True).eval(), size))
    print(complexity_table(rows))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from textseg_training.bench import bench_training_steps, timing_table

    size = tuple(args.input_size)
    results = bench_training_steps(tuple(args.stages), args.backbone, args.batch, size,
                                   args.steps, args.text_encoder, args.context_length,
                                   rounds=args.rounds, modes=tuple(args.modes))
    print(timing_table(results, args.batch, size, args.backbone))
    return 0


def _results(args: argparse.Namespace) -> int:
    from textseg_training.results import load_runs, paired_difference, rows_table

    runs = load_runs(args.file)
    if not runs:
        raise FileNotFoundError(f"no runs recorded in {args.file}")
    if args.study:
        from textseg_training.experiment import update_marked_block
        from textseg_training.recipe_study import BEGIN, END, study_report

        report = study_report(runs)
        print(report)
        if args.update:
            print(f"\nupdated {update_marked_block(args.update, report, BEGIN, END)}")
        return 0
    if args.protocol or args.update:
        from textseg_training.experiment import protocol_report, update_marked_block

        report = protocol_report(runs)
        print(report)
        if args.update:
            print(f"\nupdated {update_marked_block(args.update, report)}")
        return 0
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else []
    print(rows_table(runs, args.rows or None, classes))
    for pair in args.compare:
        row_a, sep, row_b = pair.partition(":")
        if not sep:
            raise ValueError(f"--compare {pair!r} must look like ROW_A:ROW_B")
        print(f"\n{paired_difference(runs, row_a, row_b)}")
    return 0


def _check_data(args: argparse.Namespace) -> int:
    from textseg_training.data import validate_dataset
    from textseg_training.model import SegModelConfig, build_model
    from textseg_training.trainer.config import TrainConfig
    from textseg_training.trainer.data_setup import build_datasets, dataset_spec

    config = TrainConfig.from_yaml(args.config, args.set)
    spec = dataset_spec(config)
    backbone = build_model(SegModelConfig(config.backbone, len(spec.class_names))).backbone
    train_set, eval_sets, spec = build_datasets(config, backbone.input_mean, backbone.input_std)
    failed = False
    for name, dataset in (("train", train_set), *eval_sets.items()):
        report = validate_dataset(dataset, limit=args.limit)
        total = max(1, int(report.class_pixels.sum()))
        shares = ", ".join(f"{n} {100 * c / total:.1f}%"
                           for n, c in zip(spec.class_names, report.class_pixels, strict=True))
        print(f"{name}: {report.checked} items checked, {len(report.errors)} bad; "
              f"class pixels: {shares}")
        for error in report.errors[:20]:
            print(f"  {error}")
        failed |= not report.ok
    print(f"classes ({len(spec.class_names)}): {', '.join(spec.class_names)}; "
          f"ignore id {spec.ignore_index}")
    return 1 if failed else 0


def _prompts(args: argparse.Namespace) -> int:

    from textseg.cpu import write_results
    from textseg_training.prompt_report import movement_table, prompt_movement

    rows = [prompt_movement(path) for path in args.checkpoints]
    print(movement_table(rows))
    if args.json:
        write_results(args.json, {"runs": rows})
    return 0


def _weak_tags(args: argparse.Namespace) -> int:
    from textseg_training.weak.commands import make_tags_command

    make_tags_command(str(args.data_root), args.grid, args.threshold, str(args.output),
                      None if args.results is None else str(args.results))
    return 0


def _weak_report(args: argparse.Namespace) -> int:
    from textseg_training.weak.report import BEGIN, END, weak_report

    report = weak_report(args.file)
    print(report)
    if args.update:
        from textseg_training.experiment import update_marked_block

        print(f"\nupdated {update_marked_block(args.update, report, BEGIN, END)}")
    return 0


def _weak_pseudo(args: argparse.Namespace) -> int:
    from textseg_training.weak.commands import parse_settings, pseudo_sweep_command

    pseudo_sweep_command(str(args.data_root), args.grids, args.threshold, args.tower,
                         parse_settings(args.set), args.frames,
                         None if args.results is None else str(args.results),
                         None if args.strip is None else str(args.strip), seed=args.seed)
    return 0


def _weak_strip(args: argparse.Namespace) -> int:
    from textseg_training.weak.commands import strip_command

    strip_command(str(args.checkpoint), str(args.output), args.frames)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from textseg_training.bench import MODES as BENCH_MODES
    from textseg_training.bench import STAGES as BENCH_STAGES
    from textseg_training.dataset_specs import DATASETS
    from textseg_training.model import MODEL_BUILDERS

    parser = argparse.ArgumentParser(prog="textseg-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.ArgumentDefaultsHelpFormatter

    train = sub.add_parser("train", help="train one stage of an experiment", formatter_class=fmt,
                           description="Train one experiment (baseline, stage1, stage2 or e2e "
                           "as its config says). Writes last.pt/best.pt, metrics.csv, "
                           "TensorBoard logs and curves.png to the config's output_dir.")
    train.add_argument("config", type=Path, help=CONFIG_HELP)
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key (repeatable), e.g. --set iterations=200")
    train.add_argument("--resume", type=Path, help="continue from this checkpoint (last.pt)")
    train.add_argument("--backbone-weights", type=Path,
                       help="official STDC ImageNet checkpoint (STDCNet813M_73.91.tar ...)")
    train.add_argument("--clip-weights",
                       help="CLIP text weights: local RN50.pt / open_clip state dict, or an "
                       "open_clip pretrained tag (needs the network)")
    train.add_argument("--allow-random-text-encoder", action="store_true",
                       help="train with a randomly initialised text encoder (tests and the "
                       "no-language control only)")
    train.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    train.add_argument("--results", type=Path, default=None,
                       help="append the final evaluation to this results JSON (list 'runs': "
                       "row, seed, val_miou, per_class_iou, config, overrides, the run's wall "
                       "time across resumes); needs --row")
    train.add_argument("--row", default=None, help="row id the run is recorded under")
    train.set_defaults(func=_train)

    evaluate = sub.add_parser("eval", help="evaluate a checkpoint on its validation set",
                              formatter_class=fmt,
                              description="mIoU, per-class IoU (and Cityscapes categories), "
                              "confusion matrix PNG and a markdown report.")
    evaluate.add_argument("checkpoint", type=Path)
    evaluate.add_argument("--data-root", help="dataset folder, if not the training one")
    evaluate.add_argument("--flip", action="store_true", help="average with a flipped pass")
    evaluate.add_argument("--scales", type=float, nargs="+", default=[1.0],
                          help="multi-scale evaluation factors")
    evaluate.add_argument("--output", type=Path, help="report folder (default: beside it)")
    evaluate.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    evaluate.set_defaults(func=_eval)

    export = sub.add_parser(
        "export", help="write a model as a textseg ONNX artifact", formatter_class=fmt,
        description="Export to the textseg artifact contract: one ONNX file taking uint8 RGB "
        "[1,H,W,3] and returning uint8 class ids [1,H,W], with class names, palette and "
        "provenance in its metadata. Checked (onnx.checker, ONNX Runtime vs PyTorch) before it "
        "replaces OUTPUT.")
    export.add_argument("--output", required=True, type=Path, help="ONNX file to write")
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="a training checkpoint (best.pt)")
    source.add_argument("--init", choices=["random"],
                        help="'random': a freshly initialised network (no training)")
    export.add_argument("--dataset", choices=sorted(DATASETS), default="camvid",
                        help="with --init random: class names, palette, network size")
    export.add_argument("--backbone", choices=sorted(MODEL_BUILDERS), default="stdc1",
                        help="with --init random")
    export.add_argument("--input-size", nargs="+", metavar="WxH",
                        help="network input size, width x height like every textseg command, "
                        "e.g. 480x360 (default: the training one; the old form H W still "
                        "works, deprecated)")
    export.add_argument("--confidence", action="store_true",
                        help="add the per-pixel 'confidence' output (max softmax x 255)")
    export.add_argument("--seed", type=int, default=0, help="with --init random")
    export.add_argument("--evaluate", action="store_true",
                        help="with --checkpoint: score the artifact (ONNX Runtime) on the "
                        "validation split it was trained against; the figures (mIoU, "
                        "per-class IoU, pixel accuracy) go into its metadata")
    export.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE",
                        help="more provenance in the artifact (repeatable), e.g. "
                        "reproduce='textseg-train train ...'")
    export.add_argument("--ema", action="store_true",
                        help="with --checkpoint: export the moving average of the weights the "
                        "run kept (ema_decay) instead of the trained weights")
    export.set_defaults(func=_export)

    params = sub.add_parser("params", help="parameters and GMACs of the deploy graphs",
                            formatter_class=fmt)
    params.add_argument("--input-size", type=int, nargs=2, default=[512, 1024],
                        metavar=("H", "W"))
    params.add_argument("--num-classes", type=int, default=19)
    params.add_argument("--backbones", nargs="+", default=sorted(MODEL_BUILDERS))
    params.add_argument("--text-width", type=int, default=1024,
                        help="text embedding width for the TGM rows (CLIP RN50: 1024)")
    params.add_argument("--fusions", nargs="+", default=["tgm", "bridge"],
                        choices=["tgm", "bridge"], help="text-fusion modules to list")
    params.add_argument("--bridge", nargs="+", type=_layers_by_width, default=[(2, 128)],
                        metavar="NxD", help="bridge sizes to list: layers x width, e.g. 1x64 "
                        "2x128")
    params.set_defaults(func=_params)

    bench = sub.add_parser("bench", help="training-step throughput per stage (images/s)",
                           formatter_class=fmt,
                           description="Time forward+loss+backward+SGD steps for baseline, "
                           "stage 1 (TGM, fixed embeddings; L_text on every 8th label pixel as "
                           "trained by default), stage1_label_size (L_text on every label "
                           "pixel, as the paper), stage1_tgm_only (no L_text) and stage 2 "
                           "(frozen backbone, prompts through the text encoder) on random "
                           "data, in alternating rounds.")
    bench.add_argument("--stages", nargs="+",
                       default=["baseline", "stage1", "stage1_label_size", "stage2"],
                       choices=list(BENCH_STAGES))
    bench.add_argument("--backbone", default="stdc1", choices=sorted(MODEL_BUILDERS))
    bench.add_argument("--batch", type=int, default=8)
    bench.add_argument("--input-size", type=int, nargs=2, default=[360, 480],
                       metavar=("H", "W"))
    bench.add_argument("--steps", type=int, default=3, help="timed steps per stage and round")
    bench.add_argument("--rounds", type=int, default=3,
                       help="alternating rounds over the stages; each stage vs baseline is "
                       "the median over rounds of the within-round ratio")
    bench.add_argument("--text-encoder", default="clip-rn50",
                       choices=["clip-rn50", "minilm-l6-v2"])
    bench.add_argument("--context-length", type=int, default=None,
                       help="CLIP context (default 77)")
    bench.add_argument("--modes", nargs="+", default=["fp32"], choices=list(BENCH_MODES),
                       help="numeric modes to time each stage in: fp32, fp32-cl "
                       "(channels_last), bf16 (bfloat16 autocast), bf16-cl; 'vs fp32' is the "
                       "speed-up over the same stage in fp32")
    bench.set_defaults(func=_bench)

    results = sub.add_parser(
        "results", help="tables from a results JSON (runs recorded with train --results)",
        formatter_class=fmt,
        description="Print a markdown table of the runs recorded in FILE: per row id, val "
        "mIoU mean ± sample std over seeds and each seed's value; --compare A:B adds the "
        "paired difference B - A by seed and whether it exceeds the seed-to-seed spread. "
        "The tables in docs/ are made with this command, never typed.")
    results.add_argument("file", type=Path, help="results JSON (e.g. training/results/*.json)")
    results.add_argument("--rows", nargs="+", default=[], help="row ids in this order")
    results.add_argument("--classes", default="",
                         help="comma-separated class names whose mean IoU gets a column")
    results.add_argument("--compare", action="append", default=[], metavar="ROW_A:ROW_B",
                         help="paired difference by seed (repeatable)")
    results.add_argument("--protocol", action="store_true",
                         help="the text experiment's report: every row beside the paper's, "
                              "the paired differences and the thin-class gains")
    results.add_argument("--study", action="store_true",
                         help="issue 30's recipe study (training/results/recipe_study.json): "
                              "every row on the held-out street and val, the thin classes, "
                              "and the candidates ranked by their paired held-out difference")
    results.add_argument("--update", type=Path, default=None, metavar="MARKDOWN",
                         help="write the --protocol (or --study) report into MARKDOWN between "
                              "its <!-- cpu-protocol:begin --> and <!-- cpu-protocol:end --> "
                              "(<!-- recipe-study:begin/end -->) lines")
    results.set_defaults(func=_results)

    prompts = sub.add_parser(
        "prompts", help="how far a stage-2 run's prompts moved", formatter_class=fmt,
        description="For stage-2 (or e2e) checkpoints: the prompts' std at init and at the "
        "end, their relative change, the cosine between each class's initial and final "
        "embedding (through the run's frozen encoder) and the mean L_text of the last logged "
        "iterations. The initial prompts are drawn again from the run's seed. Example: "
        "textseg-train prompts runs/cpu_protocol/pilot_*/last.pt --json pilot.json")
    prompts.add_argument("checkpoints", nargs="+", type=Path)
    prompts.add_argument("--json", type=Path, default=None, help="also write the rows here")
    prompts.set_defaults(func=_prompts)
    weak_tags = sub.add_parser(
        "weak-tags", help="tile tags for training from tags (the weak mode's only use of the "
        "train masks)", formatter_class=fmt,
        description="Cut every CamVid train frame into a ROWSxCOLS grid; a tile's tags are the "
        "classes covering at least THRESHOLD of its pixels (void never counts). Writes the "
        "tags file and prints tags per tile, single-tag and untagged tiles, the tag rate range "
        "over classes and the floor of filling each tile with one of its tags. Example: "
        "textseg-train weak-tags --grid 3x4 --output runs/weak/camvid_tags_3x4.npz")
    weak_tags.add_argument("--data-root", type=Path, default=Path("../shared/datasets/camvid"))
    weak_tags.add_argument("--grid", default="3x4", help="tile grid ROWSxCOLS")
    weak_tags.add_argument("--threshold", type=float, default=0.01,
                           help="smallest share of a tile's pixels that makes a tag")
    weak_tags.add_argument("--output", type=Path, required=True, help="tags file (.npz)")
    weak_tags.add_argument("--results", type=Path, default=None,
                           help="results JSON to record the statistics in (key 'tags')")
    weak_tags.set_defaults(func=_weak_tags)

    weak_pseudo = sub.add_parser(
        "weak-pseudo", help="pseudo labels of the train frames per tile grid, scored (the "
        "gate before decoder training)", formatter_class=fmt,
        description="Runs the frozen tower over the train frames once, then per grid: the "
        "tile tags, the tag head trained on them, and the pseudo labels of CAM, CAM + frozen "
        "affinity and + PAR, scored against the masks (which only score). Prints mIoU "
        "(uncertain pixels as misses), mIoU of the labelled pixels and coverage. Example: "
        "textseg-train weak-pseudo --grids 1x1 2x2 3x4 4x6 --results "
        "training/results/camvid_weak.json --strip docs/images/weak_pseudo_strip.png")
    weak_pseudo.add_argument("--data-root", type=Path,
                             default=Path("../shared/datasets/camvid"))
    weak_pseudo.add_argument("--grids", nargs="+", default=["1x1", "2x2", "3x4", "4x6"])
    weak_pseudo.add_argument("--threshold", type=float, default=0.01)
    weak_pseudo.add_argument("--tower", default="efficientnet_lite0",
                             help="frozen image tower (efficientnet_lite0/1/2)")
    weak_pseudo.add_argument("--frames", type=int, default=None,
                             help="use N train frames spread over the split (default: all)")
    weak_pseudo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                             help="pipeline setting, e.g. label_stride=8 uncertain_scale=0.5")
    weak_pseudo.add_argument("--seed", type=int, default=0)
    weak_pseudo.add_argument("--results", type=Path, default=None,
                             help="results JSON to record the sweep in")
    weak_pseudo.add_argument("--strip", type=Path, default=None,
                             help="PNG: image | ground truth | CAM | pseudo label "
                                  "(on 3x4, else the last grid)")
    weak_pseudo.set_defaults(func=_weak_pseudo)

    weak_strip = sub.add_parser(
        "weak-strip", help="a picture of a weak run: image | ground truth | CAM | pseudo label "
        "| prediction",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train frames through a `stage: weak` checkpoint: the CAM of the tile "
        "tags, the pseudo label as the run made it last (refined by the RFM once it started) "
        "and the decoder's prediction. The ground truth is drawn for comparison only.\n\n"
        "example:\n  textseg-train weak-strip runs/weak/weak_weclip_seed0/last.pt "
        "--output docs/images/weak_strip.png")
    weak_strip.add_argument("checkpoint", type=Path)
    weak_strip.add_argument("--output", type=Path, required=True, help="PNG to write")
    weak_strip.add_argument("--frames", type=int, default=4, help="rows (train frames)")
    weak_strip.set_defaults(func=_weak_strip)

    weak_report = sub.add_parser(
        "weak-report", help="the weak experiment's tables from its results JSON",
        formatter_class=fmt,
        description="Print the tables of training/results/camvid_weak.json (tag statistics, "
        "the pseudo-label sweep); --update writes them into a markdown file between its "
        "<!-- weak:begin --> and <!-- weak:end --> lines.")
    weak_report.add_argument("file", type=Path)
    weak_report.add_argument("--update", type=Path, default=None, metavar="MARKDOWN")
    weak_report.set_defaults(func=_weak_report)

    check = sub.add_parser("check-data", help="validate a dataset before training",
                           formatter_class=fmt)
    check.add_argument("config", type=Path, help=CONFIG_HELP)
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    check.add_argument("--limit", type=int, help="check only the first N items per split")
    check.set_defaults(func=_check_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"textseg-train {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
