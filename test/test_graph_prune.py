"""The labels-only graph (graph_prune): the confidence's nodes gone, the labels unchanged, and
the backend still answering confidence from the whole graph when asked."""

from __future__ import annotations

import numpy as np
import pytest

from textseg.engine import BackendOptions, load_backend
from textseg.engine.graph_prune import without_output
from textseg.engine.onnx_file import read_onnx_model

onnx = pytest.importorskip("onnx", reason="onnx not installed (runtime-only environment)")
ort = pytest.importorskip("onnxruntime")


def test_the_confidence_nodes_go_and_the_labels_stay(tiny_model_path, camvid_frames):
    data = tiny_model_path.read_bytes()
    pruned, removed = without_output(data, "confidence")
    before = [n.op_type for n in read_onnx_model(data).nodes]
    after = [n.op_type for n in read_onnx_model(pruned).nodes]
    assert removed > 0 and len(after) == len(before) - removed
    assert "Exp" in before and "Exp" not in after and "ArgMax" in after
    model = onnx.load_from_string(pruned)
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == ["labels"]
    whole = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    labels_only = ort.InferenceSession(pruned, providers=["CPUExecutionProvider"])
    for _, rgb in camvid_frames(2):
        np.testing.assert_array_equal(labels_only.run(["labels"], {"image": rgb[None]})[0],
                                      whole.run(["labels"], {"image": rgb[None]})[0])


def test_models_it_cannot_prune_are_returned_unchanged(tiny_model_path):
    data = tiny_model_path.read_bytes()
    assert without_output(data, "no_such_output") == (data, 0)
    assert without_output(data, "labels")[1] > 0  # any output, not only confidence
    pruned, _ = without_output(data, "confidence")
    assert without_output(pruned, "labels") == (pruned, 0)  # never the last output


def test_the_backend_runs_labels_only_until_confidence_is_asked(tiny_model_path,
                                                                 camvid_frames):
    backend = load_backend(tiny_model_path, BackendOptions(backend="onnxruntime", threads=1))
    assert backend.has_confidence and backend.pruned_nodes > 0
    assert [o.name for o in backend.session.get_outputs()] == ["labels"]
    assert backend._whole_session is None  # opened on the first frame that wants confidence
    whole = ort.InferenceSession(str(tiny_model_path), providers=["CPUExecutionProvider"])
    (_, rgb), = camvid_frames(1)
    labels, confidence = whole.run(["labels", "confidence"], {"image": rgb[None]})
    np.testing.assert_array_equal(backend.infer(rgb).labels, labels[0])
    assert backend.infer(rgb).confidence is None
    got = backend.infer(rgb, want_confidence=True)
    np.testing.assert_array_equal(got.labels, labels[0])
    np.testing.assert_array_equal(got.confidence, confidence[0])
    both = backend.infer_batch([rgb, rgb], want_confidence=True)
    np.testing.assert_array_equal(both[1].confidence, confidence[0])
    backend.close()
