"""Rosbag replay evaluation: score a model on recorded drives, through the real node or not.

  bagio      stream frames (+ ground-truth labels matched by stamp) out of a ROS 2 bag
  dataset    turn an image folder (+ label folder) into a bag (`textseg bag-from-dataset`)
  metrics    confusion matrix, IoU, pixel accuracy, latency percentiles (numpy only)
  offline    score the backend called directly (`textseg eval-offline`)
  ros_replay play the bag through segmentation_node over DDS (`textseg replay`)
  charts     PNG figures drawn with OpenCV; report: markdown + JSON

Nothing here imports torch or matplotlib; only `ros_replay` needs rclpy.
"""
