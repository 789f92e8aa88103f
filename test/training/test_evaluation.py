"""Confusion matrix metrics, category IoU, the evaluation loop and the report files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")
pytest.importorskip("textseg_training", reason="training package not installed")

from textseg_training.dataset_specs import CITYSCAPES  # noqa: E402
from textseg_training.evaluation import (  # noqa: E402
    ConfusionMatrix,
    EvalResult,
    evaluate,
    markdown_report,
    predict_probs,
    save_confusion_png,
    write_report,
)

IGNORE = 255


def _hand_example() -> ConfusionMatrix:
    cm = ConfusionMatrix(3, IGNORE)
    cm.update(torch.tensor([0, 1, 1, 1, 2, 0]), torch.tensor([0, 0, 1, 1, 2, 2]))
    return cm


def test_miou_matches_hand_computation() -> None:
    cm = _hand_example()
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # IoU = TP / (TP + FP + FN): class 0: 1/3, class 1: 2/3, class 2: 1/2.
    assert cm.iou() == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert cm.miou() == pytest.approx(0.5)
    assert cm.pixel_accuracy() == pytest.approx(4 / 6)
    rows = cm.per_class(["a", "b", "c"])
    assert rows[1] == {"id": 1, "name": "b", "iou": pytest.approx(2 / 3), "accuracy": 1.0,
                       "gt_pixels": 2, "pred_pixels": 3}


def test_ignore_numpy_and_merge() -> None:
    cm = _hand_example()
    cm.update(np.array([[2, 0], [1, 1]]), np.array([[IGNORE, IGNORE], [IGNORE, IGNORE]]))
    assert cm.miou() == pytest.approx(0.5)
    other = ConfusionMatrix(3, IGNORE)
    other.update(np.array([2, 2]), np.array([2, IGNORE]))
    merged = _hand_example().merge(other)
    assert merged.matrix[2].tolist() == [1, 0, 2]
    assert merged.all_reduce() is merged  # not distributed: unchanged
    assert merged.matrix[2].tolist() == [1, 0, 2]
    with pytest.raises(ValueError, match="target values"):
        cm.update(np.array([0]), np.array([7]))


def test_absent_class_is_nan_and_left_out_of_the_mean() -> None:
    cm = ConfusionMatrix(3, IGNORE)
    cm.update(np.array([0, 1]), np.array([0, 1]))
    assert math.isnan(cm.iou()[2]) and cm.miou() == 1.0


def test_cityscapes_category_iou() -> None:
    assert [name for name, _ in CITYSCAPES.categories] == [
        "flat", "construction", "object", "nature", "sky", "human", "vehicle"]
    cm = ConfusionMatrix(19, IGNORE)
    # road->sidewalk stays within "flat"; car->person is a vehicle miss and a human false hit.
    cm.update(np.array([1, 0, 1, 13, 11, 11]), np.array([0, 0, 1, 13, 13, 11]))
    cat = cm.category_iou(CITYSCAPES.categories)
    assert cat["flat"] == 1.0 and cat["vehicle"] == 0.5 and cat["human"] == 0.5
    assert math.isnan(cat["sky"])
    assert cm.iou()[0] == pytest.approx(0.5)  # at class level road->sidewalk is an error
    result = EvalResult.from_confusion(cm, CITYSCAPES.categories)
    assert result.mean_category_iou == pytest.approx(2 / 3)


def _label_loader(k: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches whose image channel 0 carries the label, so a model can 'see' the answer."""
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(3):
        labels = torch.randint(0, k, (2, 12, 16), generator=gen)
        labels[:, :2] = IGNORE
        images = torch.stack([labels.float(), torch.zeros_like(labels).float(),
                              torch.ones_like(labels).float()], dim=1)
        batches.append((images, labels))
    return batches


def test_evaluate_oracle_gives_miou_one() -> None:
    k = 4

    def oracle(images: torch.Tensor) -> torch.Tensor:
        ids = images[:, 0].long().clamp(max=k - 1)
        return torch.nn.functional.one_hot(ids, k).permute(0, 3, 1, 2).float()

    result = evaluate(oracle, _label_loader(k), k, IGNORE, progress=False)
    assert result.miou == 1.0 and result.pixel_accuracy == 1.0
    assert result.confusion.sum() == 3 * 2 * 10 * 16  # ignore rows excluded


def test_flip_averaging_with_a_symmetric_model_changes_nothing() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 1)  # per-pixel, so flipping commutes with the model

    def model(images: torch.Tensor) -> torch.Tensor:
        # Low-resolution logits (upsampled by evaluate); 2x2 pooling of an even width commutes
        # with flipping.
        return torch.nn.functional.avg_pool2d(conv(images), 2)

    loader = [(torch.randn(2, 3, 16, 20), torch.randint(0, 4, (2, 16, 20))) for _ in range(2)]
    plain = evaluate(model, loader, 4, IGNORE, progress=False)
    flipped = evaluate(model, loader, 4, IGNORE, flip=True, progress=False)
    assert (plain.confusion == flipped.confusion).all()
    with torch.no_grad():
        x = loader[0][0]
        a = predict_probs(model, x, (16, 20), flip=False, scales=(1.0, 0.5))
        b = predict_probs(model, x, (16, 20), flip=True, scales=(1.0, 0.5))
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(a.sum(1), torch.ones(2, 16, 20))


def test_png_and_markdown_written_atomically(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib not installed")
    cm = ConfusionMatrix(19, IGNORE)
    cm.update(np.array([1, 0, 1, 13, 11, 11]), np.array([0, 0, 1, 13, 13, 11]))
    result = EvalResult.from_confusion(cm, CITYSCAPES.categories)
    png = save_confusion_png(cm, CITYSCAPES.class_names, tmp_path / "confusion.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = write_report(tmp_path / "report.md", result, CITYSCAPES.class_names, "Cityscapes val",
                      extra={"checkpoint": "stage2.pt", "flip": True})
    text = md.read_text()
    assert text == markdown_report(result, CITYSCAPES.class_names, "Cityscapes val",
                                   {"checkpoint": "stage2.pt", "flip": True})
    assert text.startswith("# Cityscapes val")
    assert "| checkpoint | stage2.pt |" in text and "traffic light" in text
    assert f"{100 * result.miou:.2f}" in text and "## Category IoU" in text
    assert "| vehicle | 50.00 |" in text and "| sky | n/a |" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png", "report.md"]


def test_every_named_output_is_scored_on_its_own() -> None:
    labels = torch.tensor([[[0, 1], [1, 2]]])
    right = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    wrong = right.roll(1, dims=1)  # every pixel one class off

    def model_fn(images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": right, "score": wrong}

    result = evaluate(model_fn, [(torch.zeros(1, 3, 2, 2), labels)], 3, IGNORE, progress=False,
                      outputs=("out", "score"))
    assert result.miou == pytest.approx(1.0)
    assert set(result.outputs) == {"score"}
    assert result.outputs["score"].miou == pytest.approx(0.0)
    plain = evaluate(lambda images: right, [(torch.zeros(1, 3, 2, 2), labels)], 3, IGNORE,
                     progress=False)
    assert plain.miou == pytest.approx(1.0) and plain.outputs == {}
    # outputs are named up front: an empty loader (a DDP rank's empty shard) has them too
    empty = evaluate(model_fn, [], 3, IGNORE, progress=False, outputs=("out", "score"))
    assert set(empty.outputs) == {"score"}
    with pytest.raises(ValueError, match=r"returned no \['score'\]"):
        evaluate(lambda images: right, [(torch.zeros(1, 3, 2, 2), labels)], 3, IGNORE,
                 progress=False, outputs=("out", "score"))
    with pytest.raises(ValueError, match="without 'out'"):
        evaluate(lambda images: {"score": wrong}, [(torch.zeros(1, 3, 2, 2), labels)], 3,
                 IGNORE, progress=False)
