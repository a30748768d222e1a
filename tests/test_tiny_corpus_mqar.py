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


def _toy_config(path, data, **pretrain):
    """config/tiny.yaml on the small corpus ``data``: 2 + 2 curriculum steps, then 2 main steps."""
    import copy

    import yaml

    from olmpool.config import read_config_file
    from olmpool.train.testing import REPO

    raw = copy.deepcopy(read_config_file(REPO / "config" / "tiny.yaml"))
    d = str(data)
    raw["data"].update(root=d, tokenizer_dir=f"{d}/tokenizer", tiny_corpus=dict(SMALL),
                       pretrain_blend=[{"path": f"{d}/pretrain", "weight": 0.75}, {"path": f"{d}/alternation", "weight": 0.25}],
                       extend_blend=[{"path": f"{d}/pretrain", "weight": 0.9}, {"path": f"{d}/long", "weight": 0.1}])
    raw["pretrain"].update(tokens=6 * 2048, warmup_tokens=2048, checkpoint_interval_steps=6, log_interval=1, **pretrain)
    raw["pretrain"]["phases"] = [
        {"name": "previous_token", "tokens": 2 * 2048, "seq_len": 64, "blend": [{"path": f"{d}/alternation", "weight": 1.0}]},
        {"name": "short", "tokens": 2 * 2048, "seq_len": 64, "blend": [{"path": f"{d}/short", "weight": 1.0}]}]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_loss_on_answers_counts_only_retrieval_targets(corpus, tmp_path):
    import pandas as pd

    from olmpool.train.loop import run_pretrain

    out, _ = corpus
    losses = {}
    for which in ("all", "answers"):
        cfg = _toy_config(tmp_path / f"{which}.yaml", out, loss_tokens=which)
        run_pretrain(cfg, "G_pre_8kv_8k_14k", tmp_path / which, progress=False)
        losses[which] = pd.read_csv(tmp_path / which / "metrics.tsv", sep="\t")["ce_loss"]
    assert len(losses["all"]) == 6 and losses["answers"].notna().all()
    # same weights and data at step 1: the answers (every value, uniform over 16 at init, and
    # alternation continuations over the whole vocabulary) are not the average token
    assert abs(losses["all"].iloc[0] - losses["answers"].iloc[0]) > 1e-3


def test_loss_on_answers_needs_the_retrieval_language(tmp_path):
    import torch

    from olmpool.train.mqar import answer_mask, token_kinds

    kinds = token_kinds({"<|endoftext|>": 0, "k0": 1, "v0": 2, "f0": 3, "the": 4}, 5)
    assert kinds.tolist() == [0, 1, 2, 0, 0]
    tokens = torch.tensor([[1, 2, 3, 1, 2, 3]])   # k0 v0 f0 k0 [v0] f0: the second v0 is the answer
    labels = torch.tensor([[2, 3, 1, 2, 3, 0]])
    assert answer_mask(tokens, labels, kinds, torch.zeros_like(tokens)).tolist() == [[0, 0, 0, 1, 0, 0]]
    other_doc = torch.tensor([[0, 0, 0, 1, 1, 1]])  # the key's first occurrence in another document
    assert answer_mask(tokens, labels, kinds, other_doc).tolist() == [[0, 0, 0, 0, 0, 0]]
