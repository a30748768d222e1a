"""HELMET (base-model categories without an LM judge): Recall, RAG, Re-rank, ICL.

Re-implemented from princeton-nlp/HELMET at commit 4526dfbdc512bd9ff721da336bff4e3e75ecfd27
(``olmpool.eval.upstream``): ``data.py`` (``load_json_kv``, ``load_ruler``,
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
(tiny scale).

Data: every task reads the HELMET data archive / exported datasets under ``eval.helmet.data``
(as upstream ``configs/recall_short.yaml`` / ``recall.yaml``: ruler/niah_multikey_2,
ruler/niah_multikey_3, ruler/niah_multivalue/validation_{length}.jsonl for the three RULER
recall tasks, json_kv/test_k{keys}_dep6.jsonl; kilt/, msmarco/; icl/<name>/{train,test}.jsonl);
a missing file gives rows missing with the reason, never a generated stand-in. ``synthetic``
selects the generated stand-ins (our RULER generator ``olmpool.eval.ruler.generate_task`` with
HELMET's recall templates for the RULER tasks, ``olmpool.eval.synthetic``, and for json_kv the
UUID generator ``_json_kv_parts``), whose task names carry the ``:synthetic`` suffix.

Paper scale (archive files) follows upstream exactly where it chooses and builds examples:

* RULER recall tasks (``data.py`` ``load_ruler``; ``data_module/ruler.py`` in the v2 layout):
  the file's records in full, ``data.shuffle(seed).select(range(min(len, n)))`` with the run
  seed (always, ``hf_shuffle_select``); prompt = user + "\\n" + system template chosen by the
  dataset name ("niah_mv" -> the plural "Some special magic ... are", other "niah" -> the
  singular one) formatted with the record's own ``type_needle_v``, ``query`` and ``context``
  (``prompt_template.format(**sample)`` in ``model_utils.py``); gold = ``answer`` when the
  record has it, else ``outputs``; no demonstrations (``load_data`` ignores shots for RULER);
  score = ``load_ruler`` ``post_process``: the fraction of gold strings contained in the output,
  case-insensitively (``ruler_recall``; ``utils.py`` metrics are not used for these tasks).
* Test samples. RAG and re-rank (``data.py`` ``load_qa``, ``load_msmarco_rerank``): after
  ``eval.py`` ``run_test`` seeds Python's ``random`` with the run seed, ``random.sample`` over the
  sorted distinct ids (``id``/``question``; ``qid``/``query``), then every row with a chosen id
  in file order (``_select``). json_kv (``load_json_kv``): Hugging Face
  ``Dataset.shuffle(seed).select(range(n))``, reproduced without ``datasets`` by
  ``hf_shuffle_order`` (``datasets`` ``arrow_dataset.py`` ``Dataset.shuffle``:
  ``np.random.default_rng(seed).permutation(len(self))``). ICL (``load_icl`` lines 414-418),
  only when the test set is larger than n: ``Dataset.shuffle(seed)``, then
  ``balance_labels(test_data, n, seed)``, rounds of one sample per label (``icl_test_samples``).
* Demonstrations. RAG / re-rank: per test sample, the demo pool (popqa: without the sample's
  id; re-rank: without the chosen qids when the pool is more than twice the test set, else
  without the sample's qid) shuffled as ``Dataset.shuffle(seed=sha256(id) % 2**31)``, duplicate
  ids dropped, the first ``shots`` kept (``_hf_demos``). json_kv: the record's own ``demos``.
  ICL: per test sample, ``balance_labels(train, shots, local_seed)`` with the sample's own seed
  ``(sha256(text) + seed) % 2**31`` (``icl_demos``); labels re-mapped per sample with the same
  seed, over upstream's label counts (``ICL_NUM_LABELS``).
* Truncation. A prompt longer than ``length - generation_max_length`` tokens has its
  *context* (RULER haystack, passages, JSON object, ICL demos; never instructions, demos of
  RAG/re-rank or the question) cut at the end by exactly the excess number of tokens, counted
  in the evaluated model's tokenizer and mapped back to characters (``model_utils.py``
  ``tokenize``, used by ``HFModel``/``VLLMModel.prepare_inputs``): ``truncate_context``.
  Recorded per sample in ``meta['truncated_tokens']`` and per task in the provenance info
  ``truncated``.

The ``fit`` path (tiny scale, and the synthetic stand-ins) instead reduces the content count
until the prompt fits (recorded as ``passages``/``shots`` in the sample meta).
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
DATA_BACKED = set(HELMET_TASKS)  # every task reads the HELMET archive at paper scale (RULER recall tasks too)

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

TRUNCATION_RULE = "context end, by the prompt's excess tokens (HELMET model_utils.tokenize)"

# HELMET recall task -> RULER task (our generator, ``synthetic``) and HELMET archive folder data/ruler/<name>/
RULER_FOR = {"ruler_niah_mk_2": "niah_multikey_2", "ruler_niah_mk_3": "niah_multikey_3", "ruler_niah_mv": "niah_multivalue"}
RULER_FILE = "validation_{length}.jsonl"  # configs/recall_short.yaml: data/ruler/niah_multikey_2/validation_8192.jsonl ...
ICL_NAME = {"icl_trec_coarse": "trec_coarse", "icl_trec_fine": "trec_fine", "icl_banking77": "banking77",
            "icl_clinic150": "clinic150", "icl_nlu": "nlu"}
KILT_FILES = {  # HELMET data archive, data/kilt/
    "kilt_nq": ("nq-dev-multikilt_1000_k{k}_dep6.jsonl", "nq-train-multikilt_1000_k3_dep6.jsonl"),
    "kilt_triviaqa": ("triviaqa-dev-multikilt_1000_k{k}_dep6.jsonl", "triviaqa-train-multikilt_1000_k3_dep6.jsonl"),
    "kilt_hotpotqa": ("hotpotqa-dev-multikilt_1000_k{k}_dep3.jsonl", "hotpotqa-train-multikilt_1000_k3_dep3.jsonl"),
    "kilt_popqa_3": ("popqa_test_1000_k{k}_dep6.jsonl", "popqa_test_1000_k3_dep6.jsonl"),
}
MSMARCO_FILES = ("test_reranking_data_k{k}_dep3.jsonl", "test_reranking_data_k10_dep3.jsonl")
JSON_KV_FILE = "test_k{k}_dep6.jsonl"  # HELMET data archive, data/json_kv/ (configs/recall_short.yaml: k105..k900)
ICL_NUM_LABELS = {"trec_coarse": 6, "trec_fine": 50, "banking77": 77, "clinic150": 151, "nlu": 68}  # data.py load_icl


def _niah_render(task: str) -> Callable[[dict], str]:
    def render(parts: dict) -> str:
        if task == "ruler_niah_mv":
            user, system, tv = NIAH_MV_USER, NIAH_MV_SYSTEM, "numbers"
        else:
            user, system = NIAH_USER, NIAH_SYSTEM
            tv = parts["type_needle_v"]
        return (user + "\n" + system).format(type_needle_v=tv, context=parts["context"], query=parts["query"])
    return render


def ruler_file(data: str | Path, task: str, length: int) -> Path:
    """HELMET archive file of a RULER recall task at one input length: ``configs/recall_short.yaml``
    (8K-64K) and ``configs/recall.yaml`` (128K) name
    ``data/ruler/{niah_multikey_2,niah_multikey_3,niah_multivalue}/validation_{input_max_length}.jsonl``
    for ruler_niah_mk_2 / ruler_niah_mk_3 / ruler_niah_mv; ``data`` is the archive's data/ folder."""
    return Path(data) / "ruler" / RULER_FOR[task] / RULER_FILE.format(length=length)


def _niah_file_render(task: str, record: dict) -> Callable[[str], str]:
    """Prompt of one HELMET RULER archive record around a (possibly truncated) context.

    ``data.py`` ``load_ruler``: the template is picked by the dataset name ("niah_mv" -> plural,
    any other "niah" -> singular), ``prompt_template = user_template + "\\n" + system_template``,
    and ``model_utils.py`` formats it with the record's fields (``prompt_template.format(**sample)``):
    the record's own ``type_needle_v`` and ``query`` (so "number" / "uuid" as stored), never ours."""
    user, system = (NIAH_MV_USER, NIAH_MV_SYSTEM) if task == "ruler_niah_mv" else (NIAH_USER, NIAH_SYSTEM)
    template = user + "\n" + system
    tv, query = record["type_needle_v"], record["query"]
    return lambda context: template.format(type_needle_v=tv, context=context, query=query)


def _ruler_file_answers(record: dict, path: Path, n: int) -> list[str]:
    """``load_ruler`` ``process_example``: gold = ``answer`` if the record has that field, else
    ``outputs``. Scored as a list of strings (``post_process`` averages over its items); a string
    (which upstream would score character by character) or an empty list (division by zero
    upstream) is refused."""
    field_ = "answer" if "answer" in record else "outputs"
    gold = record[field_]
    if not isinstance(gold, list) or not gold or not all(isinstance(a, str) for a in gold):
        raise OlmPoolError(f"{path}, record {n}: '{field_}' must be a non-empty list of strings (HELMET load_ruler "
                           f"scores the fraction of its items in the output), got {gold!r}. Fix: use the HELMET data archive file")
    return list(gold)


# ------------------------------------------------------------------------------ settings


@dataclass
class HelmetSettings:
    """Scale-dependent HELMET knobs (documented in config.HelmetConfig)."""

    seed: int = 42
    shots: int = 2
    counts: dict | None = None  # {"json_kv"|"rag"|"rerank"|icl task: {length: count} | "fit"}
    data: str = "synthetic"  # "synthetic" or the HELMET data directory (holds json_kv/, kilt/, msmarco/, icl/)
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


def hf_shuffle_order(n: int, seed: int) -> list[int]:
    """Row order of a Hugging Face ``Dataset.shuffle(seed=seed)`` over n rows.

    ``datasets`` ``arrow_dataset.py`` ``Dataset.shuffle``: an empty dataset is returned as is;
    otherwise ``generator = np.random.default_rng(seed)`` and the rows are
    ``select(generator.permutation(len(self)))``. HELMET's ``.shuffle(seed).select(range(m))``
    therefore keeps rows ``hf_shuffle_order(n, seed)[:m]``, in that order.
    """
    import numpy as np

    if n <= 0:
        return []
    return [int(i) for i in np.random.default_rng(seed).permutation(n)]


def hf_shuffle_select(rows: list, seed: int, m: int) -> list:
    """HELMET's ``data.shuffle(seed=seed).select(range(min(m, len(data))))``."""
    return [rows[i] for i in hf_shuffle_order(len(rows), seed)[:min(m, len(rows))]]


def _hf_demos(pool: list[dict], seed: int, key: Callable[[dict], object], shots: int, what: str) -> list[dict]:
    """Demonstrations as HELMET draws them for one test sample (``data.py`` ``load_qa`` and
    ``load_msmarco_rerank``): ``pool.shuffle(seed=seed)``, ``drop_duplicates`` on the id (first
    occurrence in shuffled order kept), ``select(range(shots))``. Upstream fails when fewer
    than ``shots`` distinct ids remain; here that is a MissingData reason."""
    if shots <= 0:
        return []
    chosen, seen = [], set()
    for i in hf_shuffle_order(len(pool), seed):
        k = key(pool[i])
        if k in seen:
            continue
        seen.add(k)
        chosen.append(pool[i])
        if len(chosen) == shots:
            return chosen
    raise MissingData(f"{what}: only {len(chosen)} distinct demonstrations for shots={shots} (HELMET's select(range(shots)) fails too)")


def _sample_seed(value: object) -> int:
    """HELMET's per-question demo seed: ``int(sha256(id).hexdigest(), 16) % 2**31``."""
    return int(hashlib.sha256(str(value).encode("utf-8")).hexdigest(), 16) % 2**31


def _token_starts(tokenizer: Tokenizer, text: str, n_ids: int) -> list[int] | None:
    """Character start offset of each token of ``text``, when the tokenizer can say so.

    Our Tokenizer protocol has no offsets, so this looks for the wrapped Hugging Face tokenizer
    (``.tok``: eval.testing.HFTokenizer and eval.lm.HFTokenizerAdapter; ``._tok``:
    train.tokenizer.Tokenizer) and asks it for offsets without special tokens: a
    ``tokenizers.Tokenizer`` (``Encoding.offsets``) or a fast ``transformers`` tokenizer
    (``return_offsets_mapping``). None when unavailable or when the token count disagrees with
    ``tokenizer.encode``.
    """
    for attr in ("tok", "_tok"):
        inner = getattr(tokenizer, attr, None)
        if inner is None:
            continue
        offsets = None
        try:
            enc = inner.encode(text, add_special_tokens=False)
            offsets = getattr(enc, "offsets", None)
            if offsets is None and callable(inner):
                offsets = inner(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        except Exception:  # noqa: BLE001 - a tokenizer without offsets: fall back to decoding
            offsets = None
        if offsets is not None and len(offsets) == n_ids:
            return [int(o[0]) for o in offsets]
    return None


def _drop_last_tokens(tokenizer: Tokenizer, context: str, ids: list[int], drop: int) -> str:
    """``context`` without its last ``drop`` tokens, as HELMET ``model_utils.py`` ``tokenize``
    does: fast tokenizers cut the text at the start offset of the first dropped token
    (``context[:offset_mapping[-drop][0]]``); slow ones decode the kept ids
    (``decode(input_ids[:-drop])``). We take the first route when offsets are reachable
    (``_token_starts``), else the second."""
    if drop <= 0:
        return context
    keep = len(ids) - drop
    starts = _token_starts(tokenizer, context, len(ids))
    if starts is not None:
        return context[:starts[keep]] if keep > 0 else ""
    return tokenizer.decode(ids[:keep]) if keep > 0 else ""


@dataclass
class Truncated:
    """A prompt after HELMET's input truncation (``truncate_context``)."""

    prompt: str
    n_tokens: int
    dropped: int  # context tokens removed by the upstream rule (the prompt's excess over the budget)
    extra: int  # further context tokens removed because re-tokenising still exceeded the budget


def truncate_context(render: Callable[[str], str], context: str, tokenizer: Tokenizer, budget: int, what: str) -> Truncated:
    """HELMET's input truncation (``model_utils.py`` ``tokenize``, which ``HFModel`` and
    ``VLLMModel.prepare_inputs`` call; the API models do the same in their ``prepare_inputs``).

    The full prompt is tokenised; if it has more than ``budget`` = input_max_length -
    generation_max_length tokens, the excess ``t`` is removed from the END of the *context* field
    only (instructions, demos and question untouched): the context is tokenised alone and cut
    before its t-th token from the end, then the prompt is formatted again. Upstream does not
    re-check the length; our engine needs the prompt to fit (``ensure_feasible``), so in the rare
    case that re-tokenisation across the cut still exceeds the budget, the same rule is applied
    again to the remaining excess (counted in ``extra``). Upstream tokenisers add a BOS token to
    both counts; ours add none, which leaves ``t`` unchanged. When the non-context part alone
    exceeds the budget upstream raises an IndexError (the task fails); here it is Infeasible.
    """
    prompt = render(context)
    n = len(tokenizer.encode(prompt))
    if n <= budget:
        return Truncated(prompt, n, 0, 0)
    dropped, extra, first = 0, 0, True
    while n > budget:
        excess = n - budget
        ids = tokenizer.encode(context)
        if excess > len(ids):
            raise Infeasible(f"{what}: the prompt without its context needs {n - len(ids)} tokens > budget {budget}")
        context = _drop_last_tokens(tokenizer, context, ids, excess)
        if first:
            dropped, first = excess, False
        else:
            extra += excess
        prompt = render(context)
        n = len(tokenizer.encode(prompt))
    return Truncated(prompt, n, dropped, extra)


# --------------------------------------------------------------------------------- loaders


def _read_jsonl(path: Path, fields: list[str] | None = None) -> list[dict]:
    """Records of a HELMET JSONL file; every record must have ``fields`` (one clear error if not)."""
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
    if fields:
        _require(rows, fields, path)
    return rows


def _require(rows: list[dict], fields: list[str], path: Path) -> None:
    for n, r in enumerate(rows, start=1):
        for f in fields:
            if f not in r:
                raise OlmPoolError(f"{path}, record {n}: missing field '{f}'. Fix: use the HELMET data archive format (fields {fields})")


def _select(rows: list[dict], key: str, n: int, seed: int, path: Path) -> list[dict]:
    """HELMET's test-sample choice for RAG and re-rank (``data.py`` ``load_qa`` and
    ``load_msmarco_rerank``): ``random.sample(sorted(set(ids)), min(n, #ids))`` right after
    ``random.seed(seed)`` (``eval.py`` ``run_test``; ``load_msmarco_rerank`` seeds again), then
    ``data.filter(lambda x: x[key] in keys)``: every row whose id was drawn, in file order
    (rows sharing an id all stay, as upstream)."""
    values = [r.get(key) for r in rows]
    try:
        keys = sorted(set(values))
    except TypeError as exc:
        raise OlmPoolError(f"{path}: field '{key}' mixes types ({exc}). Fix: use the HELMET data archive file") from exc
    chosen = set(random.Random(seed).sample(keys, min(n, len(keys))))
    return [r for r, v in zip(rows, values) if v in chosen]


# ------------------------------------------------------------------------------ generators


def _json_kv_parts(rng: random.Random, n_kv: int, shots: int) -> tuple[str, str, list[str]]:
    kvs = [(str(uuid.UUID(int=rng.getrandbits(128), version=4)), str(uuid.UUID(int=rng.getrandbits(128), version=4))) for _ in range(n_kv)]
    key, value = kvs[rng.randrange(n_kv)]
    demo_pairs = [(str(uuid.UUID(int=rng.getrandbits(128), version=4)), str(uuid.UUID(int=rng.getrandbits(128), version=4))) for _ in range(shots)]
    context = "JSON data:\n" + json.dumps(dict(kvs), indent=1)
    demos = "\n\n".join(f"Key: {json.dumps(k)}\nCorresponding value: {json.dumps(v)}" for k, v in demo_pairs) + ("\n\n" if shots > 0 else "")
    prompt = (JSON_KV_USER + "\n" + JSON_KV_SYSTEM).format(context=context, demos=demos, question=json.dumps(key))
    return prompt, value, demos


def _qa_context(ctxs: list[dict]) -> str:
    return "\n\n".join(QA_PASSAGE.format(title=c.get("title", ""), text=c["text"]) for c in ctxs)


def _qa_render(question: str, demos: str) -> Callable[[str], str]:
    return lambda context: (QA_USER + "\n" + QA_SYSTEM).format(demos=demos, context=context, question=question)


def _qa_prompt(question: str, ctxs: list[dict], demos: str) -> str:
    return _qa_render(question, demos)(_qa_context(ctxs))


def _json_kv_file_demos(pairs: list, shots: int) -> str:
    """``data.py`` ``load_json_kv``: demo_template "Key: {key}\\nCorresponding value:{value}" with
    value " " + value over the record's first ``shots`` (key, value) pairs, joined by blank
    lines, plus a blank line when shots > 0."""
    return "\n\n".join(f"Key: {k}\nCorresponding value: {v}" for k, v in pairs[:shots]) + ("\n\n" if shots > 0 else "")


def _json_kv_render(question: str, demos: str) -> Callable[[str], str]:
    return lambda context: (JSON_KV_USER + "\n" + JSON_KV_SYSTEM).format(context=context, demos=demos, question=question)


def _qa_demos(demos: list[dict]) -> str:
    if not demos:
        return ""
    return "\n\n".join(QA_DEMO.format(documents="\n\n".join(QA_PASSAGE.format(title=c.get("title", ""), text=c["text"]) for c in d["ctxs"]),
                                      question=d["question"], answer=d["answers"][0]) for d in demos) + "\n\n"


def _rerank_passage(c: dict) -> str:
    if c.get("title"):
        return f"[ID: {c['id']}] Document (Title: {c['title']}): {c['text']}"
    return f"[ID: {c['id']}] Document: {c['text']}"


def _rerank_passage_fmt(with_title: bool) -> Callable[[dict], str]:
    """``load_msmarco_rerank``: one passage template per test sample, with the title when the
    sample's first passage has a 'title' field, applied to its passages and its demos' passages."""
    if with_title:
        return lambda c: f"[ID: {c['id']}] Document (Title: {c['title']}): {c['text']}"
    return lambda c: f"[ID: {c['id']}] Document: {c['text']}"


def _rerank_render(query: str, demos: str) -> Callable[[str], str]:
    return lambda context: (RERANK_USER + "\n" + RERANK_SYSTEM).format(demos=demos, context=context, question=query)


def _rerank_prompt(query: str, ctxs: list[dict], demos: str) -> str:
    return _rerank_render(query, demos)("\n\n".join(_rerank_passage(c) for c in ctxs))


def _rerank_demos(demos: list[dict], fmt: Callable[[dict], str] = _rerank_passage) -> str:
    text = ""
    for d in demos:
        ranking = " > ".join(c["id"] for c in sorted(d["ctxs"], key=lambda c: c["label"], reverse=True))
        text += "\n\n".join(fmt(c) for c in d["ctxs"]) + f"\n\nQuery: {d['query']}\nRanking: {ranking}" + "\n\n"
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


def _icl_context(demos: list[dict], mapping: list[int]) -> str:
    return "\n\n".join(ICL_ITEM.format(text=d["text"], label=str(mapping[int(d["label"])])) for d in demos)


def _icl_render(text: str) -> Callable[[str], str]:
    return lambda context: (ICL_USER + "\n" + ICL_SYSTEM).format(context=context, question=text)


def _icl_prompt(demos: list[dict], mapping: list[int], text: str) -> str:
    return _icl_render(text)(_icl_context(demos, mapping))


def icl_local_seed(text: str, seed: int) -> int:
    """HELMET ``data.py`` ``load_icl`` ``preprocess`` (line 427 at 4526dfb): each test sample's own
    seed, ``(int(sha256(text).hexdigest(), 16) + seed) % 2**31``."""
    return (int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) + seed) % 2**31


def _icl_mapping(text: str, seed: int, num_labels: int) -> list[int]:
    """Labels re-mapped per sample: ``random.seed(local_seed); random.shuffle(range(num_labels))`` (lines 439-442)."""
    mapping = list(range(num_labels))
    random.Random(icl_local_seed(text, seed)).shuffle(mapping)
    return mapping


def icl_test_samples(test: list[dict], n: int, seed: int) -> list[dict]:
    """``load_icl`` lines 414-418: when the test set has more than ``n`` rows, ``test_data.shuffle(seed)``
    then ``balance_labels(test_data, n, seed)`` (label-balanced rounds); else the whole set."""
    if len(test) <= n:
        return list(test)
    return balance_labels(hf_shuffle_select(test, seed, len(test)), n, seed)


def icl_demos(train: list[dict], shots: int, text: str, seed: int) -> list[dict]:
    """One test sample's demonstrations: ``balance_labels(train_data, shot, local_seed)`` with the
    sample's own seed (``load_icl`` line 430; every upstream ICL config names ``..._balance``)."""
    return balance_labels(train, shots, icl_local_seed(text, seed))


# ------------------------------------------------------------------------------ per task


def task_name(task: str, synthetic: bool) -> str:
    return f"{task}:synthetic" if synthetic else task


def shrink_to_fit(build: Callable[[int], tuple], tokenizer: Tokenizer, budget: int, start: int, floor: int,
                  step: Callable[[int], int] = lambda k: 1) -> tuple[int, tuple]:
    """``(k, build(k))`` for the first ``k`` from ``start`` down (by ``step(k)``) whose prompt
    (``build(k)[0]``) fits ``budget`` tokens, or for ``k`` at ``floor`` when none does.

    One sample's content count: ``_fit_count`` sizes the count on the first sample, a longer
    sample then drops content items until it fits too."""
    k = start
    while True:
        built = build(k)
        if len(tokenizer.encode(built[0])) <= budget or k <= floor:
            return k, built
        k -= step(k)


@dataclass
class _TaskGen:
    """One HELMET task at one length: what every builder needs, and how it makes samples."""

    task: str
    length: int
    n_samples: int
    tokenizer: Tokenizer
    settings: HelmetSettings
    ruler_data: RulerData
    ruler_settings: RulerSettings
    gen: int
    """Tokens generated (GEN_LENGTH or eval.helmet.generation_max_length)."""

    @property
    def budget(self) -> int:
        """Prompt tokens: the length minus the generation."""
        return self.length - self.gen

    @property
    def seed(self) -> int:
        return stable_seed(self.settings.seed, "helmet", self.task, self.length)

    @property
    def synthetic(self) -> bool:
        return self.settings.data == "synthetic"

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data)

    def count(self, key: str) -> int | None:
        return _count_for(self.settings, key, self.length)

    def mk(self, i: int, prompt: str, answers: list[str], meta: dict | None = None, n_tokens: int | None = None) -> Sample:
        return Sample(task=self.task, index=i, prompt=prompt, answers=answers, max_new_tokens=self.gen,
                      n_tokens=len(self.tokenizer.encode(prompt)) if n_tokens is None else n_tokens, meta=meta or {})

    def mk_truncated(self, i: int, render: Callable[[str], str], context: str, answers: list[str], meta: dict) -> Sample:
        """The paper-scale path: HELMET's input truncation (truncate_context), recorded in meta."""
        t = truncate_context(render, context, self.tokenizer, self.budget, f"{self.task} sample {i}")
        meta = dict(meta, truncated_tokens=t.dropped, truncation=TRUNCATION_RULE)
        if t.extra:
            meta["extra_truncated_tokens"] = t.extra
        return self.mk(i, t.prompt, answers, meta, n_tokens=t.n_tokens)

    @staticmethod
    def file_info(path: Path, count: int | None, samples: list[Sample]) -> dict:
        cut = [s.meta.get("truncated_tokens", 0) for s in samples]
        return {"source": str(path), "count": count, "truncation": TRUNCATION_RULE,
                "truncated": sum(1 for c in cut if c), "max_truncated_tokens": max(cut, default=0)}

    def require_files(self, *paths: Path) -> None:
        for p in paths:
            if not p.exists():
                raise MissingData(f"HELMET file {p} not found (unpack the HELMET data archive into eval.helmet.data)")


def _ruler_from_file(g: _TaskGen) -> tuple[list[Sample], dict]:
    """data.py load_ruler over the archive file."""
    path = ruler_file(g.data_dir, g.task, g.length)
    g.require_files(path)
    rows = _read_jsonl(path)
    missing_gold = [n for n, r in enumerate(rows, start=1) if "answer" not in r and "outputs" not in r]
    if missing_gold:
        raise OlmPoolError(f"{path}, record {missing_gold[0]}: missing field 'outputs' (or 'answer'). "
                           "Fix: use the HELMET data archive format (fields context, query, type_needle_v, outputs)")
    _require(rows, ["context", "query", "type_needle_v"], path)
    gold = [_ruler_file_answers(r, path, n) for n, r in enumerate(rows, start=1)]  # process_example, every record
    out = []  # load_ruler: data.shuffle(seed).select(range(min(len(data), max_test_samples)))
    for i, j in enumerate(hf_shuffle_select(list(range(len(rows))), g.settings.seed, g.n_samples)):
        out.append(g.mk_truncated(i, _niah_file_render(g.task, rows[j]), rows[j]["context"], gold[j], {"record": j}))
    return out, g.file_info(path, None, out)


def _ruler_synthetic(g: _TaskGen) -> tuple[list[Sample], dict]:
    """Synthetic stand-in: our RULER generator with HELMET's recall templates."""
    samples = generate_task(RULER_FOR[g.task], g.length, g.n_samples, g.tokenizer, g.ruler_data, g.ruler_settings,
                            renderer=_niah_render(g.task), tokens_to_generate=g.gen)
    for s in samples:
        s.task = g.task
    return samples, {"source": "generated", "count": samples[0].meta.get("haystack")}


def _json_kv_from_file(g: _TaskGen) -> tuple[list[Sample], dict]:
    k = g.count("json_kv")
    if k is None:
        raise OlmPoolError("eval.helmet.counts.json_kv must list keys per length when reading the HELMET archive "
                           "(it names the file json_kv/test_k{keys}_dep6.jsonl). Fix: give {length: keys}, e.g. {8192: 105}")
    path = g.data_dir / "json_kv" / JSON_KV_FILE.format(k=k)
    g.require_files(path)
    rows = _read_jsonl(path, ["context", "question", "answer", "demos", "num_kvs"])
    out = []
    for i, r in enumerate(hf_shuffle_select(rows, g.settings.seed, g.n_samples)):  # load_json_kv
        answers = [r["answer"]] if isinstance(r["answer"], str) else [str(a) for a in r["answer"]]
        render = _json_kv_render(r["question"], _json_kv_file_demos(r["demos"], g.settings.shots))
        out.append(g.mk_truncated(i, render, r["context"], answers, {"keys": r["num_kvs"]}))
    return out, g.file_info(path, k, out)


def _json_kv_synthetic(g: _TaskGen) -> tuple[list[Sample], dict]:
    """Synthetic stand-in: UUID pairs generated to fit (upstream's generator is not public data)."""
    seed, shots = g.seed, g.settings.shots

    def build_i(i: int) -> Callable[[int], tuple]:
        def build(k: int):
            prompt, value, _ = _json_kv_parts(random.Random(seed + i), k, shots)
            return prompt, [value]
        return build

    n = _fit_count(build_i(0), g.tokenizer, g.budget, 1, max(2, g.budget // 8), g.count("json_kv"))
    out = []
    for i in range(g.n_samples):
        _, (prompt, answers) = shrink_to_fit(build_i(1 + i), g.tokenizer, g.budget, n, 1)
        out.append(g.mk(i, prompt, answers))
    return out, {"source": "generated", "count": n}


def _rag_synthetic(g: _TaskGen) -> tuple[list[Sample], dict]:
    from olmpool.eval.synthetic import fact_corpus

    seed, shots = g.seed, g.settings.shots
    offset = {"kilt_nq": 11, "kilt_triviaqa": 12, "kilt_popqa_3": 13, "kilt_hotpotqa": 14}[g.task]
    fc = fact_corpus(g.settings.seed + offset)
    items = fc.two_hop if g.task == "kilt_hotpotqa" else fc.single_hop

    def to_rec(q, rng, k):
        gold = [{"title": fc.titles[j], "text": fc.docs[j]} for j in q.context]
        pool = rng.sample(range(len(fc.docs)), min(len(fc.docs), k + len(q.context)))
        others = [{"title": fc.titles[j], "text": fc.docs[j]} for j in pool if j not in q.context][:max(0, k - len(gold))]
        ctxs = gold + others
        rng.shuffle(ctxs)
        return {"question": q.query, "answers": q.outputs, "ctxs": ctxs}

    demos = _qa_demos([to_rec(items[-1 - j], random.Random(seed + 7 + j), 3) for j in range(shots)])

    def build_i(i):
        def build(k):
            rec = to_rec(items[i % (len(items) - shots)], random.Random(seed + i), k)
            return _qa_prompt(rec["question"], rec["ctxs"], demos), rec["answers"]
        return build

    n = _fit_count(build_i(0), g.tokenizer, g.budget, 2, 2000, g.count("rag"))
    out = []
    for i in range(g.n_samples):
        _, (prompt, ans) = shrink_to_fit(build_i(i), g.tokenizer, g.budget, n, 2)
        out.append(g.mk(i, prompt, ans))
    return out, {"source": "synthetic", "count": n}


def _rag_from_file(g: _TaskGen) -> tuple[list[Sample], dict]:
    task, settings = g.task, g.settings
    k = g.count("rag")
    if k is None:
        raise OlmPoolError("eval.helmet.counts.rag must list passages per length when reading the HELMET archive. Fix: give {length: passages}")
    test_path = g.data_dir / "kilt" / KILT_FILES[task][0].format(k=k)
    demo_path = g.data_dir / "kilt" / KILT_FILES[task][1]
    g.require_files(test_path, demo_path)
    fields = ["question", "answers", "ctxs"] + (["s_pop"] if task == "kilt_popqa_3" else [])
    rows, demo_rows = _read_jsonl(test_path, fields), _read_jsonl(demo_path, fields)
    if task == "kilt_popqa_3":  # popularity_threshold 3 (HELMET kilt_popqa_3)
        rows = [r for r in rows if math.log10(r["s_pop"]) < 3]
        demo_rows = [r for r in demo_rows if math.log10(r["s_pop"]) < 3]
    key = "id" if any("id" in r for r in rows) else "question"  # load_qa: "id" in data.column_names
    rows = _select(rows, key, g.n_samples, settings.seed, test_path)
    out = []
    for i, r in enumerate(rows):
        demo_text = ""
        if settings.shots > 0:
            pool = [d for d in demo_rows if d.get(key) != r.get(key)] if task == "kilt_popqa_3" else demo_rows
            demos = _hf_demos(pool, _sample_seed(r[key]), lambda d: d.get(key), settings.shots, str(demo_path))
            demo_text = _qa_demos(demos)
        render = _qa_render(r["question"], demo_text)
        out.append(g.mk_truncated(i, render, _qa_context(r["ctxs"]), list(r["answers"]), {"passages": len(r["ctxs"])}))
    return out, g.file_info(test_path, k, out)


def _rerank_gold(ctxs: list[dict]) -> str:
    return " > ".join(c["id"] for c in sorted(ctxs, key=lambda c: c["label"], reverse=True))


def _rerank_synthetic(g: _TaskGen) -> tuple[list[Sample], dict]:
    from olmpool.eval.synthetic import rerank_item

    seed = g.seed
    demos = _rerank_demos([rerank_item(random.Random(seed + 100 + j), 10).__dict__ for j in range(g.settings.shots)])

    def build_i(i):
        def build(k):
            item = rerank_item(random.Random(seed + i), k)
            return _rerank_prompt(item.query, item.ctxs, demos), item
        return build

    def fit_build(k):
        p, item = build_i(0)(k)
        return p, [_rerank_gold(item.ctxs)]

    n = _fit_count(fit_build, g.tokenizer, g.budget, 3, 2000, g.count("rerank"))
    out = []
    for i in range(g.n_samples):
        k, (prompt, item) = shrink_to_fit(build_i(i), g.tokenizer, g.budget, n, 3)
        qrels = {c["id"]: int(c["label"]) for c in item.ctxs}
        out.append(g.mk(i, prompt, [_rerank_gold(item.ctxs)], {"qrels": qrels, "k_values": [kv for kv in (1, 5, 10) if kv <= k]}))
    return out, {"source": "synthetic", "count": n}


def _rerank_from_file(g: _TaskGen) -> tuple[list[Sample], dict]:
    settings = g.settings
    k = g.count("rerank")
    if k is None:
        raise OlmPoolError("eval.helmet.counts.rerank must list passages per length when reading the HELMET archive. Fix: give {length: passages}")
    test_path = g.data_dir / "msmarco" / MSMARCO_FILES[0].format(k=k)
    demo_path = g.data_dir / "msmarco" / MSMARCO_FILES[1]
    g.require_files(test_path, demo_path)
    fields = ["qid", "query", "ctxs"]
    rows, demo_rows = _read_jsonl(test_path, fields), _read_jsonl(demo_path, fields)
    for c in (c for r in rows + demo_rows for c in r["ctxs"]):
        c["id"] = str(c["id"])
    key = "qid" if any("qid" in r for r in rows) else "query"  # load_msmarco_rerank
    rows = _select(rows, key, g.n_samples, settings.seed, test_path)
    # the demo pool loses the chosen questions once when it is large, else per question
    filtered = len(demo_rows) > 2 * len(rows)
    if filtered:
        qids = {r["qid"] for r in rows}
        demo_rows = [d for d in demo_rows if d["qid"] not in qids]
    out = []
    for i, r in enumerate(rows):
        fmt = _rerank_passage_fmt("title" in r["ctxs"][0]) if r["ctxs"] else _rerank_passage_fmt(False)
        demo_text = ""
        if settings.shots > 0:
            pool = demo_rows if filtered else [d for d in demo_rows if d["qid"] != r["qid"]]
            demos = _hf_demos(pool, abs(_sample_seed(r["qid"])), lambda d: d["qid"], settings.shots, str(demo_path))
            demo_text = _rerank_demos(demos, fmt)
        render = _rerank_render(r["query"], demo_text)
        qrels = {c["id"]: int(c["label"]) for c in r["ctxs"]}
        out.append(g.mk_truncated(i, render, "\n\n".join(fmt(c) for c in r["ctxs"]), [_rerank_gold(r["ctxs"])],
                                  {"qrels": qrels, "passages": len(r["ctxs"])}))
    return out, g.file_info(test_path, k, out)


def _icl_data(g: _TaskGen) -> tuple[list[dict], list[dict], int, str]:
    """(train, test, number of labels, source) of an ICL task: generated, or the exported dataset."""
    name = ICL_NAME[g.task]
    if g.synthetic:
        from olmpool.eval.synthetic import icl_dataset

        ds = icl_dataset(name, g.settings.seed)
        return ds.train, ds.test, ds.num_labels, "synthetic"
    d = g.data_dir / "icl" / name
    for p in (d / "train.jsonl", d / "test.jsonl"):
        if not p.exists():
            raise MissingData(f"ICL file {p} not found (export the {name} dataset as JSON lines with fields text,label)")
    train, test = _read_jsonl(d / "train.jsonl", ["text", "label"]), _read_jsonl(d / "test.jsonl", ["text", "label"])
    num_labels = ICL_NUM_LABELS[name]
    top = max(int(x["label"]) for x in train + test)
    if top >= num_labels:
        raise OlmPoolError(f"{d}: label {top} >= {num_labels} labels of {name} (HELMET data.py load_icl). "
                           "Fix: export the Hugging Face label ids")
    return train, test, num_labels, str(d)


def _icl(g: _TaskGen) -> tuple[list[Sample], dict]:
    settings = g.settings
    train, test, num_labels, source = _icl_data(g)
    test_sel = icl_test_samples(test, g.n_samples, settings.seed)

    def build_for(x):
        def build(shots):
            demos = icl_demos(train, shots, x["text"], settings.seed)
            mapping = _icl_mapping(x["text"], settings.seed, num_labels)
            return _icl_prompt(demos, mapping, x["text"]), [str(mapping[int(x["label"])])]
        return build

    want = g.count(g.task)
    if not g.synthetic and want is not None:  # paper scale: upstream's shots, context truncated to fit
        out = []
        for i, x in enumerate(test_sel):
            demos = icl_demos(train, want, x["text"], settings.seed)
            mapping = _icl_mapping(x["text"], settings.seed, num_labels)
            out.append(g.mk_truncated(i, _icl_render(x["text"]), _icl_context(demos, mapping),
                                      [str(mapping[int(x["label"])])], {"shots": want}))
        return out, g.file_info(Path(source), want, out)
    n = _fit_count(build_for(test_sel[0]), g.tokenizer, g.budget, 1, len(train), want)
    out = []
    for i, x in enumerate(test_sel):
        shots, (prompt, ans) = shrink_to_fit(build_for(x), g.tokenizer, g.budget, n, 1, step=lambda k: max(1, k // 50))
        out.append(g.mk(i, prompt, ans, {"shots": shots}))
    return out, {"source": source, "count": n}


_BUILDERS: dict[tuple[str, bool], Callable[[_TaskGen], tuple[list[Sample], dict]]] = {
    ("ruler", False): _ruler_from_file, ("ruler", True): _ruler_synthetic,
    ("json_kv", False): _json_kv_from_file, ("json_kv", True): _json_kv_synthetic,
    ("rag", False): _rag_from_file, ("rag", True): _rag_synthetic,
    ("rerank", False): _rerank_from_file, ("rerank", True): _rerank_synthetic,
    ("icl", False): _icl, ("icl", True): _icl,
}
"""(kind, synthetic) -> builder; kind is 'ruler' for the RULER recall tasks, 'json_kv', or the category."""


def generate(task: str, length: int, n_samples: int, tokenizer: Tokenizer, settings: HelmetSettings,
             ruler_data: RulerData, ruler_settings: RulerSettings) -> tuple[list[Sample], dict]:
    """Samples of one HELMET task at one length, and provenance info {source, count}; archive
    files add {truncation, truncated (samples cut), max_truncated_tokens} (see the module doc)."""
    gen = (settings.generation_max_length or {}).get(task, GEN_LENGTH[task])
    g = _TaskGen(task, length, n_samples, tokenizer, settings, ruler_data, ruler_settings, gen)
    kind = "ruler" if task in RULER_FOR else "json_kv" if task == "json_kv" else TASK_CATEGORY[task]
    return _BUILDERS[kind, g.synthetic](g)


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
