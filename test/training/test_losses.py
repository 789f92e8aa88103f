"""OHEM cross-entropy, STDC detail loss and the combined segmentation loss."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")
pytest.importorskip("textseg_training", reason="training package not installed")
import torch.nn.functional as F  # noqa: E402

from textseg_training.losses import (  # noqa: E402
    DetailLoss,
    OhemCrossEntropy,
    SegmentationLoss,
    subsample_labels,
    upsample_strided,
    upsample_to,
)

IGNORE = 255


def _logits_for(probs: list[float]) -> torch.Tensor:
    """Two-class logits [1,2,1,W] whose softmax gives class 0 probability `probs`."""
    p = torch.tensor(probs, dtype=torch.float64)
    return torch.stack([p.log(), (1 - p).log()]).reshape(1, 2, 1, len(probs)).float()


@pytest.mark.parametrize(
    ("probs", "kept"),
    [
        # No pixel is hard (all p >= 0.7): the n_min = 4 // 2 = 2 highest losses are kept.
        ([0.9, 0.8, 0.5, 0.95], [0.8, 0.9]),
        # One hard pixel (< n_min): still the 2 highest.
        ([0.1, 0.8, 0.5, 0.95], [0.1, 0.8]),
    ],
)
def test_ohem_keeps_at_least_n_min_and_skips_ignore(probs: list[float], kept: list[float]) -> None:
    # Pixel 2 is ignored (its p = 0.5 would otherwise be among the hardest).
    target = torch.tensor([[[0, 0, IGNORE, 0]]])
    loss = OhemCrossEntropy(0.7, min_kept_divisor=2, ignore_index=IGNORE)(_logits_for(probs),
                                                                          target)
    expected = sum(-math.log(p) for p in kept) / len(kept)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_ohem_averages_all_hard_pixels() -> None:
    target = torch.tensor([[[0, 0, 0, 0, IGNORE]]])
    logits = _logits_for([0.1, 0.2, 0.3, 0.9, 0.01])
    loss = OhemCrossEntropy(0.7, min_kept_divisor=4, ignore_index=IGNORE)(logits, target)
    expected = -(math.log(0.1) + math.log(0.2) + math.log(0.3)) / 3  # n_min = 1 < 3 hard
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_ohem_perfect_logits_and_all_ignored() -> None:
    target = torch.randint(0, 5, (2, 8, 8))
    perfect = torch.nn.functional.one_hot(target, 5).permute(0, 3, 1, 2).float() * 30
    ohem = OhemCrossEntropy(ignore_index=IGNORE)
    assert ohem(perfect, target).item() < 1e-6
    logits = torch.randn(2, 5, 8, 8, requires_grad=True)
    zero = ohem(logits, torch.full((2, 8, 8), IGNORE))
    zero.backward()
    assert zero.item() == 0.0 and logits.grad is not None


def test_detail_target_only_near_vertical_boundary() -> None:
    label = torch.zeros(1, 32, 32, dtype=torch.long)
    label[:, :, 16:] = 1
    target = DetailLoss(ignore_index=IGNORE).targets(label)[0, 0]
    cols = target.sum(0)
    assert target[:, 16].all()  # the class-1 pixels touching class 0
    assert (cols[:12] == 0).all() and (cols[20:] == 0).all()
    assert target.sum() > 0 and set(target.unique().tolist()) <= {0.0, 1.0}


def test_detail_ignore_is_not_boundary_and_fuse_is_a_parameter() -> None:
    label = torch.zeros(1, 16, 16, dtype=torch.long)
    label[:, 4:8, 4:8] = IGNORE
    loss = DetailLoss(ignore_index=IGNORE)
    assert loss.targets(label)[0, 0, 4:8, 4:8].sum() == 0
    assert [p.shape for p in loss.parameters()] == [torch.Size([1, 3, 1, 1])]
    assert torch.allclose(loss.fuse.flatten(), torch.tensor([0.6, 0.3, 0.1]))


def test_detail_loss_prefers_matching_logits() -> None:
    label = torch.zeros(2, 32, 32, dtype=torch.long)
    label[:, :, 16:] = 2
    loss = DetailLoss(ignore_index=IGNORE)
    target = loss.targets(label)
    good = loss(target * 20 - 10, label)  # full-size logits agreeing with the target
    bad = loss(torch.zeros(2, 1, 4, 4), label)  # 1/8-size logits, upsampled inside
    assert good.item() < 0.1 < bad.item()


def _fake_outputs(n: int, k: int, h: int, w: int, score: bool) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)

    def leaf(c: int, stride: int) -> torch.Tensor:
        return torch.randn(n, c, h // stride, w // stride, generator=gen).requires_grad_()

    out = {"out": leaf(k, 8), "aux16": leaf(k, 8), "aux32": leaf(k, 16), "detail": leaf(1, 8)}
    if score:
        out["score"] = (torch.rand(n, k, h // 32, w // 32, generator=gen) * 2 - 1).requires_grad_()
    return out


@pytest.mark.parametrize("with_score", [False, True])
def test_segmentation_loss_backpropagates(with_score: bool) -> None:
    label = torch.randint(0, 4, (2, 64, 64))
    label[:, :8] = IGNORE
    outputs = _fake_outputs(2, 4, 64, 64, with_score)
    total, parts = SegmentationLoss(ignore_index=IGNORE)(outputs, label)
    total.backward()
    expected = {"seg", "aux16", "aux32", "detail", "total"} | ({"text"} if with_score else set())
    assert set(parts) == expected
    assert all(isinstance(v, float) and math.isfinite(v) for v in parts.values())
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in outputs.values())


def test_weights_scale_components() -> None:
    label = torch.randint(0, 4, (2, 64, 64))
    outputs = _fake_outputs(2, 4, 64, 64, score=True)
    _, base = SegmentationLoss(IGNORE)(outputs, label)
    total, parts = SegmentationLoss(IGNORE, w_aux=2.0, w_text=0.5, w_detail=3.0)(outputs, label)
    for name in ("seg", "aux16", "aux32", "text", "detail"):
        assert parts[name] == pytest.approx(base[name])  # components are reported unweighted
    expected = (parts["seg"] + 2.0 * (parts["aux16"] + parts["aux32"]) + 0.5 * parts["text"]
                + 3.0 * parts["detail"])
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert base["total"] == pytest.approx(sum(base[k] for k in base if k != "total"), rel=1e-5)


def test_zero_weight_term_may_be_absent() -> None:
    label = torch.randint(0, 4, (1, 64, 64))
    outputs = _fake_outputs(1, 4, 64, 64, score=False)
    del outputs["detail"]
    _, parts = SegmentationLoss(IGNORE, w_detail=0.0)(outputs, label)
    assert "detail" not in parts
    with pytest.raises(KeyError, match="detail"):
        SegmentationLoss(IGNORE)(outputs, label)


@pytest.mark.parametrize("stride", [1, 2, 3, 8])
@pytest.mark.parametrize(("size", "low"), [((360, 480), (12, 15)), ((100, 70), (13, 9))])
def test_upsample_strided_is_upsampling_then_slicing(stride, size, low) -> None:
    logits = torch.randn(2, 3, *low)
    expected = upsample_to(logits, size)[..., stride // 2::stride, stride // 2::stride]
    got = upsample_strided(logits, size, stride)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert subsample_labels(torch.zeros(2, *size), stride).shape[-2:] == got.shape[-2:]


def test_text_loss_stride_one_is_the_papers_label_size_loss() -> None:
    label = torch.randint(0, 4, (2, 64, 64))
    outputs = _fake_outputs(2, 4, 64, 64, score=True)
    _, parts = SegmentationLoss(IGNORE, tau=0.07, text_loss_stride=1)(outputs, label)
    expected = OhemCrossEntropy(ignore_index=IGNORE)(
        upsample_to(outputs["score"] / 0.07, (64, 64)), label)
    assert parts["text"] == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="text_loss_stride"):
        SegmentationLoss(IGNORE, text_loss_stride=0)


def _conv_fused_detail_targets(loss: DetailLoss, label: torch.Tensor) -> torch.Tensor:
    """STDC's formulation with the 1x1 fusion convolution (DetailLoss writes it out)."""
    size = label.shape[-2:]
    lab = F.pad(label.unsqueeze(1).float(), (1, 1, 1, 1), mode="replicate")
    maps = []
    for stride in (1, 2, 4):
        edge = F.conv2d(lab, loss.laplacian, stride=stride).clamp_(min=0)
        if stride > 1:
            edge = F.interpolate(edge, size=size, mode="nearest")
        maps.append((edge > loss.threshold).float())
    target = (F.conv2d(torch.cat(maps, dim=1), loss.fuse.detach()) > loss.threshold).float()
    target[(label == loss.ignore_index).unsqueeze(1)] = 0.0
    return target


def test_detail_targets_equal_the_fusion_convolution_on_camvid(camvid_dir):
    loss = DetailLoss(ignore_index=11)
    label = _camvid_val_labels(camvid_dir, 8)
    for view in (label, label[:, 1:288, 3:384], label.flip(-1)):
        assert torch.equal(loss.targets(view), _conv_fused_detail_targets(loss, view))


def _camvid_val_labels(camvid_dir, n: int) -> torch.Tensor:
    from PIL import Image

    files = sorted((camvid_dir / "valannot").glob("*.png"))[:n]
    return torch.stack([torch.from_numpy(np.array(Image.open(f))).long() for f in files])


@pytest.mark.parametrize("confident", [False, True])
def test_strided_text_loss_follows_the_label_size_gradient_on_camvid(camvid_dir, confident):
    """The default L_text (every 8th pixel) against the paper's (every pixel), real labels.

    Random scores make every pixel hard; `confident` scores near the labels leave OHEM keeping
    only its n_min hardest pixels. Both regimes: the gradient on the score map points the same
    way (cosine >= 0.99) and the loss values agree within 3%."""
    label = _camvid_val_labels(camvid_dir, 4)
    gen = torch.Generator().manual_seed(0)
    low = (label.shape[1] // 32 + 1, label.shape[2] // 32 + 1)
    noise = torch.randn(len(label), 11, *low, generator=gen)
    if confident:
        coarse = torch.nn.functional.interpolate(label[:, None].float(), size=low,
                                                 mode="nearest")[:, 0].long().clamp(max=10)
        score = torch.nn.functional.one_hot(coarse, 11).permute(0, 3, 1, 2) * 0.3 + 0.1 * noise
    else:
        score = noise.clamp(-1, 1)
    score.requires_grad_()
    ohem = OhemCrossEntropy(ignore_index=11)
    values, grads = [], []
    for stride in (1, 8):
        value = ohem(upsample_strided(score / 0.07, label.shape[-2:], stride),
                     subsample_labels(label, stride))
        values.append(value.item())
        grads.append(torch.autograd.grad(value, score)[0].flatten())
    assert torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0) >= 0.99
    assert values[1] == pytest.approx(values[0], rel=0.03)
