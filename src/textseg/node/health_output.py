"""labels/health: one camera's health level, published with each frame's labels.

The message is a diagnostic_msgs/DiagnosticArray, not a new type: every ROS install has it,
rqt_robot_monitor and the diagnostic aggregator read it, and its header carries the frame's
stamp and frame_id, so a planner pairs each health report with the labels it describes (an
ApproximateTime or exact-stamp match, as with labels/camera_info). Its one status holds the
level (OK / WARN / ERROR), the reason and the figures (textseg.health). The same status goes
out on /diagnostics with the node's others.
"""

from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from textseg.health import STALE, STALE_AFTER_S, HealthAssessment, HealthMonitor


class HealthOutput:
    """A camera's health monitor and its labels/health publisher (the worker thread observes,
    the diagnostics timer reads)."""

    def __init__(self, publisher, monitor: HealthMonitor, name: str, hardware_id: str) -> None:
        self.publisher = publisher
        self.monitor = monitor
        self.name = name  # the status name, e.g. "/ns/segmentation_node: health front"
        self.hardware_id = hardware_id
        self._lock = threading.Lock()
        self.latest: HealthAssessment = monitor.assess()
        self._judged_at: float | None = None  # time.monotonic() of the last frame judged

    def observe(self, header, stats) -> None:
        with self._lock:
            now = time.monotonic()
            if self._judged_at is not None and now - self._judged_at > STALE_AFTER_S:
                self.monitor.reset()  # the stream stopped (STALE): a new window
            self.monitor.add(stats)
            self.latest = self.monitor.assess()
            self._judged_at = now
            latest = self.latest
        array = DiagnosticArray()
        array.header = header
        array.status.append(self.status(latest))
        self.publisher.publish(array)

    def status(self, assessment: HealthAssessment | None = None) -> DiagnosticStatus:
        """The status of `assessment`, or (/diagnostics) of the latest frame judged: STALE
        when none was for STALE_AFTER_S (no frames, or nobody subscribes to an output)."""
        if assessment is None:
            assessment = self.latest
            quiet = None if self._judged_at is None else time.monotonic() - self._judged_at
            if quiet is None or quiet > STALE_AFTER_S:
                assessment = HealthAssessment(
                    STALE, "no frame judged yet" if quiet is None else
                    f"no frame judged for {quiet:.0f} s (no input, or no subscriber to an "
                    "output)", assessment.score, assessment.values)
        return DiagnosticStatus(
            level=bytes([assessment.level]), name=self.name, message=assessment.message,
            hardware_id=self.hardware_id,
            values=[KeyValue(key="health level", value=assessment.level_name)]
            + [KeyValue(key=k, value=v) for k, v in assessment.values.items()])
