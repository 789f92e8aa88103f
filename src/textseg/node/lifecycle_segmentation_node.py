"""segmentation_lifecycle_node: segmentation_node as a managed (lifecycle) node.

For stacks that bring nodes up through a lifecycle manager (Nav2's lifecycle_manager, most
vehicle launch systems). Same parameters, topics and behaviour as segmentation_node; the
transitions drive what the plain node does at start:

  configure   check the model, create the outputs, open the backend (and build a TensorRT
              engine if needed: minutes on a vehicle); a failure (a bad model, say) logs the
              reason and returns FAILURE, so the node stays unconfigured and can be retried
  activate    subscribe the input: frames are segmented and published
  deactivate  unsubscribe the input; the model stays loaded
  cleanup     release the backend and every output (back to unconfigured)
  shutdown    the same, from any state
"""

from __future__ import annotations

import sys

from textseg.node.node_process import run_node
from textseg.node.segmentation_node import SegmentationBehaviour
from textseg.node.usage import help_requested
from textseg.ros_compat import lifecycle_api

LifecycleNode, LifecycleState, TransitionCallbackReturn = lifecycle_api()


class LifecycleSegmentationNode(SegmentationBehaviour, LifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("segmentation_node", **kwargs)
        self._read_parameters()  # invalid parameters fail here, before any transition
        self._configured = False
        self.get_logger().info(
            f"unconfigured: waiting for configure (a lifecycle manager, or `ros2 lifecycle set "
            f"{self.get_fully_qualified_name()} configure`)")

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_building.clear()
        try:
            self._configure()
            self._configured = True
            self._use_backends(self._open_backends())
        except Exception as exc:  # noqa: BLE001 - any failure: report it, stay unconfigured
            self.get_logger().error(f"configure failed: {exc}")
            self._release()
            self._configured = False
            return TransitionCallbackReturn.FAILURE
        self._state = "configured (inactive)"
        self.get_logger().info(f"configured: {self._backend_description}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._subscribe_inputs()
        self._state = "running"
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unsubscribe_inputs()
        self._state = "inactive (model loaded)"
        self.get_logger().info("deactivated: input unsubscribed, model kept")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._configured = False
        self.get_logger().info("cleaned up: backend and outputs released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._configured = False
        return TransitionCallbackReturn.SUCCESS

    def _request_shutdown(self, code: int) -> None:
        # A managed node is stopped by its manager; a fatal error makes the transition fail.
        self.exit_code = code

    def destroy_node(self) -> None:
        self._release()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return 0 if help_requested(args) else run_node(LifecycleSegmentationNode, args)


if __name__ == "__main__":
    sys.exit(main())
