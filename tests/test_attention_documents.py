"""Document sources of the attention analysis: generated, random, JSONL corpus."""

from __future__ import annotations

import json

import pytest

from olmpool import OlmPoolError
from olmpool.eval.attention.config import AttentionConfig
from olmpool.eval.attention.documents import take_documents

pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from olmpool.train.tiny_corpus import iter_documents
    from olmpool.train.tokenizer import train_bpe

    texts = [r["text"] for r in iter_documents(seed=1, split="tok", total_tokens=20000, min_tokens=200, max_tokens=800)]
    return train_bpe(texts, 400, tmp_path_factory.mktemp("tok"))


def test_generated_documents_are_long_enough_and_deterministic(tokenizer):
    cfg = AttentionConfig.from_dict({"positions": [64, 300], "documents": "generated", "n_documents": 3})
    docs = take_documents(cfg, 3, tokenizer=tokenizer)
    assert len(docs) == 3 and all(len(d) >= 300 for d in docs)
    assert docs == take_documents(cfg, 3, tokenizer=tokenizer)
    assert docs[0] != docs[1]
    text = tokenizer.decode(docs[0][:50])
    assert text.strip()  # real text of the tiny language, not ids


def test_random_documents_need_no_tokenizer():
    cfg = AttentionConfig.from_dict({"positions": [10, 20], "documents": "random"})
    docs = take_documents(cfg, 2, vocab_size=50)
    assert [len(d) for d in docs] == [20, 20] and all(0 <= t < 50 for d in docs for t in d)
    assert docs == take_documents(cfg, 2, vocab_size=50)


def test_jsonl_corpus_skips_short_documents(tokenizer, tmp_path):
    long_text = "The grass is green. " * 40
    p = tmp_path / "docs.jsonl"
    p.write_text("\n".join(json.dumps({"text": t}) for t in ["short", long_text, long_text + " The sky is blue."]) + "\n")
    cfg = AttentionConfig.from_dict({"positions": [16, 64], "documents": str(p), "n_documents": 5})
    docs = take_documents(cfg, 5, tokenizer=tokenizer)
    assert len(docs) == 2 and all(len(d) >= 64 for d in docs)
    d = tmp_path / "dir"
    d.mkdir()
    (d / "a.jsonl").write_text(p.read_text())
    assert len(take_documents(AttentionConfig.from_dict({"positions": [64], "documents": str(d)}), 5, tokenizer=tokenizer)) == 2


def test_corpus_errors_are_clear(tokenizer, tmp_path):
    with pytest.raises(OlmPoolError, match="does not exist"):
        take_documents(AttentionConfig.from_dict({"documents": str(tmp_path / "none.jsonl")}), 1, tokenizer=tokenizer)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"txt": "x"}\n')
    with pytest.raises(OlmPoolError, match="line 1"):
        take_documents(AttentionConfig.from_dict({"documents": str(bad)}), 1, tokenizer=tokenizer)
    with pytest.raises(OlmPoolError, match="needs a tokenizer"):
        take_documents(AttentionConfig.from_dict({"documents": "generated"}), 1)
    short = tmp_path / "short.jsonl"
    short.write_text('{"text": "tiny"}\n')
    with pytest.raises(OlmPoolError, match="no document has"):
        take_documents(AttentionConfig.from_dict({"positions": [64], "documents": str(short)}), 1, tokenizer=tokenizer)
