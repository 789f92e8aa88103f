"""The weak mode's pieces (seed 003, WeCLIP made to run offline): tags, CAM, affinity, PAR and
the pseudo-label pipeline, on synthetic inputs with known answers and on real CamVid frames."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")
pytest.importorskip("textseg_training", reason="training package not installed")

from textseg_training.weak.affinity import confident_boxes, propagate, transition_matrix  # noqa: E402
from textseg_training.weak.cam import TagHead, pool_tiles, tile_cams, train_tag_head  # noqa: E402
from textseg_training.weak.metrics import PseudoLabelScore  # noqa: E402
from textseg_training.weak.par import PixelAdaptiveRefinement  # noqa: E402
from textseg_training.weak.pseudo import (  # noqa: E402
    UNCERTAIN,
    PseudoLabeler,
    PseudoLabelSettings,
    sample_grid,
)
from textseg_training.weak.tags import TILE_IGNORE, TagSet, TileGrid, tile_tags  # noqa: E402

VOID = 11


# ------------------------------------------------------------------------------------ tags

def test_tile_ids_cover_the_frame_row_major() -> None:
    ids = TileGrid(3, 4).tile_ids(360, 480)
    assert ids.shape == (360, 480) and ids[0, 0] == 0 and ids[-1, -1] == 11
    assert np.bincount(ids.ravel()).tolist() == [120 * 120] * 12


@pytest.mark.parametrize("text", ["0x4", "3", "ax4", "16x16"])
def test_bad_grids_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="tile grid"):
        TileGrid.parse(text)


def test_tile_tags_threshold_and_void() -> None:
    label = np.full((10, 20), VOID, dtype=np.uint8)  # a 1x2 grid: two 10x10 tiles
    label[:, :10] = 0
    label[0, 0] = 1  # 1 pixel of 100: exactly at a 1 % threshold
    label[:5, 10:] = 2  # the right tile: half class 2, half void
    tags = tile_tags(label, TileGrid(1, 2), num_classes=11, ignore_index=VOID, threshold=0.01)
    assert np.flatnonzero(tags[0]).tolist() == [0, 1]
    assert np.flatnonzero(tags[1]).tolist() == [2]  # void is never a tag
    stricter = tile_tags(label, TileGrid(1, 2), 11, VOID, threshold=0.02)
    assert np.flatnonzero(stricter[0]).tolist() == [0]
    all_void = tile_tags(np.full((4, 4), VOID, np.uint8), TileGrid(1, 1), 11, VOID, 0.01)
    assert not all_void.any()


def test_tags_file_round_trip_and_shuffle_keeps_the_tag_sets(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tags = TagSet(images=[f"train/{i}.png" for i in range(5)],
                  tags=rng.random((5, 12, 11)) < 0.3, grid=TileGrid(3, 4), threshold=0.01,
                  class_names=tuple(str(i) for i in range(11)), dataset="camvid")
    loaded = TagSet.load(tags.save(tmp_path / "tags.npz"))
    assert loaded.images == tags.images and np.array_equal(loaded.tags, tags.tags)
    assert loaded.grid == tags.grid and loaded.shuffled_seed is None
    shuffled = tags.shuffled(seed=1)
    assert shuffled.shuffled_seed == 1 and not np.array_equal(shuffled.tags, tags.tags)

    def multiset(array: np.ndarray) -> list[bytes]:
        return sorted(row.tobytes() for row in array.reshape(-1, 11))

    assert multiset(shuffled.tags) == multiset(tags.tags)
    stats = tags.statistics()
    assert stats["tiles"] == 60 and 0 < stats["tags_per_tile"] < 11


def test_a_damaged_tags_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "tags.npz"
    bad.write_bytes(b"not a tags file")
    with pytest.raises(ValueError, match="not a tags file"):
        TagSet.load(bad)
    with pytest.raises(FileNotFoundError, match="weak-tags"):
        TagSet.load(tmp_path / "missing.npz")


# ------------------------------------------------------------------------------------- CAM

def _random_head(channels: int = 6, classes: int = 3, seed: int = 0) -> TagHead:
    torch.manual_seed(seed)
    return TagHead(channels, torch.randn(classes, 5))


def test_closed_form_cam_equals_autograd_gradcam() -> None:
    head = _random_head()
    features = torch.randn(1, 6, 4, 5).abs()
    ids = torch.zeros(1, 4, 5, dtype=torch.long)  # one tile
    tags = torch.ones(1, 1, 3)
    cams = tile_cams(head, features, ids, tags)
    for k in range(3):
        leaf = features.clone().requires_grad_(True)
        score = head(leaf.mean(dim=(2, 3)))[0, k]
        (grad,) = torch.autograd.grad(score, leaf)
        weights = grad.mean(dim=(2, 3), keepdim=True)  # GradCAM: pooled gradients
        expected = torch.relu((weights * leaf).sum(1))[0].detach()
        expected = expected / expected.max().clamp(min=1e-6)
        assert torch.allclose(cams[0, k], expected, atol=1e-5), k


def test_one_hot_features_put_each_cam_on_its_region() -> None:
    # Features one-hot per region, a map that sends feature c to class c's embedding.
    classes = 3
    text = torch.eye(classes)
    head = TagHead(classes, text, identity_map=True)
    region = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2]])
    features = torch.nn.functional.one_hot(region, classes).permute(2, 0, 1)[None].float()
    cams = tile_cams(head, features, torch.zeros(1, 3, 4, dtype=torch.long),
                     torch.ones(1, 1, classes))
    assert torch.equal(cams[0].argmax(0), region)
    for c in range(classes):
        assert cams[0, c][region == c].min() == 1.0 and cams[0, c][region != c].max() == 0.0


def test_no_pseudo_label_outside_its_tiles_tags() -> None:
    generator = torch.Generator().manual_seed(3)
    n, classes, grid = 2, 5, TileGrid(2, 3)
    head = TagHead(8, torch.randn(classes, 4, generator=generator))
    ids = torch.from_numpy(grid.tile_ids(32, 48)).long()[None].expand(n, -1, -1).clone()
    ids[:, -3:, :] = TILE_IGNORE  # padding
    tags = torch.rand(n, grid.tiles, classes, generator=generator) < 0.4
    features = torch.rand(n, 8, 4, 6, generator=generator)
    transition = transition_matrix(torch.rand(n, 24, 24, generator=generator))
    labeler = PseudoLabeler(head, PseudoLabelSettings(label_stride=2, par_iterations=3,
                                                      uncertain_scale=0.3))
    out = labeler.run(features, transition, torch.rand(n, 3, 32, 48, generator=generator), ids,
                      tags, variants=PseudoLabeler.VARIANTS)
    pixel_ids = sample_grid(ids, 16, 24)
    for variant in PseudoLabeler.VARIANTS:
        labels = out[variant]
        assert labels.shape == (n, 16, 24)
        for b in range(n):
            for y, x in zip(*torch.nonzero(labels[b] != UNCERTAIN, as_tuple=True), strict=True):
                tile = int(pixel_ids[b, y, x])
                assert tile != TILE_IGNORE and tags[b, tile, labels[b, y, x]], variant
        assert (labels[:, pixel_ids[0] == TILE_IGNORE] == UNCERTAIN).all()


def test_the_tag_head_learns_the_tags() -> None:
    generator = torch.Generator().manual_seed(0)
    prototypes = torch.randn(4, 16, generator=generator)
    tags = torch.rand(200, 4, generator=generator) < 0.4
    pooled = tags.float() @ prototypes + 0.05 * torch.randn(200, 16, generator=generator)
    head = TagHead(16, torch.randn(4, 8, generator=generator))
    losses = train_tag_head(head, pooled, tags, steps=200, lr=1e-2)
    assert losses[-1] < 0.3 * losses[0]
    accuracy = ((head(pooled) > 0) == tags).float().mean()
    assert accuracy > 0.95


# -------------------------------------------------------------------------------- affinity

def test_transition_is_symmetric_and_normalised() -> None:
    attention = torch.softmax(torch.randn(2, 30, 30), dim=-1)
    matrix = transition_matrix(attention, rounds=3, power=2)
    assert torch.allclose(matrix, matrix.transpose(1, 2), atol=1e-6)
    assert torch.allclose(matrix.sum(-1), torch.ones(2, 30), atol=2e-2)


def test_a_block_diagonal_affinity_never_leaks_across_blocks() -> None:
    block = torch.softmax(torch.randn(6, 6), dim=-1)
    attention = torch.block_diag(block, block.T)[None]
    matrix = transition_matrix(attention)
    cam = torch.zeros(1, 1, 3, 4)
    cam.view(-1)[:6] = torch.rand(6) + 0.5  # the first block's cells only
    refined = propagate(matrix, cam, box_threshold=0.0)
    assert refined.view(-1)[:6].min() > 0 and refined.view(-1)[6:].abs().max() == 0


def test_an_identity_affinity_leaves_the_cam_unchanged() -> None:
    cam = torch.zeros(1, 2, 5, 6)
    cam[0, 0, 1:3, 1:4] = 1.0
    cam[0, 1, 3:5, 2:6] = torch.linspace(0.5, 1.0, 8).view(2, 4)
    refined = propagate(torch.eye(30)[None], cam)
    assert torch.equal(refined, cam)


def test_confident_boxes_bound_the_confident_cells() -> None:
    cam = torch.zeros(1, 1, 6, 6)
    cam[0, 0, 1, 2] = 1.0
    cam[0, 0, 4, 4] = 0.5
    cam[0, 0, 5, 0] = 0.1  # below 0.4 of the peak
    box = confident_boxes(cam)[0, 0]
    assert box[1:5, 2:5].min() == 1 and box.sum() == 12


# ------------------------------------------------------------------------------------- PAR

def test_par_keeps_labels_on_their_side_of_a_colour_edge() -> None:
    image = torch.zeros(1, 3, 24, 24)
    image[..., 12:] = 1.0  # two flat colours, the edge at column 12
    scores = torch.zeros(1, 2, 24, 24)
    scores[0, 0, :, :10] = 1.0  # class 0 seeded well inside the left half
    scores[0, 1, :, 14:] = 1.0
    refined = PixelAdaptiveRefinement(iterations=10)(image, scores)
    labels = refined.argmax(1)[0]
    assert (labels[:, :12] == 0).all() and (labels[:, 12:] == 1).all()
    # Without the image (one flat colour) the same seeds meet near the middle instead.
    flat = PixelAdaptiveRefinement(iterations=10)(torch.zeros(1, 3, 24, 24), scores)
    assert flat[0, 0, :, 13].mean() > refined[0, 0, :, 13].mean()


def test_par_refuses_mismatched_sizes() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        PixelAdaptiveRefinement()(torch.zeros(1, 3, 8, 8), torch.zeros(1, 2, 4, 4))


# --------------------------------------------------------------------- pipeline end to end

def _coloured_regions(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames of 3 classes, each a flat distinct colour, in random vertical bands."""
    rng = np.random.default_rng(seed)
    colours = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    labels = torch.zeros(n, 48, 64, dtype=torch.long)
    for i in range(n):
        cuts = np.sort(rng.integers(8, 56, 2))
        order = rng.permutation(3)
        labels[i, :, : cuts[0]] = int(order[0])
        labels[i, :, cuts[0]: cuts[1]] = int(order[1])
        labels[i, :, cuts[1]:] = int(order[2])
    images = colours[labels].permute(0, 3, 1, 2)
    return images, labels


def test_the_pipeline_recovers_coloured_regions_and_shuffled_tags_do_not() -> None:
    n, grid = 24, TileGrid(2, 2)
    images, labels = _coloured_regions(n, seed=0)
    features = torch.nn.functional.avg_pool2d(images, 4) + 0.02 * torch.randn(n, 3, 12, 16)
    ids = torch.from_numpy(grid.tile_ids(48, 64)).long()[None].expand(n, -1, -1)
    tags = torch.from_numpy(np.stack([tile_tags(lab.numpy(), grid, 3, 255, 0.01)
                                      for lab in labels]))

    def pseudo_miou(tile_tag_sets: torch.Tensor) -> float:
        pooled, _ = pool_tiles(features, sample_grid(ids, 12, 16), grid.tiles)
        head = TagHead(3, torch.eye(3) + 0.1)
        flat = tile_tag_sets.reshape(-1, 3)
        train_tag_head(head, pooled.reshape(-1, 3)[flat.any(1)], flat[flat.any(1)], steps=300,
                       lr=5e-2)
        head.requires_grad_(False)
        labeler = PseudoLabeler(head, PseudoLabelSettings(label_stride=4, par_iterations=5))
        out = labeler.run(features, None, images, ids, tile_tag_sets, variants=("cam",))
        score = PseudoLabelScore(3, 255)
        score.update(out["cam"].numpy(), labels[:, 2::4, 2::4].numpy())
        return 100 * float(np.nanmean(score.iou()))

    right = pseudo_miou(tags)
    shuffled = TagSet([str(i) for i in range(n)], tags.numpy(), grid, 0.01, ("a", "b", "c"),
                      "synthetic").shuffled(seed=0)
    wrong = pseudo_miou(torch.from_numpy(shuffled.tags))
    assert right > 70 and wrong < right - 30, (right, wrong)


def test_pseudo_label_score_counts_uncertain_as_misses() -> None:
    score = PseudoLabelScore(2, ignore_index=9)
    score.update(np.array([0, 0, UNCERTAIN, 1, 1]), np.array([0, 0, 0, 1, 9]))
    assert score.coverage() == pytest.approx(3 / 4)
    assert score.iou().tolist() == pytest.approx([2 / 3, 1.0])
    assert score.iou_covered().tolist() == pytest.approx([1.0, 1.0])


# ---------------------------------------------------------------------------------- towers

def test_efficientnet_tower_is_frozen_at_stride_16() -> None:
    from textseg_training.weak.tower import build_tower

    tower = build_tower("efficientnet_lite0")
    assert not tower.load_report.missing and len(tower.level_channels) == 11
    tower.train()
    assert not tower.training and not any(p.requires_grad for p in tower.parameters())
    with torch.no_grad():
        out = tower(torch.randn(1, 3, 64, 96))
    assert [tuple(level.shape[-2:]) for level in out.levels] == [(4, 6)] * 11
    assert out.cam_features.shape == (1, 1280, 4, 6)


def test_clip_tower_runs_with_random_weights_only_when_asked() -> None:
    pytest.importorskip("open_clip")
    from textseg_training.weak.tower import build_tower

    with pytest.raises(ValueError, match="ViT-B-16.pt"):
        build_tower("clip-vit-b16")
    tower = build_tower("clip-vit-b16", allow_random=True)
    with torch.no_grad():
        out = tower(torch.randn(1, 3, 72, 100))  # padded to 80 x 112: a 5 x 7 patch grid
    assert len(out.levels) == 11 and out.levels[0].shape == (1, 768, 5, 7)
    assert out.cam_features.shape == (1, 512, 5, 7)
    text = tower.encode_text(["road", "sky"], "a clean origami {}.")
    assert text.shape == (2, 512)


# --------------------------------------------------------------------------- on CamVid

def test_weak_tools_on_camvid_frames(camvid_dir: Path, tmp_path: Path) -> None:
    from textseg_training.cli import main

    tags_file, results = tmp_path / "tags.npz", tmp_path / "weak.json"
    assert main(["weak-tags", "--data-root", str(camvid_dir), "--grid", "3x4",
                 "--output", str(tags_file), "--results", str(results)]) == 0
    tags = TagSet.load(tags_file)
    assert tags.tags.shape == (367, 12, 11)
    # The design note's measurement: 3.33 tags per 3x4 tile at 1 %, 16 % single-tag tiles.
    stats = tags.statistics()
    assert stats["tags_per_tile"] == pytest.approx(3.33, abs=0.02)
    assert stats["single_tag_tiles"] == pytest.approx(0.16, abs=0.01)

    strip = tmp_path / "strip.png"
    assert main(["weak-pseudo", "--data-root", str(camvid_dir), "--frames", "2", "--grids",
                 "2x2", "--set", "label_stride=8", "--set", "par_iterations=2",
                 "--results", str(results), "--strip", str(strip)]) == 0
    record = json.loads(results.read_text())["pseudo_label_sweep"]
    assert record["frames"] == 2 and record["cpu"]["model"]
    grid = record["grids"][0]
    assert grid["grid"] == "2x2" and 0 < grid["cam+affinity"]["coverage"] <= 100
    assert strip.stat().st_size > 1000
    page = tmp_path / "page.md"
    page.write_text("# page\n<!-- weak:begin -->\nstale table\n<!-- weak:end -->\nafter\n")
    assert main(["weak-report", str(results), "--update", str(page)]) == 0
    text = page.read_text()
    assert "stale table" not in text and "| 2x2 |" in text and "| 3x4 | 0.01 | 3.3" in text
    assert text.endswith("<!-- weak:end -->\nafter\n")


# ------------------------------------------------------------------- data path and export

def test_the_weak_data_path_never_opens_a_label_file(camvid_dir: Path, monkeypatch) -> None:
    import cv2

    from textseg_training.data import TrainTransform, camvid
    from textseg_training.weak import data as weak_data
    from textseg_training.weak.data import WeakTrainSet
    from textseg_training.weak.tags import make_tags

    full = camvid(camvid_dir, "train")
    full.pairs = full.pairs[:3]
    tags = make_tags(full, TileGrid(3, 4), 0.01, camvid_dir, tuple("abcdefghijk"),
                     progress=False)
    label_files = {str(label) for _, label in camvid(camvid_dir, "train").pairs}
    real_imread = cv2.imread
    opened = []

    def guarded_imread(path, *args):
        if str(path) in label_files or "annot" in str(path):
            raise AssertionError(f"the weak data path opened a label file: {path}")
        opened.append(str(path))
        return real_imread(path, *args)

    monkeypatch.setattr(weak_data.cv2, "imread", guarded_imread)
    transform = TrainTransform((96, 128), (0.5, 1.0), (0.5,) * 3, (0.5,) * 3,
                               ignore_index=TILE_IGNORE, seed=0)
    dataset = WeakTrainSet(tags, camvid_dir, transform)
    for index in range(3):
        image, tile_ids, item_tags = dataset[index]
        assert image.shape == (3, 96, 128) and tile_ids.shape == (96, 128)
        valid = tile_ids[tile_ids != TILE_IGNORE]
        assert valid.numel() and int(valid.max()) < 12
        assert item_tags.shape == (12, 11) and torch.equal(item_tags.bool(),
                                                           torch.from_numpy(tags.tags[index]))
    assert len(opened) == 3


def test_a_weak_model_exports_through_the_artifact_contract(tmp_path: Path) -> None:
    from textseg.engine.contract import ModelInfo
    from textseg_training.dataset_specs import CAMVID
    from textseg_training.export import export_onnx
    from textseg_training.weak.model import WeakSegModel
    from textseg_training.weak.tower import build_tower

    torch.manual_seed(0)
    model = WeakSegModel(build_tower("efficientnet_lite0"), 11, width=32, layers=1, heads=4,
                         deploy=True).eval()
    info = ModelInfo(class_names=CAMVID.class_names, palette=CAMVID.palette,
                     network_input_size=(96, 128), architecture="efficientnet_lite0-weclip",
                     dataset="camvid", training_stage="random-init")
    # export_onnx checks the graph, ONNX Runtime against PyTorch and the TensorRT rules.
    report = export_onnx(model, info, tmp_path / "weak.onnx", model.input_mean,
                         model.input_std, with_confidence=True)
    assert report.path.is_file() and report.parity_agreement > 0.999


# ------------------------------------------------------------------------ training, small

@pytest.mark.parametrize("stage", ["weak", "weak_full"])
def test_a_short_weak_run_trains_resumes_records_and_exports(camvid_dir: Path, tmp_path: Path,
                                                             stage: str, capsys) -> None:
    import onnx
    import yaml

    from textseg.engine.contract import ModelInfo
    from textseg_training.cli import main
    from textseg_training.data import camvid
    from textseg_training.trainer.checkpoint import load_checkpoint
    from textseg_training.weak.tags import make_tags

    train = camvid(camvid_dir, "train")
    train.pairs = train.pairs[:4]
    tags_file = tmp_path / "tags.npz"
    make_tags(train, TileGrid(3, 4), 0.01, camvid_dir, tuple("abcdefghijk"),
              progress=False).save(tags_file)
    out = tmp_path / "run"
    config = tmp_path / "weak.yaml"
    config.write_text(yaml.safe_dump({
        "stage": stage, "data_root": str(camvid_dir), "tags_file": str(tags_file),
        "iterations": 4, "batch_size": 2, "crop_size": [96, 128], "decoder_width": 32,
        "decoder_layers": 1, "decoder_heads": 4, "rfm_start": 0.5, "checkpoint_interval": 2,
        "pseudo_eval_frames": 2, "val_limit": 2, "num_workers": 0, "output_dir": str(out),
        "tag_head_steps": 20}))
    results = tmp_path / "weak_runs.json"
    assert main(["train", str(config), "--set", "iterations=2"]) == 0
    first = load_checkpoint(out / "last.pt")
    assert first["kind"] == "weak" and first["iteration"] == 2
    assert main(["train", str(config), "--resume", str(out / "last.pt"), "--results",
                 str(results), "--row", f"test_{stage}"]) == 0
    data = load_checkpoint(out / "last.pt")
    assert data["iteration"] == 4 and len(data["step_seconds"]) == 4
    entry = json.loads(results.read_text())["runs"][0]
    assert entry["row"] == f"test_{stage}" and entry["cpu"]["model"]
    assert 0 <= entry["val_miou"] <= 100 and entry["step_seconds_mean"] > 0
    if stage == "weak":
        # Scored before training, when the RFM takes over (iteration 2) and at the end.
        assert set(entry["pseudo_labels"]) == {"start", "rfm_start", "end"}
        assert entry["pseudo_labels"]["end"]["affinity"] == "rfm"
        # The decoder moved; the tag head stayed frozen after its own fit.
        assert torch.equal(first["tag_head"]["proj.weight"], data["tag_head"]["proj.weight"])
    assert any(not torch.equal(first["decoder"][k], data["decoder"][k])
               for k in data["decoder"])
    strip = tmp_path / "strip.png"
    if stage == "weak":
        assert main(["weak-strip", str(out / "last.pt"), "--output", str(strip),
                     "--frames", "2"]) == 0
        picture = cv2.imread(str(strip))
        # 2 rows of 5 panels (image, ground truth, CAM, pseudo label, prediction), 120 high.
        assert picture.shape == (240, 5 * 160 + 4 * 4, 3)
    else:
        capsys.readouterr()
        assert main(["weak-strip", str(out / "last.pt"), "--output", str(strip)]) != 0
        assert "not a checkpoint of a `stage: weak` run" in capsys.readouterr().err
        assert not strip.exists()
    artifact = tmp_path / "weak.onnx"
    assert main(["export", "--checkpoint", str(out / "last.pt"), "--output", str(artifact),
                 "--confidence", "--input-size", "96", "128"]) == 0
    proto = onnx.load(str(artifact))
    info = ModelInfo.from_metadata({p.key: p.value for p in proto.metadata_props})
    assert info.architecture == "efficientnet_lite0-weclip"
    assert info.training_stage == f"{stage}@4"


def test_bad_weak_configs_are_named() -> None:
    from textseg_training.weak.config import WeakConfig

    with pytest.raises(ValueError, match="pseudo_variant"):
        WeakConfig(pseudo_variant="everything")
    with pytest.raises(ValueError, match="unknown settings"):
        WeakConfig(pseudo={"label_strid": 4})
    with pytest.raises(ValueError, match="needs the clip-vit-b16 tower"):
        WeakConfig(text_encoder="clip")
    with pytest.raises(ValueError, match="unknown keys"):
        WeakConfig.from_dict({"stage": "weak", "tile_grid": "3x4"})


@pytest.mark.parametrize("name", ["camvid_lite0_weclip.yaml", "camvid_clip_vitb16_weclip.yaml"])
def test_the_shipped_weak_configs_load(name: str) -> None:
    from textseg_training.weak.config import WeakConfig

    path = Path(__file__).resolve().parents[2] / "training" / "configs" / "weak" / name
    config = WeakConfig.from_yaml(path)
    assert config.stage == "weak" and config.pseudo_settings().label_stride == 8


def _row(row: str, seed: int, miou: float, pseudo: dict | None = None) -> dict:
    return {"row": row, "seed": seed, "val_miou": miou, "iterations": 1500,
            "per_class_iou": {"sky": miou + 1, "road": miou - 1}, "precision": "fp32",
            "wall_seconds": 600.0, "step_seconds_mean": 0.5, "pseudo_labels": pseudo or {},
            "config_file": "weak.yaml", "cpu": {"description": "a CPU (VNNI, no bf16)"},
            "config": {"batch_size": 4, "crop_size": [320, 320], "pseudo_eval_frames": 40}}


def test_the_weak_report_tables_the_rows_against_full_supervision(tmp_path: Path) -> None:
    from textseg_training.results import record_run
    from textseg_training.weak.report import weak_report
    from textseg_training.weak.sweep import write_results

    path = tmp_path / "weak.json"
    write_results(path, "tags", {"3x4": {"threshold": 0.01, "tags_per_tile": 3.3,
                                         "single_tag_tiles": 0.16, "untagged_tiles": 0.0,
                                         "tag_rate": {"sky": 0.5, "road": 0.9},
                                         "tile_fill_floor_miou": 17.4}})
    scores = {m: {"miou": v, "iteration": i} for m, v, i in
              (("start", 24.0, 0), ("rfm_start", 26.0, 750), ("end", 28.0, 1500))}
    for seed, weak, no_rfm in ((0, 40.0, 38.0), (1, 42.0, 41.0)):
        record_run(path, _row("weak_weclip", seed, weak, scores))
        record_run(path, _row("weak_weclip_no_rfm", seed, no_rfm))
    record_run(path, _row("full_weclip", 0, 50.0))
    data = json.loads(path.read_text())
    assert "tags" in data and len(data["runs"]) == 5  # recording rows keeps the other keys
    report = weak_report(path)
    weak_line = next(line for line in report.splitlines() if line.startswith("| weak_weclip |"))
    # mean 41 ± 1.41 over two seeds, 82 % of full's 50, pseudo mIoU start / RFM start / end.
    assert "41.00 ± 1.41" in weak_line and "| 82 % |" in weak_line
    assert "24.0 ± 0.0 / 26.0 ± 0.0 / 28.0 ± 0.0" in weak_line
    assert "weak_weclip - weak_weclip_no_rfm: +1.50 points" in report
    assert "weak_weclip - full_weclip: -10.00 points" in report
    assert "| weak_weclip | 42.0 | 40.0 |" in report  # per-class IoU, mean over seeds
    assert "a CPU (VNNI, no bf16)" in report and "| 3x4 | 0.01 | 3.30 |" in report
