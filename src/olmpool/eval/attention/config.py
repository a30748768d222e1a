"""Typed record for the ``attention`` section of config/tiny.yaml, config/debug.yaml and config/paper.yaml."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


from olmpool import OlmPoolError


def _err(field_name: str, what: str, fix: str) -> OlmPoolError:
    return OlmPoolError(f"config attention.{field_name}: {what}. Fix: {fix}")


UPSTREAM_NEEDLES = (
    {"needle": "A new report from the WMO shows that records were once again broken, and in some cases smashed, "
               "for greenhouse gas levels, surface temperatures, ocean heat and acidification.",
     "question": "What does a new report from WMO shows ?",
     "answer": "records were once again broken, and in some cases smashed, for greenhouse gas levels, surface "
               "temperatures, ocean heat and acidification."},
    {"needle": "The best thing to do in Beijing is to take a walk in Chaoyang Park and have a cup of Espresso in the evening.",
     "question": "What is the best thing to do in Beijing ?",
     "answer": "take a walk in Chaoyang Park and have a cup of Espresso in the evening"},
    {"needle": "Mr Green is disliked by everyone because he is a mean person and also he can't ride a horse or dive a car.",
     "question": "Why does everyone dislikes Mr Green ?",
     "answer": "Because he is a mean person and also he can't ride a horse or dive a car."},
)
"""The three needles of nightdessert/Retrieval_Head ``haystack_for_detect/needles.jsonl`` at
commit 3ac171a (fields needle, question, real_needle -> answer), as written there."""


@dataclass
class NeedleConfig:
    """Needle-in-a-haystack attention probe (paper Section 5.3, "Retrieval heads")."""

    enabled: bool = True
    """Run the probe at all."""
    context_lengths: list[int] = field(default_factory=lambda: [4096, 16384, 32768])
    """Prompt lengths in tokens (haystack + needle + question); one row context each."""
    depths: list[float] = field(default_factory=lambda: [0.1, 0.5, 0.9])
    """Where the needle starts, as a fraction of the haystack."""
    needles: list[dict] = field(default_factory=lambda: [dict(n) for n in UPSTREAM_NEEDLES])
    """Needles, each ``{needle, question, answer}`` and each with its own haystack document (the
    i-th needle goes into the i-th haystack). ``needle`` is inserted into the haystack (tokenized
    on its own, after a period); ``question`` fills ``question_template``; ``answer`` is the part
    of the needle the model must give back (upstream ``real_needle``): the retrieval span and the
    reference of the success test. Default: upstream's three (Wu et al. 2024,
    nightdessert/Retrieval_Head haystack_for_detect/needles.jsonl at 3ac171a)."""
    question_template: str = "Based on the content of the book, Question: {question}\nAnswer:"
    """Text after the haystack, with ``{question}``; the model then generates greedily
    (upstream retrieval_head_detection.py line 266)."""
    success_threshold: float = 50.0
    """An example counts towards retrieval scores when the ROUGE-1 recall (x100, stemmed) of
    ``answer`` in the response exceeds this (upstream: > 50)."""
    max_new_tokens: int = 50
    """Greedy generation steps; decoding also stops after a newline (upstream: 50)."""

    def validate(self) -> None:
        if not self.context_lengths or any(int(c) < 8 for c in self.context_lengths):
            raise _err("needle.context_lengths", f"{self.context_lengths} must be a non-empty list of lengths >= 8", "list prompt lengths in tokens")
        if not self.depths or any(not 0.0 <= float(d) <= 1.0 for d in self.depths):
            raise _err("needle.depths", f"{self.depths} must be fractions in [0, 1]", "e.g. [0.1, 0.5, 0.9]")
        if not isinstance(self.needles, list) or not self.needles:
            raise _err("needle.needles", f"{self.needles!r} must be a non-empty list", "give {needle, question, answer} per needle")
        for i, n in enumerate(self.needles):
            if not isinstance(n, dict) or set(n) != {"needle", "question", "answer"} or \
                    not all(isinstance(n[k], str) and n[k].strip() for k in n):
                raise _err(f"needle.needles[{i}]", f"{n!r}", "write {needle: ..., question: ..., answer: ...} with non-empty texts")
        if "{question}" not in self.question_template:
            raise _err("needle.question_template", f"{self.question_template!r} has no {{question}}", "include {question}")
        if not 0.0 <= self.success_threshold < 100.0:
            raise _err("needle.success_threshold", f"{self.success_threshold} outside [0, 100)", "upstream: 50")
        if self.max_new_tokens < 1:
            raise _err("needle.max_new_tokens", f"{self.max_new_tokens} < 1", "generate at least one token")


NAMED_DOCUMENTS = ("generated", "mqar", "random", "essay")
"""Document sources named by ``attention.documents``; any other value is a corpus path."""


@dataclass
class AttentionConfig:
    """Attention statistics at long context (paper Section 5.3)."""

    positions: list[int] = field(default_factory=lambda: [1024, 4096, 16384, 32768])
    """Query positions in tokens: the query is the position-th token (0-based index
    position-1), so it sees ``position`` tokens including itself. The row ``context``."""
    documents: str = "generated"
    """Where the long documents come from: ``generated`` (the tiny corpus generator,
    olmpool.train.tiny_corpus, tokenized with the checkpoint's tokenizer), ``mqar`` (documents
    of the toy scale's retrieval language, olmpool.train.mqar, of the language ``mqar``; needle
    haystacks without the needles' keys, needles inserted after a filler word or a value),
    ``random``
    (uniform random token ids; smoke tests and benchmarks only), ``essay`` (generated English
    essay prose, for real pretrained models) or a path to a JSONL file
    (or a directory of them) with one ``{"text": ...}`` document per line."""
    n_documents: int = 100
    """Documents to average over (paper: 100)."""
    min_doc_tokens: int = 0
    """Skip corpus documents shorter than this many tokens (0: the largest position)."""
    sink_tokens: int = 100
    """Sink = the first ``sink_tokens`` tokens of the visible context (paper: 100)."""
    local_tokens: int = 100
    """Local = the ``local_tokens`` tokens immediately before the query (paper: 100)."""
    saturation_threshold: float = 0.8
    """A head is saturated at a position when its max attention weight exceeds this."""
    per_head_rows: bool = True
    """Write per-(layer, head) rows besides the per-layer and per-kind summaries."""
    seed: int = 1234
    """Seed for generated documents and haystack order."""
    needle: NeedleConfig = field(default_factory=NeedleConfig)
    """Needle-in-a-haystack probe."""
    mqar: dict | None = None
    """The MQAR language of ``documents: mqar`` (the fields of data.tiny_corpus.mqar); default:
    the study config's data.tiny_corpus.mqar. Filled in when the config is loaded."""

    def validate(self) -> None:
        if not self.positions or any(int(p) < 1 for p in self.positions):
            raise _err("positions", f"{self.positions} must be a non-empty list of positive token counts", "e.g. [1024, 4096, 16384, 32768]")
        if len(set(self.positions)) != len(self.positions):
            raise _err("positions", f"{self.positions} has duplicates", "list each position once")
        if self.n_documents < 1:
            raise _err("n_documents", f"{self.n_documents} < 1", "use at least one document")
        if self.sink_tokens < 1 or self.local_tokens < 1:
            raise _err("sink_tokens/local_tokens", f"{self.sink_tokens}/{self.local_tokens} must be >= 1", "paper: 100 each")
        if not 0.0 < self.saturation_threshold < 1.0:
            raise _err("saturation_threshold", f"{self.saturation_threshold} outside (0, 1)", "paper: 0.8")
        if not isinstance(self.documents, str) or not self.documents:
            raise _err("documents", f"{self.documents!r}", f"use one of {', '.join(NAMED_DOCUMENTS)} or a path to JSONL documents")
        if self.documents == "mqar":
            from olmpool.eval.mqar import language_record

            self.mqar = language_record(self.mqar, "attention.mqar")
        elif self.mqar is not None:
            raise _err("mqar", f"is set but documents is {self.documents!r}", "set attention.documents: mqar, or remove attention.mqar")
        self.needle.validate()

    @property
    def max_position(self) -> int:
        return max(self.positions)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AttentionConfig":
        d = dict(d)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise _err(unknown[0], "unknown key", f"use only {sorted(known)}")
        needle = d.pop("needle", None) or {}
        nknown = {f.name for f in fields(NeedleConfig)}
        nunknown = sorted(set(needle) - nknown)
        if nunknown:
            raise _err(f"needle.{nunknown[0]}", "unknown key", f"use only {sorted(nknown)}")
        cfg = cls(**d, needle=NeedleConfig(**needle))
        cfg.positions = [int(p) for p in cfg.positions]
        cfg.needle.context_lengths = [int(c) for c in cfg.needle.context_lengths]
        cfg.needle.depths = [float(x) for x in cfg.needle.depths]
        cfg.validate()
        return cfg


def attention_config_from(whole: dict, where: str = "config") -> AttentionConfig:
    """The validated ``attention`` section of a parsed study config (``where`` names it in errors)."""
    section = whole.get("attention")
    if not isinstance(section, dict):
        raise OlmPoolError(f"{where}: no 'attention' section. Fix: add one (see config/tiny.yaml for an example).")
    if section.get("documents") == "mqar" and section.get("mqar") is None:  # the study's language
        from olmpool.train.config import study_language

        section = {**section, "mqar": dict(study_language(whole) or {})}
    try:
        return AttentionConfig.from_dict(section)
    except TypeError as exc:
        raise OlmPoolError(f"{where}: attention section malformed ({exc}). Fix: see config/tiny.yaml for the fields.") from exc


def load_attention_config(path: str | Path) -> tuple[AttentionConfig, dict]:
    """The validated ``attention`` section of the study config file ``path``, and the whole document."""
    from olmpool.config import load_study_config

    study = load_study_config(path)
    return study.attention, study.evaluation_doc
