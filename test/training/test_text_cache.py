"""Stage-1 embedding cache: computed once, keyed by encoder identity + class names, self-healing."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

torch = pytest.importorskip("torch", reason="torch not installed (runtime-only environment)")

from textseg_training.text import TextEncoder, cache_key, cache_path, class_embeddings  # noqa: E402


class CountingEncoder(TextEncoder):
    """A stand-in encoder: deterministic embeddings, counts how often it runs."""

    def __init__(self, identity: str = "fake@0123", width: int = 8) -> None:
        super().__init__()
        self.name, self.identity, self.width, self.token_width = "fake", identity, width, width
        self.pretrained = True
        self.calls = 0

    def encode(self, class_names: Sequence[str]) -> torch.Tensor:
        self.calls += 1
        seeds = torch.tensor([sum(map(ord, name)) for name in class_names], dtype=torch.float32)
        return seeds[:, None] * torch.arange(1, self.width + 1, dtype=torch.float32)


NAMES = ["sky", "road", "car"]


def test_second_call_uses_the_cache(tmp_path):
    tmp_path = tmp_path / "not" / "yet" / "there"  # created on first write
    encoder = CountingEncoder()
    first = class_embeddings(encoder, NAMES, tmp_path)
    second = class_embeddings(encoder, NAMES, tmp_path)
    assert encoder.calls == 1
    torch.testing.assert_close(first, second)
    assert second.dtype == torch.float32 and second.shape == (3, 8)
    assert cache_path(encoder, NAMES, tmp_path).is_file()
    assert [p.name for p in tmp_path.iterdir()] == [cache_path(encoder, NAMES, tmp_path).name]


def test_key_depends_on_names_order_and_identity(tmp_path):
    assert cache_key("a@1", NAMES) != cache_key("a@1", NAMES[:2])
    assert cache_key("a@1", NAMES) != cache_key("a@1", list(reversed(NAMES)))
    assert cache_key("a@1", NAMES) != cache_key("a@2", NAMES)
    encoder = CountingEncoder()
    class_embeddings(encoder, NAMES, tmp_path)
    other = class_embeddings(encoder, ["sky", "road"], tmp_path)
    assert encoder.calls == 2 and other.shape == (2, 8)
    class_embeddings(CountingEncoder(identity="fake@4567"), NAMES, tmp_path)
    assert len(list(tmp_path.iterdir())) == 3


@pytest.mark.parametrize("content", [b"", b"garbage, not a torch file", None])
def test_corrupt_or_foreign_file_is_recomputed(tmp_path, content):
    encoder = CountingEncoder()
    path = cache_path(encoder, NAMES, tmp_path)
    if content is None:  # a readable torch file whose key material does not match
        torch.save({"identity": "other", "class_names": NAMES, "embeddings": torch.zeros(3, 8)},
                   path)
    else:
        path.write_bytes(content)
    with pytest.warns(UserWarning, match="recomputing"):
        embeddings = class_embeddings(encoder, NAMES, tmp_path)
    assert encoder.calls == 1
    torch.testing.assert_close(embeddings, CountingEncoder().encode(NAMES))
    # The bad file was replaced: the next call is a clean cache hit.
    class_embeddings(encoder, NAMES, tmp_path)
    assert encoder.calls == 1
