"""Tiny corpus, tokenizer, indexed datasets, blends, batch order and intra-document masks."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from olmpool import OlmPoolError
from olmpool.train.config import BlendEntry, TinyCorpusConfig
from olmpool.train.tiny_corpus import build_tiny_corpus, iter_documents, make_document, make_language

SMALL = TinyCorpusConfig(seed=7, pretrain_tokens=150_000, short_tokens=40_000, long_tokens=120_000,
                         max_doc_tokens=9000, tokenizer_train_tokens=150_000)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "data"
    manifest = build_tiny_corpus(SMALL, 1024, out)
    return out, manifest


def test_corpus_is_seed_deterministic():
    a = [d["text"] for d in iter_documents(3, "pretrain", 20_000, 40, 3000)]
    b = [d["text"] for d in iter_documents(3, "pretrain", 20_000, 40, 3000)]
    c = [d["text"] for d in iter_documents(4, "pretrain", 20_000, 40, 3000)]
    assert a == b
    assert a != c


def test_dependencies_are_defined_before_use():
    import random
    lang = make_language(0)
    rng = random.Random(0)
    n_uses = 0
    for _ in range(20):
        doc = make_document(rng, lang, 3000)
        for key, val in re.findall(r"Lookup (\w+) gives (\d+) \.", doc):
            use = doc.index(f"Lookup {key} gives {val}")
            assert doc.index(f"Record {key} : {val} .") < use
            n_uses += 1
        for span in re.findall(r"Again : (.+?) \.", doc):
            assert doc.index(f"Note : {span} .") < doc.index(f"Again : {span} .")
            n_uses += 1
        for name, value in re.findall(r"So (VAR_\w+) = (\d+) \.", doc):
            # follow the chain backwards from the queried variable to a literal number
            var, hops = name, 0
            while True:
                m = re.search(rf"Let {var} = (\S+) \.", doc)
                assert m and m.start() < doc.index(f"So {name} = {value}")
                if m.group(1).isdigit():
                    assert m.group(1) == value
                    break
                var, hops = m.group(1), hops + 1
            n_uses += 1
    assert n_uses > 20


def test_corpus_layout_and_lengths(corpus):
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from olmpool.train.tokenizer import load_tokenizer

    out, manifest = corpus
    tok = load_tokenizer(out / "tokenizer")
    assert tok.vocab_size == 1024
    lengths = {}
    for name in ("pretrain", "short", "long_mid", "long_long"):
        ds = IndexedDataset(str(out / name))
        lengths[name] = ds.sequence_lengths - 1          # without EOD
        assert manifest["indexed"][name]["documents"] == len(ds)
    assert lengths["short"].max() < SMALL.short_max_tokens
    assert lengths["long_mid"].min() >= SMALL.short_max_tokens
    assert lengths["long_mid"].max() < SMALL.long_mid_max_tokens
    assert lengths["long_long"].min() >= SMALL.long_mid_max_tokens
    assert lengths["long_long"].max() > 4096              # longer than the tiny extension context
    assert lengths["pretrain"].min() < 100 and lengths["pretrain"].max() > 2000


def test_indexed_dataset_matches_independent_tokenization(corpus):
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from olmpool.train.tokenizer import load_tokenizer

    out, _ = corpus
    tok = load_tokenizer(out / "tokenizer")
    texts = [json.loads(line)["text"] for line in open(out / "short.jsonl")]
    ds = IndexedDataset(str(out / "short"))
    kept = [t for t in texts if len(tok.encode(t)) < SMALL.short_max_tokens]
    assert len(kept) == len(ds)
    for i in (0, 1, len(ds) - 1):
        ids = tok.encode(kept[i]) + [tok.eod]
        assert ds[i].tolist() == ids
        assert tok.decode(ids) == kept[i]


def test_blend_weights_are_honoured(tmp_path, corpus):
    from olmpool.train.data import build_blend, write_indexed_dataset
    from olmpool.train.tokenizer import load_tokenizer

    out, _ = corpus
    tok = load_tokenizer(out / "tokenizer")
    # two datasets made of distinguishable token ids
    write_indexed_dataset(([5] * 50 for _ in range(40)), tmp_path / "a", tok.vocab_size, tok.eod)
    write_indexed_dataset(([6] * 50 for _ in range(40)), tmp_path / "b", tok.vocab_size, tok.eod)
    blend = [BlendEntry(str(tmp_path / "a"), 1.0), BlendEntry(str(tmp_path / "b"), 3.0)]
    ds = build_blend(blend, tok, seq_len=32, num_samples=400, seed=1, cache_dir=tmp_path / "cache")
    from_a = sum(int((torch.as_tensor(ds[i]["tokens"]) == 5).any()) for i in range(400))
    assert abs(from_a / 400 - 0.25) < 0.03


def test_blend_missing_path_is_clear_error(tmp_path, corpus):
    from olmpool.train.data import build_blend
    from olmpool.train.tokenizer import load_tokenizer

    tok = load_tokenizer(corpus[0] / "tokenizer")
    with pytest.raises(OlmPoolError, match="nope.bin not found"):
        build_blend([BlendEntry(str(tmp_path / "nope"))], tok, 32, 10, 1, tmp_path)


def test_batch_stream_dp_ranks_partition_the_global_batch():
    from olmpool.train.data import BatchStream

    ds = [{"tokens": np.full(4, i), "labels": np.full(4, i), "loss_mask": np.ones(4),
           "position_ids": np.arange(4)} for i in range(100)]
    single = BatchStream(ds, global_batch=8, micro_batch=2)
    ranks = [BatchStream(ds, global_batch=8, micro_batch=2, dp_rank=r, dp_size=2) for r in range(2)]
    for step in (0, 3):
        want = sorted(int(mb.tokens[i, 0]) for mb in single.micro_batches(step) for i in range(2))
        got = sorted(int(mb.tokens[i, 0]) for r in ranks for mb in r.micro_batches(step) for i in range(2))
        assert want == got == list(range(step * 8, step * 8 + 8))
    with pytest.raises(OlmPoolError, match="not divisible"):
        BatchStream(ds, global_batch=6, micro_batch=4)


def test_intra_document_mask_matches_naive_definition():
    from olmpool.train.data import cu_seqlens, intra_document_mask

    eod = 0
    tokens = torch.tensor([[3, 4, 0, 5, 6, 7, 0, 8], [0, 1, 2, 3, 0, 0, 4, 5]])
    mask = intra_document_mask(tokens, eod)
    B, T = tokens.shape
    for b in range(B):
        for q in range(T):
            for k in range(T):
                # allowed iff causal and no EOD strictly between (k .. q-1]
                allowed = k <= q and not any(tokens[b, j] == eod for j in range(k, q))
                assert bool(mask[b, 0, q, k]) == (not allowed), (b, q, k)
    assert cu_seqlens(tokens[0], eod).tolist() == [0, 3, 7, 8]


def test_tokenize_command_round_trip(tmp_path, corpus):
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from olmpool.cli import main

    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps({"body": t}) for t in ["The sky is blue.", "Here we go."]))
    rc = main(["data", "tokenize", "--tokenizer", str(corpus[0] / "tokenizer"), "--input", str(src),
               "--output-prefix", str(tmp_path / "ds"), "--text-key", "body"])
    assert rc == 0
    assert len(IndexedDataset(str(tmp_path / "ds"))) == 2
    rc = main(["data", "tokenize", "--tokenizer", str(tmp_path / "missing"), "--input", str(src),
               "--output-prefix", str(tmp_path / "ds2")])
    assert rc == 2


def test_tiny_corpus_command_is_deterministic(tmp_path):
    """`olmpool data tiny-corpus` twice with the same seed gives byte-identical datasets and
    a tokenizer with the scale's vocabulary."""
    from olmpool.cli import main
    from olmpool.train.testing import small_config
    from olmpool.train.tokenizer import load_tokenizer

    cfg = small_config(tmp_path / "cfg.yaml", tmp_path / "unused")
    for name in ("a", "b"):
        assert main(["data", "tiny-corpus", "--config", str(cfg), "--out", str(tmp_path / name)]) == 0
    for f in ("pretrain.bin", "pretrain.idx", "long_long.bin", "short.idx", "tokenizer/tokenizer.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert load_tokenizer(tmp_path / "a" / "tokenizer").vocab_size == 2048
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["seed"] == 5 and manifest["code_version"]["olmpool"]
