"""Short real training runs on a few CamVid frames: every stage, resume, DDP, export, eval.

The dataset is a custom-YAML dataset of symlinks to ../shared CamVid frames made in a temporary
folder (nothing is copied into the project); the network runs at 96x128 to stay fast.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")

from textseg_training.dataset_specs import CAMVID  # noqa: E402
from textseg_training.trainer.checkpoint import load_checkpoint  # noqa: E402
from textseg_training.trainer.config import TrainConfig  # noqa: E402
from textseg_training.trainer.loop import Trainer  # noqa: E402

TRAINING_DIR = Path(__file__).resolve().parents[2] / "training"


def _split(root: Path, camvid: Path, split: str, names: list[str], folder: str) -> Path:
    for kind, source in (("images", camvid / split), ("labels", camvid / f"{split}annot")):
        (root / folder / kind).mkdir(parents=True)
        for name in names:
            (root / folder / kind / name).symlink_to(source / name)
    palette = [list(c) for c in CAMVID.palette]
    yaml_path = root / f"{folder}.yaml"
    yaml_path.write_text(
        f"name: tiny_camvid\nimages: {folder}/images\nlabels: {folder}/labels\n"
        f"class_names: {list(CAMVID.class_names)}\npalette: {palette}\n"
        f"ignore_index: {CAMVID.ignore_index}\nnetwork_input_size: [96, 128]\n")
    return yaml_path


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory, camvid_dir) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tiny_camvid")
    train = sorted(p.name for p in (camvid_dir / "train").glob("*.png"))[:6]
    val = sorted(p.name for p in (camvid_dir / "val").glob("*.png"))[:2]
    return (_split(root, camvid_dir, "train", train, "train"),
            _split(root, camvid_dir, "val", val, "val"))


def _config(tiny_dataset, out: Path, **overrides) -> TrainConfig:
    train_yaml, val_yaml = tiny_dataset
    settings = dict(stage="baseline", dataset=str(train_yaml), val_dataset=str(val_yaml),
                    crop_size=(96, 128), scales=(0.75, 1.0), iterations=2, batch_size=2,
                    warmup_iterations=1, eval_interval=100, checkpoint_interval=1,
                    log_interval=1, num_workers=0, output_dir=str(out),
                    text_encoder="minilm-l6-v2", allow_random_backbone=True)
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def stage1_checkpoint(tiny_dataset, tmp_path_factory) -> Path:
    pytest.importorskip("transformers", reason="MiniLM text encoder needs transformers")
    out = tmp_path_factory.mktemp("stage1")
    Trainer(_config(tiny_dataset, out, stage="stage1"), progress=False).fit()
    return out / "last.pt"


def _state(module: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if k.startswith(prefix)}


def test_stage1_checkpoint_carries_everything_to_export(stage1_checkpoint):
    data = load_checkpoint(stage1_checkpoint)
    assert data["model_config"]["text_width"] == 384  # MiniLM width -> TGM with projection
    assert data["text_encoder"].startswith("minilm-l6-v2@")
    assert data["class_names"] == list(CAMVID.class_names)
    assert data["iteration"] == 2 and data["config"]["stage"] == "stage1"
    assert data["model"]["tgm.text_embeddings"].shape == (11, 384)


def test_stage2_leaves_the_backbone_bit_identical_and_learns_prompts(
        tiny_dataset, stage1_checkpoint, tmp_path):
    config = _config(tiny_dataset, tmp_path, stage="stage2", init_from=str(stage1_checkpoint),
                     iterations=2, num_prompts=4)
    trainer = Trainer(config, progress=False)
    backbone_before = _state(trainer.model, "backbone.")
    head_before = _state(trainer.model, "conv_out.")
    prompts_before = trainer.prompt_learner.prompts.detach().clone()
    assert any("running_mean" in k for k in backbone_before)
    detail_before = _state(trainer.model, "detail_head.")
    trainer.fit()
    for key, value in _state(trainer.model, "backbone.").items():
        assert torch.equal(value, backbone_before[key]), f"{key} changed in stage 2"
    # The detail head reads only the frozen backbone and is not exported: frozen, not run.
    for key, value in _state(trainer.model, "detail_head.").items():
        assert torch.equal(value, detail_before[key]), f"{key} changed in stage 2"
    assert trainer.criterion.w_detail == 0.0
    assert "detail" not in trainer.model.train()(torch.randn(2, 3, 96, 128),
                                                 text_embeddings=trainer.text_embeddings())
    assert not torch.equal(trainer.prompt_learner.prompts.detach(), prompts_before)
    assert any(not torch.equal(v, head_before[k])
               for k, v in _state(trainer.model, "conv_out.").items())
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert groups["prompts"]["weight_decay"] == 0.0
    assert not any(name.startswith("backbone") for name in groups)
    # The exported constant is the prompts' final output, not the stage-1 embeddings.
    final = load_checkpoint(tmp_path / "last.pt")["model"]["tgm.text_embeddings"]
    first = load_checkpoint(stage1_checkpoint)["model"]["tgm.text_embeddings"]
    assert not torch.equal(final, first)


@pytest.fixture(scope="module")
def stage1_on_initial_prompts(tiny_dataset, tmp_path_factory):
    """Stage 1 trained on the embeddings stage 2's prompts start from (M = 4, seed 0), with
    its final evaluation."""
    pytest.importorskip("transformers", reason="MiniLM text encoder needs transformers")
    out = tmp_path_factory.mktemp("stage1_initial_prompts")
    trainer = Trainer(_config(tiny_dataset, out, stage="stage1", stage1_text="initial_prompts",
                              num_prompts=4), progress=False)
    trainer.fit()
    return out / "last.pt", trainer.evaluate()


def _stage2(tiny_dataset, checkpoint, out, **overrides):
    return Trainer(_config(tiny_dataset, out, stage="stage2", init_from=str(checkpoint),
                           iterations=2, num_prompts=4, **overrides), progress=False)


def test_prompts_only_stage2_at_iteration_0_is_stage1_exactly(tiny_dataset,
                                                              stage1_on_initial_prompts,
                                                              tmp_path):
    checkpoint, stage1_eval = stage1_on_initial_prompts
    trainer = _stage2(tiny_dataset, checkpoint, tmp_path, stage2_trains="prompts")
    embeddings = trainer.model.tgm.text_embeddings.clone()
    with torch.no_grad():
        assert torch.equal(trainer.prompt_learner().float().cpu(), embeddings.cpu())
    at_start = trainer.evaluate()
    assert at_start.miou == stage1_eval.miou
    assert (at_start.confusion == stage1_eval.confusion).all()


@pytest.mark.parametrize(("trains", "frozen", "learning"), [
    ("heads", ("backbone.", "detail_head.", "tgm.proj."), ("conv_out.",)),
    ("prompts", ("",), ()),  # every tensor of the model, BN statistics included
    ("heads+projection", ("backbone.", "detail_head."), ("conv_out.", "tgm.proj.")),
])
def test_stage2_changes_only_what_it_trains(tiny_dataset, stage1_on_initial_prompts, tmp_path,
                                            trains, frozen, learning):
    checkpoint, _ = stage1_on_initial_prompts
    trainer = _stage2(tiny_dataset, checkpoint, tmp_path, stage2_trains=trains)
    before = _state(trainer.model)
    prompts_before = trainer.prompt_learner.prompts.detach().clone()
    trainer.fit()
    after = _state(trainer.model)
    for prefix in frozen:
        changed = [k for k in before if k.startswith(prefix) and
                   not k.endswith("text_embeddings") and not torch.equal(before[k], after[k])]
        assert not changed, f"stage2_trains {trains}: {changed[:3]} changed"
    for prefix in learning:
        assert any(not torch.equal(before[k], after[k]) for k in before
                   if k.startswith(prefix)), f"stage2_trains {trains}: {prefix} did not learn"
    # The loss reaches the prompts whatever else is frozen.
    assert not torch.equal(trainer.prompt_learner.prompts.detach(), prompts_before)


def test_frozen_prompts_stay_at_their_initial_values_while_the_head_trains(
        tiny_dataset, stage1_checkpoint, tmp_path):
    """prompt_lr_mult 0: the control that tells prompt learning from stage 2's extra head
    training (the same stage 2, prompts kept at their initial values)."""
    config = _config(tiny_dataset, tmp_path, stage="stage2", init_from=str(stage1_checkpoint),
                     iterations=2, num_prompts=4, prompt_lr_mult=0.0)
    trainer = Trainer(config, progress=False)
    prompts_before = trainer.prompt_learner.prompts.detach().clone()
    head_before = _state(trainer.model, "conv_out.")
    trainer.fit()
    assert torch.equal(trainer.prompt_learner.prompts.detach(), prompts_before)
    assert any(not torch.equal(v, head_before[k])
               for k, v in _state(trainer.model, "conv_out.").items())
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert groups["prompts"]["initial_lr"] == 0.0
    with pytest.raises(ValueError, match="prompt_lr_mult must be >= 0"):
        _config(tiny_dataset, tmp_path, stage="stage2", init_from=str(stage1_checkpoint),
                prompt_lr_mult=-1.0)


def test_stage2_refuses_a_stage1_checkpoint_of_another_text_encoder(
        tiny_dataset, stage1_checkpoint, tmp_path):
    from textseg_training.trainer.checkpoint import save_checkpoint

    data = load_checkpoint(stage1_checkpoint)
    data["text_encoder"] = "clip-rn50@0123456789abcdef"
    foreign = save_checkpoint(tmp_path / "foreign_stage1.pt", data)
    config = _config(tiny_dataset, tmp_path, stage="stage2", init_from=str(foreign))
    with pytest.raises(ValueError, match=r"clip-rn50@0123456789abcdef.*minilm-l6-v2@"):
        Trainer(config, progress=False)


@pytest.mark.parametrize("fusion", ["tgm", "bridge"])
def test_e2e_trains_prompts_and_backbone_together(tiny_dataset, tmp_path, fusion):
    pytest.importorskip("transformers", reason="MiniLM text encoder needs transformers")
    trainer = Trainer(_config(tiny_dataset, tmp_path, stage="e2e", num_prompts=2,
                              iterations=1, text_fusion=fusion), progress=False)
    prompts_before = trainer.prompt_learner.prompts.detach().clone()
    backbone_before = _state(trainer.model, "backbone.features.0.conv")
    trainer.fit()
    assert any(not torch.equal(v, backbone_before[k])
               for k, v in _state(trainer.model, "backbone.features.0.conv").items())
    assert {g["name"] for g in trainer.optimizer.param_groups} >= {"prompts", "backbone_decay"}
    assert not torch.equal(trainer.prompt_learner.prompts.detach(), prompts_before)
    assert load_checkpoint(tmp_path / "last.pt")["model_config"]["text_fusion"] == fusion


def test_resume_restores_the_run_exactly(tiny_dataset, tmp_path):
    straight = Trainer(_config(tiny_dataset, tmp_path / "a", iterations=4), progress=False)
    straight.fit()
    first = Trainer(_config(tiny_dataset, tmp_path / "b", iterations=4), progress=False)
    first.config.iterations = 2  # stop half way, as an interrupted run would
    first.scheduler = None  # not used again
    resumed_from = tmp_path / "half.pt"
    half = Trainer(_config(tiny_dataset, tmp_path / "b", iterations=4), progress=False)
    loader = iter(half._loader())
    for _ in range(2):
        half.train_step(*next(loader))
    half.save(resumed_from)
    resumed = Trainer(_config(tiny_dataset, tmp_path / "b", iterations=4),
                      resume=resumed_from, progress=False)
    assert resumed.iteration == 2
    resumed.fit()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert resumed.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"]


def test_a_checkpoint_without_loss_scaling_resumes_under_an_enabled_grad_scaler(
        tiny_dataset, tmp_path):
    """A CPU (or bf16 / fp32) checkpoint holds an empty GradScaler state; resuming it where
    loss scaling is on (CUDA AMP) must not fail on it. An enabled CPU GradScaler raises on an
    empty state exactly like the CUDA one, so the case is tested here without a GPU."""
    first = Trainer(_config(tiny_dataset, tmp_path, iterations=1), progress=False)
    first.fit()
    assert load_checkpoint(tmp_path / "last.pt")["scaler"] == {}
    with pytest.raises(RuntimeError, match="empty"):
        torch.amp.GradScaler("cpu", enabled=True).load_state_dict({})
    again = Trainer(_config(tiny_dataset, tmp_path, iterations=2), progress=False)
    again.scaler = torch.amp.GradScaler("cpu", enabled=True)
    again._resume(tmp_path / "last.pt")
    assert again.iteration == 1 and again.scaler.is_enabled()


def test_resuming_a_finished_run_only_evaluates(tiny_dataset, tmp_path):
    first = Trainer(_config(tiny_dataset, tmp_path, iterations=2), progress=False)
    first.fit()
    assert load_checkpoint(tmp_path / "last.pt")["train_seconds"] > 0
    weights = _state(first.model)
    trained_for = load_checkpoint(tmp_path / "last.pt")["train_seconds"]
    again = Trainer(_config(tiny_dataset, tmp_path, iterations=2),
                    resume=tmp_path / "last.pt", progress=False)
    result = again.fit()
    assert result.iterations == 2 and result.final_eval is not None
    # Re-evaluating is not training: the recorded wall time is the run's, not grown by it.
    assert result.wall_seconds == pytest.approx(trained_for)
    for key, value in _state(again.model).items():
        assert torch.equal(value, weights[key]), key


def test_clip_without_weights_refuses_to_train(tiny_dataset, tmp_path):
    from textseg_training.text import ensure_torchvision_importable

    ensure_torchvision_importable()  # open_clip imports torchvision
    pytest.importorskip("open_clip", reason="open_clip_torch not installed")
    with pytest.raises(Exception, match="--clip-weights"):
        Trainer(_config(tiny_dataset, tmp_path, stage="stage1", text_encoder="clip-rn50"),
                progress=False)


def test_export_and_eval_of_a_trained_checkpoint(stage1_checkpoint, tmp_path, camvid_frames):
    from textseg.engine import load_backend
    from textseg_training.cli import main

    onnx_path = tmp_path / "stage1.onnx"
    assert main(["export", "--checkpoint", str(stage1_checkpoint), "--output",
                 str(onnx_path)]) == 0
    backend = load_backend(onnx_path)
    assert backend.info.text_encoder.startswith("minilm-l6-v2@")
    assert backend.info.training_stage == "stage1@2"
    assert backend.info.architecture == "stdc1-seg+tgm"
    (_, rgb), = camvid_frames(1)
    assert backend.infer(rgb).labels.shape == rgb.shape[:2]
    # TensorRT's parser rules: the uint8 image is only ever read by a Cast, and the uint8
    # labels are cast from a float tensor (never from ArgMax's int64).
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    producers = {out: node for node in graph.node for out in node.output}
    assert {n.op_type for n in graph.node if "image" in n.input} == {"Cast"}
    labels_cast = producers["labels"]
    assert labels_cast.op_type == "Cast"
    assert producers[labels_cast.input[0]].op_type == "Cast"  # ArgMax -> float -> uint8
    assert main(["eval", str(stage1_checkpoint), "--output", str(tmp_path / "eval"),
                 "--flip"]) == 0
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "mIoU" in report and "| 10 | bicyclist |" in report
    assert (tmp_path / "eval" / "confusion.png").stat().st_size > 1000


def test_export_evaluates_the_artifact_and_embeds_the_figures(stage1_checkpoint, tmp_path,
                                                             tiny_dataset):
    """The embedded figures are those of the shipped graph, checked by an independent count."""
    import json

    import cv2
    import numpy as np
    import yaml

    from textseg.engine import load_backend
    from textseg_training.export import export_checkpoint

    path = tmp_path / "evaluated.onnx"
    report = export_checkpoint(stage1_checkpoint, path, confidence=True, evaluate=True,
                               metadata={"reproduce": "textseg-train train X"})
    backend = load_backend(path)
    embedded = json.loads(backend.info.extra["evaluation"])
    assert embedded == report.evaluation
    assert backend.info.extra["reproduce"] == "textseg-train train X"
    assert backend.info.eval_miou == embedded["miou"]
    assert json.loads(backend.info.extra["training_config"])["stage"] == "stage1"
    # Independent count over the val frames of the tiny dataset (numpy, not ConfusionMatrix).
    val_yaml = Path(tiny_dataset[1])
    folder = val_yaml.parent / yaml.safe_load(val_yaml.read_text())["images"]
    inter = np.zeros(11)
    union = np.zeros(11)
    for image_path in sorted(folder.iterdir()):
        rgb = cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB)
        truth = cv2.imread(str(folder.parent / "labels" / image_path.name), cv2.IMREAD_UNCHANGED)
        pred = backend.infer(rgb).labels
        valid = truth != CAMVID.ignore_index
        for k in range(11):
            p, t = (pred == k) & valid, (truth == k) & valid
            inter[k] += (p & t).sum()
            union[k] += (p | t).sum()
    seen = union > 0
    assert embedded["frames"] == 2
    assert embedded["miou"] == pytest.approx(100 * (inter[seen] / union[seen]).mean(), abs=0.01)


def test_ddp_with_two_gloo_processes(tiny_dataset, tmp_path):
    """torchrun with 2 CPU processes (gloo): both ranks train, rank 0 writes the checkpoint."""
    train_yaml, val_yaml = tiny_dataset
    out = tmp_path / "ddp"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE"))}
    env.update(OMP_NUM_THREADS="1")
    with socket.socket() as probe:  # a free port on loopback for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sets = [f"dataset={train_yaml}", f"val_dataset={val_yaml}", "crop_size=[96,128]",
            "iterations=2", "batch_size=4", "warmup_iterations=1", "eval_interval=2",
            "checkpoint_interval=2", "num_workers=0", f"output_dir={out}",
            "allow_random_backbone=true"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={port}",
           "-m", "textseg_training.cli", "train",
           str(TRAINING_DIR / "configs" / "camvid_stdc1_baseline.yaml")]
    for item in sets:
        cmd += ["--set", item]
    # Own process group: on a hang, the launcher and both workers are stopped together.
    launcher = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
    try:
        stdout, stderr = launcher.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        stdout, stderr = launcher.communicate()
    assert launcher.returncode == 0, stdout[-2000:] + stderr[-3000:]
    data = load_checkpoint(out / "last.pt")
    assert data["iteration"] == 2
    assert (out / "metrics.csv").is_file()


def test_cli_params_check_data_and_bench(tiny_dataset, capsys):
    from textseg_training.cli import main

    assert main(["params", "--backbones", "stdc1", "--input-size", "512", "1024"]) == 0
    table = capsys.readouterr().out
    assert "8,275,104" in table and "8,299,424" in table  # baseline and + TGM (K=19)
    train_yaml, val_yaml = tiny_dataset
    config = TRAINING_DIR / "configs" / "camvid_stdc1_baseline.yaml"
    assert main(["check-data", str(config), "--set", f"dataset={train_yaml}",
                 "--set", f"val_dataset={val_yaml}"]) == 0
    assert "train:" in capsys.readouterr().out
    assert main(["bench", "--steps", "1", "--rounds", "2", "--batch", "2", "--input-size",
                 "64", "96", "--stages", "baseline", "stage1", "stage1_label_size",
                 "--text-encoder", "minilm-l6-v2", "--modes", "fp32", "bf16-cl"]) == 0
    table = capsys.readouterr().out
    assert "| stage1 | fp32 |" in table and "| stage1_label_size | bf16-cl |" in table
    assert "| baseline | fp32 | " in table and "| 1.00x |" in table  # fp32 against itself


def test_batch_size_is_global_and_must_split_over_the_processes(tiny_dataset, tmp_path,
                                                                 monkeypatch):
    from textseg_training.trainer import loop
    from textseg_training.trainer.distributed import DistributedContext

    monkeypatch.setattr(loop, "setup_distributed",
                        lambda device: DistributedContext(rank=0, world_size=3))
    with pytest.raises(ValueError, match="global batch.*3 processes"):
        Trainer(_config(tiny_dataset, tmp_path, batch_size=4), progress=False)


def test_stdc_without_imagenet_weights_is_refused_naming_the_file(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match=r"STDCNet813M_73\.91\.tar.*allow_random_backbone"):
        Trainer(_config(tiny_dataset, tmp_path, allow_random_backbone=False), progress=False)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_step_precision_keeps_weights_statistics_and_optimizer_in_fp32(
        tiny_dataset, tmp_path, precision):
    trainer = Trainer(_config(tiny_dataset, tmp_path, precision=precision, iterations=2),
                      progress=False)
    assert trainer.precision.name == precision
    images, labels = next(iter(trainer._loader()))
    values = trainer.train_step(images, labels)
    assert all(v == v for v in values.values())  # finite numbers, no NaN
    state = trainer.model.state_dict()
    assert {v.dtype for k, v in state.items() if v.is_floating_point()} == {torch.float32}
    assert any("running_mean" in k and v.abs().sum() > 0 for k, v in state.items())
    momenta = [s["momentum_buffer"] for s in trainer.optimizer.state.values()]
    assert momenta and {m.dtype for m in momenta} == {torch.float32}
    conv = trainer.model.backbone.features[0].conv.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)  # channels_last by default


def test_bf16_and_fp32_runs_see_the_same_batches(tiny_dataset, tmp_path):
    """Same seed, same batches: the precision comparison changes nothing but the arithmetic."""
    batches = []
    for precision in ("fp32", "bf16"):
        trainer = Trainer(_config(tiny_dataset, tmp_path / precision, precision=precision),
                          progress=False)
        batches.append([(i.clone(), lab.clone()) for i, lab in trainer._loader()])
    assert len(batches[0]) == len(batches[1]) == 2
    for (a_img, a_lab), (b_img, b_lab) in zip(*batches, strict=True):
        assert torch.equal(a_img, b_img) and torch.equal(a_lab, b_lab)


def test_train_command_records_its_result(tiny_dataset, tmp_path, capsys):
    import json

    from textseg_training.cli import main

    train_yaml, val_yaml = tiny_dataset
    results = tmp_path / "results.json"
    common = ["train", str(TRAINING_DIR / "configs" / "camvid_stdc1_baseline.yaml"),
              "--set", f"dataset={train_yaml}", "--set", f"val_dataset={val_yaml}",
              "--set", "crop_size=[96,128]", "--set", "iterations=1", "--set", "batch_size=2",
              "--set", "warmup_iterations=0", "--set", "num_workers=0",
              "--set", "allow_random_backbone=true", "--set", "precision=fp32",
              "--results", str(results), "--row", "baseline"]
    for seed in (0, 1, 1):  # seed 1 twice: the second replaces the first
        assert main([*common, "--set", f"seed={seed}",
                     "--set", f"output_dir={tmp_path / str(seed)}"]) == 0
    runs = json.loads(results.read_text())["runs"]
    assert [(r["row"], r["seed"]) for r in runs] == [("baseline", 0), ("baseline", 1)]
    entry = runs[1]
    assert set(entry["per_class_iou"]) == set(CAMVID.class_names)
    assert 0.0 <= entry["val_miou"] <= 100.0 and entry["iterations"] == 1
    assert entry["precision"] == "fp32" and "seed=1" in entry["overrides"]
    assert entry["config"]["seed"] == 1 and entry["wall_seconds"] > 0
    assert "recorded row 'baseline' seed 1" in capsys.readouterr().out
    assert main(common[:-2] + ["--set", f"output_dir={tmp_path / 'x'}"]) == 2
    assert "--results needs --row" in capsys.readouterr().err


def test_train_command_rejects_a_bad_backbone_checkpoint(tiny_dataset, tmp_path, capsys):
    from textseg_training.cli import main

    bad = tmp_path / "STDCNet813M_73.91.tar"
    bad.write_bytes(b"garbage")
    train_yaml, val_yaml = tiny_dataset
    code = main(["train", str(TRAINING_DIR / "configs" / "camvid_stdc1_baseline.yaml"),
                 "--backbone-weights", str(bad), "--set", f"dataset={train_yaml}",
                 "--set", f"val_dataset={val_yaml}", "--set", f"output_dir={tmp_path}"])
    assert code == 2
    assert str(bad) in capsys.readouterr().err


def test_random_encoder_control_draws_the_same_encoder_again_for_stage2(tiny_dataset, tmp_path):
    pytest.importorskip("transformers", reason="MiniLM text encoder needs transformers")
    stage1 = Trainer(_config(tiny_dataset, tmp_path / "s1", stage="stage1", seed=3,
                             text_control="random_encoder", iterations=1), progress=False)
    assert stage1.text_identity.startswith("minilm-l6-v2-random@")
    pretrained = Trainer(_config(tiny_dataset, tmp_path / "p", stage="stage1"), progress=False)
    assert not torch.allclose(stage1.model.tgm.text_embeddings,
                              pretrained.model.tgm.text_embeddings)
    stage1.fit()
    # Same seed: the same random encoder, so stage 2 accepts the checkpoint ...
    stage2 = Trainer(_config(tiny_dataset, tmp_path / "s2", stage="stage2", seed=3,
                             text_control="random_encoder", num_prompts=2,
                             init_from=str(tmp_path / "s1" / "last.pt")), progress=False)
    assert stage2.text_identity == stage1.text_identity
    # ... while another seed draws another encoder, and the pretrained one is refused too.
    for other in (dict(seed=4, text_control="random_encoder"), dict(seed=3)):
        with pytest.raises(ValueError, match="trained with text encoder minilm-l6-v2-random@"):
            Trainer(_config(tiny_dataset, tmp_path / "bad", stage="stage2", num_prompts=2,
                            init_from=str(tmp_path / "s1" / "last.pt"), **other),
                    progress=False)


def test_random_embeddings_control_is_fixed_unit_vectors_of_the_encoder_width(
        tiny_dataset, tmp_path):
    pytest.importorskip("transformers", reason="MiniLM text encoder needs transformers")
    first, again, other = (
        Trainer(_config(tiny_dataset, tmp_path / str(seed), stage="stage1", seed=seed,
                        text_control="random_embeddings"), progress=False)
        for seed in (5, 5, 6))
    embeddings = first.model.tgm.text_embeddings
    assert embeddings.shape == (11, 384)
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(11), atol=1e-5)
    assert torch.equal(embeddings, again.model.tgm.text_embeddings)
    assert not torch.equal(embeddings, other.model.tgm.text_embeddings)
    assert first.text_identity == "random-embeddings-384@seed5"


def test_permuted_embeddings_control_gives_each_class_another_class_embedding(
        tiny_dataset, tmp_path):
    pytest.importorskip("transformers", reason="MiniLM text encoder needs transformers")
    from textseg_training.text import fixed_derangement

    order = fixed_derangement(11)
    assert sorted(order) == list(range(11))
    assert all(source != k for k, source in enumerate(order))  # nothing keeps its own
    assert fixed_derangement(11) == order  # one derangement for every run
    right, wrong, other_seed = (
        Trainer(_config(tiny_dataset, tmp_path / name, stage="stage1", seed=seed, **control),
                progress=False)
        for name, seed, control in (("right", 0, {}),
                                    ("wrong", 0, dict(text_control="permuted_embeddings")),
                                    ("seed1", 1, dict(text_control="permuted_embeddings"))))
    embeddings = right.model.tgm.text_embeddings
    permuted = wrong.model.tgm.text_embeddings
    assert torch.equal(permuted, embeddings[order])  # the same vectors, the geometry kept
    assert not torch.equal(permuted, embeddings)
    assert torch.equal(other_seed.model.tgm.text_embeddings, permuted)
    assert wrong.text_identity == f"{right.text_identity}+derangement{order}"


@pytest.mark.parametrize("settings, message", [
    (dict(stage="stage2", init_from="x.pt", text_control="random_embeddings"),
     "no prompts to tune"),
    (dict(stage="stage2", init_from="x.pt", text_control="permuted_embeddings"),
     "no prompts to tune"),
    (dict(stage="stage1", stage1_text="initial_prompts", text_control="permuted_embeddings"),
     "runs prompts through the encoder"),
    (dict(stage="baseline", text_control="random_encoder"), "needs a text stage"),
    (dict(stage="stage1", text_control="random"), "is not one of"),
])
def test_text_control_misuse_is_refused_by_name(tiny_dataset, tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        _config(tiny_dataset, tmp_path, **settings)


def test_prompt_report_measures_how_far_the_prompts_moved(tiny_dataset,
                                                          stage1_on_initial_prompts, tmp_path):
    from textseg_training.prompt_report import movement_table, prompt_movement

    checkpoint, _ = stage1_on_initial_prompts
    moved = _stage2(tiny_dataset, checkpoint, tmp_path / "moved", prompt_lr_mult=50.0)
    moved.fit()
    kept = _stage2(tiny_dataset, checkpoint, tmp_path / "kept", prompt_lr_mult=0.0)
    kept.fit()
    report = prompt_movement(tmp_path / "moved" / "last.pt")
    still = prompt_movement(tmp_path / "kept" / "last.pt")
    assert still["prompt_relative_change"] == 0.0 and still["embedding_cosine_min"] == 1.0
    assert report["prompt_relative_change"] > 0.0 and report["embedding_cosine_min"] < 1.0
    assert report["prompt_std_initial"] == still["prompt_std_initial"]  # the same seeded draw
    assert report["text_loss_last20"] is not None
    assert "| moved | 50 | 2 |" in movement_table([report])
    with pytest.raises(ValueError, match="has no prompts"):
        prompt_movement(checkpoint)


def test_stage2_records_the_score_map_alone_and_how_far_the_prompts_moved(
        tiny_dataset, stage1_on_initial_prompts, tmp_path, capsys):
    import json

    from textseg_training.cli import main
    from textseg_training.evaluation import ConfusionMatrix
    from textseg_training.trainer.data_setup import build_val_loader

    checkpoint, _ = stage1_on_initial_prompts
    trainer = _stage2(tiny_dataset, checkpoint, tmp_path / "s2", stage2_trains="prompts")
    result = trainer.evaluate()
    score = result.outputs["score"]  # argmax of the K cosine channels, upsampled to the label
    # Scored by hand from the model's own cosine map on the val frames.
    manual = ConfusionMatrix(11, trainer.spec.ignore_index)
    for images, labels in build_val_loader(trainer.val_set, trainer.config, trainer.dist):
        with torch.no_grad():
            cosine = trainer.model(images)["score"]
        cosine = torch.nn.functional.interpolate(cosine, size=labels.shape[-2:],
                                                 mode="bilinear", align_corners=False)
        manual.update(cosine.argmax(1), labels)
    assert (score.confusion == manual.matrix).all()
    assert score.miou != result.miou or not (score.confusion == result.confusion).all()

    train_yaml, val_yaml = tiny_dataset
    results = tmp_path / "results.json"
    assert main(["train", str(TRAINING_DIR / "configs" / "cpu_protocol" / "stage2.yaml"),
                 "--set", f"init_from={checkpoint}", "--set", f"dataset={train_yaml}",
                 "--set", f"backbone={trainer.config.backbone}",
                 "--set", f"val_dataset={val_yaml}", "--set", "crop_size=[96,128]",
                 "--set", "scales=[1.0]", "--set", "iterations=2", "--set", "batch_size=2",
                 "--set", "warmup_iterations=0", "--set", "num_workers=0",
                 "--set", "num_prompts=4", "--set", "stage2_trains=heads",
                 "--set", "prompt_lr_mult=50", "--set", "allow_random_backbone=true",
                 "--set", "precision=fp32", "--set", f"output_dir={tmp_path / 'cli'}",
                 "--results", str(results), "--row", "stage2_prompts"]) == 0
    entry = json.loads(results.read_text())["runs"][0]
    assert 0.0 <= entry["score_map_miou"] <= 100.0
    prompts = entry["prompts"]
    assert prompts["prompt_relative_change"] > 0.0
    assert set(prompts["embedding_cosine_per_class"]) == set(CAMVID.class_names)
    assert min(prompts["embedding_cosine_per_class"].values()) == \
        prompts["embedding_cosine_min"]
    assert "score map alone" in capsys.readouterr().out


def test_export_with_confidence_embeds_the_health_reference_of_training_frames(
        stage1_checkpoint, tmp_path):
    """The node's health signal compares live frames with what the shipped graph gave on the
    run's training frames (textseg.health)."""
    from textseg.engine import load_backend
    from textseg.health import read_health_reference
    from textseg_training.export import export_checkpoint

    with_confidence = tmp_path / "health.onnx"
    export_checkpoint(stage1_checkpoint, with_confidence, confidence=True)
    info = load_backend(with_confidence).info
    reference = read_health_reference(info.extra, info.num_classes)
    assert reference is not None and reference.source.endswith("training frames")
    assert 1 <= reference.frames <= 40
    assert sum(reference.class_share) == pytest.approx(1.0, abs=1e-4)
    assert 0.0 < reference.mean_confidence <= 1.0 and reference.sharpness > 0
    labels_only = tmp_path / "labels.onnx"
    export_checkpoint(stage1_checkpoint, labels_only, confidence=False)
    assert "health_reference" not in load_backend(labels_only).info.extra
