"""The tokenized training data: pretraining and Longmino extension token streams (paper Section 3).

The paper pretrains every model on 140B tokens, then extends it on 10B tokens of 64K-context
data from the Longmino mix (Olmo Team et al. 2025), with data selection and order held
constant across models. The OlmPool blend and its order are not published; what is public is
the Olmo 3 mixes on the Hugging Face Hub, as dataset repositories of zstd-compressed JSON-lines
shards (``*.jsonl.zst``), one Dolma document per line with its text in ``text`` (allenai/dolma3
``README.md`` and ``procedures/tokenization/README.md`` at ``DOLMA3_COMMIT``: documents were
tokenized with the Dolma toolkit and the ``allenai/dolma2-tokenizer``).

What is made, per stage: the dataset repository's commit (resolved once, recorded), its shard
files (``*.jsonl.zst``, ``*.json.zst``, ``*.jsonl.gz``, ``*.json.gz``, ``*.jsonl``) sorted by
path and then shuffled with the stage's seed (``pretrain.seed`` / ``extend.seed``), read in that
order, one document per non-empty ``text``, tokenized with ``data.tokenizer_dir`` (no special
tokens added; the dolma2 tokenizer has no BOS: OLMo-core ``TokenizerConfig.dolma2``, eos 100257)
and followed by the tokenizer's end-of-document token, until the first document that takes the
stream past the stage's token budget (``pretrain.tokens``; the largest of ``extend.budgets``).
The stream is written as one Megatron indexed dataset, ``train/<stage>_tokens.bin/.idx``, the
format ``olmpool.train.data.build_blend`` reads (``write_indexed_dataset``: each document + EOD).
``data.pretrain_blend`` / ``data.extend_blend`` derive from it (``olmpool.data.registry``), so
every model reads the same documents, and Megatron's ``GPTDataset`` orders its samples with the
stage seed: the same order for every model, as in the paper.

Memory is bounded (documents are tokenized in batches and streamed to the ``.bin``; only the
per-document lengths of the ``.idx`` are held) and, from the network, the disk holds one
downloaded shard at a time (``Fetcher.release``).
"""

from __future__ import annotations

import gzip
import io
import json
import itertools
import random
from pathlib import Path
from typing import Iterator

from olmpool import OlmPoolError
from olmpool.data.core import Input, Out, Settings
from olmpool.data.fetch import Fetcher

DOLMA3_COMMIT = "0b1327ce7a7f65fbc64d8038f6a9bef4b198e556"
# The Olmo 3 7B mixes on the Hub: a 150B-token sample of Dolma 3 Mix (enough for the 142.6B
# pretraining tokens) and the 50B-token Longmino mix (enough for the largest extension budget).
PRETRAIN_DATASET = "allenai/dolma3_mix-150B-1025"
EXTEND_DATASET = "allenai/dolma3_longmino_mix-50B-1025"
SHARD_SUFFIXES = (".jsonl.zst", ".json.zst", ".jsonl.gz", ".json.gz", ".jsonl")
TEXT_FIELD = "text"
BATCH = 256
STAGES = {"pretrain": PRETRAIN_DATASET, "extend": EXTEND_DATASET}


def prefix(stage: str) -> str:
    """The indexed dataset of ``stage`` relative to the prepared root (no .bin/.idx)."""
    return f"train/{stage}_tokens"


def shard_order(files: list[str], seed: int) -> list[str]:
    """The shards of a dataset repository in the order they are read: path order, then a
    shuffle with ``seed`` (so a budget below the whole mix takes shards from every source)."""
    shards = sorted(f for f in files if f.endswith(SHARD_SUFFIXES))
    random.Random(seed).shuffle(shards)
    return shards


def shard_texts(path: Path, name: str) -> Iterator[str]:
    """The ``text`` of each line of one shard (zstd, gzip or plain JSON lines)."""
    with open(path, "rb") as raw:
        if name.endswith(".zst"):
            try:
                import zstandard
            except ImportError as exc:
                raise OlmPoolError(f"{name}: reading zstd shards needs zstandard. Fix: pip install 'olmpool[data]'") from exc
            stream = zstandard.ZstdDecompressor().stream_reader(raw)
        elif name.endswith(".gz"):
            stream = gzip.GzipFile(fileobj=raw)
        else:
            stream = raw
        with io.TextIOWrapper(stream, encoding="utf-8") as lines:
            for n, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise OlmPoolError(f"{name}, line {n}: not JSON ({exc.msg}). Fix: fetch the shard again") from exc
                if not isinstance(row, dict) or TEXT_FIELD not in row:
                    raise OlmPoolError(f"{name}, line {n}: no '{TEXT_FIELD}' field (a Dolma document has one). "
                                       "Fix: check the dataset id and revision")
                yield row[TEXT_FIELD]


def budget_of(settings: Settings, stage: str) -> int | None:
    return settings.pretrain_tokens if stage == "pretrain" else settings.extend_tokens


def _files(stage: str):
    def files(settings: Settings) -> list[str]:
        if budget_of(settings, stage) is None:
            return []  # a config without this training stage (config/released.yaml)
        return [prefix(stage) + ".bin", prefix(stage) + ".idx"]
    return files


def _build(stage: str):
    dataset = STAGES[stage]

    def build(settings: Settings, fetcher: Fetcher, out: Out) -> dict:
        from tqdm import tqdm

        budget = budget_of(settings, stage)
        seed = settings.pretrain_seed if stage == "pretrain" else settings.extend_seed
        tok = settings.tokenizer()
        commit = fetcher.hf_revision(dataset)
        shards = shard_order(fetcher.hf_repo_files(dataset, commit), seed)
        if not shards:
            raise OlmPoolError(f"{dataset}@{commit}: no shard files ({', '.join(SHARD_SUFFIXES)}). "
                               "Fix: check the dataset id and revision")
        state = {"documents": 0, "tokens": 0, "empty": 0, "shards": []}

        def docs() -> Iterator[list[int]]:
            bar = tqdm(total=budget, unit="tok", unit_scale=True, desc=f"{stage}_tokens", disable=not fetcher.progress)
            with bar:
                for shard in shards:
                    state["shards"].append(shard)
                    path = fetcher.hf_repo_file(dataset, commit, shard)
                    try:
                        batch: list[str] = []
                        for text in itertools.chain(shard_texts(path, shard), [None]):
                            if text:
                                batch.append(text)
                            elif text is not None:
                                state["empty"] += 1
                            if batch and (len(batch) >= BATCH or text is None):
                                for ids in tok.encode_batch(batch):
                                    yield ids
                                    state["documents"] += 1
                                    state["tokens"] += len(ids) + 1
                                    bar.update(len(ids) + 1)
                                    if state["tokens"] > budget:
                                        return
                                batch = []
                    finally:
                        fetcher.release(path)
            raise OlmPoolError(f"{dataset}@{commit}: all {len(shards)} shards give {state['tokens']:,} tokens, "
                               f"fewer than the budget of {budget:,}. Fix: lower the budget in the config "
                               "or use a larger mix")

        out.indexed(prefix(stage), docs(), tok.vocab_size, tok.eod)
        return {"dataset": dataset, "commit": commit, "budget_tokens": budget, "shard_order_seed": seed,
                "shards_available": len(shards), "shards_read": state["shards"], "documents": state["documents"],
                "tokens": state["tokens"], "empty_texts_skipped": state["empty"], "eod": tok.eod,
                "vocab_size": tok.vocab_size, "tokenized_with": str(settings.tokenizer_dir)}
    return build


_KEPT = ("shards (*.jsonl.zst ...) in path order shuffled with {seed}, each non-empty `text` tokenized with "
         "data.tokenizer_dir + EOD, until the first document past {budget}; one Megatron .bin/.idx. "
         "The OlmPool blend and order are not published: this is the public mix in its recorded order, "
         "the same for every model")
INPUTS = [
    Input("pretrain_tokens", "train", f"HF `{PRETRAIN_DATASET}` (Dolma 3 Mix, 150B-token sample)",
          "`main`, commit resolved at fetch",
          _KEPT.format(seed="`pretrain.seed`", budget="`pretrain.tokens` (142.6B)"),
          "paper Section 3 (140B pretraining tokens); allenai/dolma3 README, procedures/tokenization",
          _files("pretrain"), _build("pretrain")),
    Input("extend_tokens", "train", f"HF `{EXTEND_DATASET}` (Dolma 3 Longmino Mix, 50B)",
          "`main`, commit resolved at fetch",
          _KEPT.format(seed="`extend.seed`", budget="the largest of `extend.budgets` (50B)"),
          "paper Section 3 (10B tokens of 64K data from the Longmino mix; 1B / 50B in Figure 4)",
          _files("extend"), _build("extend")),
]
