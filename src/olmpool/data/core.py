"""The record of one prepared input, the settings it reads, and the atomic file writer."""

from __future__ import annotations

import gzip
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from olmpool import OlmPoolError
from olmpool.atomic import temp_path
from olmpool.data.fetch import Fetcher
from olmpool.train.config import ExtendConfig, PretrainConfig


@dataclass
class Settings:
    """What the preparation reads from a study config (config/paper.yaml)."""

    config_path: str
    """The config file, as given on the command line (repeated in the manifest's commands)."""
    tokenizer_dir: str | None = None
    """data.tokenizer_dir: decodes the pre-tokenized perplexity splits and counts tokens of the
    attention documents (the OLMo dolma2 tokenizer at paper scale)."""
    seed: int = 42
    """eval.seed: HELMET's run seed (its NLU train/test split uses it, data.py load_icl)."""
    helmet_contexts: list[int] = field(default_factory=lambda: [8192, 16384, 32768, 65536])
    """eval.helmet.contexts: which per-length HELMET archive files are kept."""
    helmet_counts: dict[str, Any] = field(default_factory=dict)
    """eval.helmet.counts: keys / passages per length, which name the archive files."""
    longppl_select_tokenizer: str = "evaluator"
    """eval.longppl.select_tokenizer: which tokenizer counts and cuts the GovReport documents."""
    longppl_evaluator: str = "self"
    """eval.longppl.evaluator ('hf:<dir>' at paper scale: its tokenizer is the selection tokenizer)."""
    longppl_min_tokens: int = 16384
    """eval.longppl.min_tokens."""
    longppl_samples: int = 50
    """eval.longppl.samples."""
    longppl_context: int = 32768
    """eval.longppl.context (upstream --max-length; documents are cut to one token less)."""
    attention_documents: int = 100
    """attention.n_documents: documents kept (an even split over the four sources)."""
    attention_min_tokens: int = 32768
    """Shortest attention document, in tokens of data.tokenizer_dir (the largest query position)."""
    attention_seed: int = 1234
    """attention.seed: the random choice among the candidate documents."""
    pretrain_tokens: int | None = None
    """pretrain.tokens: the pretraining token stream is cut after the first document that takes
    it past this many tokens (None: the config trains nothing, no training data is prepared)."""
    extend_tokens: int | None = None
    """The largest of extend.budgets: the extension stream covers every budget the study runs."""
    pretrain_seed: int = PretrainConfig.seed
    """pretrain.seed: the fixed shuffle of the pretraining mix's shard list."""
    extend_seed: int = ExtendConfig.seed
    """extend.seed: the fixed shuffle of the Longmino mix's shard list."""

    def tokenizer(self):
        from olmpool.train.tokenizer import load_tokenizer

        if not self.tokenizer_dir:
            raise OlmPoolError(f"{self.config_path}: data.tokenizer_dir is not set; the perplexity splits are "
                               "published pre-tokenized and are decoded with it. Fix: point it at the dolma2 tokenizer")
        return load_tokenizer(self.tokenizer_dir)


@dataclass
class Written:
    path: str
    rows: int


class Out:
    """Writes an input's files under ``root``, each through a temporary name then renamed."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.written: list[Written] = []

    def _final(self, rel: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _done(self, tmp: Path, rel: str, rows: int) -> int:
        tmp.replace(self.root / rel)
        self.written.append(Written(rel, rows))
        return rows

    def jsonl(self, rel: str, rows: Iterable[dict]) -> int:
        """JSON lines (gzipped when ``rel`` ends in .gz); returns the number of rows."""
        path = self._final(rel)
        tmp = temp_path(path)
        n = 0
        try:
            with open(tmp, "wb") as fh:
                # no name and mtime 0 in the gzip header: the same rows give the same sha256
                sink = gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) if rel.endswith(".gz") else fh
                for row in rows:
                    sink.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
                    n += 1
                if sink is not fh:
                    sink.close()
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if n == 0:
            tmp.unlink(missing_ok=True)
            raise OlmPoolError(f"{rel}: the conversion produced no rows; the upstream file is empty or not in the expected format")
        return self._done(tmp, rel, n)

    def json(self, rel: str, obj: Any, rows: int) -> int:
        path = self._final(rel)
        tmp = temp_path(path)
        tmp.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
        return self._done(tmp, rel, rows)

    def copy(self, rel: str, src: Path, rows: int) -> int:
        """A verbatim copy of an upstream file."""
        path = self._final(rel)
        tmp = temp_path(path)
        shutil.copyfile(src, tmp)
        return self._done(tmp, rel, rows)

    def indexed(self, rel_prefix: str, docs: Iterable[list[int]], vocab_size: int, eod: int) -> dict:
        """A Megatron indexed dataset ``rel_prefix.bin`` / ``.idx`` (each document + ``eod``, the
        format ``olmpool.train.data.build_blend`` reads), written under a temporary prefix and
        renamed when complete; returns ``{"documents", "tokens"}``."""
        from olmpool.train.data import write_indexed_dataset

        final = self._final(rel_prefix + ".bin").with_suffix("")
        tmp = temp_path(final)
        try:
            stats = write_indexed_dataset(docs, tmp, vocab_size, eod)
        except BaseException:
            for leftover in tmp.parent.glob(tmp.name + "*"):
                leftover.unlink(missing_ok=True)
            raise
        for ext in (".bin", ".idx"):
            Path(str(tmp) + ext).replace(str(final) + ext)
            self.written.append(Written(rel_prefix + ext, stats["documents"]))
        return stats

    def raw(self, rel: str, data: bytes, rows: int) -> int:
        path = self._final(rel)
        tmp = temp_path(path)
        tmp.write_bytes(data)
        return self._done(tmp, rel, rows)


@dataclass(frozen=True)
class Input:
    """One prepared input: where it comes from, what is kept, and how it is made.

    ``files(settings)`` lists the files (relative to the eval root) the evaluators read;
    ``build(settings, fetcher, out)`` fetches, converts and writes exactly those through
    ``out`` and returns what to record about the run (the resolved revision, the selection).
    """

    name: str
    benchmark: str
    """Evaluator that reads it: ruler, helmet, longppl, perplexity, bpb, attention."""
    source: str
    """Public source: Hugging Face dataset id, repository file, URL or PyPI package."""
    revision: str
    """The pinned revision, or how the fetched bytes are pinned when the source has none."""
    kept: str
    """What is kept of the source (the sample selection, done here once)."""
    defined_in: str
    """Where the paper or upstream defines this input."""
    files: Callable[[Settings], list[str]]
    build: Callable[[Settings, Fetcher, Out], dict]


def count_lines(path: Path) -> int:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        return sum(1 for line in f if line.strip())


