"""Datasets (CamVid, Cityscapes layout, custom YAML), their error messages, transforms, loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("textseg_training", reason="training package not installed")

from textseg_training.data import (  # noqa: E402
    CAMVID_SCALES,
    CITYSCAPES_SCALES,
    DataError,
    EvalTransform,
    TrainTransform,
    build_loader,
    camvid,
    cityscapes,
    custom,
    validate_dataset,
)
from textseg_training.dataset_specs import CAMVID  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------ CamVid

def test_camvid_counts_and_item(camvid_dir: Path) -> None:
    train, val = camvid(camvid_dir, "train"), camvid(camvid_dir, "val")
    assert (len(train), len(val)) == (367, 101)
    image, label = val[0]
    assert image.shape == (3, 360, 480) and image.dtype == torch.float32
    assert label.shape == (360, 480) and label.dtype == torch.int64
    assert 0 <= int(label.min()) and int(label.max()) <= CAMVID.ignore_index == 11
    normed, _ = camvid(camvid_dir, "val", EvalTransform(MEAN, STD))[0]
    assert normed.shape == (3, 360, 480) and float(normed.min()) < 0.0


def test_camvid_validate_a_few(camvid_dir: Path) -> None:
    report = validate_dataset(camvid(camvid_dir, "val"), limit=3)
    assert report.ok and report.checked == 3
    assert report.class_pixels.sum() + report.ignored_pixels == 3 * 360 * 480


# ------------------------------------------------------------------------------- custom YAML

def _custom_tree(tmp_path: Path, n: int = 3, size: tuple[int, int] = (24, 32)) -> Path:
    for i in range(n):
        _write_png(tmp_path / "images" / f"f{i}.png", _image(*size, seed=i))
        label = np.zeros(size, np.uint8)
        label[:, size[1] // 2:] = 1
        label[0, 0] = 255
        _write_png(tmp_path / "labels" / f"f{i}.png", label)
    return tmp_path


def _yaml(tmp_path: Path, **override: object) -> Path:
    cfg: dict[str, object] = {
        "name": "toy", "images": "images", "labels": "labels",
        "class_names": ["road", "car"], "palette": [[128, 64, 128], [0, 0, 142]],
        "ignore_index": 255, "network_input_size": [24, 32],
    }
    cfg.update(override)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    import yaml

    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_custom_yaml_dataset(tmp_path: Path) -> None:
    _custom_tree(tmp_path)
    ds, spec = custom(_yaml(tmp_path, network_input_size=None))
    assert len(ds) == 3 and spec.class_names == ("road", "car")
    assert spec.palette[1] == (0, 0, 142) and spec.network_input_size == (24, 32)
    image, label = ds[1]
    assert image.shape == (3, 24, 32) and label.dtype == torch.int64
    assert set(torch.unique(label).tolist()) == {0, 1, 255}
    assert validate_dataset(ds).ok


def test_decoded_cache_reads_each_file_once_within_its_budget(tmp_path: Path) -> None:
    _custom_tree(tmp_path, n=3)
    ds, _ = custom(_yaml(tmp_path), TrainTransform((16, 16), (1.0,), MEAN, STD, 255, seed=0))
    pair_bytes = 24 * 32 * 3 + 24 * 32  # uint8 image + uint8 label
    ds.cache_mb = 2.5 * pair_bytes / 2**20  # room for two pairs, not three
    first = [ds.load_raw(i) for i in range(3)]
    for path in (tmp_path / "images").iterdir():
        path.unlink()  # cached pairs no longer need their files
    for i in range(2):
        image, label = ds.load_raw(i)
        assert image is first[i][0] and not image.flags.writeable
        assert ds[i][0].shape == (3, 16, 16)  # augmentation works on the read-only arrays
    with pytest.raises(DataError, match="f2.png"):  # over budget: read again, and now missing
        ds.load_raw(2)
    ds.cache_mb = 0.0
    assert ds._cached_bytes == 2 * pair_bytes


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [("class_names", None, "class_names"),
     ("palette", [[1, 2, 3]], "palette"),
     ("ignore_index", None, "ignore_index")],
)
def test_custom_yaml_errors_name_the_key(tmp_path: Path, key: str, value: object,
                                         needle: str) -> None:
    _custom_tree(tmp_path)
    with pytest.raises(DataError, match=needle):
        custom(_yaml(tmp_path, **{key: value}))


def test_image_without_label_is_named(tmp_path: Path) -> None:
    _custom_tree(tmp_path)
    _write_png(tmp_path / "images" / "orphan.png", _image(24, 32))
    with pytest.raises(DataError, match=r"orphan\.png has no label"):
        custom(_yaml(tmp_path))


def test_label_without_image_is_named(tmp_path: Path) -> None:
    _custom_tree(tmp_path)
    _write_png(tmp_path / "labels" / "lonely.png", np.zeros((24, 32), np.uint8))
    with pytest.raises(DataError, match=r"lonely\.png has no image"):
        custom(_yaml(tmp_path))


def test_size_mismatch_is_named_on_load(tmp_path: Path) -> None:
    _custom_tree(tmp_path)
    _write_png(tmp_path / "labels" / "f1.png", np.zeros((20, 32), np.uint8))
    ds, _ = custom(_yaml(tmp_path))  # not detected at construction: files are not read
    ds[0]
    with pytest.raises(DataError, match=r"size mismatch.*f1\.png"):
        ds[1]
    report = validate_dataset(ds)
    assert not report.ok and "f1.png" in report.errors[0]
    with pytest.raises(DataError, match="f1.png"):
        report.raise_if_errors()


def test_label_out_of_range_is_named(tmp_path: Path) -> None:
    _custom_tree(tmp_path)
    bad = np.zeros((24, 32), np.uint8)
    bad[3, 3] = 7
    _write_png(tmp_path / "labels" / "f2.png", bad)
    ds, _ = custom(_yaml(tmp_path))
    with pytest.raises(DataError, match=r"f2\.png has values \[7\]"):
        ds[2]


def test_unreadable_and_empty(tmp_path: Path) -> None:
    _custom_tree(tmp_path)
    (tmp_path / "images" / "f0.png").write_bytes(b"not a png")
    ds, _ = custom(_yaml(tmp_path))
    with pytest.raises(DataError, match=r"cannot read image .*f0\.png"):
        ds[0]
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "labels").mkdir()
    with pytest.raises(DataError, match="empty dataset"):
        custom(_yaml(empty))


# -------------------------------------------------------------------------------- Cityscapes

def test_cityscapes_label_ids_mapped_to_train_ids(tmp_path: Path) -> None:
    ids = np.array([[7, 8, 26, 33], [0, 9, 23, 24]], np.uint8).repeat(4, 0).repeat(4, 1)
    for split, city, stem in [("val", "lindau", "lindau_000000_000019"),
                              ("val", "munster", "munster_000001_000019")]:
        _write_png(tmp_path / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                   _image(8, 16))
        _write_png(tmp_path / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids)
    ds = cityscapes(tmp_path, "val")
    assert len(ds) == 2
    _, label = ds[0]
    # road 7->0, sidewalk 8->1, car 26->13, bicycle 33->18; unlabeled 0, parking 9 -> 255;
    # sky 23->10, person 24->11.
    assert label[::4, ::4].tolist() == [[0, 1, 13, 18], [255, 255, 10, 11]]

    # With labelTrainIds present everywhere those are read as they are.
    for path in (tmp_path / "gtFine" / "val").glob("*/*_labelIds.png"):
        train_ids = np.full((8, 16), 5, np.uint8)
        _write_png(Path(str(path).replace("_labelIds", "_labelTrainIds")), train_ids)
    _, label = cityscapes(tmp_path, "val")[1]
    assert set(label.unique().tolist()) == {5}


def test_cityscapes_missing_label(tmp_path: Path) -> None:
    _write_png(tmp_path / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png",
               _image(8, 8))
    (tmp_path / "gtFine/train/aachen").mkdir(parents=True)
    with pytest.raises(DataError, match=r"aachen_000000_000019_leftImg8bit\.png has no label"):
        cityscapes(tmp_path, "train")


# -------------------------------------------------------------------------------- transforms

def test_paper_scale_sets() -> None:
    assert CAMVID_SCALES[0] == 0.5 and CAMVID_SCALES[-1] == 2.5 and len(CAMVID_SCALES) == 9
    assert CITYSCAPES_SCALES[0] == 0.125 and CITYSCAPES_SCALES[-1] == 1.5
    assert len(CITYSCAPES_SCALES) == 12


def test_random_scale_crop_gives_crop_size() -> None:
    t = TrainTransform((40, 56), CAMVID_SCALES, MEAN, STD, ignore_index=11, seed=0)
    image, label = _image(36, 48), np.zeros((36, 48), np.uint8)
    for _ in range(10):
        out_image, out_label = t(image, label)
        assert out_image.shape == (3, 40, 56) and out_image.dtype == torch.float32
        assert out_label.shape == (40, 56) and out_label.dtype == torch.int64


def test_padding_uses_ignore_index() -> None:
    t = TrainTransform((50, 60), [1.0], MEAN, STD, ignore_index=11, flip_prob=0.0,
                       brightness=0, contrast=0, saturation=0, seed=0)
    image = np.full((30, 40, 3), 255, np.uint8)
    out_image, out_label = t(image, np.zeros((30, 40), np.uint8))
    assert (out_label[:30, :40] == 0).all()
    assert (out_label[30:] == 11).all() and (out_label[:, 40:] == 11).all()
    assert (out_image[:, 30:] == 0).all()  # padded with 0 after normalising (the mean colour)
    expected = (1.0 - MEAN[0]) / STD[0]
    assert torch.allclose(out_image[0, :30, :40], torch.tensor(expected))


def test_flip_moves_image_and_label_together() -> None:
    # Asymmetric: the left quarter is class 1 and bright, the rest class 0 and dark.
    image = np.zeros((16, 32, 3), np.uint8)
    image[:, :8] = 200
    label = np.zeros((16, 32), np.uint8)
    label[:, :8] = 1
    kw = dict(crop_size=(16, 32), scales=[1.0], mean=MEAN, std=STD, ignore_index=255,
              brightness=0, contrast=0, saturation=0, seed=0)
    plain_image, plain_label = TrainTransform(flip_prob=0.0, **kw)(image, label)
    flip_image, flip_label = TrainTransform(flip_prob=1.0, **kw)(image, label)
    assert (flip_label[:, 24:] == 1).all() and (flip_label[:, :24] == 0).all()
    assert torch.equal(flip_label, plain_label.flip(-1))
    assert torch.equal(flip_image, plain_image.flip(-1))
    bright = flip_image[0] > 0
    assert torch.equal(bright, flip_label == 1)


def test_same_seed_same_augmentation() -> None:
    image, label = _image(36, 48, seed=3), np.random.default_rng(1).integers(
        0, 11, (36, 48)).astype(np.uint8)
    runs = []
    for seed in (5, 5, 6):
        t = TrainTransform((32, 32), CAMVID_SCALES, MEAN, STD, ignore_index=11, seed=seed)
        runs.append([t(image, label) for _ in range(3)])
    for (ia, la), (ib, lb) in zip(runs[0], runs[1], strict=True):
        assert torch.equal(ia, ib) and torch.equal(la, lb)
    assert any(not torch.equal(a[0], c[0]) for a, c in zip(runs[0], runs[2], strict=True))


def test_eval_transform_resizes_image_keeps_label() -> None:
    image, label = _image(30, 40), np.ones((30, 40), np.uint8)
    out_image, out_label = EvalTransform(MEAN, STD, size=(15, 20))(image, label)
    assert out_image.shape == (3, 15, 20) and out_label.shape == (30, 40)
    _, small = EvalTransform(MEAN, STD, size=(15, 20), resize_label=True)(image, label)
    assert small.shape == (15, 20) and (small == 1).all()


def test_loader_reproducible_with_workers(tmp_path: Path) -> None:
    _custom_tree(tmp_path, n=4)
    t = TrainTransform((16, 16), CAMVID_SCALES, MEAN, STD, ignore_index=255)

    def batches() -> list:
        ds, _ = custom(_yaml(tmp_path), transform=t)
        loader = build_loader(ds, batch_size=2, shuffle=True, num_workers=1, seed=7,
                              drop_last=True)
        return [b for b in loader]

    first, second = batches(), batches()
    assert len(first) == 2 and first[0][0].shape == (2, 3, 16, 16)
    for (ia, la), (ib, lb) in zip(first, second, strict=True):
        assert torch.equal(ia, ib) and torch.equal(la, lb)
