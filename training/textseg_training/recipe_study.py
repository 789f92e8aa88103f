"""Issue 30's recipe study, reported: candidates ranked by a CamVid street they never saw.

Every run of `scripts/run_recipe_study.sh` is recorded by `textseg-train train --results` with
val and held-out figures (`heldout_*`: the sequence `train_exclude` kept out of training), once
for the last weights (row CANDIDATE) and once for their moving average (row CANDIDATE_ema).
Candidates are ranked by their paired difference to the baseline recipe on the held-out
sequence; val is shown beside it, and where the two splits disagree is said.
"""

from __future__ import annotations

import math
from typing import Any

from textseg_training.results import mean_pm, mean_std

BASELINE = "today"
# The thin, rare classes the study's loss candidates are judged on (CamVid names).
THIN_CLASSES = ("pole", "fence", "traffic sign", "pedestrian")
BEGIN, END = "<!-- recipe-study:begin -->", "<!-- recipe-study:end -->"


def _by_row(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if "heldout_miou" not in run:
            raise ValueError(f"row {run.get('row')!r} seed {run.get('seed')} has no held-out "
                             "figures: not a recipe-study run (train_exclude unset)")
        rows.setdefault(run["row"], []).append(run)
    return rows


def _paired(rows: dict[str, list[dict[str, Any]]], row_a: str, row_b: str, key: str
            ) -> list[tuple[int, float]]:
    a = {r["seed"]: r[key] for r in rows.get(row_a, [])}
    b = {r["seed"]: r[key] for r in rows.get(row_b, [])}
    return [(seed, b[seed] - a[seed]) for seed in sorted(set(a) & set(b))]


def _spread(rows: dict[str, list[dict[str, Any]]], names: tuple[str, ...], key: str) -> float:
    spreads = [mean_std([r[key] for r in rows[n]])[1] for n in names if n in rows]
    return max((s for s in spreads if not math.isnan(s)), default=float("nan"))


def _spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); nan for fewer than 3 pairs."""
    if len(xs) < 3:
        return float("nan")

    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=values.__getitem__)
        result = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                result[order[k]] = (i + j) / 2.0
            i = j + 1
        return result

    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    norm = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return cov / norm if norm else float("nan")


def study_report(runs: list[dict[str, Any]], baseline: str = BASELINE) -> str:
    """Markdown: every row (held-out and val mIoU, thin classes on the held-out street, cost),
    then the candidates ranked by their paired held-out difference to `baseline`."""
    rows = _by_row(runs)
    if not rows:
        raise ValueError("no recipe-study runs recorded")
    head = ["row", "seeds", "held-out mIoU %", "val mIoU %", "val - held-out",
            *(f"{c} (held-out)" for c in THIN_CLASSES), "wall min / run", "precision", "CPU"]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(head) - 4) + ["---"] * 3) + "|"]
    for name in sorted(rows, key=lambda n: (n.endswith("_stage1") or "_stage1_" in n, n)):
        entries = rows[name]
        held = [r["heldout_miou"] for r in entries]
        val = [r["val_miou"] for r in entries]
        gap = [v - h for v, h in zip(val, held, strict=True)]
        thin = []
        for cls in THIN_CLASSES:
            values = [r["heldout_per_class_iou"].get(cls) for r in entries]
            values = [v for v in values if v is not None]
            thin.append(f"{sum(values) / len(values):.1f}" if values else "n/a")
        walls = [r["wall_seconds"] for r in entries if r.get("wall_seconds") is not None]
        cpus = sorted({str(r.get("cpu", {}).get("model", "unrecorded")) for r in entries})
        lines.append("| " + " | ".join([
            name, ", ".join(str(r["seed"]) for r in entries), mean_pm(held), mean_pm(val),
            f"{sum(gap) / len(gap):+.2f}", *thin,
            f"{sum(walls) / len(walls) / 60:.1f}" if walls else "n/a",
            ", ".join(sorted({str(r.get("precision")) for r in entries})),
            "; ".join(cpus)]) + " |")
    return "\n".join(lines) + "\n\n" + ranking(rows, baseline)


def ranking(rows: dict[str, list[dict[str, Any]]], baseline: str = BASELINE) -> str:
    """The final (stage-2) rows ranked by their held-out paired difference to `baseline`,
    with val's difference beside it and a line on where the two splits disagree."""
    if baseline not in rows:
        return f"(no `{baseline}` row yet: nothing to pair the candidates with)"
    ranked = []
    for name in rows:
        if name == baseline or "_stage1" in name:
            continue
        held = _paired(rows, baseline, name, "heldout_miou")
        if not held:
            continue
        val = _paired(rows, baseline, name, "val_miou")
        ranked.append((mean_std([d for _, d in held])[0], name, held, val))
    if not ranked:
        return f"(no candidate shares a seed with `{baseline}` yet)"
    ranked.sort(reverse=True)
    lines = [f"Paired by seed against `{baseline}` (candidate minus {baseline}, points), "
             "ranked by the held-out street:", "",
             "| rank | candidate | seeds | held-out difference | per seed | beyond the seed "
             "spread? | val difference | splits agree? |",
             "|---:|---|---:|---:|---|---|---:|---|"]
    for rank, (_, name, held, val) in enumerate(ranked, start=1):
        spread = _spread(rows, (baseline, name), "heldout_miou")
        held_values = [d for _, d in held]
        val_values = [d for _, d in val]
        mean_held, mean_val = mean_std(held_values)[0], mean_std(val_values)[0]
        verdict = ("n/a (one seed)" if math.isnan(spread) else
                   f"{'yes' if abs(mean_held) > spread else 'no'} ({spread:.2f})")
        agree = "yes" if (mean_held > 0) == (mean_val > 0) else "**no**"
        lines.append(f"| {rank} | {name} | {len(held)} | {mean_pm(held_values)} | "
                     + ", ".join(f"{s}: {d:+.2f}" for s, d in held)
                     + f" | {verdict} | {mean_pm(val_values)} | {agree} |")
    finals = [n for n in rows if "_stage1" not in n]
    rho = _spearman([mean_std([r["heldout_miou"] for r in rows[n]])[0] for n in finals],
                    [mean_std([r["val_miou"] for r in rows[n]])[0] for n in finals])
    lines += ["", "Rank correlation (Spearman) of the final rows' mean held-out and val mIoU: "
              + ("n/a (fewer than 3 rows)" if math.isnan(rho) else f"{rho:+.2f}")
              + f" over {len(finals)} rows."]
    return "\n".join(lines)
