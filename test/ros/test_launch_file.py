"""launch/segmentation.launch.py under the real ROS 2 launch system.

Skipped where `launch_ros` is not importable (the project venv has rclpy but not the launch
packages). Where it is, the launch file is built and then run through `launch.LaunchService`,
as `ros2 launch` does, against a fake install prefix (ament index + share/textseg + a
lib/textseg/segmentation_node script running this checkout's node). Traffic stays on this
machine; the node is stopped by shutting the launch service down.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import random
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("launch_ros", reason="launch_ros (ROS 2 launch) is not installed")

from launch.actions import IncludeLaunchDescription, RegisterEventHandler  # noqa: E402
from launch.event_handlers import OnProcessIO, OnProcessStart  # noqa: E402
from launch.launch_description import LaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from launch.launch_service import LaunchService  # noqa: E402

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILE = REPO / "launch" / "segmentation.launch.py"
DEFAULT_MODEL = REPO / "models" / "textseg_default.onnx"
ARGUMENTS = {"model", "backend", "precision", "image", "transport", "params_file", "namespace",
             "use_sim_time", "dds_profile", "lifecycle"}


@pytest.fixture
def fake_prefix(tmp_path, monkeypatch) -> Path:
    """An install prefix as colcon would make it, with the node running from this checkout."""
    prefix = tmp_path / "install"
    index = prefix / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    (index / "textseg").touch()
    share = prefix / "share" / "textseg"
    shutil.copytree(REPO / "config", share / "config")
    (share / "models").symlink_to(REPO / "models", target_is_directory=True)
    (prefix / "lib" / "textseg").mkdir(parents=True)
    for executable, module in (("segmentation_node", "segmentation_node"),
                               ("segmentation_lifecycle_node", "lifecycle_segmentation_node")):
        node_script = prefix / "lib" / "textseg" / executable
        node_script.write_text(
            f'#!/bin/sh\nexec "{sys.executable}" -m textseg.node.{module} "$@"\n')
        node_script.chmod(0o755)

    # First in the path, so it wins over a sourced workspace that also has textseg.
    monkeypatch.setenv("AMENT_PREFIX_PATH", os.pathsep.join(
        p for p in (str(prefix), os.environ.get("AMENT_PREFIX_PATH", "")) if p))
    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path / "ros_log"))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if "ROS_DOMAIN_ID" not in os.environ:
        monkeypatch.setenv("ROS_DOMAIN_ID", str(random.randint(101, 200)))
    # The launch file, not the caller, must give the node its Fast DDS profile.
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE", raising=False)
    # launch_ros writes each node's parameters to a temporary file it never deletes.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return prefix


def _load_launch_module():
    spec = importlib.util.spec_from_file_location("textseg_segmentation_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_declares_every_argument_with_defaults_from_the_package_share(fake_prefix):
    description = _load_launch_module().generate_launch_description()
    arguments = {a.name: a for a in description.get_launch_arguments()}
    assert set(arguments) == ARGUMENTS

    def default(name):
        return "".join(s.describe().strip("'") for s in arguments[name].default_value)

    config = fake_prefix / "share" / "textseg" / "config"
    assert default("params_file") == str(config / "segmentation.yaml")
    assert default("dds_profile") == str(config / "fastdds_large_images.xml")
    assert default("model") == ""  # the params file's value (the default artifact) is kept


def _run_launch(arguments: dict[str, str], wait_for: str, timeout: float = 20.0):
    """Run the launch file until a node output line contains `wait_for`, then shut down.

    Returns (launch return code, the node's output, the node's environment, its PIDs)."""
    output: list[str] = []
    started: list = []

    def on_output(event):
        output.append(event.text.decode(errors="replace"))

    service = LaunchService(argv=[f"{k}:={v}" for k, v in arguments.items()])
    service.include_launch_description(LaunchDescription([
        RegisterEventHandler(OnProcessStart(on_start=lambda event, _: started.append(event))),
        RegisterEventHandler(OnProcessIO(on_stdout=on_output, on_stderr=on_output)),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
                                 launch_arguments=list(arguments.items())),
    ]))

    async def run():
        task = asyncio.ensure_future(service.run_async())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (not task.done() and wait_for not in "".join(output)
               and loop.time() < deadline):
            await asyncio.sleep(0.1)
        stopping = service.shutdown()
        if stopping is not None:
            await stopping
        return await asyncio.wait_for(task, timeout=15.0)

    try:
        code = asyncio.run(run())
    finally:
        survivors = [e.pid for e in started if _alive(e.pid)]
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)
    assert not survivors, f"processes survived the launch shutdown: {survivors}"
    return code, "".join(output), [e.env for e in started]


def _alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # already reaped by the launch service
        return False
    return finished == 0


def test_runs_the_node_with_remapped_topics_in_the_namespace(fake_prefix):
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"default model {DEFAULT_MODEL} not built (run scripts/setup.sh)")
    code, output, envs = _run_launch(
        {"image": "camera/image_raw", "namespace": "front"}, wait_for="/front/labels/image")

    log = [line for line in output.splitlines() if "/front/labels/image" in line]
    assert log, f"the node never reported its topics:\n{output[-3000:]}"
    assert "[front.segmentation_node]" in log[0]
    assert "input /front/camera/image_raw" in log[0]
    assert str(fake_prefix / "share" / "textseg" / "models" / DEFAULT_MODEL.name) in log[0]
    assert "FATAL" not in output and "ERROR" not in output, output[-3000:]
    assert len(envs) == 1
    profile = fake_prefix / "share" / "textseg" / "config" / "fastdds_large_images.xml"
    assert envs[0]["FASTDDS_DEFAULT_PROFILES_FILE"] == str(profile)
    assert code == 0, output[-3000:]


@pytest.mark.parametrize("value", ["none", "NONE"])
def test_dds_profile_none_keeps_the_environment_profile(fake_prefix, monkeypatch, value):
    """`dds_profile:=none` (a shell cannot pass an empty value to ros2 launch) leaves the
    user's own FASTDDS_DEFAULT_PROFILES_FILE to the node."""
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"default model {DEFAULT_MODEL} not built (run scripts/setup.sh)")
    own = fake_prefix / "share" / "textseg" / "config" / "fastdds_large_images.xml"
    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", str(own))
    code, output, envs = _run_launch({"dds_profile": value}, wait_for="/labels/image")
    assert len(envs) == 1 and code == 0, output[-3000:]
    assert envs[0]["FASTDDS_DEFAULT_PROFILES_FILE"] == str(own)  # inherited, not 'none'


def test_camera_info_is_remapped_beside_the_input_image(fake_prefix, tmp_path):
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"default model {DEFAULT_MODEL} not built (run scripts/setup.sh)")
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    camera_info: true\n")
    code, output, _ = _run_launch({"image": "camera/image_raw", "namespace": "front",
                                   "params_file": str(params)}, wait_for="/front/labels/image")
    log = [line for line in output.splitlines() if "/front/labels/image" in line]
    assert log and "input /front/camera/image_raw + /front/camera/camera_info" in log[0], \
        output[-3000:]
    assert code == 0, output[-3000:]


def test_lifecycle_true_starts_the_managed_node_unconfigured(fake_prefix):
    """lifecycle:=true runs segmentation_lifecycle_node under the same name, waiting for a
    lifecycle manager: no topic is created before configure."""
    code, output, envs = _run_launch({"namespace": "front", "lifecycle": "true"},
                                     wait_for="waiting for configure")
    log = [line for line in output.splitlines() if "waiting for configure" in line]
    assert log and "[front.segmentation_node]" in log[0], output[-3000:]
    assert "/front/segmentation_node configure" in log[0]
    assert "/front/labels/image" not in output  # outputs only exist once configured
    assert len(envs) == 1 and code == 0, output[-3000:]


def test_lifecycle_refuses_a_value_that_is_not_a_boolean(fake_prefix):
    description = _load_launch_module()
    with pytest.raises(Exception, match="lifecycle:='yes please'"):
        _run_launch_raising({"lifecycle": "yes please"}, description)


def _run_launch_raising(arguments: dict[str, str], module) -> None:
    from launch import LaunchContext

    context = LaunchContext()
    for name, value in arguments.items():
        context.launch_configurations[name] = value
    for name in ("model", "backend", "precision", "transport", "namespace", "params_file"):
        context.launch_configurations.setdefault(name, "")
    context.launch_configurations.setdefault("image", "image")
    context.launch_configurations.setdefault("use_sim_time", "false")
    context.launch_configurations.setdefault("dds_profile", "none")
    module._node(context)
