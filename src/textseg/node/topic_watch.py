"""Why nothing arrives: the node's view of its topics' other ends.

The most common "the node publishes nothing" is a camera the node cannot hear: a QoS the
subscription cannot match (a best-effort camera and `qos_reliability: reliable`; a transient-
local subscriber on our volatile outputs), another message type on the topic, or simply another
topic name. DDS matches nothing and says nothing; rclpy reports the first two as events. This
module turns them into log lines and diagnostics counts that name the other side's QoS, and
warns once when a camera stays silent, naming the topic the node listens on and the topics of
that type it can see.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from textseg.ros_compat import event_callbacks


def describe_qos(profile) -> str:
    """'reliable, volatile, keep_last 1' for an rclpy QoSProfile."""
    def name(policy) -> str:
        return getattr(policy, "name", str(policy)).lower()

    history = name(profile.history)
    # DDS discovery does not carry a remote endpoint's history: rclpy says "unknown"
    tail = ("" if history == "unknown" else
            f", {history} {profile.depth}" if history == "keep_last" else f", {history}")
    return f"{name(profile.reliability)}, {name(profile.durability)}{tail}"


def endpoint_name(info) -> str:
    """'/namespace/node' of a graph endpoint; 'a node' where discovery does not name it."""
    if "_UNKNOWN_" in info.node_name:
        return "a node"
    return f"{info.node_namespace.rstrip('/')}/{info.node_name}"


def _compatible(other_qos, own_qos, side: str) -> bool:
    """Whether the other endpoint's QoS matches ours (rclpy's own check)."""
    from rclpy.qos import QoSCompatibility, qos_check_compatible

    publisher, subscription = ((other_qos, own_qos) if side == "subscription"
                               else (own_qos, other_qos))
    try:
        compatibility, _ = qos_check_compatible(publisher, subscription)
    except Exception:  # noqa: BLE001 - a profile with policies the check cannot read
        return True
    return compatibility != QoSCompatibility.ERROR


@dataclass
class TopicEvents:
    """Incompatible-QoS and incompatible-type events, by topic (thread-safe counts)."""

    counts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, topic: str, change: int) -> int:
        with self.lock:
            self.counts[topic] = self.counts.get(topic, 0) + max(1, int(change))
            return self.counts[topic]

    def total(self, topics: list[str]) -> int:
        with self.lock:
            return sum(self.counts.get(topic, 0) for topic in topics)


class TopicWatch:
    """Event callbacks for one node's subscriptions and publishers, and the silence check.

    `node` is an rclpy node (graph queries); `log` a callable taking a warning line."""

    def __init__(self, node, log: Callable[[str], None]) -> None:
        self._node = node
        self._log = log
        self.incompatible_qos = TopicEvents()
        self.incompatible_type = TopicEvents()

    # --- events ---------------------------------------------------------------------------
    def subscription_callbacks(self, topic: str, own_qos):
        return event_callbacks("SubscriptionEventCallbacks",
                               lambda info: self._on_qos(topic, own_qos, info, "subscription"),
                               lambda info: self._on_type(topic, info, "subscription"))

    def publisher_callbacks(self, topic: str, own_qos):
        return event_callbacks("PublisherEventCallbacks",
                               lambda info: self._on_qos(topic, own_qos, info, "publisher"),
                               lambda info: self._on_type(topic, info, "publisher"))

    def _others(self, topic: str, own_qos, side: str) -> str:
        """The other endpoints on `topic` with their QoS (what a user would have to change)."""
        try:
            if side == "subscription":
                infos = self._node.get_publishers_info_by_topic(topic)
                what = "publisher"
            else:
                infos = self._node.get_subscriptions_info_by_topic(topic)
                what = "subscription"
        except Exception:  # noqa: BLE001 - the graph can be gone during shutdown
            return ""
        own = self._node.get_fully_qualified_name()
        others = [i for i in infos if endpoint_name(i) != own]
        clashing = [i for i in others if not _compatible(i.qos_profile, own_qos, side)]
        others = clashing or others  # where the graph's QoS are too vague to tell: all
        if not others:
            return ""
        verb = "offers" if what == "publisher" else "requests"
        return "; ".join(f"{what} of {endpoint_name(i)} {verb} [{describe_qos(i.qos_profile)}]"
                         for i in others)

    def _on_qos(self, topic: str, own_qos, info, side: str) -> None:
        count = self.incompatible_qos.add(topic, getattr(info, "total_count_change", 1))
        policy = getattr(getattr(info, "last_policy_kind", None), "name", "?").lower()
        policy = policy.removeprefix("rmw_qos_policy_")
        ours = describe_qos(own_qos)
        others = self._others(topic, own_qos, side)
        hint = ("set qos_reliability: best_effort (it accepts both)"
                if side == "subscription" and policy == "reliability" else
                "subscribe with volatile durability (the outputs are not latched)"
                if side == "publisher" and policy == "durability" else
                "make the two sides' QoS agree")
        self._log(f"incompatible QoS on {topic} ({policy}): our {side} "
                  f"[{ours}] cannot match{': ' + others if others else ''}; {hint} "
                  f"({count} so far)")

    def _on_type(self, topic: str, info, side: str) -> None:
        count = self.incompatible_type.add(topic, getattr(info, "total_count_change", 1))
        try:
            types = dict(self._node.get_topic_names_and_types()).get(topic, [])
        except Exception:  # noqa: BLE001
            types = []
        self._log(f"another message type on {topic}: our {side} cannot match (types seen "
                  f"there: {', '.join(types) or 'unknown'}) ({count} so far)")

    # --- silence --------------------------------------------------------------------------
    def silence_report(self, topic: str, type_name: str) -> str:
        """Why `topic` may be silent: its publishers and the topics of its type seen now."""
        try:
            publishers = self._node.get_publishers_info_by_topic(topic)
            names_and_types = self._node.get_topic_names_and_types()
        except Exception:  # noqa: BLE001
            return f"nothing on {topic}"
        own = self._node.get_fully_qualified_name()
        # other nodes' topics of the type: the node's own outputs and inputs (depth/image)
        # are no camera for it
        me = (self._node.get_name(), self._node.get_namespace())
        ours = {name for name, _ in self._node.get_publisher_names_and_types_by_node(*me)}
        ours |= {name for name, _ in self._node.get_subscriber_names_and_types_by_node(*me)}
        same_type = sorted(name for name, types in names_and_types
                           if type_name in types and name != topic and name not in ours)
        seen = (f"{type_name} topics this node can see: "
                f"{', '.join(same_type) if same_type else 'none'}")
        others = [p for p in publishers if endpoint_name(p) != own]
        if others:
            listed = "; ".join(f"{endpoint_name(p)} [{describe_qos(p.qos_profile)}]"
                               for p in others)
            return (f"{len(others)} publisher(s) on {topic} ({listed}) but no message reached "
                    f"the node (they publish nothing, or QoS or the network keep it out); "
                    f"{seen}")
        return (f"no publisher on {topic}; {seen} (remap the node's input, e.g. "
                "image:=/your/camera/topic)")


@dataclass
class SilenceCheck:
    """Warn once per subscription when nothing arrived for `after` seconds (ROS-free)."""

    after: float
    since: float = field(default_factory=time.monotonic)
    last_message: float | None = None
    warned: bool = False

    def heard(self, now: float | None = None) -> None:
        self.last_message = time.monotonic() if now is None else now
        self.warned = False  # a camera that stops again later is reported again

    def due(self, now: float | None = None) -> bool:
        """True once when the input has been silent for `after` seconds."""
        now = time.monotonic() if now is None else now
        start = self.since if self.last_message is None else self.last_message
        if self.after <= 0 or self.warned or now - start < self.after:
            return False
        self.warned = True
        return True
