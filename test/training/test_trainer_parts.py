"""Trainer building blocks: config files, LR schedule, resumable sampling, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")

from textseg_training.trainer.checkpoint import (  # noqa: E402
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from textseg_training.trainer.config import TrainConfig  # noqa: E402
from textseg_training.trainer.sampling import ResumableSampler  # noqa: E402
from textseg_training.trainer.schedule import warmup_poly_factor  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parents[2] / "training" / "configs"


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_experiment_config_loads(path):
    config = TrainConfig.from_yaml(path)
    assert config.stage in path.stem or "_m" in path.stem or "prompt_wd" in path.stem, path
    if config.stage == "stage2":
        assert config.init_from and config.prompt_weight_decay in (0.0, 0.0005)


def test_prompt_weight_decay_ablation_is_at_the_papers_m8():
    wd = TrainConfig.from_yaml(CONFIG_DIR / "camvid_stdc1_stage2_prompt_wd.yaml")
    m8 = TrainConfig.from_yaml(CONFIG_DIR / "camvid_stdc1_stage2_m8.yaml")
    assert (wd.num_prompts, wd.prompt_weight_decay) == (8, 0.0005)
    assert (m8.num_prompts, m8.prompt_weight_decay) == (8, 0.0)


def test_text_loss_stride_auto_is_the_papers_loss_on_cuda():
    config = TrainConfig.from_yaml(CONFIG_DIR / "camvid_stdc1_stage1.yaml")
    assert config.text_loss_stride is None
    assert config.resolved_text_loss_stride("cuda") == 1
    assert config.resolved_text_loss_stride("cpu") == 8
    explicit = TrainConfig.from_yaml(CONFIG_DIR / "camvid_stdc1_stage1.yaml",
                                     ["text_loss_stride=4"])
    assert explicit.resolved_text_loss_stride("cuda") == 4


def test_distributed_validation_counts_every_image_once():
    from textseg_training.trainer.data_setup import build_val_loader
    from textseg_training.trainer.distributed import DistributedContext

    config = TrainConfig(num_workers=0)
    dataset = list(range(7))  # 7 images over 3 processes: no shard may be padded
    seen = []
    for rank in range(3):
        loader = build_val_loader(dataset, config, DistributedContext(rank=rank, world_size=3))
        seen += [int(batch) for batch in loader]
    assert sorted(seen) == list(range(7))


def test_paper_numbers_in_the_camvid_configs():
    stage2 = TrainConfig.from_yaml(CONFIG_DIR / "camvid_stdc1_stage2.yaml")
    assert (stage2.lr, stage2.head_lr_mult, stage2.batch_size) == (0.01, 10.0, 16)
    assert (stage2.iterations, stage2.warmup_iterations, stage2.num_prompts) == (10000, 200, 11)
    assert stage2.scales == tuple(0.5 + 0.25 * i for i in range(9))
    city = TrainConfig.from_yaml(CONFIG_DIR / "cityscapes_stdc1_stage1.yaml")
    assert (city.lr, city.batch_size, city.iterations, city.crop_size) == (
        0.005, 24, 160000, (512, 1024))


@pytest.mark.parametrize("override, message", [
    (["stage=stage3"], "stage 'stage3'"),
    (["stage=stage2", "init_from=null"], "stage2 needs init_from"),
    (["crop_size=[32, 32]"], "crop_size"),
    (["batch_size=0"], "batch_size must be >= 1"),
    (["batch_size=1"], "batch_size must be >= 2 (per process)"),
    (["text_loss_stride=0"], "text_loss_stride must be >= 1"),
    (["learning_rate=0.1"], "unknown keys ['learning_rate']"),
    (["iterations"], "must look like key=value"),
    (["precision=fp16"], "precision 'fp16' is not one of"),
])
def test_bad_config_is_refused_with_the_reason(override, message):
    with pytest.raises(ValueError) as info:
        TrainConfig.from_yaml(CONFIG_DIR / "camvid_stdc1_stage1.yaml", override)
    assert message in str(info.value)


def test_native_bf16_is_read_from_the_cpu_flags():
    from textseg_training.trainer.precision import cpu_has_native_bf16

    assert cpu_has_native_bf16("processor: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n")
    assert cpu_has_native_bf16("flags : fpu amx_bf16 amx_tile\n")
    assert not cpu_has_native_bf16("flags : fpu sse2 avx2 avx512f avx512bw\n")
    assert cpu_has_native_bf16("Features : fp asimd bf16 i8mm\n")  # Arm
    assert not cpu_has_native_bf16("Features : fp asimd\n")
    assert not cpu_has_native_bf16("")


def test_precision_auto_follows_the_device():
    import torch

    from textseg_training.trainer.precision import cpu_has_native_bf16, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu).name == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("auto", torch.device("cuda")).name == "amp"
    assert resolve_precision("amp", torch.device("cuda")).uses_grad_scaler
    bf16 = resolve_precision("bf16", cpu)
    assert bf16.autocast_dtype == torch.bfloat16 and not bf16.uses_grad_scaler
    assert resolve_precision("fp32", cpu).autocast_dtype is None
    with pytest.raises(ValueError, match="needs CUDA"):
        resolve_precision("amp", cpu)
    with bf16.autocast():  # the forward's matmuls run in bf16, the inputs stay fp32
        x = torch.ones(4, 4)
        assert (x @ x).dtype == torch.bfloat16 and x.dtype == torch.float32


def test_warmup_then_poly():
    start = 1e-5 / 0.01
    assert warmup_poly_factor(0, 1000, 100, start, 0.9) == pytest.approx(start)
    assert warmup_poly_factor(50, 1000, 100, start, 0.9) == pytest.approx(
        start + (1 - start) * 0.5)
    assert warmup_poly_factor(100, 1000, 100, start, 0.9) == pytest.approx(1.0)
    assert warmup_poly_factor(550, 1000, 100, start, 0.9) == pytest.approx(0.5 ** 0.9)
    assert warmup_poly_factor(1000, 1000, 100, start, 0.9) == 0.0


def test_sampler_resumes_exactly_and_ranks_split_batches():
    full = list(ResumableSampler(10, 3, 0, 8, seed=1))
    resumed = list(ResumableSampler(10, 3, 5, 8, seed=1))
    assert resumed == full[5 * 3:]
    # Every epoch is a permutation: the first 10 positions cover the dataset once.
    assert sorted(i for i, _ in full[:10]) == list(range(10))
    rank0 = list(ResumableSampler(10, 2, 0, 4, seed=1, rank=0, world_size=2))
    rank1 = list(ResumableSampler(10, 2, 0, 4, seed=1, rank=1, world_size=2))
    single = list(ResumableSampler(10, 4, 0, 4, seed=1))
    for it in range(4):
        assert rank0[2 * it:2 * it + 2] + rank1[2 * it:2 * it + 2] == single[4 * it:4 * it + 4]


def test_checkpoint_is_atomic_and_restores_rng(tmp_path):
    path = tmp_path / "run" / "last.pt"
    state = rng_state()
    expected = torch.rand(3)
    save_checkpoint(path, {"rng": state, "iteration": 7})
    restore_rng_state(load_checkpoint(path)["rng"])
    assert torch.equal(torch.rand(3), expected)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable textseg checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
