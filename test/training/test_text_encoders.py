"""CLIP text encoder: refusal without weights, weight files in both formats, prompt splicing.

One random CLIP RN50 (weights rounded to fp16, so OpenAI's fp16 archive format is lossless)
is built per session and saved as an open_clip state dict and as an OpenAI-style TorchScript
archive; the encoders under test load those files at a short context length.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")
from torch import nn  # noqa: E402

from textseg_training.dataset_specs import CAMVID  # noqa: E402
from textseg_training.text import (  # noqa: E402
    ClipTextEncoder,
    PromptLearner,
    build_text_encoder,
    ensure_torchvision_importable,
    read_clip_state_dict,
)

CAMVID_NAMES = list(CAMVID.class_names)
# >= 16 = longest CamVid name ("bicyclist", 3 BPE tokens) + 11 prompts + SOT/EOT; short = fast.
CONTEXT = 20


def _open_clip():
    ensure_torchvision_importable()
    return pytest.importorskip("open_clip", reason="open_clip_torch not installed")


class _OpenAIArchive(nn.Module):
    """Holds a CLIP model's tensors under the names of OpenAI's RN50.pt state dict:
    text keys at top level, visual.*, logit_scale and the three int buffers OpenAI stores."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.logit_scale = clip.logit_scale
        # A small stand-in for the visual tower: only its keys matter (they must be ignored).
        self.visual = nn.Sequential(nn.Conv2d(3, 4, 3))
        self.register_buffer("input_resolution", torch.tensor(224))
        self.register_buffer("context_length", torch.tensor(77))
        self.register_buffer("vocab_size", torch.tensor(49408))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.token_embedding(ids)


@pytest.fixture(scope="session")
def clip_files(tmp_path_factory) -> dict:
    """The source model, its reference embeddings, and the two weight files."""
    open_clip = _open_clip()
    torch.manual_seed(0)
    clip = open_clip.create_model("RN50", pretrained=None, force_quick_gelu=True).eval()
    with torch.no_grad():
        for tensor in clip.parameters():
            tensor.copy_(tensor.half().float())  # exactly representable in OpenAI's fp16 files
        tokens = open_clip.get_tokenizer("RN50")(CAMVID_NAMES)
        reference = clip.encode_text(tokens)
    folder = tmp_path_factory.mktemp("clip_weights")

    state_path = folder / "open_clip_rn50.pt"
    text_only = {f"module.{k}": v for k, v in clip.state_dict().items() if "visual" not in k}
    torch.save({"epoch": 1, "state_dict": text_only}, state_path)  # training-checkpoint layout

    archive_path = folder / "RN50.pt"
    archive = _OpenAIArchive(clip).half().eval()
    torch.jit.trace(archive, torch.zeros(1, 77, dtype=torch.long)).save(str(archive_path))
    return {"reference": reference, "state": state_path, "archive": archive_path}


@pytest.fixture(scope="session")
def clip_encoder(clip_files) -> ClipTextEncoder:
    return ClipTextEncoder("RN50", weights=clip_files["state"], context_length=CONTEXT)


def test_torchvision_importable_and_idempotent():
    ensure_torchvision_importable()
    ensure_torchvision_importable()
    import torchvision

    assert torchvision.__version__
    assert hasattr(torch.ops.torchvision, "nms")  # declared by torchvision or by the workaround


def test_refuses_without_weights():
    with pytest.raises(ValueError, match="--clip-weights"):
        build_text_encoder("clip-rn50")


def test_unknown_encoder_name():
    with pytest.raises(ValueError, match="clip-rn50"):
        build_text_encoder("bert-huge")


def test_open_clip_state_dict_matches_source(clip_files, clip_encoder):
    embeddings = clip_encoder.encode(CAMVID_NAMES)
    assert embeddings.shape == (11, 1024) and embeddings.dtype == torch.float32
    assert not embeddings.requires_grad
    torch.testing.assert_close(embeddings, clip_files["reference"], rtol=1e-5, atol=1e-5)
    assert clip_encoder.pretrained and "text tensors from open_clip_rn50.pt" in (
        clip_encoder.load_report
    )


def test_openai_torchscript_archive_matches_source(clip_files, clip_encoder):
    encoder = ClipTextEncoder("RN50", weights=str(clip_files["archive"]), context_length=CONTEXT)
    torch.testing.assert_close(
        encoder.encode(CAMVID_NAMES), clip_files["reference"], rtol=1e-5, atol=1e-5
    )
    # Same weights from another file format: the identity is a content hash, so it agrees.
    assert encoder.identity == clip_encoder.identity
    assert encoder.load_report.endswith("ignored)") and "RN50.pt" in encoder.load_report


def test_archive_has_openai_layout(clip_files):
    state = read_clip_state_dict(clip_files["archive"])
    assert state["token_embedding.weight"].dtype == torch.float16
    for key in ("positional_embedding", "text_projection", "logit_scale", "input_resolution",
                "transformer.resblocks.11.mlp.c_proj.weight", "ln_final.bias", "visual.0.weight"):
        assert key in state


def test_identity_differs_for_other_weights(clip_encoder):
    random = build_text_encoder("clip-rn50", allow_random=True, context_length=CONTEXT)
    assert not random.pretrained
    assert random.identity != clip_encoder.identity
    assert random.identity.startswith("clip-rn50-random@")
    assert clip_encoder.identity.startswith("clip-rn50@")


def test_garbage_file_error_names_it(tmp_path):
    _open_clip()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="garbage.pt"):
        ClipTextEncoder(weights=garbage, context_length=CONTEXT)


def test_file_without_text_keys(tmp_path):
    _open_clip()
    path = tmp_path / "visual_only.pt"
    torch.save({"visual.conv1.weight": torch.zeros(2, 3, 3, 3)}, path)
    with pytest.raises(ValueError, match="visual_only.pt.*no CLIP text-tower keys"):
        ClipTextEncoder(weights=path, context_length=CONTEXT)


def test_shape_mismatch_names_file_and_key(clip_encoder, tmp_path):
    path = tmp_path / "wrong_shapes.pt"
    torch.save({key: torch.zeros(1) for key in clip_encoder.state_dict()}, path)
    with pytest.raises(ValueError, match="wrong_shapes.pt.*wrong shape"):
        ClipTextEncoder(weights=path, context_length=CONTEXT)


def test_missing_path_or_unknown_tag(tmp_path):
    _open_clip()
    with pytest.raises(FileNotFoundError, match="openai"):
        ClipTextEncoder(weights=tmp_path / "absent.pt")


def test_pretrained_tag_offline_error(monkeypatch):
    open_clip = _open_clip()

    def offline(*args, **kwargs):
        raise RuntimeError("Failed to download weights for tag 'openai'")

    monkeypatch.setattr(open_clip, "create_model", offline)
    with pytest.raises(RuntimeError, match="local file: --clip-weights PATH"):
        ClipTextEncoder(weights="openai")


def test_encoder_is_frozen_and_stays_eval(clip_encoder):
    assert all(not p.requires_grad for p in clip_encoder.parameters())
    clip_encoder.train()
    assert not clip_encoder.training
    assert all(not m.training for m in clip_encoder.modules())
    assert clip_encoder.width == 1024 and clip_encoder.token_width == 512
    assert clip_encoder.positional_embedding.shape == (CONTEXT, 512)


def test_context_too_short_is_a_clear_error(clip_encoder):
    with pytest.raises(ValueError, match="raise context_length"):
        PromptLearner(clip_encoder, ["a very long class name with many many words"], 11)


def test_phrase_prompts_reproduce_encode(clip_encoder):
    """Prompt vectors = token embeddings of "a photo of a" must give encode("a photo of a X"):
    proves the splice position and the EOT shift by M."""
    learner = PromptLearner.from_phrase(clip_encoder, CAMVID_NAMES, "a photo of a")
    assert learner.num_prompts == 4
    with torch.no_grad():
        spliced = learner()
    plain = clip_encoder.encode([f"a photo of a {name}" for name in CAMVID_NAMES])
    torch.testing.assert_close(spliced, plain, rtol=1e-5, atol=1e-5)
    # And the prompts matter: without them the output differs.
    assert (spliced - clip_encoder.encode(CAMVID_NAMES)).abs().max() > 1e-3


@pytest.mark.parametrize("num_prompts", [3, 11])
def test_gradient_reaches_prompts_only(clip_encoder, num_prompts):
    learner = PromptLearner(clip_encoder, CAMVID_NAMES, num_prompts=num_prompts)
    assert learner.prompts.shape == (11, num_prompts, 512)
    assert list(learner.state_dict()) == ["prompts"]
    assert [name for name, _ in learner.named_parameters()] == ["prompts"]
    out = learner()
    assert out.shape == (11, 1024)
    out.pow(2).sum().backward()
    assert learner.prompts.grad is not None and learner.prompts.grad.abs().sum() > 0
    assert all(p.grad is None for p in clip_encoder.parameters())
