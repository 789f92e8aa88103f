"""Run segmentation_node in a process of its own (demo, tests, bag replay), stopped by PID."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from textseg.engine import package_share_dir
from textseg.ros_compat import (
    DDS_PROFILE_VARIABLES,
    dds_profile_environment,
    local_discovery_environment,
)


def fastdds_profile_path() -> Path:
    return package_share_dir() / "config" / "fastdds_large_images.xml"


def local_ros_environment(domain_id: int | None = None) -> dict[str, str]:
    """Environment for ROS processes that must talk only on this machine.

    Keeps a ROS_DOMAIN_ID already set (else picks one), confines discovery to localhost (with
    this distro's variable: textseg.ros_compat) and uses the large-image Fast DDS profile unless
    the caller set another.
    """
    env = dict(os.environ)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))
    for key, value in local_discovery_environment().items():
        env.setdefault(key, value)
    # A profile the caller named (under either distro's variable) is kept, and given to both.
    chosen = next((env[k] for k in DDS_PROFILE_VARIABLES if env.get(k)), None)
    env.update(dds_profile_environment(chosen or str(fastdds_profile_path())))
    return env


# ROS_LOCALHOST_ONLY: Humble's, in place of ROS_AUTOMATIC_DISCOVERY_RANGE (copied when set).
ROS_ENVIRONMENT_KEYS = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY",
                        *DDS_PROFILE_VARIABLES)


def use_local_ros_environment() -> dict[str, str]:
    """Set this process's own ROS variables from `local_ros_environment()` (before rclpy
    starts), so that an in-process client meets the node processes it starts; returns the
    environment for those processes."""
    env = local_ros_environment()
    for key in ROS_ENVIRONMENT_KEYS:
        if key in env:
            os.environ[key] = env[key]
    return env


class NodeProcess:
    """segmentation_node as a child process; parameters go through a temporary params file.
    `lifecycle=True` runs the managed variant (segmentation_lifecycle_node)."""

    def __init__(self, parameters: dict | None = None, remappings: dict[str, str] | None = None,
                 env: dict[str, str] | None = None, log_path: str | Path | None = None,
                 node_name: str = "segmentation_node",
                 params_file: str | Path | None = None, namespace: str = "",
                 lifecycle: bool = False) -> None:
        self.parameters = dict(parameters or {})
        self.module = ("textseg.node.lifecycle_segmentation_node" if lifecycle
                       else "textseg.node.segmentation_node")
        self.params_file = params_file
        self.namespace = namespace
        self.remappings = dict(remappings or {})
        self.env = env if env is not None else local_ros_environment()
        self._workdir = tempfile.TemporaryDirectory(prefix="textseg_node_")
        self.log_path = Path(log_path) if log_path else Path(self._workdir.name) / "node.log"
        self.node_name = node_name
        self.process: subprocess.Popen | None = None
        self._final_log: str | None = None

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", self.module, "--ros-args",
               "-r", f"__node:={self.node_name}"]
        if self.namespace:
            cmd += ["-r", f"__ns:={self.namespace}"]
        if self.params_file:
            cmd += ["--params-file", str(self.params_file)]
        if self.parameters:  # a later params file overrides an earlier one
            overrides = Path(self._workdir.name) / "params.yaml"
            # JSON is valid YAML, and quoted strings avoid YAML 1.1 surprises ("y" -> true).
            overrides.write_text(json.dumps({"/**": {"ros__parameters": self.parameters}}))
            cmd += ["--params-file", str(overrides)]
        for source, target in self.remappings.items():
            cmd += ["-r", f"{source}:={target}"]
        return cmd

    def start(self) -> NodeProcess:
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._log = log
        self.process = subprocess.Popen(self.command(), env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def rss_bytes(self) -> int | None:
        """Resident memory of the node process (Linux /proc), None when not running."""
        if not self.alive():
            return None
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
        return None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        if self._final_log is not None:
            return self._final_log
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def exit_code(self, timeout: float = 30.0) -> int | None:
        """Wait up to `timeout` s for the node to exit by itself (a start-up error), then stop
        it; its exit code."""
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        return self.stop()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGINT (clean rclpy shutdown), then SIGKILL if it does not exit in `timeout`."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self._log.close()
        self._final_log = self.log_text()  # kept: the log's folder goes with the object
        return self.process.returncode

    def __enter__(self) -> NodeProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self._workdir.cleanup()


@contextmanager
def serving(node: NodeProcess, client, timeout: float = 60.0):
    """(node, client) once the client sees the node; on the way out the client is closed and
    the node stopped by PID, which must exit cleanly (code 0)."""
    try:
        client.wait_for_node(timeout=timeout, alive=node.alive)
        yield node, client
    finally:
        client.close()
        code = node.stop()
        assert code == 0, f"node did not exit cleanly ({code}):\n{node.log_text()[-2000:]}"
