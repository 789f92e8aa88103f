"""textseg runtime: the vehicle side (ROS node, inference engines, model contract).

Never imports torch or open_clip: the training side lives in the sibling package
``textseg_training``.
"""

__version__ = "0.4.0"
