"""RULER's word pools: wonderwords 2.2.0's lists at paper scale, never a silent fallback.

Upstream niah.py keys are ``random.choice`` of the sorted set of every "adjective-noun" of
wonderwords' adjectivelist.txt x nounlist.txt; common_words_extraction.py shuffles the sorted set
of nouns + adjectives + verbs with ``random.Random(random_seed)``. The built-in lists are used
only when configured (``eval.words: builtin``, tests, the tiny scale). Tests that need the
optional wonderwords package are skipped (with the reason) where it is absent.
"""

import bisect
import importlib.util
import random
import re
import sys
from pathlib import Path
import types

import pytest

from olmpool import OlmPoolError
from olmpool.eval import ruler as R
from olmpool.eval import words as W
from olmpool.eval.config import from_dict, load_eval_config

ROOT = Path(__file__).resolve().parents[1]
HAVE_WONDERWORDS = importlib.util.find_spec("wonderwords") is not None
needs_wonderwords = pytest.mark.skipif(not HAVE_WONDERWORDS, reason="wonderwords not installed (pip install 'olmpool[ruler]')")


@pytest.fixture
def source():
    """Start from the built-in pool and restore the previous one afterwards."""
    previous = (W._SOURCE["name"], W._SOURCE["seed"])
    W.set_source("builtin")
    yield W.set_source
    W.set_source("builtin")  # clears the caches even if the test left the same source selected
    W.set_source(*previous)


def _fake_wonderwords(monkeypatch, lists: dict[str, list[str]]):
    module = types.ModuleType("wonderwords")
    module.random_word = types.SimpleNamespace(_get_words_from_text_file=lambda name: list(lists[name]))
    monkeypatch.setitem(sys.modules, "wonderwords", module)


def test_config_resolves_the_pool_by_scale():
    assert load_eval_config(ROOT / "config/paper.yaml")[0].words == "upstream"  # paper scale: wonderwords, required
    assert load_eval_config(ROOT / "config/debug.yaml")[0].words == "tiny_corpus"
    assert from_dict({}).words == "builtin"  # built in code without a scale (tests)
    assert from_dict({}, scale="paper").words == "upstream"
    assert from_dict({}, scale="tiny").words == "builtin"
    assert from_dict({"words": "builtin"}, scale="paper").words == "builtin"  # explicit opt-out
    with pytest.raises(OlmPoolError, match=r"eval\.words.*Fix"):
        from_dict({"words": "wonderwords"})


def test_builtin_is_explicit_and_recorded(source):
    source("builtin")
    nouns, adjs, verbs, name = W.word_lists()
    assert name == "builtin" and "apple" in nouns and "brave" in adjs and "jump" in verbs
    with pytest.raises(OlmPoolError, match="unknown word source"):
        source("auto")


def test_upstream_without_wonderwords_stops_with_the_fix(monkeypatch, source):
    monkeypatch.setitem(sys.modules, "wonderwords", None)
    source("upstream")
    with pytest.raises(OlmPoolError, match=r"olmpool\[ruler\].*eval\.words: builtin"):
        W.word_lists()
    with pytest.raises(OlmPoolError):
        W.needle_words()


def test_paper_run_without_wonderwords_stops_before_any_model_call(monkeypatch, source):
    from olmpool.eval.runner import run_all

    monkeypatch.setitem(sys.modules, "wonderwords", None)
    cfg = from_dict({"ruler": {"contexts": [1024], "tasks": ["niah_single_1"]}}, scale="paper")
    with pytest.raises(OlmPoolError, match="wonderwords"):
        run_all(None, cfg, ["ruler"], ruler_contexts=[1024], helmet_contexts=[], log=lambda m: None, check=False)


def test_other_wonderwords_lists_are_refused(monkeypatch, source):
    """wonderwords 3.x dropped four nouns: its pools, and so the drawn keys, differ from RULER's."""
    _fake_wonderwords(monkeypatch, {"nounlist.txt": ["apple", "pear"], "adjectivelist.txt": ["red"], "verblist.txt": ["run"]})
    source("upstream")
    with pytest.raises(OlmPoolError, match=r"wonderwords==2\.2\.0"):
        W.word_lists()


@needs_wonderwords
@pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning")  # wonderwords 2.2.0's own reader
def test_upstream_pools_and_selection(source):
    import wonderwords

    source("upstream")
    nouns, adjs, verbs, name = W.word_lists()
    assert name == "wonderwords==2.2.0"
    read = wonderwords.random_word._get_words_from_text_file  # the function upstream calls
    assert (nouns, adjs, verbs) == (read("nounlist.txt"), read("adjectivelist.txt"), read("verblist.txt"))
    assert (len(nouns), len(adjs), len(verbs)) == (6786, 912, 1042)

    # niah.py: words = sorted(set(f"{adj}-{noun}")); 6,175,260 distinct keys (duplicated adjectives
    # and hyphenated words collapse), strictly increasing
    keys = W.needle_words()
    assert len(keys) == 6_175_260
    assert all(a < b for a, b in zip(keys[::997], keys[1::997]))
    rng = random.Random(0)
    for _ in range(200):
        k = f"{rng.choice(adjs)}-{rng.choice(nouns)}"
        i = bisect.bisect_left(keys, k)
        assert keys[i] == k
    for seed in range(20):  # a key is random.choice of that list, as generate_random_word
        assert R._rand(random.Random(seed), "words") == random.Random(seed).choice(keys)

    # common_words_extraction.py: sorted(set(nouns + adjs + verbs)), shuffled with Random(random_seed)
    pool = sorted(set(nouns + adjs + verbs))
    assert len(pool) == 8169
    random.Random(42).shuffle(pool)
    assert R.cwe_words(42) == pool


@needs_wonderwords
def test_upstream_words_reach_the_generated_tasks(source):
    from olmpool.eval.testing import make_test_tokenizer

    tok = make_test_tokenizer()
    source("upstream")
    data = R.RulerData()
    st = R.RulerSettings(tokens_to_generate={"common_words_extraction": 120, "niah": 32}, one_shot_examples=False, seed=3)
    cwe = R.generate_task("cwe", 2048, 1, tok, data, st)[0]
    pool = set(R.cwe_words(3))
    listed = re.findall(r"\b\d+\. (\S+)", cwe.prompt.split("most often.\n")[1].split("\nQuestion")[0])
    assert len(listed) > 100 and set(listed) <= pool and set(cwe.answers) <= set(listed)
    niah = R.generate_task("niah_multikey_2", 1024, 1, tok, data, st)[0]
    keys = W.needle_words()
    for key in niah.prompt.split("special magic numbers for ")[1:4]:
        k = key.split(" is:")[0]
        assert keys[bisect.bisect_left(keys, k)] == k
