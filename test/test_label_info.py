"""The optional vision_msgs/LabelInfo: the import guard, and the message contents.

vision_msgs has no wheel for machines without a ROS install: scripts/test.sh builds its two
messages (scripts/build_vision_msgs.sh) and the real-message test then runs; the fake-module
test checks the filling logic against the message's field names anywhere."""

from __future__ import annotations

import sys
from types import ModuleType, SimpleNamespace

from textseg.engine.contract import ModelInfo
from textseg.node.label_info import MISSING_MESSAGE, label_info_message, load_label_info_types

INFO = ModelInfo(class_names=("road", "car", "person"),
                 palette=((1, 1, 1), (2, 2, 2), (3, 3, 3)), network_input_size=(8, 8))


def test_guard_returns_none_when_vision_msgs_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "vision_msgs", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "vision_msgs.msg", None)
    assert load_label_info_types() is None
    assert "vision_msgs is not installed" in MISSING_MESSAGE
    assert "class_names" in MISSING_MESSAGE


def test_label_info_with_fake_vision_msgs_module(monkeypatch):
    class VisionClass(SimpleNamespace):
        pass

    class LabelInfo:
        def __init__(self):
            self.header, self.class_map, self.threshold = None, [], 0.0

    package, module = ModuleType("vision_msgs"), ModuleType("vision_msgs.msg")
    module.LabelInfo, module.VisionClass = LabelInfo, VisionClass
    package.msg = module
    monkeypatch.setitem(sys.modules, "vision_msgs", package)
    monkeypatch.setitem(sys.modules, "vision_msgs.msg", module)
    types = load_label_info_types()
    assert types == (LabelInfo, VisionClass)
    msg = label_info_message(types, INFO, header="h", threshold=0.5)
    assert msg.header == "h" and msg.threshold == 0.5
    assert [(c.class_id, c.class_name) for c in msg.class_map] == [
        (0, "road"), (1, "car"), (2, "person")]


def test_label_info_with_real_vision_msgs(vision_msgs_module):
    from std_msgs.msg import Header

    types = load_label_info_types()
    assert types is not None
    msg = label_info_message(types, INFO, Header(frame_id="camera"))
    assert [(c.class_id, c.class_name) for c in msg.class_map] == [
        (0, "road"), (1, "car"), (2, "person")]
    assert msg.header.frame_id == "camera"
