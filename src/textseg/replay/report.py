"""Write a run's report: report.md (for people), report.json (every figure), PNG figures.

Every file is written atomically (a reader sees the old file or the new one).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from textseg.cpu import with_cpu
from textseg.fileio import atomic_write_bytes
from textseg.replay import charts
from textseg.replay.scoring import Scorer

FILES = {"markdown": "report.md", "json": "report.json", "class_iou": "class_iou.png",
         "latency": "latency.png", "frames": "frames.png", "frames_log": "frames.jsonl"}


def pct(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value * 100:.{digits}f}"


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def write_report(output: Path, data: dict, scorer: Scorer, kind: str) -> dict[str, Path]:
    """kind: "replay" or "offline". `data` holds "context", "run" and the scorer's figures
    (plus "comparison" and "node" where there are); returns the written paths."""
    output.mkdir(parents=True, exist_ok=True)
    paths = {name: output / filename for name, filename in FILES.items()}
    figures = data
    names = [c["name"] for c in figures["metrics"]["per_class"]]
    values = [c["iou"] for c in figures["metrics"]["per_class"]]
    reference = None
    comparison = data.get("comparison")
    if comparison and comparison.get("offline_per_class_iou"):
        reference = comparison["offline_per_class_iou"]
    title = ("Per-class IoU, replay through segmentation_node" if kind == "replay"
             else "Per-class IoU, offline (backend called directly)")
    atomic_write_bytes(paths["class_iou"], charts.png_bytes(charts.iou_bar_chart(
        names, values, scorer.palette, title, reference, "offline, same frames")))
    latency = scorer.latency.numpy() * 1000
    lat = figures["latency_ms"]
    atomic_write_bytes(paths["latency"], charts.png_bytes(charts.latency_histogram(
        latency, ("Latency per frame: publish -> labels received (ms)" if kind == "replay"
                  else "Time per frame: decode + inference (ms)"),
        {"p50": lat["p50"], "p90": lat["p90"], "p99": lat["p99"]})))
    headers = (["image", "ground truth", "prediction", "overlay"]
               if scorer.confusion.matrix.any() or any(len(r.panels) == 4 for r in scorer.strip)
               else ["image", "prediction", "overlay"])
    rows = [(f"frame {r.index}  stamp {r.stamp}", _padded(r.panels, len(headers)))
            for r in sorted(scorer.strip, key=lambda r: r.index)]
    atomic_write_bytes(paths["frames"], charts.png_bytes(charts.frame_strip(rows, headers)))
    data["files"] = {name: path.name for name, path in paths.items()}
    text = json.dumps(jsonable(with_cpu(data)), indent=2, allow_nan=False)
    atomic_write_bytes(paths["json"], (text + "\n").encode())
    atomic_write_bytes(paths["markdown"], render_markdown(data, kind).encode())
    return paths


def _padded(panels: list[np.ndarray], columns: int) -> list[np.ndarray]:
    """A frame without ground truth in a bag with some: a grey panel in its column."""
    if len(panels) >= columns:
        return panels
    blank = np.full_like(panels[0], 200)
    return [panels[0], blank, *panels[1:]]


def render_markdown(data: dict, kind: str) -> str:
    ctx, run, frames, metrics = data["context"], data["run"], data["frames"], data["metrics"]
    lat = data["latency_ms"]
    bag_name = Path(ctx["bag"]).name
    lines = []
    if kind == "replay":
        lines.append(f"# Replay evaluation: {bag_name}")
        lines.append("")
        lines.append(f"The bag's camera topic `{ctx['image_topic']}` played through "
                     f"`segmentation_node` in its own process over DDS ({run['mode_text']}), "
                     "its `labels` collected and matched to the ground truth by header stamp.")
    else:
        lines.append(f"# Offline evaluation: {bag_name}")
        lines.append("")
        lines.append(f"The bag's camera topic `{ctx['image_topic']}` fed to the backend "
                     "directly (no ROS), scored like `textseg replay`.")
    lines.append("")
    lines += ["| | |", "|---|---|"]
    lines.append(f"| bag | `{ctx['bag']}` ({ctx['storage']}), camera `{ctx['image_topic']}` "
                 f"({ctx['image_type'].rsplit('/', 1)[-1]}), ground truth "
                 f"{'`' + ctx['labels_topic'] + '`' if ctx['labels_topic'] else 'none'} |")
    lines.append(f"| model | `{ctx['model']}`: {ctx['model_summary']} |")
    lines.append(f"| backend | {run['backend']} |")
    scored = frames["scored"]
    if scored:
        lines.append(f"| **mIoU** | **{pct(metrics['miou'])} %** over {scored} frames "
                     f"({len(metrics['per_class'])} classes; ignore id {ctx['ignore_id']} from "
                     f"{ctx['ignore_id_source']}) |")
        lines.append(f"| pixel accuracy | {pct(metrics['pixel_accuracy'])} % of "
                     f"{metrics['scored_pixels']:,} scored pixels |")
    else:
        lines.append("| mIoU | not scored: no frame had ground truth |")
    lines.append(f"| frames | {_frames_line(frames, kind)} |")
    what = "publish -> labels" if kind == "replay" else "decode + inference"
    lines.append(f"| latency ({what}) | p50 {ms(lat['p50'])} ms, p90 {ms(lat['p90'])}, "
                 f"p99 {ms(lat['p99'])}, max {ms(lat['max'])} (mean {ms(lat['mean'])}) |")
    if kind == "offline" and data["inference_ms"]["count"]:
        inf = data["inference_ms"]
        lines.append(f"| inference alone | p50 {ms(inf['p50'])} ms, p90 {ms(inf['p90'])}, "
                     f"p99 {ms(inf['p99'])}, max {ms(inf['max'])} |")
    thr = data["throughput"]
    fps = "n/a" if thr["fps"] is None else f"{thr['fps']:.2f}"
    lines.append(f"| achieved | {fps} frames/s ({frames['answered']} frames in "
                 f"{thr['wall_s']:.1f} s) |")
    if kind == "replay":
        node = data.get("node") or {}
        if node.get("inference_p50_ms") is not None:
            lines.append(f"| node's own figures (diagnostics) | inference p50 "
                         f"{node['inference_p50_ms']} ms, node overhead p50 "
                         f"{node.get('node_overhead_p50_ms', 'n/a')} ms, received "
                         f"{node.get('frames_received', 'n/a')}, processed "
                         f"{node.get('frames_processed', 'n/a')}, dropped "
                         f"{node.get('frames_dropped', 'n/a')} |")
        if run.get("schedule_lag_ms"):
            lag = run["schedule_lag_ms"]
            lines.append(f"| publishing vs the recorded timeline | late by p50 {ms(lag['p50'])}"
                         f" ms, max {ms(lag['max'])} ms |")
    for warning in ctx.get("warnings", []):
        lines.append(f"| note | {warning} |")
    lines.append("")
    if ctx.get("training_stage") in ("random-init", "untrained"):
        lines.append(f"> The model is not trained (stage `{ctx['training_stage']}`): its "
                     "classes are not meaningful and the mIoU is near chance. The pipeline, "
                     "the agreement between replay and offline and the timings are real.")
        lines.append("")
    lines += _class_table(data)
    lines += ["## Latency", "", "![latency histogram](latency.png)", ""]
    lines += ["## Frames", "",
              "Evenly spread over the bag: image | ground truth (ignored pixels black) | "
              "prediction | overlay.", "", "![frames](frames.png)", ""]
    problems = _problems(frames)
    if problems:
        lines += ["## Skipped and dropped frames", ""] + problems + [""]
    lines += ["## Closing note", ""] + _closing(data, kind) + [""]
    lines += ["---", "", "Files: `report.json` (every figure, machine-readable), "
              "`frames.jsonl` (one line per frame), `class_iou.png`, `latency.png`, "
              "`frames.png`" + (f", recorded outputs `{run['record']}`"
                                if run.get("record") else "") + ".", ""]
    return "\n".join(lines)


def _frames_line(frames: dict, kind: str) -> str:
    parts = [f"{frames['in_bag']} in the bag"]
    if kind == "replay":
        parts.append(f"{frames.get('sent', 0)} sent")
    parts.append(f"{frames['answered']} answered")
    if kind == "replay":
        parts.append(f"{frames['dropped']} dropped")
    parts.append(f"{frames['skipped']} skipped")
    parts.append(f"{frames['scored']} scored")
    if frames["answered_without_ground_truth"]:
        parts.append(f"{frames['answered_without_ground_truth']} without ground truth")
    if frames.get("not_compared"):
        parts.append(f"{frames['not_compared']} left out (unanswered in the replay)")
    return ", ".join(parts)


def _class_table(data: dict) -> list[str]:
    metrics = data["metrics"]
    comparison = data.get("comparison") or {}
    reference = comparison.get("offline_per_class_iou")
    total = max(1, metrics["scored_pixels"])
    head = "| id | class | IoU % | ground-truth pixels % |"
    rule = "|---:|---|---:|---:|"
    if reference:
        head += " offline IoU % |"
        rule += "---:|"
    lines = ["## Per-class IoU", "", head, rule]
    for i, c in enumerate(metrics["per_class"]):
        row = (f"| {c['id']} | {c['name']} | {pct(c['iou'])} | "
               f"{c['gt_pixels'] / total * 100:.2f} |")
        if reference:
            row += f" {pct(reference[i])} |"
        lines.append(row)
    lines += ["", "IoU = TP / (TP + FP + FN) over all scored pixels; a class absent from both "
              "ground truth and predictions has no IoU (n/a) and is left out of the mean.", "",
              "![per-class IoU](class_iou.png)", ""]
    return lines


def _problems(frames: dict) -> list[str]:
    lines = []
    for reason, count in frames["skipped_by_reason"].items():
        example = frames["skip_examples"].get(reason, "")
        lines.append(f"- skipped, `{reason}`: {count} (e.g. {example})")
    explain = {"timeout": "no labels within the timeout",
               "superseded": "a later frame was answered first (the node keeps only the "
                             "newest frame, or DDS lost it)",
               "never_answered": "no labels by the end of the replay"}
    for reason, count in frames["dropped_by_reason"].items():
        lines.append(f"- dropped, `{reason}`: {count} ({explain.get(reason, reason)})")
    return lines


def _closing(data: dict, kind: str) -> list[str]:
    frames, metrics = data["frames"], data["metrics"]
    answered, total = frames["answered"], frames["in_bag"]
    lines = []
    if kind == "offline":
        lines.append(f"Offline mIoU {pct(metrics['miou'])} % over {frames['scored']} frames, "
                     f"{data['throughput']['fps'] or 0:.2f} frames/s. Run `textseg replay` on "
                     "the same bag and model to measure what ROS adds.")
        return lines
    cmp_ = data.get("comparison")
    coverage = f"The node answered {answered} of {frames.get('sent', 0)} frames sent"
    coverage += f" ({total} in the bag)." if total != frames.get("sent") else "."
    lines.append(coverage)
    if not cmp_:
        lines.append("")
        lines.append("No offline comparison was run (`--no-offline`): run `textseg "
                     "eval-offline` on the same bag and model for the ROS overhead.")
        return lines
    diff = cmp_["miou_difference_points"]
    within = "n/a" if diff is None else ("yes" if abs(diff) <= 0.1 else "**no**")
    lines.append("")
    lines.append("| same frames | replay | offline | difference |")
    lines.append("|---|---:|---:|---:|")
    lines.append(f"| mIoU % ({cmp_['frames_compared']} frames) | "
                 f"{pct(cmp_['replay_miou'], 3)} | {pct(cmp_['offline_miou'], 3)} | "
                 f"{'n/a' if diff is None else f'{diff:+.4f} points'} (within 0.1: {within}) |")
    rl, oi, of = (cmp_["replay_latency_ms"], cmp_["offline_inference_ms"],
                  cmp_["offline_per_frame_ms"])
    lines.append(f"| per frame, p50 ms | {ms(rl['p50'])} (publish -> labels) | "
                 f"{ms(oi['p50'])} (inference), {ms(of['p50'])} (decode + inference) | "
                 f"{ms(cmp_['ros_overhead_vs_inference_ms']['p50'])} |")
    lines.append(f"| per frame, mean ms | {ms(rl['mean'])} | {ms(oi['mean'])}, "
                 f"{ms(of['mean'])} | {ms(cmp_['ros_overhead_vs_inference_ms']['mean'])} |")
    fps = data["throughput"]["fps"]
    lines.append(f"| frames/s | {fps or 0:.2f} | {cmp_['offline_fps'] or 0:.2f} | |")
    lines.append("")
    ov = cmp_["ros_overhead_vs_inference_ms"]
    lines.append(f"**Measured ROS overhead: p50 {ms(ov['p50'])} ms per frame** (mean "
                 f"{ms(ov['mean'])}, p90 {ms(ov['p90'])}): the replay's latency minus the "
                 "offline inference time of the same frame. The two runs follow each other, "
                 "so a change of machine load between them lands in this figure too.")
    split = same_run_split(data)
    if split:
        lines.append("")
        lines.append(
            f"Within the replay alone (the node's diagnostics, same run): latency p50 "
            f"{ms(split['replay_p50_ms'])} ms - the node's inference p50 "
            f"{ms(split['node_inference_p50_ms'])} ms = **{ms(split['overhead_p50_ms'])} ms**"
            f", of which the node's own work outside inference (decoding, copies, message "
            f"building, publishing) is p50 {ms(split['node_overhead_p50_ms'])} ms and DDS "
            f"transport both ways plus this process's side about "
            f"{ms(split['transport_p50_ms'])} ms (latency p50 - the node's end-to-end p50).")
    lines.append("")
    lines.append(f"Predictions identical (CRC-32 of the label image) on "
                 f"{cmp_['identical_predictions']} of {cmp_['frames_compared']} frames.")
    return lines


def same_run_split(data: dict) -> dict | None:
    """The replay's latency split with the node's own p50 figures (differences of p50s)."""
    node, lat = data.get("node") or {}, data["latency_ms"]
    if lat.get("p50") is None or node.get("inference_p50_ms") is None:
        return None
    out = {"replay_p50_ms": lat["p50"], "node_inference_p50_ms": node["inference_p50_ms"],
           "overhead_p50_ms": round(lat["p50"] - node["inference_p50_ms"], 3),
           "node_overhead_p50_ms": node.get("node_overhead_p50_ms"),
           "transport_p50_ms": None}
    if node.get("end_to_end_p50_ms") is not None:
        out["transport_p50_ms"] = round(lat["p50"] - node["end_to_end_p50_ms"], 3)
    return out


def jsonable(value):
    """numpy scalars/arrays -> plain Python for json.dumps."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
