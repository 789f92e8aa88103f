"""`textseg robustness [--model MODEL]`: how a model's labels degrade under camera corruptions,
scored through segmentation_node over DDS.

For the clean frames and then every corruption x severity (textseg.replay.corruptions), the
CamVid-layout frames (default: CamVid val) are corrupted (deterministically: seed, frame index),
written as a bag beside the report, replayed through a fresh node process in lockstep
(`textseg replay`'s machinery: every frame answered, labels matched by stamp) and scored; the
bag is removed once scored. Writes to --output:
  robustness.json   every condition's mIoU, per-class IoU and frames answered, the command,
                    the model and the CPU
  report.md         mIoU per family and severity, and relative to clean
  robustness.png    mIoU relative to clean against severity, one line per family
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from textseg.replay.corruptions import FAMILIES, SEVERITIES, check_corruption, corrupt

CLEAN = "clean"


@dataclass
class RobustnessOptions:
    images: Path  # CamVid layout: frames here, labels in the sibling IMAGESannot/
    output: Path
    model: str = ""
    backend: str = "auto"
    threads: int = 0
    families: tuple[str, ...] = FAMILIES
    severities: tuple[int, ...] = SEVERITIES
    seed: int = 0
    limit: int | None = None
    show_progress: bool = True
    command: str = ""
    health: bool = False  # validate the node's labels/health against each window's mIoU

    def check(self) -> None:
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {self.seed}")
        if not self.families or not self.severities:
            raise ValueError("robustness needs at least one family and one severity")
        for family in self.families:
            for severity in self.severities:
                check_corruption(family, severity)


@dataclass
class Condition:
    family: str
    severity: int  # 0 for clean
    miou: float | None = None
    per_class_iou: dict[str, float | None] = field(default_factory=dict)
    frames_scored: int = 0
    seconds: float = 0.0
    # health: (last frame index, score, level, mIoU of the window's frames) per window
    windows: list[tuple[int, float | None, int, float | None]] = field(default_factory=list)

    def record(self) -> dict:
        return {"family": self.family, "severity": self.severity,
                "miou": None if self.miou is None else round(self.miou, 2),
                "per_class_iou": self.per_class_iou, "frames_scored": self.frames_scored,
                "seconds": round(self.seconds, 1),
                **({"windows": [[i, None if s is None else round(s, 4), level,
                                 None if m is None else round(m, 2)]
                                for i, s, level, m in self.windows]} if self.windows else {})}


# The validation's "fell": a window at severity >= 3 that lost >= 10 points against clean.
DROP_POINTS, MIN_SEVERITY = 10.0, 3


def frame_seed(seed: int, index: int) -> int:
    """Each frame's own draws (streak positions, noise), the same in every run."""
    return seed * 1_000_003 + index


def _score_condition(options: RobustnessOptions, labels: Path, family: str, severity: int,
                     scratch: Path) -> Condition:
    from textseg.replay.dataset import CAMVID_META, bag_from_dataset, remove_bag
    from textseg.replay.ros_replay import ReplayOptions, run_replay

    started = time.monotonic()
    bag = scratch / f"{family}_{severity}"
    transform = None if family == CLEAN else (
        lambda rgb, index: corrupt(rgb, family, severity, frame_seed(options.seed, index)))
    try:
        bag_from_dataset(options.images, bag, labels, limit=options.limit, meta=CAMVID_META,
                         compress_storage=True, force=True, transform=transform)
        run = run_replay(ReplayOptions(bag=bag, model=options.model, backend=options.backend,
                                       threads=options.threads, show_progress=False,
                                       strip_rows=0, health=options.health))
    finally:
        if bag.exists():
            remove_bag(bag)
    figures = run.figures()
    metrics = figures["metrics"]

    def percent(value):
        return None if value is None else round(100 * value, 2)

    return Condition(family, severity,
                     None if metrics["miou"] is None else 100 * metrics["miou"],
                     {c["name"]: percent(c["iou"]) for c in metrics["per_class"]},
                     figures["frames"].get("scored", 0), time.monotonic() - started,
                     health_windows(run) if options.health else [])


def health_windows(run) -> list[tuple[int, float | None, int, float | None]]:
    """Per frame that closes a full window of the node's health (its health_window):
    that frame's health score and level, and the mIoU of the window's frames."""
    from textseg.replay.metrics import scores

    matrices = run.scorer.frame_matrices or {}
    # the node's health_window: the most frames its statuses said they judged
    full = max((window for _, _, window in run.health.values()), default=0)
    found = []
    for index in sorted(run.health):
        level, score, window = run.health[index]
        frames = [matrices[i] for i in range(index - full + 1, index + 1) if i in matrices]
        if window < full or len(frames) < full:
            continue
        miou = scores(sum(frames)).miou
        found.append((index, score, level, None if miou != miou else 100 * miou))
    return found


def run_robustness(options: RobustnessOptions, say=print) -> dict:
    """Score every condition; write the JSON, the report and the chart; return the data."""
    from textseg.cpu import cpu_features
    from textseg.engine import default_model_path
    from textseg.replay.dataset import camvid_label_folder

    options.check()
    if not options.images.is_dir():
        where = "" if options.images.is_absolute() else f" (from {Path.cwd()})"
        raise FileNotFoundError(f"frames not found at {options.images}{where}: pass --images "
                                "DIR, a folder of frames with labels in DIRannot")
    labels = camvid_label_folder(options.images)
    if labels is None:
        raise FileNotFoundError(f"no ground truth beside {options.images} (expected "
                                f"{options.images.parent / (options.images.name + 'annot')})")
    model = Path(options.model) if options.model else default_model_path()
    if options.health:
        _check_health_run(options, model, labels)
    options.output.mkdir(parents=True, exist_ok=True)
    scratch = options.output / ".bags"
    scratch.mkdir(exist_ok=True)
    plan = [(CLEAN, 0)] + [(f, s) for f in options.families for s in options.severities]
    conditions: list[Condition] = []
    try:
        for number, (family, severity) in enumerate(plan, 1):
            condition = _score_condition(options, labels, family, severity, scratch)
            conditions.append(condition)
            name = CLEAN if family == CLEAN else f"{family} {severity}"
            say(f"[{number}/{len(plan)}] {name:<18} mIoU {_cell(condition.miou)} "
                f"({condition.frames_scored} frames, {condition.seconds:.0f} s)")
    finally:
        if scratch.exists() and not any(scratch.iterdir()):
            scratch.rmdir()
    data = {"kind": "robustness", "command": options.command, "model": str(model),
            "images": str(options.images), "frames_limit": options.limit,
            "seed": options.seed, "backend": options.backend, "cpu": cpu_features().record(),
            "conditions": [c.record() for c in conditions]}
    if options.health:
        data["health_validation"] = health_validation(data)
    write_outputs(options.output, data)
    return data


def _check_health_run(options: RobustnessOptions, model: Path, labels: Path) -> None:
    """--health judges windows of the node's health: refuse, before any replay, a model
    without a reference (every score would be empty) and fewer frames than one window."""
    from textseg.engine.onnx_file import read_onnx_model
    from textseg.health import HEALTH_KEY
    from textseg.node.parameters import NodeParameters
    from textseg.replay.dataset import pair_files

    if HEALTH_KEY not in read_onnx_model(model).metadata:
        raise ValueError(f"--health needs a model with a health reference; {model} has none "
                         f"(`textseg health-reference {model} FRAMES` adds one)")
    window = NodeParameters().health_window
    frames = len(pair_files(options.images, labels))
    if options.limit is not None:
        frames = min(frames, options.limit)
    if frames < window:
        limited = "" if options.limit is None else f" with --limit {options.limit}"
        raise ValueError(f"--health needs at least {window} frames (the node's health_window); "
                         f"{options.images}{limited} gives {frames}")


def _cell(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def relative_table(data: dict) -> tuple[float | None, dict[str, dict[int, float | None]]]:
    """Clean mIoU and, per family, severity -> mIoU."""
    clean = next((c["miou"] for c in data["conditions"] if c["family"] == CLEAN), None)
    table: dict[str, dict[int, float | None]] = {}
    for c in data["conditions"]:
        if c["family"] != CLEAN:
            table.setdefault(c["family"], {})[c["severity"]] = c["miou"]
    return clean, table


def _ranks(values: list[float]) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    sorted_values = np.asarray(values)[order]
    start = 0
    for end in range(1, len(values) + 1):  # ties share their mean rank
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end - 1) / 2
            start = end
    return ranks


def spearman(a: list[float], b: list[float]) -> float | None:
    if len(a) < 3:
        return None
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def health_validation(data: dict, drop_points: float = DROP_POINTS,
                      min_severity: int = MIN_SEVERITY) -> dict:
    """How the node's health windows match the windows' measured mIoU: WARN (or ERROR) on
    clean windows (false alarms), rank correlation of score and mIoU over every window, and
    WARN where a window at severity >= `min_severity` lost >= `drop_points` of mIoU against the
    clean window ending at the same frame (misses), per family and severity too."""
    clean = next((c for c in data["conditions"] if c["family"] == CLEAN), None)
    if clean is None or not clean.get("windows"):
        return {}
    clean_miou = {w[0]: w[3] for w in clean["windows"]}
    scores_, mious, rows = [], [], []
    fell_warned = fell_total = 0
    by_family: dict[str, list[int]] = {}  # family -> [fallen windows, flagged of them]
    for c in data["conditions"]:
        windows = [w for w in c.get("windows", []) if w[1] is not None and w[3] is not None]
        scores_ += [w[1] for w in windows]
        mious += [w[3] for w in windows]
        drops = [clean_miou[w[0]] - w[3] for w in windows if clean_miou.get(w[0]) is not None]
        fell = [w for w in windows if clean_miou.get(w[0]) is not None
                and clean_miou[w[0]] - w[3] >= drop_points]
        warned = sum(1 for w in fell if w[2] >= 1)
        if c["severity"] >= min_severity:
            fell_total += len(fell)
            fell_warned += warned
            if fell:
                counts = by_family.setdefault(c["family"], [0, 0])
                counts[0] += len(fell)
                counts[1] += warned
        rows.append({"family": c["family"], "severity": c["severity"], "windows": len(windows),
                     "mean_score": _mean([w[1] for w in windows]),
                     "warn_share": _mean([float(w[2] >= 1) for w in windows]),
                     "mean_miou_drop": _mean(drops), "fell": len(fell), "fell_warned": warned})
    clean_row = rows[0]
    return {"clean_false_alarm_share": clean_row["warn_share"],
            "spearman_score_miou": spearman(scores_, mious), "windows": len(scores_),
            "warned_when_fell": fell_warned / fell_total if fell_total else None,
            "fell_windows": fell_total, "drop_points": drop_points,
            "min_severity": min_severity, "rows": rows,
            # per family: its windows at severity >= min_severity that fell, and the share
            # flagged (the validation asks >= 90 % for every family)
            "per_family": {f: {"fell": n, "warned_when_fell": warned / n}
                           for f, (n, warned) in by_family.items()}}


def _percent(share: float | None) -> float | None:
    return None if share is None else 100 * share


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def render_markdown(data: dict) -> str:
    clean, table = relative_table(data)
    severities = sorted({s for row in table.values() for s in row})
    head = "| corruption | " + " | ".join(f"sev {s}" for s in severities) + " | mean |"
    rule = "|---|" + "---:|" * (len(severities) + 1)
    lines = [f"# Robustness of {Path(data['model']).name}", "",
             f"Clean mIoU **{_cell(clean)}** on {data['images']} "
             f"({data['conditions'][0]['frames_scored']} frames), through segmentation_node "
             f"over DDS; CPU: {data['cpu']['description']}.", "",
             "## mIoU (%)", "", head, rule]
    relative_rows = []
    for family, row in table.items():
        values = [row.get(s) for s in severities]
        known = [v for v in values if v is not None]
        mean = sum(known) / len(known) if known else None
        lines.append(f"| {family} | " + " | ".join(_cell(v) for v in values)
                     + f" | {_cell(mean)} |")
        if clean:
            relative = [None if v is None else 100 * v / clean for v in values]
            known_rel = [v for v in relative if v is not None]
            mean_rel = sum(known_rel) / len(known_rel) if known_rel else None
            relative_rows.append(f"| {family} | " + " | ".join(_cell(v, 1) for v in relative)
                                 + f" | {_cell(mean_rel, 1)} |")
    if relative_rows:
        lines += ["", "## Relative to clean (% of its mIoU)", "", head, rule, *relative_rows]
    validation = data.get("health_validation") or {}
    if validation:
        v = validation
        lines += ["", "## Health signal (labels/health) against the windows' mIoU", "",
                  f"Clean windows flagged (WARN or ERROR): "
                  f"{_cell(_percent(v['clean_false_alarm_share']), 1)} %; Spearman rank "
                  f"correlation of score and window mIoU over {v.get('windows', '-')} windows: "
                  f"{_cell(v['spearman_score_miou'], 3)}; "
                  f"windows at severity >= {v['min_severity']} that lost >= "
                  f"{v['drop_points']:g} points against clean: {v['fell_windows']}, flagged "
                  f"{_cell(_percent(v['warned_when_fell']), 1)} %.", "",
                  *([f"Flagged of the windows that lost >= {v['drop_points']:g} points at "
                     f"severity >= {v['min_severity']}, per family: " + ", ".join(
                         f"{f} {_cell(_percent(r['warned_when_fell']), 0)} % of {r['fell']}"
                         for f, r in v["per_family"].items()) + ".", ""]
                    if v.get("per_family") else []),
                  f"A window is the node's last health_window frames at a frame; flagged: "
                  f"its level was WARN or ERROR (`warn_share` in robustness.json); mIoU drop: "
                  f"against the clean window ending at the same frame; lost >= "
                  f"{v['drop_points']:g}: windows that lost at least that many points, and how "
                  "many of them were flagged.", "",
                  "| corruption | severity | windows | mean score | flagged % | mean mIoU drop "
                  f"| lost >= {v['drop_points']:g} | of those flagged |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in v["rows"]:
            lines.append(f"| {r['family']} | {r['severity']} | {r['windows']} | "
                         f"{_cell(r['mean_score'], 3)} | {_cell(_percent(r['warn_share']), 1)} "
                         f"| {_cell(r['mean_miou_drop'], 1)} | {r['fell']} | "
                         f"{r['fell_warned']} |")
    lines += ["", f"Command: `{data['command']}`" if data["command"] else "", ""]
    return "\n".join(lines)


def write_outputs(output: Path, data: dict) -> None:
    from textseg.fileio import atomic_write_bytes
    from textseg.replay.charts import line_chart, png_bytes

    clean, table = relative_table(data)
    atomic_write_bytes(output / "robustness.json", (json.dumps(data, indent=1) + "\n").encode())
    atomic_write_bytes(output / "report.md", render_markdown(data).encode())
    if clean and table:
        severities = sorted({s for row in table.values() for s in row})
        series = {family: [None if row.get(s) is None else 100 * row[s] / clean
                           for s in severities] for family, row in table.items()}
        chart = line_chart([float(s) for s in severities], series,
                           f"{Path(data['model']).name}: mIoU relative to clean "
                           f"({clean:.1f})", "severity", "% of clean mIoU", (0.0, 110.0))
        atomic_write_bytes(output / "robustness.png", png_bytes(chart))


def robustness_command(args) -> int:
    import shlex

    options = RobustnessOptions(
        images=args.images, output=args.output, model=args.model, backend=args.backend,
        threads=args.threads, families=tuple(args.families), severities=tuple(args.severities),
        seed=args.seed, limit=args.limit, show_progress=not args.quiet, health=args.health,
        command="textseg " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    data = run_robustness(options, say=(lambda line: None) if args.quiet else print)
    clean, table = relative_table(data)
    print(f"\nclean mIoU {_cell(clean)}; report {args.output / 'report.md'}, chart "
          f"{args.output / 'robustness.png'}")
    v = data.get("health_validation") or {}
    if v:
        print(f"health: clean windows flagged {_cell(_percent(v['clean_false_alarm_share']), 1)} "
              f"%, Spearman {_cell(v['spearman_score_miou'], 3)} over {v['windows']} windows, "
              f"flagged {_cell(_percent(v['warned_when_fell']), 1)} % of the "
              f"{v['fell_windows']} windows that lost >= {v['drop_points']:g} points at "
              f"severity >= {v['min_severity']}")
    return 0
