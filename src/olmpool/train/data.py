"""Megatron indexed datasets and blends: one loader for tiny and paper scale.

- :func:`tokenize_jsonl` turns JSONL text (one ``{"text": ...}`` per line) into a Megatron
  ``.bin``/``.idx`` pair with ``IndexedDatasetBuilder`` (EOD appended to each document).
- :func:`build_blend` builds a ``BlendedDataset`` of ``GPTDataset``s with
  ``BlendedMegatronDatasetBuilder`` from ``[BlendEntry(path, weight)]``; samples are
  ``seq_len + 1`` tokens of packed documents in a seed-determined order.
- :class:`BatchStream` hands out micro-batches by *global sample index*, so the data
  position is a single integer (``consumed_samples``) that checkpoints record; resuming
  at the same position reproduces the same order exactly, whatever the DP size.
- :func:`document_ids` / :func:`intra_document_mask` give the block-diagonal causal mask
  for intra-document attention masking (documents separated by the EOD token);
  :func:`pack_micro_batch` gives the same documents as one packed row with cu_seqlens
  (THD layout, Transformer Engine attention).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from olmpool import OlmPoolError
from olmpool.train.config import BlendEntry
from olmpool.train.tokenizer import Tokenizer

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# Writing indexed datasets
# --------------------------------------------------------------------------------------

def iter_jsonl_texts(path: str | Path, key: str = "text") -> Iterator[str]:
    """Texts of a JSONL file; a line without ``key`` is an error naming the line."""
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            if key not in rec:
                raise OlmPoolError(f"{path}:{i}: record has no '{key}' field; use --text-key")
            yield rec[key]


def write_indexed_dataset(token_docs: Iterable[list[int]], prefix: str | Path, vocab_size: int,
                          eod: int, min_tokens: int = 0, max_tokens: int | None = None) -> dict:
    """Write documents (token id lists) + EOD to ``prefix.bin/.idx`` atomically.

    Documents whose length (without EOD) is outside [min_tokens, max_tokens) are skipped.
    Returns ``{"documents", "tokens"}`` written.
    """
    from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    tmp = prefix.with_name(prefix.name + ".tmp")
    dtype = DType.optimal_dtype(vocab_size)
    builder = IndexedDatasetBuilder(str(tmp) + ".bin", dtype=dtype)
    n_docs = n_tok = 0
    for ids in token_docs:
        if len(ids) < min_tokens or (max_tokens is not None and len(ids) >= max_tokens):
            continue
        doc = np.asarray(list(ids) + [eod], dtype=dtype)
        builder.add_document(doc, [doc.size])
        n_docs += 1
        n_tok += doc.size
    builder.finalize(str(tmp) + ".idx")
    if n_docs == 0:
        raise OlmPoolError(f"no documents written to {prefix}: none within [{min_tokens}, "
                           f"{max_tokens}) tokens; check the input or the length bounds")
    Path(str(tmp) + ".bin").replace(str(prefix) + ".bin")
    Path(str(tmp) + ".idx").replace(str(prefix) + ".idx")
    return {"documents": n_docs, "tokens": n_tok}


def tokenize_jsonl(inputs: list[str | Path], tokenizer: Tokenizer, prefix: str | Path,
                   text_key: str = "text", min_tokens: int = 0, max_tokens: int | None = None,
                   batch: int = 256) -> dict:
    """JSONL file(s) -> one indexed dataset at ``prefix`` (tokenised in batches)."""
    for p in inputs:
        if not Path(p).is_file():
            raise OlmPoolError(f"input {p} not found; pass existing JSONL files")

    def docs() -> Iterator[list[int]]:
        buf: list[str] = []
        for p in inputs:
            for text in iter_jsonl_texts(p, text_key):
                buf.append(text)
                if len(buf) >= batch:
                    yield from tokenizer.encode_batch(buf)
                    buf = []
        if buf:
            yield from tokenizer.encode_batch(buf)

    return write_indexed_dataset(docs(), prefix, tokenizer.vocab_size, tokenizer.eod,
                                 min_tokens, max_tokens)


# --------------------------------------------------------------------------------------
# Reading: blends of GPTDatasets
# --------------------------------------------------------------------------------------

def _split_weights(blend: list[BlendEntry]) -> tuple[list[str], list[float]]:
    total = sum(b.weight for b in blend)
    return [b.path for b in blend], [b.weight / total for b in blend]


def build_blend(blend: list[BlendEntry], tokenizer: Tokenizer, seq_len: int, num_samples: int,
                seed: int, cache_dir: str | Path) -> "torch.utils.data.Dataset":
    """A Megatron ``BlendedDataset`` (or a single ``GPTDataset``) of ``num_samples`` samples.

    Must be called on every rank when torch.distributed is initialised (Megatron builds the
    index on rank 0 first, then the others read its cache).
    """
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    from olmpool.train.dist import ensure_process_group

    ensure_process_group()  # Megatron's index cache logic asks for the rank
    for b in blend:
        for ext in (".bin", ".idx"):
            if not Path(b.path + ext).is_file():
                raise OlmPoolError(f"data blend entry {b.path}: {b.path + ext} not found; run "
                                   "`olmpool data tiny-corpus` / `olmpool data tokenize` or fix the path")
    paths, weights = _split_weights(blend)
    config = GPTDatasetConfig(
        random_seed=seed,
        sequence_length=seq_len,
        blend=(paths, weights if len(paths) > 1 else None),
        split="1,0,0",
        path_to_cache=str(cache_dir),
        tokenizer=tokenizer,
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,
        mmap_bin_files=True,
    )

    def on_rank() -> bool:
        return True

    built = BlendedMegatronDatasetBuilder(GPTDataset, [int(num_samples), 0, 0], on_rank, config).build()
    return built[0]


@dataclass
class MicroBatch:
    """One micro-batch (all tensors on CPU; the loop moves them)."""

    tokens: torch.Tensor
    """LongTensor[B, T] input ids."""
    labels: torch.Tensor
    """LongTensor[B, T] next-token ids."""
    loss_mask: torch.Tensor
    """FloatTensor[B, T] 1 where the label counts."""
    position_ids: torch.Tensor
    """LongTensor[B, T]."""


class BatchStream:
    """Micro-batches by global sample index: step s, micro-batch m, DP rank r reads samples
    ``s*G + (m*D + r)*b ... + b - 1`` where G = global batch (sequences), D = DP size and
    b = micro-batch size. Deterministic and resumable from ``consumed_samples``."""

    def __init__(self, dataset, global_batch: int, micro_batch: int, dp_rank: int = 0, dp_size: int = 1):
        if global_batch % (micro_batch * dp_size):
            raise OlmPoolError(
                f"global batch of {global_batch} sequences is not divisible by micro_batch_size "
                f"{micro_batch} x data-parallel size {dp_size}; adjust global_batch_tokens or "
                "micro_batch_size")
        self.dataset = dataset
        self.global_batch = global_batch
        self.micro_batch = micro_batch
        self.dp_rank = dp_rank
        self.dp_size = dp_size

    @property
    def accumulation_steps(self) -> int:
        return self.global_batch // (self.micro_batch * self.dp_size)

    def micro_batches(self, step: int) -> list[MicroBatch]:
        """The micro-batches this rank processes for optimizer step ``step`` (0-based)."""
        out = []
        for m in range(self.accumulation_steps):
            start = step * self.global_batch + (m * self.dp_size + self.dp_rank) * self.micro_batch
            samples = [self.dataset[i] for i in range(start, start + self.micro_batch)]
            out.append(MicroBatch(
                tokens=torch.stack([torch.as_tensor(s["tokens"]) for s in samples]).long(),
                labels=torch.stack([torch.as_tensor(s["labels"]) for s in samples]).long(),
                loss_mask=torch.stack([torch.as_tensor(s["loss_mask"]) for s in samples]).float(),
                position_ids=torch.stack([torch.as_tensor(s["position_ids"]) for s in samples]).long(),
            ))
        return out


# --------------------------------------------------------------------------------------
# Intra-document masking
# --------------------------------------------------------------------------------------

def document_ids(tokens: torch.Tensor, eod: int) -> torch.Tensor:
    """LongTensor[B, T]: index of the document each position belongs to. A document ends
    *with* its EOD token; the token after an EOD starts the next document."""
    is_eod = (tokens == eod).long()                       # [B, T]
    starts = torch.cumsum(is_eod, dim=1) - is_eod         # EODs counted strictly before t
    return starts


def intra_document_mask(tokens: torch.Tensor, eod: int) -> torch.Tensor:
    """BoolTensor[B, 1, T, T], Megatron convention (True = masked out): causal and no
    attention across document boundaries."""
    doc = document_ids(tokens, eod)                        # [B, T]
    T = tokens.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool).tril()     # [T, T] True = allowed
    same = doc[:, :, None] == doc[:, None, :]              # [B, T, T]
    allowed = same & causal
    return ~allowed[:, None]                               # [B, 1, T, T]


def cu_seqlens(tokens: torch.Tensor, eod: int) -> torch.Tensor:
    """Int32 cumulative document lengths of one packed sequence (for THD/varlen kernels):
    [0, end_of_doc_1, ..., T]. Input LongTensor[T]."""
    return _document_boundaries(tokens[None], eod).int()


def _document_boundaries(tokens: torch.Tensor, eod: int) -> torch.Tensor:
    """LongTensor[n + 1]: 0, then the end (exclusive) of each of the n documents of
    ``tokens`` [B, T] read row after row, as offsets into the flattened [B * T] tokens.  A
    document ends with its EOD token (as in `document_ids`) or at the end of its row, so no
    document spans two rows; an EOD in a row's last position ends one document, not two."""
    ends = tokens == eod                                   # [B, T] True where a document ends
    ends[:, -1] = True                                     # (a new tensor: tokens is untouched)
    offsets = ends.flatten().nonzero().flatten() + 1       # [n]
    return torch.cat([offsets.new_zeros(1), offsets])      # [n + 1]


@dataclass
class PackedMicroBatch:
    """A micro-batch as one packed row (THD layout: batch and sequence collapsed into one
    token dimension, documents back to back), the input format of Transformer Engine's
    attention with megatron's ``PackedSeqParams(qkv_format="thd")``.

    Built by :func:`pack_micro_batch`.  The real tokens of document d sit at positions
    ``cu_seqlens_padded[d] ... cu_seqlens_padded[d] + (cu_seqlens[d+1] - cu_seqlens[d]) - 1``
    of the row, followed by padding up to the next offset (Transformer Engine's convention for
    ``cu_seqlens_q`` / ``cu_seqlens_q_padded``).  Without padding ``cu_seqlens_padded`` is
    None and document d is ``cu_seqlens[d] ... cu_seqlens[d+1] - 1``."""

    tokens: torch.Tensor
    """LongTensor[1, t]: input ids (EOD at padding positions)."""
    labels: torch.Tensor
    """LongTensor[1, t]: next-token ids (EOD at padding positions)."""
    loss_mask: torch.Tensor
    """FloatTensor[1, t]: the micro-batch's loss mask, 0 at padding positions."""
    position_ids: torch.Tensor
    """LongTensor[1, t]: the micro-batch's position ids (0 at padding).  Megatron's GPTModel
    does not read them with RoPE; the rotary angles come from ``cu_seqlens``."""
    cu_seqlens: torch.Tensor
    """IntTensor[n + 1] (int32): 0, then the cumulative real lengths of the n documents."""
    cu_seqlens_padded: torch.Tensor | None
    """IntTensor[n + 1] (int32): 0, then the cumulative padded lengths (offsets in the row);
    None when nothing is padded (``multiple`` = 1)."""
    max_seqlen: int
    """Length of the longest document, padding included."""
    index: torch.Tensor
    """LongTensor[B * T]: position in the packed row of each token of the [B, T] micro-batch
    (row-major); ``packed[0, index].view(B, T)`` undoes the packing."""


def pack_micro_batch(mb: MicroBatch, eod: int, multiple: int = 1) -> PackedMicroBatch:
    """The micro-batch ``mb`` ([B, T] tensors) as one packed row with its documents' cu_seqlens.

    Documents are those of :func:`intra_document_mask` (a document ends with its EOD token),
    and a row end also ends a document, so the block-diagonal causal attention over the
    packed row is exactly the intra-document mask of every row.  ``multiple`` > 1 pads every
    document at its end to a multiple of ``multiple`` tokens: Transformer Engine's context
    parallelism cuts each packed sequence into 2*cp equal chunks (megatron-core 0.16.1
    ``utils.get_thd_batch_on_this_cp_rank`` -> ``tex.thd_get_partitioned_indices``), so the
    training loop passes 2*cp there.  Padding tokens are EOD with loss mask 0."""
    B, T = mb.tokens.shape
    cu = _document_boundaries(mb.tokens, eod)              # [n + 1] offsets in the B*T tokens
    lengths = cu.diff()                                    # [n] real document lengths
    padded = (lengths + multiple - 1) // multiple * multiple                  # [n] (= lengths if 1)
    cu_padded = torch.cat([cu.new_zeros(1), padded.cumsum(0)])                # [n + 1]
    doc = torch.repeat_interleave(torch.arange(len(lengths)), lengths)         # [B*T] document of each token
    index = torch.arange(B * T) - cu[doc] + cu_padded[doc]                     # [B*T] place in the row
    t = int(cu_padded[-1])

    def place(x: torch.Tensor, fill) -> torch.Tensor:   # x [B, T] -> [1, t]
        row = torch.full((t,), fill, dtype=x.dtype)
        row[index] = x.flatten()
        return row[None]

    return PackedMicroBatch(
        tokens=place(mb.tokens, eod), labels=place(mb.labels, eod), loss_mask=place(mb.loss_mask, 0),
        position_ids=place(mb.position_ids, 0), cu_seqlens=cu.int(),
        cu_seqlens_padded=None if multiple == 1 else cu_padded.int(), max_seqlen=int(padded.max()),
        index=index)
