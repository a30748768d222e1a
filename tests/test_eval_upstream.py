"""Our RULER / HELMET prompts against upstream's verbatim strings at the pinned commits.

``fixtures/upstream_templates.json`` holds the template strings copied from NVIDIA/RULER and
princeton-nlp/HELMET at the commits of ``olmpool.eval.upstream.UPSTREAM`` (file and line per
entry, citation inside the fixture); every comparison is of whole strings.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from olmpool.eval import helmet as H
from olmpool.eval import ruler as R
from olmpool.eval.config import SYNTHETIC
from olmpool.eval.testing import make_test_tokenizer
from olmpool.eval.upstream import UPSTREAM, upstream_record

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "upstream_templates.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def tok():
    return make_test_tokenizer()


def test_fixture_is_from_the_pinned_commits():
    assert FIXTURE["ruler"]["commit"] == UPSTREAM["ruler"]["commit"]
    assert FIXTURE["helmet"]["commit"] == UPSTREAM["helmet"]["commit"]
    assert set(upstream_record(["ruler", "bpb", "longppl"])) == {"ruler", "longppl"}
    assert all(len(v["commit"]) == 40 for v in UPSTREAM.values())


@pytest.mark.parametrize("kind", list(R.TEMPLATES))
def test_ruler_templates_verbatim(kind):
    up = FIXTURE["ruler"]["tasks"][kind]
    assert R.TEMPLATES[kind] == (up["template"], up["answer_prefix"])
    assert R.TOKENS_TO_GENERATE[kind] == up["tokens_to_generate"]
    # prepare.py: config['template'] = Templates['base'].format(task_template=...) + answer_prefix
    assert FIXTURE["ruler"]["base_model_template"].format(task_template=up["template"]) + up["answer_prefix"] == \
        R.TEMPLATES[kind][0] + R.TEMPLATES[kind][1]


def test_ruler_needle_noise_and_document_strings_verbatim():
    assert R.NEEDLE == FIXTURE["ruler"]["niah_needle"]["text"]
    assert R.NOISE + "\n" == FIXTURE["ruler"]["vt_noise"]["text"]  # vt appends the newline; niah's repeat haystack has none
    data = R.load_data(SYNTHETIC, SYNTHETIC, SYNTHETIC, 5)
    qas, docs = data.squad
    prompt = R.qa_input(random.Random(0), qas[0], docs, 3)
    ctx = prompt.split("The following are given documents.\n\n")[1].split("\n\nAnswer the question based")[0]
    doc_prompt = FIXTURE["ruler"]["qa_document_prompt"]["text"]
    chosen = [c.split(":\n", 1)[1] for c in ctx.split("\n\nDocument ")]
    assert ctx == "\n\n".join(doc_prompt.format(i=i + 1, document=d) for i, d in enumerate(chosen))


@pytest.mark.parametrize("ours,theirs", [
    ("JSON_KV_USER", "json_kv_user"), ("JSON_KV_SYSTEM", "json_kv_system"), ("QA_USER", "qa_user"),
    ("QA_SYSTEM", "qa_system"), ("QA_DEMO", "qa_demo"), ("QA_PASSAGE", "qa_passage"), ("RERANK_USER", "rerank_user"),
    ("RERANK_SYSTEM", "rerank_system"), ("ICL_ITEM", "icl_item"), ("ICL_USER", "icl_user"), ("ICL_SYSTEM", "icl_system"),
    ("NIAH_MV_USER", "niah_mv_user"), ("NIAH_MV_SYSTEM", "niah_mv_system"), ("NIAH_USER", "niah_user"),
    ("NIAH_SYSTEM", "niah_system"),
])
def test_helmet_templates_verbatim(ours, theirs):
    assert getattr(H, ours) == FIXTURE["helmet"]["templates"][theirs]["text"]


# ------------------------------------------------------------------ variable tracking one-shot


def _vt(tok, n=3, length=1536, seed=5):
    data = R.load_data(SYNTHETIC, SYNTHETIC, SYNTHETIC, seed)
    st = R.RulerSettings(tokens_to_generate={"variable_tracking": 30}, vt_example_length=500, seed=seed)
    return R.generate_task("vt", length, n, tok, data, st)


def test_vt_example_keeps_the_base_template_and_has_no_stray_space(tok):
    """RULER 7061a05 variable_tracking.py: the example is the whole base-model prompt (the model
    template is stripped only for chat templates, lines 115-119) + ' ' + answers + '\\n\\n', put in
    front of the input + '\\n\\n' (line 182; for the base template the cut-off is position 0)."""
    task_t, prefix = R.TEMPLATES["variable_tracking"]
    for s in _vt(tok):
        example, rest = s.prompt.split("\n\n\n\n", 1)
        assert s.prompt.startswith("Memorize and track")  # no leading space
        assert rest.startswith("Memorize and track") and rest.endswith("they are: ")
        ex_vars = example.split("they are:  ")[1].split(" ")  # prefix ends in a space, then ' ' + answers
        assert len(ex_vars) == 5 and all(re.fullmatch(r"[A-Z]{3}", v) for v in ex_vars)
        value = re.search(r"VAR \w+ = (\d+)", example).group(1)
        context = example.split("the following text.\n\n")[1].split("\nQuestion: Find all")[0]
        assert example == (task_t + prefix).format(context=context, query=value, num_v=5) + " " + " ".join(ex_vars)


def test_vt_example_names_are_redrawn_per_sample(tok):
    """randomize_icl per sample: the example's variable names change, everything else stays."""
    samples = _vt(tok)
    examples = [s.prompt.split("\n\n\n\n", 1)[0] for s in samples]
    names = [e.split("they are:  ")[1].split(" ") for e in examples]
    assert len({tuple(n) for n in names}) == len(samples)
    skeleton = {re.sub(r"\b[A-Z]{3}\b", "X", e) for e in examples}
    assert len(skeleton) == 1
    for e, ns in zip(examples, names):  # the chain in the example uses the re-drawn names
        assert all(f"VAR {v} = " in e for v in ns)


def test_randomize_vt_example_as_upstream():
    ex = "VAR ABC = 12345 VAR DEF = VAR ABC they are: ABC DEF\n\n"
    rng = random.Random(3)
    out = R.randomize_vt_example(rng, ex)
    again = random.Random(3)
    new = ["".join(again.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ", k=3)) for _ in range(2)]
    assert out == f"VAR {new[0]} = 12345 VAR {new[1]} = VAR {new[0]} they are: {new[0]} {new[1]}\n\n"


def test_cwe_example_answers_follow_the_prefix_without_a_space(tok):
    """RULER 7061a05 common_words_extraction.py lines 91-94: template.format(...) + ' '.join(answers)."""
    data = R.load_data(SYNTHETIC, SYNTHETIC, SYNTHETIC, 5)
    st = R.RulerSettings(tokens_to_generate={"common_words_extraction": 120}, seed=5)
    s = R.generate_task("cwe", 2048, 1, tok, data, st)[0]
    assert "most often in the list are:1. " in s.prompt and "most often in the list are: 1. " not in s.prompt


def test_readme_table_names_every_pinned_commit():
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Evaluation: upstream code followed")[1].split("\n### ")[0]
    for entry in UPSTREAM.values():
        assert f"| {entry['repository']} | `{entry['commit']}`" in table
