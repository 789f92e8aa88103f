"""The recipe study's options (issue 30): a held-out sequence, the weights' moving average, a
frozen-backbone first phase with a lower backbone LR, class-weighted OHEM, other light.

Real short runs on a few CamVid frames (symlinks in a temporary folder, 96x128), as
test_training_runs.py does.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")

from textseg_training.cli import main as train_main  # noqa: E402
from textseg_training.data.transforms import TrainTransform  # noqa: E402
from textseg_training.dataset_specs import CAMVID  # noqa: E402
from textseg_training.losses import OhemCrossEntropy, enet_class_weights  # noqa: E402
from textseg_training.trainer.checkpoint import load_checkpoint  # noqa: E402
from textseg_training.trainer.config import TrainConfig  # noqa: E402
from textseg_training.trainer.ema import WeightAverage  # noqa: E402
from textseg_training.trainer.loop import Trainer  # noqa: E402

HELD_OUT = "0006R0"


def _folder(root: Path, camvid: Path, split: str, names: list[str], folder: str) -> Path:
    for kind, source in (("images", camvid / split), ("labels", camvid / f"{split}annot")):
        (root / folder / kind).mkdir(parents=True)
        for name in names:
            (root / folder / kind / name).symlink_to(source / name)
    yaml_path = root / f"{folder}.yaml"
    yaml_path.write_text(
        f"name: tiny_camvid\nimages: {folder}/images\nlabels: {folder}/labels\n"
        f"class_names: {list(CAMVID.class_names)}\n"
        f"palette: {[list(c) for c in CAMVID.palette]}\n"
        f"ignore_index: {CAMVID.ignore_index}\nnetwork_input_size: [96, 128]\n")
    return yaml_path


@pytest.fixture(scope="module")
def two_streets(tmp_path_factory, camvid_dir) -> tuple[Path, Path]:
    """4 train frames of 0001TP and 2 of 0006R0 (the street to hold out), 2 val frames."""
    root = tmp_path_factory.mktemp("two_streets")
    names = sorted(p.name for p in (camvid_dir / "train").glob("*.png"))
    train = ([n for n in names if n.startswith("0001TP")][:4]
             + [n for n in names if n.startswith(HELD_OUT)][:2])
    val = sorted(p.name for p in (camvid_dir / "val").glob("*.png"))[:2]
    return (_folder(root, camvid_dir, "train", train, "train"),
            _folder(root, camvid_dir, "val", val, "val"))


def _config(data, out: Path, **overrides) -> TrainConfig:
    train_yaml, val_yaml = data
    settings = dict(stage="baseline", backbone="efficientnet_lite0", dataset=str(train_yaml),
                    val_dataset=str(val_yaml), crop_size=(96, 128), scales=(0.75, 1.0),
                    iterations=2, batch_size=2, warmup_iterations=1, eval_interval=100,
                    checkpoint_interval=1, log_interval=1, num_workers=0,
                    output_dir=str(out))
    settings.update(overrides)
    return TrainConfig(**settings)


def _backbone(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if k.startswith("backbone.")}


# ----------------------------------------------------------------------- the held-out street

def test_the_held_out_street_leaves_training_and_is_scored_as_its_own_split(two_streets,
                                                                            tmp_path):
    trainer = Trainer(_config(two_streets, tmp_path, train_exclude=(HELD_OUT,)), progress=False)
    train_names = [p[0].name for p in trainer.train_set.pairs]
    held_names = [p[0].name for p in trainer.eval_sets["heldout"].pairs]
    assert len(train_names) == 4 and not any(n.startswith(HELD_OUT) for n in train_names)
    assert len(held_names) == 2 and all(n.startswith(HELD_OUT) for n in held_names)
    assert set(trainer.eval_sets) == {"val", "heldout"}
    result = trainer.fit()
    assert set(result.final_evals) == {"val", "heldout"}
    assert result.final_evals["val"] is result.final_eval
    # Scored on its own frames: the confusion matrix counts exactly their labelled pixels.
    held = trainer.eval_sets["heldout"]
    pixels = sum(int((held.load_raw(i)[1] != CAMVID.ignore_index).sum())
                 for i in range(len(held)))
    assert int(result.final_evals["heldout"].confusion.sum()) == pixels


@pytest.mark.parametrize(("prefixes", "message"), [
    (("Seq05VD",), "no training image name starts with it"),
    (("0001TP", HELD_OUT), "leaves no training image"),
])
def test_a_held_out_prefix_that_matches_nothing_or_everything_is_refused(
        two_streets, tmp_path, prefixes, message):
    with pytest.raises(ValueError, match=message):
        Trainer(_config(two_streets, tmp_path, train_exclude=prefixes), progress=False)


@pytest.mark.parametrize(("settings", "message"), [
    ({"train_exclude": ("",)}, "empty prefix"),
    ({"ema_decay": 1.0}, "ema_decay"),
    ({"photometric": "night"}, "photometric"),
    ({"class_weights": "median"}, "class_weights"),
    ({"backbone_lr_mult": -1.0}, "backbone_lr_mult"),
    ({"stage": "stage2", "init_from": "x.pt", "backbone_frozen_iterations": 5},
     "freezes the backbone already"),
])
def test_bad_recipe_settings_are_refused_by_name(two_streets, tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        _config(two_streets, tmp_path, **settings)


def test_the_train_command_records_both_splits_and_the_average_as_rows(two_streets, tmp_path,
                                                                       capsys):
    config = tmp_path / "recipe.yaml"
    train_yaml, val_yaml = two_streets
    config.write_text(
        f"stage: baseline\nbackbone: efficientnet_lite0\ndataset: {train_yaml}\n"
        f"val_dataset: {val_yaml}\ncrop_size: [96, 128]\nscales: [1.0]\niterations: 2\n"
        "batch_size: 2\nwarmup_iterations: 1\neval_interval: 2\ncheckpoint_interval: 1\n"
        f"num_workers: 0\noutput_dir: {tmp_path / 'run'}\ntrain_exclude: [{HELD_OUT}]\n"
        "ema_decay: 0.9\n")
    results = tmp_path / "study.json"
    assert train_main(["train", str(config), "--results", str(results), "--row", "r"]) == 0
    runs = {r["row"]: r for r in json.loads(results.read_text())["runs"]}
    assert set(runs) == {"r", "r_ema"}
    for entry in runs.values():
        assert entry["heldout"] == HELD_OUT
        assert set(entry["heldout_per_class_iou"]) == set(CAMVID.class_names)
        assert 0.0 <= entry["heldout_miou"] <= 100.0 and entry["cpu"]["model"]
    # Two weight sets, two evaluations: the average differs from the trained weights.
    assert runs["r"]["per_class_iou"] != runs["r_ema"]["per_class_iou"] or \
        runs["r"]["heldout_per_class_iou"] != runs["r_ema"]["heldout_per_class_iou"]


# ----------------------------------------------------------------- the weights' moving average

def test_the_average_follows_the_formula_with_its_warm_up():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.99)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()(torch.randn(4, 3))  # BN statistics move and its counter counts
    average.update(model)
    keep = min(0.99, 2.0 / 11.0)  # (1 + t) / (10 + t) at t = 1
    now = model.state_dict()
    for name, value in average.model.state_dict().items():
        if value.dtype.is_floating_point:
            expected = keep * start[name] + (1.0 - keep) * now[name]
            assert torch.allclose(value, expected, atol=1e-6), name
        else:
            assert torch.equal(value, now[name]), name
    assert not any(p.requires_grad for p in average.model.parameters())


def test_the_average_is_resumed_exactly(two_streets, tmp_path):
    straight = Trainer(_config(two_streets, tmp_path / "a", iterations=3, ema_decay=0.9),
                       progress=False)
    straight.fit()
    half = Trainer(_config(two_streets, tmp_path / "b", iterations=3, ema_decay=0.9),
                   progress=False)
    loader = iter(half._loader())
    for _ in range(2):  # interrupted after two steps
        half.train_step(*next(loader))
    half.save(tmp_path / "half.pt")
    resumed = Trainer(_config(two_streets, tmp_path / "b", iterations=3, ema_decay=0.9),
                      resume=tmp_path / "half.pt", progress=False)
    assert resumed.ema.updates == 2
    resumed.fit()
    a = load_checkpoint(tmp_path / "a" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    assert a["ema"]["updates"] == b["ema"]["updates"] == 3
    for name, value in a["ema"]["model"].items():
        assert torch.equal(value, b["ema"]["model"][name]), name
    # The average is not the trained weights.
    assert any(not torch.equal(a["model"][k], v) for k, v in a["ema"]["model"].items()
               if v.dtype.is_floating_point)


def test_export_ema_writes_the_average(two_streets, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    from textseg_training.export import export_checkpoint

    Trainer(_config(two_streets, tmp_path, iterations=2, ema_decay=0.5), progress=False).fit()
    outputs = {}
    for ema in (False, True):
        path = tmp_path / f"m_{ema}.onnx"
        assert export_checkpoint(tmp_path / "last.pt", path, ema=ema).path == path
        model = onnx.load(str(path))
        meta = {p.key: p.value for p in model.metadata_props}
        assert json.loads(meta["textseg.training_stage"]).endswith("+ema") == ema
        outputs[ema] = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert any(not np.array_equal(outputs[True][k], v) for k, v in outputs[False].items()
               if k in outputs[True] and v.dtype == np.float32)


def test_export_ema_refuses_a_run_without_an_average(two_streets, tmp_path):
    from textseg_training.export import export_checkpoint

    Trainer(_config(two_streets, tmp_path, iterations=1), progress=False).fit()
    with pytest.raises(ValueError, match="kept no moving average"):
        export_checkpoint(tmp_path / "last.pt", tmp_path / "m.onnx", ema=True)


# ------------------------------------------------------- linear probe, then the whole network

def test_the_backbone_stays_frozen_for_the_probe_then_trains_at_its_own_lr(two_streets,
                                                                           tmp_path):
    config = _config(two_streets, tmp_path, iterations=4, backbone_frozen_iterations=2,
                     backbone_lr_mult=0.1)
    trainer = Trainer(config, progress=False)
    groups = {g["name"]: g["initial_lr"] for g in trainer.optimizer.param_groups}
    assert math.isclose(groups["backbone_decay"], config.lr * 0.1)
    assert math.isclose(groups["head_decay"], config.lr * config.head_lr_mult)
    start = _backbone(trainer.model)
    loader = iter(trainer._loader())
    for _ in range(2):
        trainer.train_step(*next(loader))
        # Weights and BN statistics: bit-identical while probing; no detail loss then.
        assert all(torch.equal(v, start[k]) for k, v in _backbone(trainer.model).items())
        assert trainer.criterion.w_detail == 0.0
    trainer.train_step(*next(loader))
    assert trainer.criterion.w_detail == config.detail_weight
    moved = [k for k, v in _backbone(trainer.model).items() if not torch.equal(v, start[k])]
    assert any(k.endswith("weight") for k in moved)


def test_a_run_resumed_inside_the_probe_is_still_frozen(two_streets, tmp_path):
    config = _config(two_streets, tmp_path, iterations=1, backbone_frozen_iterations=3)
    Trainer(config, progress=False).fit()
    resumed = Trainer(_config(two_streets, tmp_path, iterations=4,
                              backbone_frozen_iterations=3),
                      resume=tmp_path / "last.pt", progress=False)
    assert resumed.iteration == 1 and resumed.model.backbone_frozen


# ------------------------------------------------------------------------ the rare classes

def test_enet_weights_favour_rare_classes_and_average_one():
    weights = enet_class_weights(torch.tensor([900.0, 90.0, 10.0, 0.0]))
    assert math.isclose(weights.mean().item(), 1.0, rel_tol=1e-6)
    assert weights[0] < weights[1] < weights[2] < weights[3]
    p = torch.tensor([0.9, 0.09, 0.01, 0.0], dtype=torch.float64)
    raw = 1.0 / torch.log(1.02 + p)
    assert torch.allclose(weights.double(), raw / raw.mean(), atol=1e-6)
    with pytest.raises(ValueError, match="pixel counts"):
        enet_class_weights(torch.zeros(3))


def test_weighted_ohem_scales_each_kept_pixel_by_its_class_weight():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    target[0, 0, :4] = 255
    plain = OhemCrossEntropy(threshold=0.99, ignore_index=255)  # every valid pixel is hard
    ones = OhemCrossEntropy(threshold=0.99, ignore_index=255, class_weights=torch.ones(3))
    assert torch.allclose(plain(logits, target), ones(logits, target))
    weights = torch.tensor([0.5, 1.0, 4.0])
    weighted = OhemCrossEntropy(threshold=0.99, ignore_index=255, class_weights=weights)
    per_pixel = torch.nn.functional.cross_entropy(logits, target, ignore_index=255,
                                                  reduction="none")
    valid = target != 255
    expected = (per_pixel * weights[target.clamp(max=2)])[valid].mean()
    assert torch.allclose(weighted(logits, target), expected)


def test_class_weights_come_from_the_training_split(two_streets, tmp_path):
    trainer = Trainer(_config(two_streets, tmp_path, class_weights="enet"), progress=False)
    weights = trainer.criterion.seg_ohem.class_weights
    counts = np.zeros(len(CAMVID.class_names))
    for i in range(len(trainer.train_set)):
        label = trainer.train_set.load_raw(i)[1]
        counts += np.bincount(label[label != CAMVID.ignore_index].ravel(),
                              minlength=len(counts))[:len(counts)]
    assert torch.allclose(weights, enet_class_weights(torch.from_numpy(counts)), atol=1e-6)
    assert trainer.criterion.ohem.class_weights is None  # the text loss stays unweighted


# ------------------------------------------------------------------------------ other light

def test_other_light_is_deterministic_per_seed_and_changes_the_colours(camvid_frames):
    image = camvid_frames(1)[0][1]
    label = np.zeros(image.shape[:2], dtype=np.int64)
    kwargs = dict(crop_size=image.shape[:2], scales=(1.0,), mean=(0.0, 0.0, 0.0),
                  std=(1.0, 1.0, 1.0), ignore_index=255, flip_prob=0.0)
    light = TrainTransform(**kwargs, photometric="light", light_prob=1.0, seed=3)
    again = TrainTransform(**kwargs, photometric="light", light_prob=1.0, seed=3)
    colour = TrainTransform(**kwargs, photometric="colour", seed=3)
    a, _ = light(image, label)
    assert torch.equal(a, again(image, label)[0])
    assert not torch.equal(a, colour(image, label)[0])
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    # Over many draws all three kinds appear: darker (dusk), bluer or redder, other gamma.
    means = []
    for seed in range(30):
        light.reseed(seed)
        means.append(light(image, label)[0].mean(dim=(1, 2)))
    means = torch.stack(means)
    assert float(means.mean(dim=1).min()) < 0.5 * float(torch.from_numpy(
        image.astype(np.float32) / 255.0).mean())


# ---------------------------------------------------------------------------- the report

def _entry(row: str, seed: int, heldout: float, val: float) -> dict:
    classes = {name: heldout for name in CAMVID.class_names}
    return {"row": row, "seed": seed, "heldout_miou": heldout, "val_miou": val,
            "heldout_per_class_iou": classes, "per_class_iou": classes, "iterations": 10,
            "wall_seconds": 60.0, "precision": "fp32", "cpu": {"model": "a CPU"}}


def test_the_study_ranks_candidates_by_the_held_out_street_and_says_where_val_disagrees():
    from textseg_training.recipe_study import study_report

    runs = [_entry("today", 0, 50.0, 60.0), _entry("today", 1, 52.0, 61.0),
            _entry("ema", 0, 53.0, 59.0), _entry("ema", 1, 55.0, 60.0),  # +3 held, -1 val
            _entry("lite2", 0, 51.0, 62.0), _entry("lite2", 1, 53.0, 63.0),  # +1, +2
            _entry("today_stage1", 0, 40.0, 45.0)]
    report = study_report(runs)
    ranked = [line for line in report.splitlines() if line.startswith("| 1 |")
              or line.startswith("| 2 |")]
    assert ranked[0].startswith("| 1 | ema | 2 | 3.00 ± 0.00 | 0: +3.00, 1: +3.00 | yes")
    assert ranked[0].endswith("| -1.00 ± 0.00 | **no** |")
    assert ranked[1].startswith("| 2 | lite2 |") and ranked[1].endswith("| yes |")
    assert "| today_stage1 | 0 | 40.00 | 45.00 | +5.00 |" in report
    assert "Spearman" in report and "over 3 rows" in report


def test_the_study_report_refuses_runs_without_a_held_out_street():
    from textseg_training.recipe_study import study_report

    entry = _entry("today", 0, 50.0, 60.0)
    del entry["heldout_miou"]
    with pytest.raises(ValueError, match="no held-out figures"):
        study_report([entry])


def _record_rows(path: str, prefix: str, count: int) -> None:
    from textseg_training.results import record_run
    for index in range(count):
        record_run(path, {"row": f"{prefix}{index}", "seed": 0, "val_miou": float(index)})


def test_runs_recording_side_by_side_into_one_file_keep_every_row(tmp_path):
    # the recipe study trains two candidates at once; each appends to the same results file
    import multiprocessing
    path = str(tmp_path / "results.json")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_record_rows, args=(path, prefix, 150))
               for prefix in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    rows = {run["row"] for run in json.loads(Path(path).read_text())["runs"]}
    assert rows == {f"{p}{i}" for p in "ab" for i in range(150)}
