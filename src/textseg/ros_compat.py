"""What differs between the ROS 2 distros textseg runs on, in one place.

Tested over real DDS: Jazzy (LTS, the default) and Kilted, both from PyPI wheels
(`./scripts/setup.sh`, `ROS_DISTRO=kilted ./scripts/setup.sh`; the pins are in
requirements/<distro>/). Humble has no wheels here: its branches below are kept, written from
its API, and never run (docs/node.md, "ROS 2 distros", says what differs there).

  current_distro()          the distro of the rclpy this Python imports (no import of rclpy)
  event_callbacks(...)      rclpy's event callbacks object: rclpy.event_handler (Iron on, with
                            the incompatible-type event) or rclpy.qos_event (Humble, without)
  lifecycle_api()           rclpy.lifecycle's LifecycleNode, LifecycleState and
                            TransitionCallbackReturn (Humble on)
  endpoint_type_hash(info)  a graph endpoint's type hash, 'RIHS01_<hex>' (Iron on) or None
  bag_typestore(), bag_version()
                            the rosbags typestore (message definitions and their type hashes)
                            and the rosbag2 metadata version of the bags textseg writes
  local_discovery_environment()
                            the variables that keep DDS discovery on this machine

Importing this module needs neither rclpy nor rosbags: bags are written where no ROS is.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
from dataclasses import dataclass

DEFAULT_DISTRO = "jazzy"
TESTED_DISTROS = ("jazzy", "kilted")  # scripts/ros_distro.sh lists the same


@dataclass(frozen=True)
class Distro:
    name: str
    rclpy_major: int  # rclpy's major version in this distro
    typestore: str  # the rosbags Stores member with this distro's message definitions
    # rosbag2 metadata version written: 9 is what Jazzy's and Kilted's rosbag2 write (QoS as a
    # YAML list); Humble's writes 5 and fails on 9's list, and rosbags writes 8 at the oldest,
    # whose QoS is the string Humble's parser reads (not tried): 8 there.
    bag_version: int
    # ROS_AUTOMATIC_DISCOVERY_RANGE replaced ROS_LOCALHOST_ONLY in Iron (Jazzy warns about the
    # old one, Kilted ignores it).
    local_discovery: tuple[tuple[str, str], ...]


_LOCALHOST_RANGE = (("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"),)
DISTROS = {
    "humble": Distro("humble", 3, "ROS2_HUMBLE", 8, (("ROS_LOCALHOST_ONLY", "1"),)),
    "jazzy": Distro("jazzy", 7, "ROS2_JAZZY", 9, _LOCALHOST_RANGE),
    "kilted": Distro("kilted", 9, "ROS2_KILTED", 9, _LOCALHOST_RANGE),
}
_BY_RCLPY_MAJOR = {d.rclpy_major: d.name for d in DISTROS.values()}


def _rclpy_version() -> str | None:
    """rclpy's version without importing it: the ros-rclpy wheel, else a ROS install's rclpy
    (ament_python installs its metadata too)."""
    for name in ("ros-rclpy", "rclpy"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


@functools.cache
def current_distro() -> str:
    """The distro this process runs: from rclpy's major version (what is really imported,
    whatever the environment says), else ROS_DISTRO (a sourced install whose rclpy has no
    metadata, or a newer distro than this table), else the default (no ROS here at all: bags
    are then written as the default distro writes them)."""
    version = _rclpy_version()
    if version:
        try:
            major = int(version.split(".")[0])
        except ValueError:
            major = -1
        if major in _BY_RCLPY_MAJOR:
            return _BY_RCLPY_MAJOR[major]
    return os.environ.get("ROS_DISTRO", "").strip().lower() or DEFAULT_DISTRO


def distro_traits(name: str | None = None) -> Distro:
    """The table row of `name` (default: this process's distro). A distro not in the table
    (a newer one) is taken to behave as the newest one in it."""
    name = name or current_distro()
    return DISTROS.get(name, DISTROS[TESTED_DISTROS[-1]])


# --- rclpy --------------------------------------------------------------------------------
def event_callbacks(kind: str, on_incompatible_qos, on_incompatible_type):
    """rclpy's SubscriptionEventCallbacks or PublisherEventCallbacks (`kind`) reporting
    incompatible QoS, and an incompatible type where the distro has that event (not Humble)."""
    import inspect

    try:
        from rclpy import event_handler as events
    except ImportError:  # Humble: rclpy.qos_event (Jazzy still has it, deprecated, warning)
        from rclpy import qos_event as events
    cls = getattr(events, kind)
    options = {"incompatible_qos": on_incompatible_qos}
    if "incompatible_type" in inspect.signature(cls).parameters:
        options["incompatible_type"] = on_incompatible_type
    return cls(**options)


def lifecycle_api():
    """(LifecycleNode, LifecycleState, TransitionCallbackReturn) from rclpy.lifecycle, which
    exists from Humble on; older rclpy gets an ImportError that says so."""
    try:
        from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
    except ImportError as exc:
        raise ImportError(f"segmentation_lifecycle_node needs rclpy.lifecycle (ROS 2 Humble or "
                          f"newer); this rclpy has none: {exc}") from exc
    return LifecycleNode, LifecycleState, TransitionCallbackReturn


def endpoint_type_hash(info) -> str | None:
    """'RIHS01_<64 hex>' of a graph endpoint (rclpy's TopicEndpointInfo) where the distro
    reports type hashes (Iron on); None on Humble or where discovery gave no hash."""
    type_hash = getattr(info, "topic_type_hash", None)
    if type_hash is None:
        return None
    text = str(type_hash)
    return text if text.startswith("RIHS") else None


# --- bags ---------------------------------------------------------------------------------
@functools.cache
def bag_typestore(name: str | None = None):
    """The rosbags typestore of `name` (default: this process's distro): the message
    definitions, and so the type hashes, the bags record for their topics."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(getattr(Stores, distro_traits(name).typestore))


def bag_version(name: str | None = None) -> int:
    """The rosbag2 metadata version of the bags textseg writes on `name` (default: this
    process's distro), so that this distro's `ros2 bag` opens them."""
    return distro_traits(name).bag_version


# --- DDS ----------------------------------------------------------------------------------
def local_discovery_environment(name: str | None = None) -> dict[str, str]:
    """The environment variables that keep DDS discovery on this machine on `name`."""
    return dict(distro_traits(name).local_discovery)


# The variables naming a Fast DDS XML profile file: Fast DDS 3 (Kilted) reads the first, Fast
# DDS 2 (Jazzy, Humble) only the second. Set both: with the first alone, Jazzy's processes
# kept the default 512 KB shared-memory segment and no 480x360 bgra8 or 32FC1 frame (691 KB)
# reached the node.
DDS_PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def dds_profile_environment(path: str) -> dict[str, str]:
    """The environment that makes every distro's Fast DDS load the XML profile `path`."""
    return dict.fromkeys(DDS_PROFILE_VARIABLES, path)
