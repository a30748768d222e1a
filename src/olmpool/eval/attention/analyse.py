"""End-to-end attention analysis of one checkpoint: load, run documents and needles, tidy rows.

Checkpoints (all end up behind the ReferenceDecoder ``attn_capture`` protocol):

* Megatron (olmpool's own training output): ``olmpool.train.checkpoint.load_for_eval`` ->
  ``olmpool.arch.reference.load_megatron_into_reference`` -> ``ReferenceDecoder``. The
  model runs with the shape and RoPE theta the checkpoint was trained at
  (``EvalCheckpoint.shape``).
* Hugging Face (a directory with ``config.json``), default: the audited import
  ``olmpool.arch.hf_import.import_hf_checkpoint`` (config checked against the registry row
  at the config's scale; RoPE theta of the pretrain or extend stage) -> ReferenceDecoder.
  Differences the audit finds are refused unless accepted by kind (``accept``), and then
  the *registry's* architecture is what runs - e.g. a released checkpoint whose config
  says theta 500K where the model was extended with 8M.
* Hugging Face, ``hf_direct=True``: the checkpoint exactly as transformers runs it
  (``AutoModelForCausalLM``, local files only), wrapped by `hf_capture.HFCaptureModel`,
  which calls the same hook from inside its attention. For models whose class the audited
  import does not cover, or to see what the shipped config does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from olmpool import OlmPoolError
from olmpool.eval.attention.config import AttentionConfig
from olmpool.eval.attention.documents import take_documents
from olmpool.eval.attention.driver import StatsCollector, run_documents
from olmpool.eval.attention.needle import build_example, needle_records, run_needle
from olmpool.eval.attention.tidy import head_records_to_rows, model_rows, to_frame

log = logging.getLogger("olmpool.attention")

"""Training-stage names in checkpoint meta -> stage labels of result rows (as `olmpool evaluate`)."""


@dataclass
class LoadedModel:
    """A model behind the capture protocol, with what the analysis needs around it."""

    model: object
    """forward(input_ids, *, cache=None, attn_capture=None) -> logits; new_cache(batch)."""
    tokenizer: object | None
    """encode(str) -> list[int] and .eod, or None (then only random documents work)."""
    vocab_size: int
    stage: str | None
    """Stage label from the checkpoint's meta (pretrain -> pretrained, extend -> extended), if any."""
    source: str
    """``megatron`` or ``huggingface``."""
    model_sheet: dict | None = None
    """Model-sheet fields read from a directly run Hugging Face config (for a model outside the registry)."""
    dtype: str = "float32"
    """Precision the model runs in."""


def _hf_tokenizer(directory: Path):
    """olmpool's tokenizer loader if it understands the directory, else transformers', else None."""
    try:
        from olmpool.train.tokenizer import load_tokenizer

        return load_tokenizer(directory)
    except Exception:  # noqa: BLE001 - fall back to the transformers tokenizer below
        pass
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except Exception:  # noqa: BLE001 - no tokenizer: only random documents can be used
        return None

    class _Wrap:
        eod = tok.eos_token_id

        @staticmethod
        def encode(text: str) -> list[int]:
            return tok.encode(text, add_special_tokens=False)

        @staticmethod
        def decode(ids: list[int]) -> str:
            return tok.decode(list(ids), skip_special_tokens=True)

    return _Wrap()


def load_model(checkpoint: str | Path, arch_id: str | None, *, device: str = "cpu",
               registry: str | Path = "config/architectures.tsv", scale: str = "debug",
               theta_stage: str = "extend", hf_direct: bool = False, accept: tuple[str, ...] = ()) -> LoadedModel:
    """Load a Megatron or Hugging Face checkpoint for the analysis (errors name the fix).

    ``scale``/``theta_stage``/``accept`` apply to the audited Hugging Face import only
    (``theta_stage``: ``pretrain`` or ``extend``, which RoPE theta the registry row runs with).
    """
    from olmpool.arch.registry import load_registry

    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise OlmPoolError(f"--checkpoint {checkpoint}: not found. Fix: pass a Megatron checkpoint directory or a Hugging Face model directory.")
    known = load_registry(registry)
    if arch_id is None and not (hf_direct and (checkpoint / "config.json").exists()):
        raise OlmPoolError("only a Hugging Face directory run with --hf-direct can be a model outside the registry. "
                           "Fix: pass --arch ID, or --hf-direct --model NAME for a Hugging Face directory")
    if arch_id is not None and arch_id not in known:
        raise OlmPoolError(f"--arch {arch_id!r}: not in {registry}. Fix: use a registry id (e.g. {next(iter(known))}) or add a row for the model.")
    if theta_stage not in ("pretrain", "extend"):
        raise OlmPoolError(f"theta stage {theta_stage!r}: use 'pretrain' or 'extend'.")

    if (checkpoint / "config.json").exists():
        if hf_direct:
            from transformers import AutoModelForCausalLM

            from olmpool.eval.attention.hf_capture import HFCaptureModel

            from olmpool.eval.hf_checkpoint import model_sheet_fields

            dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32  # bf16 on a GPU, fp32 on the CPU
            hf = AutoModelForCausalLM.from_pretrained(str(checkpoint), local_files_only=True, dtype=dtype).to(device)
            return LoadedModel(model=HFCaptureModel(hf), tokenizer=_hf_tokenizer(checkpoint),
                               vocab_size=int(hf.config.vocab_size), stage=None, source="huggingface-direct",
                               model_sheet=model_sheet_fields(hf.config, sum(p.numel() for p in hf.parameters())),
                               dtype=str(dtype).replace("torch.", ""))
        from olmpool.arch.hf_import import import_hf_checkpoint
        from olmpool.arch.reference import load_megatron_into_reference

        shape, sd = import_hf_checkpoint(checkpoint, arch_id, registry=registry, scale=scale, stage=theta_stage,
                                         accept=tuple(accept))
        model = load_megatron_into_reference(sd, shape).to(device).eval()
        return LoadedModel(model=model, tokenizer=_hf_tokenizer(checkpoint), vocab_size=int(shape.vocab_size),
                           stage=None, source="huggingface")

    from olmpool.eval.checkpoints import load_training_model

    def check(ck, tokenizer) -> None:
        if ck.arch.id != arch_id:
            raise OlmPoolError(f"--arch {arch_id!r} but checkpoint {checkpoint} holds {ck.arch.id!r}. Fix: pass --arch {ck.arch.id}.")

    tm = load_training_model(checkpoint, check=check, device=device)
    from olmpool.stages import row_stage

    stage = tm.meta.get("stage")
    return LoadedModel(model=tm.decoder.eval(), tokenizer=tm.tokenizer, vocab_size=int(tm.shape.vocab_size),
                       stage=row_stage(stage, unknown=None), source="megatron")


@dataclass
class NeedleSpec:
    """One needle as token ids (and its answer text for the success test, when there is a tokenizer)."""

    needle: list[int]
    question: list[int]
    answer: list[int]
    answer_text: str | None


def _needle_specs(cfg: AttentionConfig, tokenizer, vocab_size: int) -> list[NeedleSpec]:
    """The configured needles as token ids: needle, ``question_template`` with the question, answer.

    Without a tokenizer (random documents): as many key-value copy probes of random ids as
    needles - needle = 12 ids, question = its first 4 ids, answer = the remaining 8 (a model
    that retrieves continues the question with the needle's rest).
    """
    n = cfg.needle
    if tokenizer is not None:
        return [NeedleSpec(tokenizer.encode(x["needle"]), tokenizer.encode(n.question_template.format(question=x["question"])),
                           tokenizer.encode(x["answer"]), x["answer"]) for x in n.needles]
    gen = torch.Generator().manual_seed(cfg.seed + 7)
    out = []
    for _ in n.needles:
        needle = torch.randint(0, vocab_size, (12,), generator=gen).tolist()
        out.append(NeedleSpec(needle, needle[:4], needle[4:], None))
    return out


def _token_sets(tokenizer, vocab_size: int) -> tuple[set[int], set[int]]:
    """(period ids, newline ids) of a tokenizer: the last token of '.' and ' .' (upstream's
    ``period_tokens`` for LLaMA are these two), and every id whose text contains a newline
    (upstream stops at the newline token)."""
    if tokenizer is None:
        return set(), set()
    periods = {ids[-1] for ids in (tokenizer.encode("."), tokenizer.encode(" .")) if ids}
    newlines = set()
    decode = getattr(tokenizer, "decode", None)
    if decode is not None:
        for i in range(vocab_size):
            try:
                if "\n" in decode([i]):
                    newlines.add(i)
            except Exception:  # noqa: BLE001 - special or unused ids have no text
                continue
    return periods, newlines


def analyse(cfg: AttentionConfig, lm: LoadedModel, *, model_id: str, stage: str, needle: bool = True,
            device: str = "cpu") -> tuple[pd.DataFrame, dict]:
    """All attention rows for one model, and a summary of what was run."""
    t0 = time.perf_counter()
    docs = take_documents(cfg, cfg.n_documents, tokenizer=lm.tokenizer, vocab_size=lm.vocab_size)
    if len(docs) < cfg.n_documents:
        log.warning("only %d of %d documents reach %d tokens; using those", len(docs), cfg.n_documents, cfg.max_position)
    collector = StatsCollector(positions=cfg.positions, sink_tokens=cfg.sink_tokens, local_tokens=cfg.local_tokens,
                               saturation_threshold=cfg.saturation_threshold)
    used = run_documents(lm.model, docs, collector, n_documents=len(docs), device=device)
    rows = head_records_to_rows(collector.per_head(), model=model_id, stage=stage, per_head=cfg.per_head_rows)
    info = {"documents_used": used, "documents_seconds": round(time.perf_counter() - t0, 3)}
    log.info("documents: %d in %.1fs", used, info["documents_seconds"])

    if needle and cfg.needle.enabled:
        t1 = time.perf_counter()
        n = cfg.needle
        specs = _needle_specs(cfg, lm.tokenizer, lm.vocab_size)
        mqar = cfg.documents == "mqar"
        avoid = {w for x in n.needles for w in x["needle"].split()} if mqar else set()
        hays = take_documents(cfg, len(specs), tokenizer=lm.tokenizer, vocab_size=lm.vocab_size,
                              min_tokens=max(n.context_lengths), salt="needle", avoid_words=avoid)
        if len(hays) < len(specs):
            log.warning("only %d of %d haystacks reach %d tokens; needles share them", len(hays), len(specs), max(n.context_lengths))
        periods, newlines = _token_sets(lm.tokenizer, lm.vocab_size)
        if mqar:  # no periods in MQAR text: a needle follows a filler word or a value
            from olmpool.eval.mqar import boundary_ids, task_of

            periods = boundary_ids(lm.tokenizer, task_of(cfg.mqar))
        use_rouge = lm.tokenizer is not None and getattr(lm.tokenizer, "decode", None) is not None
        if use_rouge:
            from olmpool.eval.attention.needle import rouge1_recall

            def success_for(spec):
                eod = getattr(lm.tokenizer, "eod", None)
                return lambda gen: rouge1_recall(spec.answer_text,
                                                 lm.tokenizer.decode([t for t in gen if t != eod]).strip())
        else:
            def success_for(spec):
                return None  # token-id recall of the answer (random-id probes have no text)
        results = []
        for ctx in n.context_lengths if hays else []:
            for depth in n.depths:
                for i, spec in enumerate(specs):
                    ex = build_example(hays[i % len(hays)], spec.needle, spec.question, spec.answer, ctx, depth,
                                       period_ids=periods, needle_index=i, span_in_needle=mqar)
                    results.append(run_needle(lm.model, ex, max_new_tokens=n.max_new_tokens, stop_ids=newlines,
                                              success=success_for(spec), device=device))
        head_recs, overall = needle_records(results, n.success_threshold)
        rows += head_records_to_rows(head_recs, model=model_id, stage=stage, per_head=cfg.per_head_rows)
        rows += model_rows(overall, model=model_id, stage=stage, task="needle")
        info["needle_examples"] = len(results)
        info["needle_retrieved"] = sum(r.recall > n.success_threshold for r in results)
        info["needle_success_measure"] = ("ROUGE-1 recall x100, stemmed (rouge-score 0.1.2), of the answer text"
                                          if use_rouge else "token-id recall x100 of the answer (no tokenizer)")
        info["needle_seconds"] = round(time.perf_counter() - t1, 3)
        log.info("needles: %d examples, %d retrieved, %.1fs", len(results), info["needle_retrieved"], info["needle_seconds"])
    return to_frame(rows), info
