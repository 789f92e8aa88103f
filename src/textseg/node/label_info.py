"""vision_msgs/LabelInfo, when vision_msgs is installed (it is optional: no wheel exists for
machines without a ROS install, and a vehicle may not have it). The class names and palette
are always available as the node's read-only parameters.
"""

from __future__ import annotations

from textseg.engine.contract import ModelInfo

MISSING_MESSAGE = ("vision_msgs is not installed: label_info is not published (class names "
                   "and palette are in the read-only parameters class_names and palette)")


def load_label_info_types():
    """(LabelInfo, VisionClass) message classes, or None when vision_msgs is not importable."""
    try:
        from vision_msgs.msg import LabelInfo, VisionClass
    except ImportError:
        return None
    return LabelInfo, VisionClass


def label_info_message(types, info: ModelInfo, header, threshold: float = 0.0):
    """A LabelInfo listing every class id and name in label order."""
    label_info_type, vision_class_type = types
    msg = label_info_type()
    msg.header = header
    msg.class_map = [vision_class_type(class_id=index, class_name=name)
                     for index, name in enumerate(info.class_names)]
    msg.threshold = float(threshold)
    return msg
