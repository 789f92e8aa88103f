"""The ROS 2 node: a thin shell over textseg.imaging, textseg.engine and the frame worker."""
