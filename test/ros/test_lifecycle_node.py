"""segmentation_lifecycle_node driven through its real lifecycle services over DDS, as a
lifecycle manager would: configure (model opened), activate (frames answered), deactivate (no
answers, model kept), cleanup, a failed configure that reports its reason and can be retried,
and shutdown."""

from __future__ import annotations

import shutil

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from lifecycle_msgs.msg import State, Transition  # noqa: E402

from textseg.client.frame_client import FrameClient  # noqa: E402
from textseg.client.lifecycle_client import LifecycleClient  # noqa: E402
from textseg.client.process import NodeProcess  # noqa: E402

pytestmark = pytest.mark.ros
NODE = "/managed/segmentation_node"


def _frame_answered(client: FrameClient, rgb, timeout: float) -> bool:
    stamp = client.node.get_clock().now().to_msg()
    return client.exchange(client.image_message(rgb, "rgb8", stamp, "cam"), timeout) is not None


def test_lifecycle_transitions_over_dds(tiny_model_path, ros_env, ros_context, camvid_frames,
                                        tmp_path):
    (_, rgb), = camvid_frames(1)
    model = tmp_path / "model.onnx"  # absent at first: the first configure must fail
    node = NodeProcess({"model": str(model), "threads": 1}, env=ros_env, namespace="/managed",
                       lifecycle=True).start()
    client = FrameClient(context=ros_context, image_topic="/managed/image",
                         labels_topic="/managed/labels/image", name="lifecycle_manager")
    try:
        manager = LifecycleClient(client, NODE)
        assert manager.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert not manager.transition(Transition.TRANSITION_CONFIGURE)
        assert manager.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert client.wait_for(lambda: "configure failed: model file not found" in
                               node.log_text(), 10.0), node.log_text()[-2000:]

        shutil.copy(tiny_model_path, model)  # fixed: the retry succeeds
        assert manager.transition(Transition.TRANSITION_CONFIGURE), node.log_text()[-2000:]
        assert manager.state() == State.PRIMARY_STATE_INACTIVE
        assert not _frame_answered(client, rgb, 2.0)  # configured but inactive: no input

        assert manager.transition(Transition.TRANSITION_ACTIVATE)
        assert manager.state() == State.PRIMARY_STATE_ACTIVE
        assert _frame_answered(client, rgb, 20.0), node.log_text()[-2000:]

        assert manager.transition(Transition.TRANSITION_DEACTIVATE)
        assert manager.state() == State.PRIMARY_STATE_INACTIVE
        assert not _frame_answered(client, rgb, 2.0)
        assert manager.transition(Transition.TRANSITION_ACTIVATE)  # the model was kept
        assert _frame_answered(client, rgb, 20.0)

        assert manager.transition(Transition.TRANSITION_DEACTIVATE)
        assert manager.transition(Transition.TRANSITION_CLEANUP)
        assert manager.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert "cleaned up: backend and outputs released" in node.log_text()
        assert manager.transition(Transition.TRANSITION_CONFIGURE)  # configurable again
        assert manager.transition(Transition.TRANSITION_INACTIVE_SHUTDOWN)
        assert manager.state() == State.PRIMARY_STATE_FINALIZED
    finally:
        client.close()
        code = node.stop()
    assert code == 0, node.log_text()[-2000:]
