"""The toy scale's retrieval language as a corpus: word-level tokens, documents that fill a
sequence exactly, the same bytes from the same seed."""

from __future__ import annotations

import pytest

from olmpool import OlmPoolError
from olmpool.train.config import TinyCorpusConfig

SMALL = dict(language="mqar", pretrain_tokens=20_000, short_tokens=4_000, long_tokens=8_192,
             mqar=dict(alternation_tokens=4_000))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from olmpool.train.tiny_corpus import build_tiny_corpus

    out = tmp_path_factory.mktemp("mqar") / "data"
    return out, build_tiny_corpus(TinyCorpusConfig(**SMALL), 98, out)


def test_documents_fill_their_length_and_samples_hold_one_document(corpus):
    from olmpool.train.config import BlendEntry
    from olmpool.train.data import build_blend
    from olmpool.train.tokenizer import load_tokenizer

    out, manifest = corpus
    tok = load_tokenizer(out / "tokenizer")
    assert tok.vocab_size == 98  # 2 special + 16 filler + 64 keys + 16 values
    for split, length in (("pretrain", 256), ("short", 64), ("alternation", 64), ("long", 1024)):
        stats = manifest["indexed"][split]
        assert stats["tokens"] == stats["documents"] * length
        ds = build_blend([BlendEntry(str(out / split), 1.0)], tok, length, 8, 1, out / "cache")
        for i in range(8):  # every sample: one whole document, its end-of-document token last
            tokens = list(ds[i]["tokens"])
            assert [j for j, t in enumerate(tokens) if t == tok.eod] == [length - 1]
            assert tok.pad not in tokens


def test_retrieval_documents_answer_every_repeated_key(corpus):
    out, _ = corpus
    text = (out / "pretrain.jsonl").read_text().splitlines()[0]
    words = text.split('"text": "')[1].rstrip('"}').split()
    seen = {}
    for k, v in zip(words, words[1:]):
        if k.startswith("k"):
            assert seen.setdefault(k, v) == v  # a key's value never changes within a document
    assert sum(1 for w in words if w.startswith("k")) == 2 * len(seen)  # one definition, one query


def test_same_seed_same_bytes_and_vocabulary_checked(corpus, tmp_path):
    from olmpool.train.tiny_corpus import build_tiny_corpus

    out, _ = corpus
    again = build_tiny_corpus(TinyCorpusConfig(**SMALL), 98, tmp_path / "again")
    assert again["indexed"] == corpus[1]["indexed"]
    for split in ("pretrain", "long"):
        assert (tmp_path / "again" / f"{split}.bin").read_bytes() == (out / f"{split}.bin").read_bytes()
    with pytest.raises(OlmPoolError, match="set vocab_size: 98 in the scale"):
        build_tiny_corpus(TinyCorpusConfig(**SMALL), 2048, tmp_path / "bad")
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.tmp").exists()


def test_unknown_language_is_refused():
    with pytest.raises(OlmPoolError, match="data.tiny_corpus.language"):
        TinyCorpusConfig(language="english").validate()
