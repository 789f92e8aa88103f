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

from textseg_training.datasets import CAMVID  # noqa: E402
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
                    text_encoder="minilm-l6-v2")
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
    trainer.fit()
    for key, value in _state(trainer.model, "backbone.").items():
        assert torch.equal(value, backbone_before[key]), f"{key} changed in stage 2"
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


def test_e2e_trains_prompts_and_backbone_together(tiny_dataset, tmp_path):
    pytest.importorskip("transformers", reason="MiniLM text encoder needs transformers")
    trainer = Trainer(_config(tiny_dataset, tmp_path, stage="e2e", num_prompts=2,
                              iterations=1), progress=False)
    backbone_before = _state(trainer.model, "backbone.features.0.conv")
    trainer.fit()
    assert any(not torch.equal(v, backbone_before[k])
               for k, v in _state(trainer.model, "backbone.features.0.conv").items())
    assert {g["name"] for g in trainer.optimizer.param_groups} >= {"prompts", "backbone_decay"}


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
    assert main(["eval", str(stage1_checkpoint), "--output", str(tmp_path / "eval"),
                 "--flip"]) == 0
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "mIoU" in report and "| 10 | bicyclist |" in report
    assert (tmp_path / "eval" / "confusion.png").stat().st_size > 1000


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
            "iterations=2", "batch_size=2", "warmup_iterations=1", "eval_interval=2",
            "checkpoint_interval=2", "num_workers=0", f"output_dir={out}"]
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
                 "--text-encoder", "minilm-l6-v2"]) == 0
    table = capsys.readouterr().out
    assert "| stage1 |" in table and "| stage1_label_size |" in table


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
