"""Machine-readable experiment results: one JSON file holding a list `runs`, one entry a run.

`textseg-train train CONFIG --results FILE --row ID` appends the run's final evaluation (val
mIoU, per-class IoU, pixel accuracy), the config file and overrides, the resolved precision,
iterations and wall time. Re-running a (row, seed) replaces its entry. Written atomically, so
an interrupted write never leaves a broken file; README tables are generated from these files.
"""

from __future__ import annotations

import fcntl
import json
import math
from pathlib import Path
from typing import Any

from textseg.cpu import cpu_features
from textseg.fileio import atomic_write_bytes


def portable(value: Any) -> Any:
    """`value` with every path under the home folder written as `~/...`, recursively: results
    and model metadata are committed and shared, and must not carry one machine's paths."""
    if isinstance(value, str):
        home = str(Path.home()).rstrip("/")
        return value.replace(f"{home}/", "~/") if home else value
    if isinstance(value, dict):
        return {key: portable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [portable(item) for item in value]
    return value


def _finite(value: float) -> float | None:
    value = float(value)
    return round(value, 4) if math.isfinite(value) else None


def run_entry(row: str, config_file: str, overrides: list[str], config: dict[str, Any],
              class_names: tuple[str, ...], result: Any, iterations: int,
              wall_seconds: float | None, precision: str, heldout: Any = None
              ) -> dict[str, Any]:
    """One `runs` entry from an EvalResult (IoU values reported in percent); `heldout`, the
    EvalResult on the frames train_exclude kept out of training, adds `heldout_*` keys."""
    return {
        "row": row,
        "seed": config["seed"],
        "val_miou": _finite(100.0 * result.miou),
        "pixel_accuracy": _finite(100.0 * result.pixel_accuracy),
        "per_class_iou": {name: _finite(100.0 * iou)
                          for name, iou in zip(class_names, result.iou, strict=True)},
        **({"score_map_miou": _finite(100.0 * result.outputs["score"].miou)}
           if "score" in result.outputs else {}),
        **({"heldout": "+".join(config.get("train_exclude") or []),
            "heldout_miou": _finite(100.0 * heldout.miou),
            "heldout_per_class_iou": {name: _finite(100.0 * iou)
                                      for name, iou in zip(class_names, heldout.iou,
                                                           strict=True)}}
           if heldout is not None else {}),
        "config_file": config_file,
        "overrides": portable(list(overrides)),
        "precision": precision,
        "iterations": iterations,
        "wall_seconds": None if wall_seconds is None else round(wall_seconds, 1),
        "config": portable(config),
        "cpu": cpu_features().record(),
    }


def _read_results(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); fix or move it first") from None
    if not isinstance(data, dict) or not isinstance(data.get("runs", []), list):
        raise ValueError(f"{path}: expected an object whose 'runs' is a list")
    return data


def load_runs(path: str | Path) -> list[dict[str, Any]]:
    return _read_results(Path(path)).get("runs", [])


def record_run(path: str | Path, entry: dict[str, Any]) -> Path:
    """Add `entry` to the file's runs, replacing an earlier entry of the same row and seed;
    the file's other keys (a sweep, tag statistics) are kept. Runs training side by side may
    record into one file: the read-modify-write holds a lock (a hidden file beside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = _read_results(path)
        runs = [r for r in data.get("runs", [])
                if (r.get("row"), r.get("seed")) != (entry["row"], entry["seed"])]
        runs.append(entry)
        runs = portable(runs)  # also entries an older version wrote
        runs.sort(key=lambda r: (str(r.get("row")), r.get("seed", 0)))
        data["runs"] = runs
        text = json.dumps(data, indent=1, sort_keys=False) + "\n"
        return atomic_write_bytes(path, text.encode())


def mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, float("nan")
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def mean_pm(values: list[float], digits: int = 2) -> str:
    """'mean ± sample std' of `values` ('mean' alone for one value)."""
    mean, std = mean_std(values)
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def rows_table(runs: list[dict[str, Any]], rows: list[str] | None = None,
               classes: list[str] | None = None) -> str:
    """Markdown: one line per row id, mIoU mean ± sample std over seeds and each seed's value;
    `classes` adds those classes' mean IoU."""
    order = rows or list(dict.fromkeys(r["row"] for r in runs))
    classes = classes or []
    head = ["row", "seeds", "val mIoU % (mean ± std)", "per seed", *classes,
            "iterations", "precision", "wall min / run"]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for row in order:
        entries = [r for r in runs if r["row"] == row]
        if not entries:
            raise ValueError(f"no runs recorded for row {row!r}")
        mious = [r["val_miou"] for r in entries]
        per_seed = ", ".join(f"{r['seed']}: {r['val_miou']:.2f}" for r in entries)
        cells = [row, str(len(entries)), mean_pm(mious), per_seed]
        for name in classes:
            values = [r["per_class_iou"].get(name) for r in entries]
            values = [v for v in values if v is not None]
            cells.append(f"{sum(values) / len(values):.1f}" if values else "n/a")
        cells += [", ".join(sorted({str(r["iterations"]) for r in entries})),
                  ", ".join(sorted({str(r.get("precision")) for r in entries})),
                  _wall_minutes(entries)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _wall_minutes(entries: list[dict[str, Any]]) -> str:
    walls = [r["wall_seconds"] for r in entries if r.get("wall_seconds") is not None]
    return f"{sum(walls) / len(walls) / 60:.1f}" if walls else "n/a"


def paired_difference(runs: list[dict[str, Any]], row_a: str, row_b: str) -> str:
    """row_b - row_a by seed, its mean ± std, and whether it exceeds the seed-to-seed spread
    (the larger of the two rows' standard deviations over seeds)."""
    by_seed = {}
    for row in (row_a, row_b):
        by_seed[row] = {r["seed"]: r["val_miou"] for r in runs if r["row"] == row}
    seeds = sorted(set(by_seed[row_a]) & set(by_seed[row_b]))
    if not seeds:
        raise ValueError(f"rows {row_a!r} and {row_b!r} share no seed")
    diffs = [by_seed[row_b][s] - by_seed[row_a][s] for s in seeds]
    mean, std = mean_std(diffs)
    spreads = [mean_std(list(by_seed[row].values()))[1] for row in (row_a, row_b)]
    spread = max((s for s in spreads if not math.isnan(s)), default=float("nan"))
    verdict = ("n/a (one seed)" if math.isnan(spread) else
               f"{'exceeds' if abs(mean) > spread else 'within'} the seed spread "
               f"({spread:.2f})")
    per_seed = ", ".join(f"seed {s}: {d:+.2f}" for s, d in zip(seeds, diffs, strict=True))
    return (f"{row_b} - {row_a}: {mean:+.2f} points (std {std:.2f}; {per_seed}); "
            f"{verdict}")
