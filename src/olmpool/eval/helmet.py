"""HELMET (base-model categories without an LM judge): Recall, RAG, Re-rank, ICL.

Re-implemented from princeton-nlp/HELMET: ``data.py`` (``load_json_kv``, ``load_ruler``,
``load_qa``, ``load_msmarco_rerank``, ``load_icl`` with ``balance_labels``), ``utils.py``
(metrics, ``parse_output``, ``parse_rankings``, ``calculate_retrieval_metrics``), and
``configs/{recall,rag,rerank,icl}.yaml`` (generation lengths 50/100/50/100 for
niah_mk_2/niah_mk_3/niah_mv/json_kv, 20 for RAG and ICL, 200 for re-rank; shots 2 except
ICL; stop at newline for RAG/re-rank/ICL; 100 test samples, 500 for ICL; no chat template).

Tasks and metrics (x100):

    recall  json_kv            substring EM (max over raw and parsed output)
            ruler_niah_mk_2    fraction of gold strings in the output
            ruler_niah_mk_3    "
            ruler_niah_mv      "
    rag     kilt_nq, kilt_triviaqa, kilt_hotpotqa, kilt_popqa_3   substring EM
    rerank  msmarco_rerank_psg NDCG@10
    icl     icl_trec_coarse, icl_trec_fine, icl_banking77, icl_clinic150, icl_nlu   exact match
            of the parsed "label:" output against the (randomly re-mapped) label id

Category score = mean of its tasks; overall = mean of the four categories (a category or the
overall is missing when any of its parts is missing).

Content scales with length as upstream: json_kv keys, RAG passages, re-rank passages and ICL
shots per length come from config (paper: upstream counts for 8K..64K, e.g. json_kv
105/220/440/900, RAG 50/105/220/440, re-rank 50/130/285/600; ICL shots 400..3300 for
trec_coarse) or, when set to ``fit``, are the largest count whose prompt fits the token budget
(tiny scale). A configured count whose prompt exceeds ``length - generation_max_length`` in our
tokenizer is reduced until it fits (recorded in provenance), where HELMET would truncate.

Data: json_kv and the three RULER recall tasks are generated (as upstream's are). RAG,
re-rank and ICL read the HELMET data archive / exported datasets from ``eval.helmet`` paths
(missing -> rows missing with the reason); ``synthetic`` selects the generated stand-ins
(``olmpool.eval.synthetic``), whose task names carry the ``:synthetic`` suffix.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from olmpool import OlmPoolError
from olmpool.eval.lm import Tokenizer, stable_seed
from olmpool.eval.ruler import Infeasible, MissingData, RulerData, RulerSettings, Sample, fit_size, generate_task
from olmpool.eval import scoring

CATEGORIES = {
    "recall": ["json_kv", "ruler_niah_mk_2", "ruler_niah_mk_3", "ruler_niah_mv"],
    "rag": ["kilt_nq", "kilt_triviaqa", "kilt_hotpotqa", "kilt_popqa_3"],
    "rerank": ["msmarco_rerank_psg"],
    "icl": ["icl_trec_coarse", "icl_trec_fine", "icl_banking77", "icl_clinic150", "icl_nlu"],
}
TASK_CATEGORY = {t: c for c, ts in CATEGORIES.items() for t in ts}
HELMET_TASKS = [t for ts in CATEGORIES.values() for t in ts]
GEN_LENGTH = {"json_kv": 100, "ruler_niah_mk_2": 50, "ruler_niah_mk_3": 100, "ruler_niah_mv": 50,
              **{t: 20 for t in CATEGORIES["rag"]}, "msmarco_rerank_psg": 200, **{t: 20 for t in CATEGORIES["icl"]}}
STOP_NEWLINE = {t: TASK_CATEGORY[t] in ("rag", "rerank", "icl") for t in HELMET_TASKS}
DATA_BACKED = set(CATEGORIES["rag"] + CATEGORIES["rerank"] + CATEGORIES["icl"])

# ---------------------------------------------------------------------------- templates
JSON_KV_USER = "{context}\n\nExtract the value corresponding to the specified key in the JSON object below.\n\n{demos}Key: {question}"
JSON_KV_SYSTEM = "Corresponding value:"
NIAH_MV_USER = ("Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. "
                "I will quiz you about the {type_needle_v} afterwards.\n{context}\nWhat are all the special magic "
                "{type_needle_v} for {query} mentioned in the provided text?")
NIAH_MV_SYSTEM = "The special magic {type_needle_v} for {query} mentioned in the provided text are"
NIAH_USER = ("A special magic {type_needle_v} is hidden within the following text. Make sure to memorize it. "
             "I will quiz you about the {type_needle_v} afterwards.\n{context}\nWhat is the special magic "
             "{type_needle_v} for {query} mentioned in the provided text?")
NIAH_SYSTEM = "The special magic {type_needle_v} for {query} mentioned in the provided text is"
QA_USER = ("Use the given documents to write a concise and short answer to the question. Write your answer in the "
           "following format:\nAnswer: [answer]\n\n{demos}{context}\n\nQuestion: {question}")
QA_SYSTEM = "Answer:"
QA_DEMO = "{documents}\n\nQuestion: {question}\nAnswer: {answer}"
QA_PASSAGE = "Document (Title: {title}): {text}"
RERANK_USER = ("You are provided with a list of documents, each indicated by their ID. Rank each document based on "
               "their relevance to the question in descending order from most relelvant to least relevant texts. "
               "Include all documents in the rankings. Write your answer using the unique IDs, with the following "
               "format:\nRanking: ID3 > ID1 > ID2\n\n{demos}{context}\n\nQuery: {question}")
RERANK_SYSTEM = "Ranking:"
ICL_USER = ('Use the provided mapping from the text to label to assign a label to the text. Only output "label: {{label}}" '
            "and nothing else. \n\n{context}\n\n{question}")
ICL_SYSTEM = "label:"
ICL_ITEM = "{text}\nlabel: {label}"

RULER_FOR = {"ruler_niah_mk_2": "niah_multikey_2", "ruler_niah_mk_3": "niah_multikey_3", "ruler_niah_mv": "niah_multivalue"}
ICL_NAME = {"icl_trec_coarse": "trec_coarse", "icl_trec_fine": "trec_fine", "icl_banking77": "banking77",
            "icl_clinic150": "clinic150", "icl_nlu": "nlu"}
KILT_FILES = {  # HELMET data archive, data/kilt/
    "kilt_nq": ("nq-dev-multikilt_1000_k{k}_dep6.jsonl", "nq-train-multikilt_1000_k3_dep6.jsonl"),
    "kilt_triviaqa": ("triviaqa-dev-multikilt_1000_k{k}_dep6.jsonl", "triviaqa-train-multikilt_1000_k3_dep6.jsonl"),
    "kilt_hotpotqa": ("hotpotqa-dev-multikilt_1000_k{k}_dep3.jsonl", "hotpotqa-train-multikilt_1000_k3_dep3.jsonl"),
    "kilt_popqa_3": ("popqa_test_1000_k{k}_dep6.jsonl", "popqa_test_1000_k3_dep6.jsonl"),
}
MSMARCO_FILES = ("test_reranking_data_k{k}_dep3.jsonl", "test_reranking_data_k10_dep3.jsonl")


def _niah_render(task: str) -> Callable[[dict], str]:
    def render(parts: dict) -> str:
        if task == "ruler_niah_mv":
            user, system, tv = NIAH_MV_USER, NIAH_MV_SYSTEM, "numbers"
        else:
            user, system = NIAH_USER, NIAH_SYSTEM
            tv = parts["type_needle_v"]
        return (user + "\n" + system).format(type_needle_v=tv, context=parts["context"], query=parts["query"])
    return render


# ------------------------------------------------------------------------------ settings


@dataclass
class HelmetSettings:
    """Scale-dependent HELMET knobs (documented in config.HelmetConfig)."""

    seed: int = 42
    shots: int = 2
    counts: dict | None = None  # {"json_kv"|"rag"|"rerank"|icl task: {length: count} | "fit"}
    data: str = "synthetic"  # "synthetic" or the HELMET data directory (holds kilt/, msmarco/, icl/)
    generation_max_length: dict | None = None  # per-task overrides of GEN_LENGTH


def _count_for(settings: HelmetSettings, key: str, length: int) -> int | None:
    spec = (settings.counts or {}).get(key, "fit")
    if spec == "fit":
        return None
    if length not in spec:
        raise OlmPoolError(f"eval.helmet.counts.{key} has no entry for length {length}. Fix: add it, or set it to 'fit'")
    return int(spec[length])


def _fit_count(build: Callable[[int], tuple[str, list[str]]], tokenizer: Tokenizer, budget: int, lo: int, hi: int, want: int | None) -> int:
    top = want if want is not None else hi
    return fit_size(build, tokenizer, budget, lo, max(lo, top))


def _distinct_demos(pool: list[dict], rng: random.Random, key: Callable[[dict], object], n: int) -> list[dict]:
    """Up to n demonstrations from a shuffled pool, at most one per key (HELMET's demo choice)."""
    chosen, seen = [], set()
    for d in rng.sample(pool, len(pool)):
        if key(d) in seen:
            continue
        seen.add(key(d))
        chosen.append(d)
        if len(chosen) == n:
            break
    return chosen


def _fit_passages(build: Callable[[list[dict]], str], ctxs: list[dict], tokenizer: Tokenizer, budget: int) -> list[dict]:
    """The longest prefix of ctxs whose prompt fits the budget (at least one passage), by
    bisection rather than re-tokenising the prompt once per dropped passage."""
    try:
        k = fit_size(lambda n: (build(ctxs[:n]), []), tokenizer, budget, 1, len(ctxs), with_answers=False)
    except Infeasible:
        k = 1
    return ctxs[:k]


# --------------------------------------------------------------------------------- loaders


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if line.strip():
                    rows.append(json.loads(line))
    except json.JSONDecodeError as exc:
        raise OlmPoolError(f"{path}, line {n}: not valid JSON ({exc.msg}). Fix: re-export the file as JSON lines") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise OlmPoolError(f"{path}: cannot be read ({exc}). Fix: check the path in eval.helmet.data") from exc
    if not rows:
        raise OlmPoolError(f"{path}: empty file. Fix: re-export the dataset")
    return rows


def _require(rows: list[dict], fields: list[str], path: Path) -> None:
    for n, r in enumerate(rows, start=1):
        for f in fields:
            if f not in r:
                raise OlmPoolError(f"{path}, record {n}: missing field '{f}'. Fix: use the HELMET data archive format (fields {fields})")


def _select(rows: list[dict], key: str, n: int, seed: int) -> list[dict]:
    """HELMET-style sampling: n distinct keys, sampled from the sorted key set."""
    keys = sorted({str(r[key]) for r in rows})
    keep = set(random.Random(seed).sample(keys, min(n, len(keys))))
    seen, out = set(), []
    for r in rows:
        k = str(r[key])
        if k in keep and k not in seen:
            seen.add(k)
            out.append(r)
    return out


# ------------------------------------------------------------------------------ generators


def _json_kv_parts(rng: random.Random, n_kv: int, shots: int) -> tuple[str, str, list[str]]:
    kvs = [(str(uuid.UUID(int=rng.getrandbits(128), version=4)), str(uuid.UUID(int=rng.getrandbits(128), version=4))) for _ in range(n_kv)]
    key, value = kvs[rng.randrange(n_kv)]
    demo_pairs = [(str(uuid.UUID(int=rng.getrandbits(128), version=4)), str(uuid.UUID(int=rng.getrandbits(128), version=4))) for _ in range(shots)]
    context = "JSON data:\n" + json.dumps(dict(kvs), indent=1)
    demos = "\n\n".join(f"Key: {json.dumps(k)}\nCorresponding value: {json.dumps(v)}" for k, v in demo_pairs) + ("\n\n" if shots > 0 else "")
    prompt = (JSON_KV_USER + "\n" + JSON_KV_SYSTEM).format(context=context, demos=demos, question=json.dumps(key))
    return prompt, value, demos


def _qa_prompt(question: str, ctxs: list[dict], demos: str) -> str:
    context = "\n\n".join(QA_PASSAGE.format(title=c.get("title", ""), text=c["text"]) for c in ctxs)
    return (QA_USER + "\n" + QA_SYSTEM).format(demos=demos, context=context, question=question)


def _qa_demos(demos: list[dict]) -> str:
    if not demos:
        return ""
    return "\n\n".join(QA_DEMO.format(documents="\n\n".join(QA_PASSAGE.format(title=c.get("title", ""), text=c["text"]) for c in d["ctxs"]),
                                      question=d["question"], answer=d["answers"][0]) for d in demos) + "\n\n"


def _rerank_passage(c: dict) -> str:
    if c.get("title"):
        return f"[ID: {c['id']}] Document (Title: {c['title']}): {c['text']}"
    return f"[ID: {c['id']}] Document: {c['text']}"


def _rerank_prompt(query: str, ctxs: list[dict], demos: str) -> str:
    context = "\n\n".join(_rerank_passage(c) for c in ctxs)
    return (RERANK_USER + "\n" + RERANK_SYSTEM).format(demos=demos, context=context, question=query)


def _rerank_demos(demos: list[dict]) -> str:
    text = ""
    for d in demos:
        ranking = " > ".join(c["id"] for c in sorted(d["ctxs"], key=lambda c: c["label"], reverse=True))
        text += "\n\n".join(_rerank_passage(c) for c in d["ctxs"]) + f"\n\nQuery: {d['query']}\nRanking: {ranking}" + "\n\n"
    return text


def balance_labels(train: list[dict], shots: int, seed: int) -> list[dict]:
    """HELMET data.py balance_labels: rounds of one example per label, each round shuffled."""
    rand = random.Random(seed)
    by_label: dict = {}
    for x in train:
        by_label.setdefault(x["label"], []).append(x)
    rounds = math.ceil(shots / len(by_label))
    new = [[] for _ in range(rounds)]
    for _, samples in by_label.items():
        idx = rand.sample(range(len(samples)), rounds % len(samples))
        while len(idx) < rounds:
            idx += rand.sample(range(len(samples)), min(rounds - len(idx), len(samples)))
        for i, j in enumerate(idx):
            new[i].append(samples[j])
    for r in new:
        rand.shuffle(r)
    return [x for r in new for x in r][:shots]


def _icl_prompt(demos: list[dict], mapping: list[int], text: str) -> str:
    context = "\n\n".join(ICL_ITEM.format(text=d["text"], label=str(mapping[int(d["label"])])) for d in demos)
    return (ICL_USER + "\n" + ICL_SYSTEM).format(context=context, question=text)


def _icl_mapping(text: str, seed: int, num_labels: int) -> list[int]:
    local = (int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) + seed) % 2**31
    mapping = list(range(num_labels))
    random.Random(local).shuffle(mapping)
    return mapping


# ------------------------------------------------------------------------------ per task


def task_name(task: str, synthetic: bool) -> str:
    return f"{task}:synthetic" if synthetic else task


def generate(task: str, length: int, n_samples: int, tokenizer: Tokenizer, settings: HelmetSettings,
             ruler_data: RulerData, ruler_settings: RulerSettings) -> tuple[list[Sample], dict]:
    """Samples of one HELMET task at one length, and provenance info {source, count}."""
    gen = (settings.generation_max_length or {}).get(task, GEN_LENGTH[task])
    budget = length - gen
    seed = stable_seed(settings.seed, "helmet", task, length)
    synthetic = settings.data == "synthetic"
    data_dir = Path(settings.data)

    def mk(i: int, prompt: str, answers: list[str], meta: dict | None = None) -> Sample:
        return Sample(task=task, index=i, prompt=prompt, answers=answers, max_new_tokens=gen,
                      n_tokens=len(tokenizer.encode(prompt)), meta=meta or {})

    if task in RULER_FOR:
        samples = generate_task(RULER_FOR[task], length, n_samples, tokenizer, ruler_data, ruler_settings,
                                renderer=_niah_render(task), tokens_to_generate=gen)
        for s in samples:
            s.task = task
        return samples, {"source": "generated", "count": samples[0].meta.get("haystack")}

    if task == "json_kv":
        want = _count_for(settings, "json_kv", length)
        def kv_build(k: int):
            prompt, value, _ = _json_kv_parts(random.Random(seed), k, settings.shots)
            return prompt, [value]

        n = _fit_count(kv_build, tokenizer, budget, 1, max(2, budget // 8), want)
        out = []
        for i in range(n_samples):
            k = n
            while True:
                prompt, value, _ = _json_kv_parts(random.Random(seed + 1 + i), k, settings.shots)
                if len(tokenizer.encode(prompt)) <= budget or k == 1:
                    break
                k -= 1
            out.append(mk(i, prompt, [value]))
        return out, {"source": "generated", "count": n}

    cat = TASK_CATEGORY[task]
    if cat == "rag":
        if synthetic:
            from olmpool.eval.synthetic import fact_corpus

            offset = {"kilt_nq": 11, "kilt_triviaqa": 12, "kilt_popqa_3": 13, "kilt_hotpotqa": 14}[task]
            fc = fact_corpus(settings.seed + offset)
            items = fc.two_hop if task == "kilt_hotpotqa" else fc.single_hop

            def to_rec(q, rng, k):
                gold = [{"title": fc.titles[j], "text": fc.docs[j]} for j in q.context]
                pool = rng.sample(range(len(fc.docs)), min(len(fc.docs), k + len(q.context)))
                others = [{"title": fc.titles[j], "text": fc.docs[j]} for j in pool if j not in q.context][:max(0, k - len(gold))]
                ctxs = gold + others
                rng.shuffle(ctxs)
                return {"question": q.query, "answers": q.outputs, "ctxs": ctxs}

            demo_recs = [to_rec(items[-1 - j], random.Random(seed + 7 + j), 3) for j in range(settings.shots)]
            demos = _qa_demos(demo_recs)

            def build_i(i):
                def build(k):
                    rec = to_rec(items[i % (len(items) - settings.shots)], random.Random(seed + i), k)
                    return _qa_prompt(rec["question"], rec["ctxs"], demos), rec["answers"]
                return build

            want = _count_for(settings, "rag", length)
            n = _fit_count(build_i(0), tokenizer, budget, 2, 2000, want)
            out = []
            for i in range(n_samples):
                k = n
                while True:
                    prompt, ans = build_i(i)(k)
                    if len(tokenizer.encode(prompt)) <= budget or k <= 2:
                        break
                    k -= 1
                out.append(mk(i, prompt, ans))
            return out, {"source": "synthetic", "count": n}
        k = _count_for(settings, "rag", length)
        if k is None:
            raise OlmPoolError("eval.helmet.counts.rag must list passages per length when reading the HELMET archive. Fix: give {length: passages}")
        test_path = data_dir / "kilt" / KILT_FILES[task][0].format(k=k)
        demo_path = data_dir / "kilt" / KILT_FILES[task][1]
        for p in (test_path, demo_path):
            if not p.exists():
                raise MissingData(f"HELMET file {p} not found (unpack the HELMET data archive into eval.helmet.data)")
        rows, demo_rows = _read_jsonl(test_path), _read_jsonl(demo_path)
        _require(rows, ["question", "answers", "ctxs"], test_path)
        _require(demo_rows, ["question", "answers", "ctxs"], demo_path)
        if task == "kilt_popqa_3":  # popularity_threshold 3 (HELMET kilt_popqa_3)
            _require(rows, ["s_pop"], test_path)
            _require(demo_rows, ["s_pop"], demo_path)
            rows = [r for r in rows if math.log10(r["s_pop"]) < 3]
            demo_rows = [r for r in demo_rows if math.log10(r["s_pop"]) < 3]
        key = "id" if "id" in rows[0] else "question"
        rows = _select(rows, key, n_samples, settings.seed)
        out = []
        for i, r in enumerate(rows):
            pool = [d for d in demo_rows if d.get(key) != r.get(key)] if task == "kilt_popqa_3" else demo_rows
            h = int(hashlib.sha256(str(r[key]).encode("utf-8")).hexdigest(), 16) % 2**31
            rng = random.Random(h)
            demos = _qa_demos(_distinct_demos(pool, rng, lambda d: d.get(key), settings.shots))
            ctxs = _fit_passages(lambda c: _qa_prompt(r["question"], c, demos), list(r["ctxs"]), tokenizer, budget)
            prompt = _qa_prompt(r["question"], ctxs, demos)
            out.append(mk(i, prompt, list(r["answers"]), {"passages": len(ctxs)}))
        return out, {"source": str(test_path), "count": k}

    if cat == "rerank":
        if synthetic:
            from olmpool.eval.synthetic import rerank_item

            demos = _rerank_demos([rerank_item(random.Random(seed + 100 + j), 10).__dict__ for j in range(settings.shots)])

            def build_i(i):
                def build(k):
                    item = rerank_item(random.Random(seed + i), k)
                    return _rerank_prompt(item.query, item.ctxs, demos), item
                return build

            def fit_build(k):
                p, item = build_i(0)(k)
                gold = " > ".join(c["id"] for c in sorted(item.ctxs, key=lambda c: c["label"], reverse=True))
                return p, [gold]

            want = _count_for(settings, "rerank", length)
            n = _fit_count(fit_build, tokenizer, budget, 3, 2000, want)
            out = []
            for i in range(n_samples):
                k = n
                while True:
                    prompt, item = build_i(i)(k)
                    if len(tokenizer.encode(prompt)) <= budget or k <= 3:
                        break
                    k -= 1
                qrels = {c["id"]: int(c["label"]) for c in item.ctxs}
                gold = " > ".join(c["id"] for c in sorted(item.ctxs, key=lambda c: c["label"], reverse=True))
                out.append(mk(i, prompt, [gold], {"qrels": qrels, "k_values": [kv for kv in (1, 5, 10) if kv <= k]}))
            return out, {"source": "synthetic", "count": n}
        k = _count_for(settings, "rerank", length)
        if k is None:
            raise OlmPoolError("eval.helmet.counts.rerank must list passages per length when reading the HELMET archive. Fix: give {length: passages}")
        test_path = data_dir / "msmarco" / MSMARCO_FILES[0].format(k=k)
        demo_path = data_dir / "msmarco" / MSMARCO_FILES[1]
        for p in (test_path, demo_path):
            if not p.exists():
                raise MissingData(f"HELMET file {p} not found (unpack the HELMET data archive into eval.helmet.data)")
        rows, demo_rows = _read_jsonl(test_path), _read_jsonl(demo_path)
        _require(rows, ["qid", "query", "ctxs"], test_path)
        _require(demo_rows, ["qid", "query", "ctxs"], demo_path)
        for c in (c for r in rows for c in r["ctxs"]):
            c["id"] = str(c["id"])
        rows = _select(rows, "qid", n_samples, settings.seed)
        qids = {r["qid"] for r in rows}
        demo_pool = [d for d in demo_rows if d["qid"] not in qids]
        out = []
        for i, r in enumerate(rows):
            h = abs(int(hashlib.sha256(str(r["qid"]).encode("utf-8")).hexdigest(), 16) % 2**31)
            rng = random.Random(h)
            chosen = _distinct_demos(demo_pool, rng, lambda d: d["qid"], settings.shots)
            demos = _rerank_demos([dict(d, ctxs=[dict(c, id=str(c["id"])) for c in d["ctxs"]]) for d in chosen])
            ctxs = _fit_passages(lambda c: _rerank_prompt(r["query"], c, demos), list(r["ctxs"]), tokenizer, budget)
            prompt = _rerank_prompt(r["query"], ctxs, demos)
            qrels = {c["id"]: int(c["label"]) for c in r["ctxs"]}
            gold = " > ".join(c["id"] for c in sorted(r["ctxs"], key=lambda c: c["label"], reverse=True))
            out.append(mk(i, prompt, [gold], {"qrels": qrels, "passages": len(ctxs)}))
        return out, {"source": str(test_path), "count": k}

    if cat == "icl":
        name = ICL_NAME[task]
        if synthetic:
            from olmpool.eval.synthetic import icl_dataset

            ds = icl_dataset(name, settings.seed)
            train, test, num_labels, source = ds.train, ds.test, ds.num_labels, "synthetic"
        else:
            d = data_dir / "icl" / name
            for p in (d / "train.jsonl", d / "test.jsonl"):
                if not p.exists():
                    raise MissingData(f"ICL file {p} not found (export the {name} dataset as JSON lines with fields text,label)")
            train, test = _read_jsonl(d / "train.jsonl"), _read_jsonl(d / "test.jsonl")
            _require(train, ["text", "label"], d / "train.jsonl")
            _require(test, ["text", "label"], d / "test.jsonl")
            num_labels = max(int(x["label"]) for x in train + test) + 1
            source = str(d)
        test_sel = list(test)
        if len(test_sel) > n_samples:
            random.Random(settings.seed).shuffle(test_sel)
            test_sel = test_sel[:n_samples]

        def build_for(x):
            def build(shots):
                demos = balance_labels(train, shots, settings.seed)
                mapping = _icl_mapping(x["text"], settings.seed, num_labels)
                return _icl_prompt(demos, mapping, x["text"]), [str(mapping[int(x["label"])])]
            return build

        want = _count_for(settings, task, length)
        n = _fit_count(build_for(test_sel[0]), tokenizer, budget, 1, len(train), want)
        out = []
        for i, x in enumerate(test_sel):
            shots = n
            while True:
                prompt, ans = build_for(x)(shots)
                if len(tokenizer.encode(prompt)) <= budget or shots <= 1:
                    break
                shots -= max(1, shots // 50)
            out.append(mk(i, prompt, ans, {"shots": shots}))
        return out, {"source": source, "count": n}
    raise ValueError(task)  # pragma: no cover


def score_sample(task: str, pred: str, sample: Sample) -> float:
    """Per-sample HELMET score in [0, 1]."""
    if task in RULER_FOR:
        return scoring.recall_fraction(pred, sample.answers)
    if task == "json_kv":
        parsed = scoring.parse_output(pred, "corresponding value:")
        s = scoring.substring_exact_match(pred, sample.answers)
        return max(s, scoring.substring_exact_match(parsed, sample.answers)) if parsed is not None else s
    cat = TASK_CATEGORY[task]
    if cat == "rag":
        parsed = scoring.parse_output(pred, QA_SYSTEM)
        s = scoring.substring_exact_match(pred, sample.answers)
        return max(s, scoring.substring_exact_match(parsed, sample.answers)) if parsed is not None else s
    if cat == "rerank":
        return scoring.ndcg_at_k(scoring.parse_rankings(pred), sample.meta["qrels"], 10)
    if cat == "icl":
        parsed = scoring.parse_output(pred, ICL_SYSTEM)
        return scoring.exact_match(parsed if parsed is not None else pred, sample.answers)
    raise ValueError(task)  # pragma: no cover


def ensure_feasible(samples: list[Sample], length: int) -> None:
    for s in samples:
        if s.n_tokens + s.max_new_tokens > length:
            raise Infeasible(f"{s.task} sample {s.index}: {s.n_tokens} + {s.max_new_tokens} tokens > {length}")
