"""`textseg bench` and `textseg overload`: the backend alone, then the node in its own
process fed over real DDS from this process, on the same frames.

bench     raw backend latency p50/p99 and FPS per input size; the node's throughput while
          frames arrive faster than it can process them, and its own time per frame outside
          inference (from its /diagnostics: decode, copies, message building, publishing).
overload  frames at N x what the node can process for a while: latency must stay bounded
          (newest-frame-only, no queue) and memory flat.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from textseg.cli_args import DEFAULT_IMAGES
from textseg.cpu import cpu_features
from textseg.engine import BackendOptions, load_backend
from textseg.malloc_tuning import keep_large_buffers_in_heap
from textseg.stats import StatKey

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
Out = Callable[[str], None]


def load_frames(folder: str | Path, size: tuple[int, int], count: int = 8
                ) -> list[np.ndarray]:
    """`count` images from `folder`, resized to (height, width), as RGB."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder} (pass --images FOLDER)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    height, width = size
    frames = []
    for path in files:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"cannot read {path}")
        frames.append(cv2.cvtColor(cv2.resize(bgr, (width, height)), cv2.COLOR_BGR2RGB))
    return frames


def _percentiles_ms(seconds: list[float], qs=(50, 99)) -> tuple[float, ...]:
    if not seconds:
        return tuple(float("nan") for _ in qs)
    return tuple(float(v) for v in np.percentile(np.asarray(seconds) * 1e3, qs))


@dataclass
class RawResult:
    description: str
    size: tuple[int, int]
    p50_ms: float
    p99_ms: float
    fps: float
    frames: int


def bench_backend(backend, frames: list[np.ndarray], iterations: int, warmup: int = 3
                  ) -> RawResult:
    """Back-to-back inference on the frames (cycled), as fast as the backend goes."""
    for index in range(warmup):
        backend.infer(frames[index % len(frames)])
    times = []
    started = time.perf_counter()
    for index in range(iterations):
        t0 = time.perf_counter()
        backend.infer(frames[index % len(frames)])
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - started
    p50, p99 = _percentiles_ms(times)
    return RawResult(backend.description, frames[0].shape[:2], p50, p99, iterations / total,
                     iterations)


@dataclass
class DriveResult:
    published: int
    answered: list[tuple[float, float]]  # (send time, latency s) in send order, after warm-up
    window_answers: int  # labels that arrived inside the measurement window
    window_s: float
    diagnostics: dict[str, str]
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, bytes)
    processed_fps: float = float("nan")  # from the node's own counter (diagnostics)


class _RosSession:
    """A node process plus a FrameClient in this process, on a private DDS domain."""

    def __init__(self, parameters: dict, namespace: str = "/bench",
                 outputs: tuple[str, ...] = ()) -> None:
        import rclpy
        from sensor_msgs.msg import Image

        from textseg.client.frame_client import FrameClient
        from textseg.client.process import NodeProcess, use_local_ros_environment

        keep_large_buffers_in_heap()  # this process plays the camera driver: keep it lean
        env = use_local_ros_environment()
        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = NodeProcess(parameters, env=env, namespace=namespace).start()
        self.client = None
        try:
            self.client = FrameClient(
                context=self.context, image_topic=f"{namespace}/image",
                labels_topic=f"{namespace}/labels/image", name="textseg_bench", diagnostics=True,
                outputs={f"{namespace}/{topic}": Image for topic in outputs})
            self.client.wait_for_node(timeout=120.0, alive=self.node.alive)
        except BaseException:
            self.close()
            raise

    def close(self) -> int | None:
        if self.client is not None:
            self.client.close()
        self.rclpy.shutdown(context=self.context)
        return self.node.stop()


def drive(session: _RosSession, frames: list[np.ndarray], rate_hz: float, duration: float,
          warmup: float, encoding: str = "rgb8", sample_rss: bool = False) -> DriveResult:
    """Publish frames at `rate_hz` for `duration` s; collect labels; read diagnostics."""
    from builtin_interfaces.msg import Time

    client = session.client
    messages = [client.image_message(f, encoding, Time(), "camera") for f in frames]
    client.received.clear()
    period = 1.0 / rate_hz
    sent: dict[tuple[int, int], float] = {}
    arrivals: dict[tuple[int, int], float] = {}
    rss: list[tuple[float, int]] = []
    start = time.perf_counter()
    window_start, end = start + warmup, start + duration
    next_send, next_sample, index = start, start + warmup, 0
    processed: list[tuple[float, int]] = []  # (time, the node's "frames processed")
    base = 1_700_000_000 + int(time.time()) % 100_000 * 10
    while (now := time.perf_counter()) < end:
        if now >= next_send:
            msg = messages[index % len(messages)]
            msg.header.stamp = Time(sec=base + index // 1000, nanosec=(index % 1000) * 1000)
            sent[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = client.publish(msg)
            index += 1
            next_send = max(next_send + period, now - period)  # no catch-up bursts
        if now >= next_sample:
            value = session.node.rss_bytes() if sample_rss else None
            if value:
                rss.append((now - start, value))
            entry = client.node_diagnostics()
            if entry is not None and StatKey.FRAMES_PROCESSED in entry[0]:
                processed.append((now, int(entry[0][StatKey.FRAMES_PROCESSED])))
            next_sample += 1.0
        # Sleep in the wait set until the next send is due (labels wake it up earlier): a
        # camera driver does not spin, and a busy publisher would steal the node's CPU.
        wake = min(next_send, next_sample, end)
        client.executor.spin_once(timeout_sec=max(0.0, wake - time.perf_counter()))
        _keep_arrival_times(client, arrivals)
    client.spin_for(1.0)  # the last answers and a fresh diagnostics message
    _keep_arrival_times(client, arrivals)
    answered, in_window = [], 0
    for key, arrived in arrivals.items():
        if key not in sent:
            continue
        if sent[key] >= window_start:
            answered.append((sent[key], arrived - sent[key]))
        if window_start <= arrived <= end:
            in_window += 1
    answered.sort()
    entry = client.node_diagnostics()
    node_fps = float("nan")
    if len(processed) >= 2 and processed[-1][0] > processed[0][0]:
        node_fps = (processed[-1][1] - processed[0][1]) / (processed[-1][0] - processed[0][0])
    return DriveResult(index, answered, in_window, end - window_start,
                       entry[0] if entry else {}, rss, node_fps)


def _keep_arrival_times(client, arrivals: dict) -> None:
    """Keep when each label image arrived, not the image (720p labels are 0.9 MB each)."""
    while client.received:
        key, (_, arrived) = client.received.popitem()
        arrivals[key] = arrived


def _diag_ms(values: dict[str, str], key: str) -> float:
    try:
        return float(values.get(key, "nan"))
    except ValueError:
        return float("nan")


@dataclass
class BenchRow:
    raw: RawResult  # the best round
    node_fps: float = float("nan")  # the best round
    raw_median_fps: float = float("nan")
    node_median_fps: float = float("nan")
    overhead_p50_ms: float = float("nan")
    overhead_p99_ms: float = float("nan")
    node_inference_p50_ms: float = float("nan")
    latency_p50_ms: float = float("nan")
    rounds: int = 1
    outputs: str = ""  # the node's published topics ('' under --no-node: no node ran)
    self_check: str = ""  # what the backend's load-time self-check found


def run_bench(model: str, backend: str = "auto", precision: str = "fp16",
              sizes: tuple[tuple[int, int], ...] = ((720, 960), (720, 1280)),
              images: str | Path = DEFAULT_IMAGES, iterations: int = 30,
              duration: float = 15.0, warmup: float = 3.0, threads: int = 0,
              node: bool = True, rate_factor: float = 1.5, all_outputs: bool = False,
              rounds: int = 3, spin_wait: bool = False, parallel: int = 1,
              out: Out = print) -> list[BenchRow]:
    """Per size, `rounds` alternations of backend alone / node over DDS on the same frames;
    the node runs `parallel` inferences at once (its parameter parallel_inferences).

    This machine is shared with other work, which slows either phase at random; the table
    reports the best round of each (what the code can do undisturbed) and the medians."""
    rows = []
    for size in sizes:
        frames = load_frames(images, size)
        engine = load_backend(model, BackendOptions(
            backend=backend, threads=threads, precision=precision, input_size=size,
            spin_wait=spin_wait))
        out(f"model   {engine.self_check_note}")
        outputs = ("labels/color", "labels/overlay") if all_outputs else ()
        session = _RosSession({"model": str(model), "backend": backend,
                               "precision": precision, "threads": threads,
                               "image_width": size[1], "image_height": size[0],
                               "diagnostics_period": 0.5, "spin_wait": spin_wait,
                               "parallel_inferences": parallel},
                              outputs=outputs) if node else None
        raws: list[RawResult] = []
        nodes: list[tuple[float, DriveResult]] = []
        try:
            for index in range(rounds):
                raw = bench_backend(engine, frames, iterations, warmup=3 if index == 0 else 1)
                raws.append(raw)
                out(f"raw     {raw.description} {size[1]}x{size[0]}: p50 {raw.p50_ms:.1f} ms, "
                    f"p99 {raw.p99_ms:.1f} ms, {raw.fps:.2f} FPS over {raw.frames} frames")
                if session is None:
                    continue
                rate = rate_factor * max(r.fps for r in raws)
                result = drive(session, frames, rate, duration, warmup)
                fps = result.window_answers / result.window_s
                nodes.append((fps, result))
                d = result.diagnostics
                out(f"node    {size[1]}x{size[0]}: {fps:.2f} FPS received "
                    f"({result.processed_fps:.2f} by the node's count) with frames at "
                    f"{rate:.1f} Hz; "
                    f"overhead p50 {_diag_ms(d, StatKey.OVERHEAD_P50_MS):.2f} ms; inference "
                    f"in node p50 {_diag_ms(d, StatKey.INFERENCE_P50_MS):.1f} ms; frames dropped "
                    f"{d.get(StatKey.FRAMES_DROPPED, '?')}")
        finally:
            code = session.close() if session is not None else None
            engine_check = engine.self_check_note
            engine.close()
            del engine
        if code not in (0, None):
            raise RuntimeError(f"the node exited with {code}:\n"
                               f"{session.node.log_text()[-2000:]}")
        row = BenchRow(max(raws, key=lambda r: r.fps), rounds=rounds,
                       raw_median_fps=float(np.median([r.fps for r in raws])),
                       self_check=engine_check)
        if nodes:
            fps, best = max(nodes, key=lambda item: item[0])
            d = best.diagnostics
            row.node_fps = fps
            row.node_median_fps = float(np.median([f for f, _ in nodes]))
            row.overhead_p50_ms = _diag_ms(d, StatKey.OVERHEAD_P50_MS)
            row.overhead_p99_ms = _diag_ms(d, StatKey.OVERHEAD_P99_MS)
            row.node_inference_p50_ms = _diag_ms(d, StatKey.INFERENCE_P50_MS)
            row.latency_p50_ms = _percentiles_ms([lat for _, lat in best.answered])[0]
            row.outputs = "labels+color+overlay" if all_outputs else "labels"
        rows.append(row)
    return rows


def _cell(value: float, spec: str, unit: str = "") -> str:
    """A table figure, or '-' where none was measured (the node phase under --no-node)."""
    return "-" if value != value else f"{value:{spec}}{unit}"  # NaN: not measured


def format_bench_table(rows: list[BenchRow]) -> str:
    head = (f"{'backend':<42} {'input':>9} {'p50 ms':>7} {'p99 ms':>7} {'raw FPS':>8} "
            f"{'node FPS':>9} {'node/raw':>8} {'median':>7} {'overhead p50':>13} "
            f"{'overhead p99':>13}  outputs")
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = r.node_fps / r.raw.fps if r.raw.fps else float("nan")
        median = r.node_median_fps / r.raw_median_fps if r.raw_median_fps else float("nan")
        lines.append(
            f"{r.raw.description[:42]:<42} {r.raw.size[1]:>4}x{r.raw.size[0]:<4} "
            f"{r.raw.p50_ms:>7.1f} {r.raw.p99_ms:>7.1f} {r.raw.fps:>8.2f} "
            f"{_cell(r.node_fps, '.2f'):>9} {_cell(ratio, '.0%'):>8} {_cell(median, '.0%'):>7} "
            f"{_cell(r.overhead_p50_ms, '.2f', ' ms'):>13} "
            f"{_cell(r.overhead_p99_ms, '.2f', ' ms'):>13}  {r.outputs or '-'}")
    rounds = rows[0].rounds if rows else 1
    lines.append(f"(raw = backend alone in this process; node = segmentation_node in its own "
                 f"process fed over DDS; FPS and latency of the best of {rounds} alternating "
                 "rounds, median = ratio of the medians; overhead = the node's time per frame "
                 "outside inference, from its diagnostics)")
    lines.append(f"CPU: {cpu_features().describe()}")
    return "\n".join(lines)



@dataclass
class OverloadResult:
    size: tuple[int, int]
    factor: float
    rate_hz: float
    capacity_fps: float
    duration: float
    published: int
    answered: int
    dropped: int
    inference_p50_ms: float
    inference_p99_ms: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    node_e2e_p99_ms: float
    early_p50_ms: float
    late_p50_ms: float
    rss_start: int
    rss_end: int
    rss_max: int

    @property
    def rss_growth(self) -> float:
        return (self.rss_end - self.rss_start) / self.rss_start if self.rss_start else 0.0

    @property
    def latency_bounded(self) -> bool:
        """Client-side p99 (DDS both ways included) within two inference times."""
        return self.latency_p99_ms <= 2.0 * self.inference_p99_ms

    def report(self) -> str:
        h, w = self.size
        return "\n".join([
            f"overload  {w}x{h}, frames at {self.rate_hz:.1f} Hz = {self.factor:g}x the "
            f"node's capacity ({self.capacity_fps:.2f} FPS) for {self.duration:.0f} s",
            f"frames    published {self.published}, answered {self.answered} after warm-up, "
            f"dropped by the node {self.dropped}",
            f"inference p50 {self.inference_p50_ms:.1f} ms, p99 {self.inference_p99_ms:.1f} ms "
            "(in the node)",
            f"latency   publish -> labels p50 {self.latency_p50_ms:.1f} ms, p99 "
            f"{self.latency_p99_ms:.1f} ms, max {self.latency_max_ms:.1f} ms "
            f"(p99 = {self.latency_p99_ms / self.inference_p50_ms:.2f} x inference p50, "
            f"{self.latency_p99_ms / self.inference_p99_ms:.2f} x inference p99)",
            f"trend     p50 first third {self.early_p50_ms:.1f} ms, last third "
            f"{self.late_p50_ms:.1f} ms (no queue growth means no upward trend)",
            f"memory    node RSS {self.rss_start / 2**20:.1f} MiB after warm-up -> "
            f"{self.rss_end / 2**20:.1f} MiB at the end ({self.rss_growth:+.1%}), max "
            f"{self.rss_max / 2**20:.1f} MiB",
            f"verdict   latency {'bounded' if self.latency_bounded else 'NOT bounded'} "
            f"(p99 <= 2 inference times), memory "
            f"{'flat' if abs(self.rss_growth) < 0.05 else 'NOT flat'} (growth < 5%)",
        ])


def run_overload(model: str, size: tuple[int, int] = (720, 1280), factor: float = 3.0,
                 duration: float = 30.0, warmup: float = 5.0, backend: str = "auto",
                 precision: str = "fp16", threads: int = 0,
                 images: str | Path = DEFAULT_IMAGES, capacity_fps: float | None = None,
                 frames: list[np.ndarray] | None = None, extra_parameters: dict | None = None,
                 out: Out = print) -> OverloadResult:
    frames = frames if frames is not None else load_frames(images, size)
    if capacity_fps is None:
        engine = load_backend(model, BackendOptions(
            backend=backend, threads=threads, precision=precision, input_size=size))
        capacity_fps = bench_backend(engine, frames, 10).fps
        engine.close()
        del engine
    rate = factor * capacity_fps
    out(f"capacity {capacity_fps:.2f} FPS (backend alone); publishing at {rate:.1f} Hz "
        f"for {duration:.0f} s")
    session = _RosSession({"model": str(model), "backend": backend, "precision": precision,
                           "threads": threads, "image_width": size[1], "image_height": size[0],
                           **(extra_parameters or {})}, namespace="/overload")
    try:
        result = drive(session, frames, rate, duration, warmup, sample_rss=True)
    finally:
        code = session.close()
    if code not in (0, None):
        raise RuntimeError(f"the node exited with {code}:\n{session.node.log_text()[-2000:]}")
    d = result.diagnostics
    latencies = [lat for _, lat in result.answered]
    third = max(1, len(latencies) // 3)
    p50, p99 = _percentiles_ms(latencies)
    rss = [value for _, value in result.rss] or [0]
    return OverloadResult(
        size=size, factor=factor, rate_hz=rate, capacity_fps=capacity_fps, duration=duration,
        published=result.published, answered=len(latencies),
        dropped=int(d.get(StatKey.FRAMES_DROPPED, "0")),
        inference_p50_ms=_diag_ms(d, StatKey.INFERENCE_P50_MS),
        inference_p99_ms=_diag_ms(d, StatKey.INFERENCE_P99_MS),
        latency_p50_ms=p50, latency_p99_ms=p99,
        latency_max_ms=max(latencies) * 1e3 if latencies else float("nan"),
        node_e2e_p99_ms=_diag_ms(d, StatKey.END_TO_END_P99_MS),
        early_p50_ms=_percentiles_ms(latencies[:third])[0],
        late_p50_ms=_percentiles_ms(latencies[-third:])[0],
        rss_start=rss[0], rss_end=rss[-1], rss_max=max(rss))
