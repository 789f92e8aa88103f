"""The `textseg` subcommands of rosbag replay evaluation: bag-from-dataset, replay, eval-offline.

`add_commands(subparsers)` registers them on the runtime CLI (src/textseg/cli.py).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from textseg.cli_args import BACKEND_CHOICES, DEFAULT_IMAGES
from textseg.replay.bagio import STORAGES, DatasetMeta
from textseg.replay.dataset import COMPRESSED_FORMATS, ENCODINGS

DEFAULT_OUT = Path("out")
ROBUSTNESS_HELP = """\
How a model's labels degrade under camera corruptions, scored through segmentation_node.

The clean frames, then each corruption (Gaussian noise, motion and defocus blur, fog, low
light, over-exposure, JPEG, rain, lens dirt) at each severity 1 (mild) to 5, each written as a
bag, replayed through a fresh segmentation_node over DDS in lockstep and scored like
`textseg replay`. Corruptions are deterministic (--seed and the frame index).

Writes to --output: robustness.json (every condition's mIoU and per-class IoU, the CPU),
report.md (mIoU per family and severity, and relative to clean), robustness.png.
The whole grid on CamVid val is 46 replays; --families, --severities and --limit shorten it:
  textseg robustness --families fog low_light --severities 1 3 5 --limit 20
"""
AGREEMENT_POINTS = 0.1

BAG_FROM_DATASET_HELP = """\
Write an image folder (and its label folder) as a ROS 2 bag: frames as sensor_msgs/Image
(or CompressedImage with --compressed) on a camera topic at --rate Hz, ground-truth class-id
images as mono8 sensor_msgs/Image on a second topic with the same header stamps. The bag's
metadata.yaml records the dataset, class names and ignore id (custom_data textseg.*), so
`textseg replay` and `textseg eval-offline` score it right without further options.

Labels are found by file name. The CamVid layout (val/ + valannot/) is recognised: labels
from the sibling *annot folder, 11 classes, ignore id 11 (void).

examples:
  textseg bag-from-dataset ../shared/datasets/camvid/val out/bags/camvid_val
  textseg bag-from-dataset frames/ out/bags/drive --labels masks/ --ignore-id 255 \\
      --classes-from models/textseg_default.onnx --rate 30 --storage sqlite3
  textseg bag-from-dataset frames/ out/bags/drive_jpeg --no-labels --compressed jpeg
"""

REPLAY_HELP = """\
Play a bag's camera topic through segmentation_node, started in its own process and
talking over DDS on this machine only, and score what it publishes: mIoU, per-class IoU,
pixel accuracy (ground truth matched by header stamp), frames answered / dropped / skipped,
latency (publish -> labels) p50/p90/p99/max and achieved frames/s. Without ground truth it
reports coverage and latency.

Messages go out as recorded (header stamp and frame_id unchanged). --rate lockstep (the
default) sends the next frame when the previous labels arrived: as fast as the node allows,
every frame answered. --rate 1 plays the recorded timeline in real time (2 = twice as
fast); frames the node cannot take are dropped, as on a vehicle, and counted. /clock follows
the bag and the node runs with use_sim_time unless --no-sim-time.

Then (unless --no-offline) the same frames are scored with the backend called directly, as
`textseg eval-offline` does: the closing note compares both mIoUs and gives the ROS overhead
per frame (replay latency minus offline inference time). Exit code 1 when no frame was
answered or the two mIoUs differ by more than 0.1 points.

Writes to --output: report.md, report.json (every figure), frames.jsonl (one line per
frame), class_iou.png, latency.png, frames.png (image | ground truth | prediction |
overlay), and offline/ with the offline run's report.

examples:
  textseg replay out/bags/camvid_val
  textseg replay out/bags/camvid_val --rate 1 --record out/bags/camvid_val_outputs
  textseg replay drive.mcap --image-topic /camera/image_raw --labels-topic '' --no-offline
"""

OFFLINE_HELP = """\
Score a bag like `textseg replay`, but with the backend called directly: no ROS, no node,
no DDS. The same frames, checks and metrics, so the difference to a replay is what ROS
costs. Latency here is decode + inference per frame (inference alone is reported too).

examples:
  textseg eval-offline out/bags/camvid_val
  textseg eval-offline drive.mcap --model my_model.onnx --ignore-id 255 --limit 500
"""


def _rate(text: str) -> float | None:
    if text.strip().lower() in ("lockstep", "max"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'lockstep' or a positive factor, got "
                                         f"{text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"the rate factor must be positive, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"threads must be 0 (all cores) or more, got {value}")
    return value


def _ignore_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a class id 0..255, got {text!r}") from None
    if not 0 <= value <= 255:
        raise argparse.ArgumentTypeError(f"the ignore id must be 0..255, got {value}")
    return value


def _topic_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image-topic", default=None,
                        help="camera topic (Image or CompressedImage); default: from the bag's "
                        "metadata, else its only camera topic")
    parser.add_argument("--labels-topic", default=None,
                        help="ground-truth topic (mono8 Image); default: from the bag's "
                        "metadata, else an Image topic named like labels; '' = ignore ground "
                        "truth")
    parser.add_argument("--ignore-id", type=_ignore_id, default=None,
                        help="ground-truth id left out of the scores; default: the bag's "
                        "metadata (CamVid bags: 11), else 255")
    parser.add_argument("--limit", type=_positive_int, default=None,
                        help="only the first N frames")
    parser.add_argument("--strip", type=int, default=4, metavar="N",
                        help="frames in the picture strip (evenly spread)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="", help="textseg ONNX model ('' = default artifact)")
    parser.add_argument("--backend", default="auto", choices=BACKEND_CHOICES)
    parser.add_argument("--threads", type=_threads, default=0,
                        help="ONNX Runtime threads (0 = all cores); replay and offline use "
                        "the same")


def add_commands(sub) -> None:
    """Register bag-from-dataset, replay and eval-offline on the CLI's subparsers."""
    formatter = argparse.RawDescriptionHelpFormatter
    make = sub.add_parser(
        "bag-from-dataset", help="write an image folder (+ labels) as a ROS 2 bag",
        description=BAG_FROM_DATASET_HELP, formatter_class=formatter)
    make.add_argument("images", type=Path, help="folder of frames (png/jpg), in name order")
    make.add_argument("output", type=Path, help="bag folder to create")
    labels = make.add_mutually_exclusive_group()
    labels.add_argument("--labels", type=Path, default=None,
                        help="folder of class-id label images, same file names (default: the "
                        "CamVid sibling IMAGESannot/ when present)")
    labels.add_argument("--no-labels", action="store_true", help="write the frames only")
    make.add_argument("--storage", default="mcap", choices=STORAGES,
                      help="bag storage (default: mcap)")
    make.add_argument("--rate", type=float, default=10.0,
                      help="frames per second of the recorded timeline (default: 10)")
    make.add_argument("--image-topic", default="/camera/image",
                      help="camera topic (default: /camera/image; with --compressed "
                      "/compressed is appended)")
    make.add_argument("--labels-topic", default="/camera/labels",
                      help="ground-truth topic (default: /camera/labels)")
    make.add_argument("--frame-id", default="camera", help="header frame_id (default: camera)")
    make.add_argument("--encoding", default="rgb8", choices=ENCODINGS,
                      help="raw image encoding (default: rgb8)")
    make.add_argument("--compressed", default=None, choices=COMPRESSED_FORMATS,
                      help="write sensor_msgs/CompressedImage instead of raw images")
    make.add_argument("--start", type=float, default=None,
                      help="stamp of the first frame, seconds since the epoch (default: "
                      "1700000000, so the same folder gives the same bag)")
    make.add_argument("--limit", type=_positive_int, default=None,
                      help="only the first N frames")
    make.add_argument("--ignore-id", type=_ignore_id, default=None,
                      help="label id meaning 'unlabelled', stored in the bag (default: 11 for "
                      "CamVid, else 255)")
    make.add_argument("--class-names", default=None,
                      help="comma-separated class names of ids 0..K-1, stored in the bag")
    make.add_argument("--classes-from", default=None, metavar="MODEL",
                      help="take the class names from a textseg model")
    make.add_argument("--dataset", default=None, help="dataset name stored in the bag")
    make.add_argument("--zstd", action="store_true",
                      help="compress the bag (MCAP chunks / sqlite3 messages) with zstd")
    make.add_argument("--force", action="store_true", help="replace an existing bag")
    make.add_argument("--quiet", action="store_true", help="no progress bar")
    make.set_defaults(func=bag_from_dataset_command)

    replay = sub.add_parser(
        "replay", help="play a bag through segmentation_node over DDS and score it",
        description=REPLAY_HELP, formatter_class=formatter)
    replay.add_argument("bag", type=Path, help="bag folder, .mcap or .db3")
    _model_arguments(replay)
    replay.add_argument("--rate", type=_rate, default=None, metavar="lockstep|FACTOR",
                        help="'lockstep' (default: next frame when the labels arrived) or a "
                        "factor of the recorded timeline (1 = real time)")
    replay.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for one frame's labels (default: 10)")
    replay.add_argument("--startup-timeout", type=float, default=120.0,
                        help="seconds for the node to start and answer a warm-up frame "
                        "(default: 120; bake TensorRT engines first with `textseg bake`)")
    replay.add_argument("--no-sim-time", action="store_true",
                        help="no /clock from the bag; the node runs on the wall clock")
    replay.add_argument("--record", type=Path, default=None, metavar="BAG",
                        help="also write a new MCAP bag with the frames, the node's labels "
                        "and colour masks and the coloured ground truth (Foxglove, RViz)")
    replay.add_argument("--no-offline", action="store_true",
                        help="skip the offline comparison")
    _topic_arguments(replay)
    replay.add_argument("--output", type=Path, default=None,
                        help="report folder (default: out/replay/BAGNAME)")
    replay.set_defaults(func=replay_command)

    offline = sub.add_parser(
        "eval-offline", help="score a bag with the backend called directly (no ROS)",
        description=OFFLINE_HELP, formatter_class=formatter)
    offline.add_argument("bag", type=Path, help="bag folder, .mcap or .db3")
    _model_arguments(offline)
    _topic_arguments(offline)
    offline.add_argument("--output", type=Path, default=None,
                         help="report folder (default: out/eval-offline/BAGNAME)")
    offline.set_defaults(func=eval_offline_command)

    from textseg.replay.corruptions import FAMILIES, SEVERITIES

    robust = sub.add_parser(
        "robustness", help="score a model under camera corruptions through the node over DDS",
        description=ROBUSTNESS_HELP, formatter_class=formatter)
    _model_arguments(robust)
    robust.add_argument("--images", type=Path, default=DEFAULT_IMAGES,
                        help="CamVid-layout frames (labels in the sibling *annot folder); "
                        "default %(default)s, from the current folder")
    robust.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES,
                        metavar="FAMILY", help=f"corruptions: {', '.join(FAMILIES)}")
    robust.add_argument("--severities", nargs="+", type=int, default=list(SEVERITIES),
                        choices=SEVERITIES, metavar="N", help="severities, 1 (mild) to 5")
    robust.add_argument("--seed", type=int, default=0, help="seed of the corruptions' draws")
    robust.add_argument("--limit", type=_positive_int, default=None,
                        help="only the first N frames")
    robust.add_argument("--output", type=Path, default=DEFAULT_OUT / "robustness",
                        help="report folder")
    robust.add_argument("--health", action="store_true",
                        help="also validate the node's labels/health: per window of frames, "
                        "its score and level against the window's mIoU (the model needs a "
                        "health reference)")
    robust.add_argument("--quiet", action="store_true", help="one line at the end only")
    robust.set_defaults(func=_guarded(_robustness))


def _guarded(run):
    """File-system errors become one clear line (exit 2); Ctrl-C exits 130 without a trace."""
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except KeyboardInterrupt:
            print(f"\ntextseg {args.command}: interrupted", file=sys.stderr)
            return 130
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise RuntimeError(str(exc)) from None
    wrapper.__name__ = run.__name__
    return wrapper


def _bag_name(bag: Path) -> str:
    return bag.stem if bag.suffix in (".mcap", ".db3") else bag.name


# --- bag-from-dataset --------------------------------------------------------------------

@_guarded
def bag_from_dataset_command(args: argparse.Namespace) -> int:
    from textseg.replay.dataset import (
        CAMVID_CLASSES,
        CAMVID_VOID,
        DEFAULT_IGNORE_ID,
        DEFAULT_START_S,
        bag_from_dataset,
        camvid_label_folder,
        looks_like_camvid,
    )
    from textseg.replay.progress import Progress

    images: Path = args.images
    if not images.is_dir():
        raise FileNotFoundError(f"image folder not found: {images}")
    labels = args.labels
    notes = []
    if labels is None and not args.no_labels:
        labels = camvid_label_folder(images)
        if labels is not None:
            notes.append(f"labels from {labels} (CamVid layout; --no-labels to leave out)")
    camvid = labels is not None and looks_like_camvid(images)
    class_names = None
    if args.class_names:
        class_names = tuple(n.strip() for n in args.class_names.split(",") if n.strip())
    elif args.classes_from:
        from textseg.engine import load_backend

        model = load_backend(args.classes_from)
        class_names = tuple(model.info.class_names)
        model.close()
    elif camvid:
        class_names = CAMVID_CLASSES
    ignore = args.ignore_id
    if ignore is None:
        ignore = CAMVID_VOID if camvid else DEFAULT_IGNORE_ID
    if camvid:
        notes.append(f"recognised CamVid: {len(CAMVID_CLASSES)} classes, ignore id "
                     f"{CAMVID_VOID} (void)")
    meta = DatasetMeta(dataset=args.dataset or ("camvid" if camvid else None),
                       class_names=class_names, ignore_id=ignore if labels else None)
    total = len([p for p in images.iterdir() if p.suffix.lower() in
                 (".png", ".jpg", ".jpeg", ".bmp")])
    if args.limit:
        total = min(total, args.limit)
    for note in notes:
        print(f"note    {note}")
    progress = Progress("writing", total, enabled=not args.quiet)
    try:
        result = bag_from_dataset(
            images, args.output, labels, args.storage, args.rate, args.image_topic,
            args.labels_topic, args.frame_id, args.encoding, args.compressed,
            DEFAULT_START_S if args.start is None else args.start, args.limit, meta,
            args.force, args.zstd, progress=progress.update)
    except FileExistsError as exc:
        raise ValueError(str(exc)) from None
    finally:
        progress.close()
    sizes = ", ".join(f"{w}x{h}" for h, w in sorted(result.sizes))
    kind = (f"CompressedImage {args.compressed}" if args.compressed
            else f"Image {args.encoding}")
    rows = [("bag", f"{result.path} ({args.storage}{', zstd' if args.zstd else ''}, "
                    f"{result.bytes / 1e6:.1f} MB)"),
            ("frames", f"{result.frames} at {args.rate:g} Hz ({sizes}), "
                       f"{result.frames / args.rate:.1f} s of recorded time"),
            ("camera topic", f"{result.image_topic} ({kind})"),
            ("ground truth", f"{result.labels_topic} (mono8, same stamps)"
                             if result.labels_topic else "none"),
            ("classes", f"{len(class_names)}: {', '.join(class_names)}" if class_names
                        else "not recorded (pass --class-names or --classes-from)"),
            ("ignore id", str(meta.ignore_id) if meta.ignore_id is not None else "n/a"),
            ("took", f"{result.seconds:.1f} s")]
    _print_table(rows)
    print(f"\nnext: textseg replay {result.path}")
    return 0


# --- eval-offline --------------------------------------------------------------------------

@_guarded
def eval_offline_command(args: argparse.Namespace) -> int:
    from textseg.replay.offline import evaluate_offline
    from textseg.replay.report import write_report

    output = args.output or DEFAULT_OUT / "eval-offline" / _bag_name(args.bag)
    run = evaluate_offline(args.bag, args.model, args.backend, args.threads, args.image_topic,
                           args.labels_topic, args.ignore_id, args.limit, args.strip,
                           output / "frames.jsonl", not args.quiet)
    data = offline_data(run)
    paths = write_report(output, data, run.scorer, "offline")
    _print_summary(data, None, paths["markdown"], "offline")
    return 0 if run.scorer.answered_count else 1


def offline_data(run) -> dict:
    data = {"kind": "offline", "context": run.setup.context(),
            "run": {"backend": run.backend_description, "threads": run.threads,
                    "limit": run.limit}}
    data.update(run.figures())
    frames = data["frames"]
    if run.reference_indices is not None:
        frames["not_compared"] = frames["seen"] - frames["answered"] - frames["skipped"]
    return data


# --- replay --------------------------------------------------------------------------------

@_guarded
def replay_command(args: argparse.Namespace) -> int:
    from textseg.replay.offline import compare, evaluate_offline
    from textseg.replay.report import write_report
    from textseg.replay.ros_replay import ReplayOptions, run_replay

    output = args.output or DEFAULT_OUT / "replay" / _bag_name(args.bag)
    if args.record is not None and args.record.exists():
        raise ValueError(f"{args.record} already exists: --record writes a new bag")
    options = ReplayOptions(
        bag=args.bag, model=args.model, backend=args.backend, threads=args.threads,
        image_topic=args.image_topic, labels_topic=args.labels_topic,
        ignore_id=args.ignore_id, rate=args.rate, timeout=args.timeout,
        sim_time=not args.no_sim_time, record=args.record, limit=args.limit,
        strip_rows=args.strip, show_progress=not args.quiet,
        startup_timeout=args.startup_timeout)
    run = run_replay(options, output / "frames.jsonl")
    data = {"kind": "replay", "context": run.setup.context(), "run": run.run_info(),
            "node": run.node}
    data.update(run.figures())
    if run.node_exit_code not in (0, None):
        data["context"]["warnings"].append(
            f"segmentation_node exited with code {run.node_exit_code} when stopped")
    offline = None
    if not args.no_offline and run.scorer.answered_count:
        index, crc, latency, _ = run.scorer.answered_arrays()
        offline = evaluate_offline(
            args.bag, args.model, args.backend, args.threads, args.image_topic,
            args.labels_topic, args.ignore_id, args.limit, args.strip,
            output / "offline" / "frames.jsonl", not args.quiet, only_indices=index,
            label="offline")
        offline.reference_indices = index
        replay_miou = data["metrics"]["miou"]
        comparison = compare(index, crc, latency, offline, replay_miou)
        comparison["offline_per_class_iou"] = [
            c["iou"] for c in offline.figures()["metrics"]["per_class"]]
        comparison["offline_report"] = str(Path("offline") / "report.md")
        data["comparison"] = comparison
        write_report(output / "offline", offline_data(offline), offline.scorer, "offline")
    from textseg.replay.report import same_run_split

    data["ros_overhead_same_run_ms"] = same_run_split(data)
    paths = write_report(output, data, run.scorer, "replay")
    _print_summary(data, offline, paths["markdown"], "replay")
    if not run.scorer.answered_count:
        print("the node answered no frame; its log ends:\n" + run.node_log_tail,
              file=sys.stderr)
        return 1
    diff = (data.get("comparison") or {}).get("miou_difference_points")
    if diff is not None and abs(diff) > AGREEMENT_POINTS:
        print(f"replay and offline mIoU differ by {diff:+.4f} points (> {AGREEMENT_POINTS})",
              file=sys.stderr)
        return 1
    return 0


# --- printing --------------------------------------------------------------------------------

def _print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows) + 2
    for key, value in rows:
        print(f"{key:<{width}}{value}")


def _fmt(value, digits: int = 1, scale: float = 1.0, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value * scale:.{digits}f}{suffix}"


def _print_summary(data: dict, offline, report: Path, kind: str) -> None:
    frames, metrics, lat = data["frames"], data["metrics"], data["latency_ms"]
    ctx = data["context"]
    cmp_ = data.get("comparison")
    print()
    print(f"{'replay' if kind == 'replay' else 'eval-offline'}  {Path(ctx['bag']).name}: "
          f"{frames['in_bag']} frames, model {Path(ctx['model']).name} "
          f"({ctx['training_stage']}), ignore id {ctx['ignore_id']}")
    if kind == "replay":
        print(f"        {data['run']['mode_text']}")
    print()
    header = ("", "replay", "offline", "difference") if cmp_ else ("", kind)
    rows: list[tuple[str, ...]] = []
    if cmp_:
        ofig = offline.figures() if offline is not None else None
        ol, oi = cmp_["offline_per_frame_ms"], cmp_["offline_inference_ms"]
        ov = cmp_["ros_overhead_vs_inference_ms"]
        diff = cmp_["miou_difference_points"]
        rows += [
            ("mIoU %", _fmt(cmp_["replay_miou"], 3, 100), _fmt(cmp_["offline_miou"], 3, 100),
             "n/a" if diff is None else f"{diff:+.4f} points"),
            ("pixel accuracy %", _fmt(metrics["pixel_accuracy"], 2, 100),
             _fmt(ofig["metrics"]["pixel_accuracy"], 2, 100) if ofig else "", ""),
            ("frames answered", f"{frames['answered']}/{frames['sent']}",
             f"{ofig['frames']['answered']}" if ofig else "", ""),
            ("dropped / skipped", f"{frames['dropped']} / {frames['skipped']}",
             f"- / {ofig['frames']['skipped']}" if ofig else "", ""),
            ("latency p50 ms", _fmt(lat["p50"]), f"{_fmt(oi['p50'])} infer, "
             f"{_fmt(ol['p50'])} +decode", f"{_fmt(ov['p50'])} ROS overhead"),
            ("latency p90 / p99 ms", f"{_fmt(lat['p90'])} / {_fmt(lat['p99'])}",
             f"{_fmt(oi['p90'])} / {_fmt(oi['p99'])}", ""),
            ("latency max ms", _fmt(lat["max"]), _fmt(oi["max"]), ""),
            ("frames/s", _fmt(data["throughput"]["fps"], 2), _fmt(cmp_["offline_fps"], 2), ""),
            ("identical predictions", f"{cmp_['identical_predictions']}/"
             f"{cmp_['frames_compared']}", "", ""),
        ]
    else:
        inf = data["inference_ms"]
        rows += [("mIoU %", _fmt(metrics["miou"], 3, 100)),
                 ("pixel accuracy %", _fmt(metrics["pixel_accuracy"], 2, 100)),
                 ("frames answered", f"{frames['answered']}/{frames.get('sent', frames['seen'])}"),
                 ("dropped / skipped", f"{frames['dropped']} / {frames['skipped']}"),
                 ("frames scored", str(frames["scored"])),
                 ("latency p50 / p90 / p99 ms",
                  f"{_fmt(lat['p50'])} / {_fmt(lat['p90'])} / {_fmt(lat['p99'])}"),
                 ("latency max ms", _fmt(lat["max"]))]
        if inf["count"]:
            rows.append(("inference p50 / p99 ms", f"{_fmt(inf['p50'])} / {_fmt(inf['p99'])}"))
        rows.append(("frames/s", _fmt(data["throughput"]["fps"], 2)))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(f"{str(cell):<{widths[i]}}" if i == 0 else f"{str(cell):>{widths[i]}}"
                        for i, cell in enumerate(row)).rstrip())
    per_class = metrics.get("per_class") or []
    if any(c.get("iou") is not None for c in per_class):
        cells = [f"{c['name']} {_fmt(c['iou'], 1, 100)}" for c in per_class]
        print("per-class IoU %: " + ", ".join(cells))
    split = data.get("ros_overhead_same_run_ms")
    if cmp_ and split:
        print(f"ROS overhead per frame, p50: {_fmt(cmp_['ros_overhead_vs_inference_ms']['p50'])}"
              f" ms against the offline inference; {_fmt(split['overhead_p50_ms'])} ms within "
              f"the replay (latency - the node's own inference p50 "
              f"{_fmt(split['node_inference_p50_ms'])} ms)")
    for reason, count in frames["skipped_by_reason"].items():
        print(f"skipped {reason}: {count} ({frames['skip_examples'].get(reason, '')})")
    for reason, count in frames["dropped_by_reason"].items():
        print(f"dropped {reason}: {count}")
    for warning in ctx.get("warnings", []):
        print(f"note: {warning}")
    print(f"\nreport  {report}")


def _robustness(args: argparse.Namespace) -> int:
    from textseg.replay.robustness import robustness_command

    return robustness_command(args)
