"""What segmentation_node reports on /diagnostics, as plain data: one status per camera (level,
name, message, hardware id and key/values, in the order a reader sees them). ROS-free: the node
wraps each status into a diagnostic_msgs/DiagnosticStatus (docs/node.md, "Diagnostics")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from textseg.stats import StatKey, StatsSnapshot, diagnostic_level, diagnostic_values


@dataclass(frozen=True)
class NodeReport:
    """What every camera's status says about the node as a whole."""

    state: str  # loading model, building TensorRT engine: ..., running, error: ...
    backend: str  # the backend's description, "-" before it is open
    model: str
    classes: int
    self_check: str  # the backend's self-check note, "-" before it is open
    frames_per_inference: int
    batched_inferences: int  # inferences that served more than one camera
    input: str  # input_description()

    def values(self) -> dict[str, str]:
        return {"state": self.state, StatKey.BACKEND: self.backend, "model": self.model,
                "classes": str(self.classes), "self-check": self.self_check,
                "frames per inference (max)": str(self.frames_per_inference),
                "batched inferences": str(self.batched_inferences), "input": self.input}


@dataclass(frozen=True)
class CameraStatus:
    """One camera's diagnostic status, ready to become a DiagnosticStatus."""

    level: int  # textseg.stats OK, WARN or ERROR
    name: str
    message: str
    hardware_id: str
    values: list[tuple[str, str]]


def input_description(transport: str, reliability: str, depth: int) -> str:
    return f"{transport} ({reliability}, depth {depth})"


def points_values(published: int, seconds: Iterable[float],
                  skipped: Mapping[str, int]) -> dict[str, str]:
    """labels/points: clouds published, their p50 time to make, and skips by reason."""
    ordered = sorted(seconds)
    return {"points published": str(published),
            "points p50 (ms)": (f"{1000 * ordered[len(ordered) // 2]:.2f}" if ordered else "-"),
            **{f"points skipped: {reason}": str(count)
               for reason, count in sorted(skipped.items())}}


def topic_event_values(input_qos: int, output_qos: int, incompatible_type: int
                       ) -> dict[str, str]:
    """Counts of what the other ends of a camera's topics do wrong (node.topic_watch)."""
    return {"input incompatible QoS events": str(input_qos),
            "output incompatible QoS events": str(output_qos),
            "incompatible type events": str(incompatible_type)}


def camera_status(node_name: str, camera: str, snapshot: StatsSnapshot,
                  previous: StatsSnapshot | None, node: NodeReport,
                  topics: Mapping[str, str]) -> CameraStatus:
    """The status of one camera ("" for the single-camera node): the node's values, the
    camera's name, `topics` (points_values, topic_event_values), then its statistics; the
    level compares `snapshot` with the `previous` one published."""
    level, message = diagnostic_level(snapshot, previous, node.state)
    context = node.values()
    if camera:
        context["camera"] = camera
    context.update(topics)
    suffix = f" {camera}" if camera else ""
    return CameraStatus(level, f"{node_name}: segmentation{suffix}", message, node.backend,
                        diagnostic_values(snapshot, context))
