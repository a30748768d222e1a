"""Cross-check of the evaluation engine against plain transformers on a real model.

For ``n`` RULER prompts (niah_single_1 at ``length`` tokens, the harness's own generator) the
log-likelihood of the gold answer is computed three ways:

* ``transformers``: one forward pass of the plain ``AutoModelForCausalLM`` over prompt + answer,
  ``log_softmax`` of the logits, the answer tokens' log-probabilities summed (the reference);
* ``engine_hf``: our ``Engine.continuation_logprob`` on the ``--hf-direct`` model
  (``HFCausalLM``: chunked prefill through a KV cache, ``prefill_chunk`` tokens a call);
* ``engine_reference`` (Llama-family directories only): the same engine on our own
  ``ReferenceDecoder`` holding the directory's weights, i.e. our model code, not transformers'.

All in fp32 on the CPU. The answer is scored as RULER's template continues, `` <answer>`` after
the prompt's final words.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch


def reference_shape_for(cfg, name: str):
    """A ``ModelShape`` of a Llama-class HF config (pre-norm, no QK norm, full attention)."""
    from olmpool.arch.hf_import import describe_hf_config
    from olmpool.arch.registry import ModelShape

    d = describe_hf_config(cfg)
    theta = float(d["rope_theta"])
    seq = int(getattr(cfg, "max_position_embeddings", 0) or 0)
    return ModelShape(arch_id=name, scale="hf", n_layers=d["n_layers"], d_model=d["d_model"], n_heads=d["n_heads"],
                      n_kv_heads=d["n_kv_heads"], head_dim=d["head_dim"], d_ff=d["d_ff"], vocab_size=d["vocab_size"],
                      rope_theta=theta, windows=tuple(d["windows"]), pretrain_seq_len=seq, extend_seq_len=seq,
                      extend_rope_theta=theta, qk_norm=d["qk_norm"], norm_order=d["norm_order"], fp8=False,
                      norm_eps=float(cfg.rms_norm_eps))


def gold_loglik_crosscheck(directory: str | Path, *, n: int = 5, length: int = 1024, seed: int = 42,
                           prefill_chunk: int = 256, with_reference: bool = True) -> list[dict]:
    """Per prompt: tokens, answer tokens, and the gold answer's log-likelihood each way."""
    from transformers import AutoModelForCausalLM

    from olmpool.eval import ruler as R
    from olmpool.eval.config import from_dict
    from olmpool.eval.hf_checkpoint import load_hf_tokenizer
    from olmpool.eval.lm import Engine, HFCausalLM, wrap_reference_decoder
    from olmpool.eval.benchmarks.ruler import ruler_inputs
    from olmpool.eval.words import using_source

    cfg = from_dict({"seed": seed, "words": "upstream", "ruler": {"sentence_splitter": "regex"}}, scale="paper")
    tok = load_hf_tokenizer(directory)
    with using_source(cfg.words, cfg.corpus_seed):
        data, settings = ruler_inputs(cfg)
        samples = R.generate_task("niah_single_1", length, n, tok, data, settings)
    hf = AutoModelForCausalLM.from_pretrained(str(directory), local_files_only=True, dtype=torch.float32).eval()
    engines = {"engine_hf": Engine(HFCausalLM(hf), tok, batch_size=1, prefill_chunk=prefill_chunk, progress=False)}
    if with_reference and type(hf).__name__ == "LlamaForCausalLM":
        from olmpool.arch.hf_import import hf_to_reference
        from olmpool.arch.reference import ReferenceDecoder

        shape = reference_shape_for(hf.config, "crosscheck")
        ref = ReferenceDecoder(shape)
        sd = dict(hf.state_dict())
        sd.setdefault("lm_head.weight", sd["model.embed_tokens.weight"])
        ref.load_state_dict(hf_to_reference(sd, shape), strict=True)
        engines["engine_reference"] = Engine(wrap_reference_decoder(ref.to(torch.float32), shape.vocab_size), tok,
                                             batch_size=1, prefill_chunk=prefill_chunk, progress=False)
    rows = []
    for s in samples:
        ctx = tok.encode(s.prompt)
        ans = tok.encode(" " + s.answers[0])
        t0 = time.perf_counter()
        with torch.no_grad():
            logits = hf(input_ids=torch.tensor([ctx + ans])).logits[0].double()  # [T,V]
        lp = torch.log_softmax(logits, dim=-1)
        ref_ll = float(sum(lp[len(ctx) - 1 + i, t] for i, t in enumerate(ans)))
        row = {"prompt_tokens": len(ctx), "answer": s.answers[0], "answer_tokens": len(ans), "transformers": ref_ll}
        for name, eng in engines.items():
            row[name] = eng.continuation_logprob(ctx, ans)
            row[f"{name}_abs_diff"] = abs(row[name] - ref_ll)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
    return rows
