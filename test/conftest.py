"""Shared fixtures: the CamVid data folder beside the checkout and a tiny exported model."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

# ../shared/datasets/camvid relative to the repository root (never copied into the project).
CAMVID_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "camvid"
CAMVID_MISSING = "CamVid not found at ../shared/datasets/camvid (shared data folder absent)"


def camvid_available() -> bool:
    return (CAMVID_DIR / "val").is_dir()


@pytest.fixture(scope="session")
def camvid_dir() -> Path:
    """The CamVid root (val/, valannot/, train/, trainannot/); skips when absent."""
    if not camvid_available():
        pytest.skip(CAMVID_MISSING)
    return CAMVID_DIR


def camvid_val_frames(n: int) -> list[tuple[str, np.ndarray]]:
    """The first `n` CamVid val frames (sorted by name) as (name, uint8 RGB [H, W, 3]) pairs.

    Skips the calling test when the data folder is absent.
    """
    if not camvid_available():
        pytest.skip(CAMVID_MISSING)
    frames = []
    for path in sorted((CAMVID_DIR / "val").glob("*.png"))[:n]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"cannot read {path}")
        frames.append((path.name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    if len(frames) < n:
        pytest.skip(f"CamVid val has {len(frames)} frames, the test needs {n}")
    return frames


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A randomly initialised STDC1 CamVid model exported at network size 96x128 (with
    confidence output). Skips where torch / the training package is not installed."""
    torch = pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")
    pytest.importorskip("textseg_training", reason="training package not installed")
    from textseg.engine.contract import ModelInfo
    from textseg_training.dataset_specs import CAMVID
    from textseg_training.export import export_onnx
    from textseg_training.model import SegModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(SegModelConfig(backbone="stdc1", num_classes=11), deploy=True).eval()
    info = ModelInfo(class_names=CAMVID.class_names, palette=CAMVID.palette,
                     network_input_size=(96, 128), architecture="stdc1-seg",
                     dataset=CAMVID.name, text_encoder="none", training_stage="random-init")
    path = tmp_path_factory.mktemp("tiny_model") / "tiny.onnx"
    export_onnx(model, info, path, model.backbone.input_mean, model.backbone.input_std,
                with_confidence=True)
    return path


@pytest.fixture(scope="session")
def tiny_weak_run(camvid_dir, tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, artifact) of a weakly supervised run: tile tags of 4 CamVid train frames,
    the tag head, 2 decoder steps on their pseudo labels with the RFM on, exported at 96x128
    with confidence output. Skips where torch / the training package is not installed."""
    pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")
    pytest.importorskip("textseg_training", reason="training package not installed")
    from textseg_training.data import camvid
    from textseg_training.weak.config import WeakConfig
    from textseg_training.weak.export import export_weak_checkpoint
    from textseg_training.weak.tags import TileGrid, make_tags
    from textseg_training.weak.trainer import WeakTrainer

    folder = tmp_path_factory.mktemp("tiny_weak")
    train = camvid(camvid_dir, "train")
    train.pairs = train.pairs[:4]
    tags_file = folder / "tags.npz"
    make_tags(train, TileGrid(3, 4), 0.01, camvid_dir, tuple("abcdefghijk"),
              progress=False).save(tags_file)
    config = WeakConfig(stage="weak", data_root=str(camvid_dir), tags_file=str(tags_file),
                        iterations=2, batch_size=2, crop_size=(96, 128), decoder_width=32,
                        decoder_layers=1, decoder_heads=4, rfm_start=0.5, pseudo_eval_frames=0,
                        val_limit=2, num_workers=0, output_dir=str(folder / "run"),
                        tag_head_steps=20)
    WeakTrainer(config, progress=False).fit()
    checkpoint = folder / "run" / "last.pt"
    artifact = folder / "weak.onnx"
    export_weak_checkpoint(checkpoint, artifact, confidence=True, input_size=(96, 128))
    return checkpoint, artifact


@pytest.fixture(scope="session")
def camvid_frames():
    """`camvid_val_frames` as a fixture, for test modules that should not import `conftest`
    by module name (that name is ambiguous once a sub-folder has its own conftest.py)."""
    return camvid_val_frames


@pytest.fixture(scope="session")
def camvid_val6_bag(camvid_dir, tmp_path_factory) -> Path:
    """The first 6 CamVid val frames and their labels as an MCAP bag (`bag_from_dataset`)."""
    from textseg.replay.dataset import CAMVID_META, bag_from_dataset, camvid_label_folder

    bag = tmp_path_factory.mktemp("camvid_bag") / "camvid_val6"
    bag_from_dataset(camvid_dir / "val", bag, camvid_label_folder(camvid_dir / "val"),
                     limit=6, meta=CAMVID_META)
    return bag


@pytest.fixture(scope="session")
def vision_msgs_module():
    """vision_msgs.msg (LabelInfo, VisionClass). scripts/test.sh builds it with the ROS wheels'
    rosidl toolchain (scripts/build_vision_msgs.sh) and sets TEXTSEG_VISION_MSGS: then a
    missing or broken vision_msgs fails the test instead of skipping it."""
    import importlib
    import os

    if os.environ.get("TEXTSEG_VISION_MSGS"):
        return importlib.import_module("vision_msgs.msg")
    return pytest.importorskip(
        "vision_msgs.msg", reason="vision_msgs is not installed (no wheel exists; "
        "scripts/test.sh builds it with scripts/build_vision_msgs.sh)")
