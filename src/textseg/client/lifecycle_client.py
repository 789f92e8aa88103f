"""The lifecycle manager's side of segmentation_lifecycle_node: get_state / change_state calls
over DDS, for tests and tools (a real manager, such as Nav2's, does the same)."""

from __future__ import annotations

from lifecycle_msgs.srv import ChangeState, GetState

from textseg.client.frame_client import FrameClient


class LifecycleClient:
    def __init__(self, client: FrameClient, node: str) -> None:
        """`node`: the managed node's fully qualified name, e.g. /front/segmentation_node."""
        self.client = client
        self.change = client.node.create_client(ChangeState, f"{node}/change_state")
        self.get = client.node.create_client(GetState, f"{node}/get_state")

    def _call(self, service, request, timeout: float = 60.0):
        if not self.client.wait_for(service.service_is_ready, 30.0):
            raise TimeoutError(f"service {service.srv_name} is not available")
        future = service.call_async(request)
        if not self.client.wait_for(future.done, timeout):
            raise TimeoutError(f"no answer from {service.srv_name} within {timeout:.0f} s")
        return future.result()

    def state(self) -> int:
        return self._call(self.get, GetState.Request()).current_state.id

    def transition(self, transition_id: int, timeout: float = 60.0) -> bool:
        request = ChangeState.Request()
        request.transition.id = transition_id
        return self._call(self.change, request, timeout).success
