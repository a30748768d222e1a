"""Word lists for the RULER generators.

Upstream RULER (``scripts/data/synthetic/niah.py``, ``common_words_extraction.py``) draws
needle keys ("adjective-noun") and common words from the ``wonderwords`` package's
``nounlist.txt`` / ``adjectivelist.txt`` / ``verblist.txt``. When ``wonderwords`` is
importable we use exactly those lists; otherwise these built-in lists (plain English words
written for this project) stand in. Which one was used is recorded in the run manifest
(``word_source``): the tasks are the same, only the word pool differs.

At tiny scale the pool can instead be the tiny corpus's own language (``set_source("tiny_corpus",
seed)``: nouns / adjectives / verbs of ``olmpool.train.tiny_corpus.make_language``), so keys,
common words and synthetic passages use words the tiny models were trained on and that the
tiny tokenizer encodes compactly.
"""

from __future__ import annotations

from functools import lru_cache

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


_SOURCE: dict = {"name": "upstream", "seed": None}


def set_source(name: str, seed: int | None = None) -> None:
    """Select the word pool: "upstream" (wonderwords, else built-in) or "tiny_corpus" (needs seed)."""
    if name not in ("upstream", "tiny_corpus"):
        raise ValueError(name)
    if (name, seed) == (_SOURCE["name"], _SOURCE["seed"]):
        return
    _SOURCE.update(name=name, seed=seed)
    from olmpool.eval import synthetic

    for f in (word_lists, needle_words, common_words, synthetic.essay_text, synthetic.fact_corpus, synthetic.icl_dataset):
        f.cache_clear()


@lru_cache(maxsize=1)
def word_lists() -> tuple[list[str], list[str], list[str], str]:
    """(nouns, adjectives, verbs, source) of the selected pool (see ``set_source``)."""
    if _SOURCE["name"] == "tiny_corpus":
        from olmpool.train.tiny_corpus import make_language

        lang = make_language(_SOURCE["seed"])
        return list(lang.nouns), list(lang.adjectives), [v for v in lang.verbs], f"tiny_corpus:{_SOURCE['seed']}"
    try:  # pragma: no cover - depends on an optional package
        import wonderwords  # type: ignore

        rw = wonderwords.random_word
        nouns = rw._get_words_from_text_file("nounlist.txt")
        adjs = rw._get_words_from_text_file("adjectivelist.txt")
        verbs = rw._get_words_from_text_file("verblist.txt")
        return list(nouns), list(adjs), list(verbs), "wonderwords"
    except Exception:
        return _NOUN.split(), _ADJ.split(), _VERB.split(), "builtin"


@lru_cache(maxsize=1)
def needle_words() -> list[str]:
    """Sorted unique 'adjective-noun' keys (RULER niah.py)."""
    nouns, adjs, _, _ = word_lists()
    return sorted({f"{a}-{n}" for a in adjs for n in nouns})


@lru_cache(maxsize=1)
def common_words() -> list[str]:
    """Sorted unique nouns + adjectives + verbs (RULER common_words_extraction.py, before its shuffle)."""
    nouns, adjs, verbs, _ = word_lists()
    return sorted(set(nouns + adjs + verbs))
