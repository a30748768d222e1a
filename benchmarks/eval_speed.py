"""Evaluation speed at tiny scale, measured side by side in one run.

1. Wall time of the full tiny evaluation (config/debug.yaml ``eval``: RULER 256..4096, HELMET
   512..4096, LongPPL, perplexity, BPB) for one tiny model, per benchmark and in total.
2. Greedy decoding tokens/s with the KV cache vs recomputing the whole prefix every step, on
   the same model and prompt, printed as a ratio.

    python benchmarks/eval_speed.py [--checkpoint RUN_DIR --arch ID] [--prompt 1024 --new 64]
        [--skip-full]

Without ``--checkpoint`` the model is a ReferenceDecoder of the tiny scale with *random
weights* (it never emits end-of-document, so every generation runs to its full budget: a
worst case for wall time), and the tokenizer is the tiny one from ``runs/debug/data/tokenizer``
when present, else the test BPE tokenizer (same vocabulary size, 2048). The script prints
which it used. Timings on a shared 2-core machine are noisy; the ratio is from one run.

3. ``--hf DIR`` (e.g. the SmolLM2 fixture, ``olmpool fixture smollm2``): our engine on the
   directory as ``olmpool evaluate --hf-direct`` runs it (chunked prefill through the KV cache,
   then greedy decoding) against plain ``transformers`` ``model.generate(do_sample=False)`` on
   the same RULER niah_single_1 prompts of ``--prompt`` tokens, ``--new`` new tokens each,
   alternating the two per prompt. Prints prefill + decode tokens/s of each (prompt and
   generated tokens over wall seconds) and their ratio, and whether the greedy tokens agree.

    python benchmarks/eval_speed.py --hf build/fixtures/smollm2 --prompt 4096 --new 32 --prompts 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch


def build(args):
    from olmpool.eval.lm import wrap_reference_decoder

    if args.checkpoint:
        from olmpool.eval.commands import load_checkpoint_model

        model, tok, meta, shape = load_checkpoint_model(args.checkpoint, "config/architectures.tsv", args.arch)
        return model, tok, f"trained checkpoint {args.checkpoint} ({meta.get('stage')}, step {meta.get('step')})"
    from olmpool.arch.reference import ReferenceDecoder
    from olmpool.arch.registry import load_registry, load_scale, resolve

    arch = load_registry()[args.arch]
    shape = resolve(arch, load_scale("debug")).with_extension()
    torch.manual_seed(0)
    model = wrap_reference_decoder(ReferenceDecoder(shape), shape.vocab_size)
    tdir = Path("runs/debug/data/tokenizer")
    if (tdir / "tokenizer.json").exists():
        from olmpool.train.tokenizer import load_tokenizer

        tok, tname = load_tokenizer(tdir), f"tiny tokenizer {tdir}"
    else:
        from olmpool.eval.testing import make_test_tokenizer

        tok, tname = make_test_tokenizer(shape.vocab_size), "test BPE tokenizer (no tiny tokenizer built yet)"
    n = sum(p.numel() for p in model.decoder.parameters())
    return model, tok, f"random-weight ReferenceDecoder {args.arch} tiny ({n / 1e6:.2f}M params, windows {list(shape.windows)}), {tname}"


def decode_speed(engine, prompt_len: int, new: int) -> tuple[float, float, bool]:
    from olmpool.eval.lm import GenerationRequest

    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, engine.tokenizer.vocab_size, (prompt_len,), generator=g).tolist()
    eod = engine.tokenizer.eod
    prompt = [t if t != eod else 0 for t in prompt]
    # KV cache: time only the decoding steps (prefill excluded on both sides by timing step 1..new)
    t0 = time.perf_counter()
    cached = engine.generate([GenerationRequest(prompt, new)])[0]
    t_cache_total = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine.generate([GenerationRequest(prompt, 1)])
    t_prefill = time.perf_counter() - t0
    t0 = time.perf_counter()
    recomputed = engine.generate_without_cache(prompt, new)
    t_recompute = time.perf_counter() - t0
    n = len(cached)
    cache_tps = (n - 1) / max(1e-9, t_cache_total - t_prefill)
    recompute_tps = n / t_recompute
    return cache_tps, recompute_tps, cached == recomputed[:n]


def hf_speed(directory: str, prompt_len: int, new: int, n_prompts: int) -> int:
    from transformers import AutoModelForCausalLM

    from olmpool.eval import ruler as R
    from olmpool.eval.config import from_dict
    from olmpool.eval.hf_checkpoint import device_and_dtype, load_hf_tokenizer
    from olmpool.eval.lm import Engine, GenerationRequest, HFCausalLM
    from olmpool.eval.runner import ruler_inputs
    from olmpool.eval.words import using_source

    dev, dtype = device_and_dtype("auto")
    tok = load_hf_tokenizer(directory)
    hf = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, dtype=dtype).to(dev).eval()
    engine = Engine(HFCausalLM(hf), tok, batch_size=1, prefill_chunk=2048, progress=False)
    cfg = from_dict({"seed": 42, "words": "upstream", "ruler": {"sentence_splitter": "regex"}}, scale="paper")
    with using_source(cfg.words, cfg.corpus_seed):
        data, settings = ruler_inputs(cfg)
        samples = R.generate_task("niah_single_1", prompt_len + new, n_prompts, tok, data, settings, tokens_to_generate=new)
    prompts = [tok.encode(s.prompt) for s in samples]
    print(f"model: {directory} ({type(hf).__name__}, {sum(p.numel() for p in hf.parameters()) / 1e6:.0f}M params) on {dev} {dtype}")
    print(f"torch threads: {torch.get_num_threads()}; {n_prompts} RULER niah_single_1 prompts of "
          f"{[len(p) for p in prompts]} tokens, {new} new tokens each")
    ours_t = theirs_t = 0.0
    ours_n = theirs_n = 0
    same = True
    for p in prompts:
        t0 = time.perf_counter()
        ours = engine.generate([GenerationRequest(p, new)])[0]
        ours_t += time.perf_counter() - t0
        ours_n += len(p) + len(ours)
        x = torch.tensor([p], device=dev)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=new, do_sample=False,
                              eos_token_id=tok.eod, pad_token_id=tok.eod)
        theirs_t += time.perf_counter() - t0
        theirs = out[0, len(p):].tolist()
        theirs_n += len(p) + len(theirs)
        same &= ours == theirs
        print(f"  prompt {len(p)}: ours {len(ours)} new tokens, transformers.generate {len(theirs)}; identical {ours == theirs}", flush=True)
    a, b = ours_n / ours_t, theirs_n / theirs_t
    print(f"prefill + greedy decode, prompt {prompt_len} tokens, {new} new tokens, {n_prompts} prompts:")
    print(f"  olmpool engine          {a:8.1f} tokens/s  ({ours_t:.1f} s)")
    print(f"  transformers.generate   {b:8.1f} tokens/s  ({theirs_t:.1f} s)")
    print(f"  ratio                   {a / b:8.2f}x   (identical tokens: {same})")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--arch", default="H_post_LQK_32kv_8k_11k_SWA", help="registry id (Olmo 3 architecture by default)")
    ap.add_argument("--config", default="config/debug.yaml")
    ap.add_argument("--prompt", type=int, default=1024)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--skip-full", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="print one line per task")
    ap.add_argument("--hf", default=None, help="Hugging Face directory: our engine vs transformers.generate (section 3 of the docstring)")
    ap.add_argument("--prompts", type=int, default=2, help="with --hf: prompts timed")
    args = ap.parse_args()
    if args.hf:
        return hf_speed(args.hf, args.prompt, args.new, args.prompts)

    from olmpool.eval.config import load_eval_config
    from olmpool.eval.lm import Engine
    from olmpool.eval.runner import BENCHMARKS, run_all

    model, tok, what = build(args)
    print(f"model: {what}")
    print(f"torch threads: {torch.get_num_threads()}")
    cfg, _ = load_eval_config(args.config)
    engine = Engine(model, tok, batch_size=cfg.batch_size, prefill_chunk=cfg.prefill_chunk, progress=False)

    cache_tps, recompute_tps, same = decode_speed(engine, args.prompt, args.new)
    print(f"decode, prompt {args.prompt} tokens, {args.new} new tokens:")
    print(f"  KV cache        {cache_tps:8.1f} tokens/s")
    print(f"  recompute       {recompute_tps:8.1f} tokens/s")
    print(f"  ratio           {cache_tps / recompute_tps:8.1f}x   (identical tokens: {same})")

    if not args.skip_full:
        times = {}
        t_all = time.perf_counter()
        for b in BENCHMARKS:
            t0 = time.perf_counter()
            res = run_all(engine, cfg, [b], ruler_contexts=cfg.ruler.contexts, helmet_contexts=cfg.helmet.contexts,
                          evaluator=engine, log=(lambda m: print("    " + m, flush=True)) if args.verbose else (lambda m: None))
            times[b] = (time.perf_counter() - t0, len(res.rows), sum(r["value"] == r["value"] for r in res.rows))
            print(f"  {b:<11} {times[b][0]:7.1f} s  ({times[b][1]} rows, {times[b][2]} with a value)", flush=True)
        total = time.perf_counter() - t_all
        print(f"full tiny evaluation (RULER {cfg.ruler.contexts}, HELMET {cfg.helmet.contexts}, LongPPL "
              f"{cfg.longppl.context}, perplexity, BPB): {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
