"""`textseg replay BAG`: play a bag's camera topic through segmentation_node over DDS.

The node runs in its own process (`NodeProcess`, stopped by PID), on this machine only
(`local_ros_environment`), in a namespace of its own. This process publishes the bag's
serialized camera messages unchanged (recorded header stamp and frame_id), collects the
node's `labels`, matches them to the ground truth by stamp and scores them.

Two ways to play:
  lockstep (default)  the next frame goes out when the previous one's labels arrived (or
                      after --timeout): as fast as the node allows, every frame answered.
  rate FACTOR         frames go out on the recorded timeline x FACTOR (1 = real time); the
                      node keeps only the newest frame, so frames it could not take are
                      dropped, and counted.
With sim time (default), /clock follows the bag's receive times and the node runs with
use_sim_time:=true, as with `ros2 bag play --clock`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from textseg.imaging import ImageRejected, colorize
from textseg.replay.bagio import (
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    BagError,
    BagSource,
    Frame,
    RawBagWriter,
    _typestore,
    label_array,
)
from textseg.replay.metrics import LabelValueError, Samples, distribution
from textseg.replay.offline import EvalSetup, settle
from textseg.replay.progress import Progress
from textseg.replay.scoring import Scorer

WARMUP_STAMP = (0, 1)  # the warm-up frame's stamp; never scored
RECORD_TOPICS = {"labels": "/textseg/labels/image", "color": "/textseg/labels/color",
                 "ground_truth": "/textseg/ground_truth/color"}


@dataclass
class ReplayOptions:
    bag: Path
    model: str = ""
    backend: str = "auto"
    threads: int = 0
    image_topic: str | None = None
    labels_topic: str | None = None
    ignore_id: int | None = None
    rate: float | None = None  # None = lockstep
    timeout: float = 10.0  # seconds to wait for one frame's labels
    sim_time: bool = True
    record: Path | None = None
    limit: int | None = None
    strip_rows: int = 4
    startup_timeout: float = 120.0
    show_progress: bool = True
    on_frame: Callable[[int], None] | None = None  # called with frames seen (benchmarks)

    @property
    def mode_text(self) -> str:
        mode = ("lockstep: next frame when the previous labels arrived" if self.rate is None
                else f"recorded timeline x {self.rate:g}")
        return f"{mode}; {'/clock from the bag, use_sim_time' if self.sim_time else 'wall clock'}"


@dataclass
class _InFlight:
    index: int
    stamp: tuple[int, int]
    seq: int
    sent: float
    log_ns: int
    labels: np.ndarray | None
    rgb: np.ndarray | None


@dataclass
class ReplayRun:
    setup: EvalSetup
    scorer: Scorer
    options: ReplayOptions
    sent: int
    wall_s: float
    backend_description: str
    node: dict = field(default_factory=dict)
    schedule_lag: Samples = field(default_factory=Samples)
    late_replies: int = 0
    node_exit_code: int | None = None
    node_log_tail: str = ""
    recorded: dict | None = None

    def figures(self) -> dict:
        data = self.scorer.figures()
        data["frames"]["sent"] = self.sent
        data["frames"]["late_replies"] = self.late_replies
        answered = self.scorer.answered_count
        data["throughput"] = {"wall_s": round(self.wall_s, 3),
                              "fps": round(answered / self.wall_s, 3) if self.wall_s else None}
        return data

    def run_info(self) -> dict:
        o = self.options
        lag = distribution(self.schedule_lag.numpy())
        return {"mode": "lockstep" if o.rate is None else "rate", "rate": o.rate,
                "mode_text": o.mode_text, "sim_time": o.sim_time, "timeout_s": o.timeout,
                "threads": o.threads, "limit": o.limit,
                "backend": self.node.get("backend") or self.backend_description,
                "schedule_lag_ms": ({k: (round(v * 1000, 3) if isinstance(v, float) else v)
                                     for k, v in lag.items()} if o.rate is not None else None),
                "record": str(o.record) if o.record else None,
                "recorded_messages": self.recorded,
                "node_exit_code": self.node_exit_code,
                "warmup_frames": 1}


@contextmanager
def _environment(env: dict[str, str]):
    """Our own DDS participant must use the node's domain, discovery range and profile."""
    from textseg.client.process import ROS_ENVIRONMENT_KEYS

    saved = {k: os.environ.get(k) for k in ROS_ENVIRONMENT_KEYS}
    os.environ.update({k: env[k] for k in ROS_ENVIRONMENT_KEYS if k in env})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _restamp(frame: Frame, stamp: tuple[int, int]) -> bytes:
    """The frame's message with another header stamp (for the warm-up frame)."""
    store = _typestore()
    msg = frame.msg
    header = dataclasses.replace(msg.header, stamp=dataclasses.replace(
        msg.header.stamp, sec=stamp[0], nanosec=stamp[1]))
    return bytes(store.serialize_cdr(dataclasses.replace(msg, header=header), frame.msgtype))


def _node_figures(values: dict[str, str]) -> dict:
    def number(key: str):
        try:
            return float(values[key])
        except (KeyError, ValueError):
            return None

    def count(key: str):
        value = number(key)
        return None if value is None else int(value)

    return {"backend": values.get("backend"),
            "inference_p50_ms": number("inference p50 (ms)"),
            "inference_p99_ms": number("inference p99 (ms)"),
            "end_to_end_p50_ms": number("end-to-end p50 (ms)"),
            "node_overhead_p50_ms": number("node overhead p50 (ms)"),
            "node_overhead_p99_ms": number("node overhead p99 (ms)"),
            "frames_received": count("frames received") if "frames received" in values
            else count("messages received"),
            "frames_processed": count("frames processed"),
            "frames_dropped": count("frames dropped"),
            "messages_rejected": count("messages rejected"),
            "diagnostics_stamp_s": number("_diagnostics_stamp_s"),
            "note": "the node's own diagnostics (last 512 frames, warm-up included)"}


def run_replay(options: ReplayOptions, frames_log: Path | None = None) -> ReplayRun:
    """Play the bag through a fresh segmentation_node process and score its answers."""
    from textseg.engine import default_model_path, load_backend
    from textseg.client.process import local_ros_environment

    if options.rate is not None and options.rate <= 0:
        raise ValueError(f"--rate must be positive (or 'lockstep'), got {options.rate}")
    if options.timeout <= 0:
        raise ValueError(f"--timeout must be positive, got {options.timeout}")
    if options.startup_timeout <= 0:
        raise ValueError(f"--startup-timeout must be positive, got {options.startup_timeout}")
    model_path = Path(options.model) if options.model else default_model_path()
    with BagSource(options.bag, options.image_topic, options.labels_topic) as source:
        backend = load_backend(model_path, options.backend, options.threads)
        info, description = backend.info, backend.description
        backend.close()  # only to check the model and read its classes before starting
        setup = settle(source, model_path, info, options.ignore_id)
        total = (source.frame_count if options.limit is None
                 else min(options.limit, source.frame_count))
        scorer = Scorer(setup.class_names, setup.palette, setup.ignore_id, total,
                        options.strip_rows, frames_log)
        env = local_ros_environment()
        try:
            with _environment(env):
                run = _Session(options, source, setup, scorer, model_path, env,
                               description).run(total)
        except BaseException:
            scorer.abort()
            raise
        scorer.close()
    return run


class _Session:
    def __init__(self, options: ReplayOptions, source: BagSource, setup: EvalSetup,
                 scorer: Scorer, model_path: Path, env: dict[str, str],
                 description: str) -> None:
        self.o = options
        self.source = source
        self.setup = setup
        self.scorer = scorer
        self.model_path = model_path
        self.env = env
        self.description = description
        self.compressed = source.image_type == COMPRESSED_TYPE
        self.namespace = f"/textseg_replay_{os.getpid()}"
        self.pending: OrderedDict[tuple[int, int], _InFlight] = OrderedDict()
        self.replies: deque[tuple[bytes, float]] = deque()
        self.colors: deque[bytes] = deque()
        self.answered_recently: OrderedDict[tuple[int, int], int] = OrderedDict()
        self.diagnostics: tuple[dict[str, str], float] | None = None
        self.lag = Samples()
        self.late = 0
        self.sent = 0
        self.seq = 0
        self.first_sent: float | None = None
        self.last_event: float | None = None
        self.record: RawBagWriter | None = None

    # --- ROS plumbing --------------------------------------------------------------------

    def _node_process(self):
        """The node, in a namespace of its own; its /clock and /diagnostics are remapped into
        that namespace too, so a replay never drives the clock of other nodes on the same
        ROS domain (nor shows up in their diagnostics)."""
        from textseg.client.process import NodeProcess

        params = {"model": str(self.model_path), "backend": self.o.backend,
                  "threads": int(self.o.threads), "use_sim_time": bool(self.o.sim_time),
                  "transport": "compressed" if self.compressed else "raw",
                  # lockstep waits for every frame: make DDS deliver each one
                  "qos_reliability": "reliable" if self.o.rate is None else "best_effort",
                  "diagnostics_period": 0.5}
        remap = {"/clock": f"{self.namespace}/clock",
                 "/diagnostics": f"{self.namespace}/diagnostics"}
        return NodeProcess(params, remappings=remap, env=self.env, namespace=self.namespace)

    def _client(self, context):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image

        node = rclpy.create_node("textseg_replay", namespace=self.namespace, context=context)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        topic = "image/compressed" if self.compressed else "image"
        self.publisher = node.create_publisher(CompressedImage if self.compressed else Image,
                                               topic, reliable)
        self.labels_sub = node.create_subscription(
            Image, "labels/image", lambda raw: self.replies.append((raw, time.perf_counter())),
            reliable, raw=True)
        if self.o.record:
            node.create_subscription(Image, "labels/color", lambda raw: self.colors.append(raw),
                                     reliable, raw=True)
        node.create_subscription(DiagnosticArray, "diagnostics", self._on_diagnostics, 10)
        self.clock = None
        if self.o.sim_time:  # the node's /clock, remapped into our namespace
            from rosgraph_msgs.msg import Clock

            self.clock = node.create_publisher(Clock, "clock", 10)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        self.client_node = node
        return node, executor

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.split(":")[0] == f"{self.namespace}/segmentation_node":
                values = {kv.key: kv.value for kv in status.values}
                # header stamp: ROS time of the node, the bag's clock under use_sim_time
                stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
                values["_diagnostics_stamp_s"] = f"{stamp:.9f}"
                self.diagnostics = (values, time.perf_counter())

    def _publish_clock(self, log_ns: int) -> None:
        if self.clock is None:
            return
        from builtin_interfaces.msg import Time
        from rosgraph_msgs.msg import Clock

        self.clock.publish(Clock(clock=Time(sec=log_ns // 1_000_000_000,
                                            nanosec=log_ns % 1_000_000_000)))

    def _check_node(self) -> None:
        if not self.node_process.alive():
            code = self.node_process.process.poll()
            tail = self.node_process.log_text()[-2500:].strip()
            raise RuntimeError(f"segmentation_node exited with code {code} during the replay; "
                               f"its log ends:\n{tail}")

    # --- the run -------------------------------------------------------------------------

    def run(self, total: int) -> ReplayRun:
        import rclpy

        self.node_process = self._node_process()
        with self.node_process:  # started here, stopped (by PID) on the way out
            context = rclpy.Context()
            rclpy.init(context=context)
            node = executor = None
            try:
                node, executor = self._client(context)
                self.executor = executor
                if self.o.record:
                    self._open_record()
                frames = self.source.frames(self.o.limit)
                first = next(frames, None)
                self._connect_and_warm_up(first)
                progress = Progress("replay", total, enabled=self.o.show_progress)
                try:
                    self._play(first, frames, progress)
                finally:
                    progress.close()
                self._final_diagnostics()
            except BaseException:
                if self.record is not None:
                    self.record.__exit__(RuntimeError, None, None)  # no half-written bag
                    self.record = None
                raise
            finally:
                if executor is not None:
                    executor.shutdown()
                if node is not None:
                    node.destroy_node()
                rclpy.try_shutdown(context=context)
        recorded = None
        if self.record is not None:
            recorded = dict(self.record.counts)
            self.record.__exit__(None, None, None)
        wall = ((self.last_event - self.first_sent)
                if self.first_sent is not None and self.last_event is not None else 0.0)
        log = self.node_process.log_text()
        return ReplayRun(self.setup, self.scorer, self.o, self.sent, wall, self.description,
                         _node_figures(self.diagnostics[0]) if self.diagnostics else {},
                         self.lag, self.late, self.node_process.process.returncode,
                         log[-2500:], recorded)

    def _open_record(self) -> None:
        from textseg.replay.bagio import DatasetMeta

        meta = DatasetMeta(dataset=self.setup.dataset, image_topic=self.source.image_topic)
        self.record = RawBagWriter(self.o.record, "mcap", meta.to_custom_data())
        self.record.__enter__()
        self.record.add_topic(self.source.image_topic, self.source.image_type)
        self.record.add_topic(RECORD_TOPICS["labels"], IMAGE_TYPE)
        self.record.add_topic(RECORD_TOPICS["color"], IMAGE_TYPE)
        if self.source.labels_topic:
            self.record.add_topic(RECORD_TOPICS["ground_truth"], IMAGE_TYPE)

    def _connect_and_warm_up(self, first: Frame | None) -> None:
        """Wait until the node is subscribed and publishing, then send one warm-up frame
        (the first frame, re-stamped) until it is answered: discovery is complete, the model
        has run once, and no bag frame pays for either."""
        deadline = time.monotonic() + self.o.startup_timeout
        labels_topic = self.labels_sub.topic_name
        while (self.publisher.get_subscription_count() == 0
               or self.client_node.count_publishers(labels_topic) == 0):
            self._check_node_startup()
            if time.monotonic() > deadline:
                raise RuntimeError(f"segmentation_node did not connect within "
                                   f"{self.o.startup_timeout:.0f} s; its log ends:\n"
                                   f"{self.node_process.log_text()[-2000:]}")
            self.executor.spin_once(timeout_sec=0.05)
        if first is None:
            return
        raw = self._warmup_message(first)
        if first.log_ns:
            self._publish_clock(first.log_ns)
        while True:
            self.publisher.publish(raw)
            resend = time.monotonic() + 1.0
            while time.monotonic() < resend:
                self.executor.spin_once(timeout_sec=0.01)
                while self.replies:
                    reply, _ = self.replies.popleft()
                    if self._reply_stamp(reply) == WARMUP_STAMP:
                        self.replies.clear()
                        return
            self._check_node_startup()
            if time.monotonic() > deadline:
                raise RuntimeError("segmentation_node did not answer the warm-up frame within "
                                   f"{self.o.startup_timeout:.0f} s; its log ends:\n"
                                   f"{self.node_process.log_text()[-2000:]}")

    def _check_node_startup(self) -> None:
        if not self.node_process.alive():
            code = self.node_process.process.poll()
            tail = self.node_process.log_text()[-2500:].strip()
            raise RuntimeError(f"segmentation_node exited with code {code} while starting; its "
                               f"log ends:\n{tail}")

    def _warmup_message(self, first: Frame) -> bytes:
        if first.msg is not None and first.problem is None:
            return _restamp(first, WARMUP_STAMP)
        from textseg.replay.dataset import image_message

        size = first.size or (360, 480)
        grey = np.full((*size, 3), 128, np.uint8)
        return image_message(grey, WARMUP_STAMP[0] * 10**9 + WARMUP_STAMP[1], "warmup",
                             compressed="jpeg" if self.compressed else None)

    @staticmethod
    def _reply_stamp(raw: bytes) -> tuple[int, int] | None:
        try:
            msg = _typestore().deserialize_cdr(raw, IMAGE_TYPE)
        except Exception:  # noqa: BLE001 - a garbled reply is not ours to score
            return None
        return int(msg.header.stamp.sec), int(msg.header.stamp.nanosec)

    def _play(self, first: Frame | None, frames, progress: Progress) -> None:
        frame = first
        t0_wall = t0_log = None
        lockstep = self.o.rate is None
        while frame is not None or self.pending:
            self._handle_replies()
            now = time.perf_counter()
            self._expire(now)
            self._check_node()
            if frame is None:  # all sent: wait for the last answers (or their timeout)
                self.executor.spin_once(timeout_sec=0.01)
                continue
            if frame.problem is not None:
                self.scorer.seen()
                self.scorer.skip(frame, *frame.problem)
                progress.update(self.scorer.frames_seen, self._note())
                frame = next(frames, None)
                continue
            if lockstep:
                if self.pending:
                    self.executor.spin_once(timeout_sec=0.01)
                    continue
                target = now
            else:
                if t0_wall is None:
                    t0_wall, t0_log = now, frame.log_ns
                target = t0_wall + (frame.log_ns - t0_log) / 1e9 / self.o.rate
                if now < target:
                    self.executor.spin_once(timeout_sec=min(0.005, target - now))
                    continue
            self._send(frame, target)
            progress.update(self.scorer.frames_seen, self._note())
            if self.o.on_frame is not None:
                self.o.on_frame(self.scorer.frames_seen)
            frame = next(frames, None)
        self._handle_replies()
        progress.update(self.scorer.frames_seen, self._note())

    def _send(self, frame: Frame, target: float) -> None:
        self.scorer.seen()
        rgb = None
        if self.compressed or self.scorer.wants_strip(frame.index):
            try:
                rgb = frame.rgb()  # compressed: the node would reject what does not decode
            except ImageRejected as exc:
                self.scorer.skip(frame, exc.reason, str(exc))
                return
        if frame.stamp in self.pending or frame.stamp == WARMUP_STAMP:
            self.scorer.skip(frame, "duplicate_stamp", "header stamp of a frame still in "
                             "flight (replies could not be told apart)")
            return
        self._publish_clock(frame.log_ns)
        sent = time.perf_counter()
        self.publisher.publish(frame.raw)
        if self.o.rate is not None:
            self.lag.add(max(0.0, sent - target))
        if self.first_sent is None:
            self.first_sent = sent
        self.sent += 1
        self.seq += 1
        self.pending[frame.stamp] = _InFlight(
            frame.index, frame.stamp, self.seq, sent, frame.log_ns, frame.labels,
            rgb if self.scorer.wants_strip(frame.index) else None)
        if self.record is not None:
            self.record.write(self.source.image_topic, frame.log_ns, frame.raw)
            if frame.labels is not None:
                from textseg.replay.dataset import labels_message

                gt = colorize(frame.labels, self.scorer.palette)
                gt[frame.labels == self.scorer.ignore_id] = 0
                self.record.write(RECORD_TOPICS["ground_truth"], frame.log_ns, labels_message(
                    gt, frame.stamp[0] * 10**9 + frame.stamp[1], frame.frame_id, "rgb8"))

    def _handle_replies(self) -> None:
        while self.replies:
            raw, arrived = self.replies.popleft()
            self._reply(raw, arrived)
        waiting = []
        while self.colors:  # colour masks are recorded once their labels were matched
            raw = self.colors.popleft()
            stamp = self._reply_stamp(raw)
            log_ns = self.answered_recently.get(stamp) if stamp else None
            if log_ns is not None and self.record is not None:
                self.record.write(RECORD_TOPICS["color"], log_ns, raw)
            elif stamp is not None and stamp != WARMUP_STAMP and stamp in self.pending:
                waiting.append(raw)
        self.colors.extend(waiting[-16:])

    def _reply(self, raw: bytes, arrived: float) -> None:
        try:
            msg = _typestore().deserialize_cdr(raw, IMAGE_TYPE)
        except Exception:  # noqa: BLE001
            self.late += 1
            return
        stamp = (int(msg.header.stamp.sec), int(msg.header.stamp.nanosec))
        entry = self.pending.pop(stamp, None)
        if entry is None:
            if stamp != WARMUP_STAMP:
                self.late += 1  # answered after its timeout, or a duplicate
            return
        self.last_event = arrived
        # The node answers in order: anything sent before this frame and still unanswered
        # was replaced in its one-frame queue (or lost on the way) and will not come.
        for key in [k for k, e in self.pending.items() if e.seq < entry.seq]:
            old = self.pending.pop(key)
            self.scorer.drop(old.index, old.stamp, "superseded")
        latency = arrived - entry.sent
        log_ns = entry.log_ns + int(latency * 1e9)
        self.answered_recently[stamp] = log_ns
        while len(self.answered_recently) > 64:
            self.answered_recently.popitem(last=False)
        if self.record is not None:
            self.record.write(RECORD_TOPICS["labels"], log_ns, raw)
        try:
            prediction = label_array(msg)
        except ImageRejected as exc:
            self.scorer.skip(_FrameRef(entry), "reply_data", str(exc))
            return
        expected = entry.labels.shape if entry.labels is not None else None
        if expected is not None and prediction.shape != expected:
            self.scorer.skip(_FrameRef(entry), "prediction_size",
                             f"labels {prediction.shape[1]}x{prediction.shape[0]} for a frame "
                             f"of {expected[1]}x{expected[0]}")
            return
        try:
            self.scorer.answered(entry.index, entry.stamp, prediction, entry.labels, latency,
                                 rgb=entry.rgb)
        except LabelValueError as exc:
            raise BagError(str(exc)) from None

    def _expire(self, now: float) -> None:
        while self.pending:
            key, entry = next(iter(self.pending.items()))
            if now - entry.sent <= self.o.timeout:
                return
            del self.pending[key]
            self.scorer.drop(entry.index, entry.stamp, "timeout")
            self.last_event = now

    def _final_diagnostics(self) -> None:
        """Wait (briefly) for a diagnostics message sent after the last frame."""
        since = time.perf_counter()
        deadline = since + 2.0
        while time.perf_counter() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
            if self.diagnostics is not None and self.diagnostics[1] > since + 0.05:
                return

    def _note(self) -> str:
        parts = [f"answered {self.scorer.answered_count}"]
        dropped = sum(self.scorer.dropped.values())
        if dropped:
            parts.append(f"dropped {dropped}")
        if self.scorer.scored:
            parts.append(f"mIoU {self.scorer.confusion.summary().miou * 100:5.2f}")
        return "  ".join(parts)


@dataclass
class _FrameRef:
    """Enough of a Frame for Scorer.skip."""

    entry: _InFlight

    @property
    def index(self) -> int:
        return self.entry.index

    @property
    def stamp(self) -> tuple[int, int]:
        return self.entry.stamp
