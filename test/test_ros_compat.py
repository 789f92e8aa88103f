"""textseg.ros_compat: what differs between ROS 2 distros, and the scripts' distro switch.

Run on both tested distros (the README's test command on Jazzy, .ci/run's Kilted leg): the
facts about the running distro are checked against the rclpy really installed; the Humble
branches, which no machine here can run, against stand-ins of Humble's rclpy modules. The DDS
side (type hashes of live endpoints, bags replayed across distros) is in test/ros/.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from textseg import ros_compat
from textseg.replay.bagio import IMAGE_TYPE, RawBagWriter

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS_WITH_THE_SWITCH = ("setup.sh", "test.sh", "build_vision_msgs.sh", "test_runtime_only.sh",
                           "demo.sh", "bench.sh")


def _pins(distro: str) -> dict[str, str]:
    text = (ROOT / "requirements" / distro / "ros.txt").read_text(encoding="utf-8")
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", text, re.MULTILINE))


# --- the scripts' switch and the module agree -------------------------------------------------
def test_the_scripts_and_the_module_name_the_same_distros():
    text = (ROOT / "scripts" / "ros_distro.sh").read_text(encoding="utf-8")
    default = re.search(r"^ros_default_distro=(\w+)$", text, re.MULTILINE).group(1)
    listed = re.search(r"^ros_distros=\(([\w ]+)\)$", text, re.MULTILINE).group(1).split()
    assert default == ros_compat.DEFAULT_DISTRO == "jazzy"
    assert tuple(listed) == ros_compat.TESTED_DISTROS
    pinned = sorted(p.parent.name for p in (ROOT / "requirements").glob("*/ros.txt"))
    assert pinned == sorted(ros_compat.TESTED_DISTROS)


@pytest.mark.parametrize("distro", ros_compat.TESTED_DISTROS)
def test_each_distro_pins_its_own_rclpy_and_build_tools(distro):
    """requirements/<distro>/ros.txt pins the rclpy of that distro (the module's table maps
    rclpy's major version to it), and the vision_msgs build uses the same release's msgs."""
    pins = _pins(distro)
    major = int(pins["ros-rclpy"].split(".")[0])
    assert ros_compat.DISTROS[distro].rclpy_major == major
    build = (ROOT / "requirements" / distro / "vision_msgs_build.txt").read_text()
    build_pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", build, re.MULTILINE))
    assert build_pins["ros-std-msgs"] == pins["ros-std-msgs"]


@pytest.mark.parametrize("script", SCRIPTS_WITH_THE_SWITCH)
@pytest.mark.parametrize("value, says", [
    ("lunar", "ROS_DISTRO=lunar: not a distro these scripts install; choose one of: "
              "jazzy (the default), kilted"),
    ("humble", "Humble has no wheels on PyPI"),
])
def test_an_unknown_distro_is_refused_naming_the_choices(script, value, says):
    """Refused before anything is created or installed, with exit code 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("_ROS_WHEELS")}
    env["ROS_DISTRO"] = value
    result = subprocess.run(["bash", str(ROOT / "scripts" / script)], env=env, text=True,
                            capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr
    assert "choose one of: jazzy (the default), kilted" in result.stderr
    assert not (ROOT / f".venv-{value}").exists()


def test_the_switch_picks_each_distros_venv_and_pins():
    out = subprocess.run(
        ["bash", "-c", 'for d in "" jazzy kilted; do ROS_DISTRO=$d; '
                       'source scripts/ros_distro.sh; echo "$ros_distro ${ros_venv#$PWD/} '
                       '${ros_requirements#$PWD/}"; done'],
        cwd=ROOT, text=True, capture_output=True, check=True, timeout=60).stdout.splitlines()
    assert out == ["jazzy .venv requirements/jazzy", "jazzy .venv requirements/jazzy",
                   "kilted .venv-kilted requirements/kilted"]


# --- the running distro -----------------------------------------------------------------------
def test_the_running_distro_is_the_one_whose_wheels_are_installed():
    """Where the ROS wheels are installed (scripts/setup.sh), the detected distro is the one
    whose pinned rclpy this Python has, whatever ROS_DISTRO says."""
    try:
        version = importlib.metadata.version("ros-rclpy")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("no ros-rclpy wheel in this Python (a ROS install, or no ROS)")
    distro = ros_compat.current_distro()
    assert distro in ros_compat.TESTED_DISTROS
    assert _pins(distro)["ros-rclpy"] == version


def test_without_rclpy_metadata_the_environment_then_the_default_decide(monkeypatch):
    monkeypatch.setattr(ros_compat, "_rclpy_version", lambda: None)
    ros_compat.current_distro.cache_clear()
    try:
        monkeypatch.setenv("ROS_DISTRO", "humble")
        assert ros_compat.current_distro() == "humble"
        ros_compat.current_distro.cache_clear()
        monkeypatch.delenv("ROS_DISTRO")
        assert ros_compat.current_distro() == "jazzy"
        ros_compat.current_distro.cache_clear()
        monkeypatch.setattr(ros_compat, "_rclpy_version", lambda: "3.3.16")
        monkeypatch.setenv("ROS_DISTRO", "kilted")  # the rclpy really imported wins
        assert ros_compat.current_distro() == "humble"
    finally:
        ros_compat.current_distro.cache_clear()


def test_a_newer_distro_behaves_as_the_newest_known():
    assert ros_compat.distro_traits("rolling") == ros_compat.DISTROS["kilted"]


# --- rclpy's API --------------------------------------------------------------------------
def test_event_callbacks_report_qos_and_type_on_this_distro():
    pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
    from rclpy import event_handler

    on_qos, on_type = (lambda info: None), (lambda info: None)
    for kind in ("SubscriptionEventCallbacks", "PublisherEventCallbacks"):
        callbacks = ros_compat.event_callbacks(kind, on_qos, on_type)
        assert isinstance(callbacks, getattr(event_handler, kind))
        assert callbacks.incompatible_qos is on_qos
        assert callbacks.incompatible_type is on_type  # Iron on: Jazzy and Kilted


def test_event_callbacks_fall_back_to_humbles_qos_event(monkeypatch):
    """Humble has rclpy.qos_event only, and no incompatible-type event."""
    rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

    class SubscriptionEventCallbacks:  # Humble's signature
        def __init__(self, *, deadline=None, incompatible_qos=None, liveliness=None,
                     message_lost=None, use_default_callbacks=True):
            self.incompatible_qos = incompatible_qos

    humble = types.ModuleType("rclpy.qos_event")
    humble.SubscriptionEventCallbacks = SubscriptionEventCallbacks
    monkeypatch.delattr(rclpy, "event_handler", raising=False)
    monkeypatch.setitem(sys.modules, "rclpy.event_handler", None)
    monkeypatch.setattr(rclpy, "qos_event", humble, raising=False)
    monkeypatch.setitem(sys.modules, "rclpy.qos_event", humble)
    on_qos = lambda info: None  # noqa: E731
    callbacks = ros_compat.event_callbacks("SubscriptionEventCallbacks", on_qos, print)
    assert isinstance(callbacks, SubscriptionEventCallbacks)
    assert callbacks.incompatible_qos is on_qos


def test_lifecycle_api_is_rclpys():
    pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
    from rclpy.node import Node

    node_cls, state_cls, returns = ros_compat.lifecycle_api()
    assert issubclass(node_cls, Node)
    assert state_cls.__name__ == "LifecycleState"
    assert {"SUCCESS", "FAILURE", "ERROR"} <= {m for m in dir(returns) if m.isupper()}


def test_lifecycle_api_without_rclpy_lifecycle_says_which_distro_it_needs(monkeypatch):
    monkeypatch.setitem(sys.modules, "rclpy.lifecycle", None)
    with pytest.raises(ImportError, match=r"rclpy.lifecycle \(ROS 2 Humble or newer\)"):
        ros_compat.lifecycle_api()


def test_endpoint_type_hash_is_rihs01_or_none():
    class Hash:
        def __init__(self, text):
            self.text = text

        def __str__(self):
            return self.text

    digest = "RIHS01_" + "ab" * 32
    assert ros_compat.endpoint_type_hash(types.SimpleNamespace(topic_type_hash=Hash(digest))) \
        == digest
    assert ros_compat.endpoint_type_hash(types.SimpleNamespace(
        topic_type_hash=Hash("INVALID"))) is None  # discovery gave none
    assert ros_compat.endpoint_type_hash(types.SimpleNamespace(node_name="n")) is None  # Humble


# --- DDS on this machine ------------------------------------------------------------------
def test_local_discovery_uses_each_distros_variable(monkeypatch):
    assert ros_compat.local_discovery_environment("jazzy") == {
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    assert ros_compat.local_discovery_environment("kilted") == {
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    assert ros_compat.local_discovery_environment("humble") == {"ROS_LOCALHOST_ONLY": "1"}

    from textseg.client import process

    for key in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(process, "local_discovery_environment",
                        lambda: ros_compat.local_discovery_environment("humble"))
    env = process.local_ros_environment()
    assert env["ROS_LOCALHOST_ONLY"] == "1" and "ROS_AUTOMATIC_DISCOVERY_RANGE" not in env


# --- bags -----------------------------------------------------------------------------------
def _metadata(bag: Path) -> dict:
    return yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]


@pytest.mark.parametrize("distro, version", [("jazzy", 9), ("kilted", 9), ("humble", 8)])
def test_bags_are_written_as_each_distros_rosbag2_reads_them(monkeypatch, tmp_path, distro,
                                                             version):
    """The metadata version and the message definitions (with their type hashes) follow the
    distro; Image's definition, and so its hash, is the same in all three."""
    monkeypatch.setattr(ros_compat, "current_distro", lambda: distro)
    ros_compat.bag_typestore.cache_clear()
    try:
        store = ros_compat.bag_typestore()
        with RawBagWriter(tmp_path / distro, storage="mcap") as writer:
            writer.add_topic("/cam/image", IMAGE_TYPE)
    finally:
        ros_compat.bag_typestore.cache_clear()
    metadata = _metadata(tmp_path / distro)
    assert metadata["version"] == version
    (topic,) = metadata["topics_with_message_count"]
    assert topic["topic_metadata"]["type_description_hash"] == store.hash_rihs01(IMAGE_TYPE)
    assert ros_compat.distro_traits(distro).typestore == f"ROS2_{distro.upper()}"


def test_the_large_image_profile_reaches_every_distros_fast_dds(monkeypatch):
    """Fast DDS 3 (Kilted) reads FASTDDS_DEFAULT_PROFILES_FILE, Fast DDS 2 (Jazzy) only
    FASTRTPS_DEFAULT_PROFILES_FILE: every process textseg starts gets both, naming one file."""
    from textseg.client.process import fastdds_profile_path, local_ros_environment

    assert set(ros_compat.DDS_PROFILE_VARIABLES) == {"FASTDDS_DEFAULT_PROFILES_FILE",
                                                      "FASTRTPS_DEFAULT_PROFILES_FILE"}
    for key in ros_compat.DDS_PROFILE_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    env = local_ros_environment()
    assert {env[k] for k in ros_compat.DDS_PROFILE_VARIABLES} == {str(fastdds_profile_path())}
    # A profile of the caller's own, under either name, is kept and given to both.
    for key in ros_compat.DDS_PROFILE_VARIABLES:
        monkeypatch.setenv(key, "/own/profile.xml")
        env = local_ros_environment()
        assert {env[k] for k in ros_compat.DDS_PROFILE_VARIABLES} == {"/own/profile.xml"}
        monkeypatch.delenv(key)
