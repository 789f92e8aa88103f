"""The process around either segmentation node (plain or lifecycle): rclpy up, the node built,
spun until shutdown, and an exit code; a start-up problem is one clear line, not a traceback."""

from __future__ import annotations

import rclpy
from rclpy.executors import ExternalShutdownException

from textseg.engine.contract import ContractError
from textseg.engine.engine_cache import EngineCacheError
from textseg.malloc_tuning import keep_large_buffers_in_heap
from textseg.node.parameters import ParameterError

STARTUP_ERRORS = (ParameterError, FileNotFoundError, ContractError, EngineCacheError,
                  ValueError, RuntimeError)


def run_node(node_class, args: list[str] | None = None) -> int:
    """Init rclpy, build `node_class`, spin until shutdown; the process's exit code."""
    keep_large_buffers_in_heap()  # ~5 ms less CPU per received 720p frame (malloc_tuning.py)
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = node_class()
        except STARTUP_ERRORS as exc:
            # Start-up problems get one clear line, not a traceback.
            rclpy.logging.get_logger("segmentation_node").fatal(str(exc))
            return 1
        try:
            rclpy.spin(node)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except Exception:
            if rclpy.ok():
                raise
            # A shutdown (SIGINT, or the loader stopping the node) raced with the executor
            # rebuilding its wait set: rclpy then raises instead of returning. Not a failure.
        return node.exit_code
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
