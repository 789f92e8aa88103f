"""textseg_training: offline training and export tools for the textseg segmentation models."""

__version__ = "0.1.0"
