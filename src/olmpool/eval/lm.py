"""The evaluation engine: a small LanguageModel protocol, greedy decoding and log-likelihoods.

Everything the benchmarks need from a model goes through two operations:

* ``greedy_generate``  - batched prefill, then KV-cached greedy decoding;
* ``token_logprobs``   - per-token log-probabilities of a token sequence (for perplexity,
  LongPPL and bits-per-byte), computed chunk by chunk through the KV cache so memory stays
  bounded at long context.

The protocol mirrors ``olmpool.arch.reference.ReferenceDecoder`` (INTERFACES.md):
``model(input_ids[B,T], cache=cache) -> logits[B,T,V]``, where a cache made by
``model.new_cache(B)`` makes positions continue from ``cache.length``. The decoder has no
padding mask, so a *batch* holds prompts of equal token length (prompts are grouped by length;
a group larger than ``batch_size`` is split). Mixed-length prompts therefore run in separate
batches: results are identical to one-at-a-time decoding, only throughput differs.

Determinism: greedy argmax (ties -> lowest id), no sampling, so outputs depend only on the
model and the inputs. Data generation seeds are derived with ``stable_seed`` (sha256), never
Python's salted ``hash()``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from olmpool import OlmPoolError


@runtime_checkable
class Tokenizer(Protocol):
    """What the evaluation needs from a tokenizer (matches olmpool.train.tokenizer.Tokenizer)."""

    vocab_size: int
    eod: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


@runtime_checkable
class LanguageModel(Protocol):
    """A causal LM with an incremental KV cache (ReferenceDecoder-compatible).

    ``vocab_size``: size of the logits' last dimension.
    ``new_cache(batch)``: an empty cache; ``cache.length`` = tokens already processed.
    ``__call__(input_ids[B,T], cache=None) -> logits[B,T,V]`` (float); with a cache, the new
    tokens attend to the cached ones and the cache is extended in place.
    """

    vocab_size: int

    def new_cache(self, batch: int) -> Any: ...

    def __call__(self, input_ids: torch.Tensor, *, cache: Any = None) -> torch.Tensor: ...


def stable_seed(*parts: object) -> int:
    """A 31-bit seed from any printable parts, identical across processes and Python versions."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()
    return int(h, 16) % (2**31)


@dataclass
class GenerationRequest:
    """One prompt to complete greedily."""

    prompt: list[int]
    max_new_tokens: int
    stop_at_newline: bool = False


def _newline_token_ids(tokenizer: Tokenizer) -> set[int]:
    """Token ids whose text contains a newline (for HELMET's stop_new_line)."""
    out = set()
    for i in range(tokenizer.vocab_size):
        try:
            if "\n" in tokenizer.decode([i]):
                out.add(i)
        except Exception:  # special or unused ids
            continue
    return out


class Engine:
    """Runs generation and scoring for one model + tokenizer.

    ``batch_size``: most prompts (of equal length) prefilled/decoded together.
    ``prefill_chunk``: the longest slice pushed through the model in one call (bounds the
    activation and logits memory at long context; the cache makes chunking exact).
    ``progress``: show tqdm bars.
    """

    def __init__(self, model: LanguageModel, tokenizer: Tokenizer, *, batch_size: int = 4,
                 prefill_chunk: int = 2048, progress: bool = True):
        if batch_size < 1 or prefill_chunk < 1:
            raise OlmPoolError("eval engine: batch_size and prefill_chunk must be >= 1. Fix: set eval.batch_size / eval.prefill_chunk to positive integers")
        self.model = model
        self.tokenizer = tokenizer
        self.device = torch.device(getattr(model, "device", "cpu"))
        """Where input ids are placed (the model's device; results come back to the CPU)."""
        self.batch_size = batch_size
        self.prefill_chunk = prefill_chunk
        self.progress = progress
        self._newlines: set[int] | None = None

    # ------------------------------------------------------------------ helpers
    def _bar(self, total: int, desc: str):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, disable=not self.progress, leave=False)

    def newline_ids(self) -> set[int]:
        if self._newlines is None:
            self._newlines = _newline_token_ids(self.tokenizer)
        return self._newlines

    @torch.no_grad()
    def _prefill(self, ids: torch.Tensor, cache: Any) -> torch.Tensor:
        """Push ids[B,T] through the cache in chunks; return logits of the last position [B,V]."""
        last = None
        # a model that can skip the logits of all but the last position (HFCausalLM) saves the
        # vocabulary projection of every prompt token (about a sixth of a 135M model's prefill)
        only_last = getattr(self.model, "last_logits", None)
        for s in range(0, ids.shape[1], self.prefill_chunk):
            chunk = ids[:, s:s + self.prefill_chunk]
            last = only_last(chunk, cache) if only_last else self.model(chunk, cache=cache)[:, -1, :]  # [B,V]
        assert last is not None
        return last.float()

    # --------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(self, requests: Sequence[GenerationRequest], desc: str = "generate") -> list[list[int]]:
        """Greedy continuations (token ids, without the prompt; eod and the stop newline included)."""
        out: list[list[int]] = [[] for _ in requests]
        groups: dict[tuple[int, int, bool], list[int]] = {}
        for i, r in enumerate(requests):
            if not r.prompt:
                raise OlmPoolError("eval engine: empty prompt. Fix: every generation request needs at least one token")
            groups.setdefault((len(r.prompt), r.max_new_tokens, r.stop_at_newline), []).append(i)
        bar = self._bar(len(requests), desc)
        for (_, max_new, stop_nl), idx in sorted(groups.items()):
            for b in range(0, len(idx), self.batch_size):
                batch = idx[b:b + self.batch_size]
                res = self._generate_batch([requests[i].prompt for i in batch], max_new, stop_nl)
                for i, toks in zip(batch, res):
                    out[i] = toks
                bar.update(len(batch))
        bar.close()
        return out

    @torch.no_grad()
    def _generate_batch(self, prompts: list[list[int]], max_new: int, stop_nl: bool) -> list[list[int]]:
        B = len(prompts)
        ids = torch.tensor(prompts, dtype=torch.long, device=self.device)  # [B,T]
        cache = self.model.new_cache(B)
        logits = self._prefill(ids, cache)  # [B,V]
        eod = self.tokenizer.eod
        stops = self.newline_ids() if stop_nl else set()
        done = [False] * B
        gen: list[list[int]] = [[] for _ in range(B)]
        for step in range(max_new):
            nxt = torch.argmax(logits, dim=-1)  # [B]
            nxt_list = nxt.tolist()
            for b in range(B):
                if done[b]:
                    continue
                t = int(nxt_list[b])
                gen[b].append(t)
                if t == eod or t in stops:
                    done[b] = True
            if all(done) or step == max_new - 1:
                break
            logits = self.model(nxt[:, None], cache=cache)[:, -1, :].float()  # [B,V]
        return gen

    @torch.no_grad()
    def generate_without_cache(self, prompt: list[int], max_new: int) -> list[int]:
        """Greedy decoding that recomputes the whole prefix every step (benchmark baseline only)."""
        seq = list(prompt)
        gen = []
        for _ in range(max_new):
            logits = self.model(torch.tensor([seq], dtype=torch.long, device=self.device), cache=None)[:, -1, :]  # [1,V]
            t = int(torch.argmax(logits, dim=-1)[0])
            gen.append(t)
            seq.append(t)
            if t == self.tokenizer.eod:
                break
        return gen

    def decode(self, ids: list[int]) -> str:
        """Decode a continuation, dropping a trailing eod."""
        if ids and ids[-1] == self.tokenizer.eod:
            ids = ids[:-1]
        return self.tokenizer.decode(ids)

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def token_logprobs(self, ids: Sequence[int]) -> np.ndarray:
        """log p(ids[i] | ids[:i]) for i = 1..len-1, as float64 [len-1] (chunked through the cache)."""
        if len(ids) < 2:
            return np.zeros(0)
        x = torch.tensor([list(ids)], dtype=torch.long, device=self.device)  # [1,T]
        cache = self.model.new_cache(1)
        parts = []
        for s in range(0, x.shape[1] - 1, self.prefill_chunk):
            chunk = x[:, s:min(s + self.prefill_chunk, x.shape[1] - 1)]  # inputs [1,t]
            target = x[:, s + 1:s + 1 + chunk.shape[1]]  # next tokens [1,t]
            logits = self.model(chunk, cache=cache).float()  # [1,t,V]
            lp = torch.log_softmax(logits, dim=-1).gather(-1, target[..., None])[0, :, 0]  # [t]
            parts.append(lp.double().cpu().numpy())
        return np.concatenate(parts)

    def continuation_logprob(self, context: list[int], continuation: list[int]) -> float:
        """Sum of log p(continuation tokens | context) (natural log)."""
        if not continuation:
            raise OlmPoolError("eval engine: empty continuation to score. Fix: the gold answer must tokenize to at least one token")
        if not context:
            context = [self.tokenizer.eod]
        lp = self.token_logprobs(context + continuation)
        return float(lp[len(context) - 1:].sum())


def wrap_reference_decoder(decoder: Any, vocab_size: int) -> LanguageModel:
    """Adapt an ``olmpool.arch.reference.ReferenceDecoder`` to the protocol (eval mode, no grad)."""

    class _Wrapped:
        def __init__(self):
            self.vocab_size = vocab_size
            self.decoder = decoder.eval()
            self.device = next(decoder.parameters()).device

        def new_cache(self, batch: int):
            return self.decoder.new_cache(batch)

        def __call__(self, input_ids, *, cache=None):
            return self.decoder(input_ids, cache=cache)

    return _Wrapped()



class _HFCache:
    """A transformers DynamicCache with the ``length`` attribute the protocol uses."""

    def __init__(self):
        from transformers import DynamicCache

        self.inner = DynamicCache()

    @property
    def length(self) -> int:
        return int(self.inner.get_seq_length())


class HFTokenizerAdapter:
    """A transformers tokenizer in the eval Tokenizer protocol (no special tokens added)."""

    def __init__(self, tok):
        self.tok = tok
        self.vocab_size = len(tok)
        if tok.eos_token_id is None:
            raise OlmPoolError(f"tokenizer {tok.name_or_path}: no eos token. Fix: use a causal-LM tokenizer with an eos token")
        self.eod = int(tok.eos_token_id)
        self.bos_prefix = self._default_prefix(tok)
        """Special tokens the tokenizer puts before a text by default (a Llama BOS): what the
        LongPPL evaluator sees first (upstream ``evaluator_tokenizer(text)``)."""

    @staticmethod
    def _default_prefix(tok) -> list[int]:
        probe = "x"
        plain = list(tok(probe, add_special_tokens=False)["input_ids"])
        full = list(tok(probe)["input_ids"])
        for i in range(len(full) - len(plain) + 1):
            if full[i:i + len(plain)] == plain:
                return [int(t) for t in full[:i]]
        return []

    def encode(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


class HFCausalLM:
    """A local Hugging Face causal LM (e.g. the LongPPL evaluator Llama-3.1-8B) in the protocol."""

    def __init__(self, model):
        self.model = model.eval()
        self.vocab_size = int(model.config.vocab_size)
        self.device = model.device

    def new_cache(self, batch: int) -> _HFCache:
        return _HFCache()

    def __call__(self, input_ids: torch.Tensor, *, cache: Any = None) -> torch.Tensor:
        out = self.model(input_ids=input_ids, past_key_values=cache.inner if cache is not None else None,
                         use_cache=cache is not None)
        return out.logits  # [B,T,V]

    def last_logits(self, input_ids: torch.Tensor, cache: Any) -> torch.Tensor:
        """Logits of the last position only [B,V] (transformers' ``logits_to_keep=1``), extending the cache."""
        out = self.model(input_ids=input_ids, past_key_values=cache.inner, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :]


def load_hf_model(directory: str) -> tuple[HFCausalLM, HFTokenizerAdapter]:
    """(model, tokenizer) from a local Hugging Face directory (offline; fp32 on CPU, bf16 on GPU)."""
    from pathlib import Path

    if not Path(directory).is_dir():
        raise OlmPoolError(f"Hugging Face model directory {directory} not found. Fix: download it beforehand and point eval.longppl.evaluator at 'hf:<dir>'")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, dtype=dtype)
    if torch.cuda.is_available():
        model = model.cuda()
    return HFCausalLM(model), HFTokenizerAdapter(tok)
