"""Typed records for the ``eval`` section of config/tiny.yaml, config/debug.yaml and config/paper.yaml.

A data source is either the word ``synthetic`` (generated stand-in, rows labelled
``:synthetic``) or a local path; a path that does not exist yields missing rows with the
reason (never a silent skip, never 0).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


from olmpool import OlmPoolError

SYNTHETIC = "synthetic"
TINY_CORPUS = "tiny_corpus"
WORD_SOURCES = ("auto", "upstream", "builtin", TINY_CORPUS)
MQAR = "mqar"
LANGUAGES = ("words", MQAR)


def _err(field_name: str, what: str, fix: str) -> OlmPoolError:
    return OlmPoolError(f"config eval.{field_name}: {what}. Fix: {fix}")


def _positive_lengths(name: str, values: list) -> None:
    if not isinstance(values, list) or not values or not all(isinstance(v, int) and v > 0 for v in values):
        raise _err(name, f"{values!r} is not a non-empty list of positive integers", "list context lengths in tokens, e.g. [4096, 8192]")
    if sorted(values) != values or len(set(values)) != len(values):
        raise _err(name, "lengths must be increasing and distinct", "sort the list")


@dataclass
class RulerConfig:
    contexts: list[int] = field(default_factory=lambda: [4096, 8192, 16384, 32768, 65536])
    """Sequence lengths (prompt + generation budget, in the model tokenizer's tokens)."""
    samples: int = 500
    """Samples per task and length (RULER run.sh default NUM_SAMPLES=500)."""
    tasks: list[str] | str = "all"
    """'all' (the 13 tasks) or a subset; the per-length mean needs all 13."""
    essay: str = SYNTHETIC
    """Essay haystack: Paul Graham essays JSON/text path, 'synthetic' (generated essay-like text), or
    'tiny_corpus' (filler prose of the tiny corpus language)."""
    squad: str = SYNTHETIC
    """SQuAD 2.0 dev JSON for qa_1, or 'synthetic'."""
    hotpotqa: str = SYNTHETIC
    """HotpotQA dev distractor JSON for qa_2, or 'synthetic'."""
    tokens_to_generate: dict[str, int] = field(default_factory=dict)
    """Overrides of upstream tokens_to_generate per task kind (niah 128, variable_tracking 30,
    common_words_extraction 120, freq_words_extraction 50, qa 32)."""
    vt_example_length: int = 500
    """Token budget of vt's one-shot example (upstream 500)."""
    cwe_full_frequency_from: int = 4096
    """Length from which cwe uses freq_cw 30 / freq_ucw 3 (below: 6 / 1 and a smaller example), upstream 4096."""
    one_shot_examples: bool = True
    """vt and cwe prepend a one-shot example (upstream). Their fixed size (~200-500 tokens) does
    not shrink with the context, so the tiny scale may switch them off (a recorded deviation)."""
    sentence_splitter: str = "auto"
    """How the essay haystack is split into sentences before the needles are inserted: 'nltk'
    (upstream niah.py's nltk sent_tokenize, English Punkt; needs the ruler extra, else the run
    stops with the fix), 'regex' (the tiny-scale stand-in, a recorded deviation), or 'auto'
    (nltk for an essay file, regex for 'synthetic' / 'tiny_corpus'). Loading a config replaces
    'auto' by the splitter it resolves to, so the run record says which one was used."""

    def validate(self) -> None:
        from olmpool.eval.ruler import RULER_TASKS, SENTENCE_SPLITTERS, TOKENS_TO_GENERATE

        _positive_lengths("ruler.contexts", self.contexts)
        if not isinstance(self.samples, int) or self.samples < 1:
            raise _err("ruler.samples", f"{self.samples!r} is not a positive integer", "set e.g. 100")
        if self.tasks != "all":
            bad = [t for t in self.tasks if t not in RULER_TASKS]
            if bad:
                raise _err("ruler.tasks", f"unknown tasks {bad}", f"use 'all' or names from {RULER_TASKS}")
        bad = [k for k in self.tokens_to_generate if k not in TOKENS_TO_GENERATE]
        if bad:
            raise _err("ruler.tokens_to_generate", f"unknown task kinds {bad}", f"use keys from {list(TOKENS_TO_GENERATE)}")
        if not isinstance(self.one_shot_examples, bool):
            raise _err("ruler.one_shot_examples", f"{self.one_shot_examples!r} is not a boolean", "write true or false")
        if self.sentence_splitter not in SENTENCE_SPLITTERS:
            raise _err("ruler.sentence_splitter", f"{self.sentence_splitter!r} is not one of {list(SENTENCE_SPLITTERS)}",
                       "write auto (nltk for an essay file, regex for generated stand-ins), nltk (upstream) or regex (stand-in)")
        for k in ("vt_example_length", "cwe_full_frequency_from"):
            if not isinstance(getattr(self, k), int) or getattr(self, k) < 1:
                raise _err(f"ruler.{k}", "must be a positive integer", "set a token count")

    def task_list(self) -> list[str]:
        from olmpool.eval.ruler import RULER_TASKS

        return list(RULER_TASKS) if self.tasks == "all" else list(self.tasks)


@dataclass
class HelmetConfig:
    contexts: list[int] = field(default_factory=lambda: [8192, 16384, 32768, 65536])
    """Input lengths (HELMET input_max_length, prompt + generation budget)."""
    samples: int = 100
    """Test samples per task (HELMET max_test_samples 100)."""
    icl_samples: int = 500
    """Test samples per ICL task (HELMET 500)."""
    shots: int = 2
    """Demonstrations for recall/RAG/re-rank (HELMET shots 2; ICL shots are the scaled counts)."""
    data: str = SYNTHETIC
    """HELMET data directory (holding json_kv/, ruler/, kilt/, msmarco/ from the HELMET archive and icl/<name>/{train,test}.jsonl), or 'synthetic'."""
    counts: dict[str, Any] = field(default_factory=dict)
    """Content per length: keys json_kv, rag, rerank and the ICL task names; each 'fit' or {length: count}."""
    tasks: list[str] | str = "all"
    """'all' or a subset of the 14 tasks (category means need all of their tasks)."""
    generation_max_length: dict[str, int] = field(default_factory=dict)
    """Overrides of HELMET's generation lengths per task (json_kv 100, ruler_niah_mk_2 50,
    ruler_niah_mk_3 100, ruler_niah_mv 50, RAG 20, msmarco_rerank_psg 200, ICL 20)."""

    def validate(self) -> None:
        from olmpool.eval.helmet import HELMET_TASKS

        _positive_lengths("helmet.contexts", self.contexts)
        for k in ("samples", "icl_samples"):
            if not isinstance(getattr(self, k), int) or getattr(self, k) < 1:
                raise _err(f"helmet.{k}", "must be a positive integer", "set e.g. 100")
        if not isinstance(self.shots, int) or self.shots < 0:
            raise _err("helmet.shots", f"{self.shots!r} is not a non-negative integer", "set 2 (HELMET)")
        allowed = {"json_kv", "rag", "rerank", "icl_trec_coarse", "icl_trec_fine", "icl_banking77", "icl_clinic150", "icl_nlu"}
        for k, v in self.counts.items():
            if k not in allowed:
                raise _err(f"helmet.counts.{k}", "unknown key", f"use keys from {sorted(allowed)}")
            if v != "fit" and not (isinstance(v, dict) and all(isinstance(n, int) and n > 0 for n in v.values())):
                raise _err(f"helmet.counts.{k}", f"{v!r} is neither 'fit' nor a {{length: positive count}} map", "write 'fit' or e.g. {8192: 105}")
        for k, v in self.generation_max_length.items():
            if k not in HELMET_TASKS or not isinstance(v, int) or v < 1:
                raise _err(f"helmet.generation_max_length.{k}", f"{v!r}", f"map task names from {HELMET_TASKS} to positive token counts")
        if self.tasks != "all":
            bad = [t for t in self.tasks if t not in HELMET_TASKS]
            if bad:
                raise _err("helmet.tasks", f"unknown tasks {bad}", f"use 'all' or names from {HELMET_TASKS}")

    def task_list(self) -> list[str]:
        from olmpool.eval.helmet import HELMET_TASKS

        return list(HELMET_TASKS) if self.tasks == "all" else list(self.tasks)


@dataclass
class LongPPLConfig:
    documents: str = SYNTHETIC
    """JSON lines with a 'text' field (GovReport test), 'synthetic' (generated English long documents)
    or 'tiny_corpus' (held-out long documents of the tiny corpus, with its long-range dependencies)."""
    samples: int = 50
    """Documents evaluated (LongPPL: 50)."""
    context: int = 32768
    """Upstream's ``--max-length``: documents are cut to their first ``context - 1`` tokens of the
    selection tokenizer (LongPPL: 32,768, so 32,767 tokens)."""
    min_tokens: int = 16384
    """Only documents with at least this many tokens of the selection tokenizer are used, the
    first ``samples`` of them (LongPPL: 16,384)."""
    select_tokenizer: str = "evaluator"
    """Tokenizer that counts and cuts the documents: 'evaluator' (the key-token evaluator's),
    'model' (the evaluated model's) or 'hf:<local Hugging Face tokenizer directory>'. Upstream
    counts in the tokenizer its GovReport copy was tokenized with (run_ppl.sh, --tokenizer-path)."""
    evaluator: str = "self"
    """Key-token evaluator: 'self' (the evaluated model), an OlmPool checkpoint directory (loaded like
    --checkpoint), or 'hf:<local Hugging Face directory>' (upstream: Llama-3.1-8B)."""
    trunc_len: int = 4096
    """Short-context length (LongPPL: 4096)."""
    sliding_window: int = 1024
    """Tokens sharing one short context (LongPPL: 1024)."""
    alpha: float = 2.0
    """LSD threshold (log-prob gain from the long context)."""
    beta: float = -2.0
    """LCL threshold (log-prob under the long context)."""

    def validate(self) -> None:
        for k in ("samples", "context", "min_tokens", "trunc_len", "sliding_window"):
            if not isinstance(getattr(self, k), int) or getattr(self, k) < 1:
                raise _err(f"longppl.{k}", "must be a positive integer", "set a token count")
        if self.trunc_len >= self.context:
            raise _err("longppl.trunc_len", f"{self.trunc_len} >= context {self.context}", "use a short window well below the document length")
        if self.evaluator != "self" and not isinstance(self.evaluator, str):
            raise _err("longppl.evaluator", f"{self.evaluator!r}", "write 'self' or a checkpoint directory")
        if not isinstance(self.select_tokenizer, str) or not (
                self.select_tokenizer in ("evaluator", "model") or self.select_tokenizer.startswith("hf:")):
            raise _err("longppl.select_tokenizer", f"{self.select_tokenizer!r}",
                       "write 'evaluator', 'model' or 'hf:<local tokenizer directory>'")
        if self.min_tokens > self.context:
            raise _err("longppl.min_tokens", f"{self.min_tokens} > context {self.context}", "documents are truncated to context; lower min_tokens")


@dataclass
class PerplexityConfig:
    splits: dict[str, str] | str = SYNTHETIC
    """{split name: JSON lines path with 'text'} (Paloma-style), 'synthetic' (generated English
    domains), or 'tiny_corpus' (held-out filler / fact / kv / repeat / chain documents in the tiny
    corpus language, the text the tiny models are trained on)."""
    docs_per_split: int = 100
    """Documents scored per split."""
    max_tokens: int = 2048
    """Tokens scored per document (truncation)."""

    def validate(self) -> None:
        if self.splits not in (SYNTHETIC, TINY_CORPUS) and not (isinstance(self.splits, dict) and self.splits):
            raise _err("perplexity.splits", f"{self.splits!r}", "give 'synthetic' or a map split -> file")
        for k in ("docs_per_split", "max_tokens"):
            if not isinstance(getattr(self, k), int) or getattr(self, k) < 1:
                raise _err(f"perplexity.{k}", "must be a positive integer", "set a count")


@dataclass
class BPBConfig:
    benchmarks: dict[str, str] | str = SYNTHETIC
    """{benchmark: JSON lines path with context + continuation (or choices + gold)}, or 'synthetic'."""
    items: int = 1000
    """Items scored per benchmark (first N of the file)."""

    def validate(self) -> None:
        if self.benchmarks != SYNTHETIC and not (isinstance(self.benchmarks, dict) and self.benchmarks):
            raise _err("bpb.benchmarks", f"{self.benchmarks!r}", "give 'synthetic' or a map benchmark -> file")
        if not isinstance(self.items, int) or self.items < 1:
            raise _err("bpb.items", "must be a positive integer", "set a count")


@dataclass
class EvalConfig:
    seed: int = 42
    """Seed of all data generation and sampling."""
    corpus_seed: int | None = None
    """Language seed of the tiny corpus for 'tiny_corpus' sources (default: data.tiny_corpus.seed)."""
    words: str = "auto"
    """Word pool of RULER keys / common words and the synthetic stand-ins: 'upstream' (wonderwords
    2.2.0's lists, as RULER's niah.py / common_words_extraction.py; needs the ruler extra, else the
    run stops with the fix, never a fallback), 'builtin' (the built-in English lists, a recorded
    deviation), 'tiny_corpus' (the tiny corpus language), or 'auto': 'upstream' for a config file
    whose scale is not tiny (config/paper.yaml), 'builtin' for a tiny-scale config and for an eval
    section built in code without a scale (tests). Loading a config replaces 'auto' by the pool it
    resolves to, so the run record says which one was used."""
    language: str = "words"
    """Language of the generated stand-ins: 'words' (English templates and the word pool of
    ``words``) or 'mqar' (the toy scale's retrieval language, olmpool.train.mqar, for models
    trained with data.tiny_corpus.language: mqar): every RULER and HELMET task an MQAR recall
    variant, LongPPL / perplexity / BPB on MQAR documents, task names ending in ':mqar'
    (olmpool.eval.mqar). With 'mqar' every data source must be 'synthetic'."""
    mqar: dict | None = None
    """The MQAR language evaluated (the fields of data.tiny_corpus.mqar); default: the study
    config's data.tiny_corpus.mqar. Loading a config with language 'mqar' fills in every field,
    so the run record says which language was used."""
    batch_size: int = 4
    """Prompts of equal length decoded together."""
    prefill_chunk: int = 2048
    """Tokens per model call during prefill/scoring (memory bound)."""
    ruler: RulerConfig = field(default_factory=RulerConfig)
    helmet: HelmetConfig = field(default_factory=HelmetConfig)
    longppl: LongPPLConfig = field(default_factory=LongPPLConfig)
    perplexity: PerplexityConfig = field(default_factory=PerplexityConfig)
    bpb: BPBConfig = field(default_factory=BPBConfig)

    def validate(self) -> None:
        if self.words not in WORD_SOURCES:
            raise _err("words", f"{self.words!r} is not one of {list(WORD_SOURCES)}",
                       "write 'auto', 'upstream' (wonderwords, paper scale), 'builtin' or 'tiny_corpus'")
        for k in ("seed", "batch_size", "prefill_chunk"):
            v = getattr(self, k)
            if not isinstance(v, int) or (k != "seed" and v < 1):
                raise _err(k, f"{v!r} is not a valid integer", "set a positive integer")
        for name in benchmark_sections():
            getattr(self, name).validate()
        if self.language not in LANGUAGES:
            raise _err("language", f"{self.language!r} is not one of {list(LANGUAGES)}",
                       "write 'words' (English stand-ins) or 'mqar' (models trained on the MQAR language)")
        if self.language == MQAR:
            from olmpool.eval.mqar import language_record

            if self.mqar is not None:
                language_record(self.mqar, "eval.mqar")
            sources = {"ruler.essay": self.ruler.essay, "ruler.squad": self.ruler.squad,
                       "ruler.hotpotqa": self.ruler.hotpotqa, "helmet.data": self.helmet.data,
                       "longppl.documents": self.longppl.documents, "perplexity.splits": self.perplexity.splits,
                       "bpb.benchmarks": self.bpb.benchmarks}
            for name, spec in sources.items():
                if spec != SYNTHETIC:
                    raise _err(name, f"{spec!r} is not generated, but with language 'mqar' every stand-in is "
                               "generated in the MQAR language", "write synthetic, or set eval.language: words")
        elif self.mqar is not None:
            raise _err("mqar", "is set but language is 'words'", "set eval.language: mqar, or remove eval.mqar")

    def resolve(self, scale: str | None = None, mqar: dict | None = None) -> None:
        """Replace 'auto' (words, ruler.sentence_splitter) by what it means for this config;
        ``scale`` is the config file's top-level ``scale`` (None for a section built in code);
        ``mqar``: the study's data.tiny_corpus.mqar, the default of ``mqar``."""
        if self.language == MQAR:
            from olmpool.eval.mqar import language_record

            self.mqar = language_record(self.mqar, "eval.mqar") if self.mqar is not None else \
                language_record(mqar, "data.tiny_corpus.mqar")
        if self.words == "auto":
            self.words = "upstream" if scale not in (None, "debug", "tiny") else "builtin"
        from olmpool.eval.ruler import resolve_sentence_splitter

        self.ruler.sentence_splitter = resolve_sentence_splitter(self.ruler.sentence_splitter, self.ruler.essay)

    def to_dict(self) -> dict:
        return asdict(self)


def benchmark_sections() -> dict[str, type]:
    """``eval.<benchmark>`` section name -> its typed record, from the benchmark registry."""
    from olmpool.eval.benchmarks import BENCHMARKS

    return {name: b.config for name, b in BENCHMARKS.items()}


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise _err(where, f"expected a mapping, got {type(data).__name__}", "write a YAML mapping")
    names = {f.name for f in fields(cls)}
    unknown = [k for k in data if k not in names]
    if unknown:
        raise _err(f"{where}.{unknown[0]}" if where else unknown[0], "unknown field", f"use one of {sorted(names)}")
    sections = benchmark_sections() if cls is EvalConfig else {}
    kwargs = {}
    for k, v in data.items():
        if k in sections:
            kwargs[k] = _build(sections[k], v or {}, k)
        else:
            kwargs[k] = v
    return cls(**kwargs)


def from_dict(section: dict | None, scale: str | None = None, mqar: dict | None = None) -> EvalConfig:
    """Validated eval config of an ``eval`` section; 'auto' values resolved for ``scale``, the
    MQAR language (``language: mqar``) from ``eval.mqar`` or else ``mqar``."""
    cfg = _build(EvalConfig, section or {}, "")
    cfg.validate()
    cfg.resolve(scale, mqar)
    return cfg


def eval_config_from(doc: dict, where: str = "config") -> EvalConfig:
    """The validated ``eval`` section of a parsed study config (``where`` names it in errors)."""
    if "eval" not in doc:
        raise OlmPoolError(f"{where}: no 'eval' section. Fix: add one (see config/tiny.yaml)")
    from olmpool.train.config import study_language

    cfg = from_dict(doc["eval"], scale=doc.get("scale"), mqar=study_language(doc))
    if cfg.corpus_seed is None:
        cfg.corpus_seed = ((doc.get("data") or {}).get("tiny_corpus") or {}).get("seed")
    uses = TINY_CORPUS in (cfg.perplexity.splits, cfg.longppl.documents, cfg.words, cfg.ruler.essay)
    if uses and cfg.corpus_seed is None:
        raise OlmPoolError(f"{where}: eval uses 'tiny_corpus' sources but no corpus seed is known. Fix: set eval.corpus_seed or data.tiny_corpus.seed")
    return cfg


def study_mqar(doc: dict, where: str = "config") -> dict:
    """The retrieval language a parsed study config evaluates (``eval.mqar``, else
    ``data.tiny_corpus.mqar``), validated; an error naming the fix where it has none."""
    lang = eval_config_from(doc, where).mqar
    if lang is None:
        raise OlmPoolError(f"{where}: no retrieval language (data.tiny_corpus.mqar). Fix: use a config "
                           "whose corpus is the mqar language, e.g. config/tiny.yaml")
    return lang


def load_eval_config(path: str | Path) -> tuple[EvalConfig, dict]:
    """(validated eval config, the whole document, ``data.eval_root`` applied) of the study config file ``path``."""
    from olmpool.config import load_study_config

    study = load_study_config(path)
    return study.eval, study.evaluation_doc
