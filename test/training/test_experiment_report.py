"""The text experiment's report (textseg_training/experiment.py) and the docs block it owns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("textseg_training.experiment",
                    reason="training package not installed (runtime-only environment)")

from textseg_training.experiment import (  # noqa: E402
    BEGIN,
    END,
    PROMPT_COMPARISONS,
    comparisons_table,
    main_table,
    marked_block,
    prompt_rows_table,
    protocol_report,
    thin_class_table,
    update_marked_block,
)

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "training" / "results" / "camvid_cpu_protocol.json"
CLASSES = ("sky", "pole", "traffic sign", "fence", "pedestrian", "bicyclist")


def _run(row: str, seed: int, miou: float, pole: float = 10.0) -> dict:
    ious = {name: 50.0 for name in CLASSES} | {"pole": pole}
    return {"row": row, "seed": seed, "val_miou": miou, "per_class_iou": ious,
            "iterations": 300, "wall_seconds": 360.0}


RUNS = [_run("baseline", 0, 40.0), _run("baseline", 1, 41.0), _run("baseline", 2, 42.0),
        _run("stage1_text", 0, 43.0, pole=14.0), _run("stage1_text", 1, 43.5, pole=15.0),
        _run("stage1_text", 2, 44.0, pole=16.0), _run("stage2_text_m8", 0, 44.0)]


def test_main_table_has_every_row_with_mean_std_and_the_paper_value():
    table = main_table(RUNS)
    assert "| `baseline` | 75.3 | 41.00 ± 1.00 | 40.00, 41.00, 42.00 | 300 | 6.0 |" in table
    assert "| `stage1_text` | 76.6 | 43.50 ± 0.50 |" in table
    assert "| `stage2_text_m8` | 76.3 | 44.00 | 44.00 |" in table


def test_paired_differences_are_by_seed_and_judged_against_the_spread():
    table = comparisons_table(RUNS)
    # stage1_text - baseline by seed: +3.0, +2.5, +2.0; largest row std 1.00.
    assert ("| `stage1_text` - `baseline` | does stage 1's text help? | +1.3 | +2.50 ± 0.50 | "
            "+3.00, +2.50, +2.00 | **yes** (the rows' largest std 1.00) |") in table
    # Rows without a common seed are left out rather than invented.
    assert "e2e_text" not in table


def test_thin_class_gains_are_paired_by_seed():
    table = thin_class_table(RUNS)
    assert "| `stage1_text` - `baseline` (3 seeds) | +5.0 | +0.0 | +0.0 | +0.0 | +0.0 | +2.50 |" \
        in table


def _stage2_run(row: str, seed: int, miou: float, score: float, change: float,
                cosines: dict[str, float]) -> dict:
    cpu = {"description": "Some CPU (x86_64; VNNI, no bf16)"}
    return {**_run(row, seed, miou), "score_map_miou": score, "precision": "fp32", "cpu": cpu,
            "prompts": {"prompt_relative_change": change,
                        "embedding_cosine_mean": sum(cosines.values()) / len(cosines),
                        "embedding_cosine_min": min(cosines.values()),
                        "embedding_cosine_per_class": cosines}}


def test_stage2_rows_report_the_score_map_prompt_movement_and_machine():
    runs = [_stage2_run("stage2_prompts", seed, 46.0 + seed, 43.0 + 2 * seed, 15.0,
                        {"sky": 0.5, "pole": 0.2 + 0.1 * seed}) for seed in (0, 1)]
    runs += [_stage2_run("stage2_prompts_frozen", seed, 46.0, 41.0, 0.0,
                         {"sky": 1.0, "pole": 1.0}) for seed in (0, 1)]
    table = prompt_rows_table(runs)
    assert ("| `stage2_prompts` | 2 | 46.50 ± 0.71 | 44.00 ± 1.41 (43.00, 45.00) | "
            "15.00 ± 0.00 | 0.38 ± 0.04 (pole 0.20) | Some CPU (x86_64; VNNI, no bf16), "
            "fp32 |") in table
    by_score = comparisons_table(runs, PROMPT_COMPARISONS, metric="score_map_miou")
    assert "| `stage2_prompts` - `stage2_prompts_frozen` |" in by_score
    assert "+3.00 ± 1.41 | +2.00, +4.00 | **yes** (the rows' largest std 1.41)" in by_score
    by_miou = comparisons_table(runs, PROMPT_COMPARISONS)
    assert "+0.50 ± 0.71 | +0.00, +1.00 | no" in by_miou
    assert "### Stage 2 as the authors run it" in protocol_report(runs + RUNS)


def test_update_marked_block_replaces_only_the_block(tmp_path):
    page = tmp_path / "README.md"
    page.write_text(f"before\n{BEGIN}\nold table\n{END}\nafter\n")
    update_marked_block(page, "new table")
    assert page.read_text() == f"before\n{BEGIN}\nnew table\n{END}\nafter\n"
    assert marked_block(page) == "new table"
    (tmp_path / "plain.md").write_text("no markers\n")
    with pytest.raises(ValueError, match="cpu-protocol:begin"):
        update_marked_block(tmp_path / "plain.md", "x")


def test_the_readme_block_is_the_report_of_the_committed_results():
    if not RESULTS.is_file():
        pytest.skip(f"{RESULTS.name} not recorded yet (scripts/run_cpu_protocol.sh)")
    runs = json.loads(RESULTS.read_text())["runs"]
    assert marked_block(ROOT / "docs" / "experiment.md") == protocol_report(runs), (
        "docs/experiment.md's table is stale: run textseg-train results "
        "training/results/camvid_cpu_protocol.json --protocol --update docs/experiment.md")
