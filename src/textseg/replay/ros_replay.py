"""`textseg replay BAG`: play a bag's camera topic through segmentation_node over DDS.

The node runs in its own process (`NodeProcess`, stopped by PID), on this machine only
(`local_ros_environment`), in a namespace of its own. This process talks to it through the
client harness (`SerializedFrameClient`): it publishes the bag's serialized camera messages
unchanged (recorded header stamp and frame_id), collects the node's `labels`, matches them to
the ground truth by stamp and scores them. The model's classes are read from the file; only
the node opens a backend.

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
from textseg.stats import StatKey

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
    # Collect each frame's labels/health (level, score) and keep its confusion matrix
    # (textseg robustness validates the health signal against the labels' scores).
    health: bool = False

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
    # frame index -> (level, score, frames in the window) of its labels/health
    health: dict[int, tuple[int, float | None, int]] = field(default_factory=dict)

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


def _node_figures(values: dict[str, str], stamp_s: float) -> dict:
    """The node's own figures from its diagnostic values; `stamp_s`: the status's header
    stamp (ROS time of the node, the bag's clock under use_sim_time)."""
    def number(key: str):
        try:
            return float(values[key])
        except (KeyError, ValueError):
            return None

    def count(key: str):
        value = number(key)
        return None if value is None else int(value)

    return {"backend": values.get(StatKey.BACKEND),
            "inference_p50_ms": number(StatKey.INFERENCE_P50_MS),
            "inference_p99_ms": number(StatKey.INFERENCE_P99_MS),
            "end_to_end_p50_ms": number(StatKey.END_TO_END_P50_MS),
            "node_overhead_p50_ms": number(StatKey.OVERHEAD_P50_MS),
            "node_overhead_p99_ms": number(StatKey.OVERHEAD_P99_MS),
            "frames_received": count(StatKey.MESSAGES_RECEIVED),
            "frames_processed": count(StatKey.FRAMES_PROCESSED),
            "frames_dropped": count(StatKey.FRAMES_DROPPED),
            "messages_rejected": count(StatKey.MESSAGES_REJECTED),
            "diagnostics_stamp_s": stamp_s,
            "note": "the node's own diagnostics (last 512 frames, warm-up included)"}


def _model_info(model_path: Path):
    """The model's contract (classes, palette) read from the file, without opening a backend:
    the node opens its own. A baked .engine carries its ONNX metadata in its sidecar."""
    from textseg.engine.contract import ModelInfo
    from textseg.engine.engine_cache import read_record
    from textseg.engine.onnx_file import describe_model

    if not model_path.is_file():
        raise FileNotFoundError(f"model file not found: {model_path}")
    if model_path.suffix == ".engine":
        return ModelInfo.from_metadata(read_record(model_path).model_metadata,
                                       source=str(model_path))
    return describe_model(model_path).info


def run_replay(options: ReplayOptions, frames_log: Path | None = None) -> ReplayRun:
    """Play the bag through a fresh segmentation_node process and score its answers."""
    from textseg.client.process import local_ros_environment
    from textseg.engine import choose_backend, default_model_path

    if options.rate is not None and options.rate <= 0:
        raise ValueError(f"--rate must be positive (or 'lockstep'), got {options.rate}")
    if options.timeout <= 0:
        raise ValueError(f"--timeout must be positive, got {options.timeout}")
    if options.startup_timeout <= 0:
        raise ValueError(f"--startup-timeout must be positive, got {options.startup_timeout}")
    model_path = Path(options.model) if options.model else default_model_path()
    with BagSource(options.bag, options.image_topic, options.labels_topic) as source:
        info = _model_info(model_path)
        # the backend the node will take here, for the report when the node sends no diagnostics
        backend, why = choose_backend(options.backend, model_path)
        description = f"{backend} ({why})"
        setup = settle(source, model_path, info, options.ignore_id)
        total = (source.frame_count if options.limit is None
                 else min(options.limit, source.frame_count))
        scorer = Scorer(setup.class_names, setup.palette, setup.ignore_id, total,
                        options.strip_rows, frames_log, keep_frame_matrices=options.health)
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
        self.node_name = f"{self.namespace}/segmentation_node"
        self.pending: OrderedDict[tuple[int, int], _InFlight] = OrderedDict()
        self.answered_recently: OrderedDict[tuple[int, int], int] = OrderedDict()
        self.lag = Samples()
        self.late = 0
        self.sent = 0
        self.seq = 0
        self.first_sent: float | None = None
        self.last_event: float | None = None
        self.record: RawBagWriter | None = None
        self.index_of: dict[tuple[int, int], int] = {}  # stamp -> frame index (health)

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
        """Our end of the node's topics, in its namespace: the replies as serialized bytes
        (scored and recorded as they came), its diagnostics, and its /clock when on sim time."""
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image

        from textseg.client.frame_client import SerializedFrameClient

        outputs = {**({"labels/color": Image} if self.o.record else {}),
                   **({"labels/health": DiagnosticArray} if self.o.health else {})}
        client = SerializedFrameClient(
            context=context, name="textseg_replay", namespace=self.namespace,
            image_topic="image/compressed" if self.compressed else "image",
            transport="compressed" if self.compressed else "raw",
            outputs=outputs or None, diagnostics=True, diagnostics_topic="diagnostics")
        self.health_raw = client.output_messages.get("labels/health", deque())
        self.colors = client.output_messages.get("labels/color", deque())
        self.clock = None
        if self.o.sim_time:  # the node's /clock, remapped into our namespace
            from rosgraph_msgs.msg import Clock

            self.clock = client.node.create_publisher(Clock, "clock", 10)
        return client

    def _node_figures(self) -> dict:
        entry = self.client.node_diagnostics(self.node_name)
        if entry is None:
            return {}
        values, _, stamp = entry
        return _node_figures(values, stamp.sec + stamp.nanosec * 1e-9)

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
            self.client = None
            try:
                self.client = self._client(context)
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
                if self.client is not None:
                    self.client.close()
                rclpy.try_shutdown(context=context)
        recorded = None
        if self.record is not None:
            recorded = dict(self.record.counts)
            self.record.__exit__(None, None, None)
        wall = ((self.last_event - self.first_sent)
                if self.first_sent is not None and self.last_event is not None else 0.0)
        log = self.node_process.log_text()
        return ReplayRun(self.setup, self.scorer, self.o, self.sent, wall, self.description,
                         self._node_figures(), self.lag, self.late,
                         self.node_process.process.returncode, log[-2500:], recorded,
                         self._health_by_frame())

    def _health_by_frame(self) -> dict[int, tuple[int, float | None, int]]:
        """Frame index -> (level, score, window) of the labels/health sent with it."""
        found = {}
        for raw in self.health_raw:
            array = _typestore().deserialize_cdr(raw, "diagnostic_msgs/msg/DiagnosticArray")
            stamp = (int(array.header.stamp.sec), int(array.header.stamp.nanosec))
            if stamp not in self.index_of or not array.status:
                continue
            status = array.status[0]
            values = {kv.key: kv.value for kv in status.values}
            score = values.get("health score", "-")
            level = status.level
            level = level[0] if isinstance(level, bytes | bytearray) else int(level)
            found[self.index_of[stamp]] = (level, None if score == "-" else float(score),
                                           int(values.get("health window (frames)", 0)))
        return found

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
        while not self.client.connected():
            self._check_node_startup()
            if time.monotonic() > deadline:
                raise RuntimeError(f"segmentation_node did not connect within "
                                   f"{self.o.startup_timeout:.0f} s; its log ends:\n"
                                   f"{self.node_process.log_text()[-2000:]}")
            self.client.executor.spin_once(timeout_sec=0.05)
        if first is None:
            return
        raw = self._warmup_message(first)
        if first.log_ns:
            self._publish_clock(first.log_ns)
        answers = self.client.answers
        while True:
            self.client.publish(raw)
            resend = time.monotonic() + 1.0
            while time.monotonic() < resend:
                self.client.executor.spin_once(timeout_sec=0.01)
                while answers:
                    reply, _ = answers.popleft()
                    if self._reply_stamp(reply) == WARMUP_STAMP:
                        answers.clear()
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
                self.client.executor.spin_once(timeout_sec=0.01)
                continue
            if frame.problem is not None:
                self.scorer.seen()
                self.scorer.skip(frame, *frame.problem)
                progress.update(self.scorer.frames_seen, self._note())
                frame = next(frames, None)
                continue
            if lockstep:
                if self.pending:
                    self.client.executor.spin_once(timeout_sec=0.01)
                    continue
                target = now
            else:
                if t0_wall is None:
                    t0_wall, t0_log = now, frame.log_ns
                target = t0_wall + (frame.log_ns - t0_log) / 1e9 / self.o.rate
                if now < target:
                    self.client.executor.spin_once(timeout_sec=min(0.005, target - now))
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
        sent = self.client.publish(frame.raw)
        if self.o.rate is not None:
            self.lag.add(max(0.0, sent - target))
        if self.first_sent is None:
            self.first_sent = sent
        self.sent += 1
        self.seq += 1
        if self.o.health:
            self.index_of[frame.stamp] = frame.index
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
        answers = self.client.answers
        while answers:
            raw, arrived = answers.popleft()
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
            self.client.executor.spin_once(timeout_sec=0.05)
            entry = self.client.node_diagnostics(self.node_name)
            if (entry is not None
                    and self.client.diagnostics_arrived[entry[1].name] > since + 0.05):
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
