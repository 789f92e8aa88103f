"""`textseg demo`: run segmentation_node on real frames and show what it published.

Starts the node in its own process, sends each frame over DDS as sensor_msgs/Image, waits for
its label image, checks header and size, and prints a table; a PNG strip of
image | labels | overlay is written beside it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np

from textseg.engine import default_model_path, load_backend
from textseg.fileio import atomic_write_bytes
from textseg.imaging import colorize, image_to_rgb, overlay

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def list_images(folder: Path, limit: int) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(
            f"image folder not found: {folder} (the demo reads CamVid from "
            "../shared/datasets/camvid/val; pass --images FOLDER for your own frames)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files[:limit]


def run_demo(images: Path, count: int, model: str, output: Path, encoding: str,
             timeout: float) -> int:
    import rclpy
    from builtin_interfaces.msg import Time

    from textseg.node.frame_client import FrameClient
    from textseg.node.process import NodeProcess, local_ros_environment

    files = list_images(images, count)
    model_path = Path(model) if model else default_model_path()
    info = load_backend(model_path).info  # fail here, clearly, before starting processes
    env = local_ros_environment()
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE",
                                           "FASTDDS_DEFAULT_PROFILES_FILE")})
    print(f"model   {model_path}\n        {info.architecture}, dataset {info.dataset}, "
          f"stage {info.training_stage}, {info.num_classes} classes")
    print(f"frames  {len(files)} from {images} as {encoding}, one at a time over DDS "
          f"(ROS_DOMAIN_ID {env['ROS_DOMAIN_ID']}, localhost only)")
    node = NodeProcess({"model": str(model_path)}, env=env)
    context = rclpy.Context()
    rclpy.init(context=context)
    rows, latencies, strip = [], [], []
    node.start()
    client = FrameClient(context=context, name="textseg_demo")
    try:
        started = time.monotonic()
        client.wait_for_node(timeout=60.0, alive=node.alive)
        print(f"node    pid {node.pid}, connected in {time.monotonic() - started:.1f} s\n")
        print(f"{'#':>3}  {'frame':<22}{'stamp':>20}  {'frame_id':<9}{'size':>9}  "
              f"{'encoding':<9}{'latency':>9}  classes (share of pixels)")
        run_start = time.perf_counter()
        for index, path in enumerate(files):
            rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            stamp = Time(sec=1_700_000_000 + index, nanosec=index * 1000)
            reply = client.exchange(client.image_message(rgb, encoding, stamp, "camera"),
                                    timeout)
            if reply is None:
                print(f"{index:>3}  {path.name:<22} no labels within {timeout:.0f} s")
                continue
            msg, latency = reply
            labels = image_to_rgb("mono8", msg.height, msg.width, msg.step, msg.data)[..., 0]
            ok = (msg.header.frame_id == "camera" and (msg.height, msg.width) == rgb.shape[:2]
                  and msg.encoding == "mono8")
            latencies.append(latency)
            rows.append(ok)
            print(f"{index:>3}  {path.name:<22}{stamp.sec:>10}.{stamp.nanosec:09d}  "
                  f"{msg.header.frame_id:<9}{msg.width:>4}x{msg.height:<4}  {msg.encoding:<9}"
                  f"{latency * 1000:>7.1f}ms  {_top_classes(labels, info.class_names)}"
                  f"{'' if ok else '  <-- header/size mismatch'}")
            if len(strip) < 4:
                color = colorize(labels, np.array(info.palette, np.uint8))
                strip.append(np.hstack([rgb, color, overlay(rgb, color, 0.5)]))
        elapsed = time.perf_counter() - run_start
    finally:
        client.close()
        rclpy.shutdown(context=context)
        node.stop()
    answered = len(latencies)
    if not answered:
        print("\nno frame was answered; node log:\n" + node.log_text()[-3000:])
        return 1
    ms = np.array(latencies) * 1000
    print(f"\nanswered {answered}/{len(files)} frames, header and size correct on "
          f"{sum(rows)}/{answered}")
    print(f"latency  mean {ms.mean():.1f} ms  p50 {np.percentile(ms, 50):.1f}  "
          f"p90 {np.percentile(ms, 90):.1f}  max {ms.max():.1f}  "
          f"-> {answered / elapsed:.1f} frames/s end to end (one frame in flight)")
    if strip:
        output.mkdir(parents=True, exist_ok=True)
        png = output / "demo_strip.png"
        atomic_write_bytes(png, cv2.imencode(".png", cv2.cvtColor(np.vstack(strip),
                                                                  cv2.COLOR_RGB2BGR))[1])
        print(f"picture  {png} (image | labels | overlay)")
    if info.training_stage in ("random-init", "untrained"):
        print("note     this model is randomly initialised: the classes are not meaningful "
              "until a trained model is used (model:=PATH)")
    return 0 if all(rows) and answered == len(files) else 1


def _top_classes(labels: np.ndarray, names: tuple[str, ...], top: int = 3) -> str:
    counts = np.bincount(labels.ravel(), minlength=len(names))[: len(names)]
    order = np.argsort(counts)[::-1][:top]
    return ", ".join(f"{names[i]} {counts[i] / labels.size:.0%}" for i in order if counts[i])
