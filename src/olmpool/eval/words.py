"""Word lists for the RULER generators.

Upstream RULER draws its random words from the ``wonderwords`` package's word lists
(NVIDIA/RULER at the pinned commit 7061a0580d4a1a9531be92f4c08e9f82536cb808,
``olmpool.eval.upstream``; the May 2025 rewrite after it adds a second word list to cwe):

* ``scripts/data/synthetic/niah.py`` (module level, used by ``generate_random_word``): nouns
  and adjectives from ``wonderwords.random_word._get_words_from_text_file("nounlist.txt")`` /
  ``("adjectivelist.txt")``; the key pool is the sorted set of every ``"{adjective}-{noun}"``
  and a key is ``random.choice`` of it (verbs are commented out there);
* ``scripts/data/synthetic/common_words_extraction.py`` (module level, used by
  ``get_example``): nouns + adjectives + ``verblist.txt`` verbs, as a sorted set, shuffled once
  with ``random.Random(random_seed)``, then ``random.sample``-d per example.

``docker/requirements.txt`` installs ``wonderwords`` unpinned; the release line current when
RULER was published (2024) was 2.x, whose last release, 2.2.0, we take as upstream's (the 3.x
releases are later, 3.0.1 from 2025). wonderwords 3.x dropped four nouns from ``nounlist.txt``
("abortion", "brocolli", "idiot", "pray"), which changes the sorted pools and so which key /
common word a given random draw selects. The
``upstream`` source therefore requires exactly the 2.2.0 lists (checked by content hash,
``WONDERWORDS_SHA256``; the ``ruler`` extra of pyproject.toml pins ``wonderwords==2.2.0``)
and never falls back: without them ``word_lists()`` raises an OlmPoolError naming the fix.

Sources (``set_source``; config ``eval.words``, where ``auto`` resolves to ``upstream`` for a
config file of any scale but tiny, e.g. config/paper.yaml, and to ``builtin`` for a tiny-scale
config or an eval section built in code without a scale):

* ``upstream``     the wonderwords 2.2.0 lists, read through the same wonderwords function as
                   upstream (paper scale);
* ``builtin``      the built-in lists below (plain English words written for this project): a
                   stand-in for the tiny scale, tests, or a machine without the ``ruler`` extra,
                   only when configured (recorded as ``word_source`` "builtin");
* ``tiny_corpus``  the tiny corpus's own language (``set_source("tiny_corpus", seed)``: nouns /
                   adjectives / verbs of ``olmpool.train.tiny_corpus.make_language``), so keys,
                   common words and synthetic passages use words the tiny models were trained
                   on and that the tiny tokenizer encodes compactly.

The library default (no ``set_source`` call) is ``builtin``, so tests and direct library use do
not depend on an optional package; ``olmpool evaluate`` always sets the configured source.
Which pool was used is recorded in the run record (``word_source``: "wonderwords==2.2.0",
"builtin" or "tiny_corpus:<seed>").
"""

from __future__ import annotations

import hashlib
import json
import warnings
from contextlib import contextmanager
from functools import lru_cache

from olmpool import OlmPoolError

_ADJ = """able active actual afraid ancient angry annual anxious aware basic bitter blank blind
bold brave brief bright broad broken busy calm careful casual cheap chief civil clean clear
clever close cold common complex cool correct crazy cruel curious dark dead dear deep dense
direct dirty double dry due eager early easy elegant empty equal exact extra fair false famous
fancy fast fat final fine firm flat fluffy formal free fresh friendly full funny gentle giant
glad global golden good grand great green gross guilty happy hard harsh healthy heavy hidden
high hollow honest hot huge humble hungry ideal idle innocent inner internal jolly junior keen
kind large late lazy legal light little lively local lonely long loose loud lovely low loyal
lucky mad major mature mean mental mere mild minor modern moral narrow nasty native neat nervous
new nice noble normal novel odd old open orange original other outer pale past patient perfect
plain pleasant plenty polite poor popular precious pretty prime private proper proud public pure
purple quick quiet rapid rare raw ready real red regular remote rich right rigid rough round
royal rude rural sad safe salty scary secret senior serious severe shallow sharp shiny short
shy silent silly simple single slim slow small smart smooth soft solid sore sour spare special
spicy square stable steep sticky stiff still strange strict strong stupid subtle sudden sunny
super sweet swift tall tame tender tense thick thin tidy tight tiny tired total tough tricky
true typical ugly unique upper urban useful usual vague valid vast violet visible vital vivid
warm weak wealthy weird wet white whole wide wild wise wooden worthy young yellow zealous"""

_NOUN = """account acid actor adult advice age agent air airport alarm album alley anchor angle
animal ankle answer apple april area arm army arrow art aspect attic aunt author autumn baby
badge bag bakery ball banana band bank barn basket bath beach bean bear bed bee beer bell belt
bench berry bike bird birth blade blanket block blood board boat body bone book boot border
bottle bowl box brain branch bread brick bridge brother brush bucket budget bus butter button
cabin cable cake camera camp canal candle canvas cap captain car card carpet carrot castle cat
cattle cave ceiling cell chain chair chalk cheese chest chicken child church circle city class
clock cloud coach coast coat coffee coin collar colony comet cookie copper corn cottage cotton
country cousin cow crab crane cream crowd crown cup curtain cycle dancer daughter deer desert
desk diamond dinner doctor dog doll dolphin door dragon drawer dream dress drum duck eagle ear
earth egg elbow engine error estate event eye fabric face factory farm father feather fence
field finger fire fish flag flame flower flute fog forest fork fountain fox frame friend frog
fruit garage garden gate ghost gift girl glass glove goat gold grape grass guitar hall hammer
hand harbor hat hawk heart hill horse hotel house ice island jacket jar jelly jewel judge
kettle key king kitten knee knife ladder lake lamp lawyer leaf lemon letter library lily lion
lizard lock machine magnet map market meadow melon metal mirror monkey moon mountain mouse mud
museum needle nest net night noodle ocean office onion orbit owl oyster painter palace panda
paper parrot path peach pearl pencil pepper piano pillow pilot planet plate pocket poem pond
potato prince puzzle queen rabbit radio rain river road robin rocket roof rose sail salad
salmon sand school scarf sea seed shadow sheep shell ship shoe shop singer sister skirt sky
snake snow soap sock soldier song soup spider spoon square star station stone storm street
sugar summer sun swan table tail teacher temple tent thread tiger toast tomato tower town toy
train tree truck tulip turtle umbrella uncle valley vase violin wagon wall whale wheel window
wine winter wolf wood worm yacht yard zebra"""

_VERB = """accept add admire agree allow answer appear arrive ask attach avoid bake balance
beg behave belong blink boil borrow bounce breathe bring build burn bury calculate call carry
catch change chase check cheer chew choose clap climb collect comb compare complain count crawl
cross cry dance decide deliver describe dig divide double drag draw dream drink drive drop dry
earn eat enjoy enter escape explain explore fail fetch fill find fix float fold follow forgive
gather glow grab greet grow guard guess guide hang happen hate heal help hide hold hop hug hunt
hurry imagine improve invent invite join joke jump kick kneel knit knock laugh lead learn lend
lift listen live look love marry measure melt mix move nod obey offer open order own pack
paint pass pay peel pick plan plant play point pour pray prefer pretend print promise protect
pull punch push race rain reach read relax remember repair repeat reply rescue rest return ride
ring roll rub run rush sail save say scream search sell send sew shake share shine shout sing
sink sit skate ski sleep slide smell smile sneeze solve sort speak spell spill spin spray
stand stare start stay steer stir stop study swim swing talk taste teach tease tell thank throw
tickle touch trace trade travel trust try turn type vanish visit wait walk wander wash watch
wave weigh whisper win wink wish work worry wrap write yawn yell zoom"""


SOURCES = ("upstream", "builtin", "tiny_corpus")

WONDERWORDS_VERSION = "2.2.0"
WONDERWORDS_FILES = ("nounlist.txt", "adjectivelist.txt", "verblist.txt")
WONDERWORDS_SHA256 = "01d62c9c03ef3a4ed26dd96625b66351e88be2f2fecf02bf5d3424c35f27078b"
"""sha256 of ``json.dumps([nouns, adjectives, verbs])`` as wonderwords 2.2.0 reads them
(6786 nouns, 912 adjectives, 1042 verbs, in file order)."""

_SOURCE: dict = {"name": "builtin", "seed": None}


def _fix(what: str) -> str:
    return (f"{what}. Fix: pip install 'olmpool[ruler]' (wonderwords=={WONDERWORDS_VERSION}, RULER's word lists), "
            "or set eval.words: builtin to use the built-in lists (a recorded deviation)")


def wordlist_digest(nouns: list[str], adjs: list[str], verbs: list[str]) -> str:
    """Content hash of three word lists (compared with ``WONDERWORDS_SHA256``)."""
    return hashlib.sha256(json.dumps([list(nouns), list(adjs), list(verbs)]).encode("utf-8")).hexdigest()


def wonderwords_lists() -> tuple[list[str], list[str], list[str], str]:
    """(nouns, adjectives, verbs, "wonderwords==<version>") exactly as upstream reads them.

    Upstream calls ``wonderwords.random_word._get_words_from_text_file(name)`` (one word per
    line, right-stripped) for ``nounlist.txt``, ``adjectivelist.txt`` and ``verblist.txt``; so do
    we. Raises OlmPoolError when wonderwords is missing or its lists are not the 2.2.0 ones.
    """
    try:
        import wonderwords  # type: ignore[import-not-found]

        read = wonderwords.random_word._get_words_from_text_file
    except (ImportError, AttributeError) as exc:
        raise OlmPoolError(_fix(f"eval.words is 'upstream' (RULER's wonderwords word lists) but wonderwords is not usable ({exc})")) from exc
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("wonderwords")
    except PackageNotFoundError:  # a copy without metadata is judged by its lists alone
        found = "unknown"
    with warnings.catch_warnings():  # 2.2.0 reads its assets with importlib.resources.open_text
        warnings.simplefilter("ignore", DeprecationWarning)
        nouns, adjs, verbs = (list(read(name)) for name in WONDERWORDS_FILES)
    digest = wordlist_digest(nouns, adjs, verbs)
    if digest != WONDERWORDS_SHA256:
        raise OlmPoolError(
            f"wonderwords {found}: its word lists ({len(nouns)} nouns, {len(adjs)} adjectives, {len(verbs)} verbs, "
            f"sha256 {digest[:12]}) are not the ones RULER drew from (wonderwords {WONDERWORDS_VERSION}: 6786 / 912 / 1042, "
            f"sha256 {WONDERWORDS_SHA256[:12]}; 3.x dropped four nouns), so keys and common words would differ. "
            f"Fix: pip install 'wonderwords=={WONDERWORDS_VERSION}' (the olmpool[ruler] extra pins it)")
    return nouns, adjs, verbs, f"wonderwords=={found}"


def set_source(name: str, seed: int | None = None) -> None:
    """Select the word pool: "upstream" (wonderwords 2.2.0, required), "builtin", or "tiny_corpus" (needs seed)."""
    if name not in SOURCES:
        raise OlmPoolError(f"unknown word source {name!r}. Fix: use one of {list(SOURCES)} (config eval.words)")
    if (name, seed) == (_SOURCE["name"], _SOURCE["seed"]):
        return
    _SOURCE.update(name=name, seed=seed)
    from olmpool.eval import synthetic

    for f in (word_lists, needle_words, common_words, synthetic.essay_text, synthetic.fact_corpus, synthetic.icl_dataset):
        f.cache_clear()


@contextmanager
def using_source(name: str, seed: int | None = None):
    """Select a word pool for the duration of a ``with`` block, restoring the previous one."""
    previous = (_SOURCE["name"], _SOURCE["seed"])
    try:
        set_source(name, seed)
        yield
    finally:
        set_source(*previous)


@lru_cache(maxsize=1)
def word_lists() -> tuple[list[str], list[str], list[str], str]:
    """(nouns, adjectives, verbs, source) of the selected pool (see ``set_source``); no fallback."""
    if _SOURCE["name"] == "tiny_corpus":
        from olmpool.train.tiny_corpus import make_language

        lang = make_language(_SOURCE["seed"])
        return list(lang.nouns), list(lang.adjectives), [v for v in lang.verbs], f"tiny_corpus:{_SOURCE['seed']}"
    if _SOURCE["name"] == "upstream":
        return wonderwords_lists()
    return _NOUN.split(), _ADJ.split(), _VERB.split(), "builtin"


@lru_cache(maxsize=1)
def needle_words() -> list[str]:
    """Sorted unique 'adjective-noun' keys (RULER niah.py, module-level ``words``; a key is
    ``rng.choice`` of this list as in ``generate_random_word``)."""
    nouns, adjs, _, _ = word_lists()
    return sorted({f"{a}-{n}" for a in adjs for n in nouns})


@lru_cache(maxsize=1)
def common_words() -> list[str]:
    """Sorted unique nouns + adjectives + verbs (RULER common_words_extraction.py, module-level
    ``words`` before its ``random.Random(random_seed).shuffle``; see ``ruler.cwe_words``)."""
    nouns, adjs, verbs, _ = word_lists()
    return sorted(set(nouns + adjs + verbs))
