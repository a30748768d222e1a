"""When does in-context retrieval emerge in a toy OlmPool model, and does the toy context extension
then separate the architectures? Measured side by side in one run, per setting and seed.

Why: the tiny study's models never learn to retrieve from their context (benchmarks/
tiny_context_use.py: copy ratio ~1), so its long-context scores are flat. This benchmark looks
for a toy recipe on which retrieval exists, on the project's own model code: the Megatron-Core
GPT model built by `olmpool.arch.megatron.build_model` for a registry row resolved at a toy
scale (`olmpool.arch.registry.resolve`), exactly as the study builds it; only the scale's numbers
(width, heads, vocabulary, RoPE theta, context divisor) are set here.

Data: multi-query associative recall (MQAR; Arora et al. 2023, "Zoology", HazyResearch/zoology
`zoology/data/multiquery_ar.py`) in the form "k v" (a definition) ... "k v" (a query: the same
key again; the value is the retrieval target), keys and values from small alphabets of their
own, filler tokens of controllable entropy between the events. The loss weights retrieval
targets by `--answer-weight` and every other token by `--other-weight` (0 = answer-only loss as
in Zoology). An optional short-sequence warm-up trains at `--warmup-seq` tokens first (the
plateau grows with the context length: Musat et al. 2025, arXiv 2511.01033).

Recall = the fraction of retrieval targets that are the model's argmax over the whole vocabulary,
on a fixed evaluation set (seeded apart from training). Printed per setting: the step, the
tokens and the core-seconds (`time.process_time`, robust to other processes on the machine) at
which recall at the pretraining length first passes 0.5 and 0.8, and recall by gap quartile.

Context extension (the paper's recipe at toy scale): RoPE theta x16 (`Scale.extend_rope_theta`),
training at `--ext-factor` x the 8K-equivalent length, then recall at the pretraining length
(1x) and at the 32K / 64K equivalents (columns ``*_r4x`` / ``*_r8x``: 4x / 8x the 8K length for
every architecture).  The extension data (`--ext-long-frac`): each sequence is, with that
probability, one retrieval sequence over the whole length, otherwise pretraining-length
retrieval sequences back to back (long text whose dependencies are local); several values
extend the same pretrained model once each.

Architectures: registry rows, or a variant with one field changed (``ID:field=value``, e.g.
``G_pre_8kv_8k_14k:norm_order=post``) to isolate one attention choice.  ``--device cuda``
runs on a GPU (times are then wall seconds of that GPU, not CPU core-seconds); ``--cache``
keeps pretrained models so extension settings can be compared on the same weights.
`benchmarks/tiny_emergence_grid.py` runs many settings at once (a grid file of
`benchmarks/grids/`); `benchmarks/tiny_emergence_rank.py` ranks the architectures of one run
against the paper's HELMET/RULER at 32K.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/tiny_emergence.py \\
        [--archs G_pre_8kv_8k_14k A_post_HQK_8kv_8k_13k_SWA_fp8] [--seeds 0 1] \\
        [--keys 64 --values 64 --filler 16 --density 0.5 ...] [--tsv results/tiny_emergence/runs.tsv]

    # the toy study's recipe (a grid file's $R) on a new registry row, placed in its ranking
    python benchmarks/tiny_emergence.py --recipe benchmarks/grids/cpu_all26.txt \\
        --archs MY_ID --seeds 0 1 2 --run mine --tsv runs/mine.tsv --place s1_all26

Prints one line per evaluation and one summary per (architecture, seed), and appends one row
per (architecture, seed, extension setting) to the TSV (setting, thresholds, core-seconds,
recall after extension). Exits 0.

What it measured (every run in results/tiny_emergence/runs.tsv with its command; the groups
are described in results/tiny_emergence/README.md): without help every setting stays on a
bag-of-values plateau (recall ~1/number of values in context).  With the previous-token
warm-up (`--prev-warmup-steps 150 --alt-mix 0.25`), the short warm-up ended by competence
(`--warmup-seq 64 --warmup-until-loss 0.3`) and a 300-step lr warm-up, G_pre_8kv_8k_14k passes
recall 0.8 at 256 after 38-47 core-s on this machine (2 seeds).  Whether an architecture
learns retrieval at all in a fixed budget is a per-seed lottery, hardest for post-norm with
layerwise QK norm.  Every model that learned it (recall >= 0.95 at its pretraining length;
22 of 33 runs on one GPU) recalls 0.98-1.00 at the 32K equivalent after an extension on
full-length retrieval data; with 10% long-range extension sequences they spread over
0.41-0.99 (4K-pretrained and SWA architectures lower).  With 64 keys emergence is reliable
(12 of 13 CPU runs, the worst architecture with 4 of 4 seeds); extended with 8 sequences
per step and 10% long-range data, Llama 3 and the worst architecture are equal at the
pretraining length (0.99 / 0.98) and apart at the 32K equivalent (0.85 +- 0.04 over 6
seeds vs 0.73 +- 0.07 over the worst architecture's 5 of 6 seeds that learned retrieval).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

# the retrieval data, one definition (re-exported: the grid, rank and test code read it here)
from olmpool.train.mqar import (  # noqa: F401
    BOS,
    Task,
    eval_task,
    make_alternation_batch,
    make_batch,
    make_extension_batch,
)


TSV_COLUMNS = (
    "run", "arch", "seed", "keys", "values", "filler", "filler_zipf", "filler_mode", "density", "repeats", "layout",
    "answer_weight", "other_weight", "d_model", "n_heads", "head_dim", "n_layers", "rope_theta", "init_std",
    "context_divisor", "seq", "warmup_seq", "warmup_steps", "warmup_until_loss", "switch_step", "prev_warmup_steps", "alt_mix", "pre_local_seg", "pre_long_frac", "batch", "steps", "lr", "lr_warmup", "weight_decay",
    "final_lr_frac", "step_r50", "tokens_r50", "cores_r50", "step_r80", "tokens_r80", "cores_r80",
    "recall_final", "recall_best", "recall_q1", "recall_q4", "pretrain_core_s", "pretrain_tokens",
    "ext_factor", "ext_steps", "ext_batch", "ext_lr", "ext_long_frac", "ext_core_s", "pre_r1x", "pre_r4x", "pre_r8x",
    "ext_r1x", "ext_r4x", "ext_r8x", "ext_curve_4x", "device", "code_version", "command",
)


# ----------------------------------------------------------------------------------------------
# Model: the study's adapter at a toy scale
# ----------------------------------------------------------------------------------------------


def architecture(spec: str):
    """Registry row ``ID``, or a one-off variant ``ID:field=value[,field=value]`` of it (e.g.
    ``G_pre_8kv_8k_14k:norm_order=post``) to isolate one attention choice; the variant keeps
    the row's init family and is parsed and validated as a registry row
    (``Architecture.from_row``).  Its id is ``ID.field-value...``."""
    from olmpool import OlmPoolError
    from olmpool.arch.registry import FACTOR_FIELDS, NUISANCE_FIELDS, Architecture, get_architecture

    base, _, over = spec.partition(":")
    arch = get_architecture(base)
    if not over:
        return arch
    variable = [n for n in (*FACTOR_FIELDS, *NUISANCE_FIELDS) if n != "init"]
    changes = dict(item.partition("=")[::2] for item in over.split(","))
    for name in changes:
        if name not in variable:
            raise OlmPoolError(f"--archs {spec}: {name!r} is not an attention field; fix: use one of "
                               f"{', '.join(variable)}")
    # parsed under a non-released id (the name check would compare the fields with the base id)
    row = {**arch.to_row(), **changes, "id": base + ".variant", "roles": ""}
    variant = Architecture.from_row(row, where=f"--archs {spec}")
    vid = base + "." + ".".join(f"{k}-{getattr(variant, k)}".replace("_", "") for k in changes)
    return dataclasses.replace(variant, id=vid)


def toy_shape(arch: str, args, vocab: int):
    """ModelShape of registry row (or variant) ``arch`` at the tiny scale with this run's numbers."""
    from olmpool.arch.registry import load_scale, resolve

    base = load_scale("debug")
    scale = dataclasses.replace(
        base, name="tiny-emergence", d_model=args.d_model, n_heads=args.n_heads, head_dim=args.head_dim,
        n_layers=args.n_layers, vocab_size=vocab, rope_theta=float(args.rope_theta),
        extend_rope_theta=float(args.rope_theta) * args.theta_factor, context_divisor=args.context_divisor,
        extend_seq_len=8192 // args.context_divisor * args.ext_factor, init_std=args.init_std)
    scale.validate(where="tiny_emergence scale")
    return resolve(architecture(arch), scale)


def per_token_loss(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The model's own training loss (cross-entropy + z-loss) per token: [b, s]."""
    b, s = x.shape
    pos = torch.arange(s, device=x.device).unsqueeze(0).expand(b, s)
    return model(x, pos, None, labels=y)


@torch.no_grad()
def recall(model, shape, evalset, chunk: int = 8) -> tuple[float, list[float]]:
    """Recall on (tokens, target, gap): overall and per gap quartile (shortest first)."""
    from olmpool.arch.megatron import logits

    model.eval()
    tokens, target, gap = evalset
    dev = next(model.parameters()).device
    hits, gaps = [], []
    for i in range(0, tokens.shape[0], chunk):
        x, y = tokens[i:i + chunk, :-1].to(dev), tokens[i:i + chunk, 1:]
        t = target[i:i + chunk]
        pred = logits(model, x)[..., :shape.vocab_size].argmax(-1).cpu()
        hits.append((pred == y)[t].float())
        gaps.append(gap[i:i + chunk][t])
    model.train()
    h, g = torch.cat(hits), torch.cat(gaps)
    order = torch.argsort(g.float() + torch.rand(len(g), generator=torch.Generator().manual_seed(0)) * 0.5)
    quart = [float(q.mean()) for q in torch.tensor_split(h[order], 4)]
    return float(h.mean()), quart


def clock(device: str) -> float:
    """Seconds spent: CPU time of this process (robust to other processes on the machine) on
    the CPU; wall time after a synchronize on CUDA (the GPU's time is not CPU time)."""
    if device == "cuda":
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def lr_at(step: int, total: int, peak: float, warm: int, final_frac: float) -> float:
    if step <= warm:
        return peak * step / max(warm, 1)
    frac = (step - warm) / max(total - warm, 1)
    return peak * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def retrieval_batch(task: Task, rng: np.random.Generator, batch: int, seq: int, args):
    """Pretraining retrieval sequences of ``seq`` tokens; with ``--pre-local-seg S`` (< seq) a
    sequence is, with probability ``--pre-long-frac``, one retrieval sequence over the whole
    length, otherwise independent ``S``-token sequences back to back: short dependencies
    mixed into every batch instead of a short-sequence phase (`make_extension_batch`)."""
    if args.pre_local_seg and args.pre_local_seg < seq:
        return make_extension_batch(task, rng, batch, seq, args.pre_local_seg, args.pre_long_frac)
    return make_batch(task, rng, batch, seq)


PRETRAIN_KEYS_IGNORED = ("run", "tsv", "cache", "archs", "seeds")


def cache_path(arch: str, seed: int, args) -> Path | None:
    """Where the pretrained model of (arch, seed, every pretraining/data/model argument) is kept,
    so that extension settings can be compared on the same pretrained weights."""
    if not args.cache:
        return None
    import hashlib
    import json

    items = {k: v for k, v in sorted(vars(args).items())
             if not k.startswith(("ext_", "theta_")) and k not in PRETRAIN_KEYS_IGNORED}
    digest = hashlib.sha256(json.dumps([arch, seed, items], default=str).encode()).hexdigest()[:16]
    return Path(args.cache) / f"{arch.replace(':', '+')}.s{seed}.{digest}.pt"


def train_one(arch: str, seed: int, args, task: Task) -> list[dict]:
    """Pretrain (or load from ``--cache``), then one extension per ``--ext-long-frac`` value,
    each from the same pretrained weights: one result per extension setting."""
    from olmpool.arch.megatron import build_model
    from olmpool.train.loop import init_seed

    shape = toy_shape(arch, args, task.vocab)
    seq = shape.pretrain_seq_len
    dev = args.device
    torch.manual_seed(init_seed(seed, architecture(arch).init))
    model = build_model(shape, backend="local", device=dev)
    cached = cache_path(arch, seed, args)
    if cached is not None and cached.exists():
        saved = torch.load(cached, map_location=dev, weights_only=False)
        model.load_state_dict(saved["state"])
        print(f"  {arch} seed {seed}: pretrained model from {cached}", flush=True)
        return with_extensions(model, shape, seed, args, task, saved["res"])
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=args.weight_decay)
    rng = np.random.default_rng([seed, 1])
    ev = make_batch(eval_task(task), np.random.default_rng([10_000 + seed, 2]), args.eval_seqs, seq)
    tok_per_step = args.batch * seq
    res = {"step_r50": None, "tokens_r50": None, "cores_r50": None, "step_r80": None,
           "tokens_r80": None, "cores_r80": None, "recall_best": 0.0}
    t0 = clock(dev)
    tokens_seen = 0
    rec, quart = 0.0, [0.0] * 4
    short = args.warmup_steps > 0  # in the short-sequence warm-up
    ema = None  # running answer loss of the short phase
    res["switch_step"] = None
    for step in range(1, args.steps + 1):
        if short and (step > args.warmup_steps
                      or (args.warmup_until_loss and ema is not None and ema < args.warmup_until_loss)):
            short = False
            res["switch_step"] = step - 1
            print(f"  step {step - 1}: short-sequence warm-up ends (answer loss {ema:.3f})", flush=True)
        cur = args.warmup_seq if short else seq
        b = tok_per_step // cur
        if step <= args.prev_warmup_steps:
            x, tgt, _ = make_alternation_batch(task, rng, b, cur)
        elif args.alt_mix > 0:
            n_alt = int(round(args.alt_mix * b))
            xa, ta, _ = make_alternation_batch(task, rng, n_alt, cur)
            xm, tm, _ = retrieval_batch(task, rng, b - n_alt, cur, args)
            x, tgt = torch.cat([xm, xa]), torch.cat([tm, ta])
        else:
            x, tgt, _ = retrieval_batch(task, rng, b, cur, args)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, args.lr_warmup, args.final_lr_frac)
        x, tgt = x.to(dev), tgt.to(dev)
        loss = per_token_loss(model, x[:, :-1], x[:, 1:])
        w = torch.where(tgt, args.answer_weight, args.other_weight)
        (loss * w).sum().div(w.sum()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens_seen += b * cur
        if short and step > args.prev_warmup_steps:
            n_mq = b - int(round(args.alt_mix * b))
            cur_ans = float(loss.detach()[:n_mq][tgt[:n_mq]].mean())
            ema = cur_ans if ema is None else 0.9 * ema + 0.1 * cur_ans
        if step % args.eval_every == 0 or step == args.steps:
            ans = float(loss.detach()[:b - int(round(args.alt_mix * b))][tgt[:b - int(round(args.alt_mix * b))]].mean())
            rec, quart = recall(model, shape, ev)
            cs = clock(dev) - t0  # includes evaluation: an upper bound on training cost
            res["recall_best"] = max(res["recall_best"], rec)
            for th in (50, 80):
                if res[f"step_r{th}"] is None and rec >= th / 100:
                    res[f"step_r{th}"], res[f"tokens_r{th}"], res[f"cores_r{th}"] = step, tokens_seen, round(cs)
            print(f"  {arch} seed {seed} step {step:5d} seq {cur:4d} tokens {tokens_seen:9,d} "
                  f"answer loss {ans:.3f} recall@{seq} {rec:.3f} quartiles "
                  f"{' '.join(f'{q:.2f}' for q in quart)} core-s {cs:.0f}", flush=True)
            if args.max_core_s and cs > args.max_core_s:
                print(f"  stopping: {cs:.0f} core-s > --max-core-s {args.max_core_s}", flush=True)
                break
            if args.stop_recall and rec >= args.stop_recall:
                print(f"  stopping: recall {rec:.3f} >= --stop-recall {args.stop_recall}", flush=True)
                break
    res.update(recall_final=rec, recall_q1=quart[0], recall_q4=quart[3],
               pretrain_core_s=round(clock(dev) - t0), pretrain_tokens=tokens_seen, steps_done=step)
    if cached is not None:
        from olmpool.atomic import temp_path

        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(cached)
        torch.save({"state": model.state_dict(), "res": dict(res)}, tmp)
        tmp.replace(cached)
    return with_extensions(model, shape, seed, args, task, res)


def with_extensions(model, shape, seed: int, args, task: Task, res: dict) -> list[dict]:
    """``res`` with each extension's results (one per ``--ext-long-frac``); the evaluation
    sets and the recall before extension are made once for all of them."""
    res = {**res, "seq": shape.pretrain_seq_len}
    if args.ext_steps <= 0:
        return [{**res, "ext_long_frac": None}]  # no extension: no extension data either
    # 1x: this architecture's pretraining length; 4x / 8x: 4 and 8 times the 8K pretraining
    # length, i.e. the paper's 32K and 64K at this context divisor, for every architecture
    # (a 4K-pretrained architecture is asked 8x and 16x its own pretraining length there, as in
    # the paper)
    base = 8192 // args.context_divisor
    lengths = {"1x": shape.pretrain_seq_len, "4x": 4 * base, "8x": 8 * base}
    sets = {k: make_batch(eval_task(task), np.random.default_rng([20_000 + seed, i]), args.eval_seqs, L)
            for i, (k, L) in enumerate(lengths.items())}
    pre = {f"pre_r{k}": recall(model, shape, sets[k], chunk=2)[0] for k in sets}
    return [{**res, **pre, "ext_long_frac": f, **extend(model, shape, seed, args, task, f, sets, pre)}
            for f in args.ext_long_frac]


def extend(model, shape, seed: int, args, task: Task, long_frac: float, sets: dict, pre: dict) -> dict:
    """Theta x factor, train at ext_factor x the 8K-equivalent length, recall on ``sets`` (at
    1x, the pretraining length, and at the 32K / 64K equivalents: columns ``*_r4x`` /
    ``*_r8x``); ``pre`` is the recall before extension on the same sets."""
    from olmpool.arch.megatron import build_model

    seq = shape.pretrain_seq_len
    out = {}
    ext_shape = shape.with_extension()
    state = model.state_dict()
    torch.manual_seed(0)
    dev = args.device
    ext = build_model(ext_shape, backend="local", device=dev)
    ext.load_state_dict(state)
    opt = torch.optim.AdamW(ext.parameters(), lr=args.ext_lr, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=args.weight_decay)
    rng = np.random.default_rng([seed, 3])
    L = ext_shape.extend_seq_len
    t0 = clock(dev)
    curve = [f"0:{pre['pre_r4x']:.3f}"]
    for step in range(1, args.ext_steps + 1):
        x, tgt, _ = make_extension_batch(task, rng, args.ext_batch, L, seq, long_frac)
        x, tgt = x.to(dev), tgt.to(dev)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.ext_steps, args.ext_lr, max(1, args.ext_steps // 10), 0.0)
        loss = per_token_loss(ext, x[:, :-1], x[:, 1:])
        w = torch.where(tgt, args.answer_weight, args.other_weight)
        (loss * w).sum().div(w.sum()).backward()
        torch.nn.utils.clip_grad_norm_(ext.parameters(), args.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step in args.ext_curve and step < args.ext_steps:
            curve.append(f"{step}:{recall(ext, ext_shape, sets['4x'], chunk=2)[0]:.3f}")
    out["ext_core_s"] = round(clock(dev) - t0)  # includes the intermediate evaluations
    for k in sets:
        out[f"ext_r{k}"] = recall(ext, ext_shape, sets[k], chunk=2)[0]
    curve.append(f"{args.ext_steps}:{out['ext_r4x']:.3f}")
    out["ext_curve_4x"] = " ".join(curve)
    print(f"  recall at 4x by extension step: {out['ext_curve_4x']}", flush=True)
    print(f"  extension ({args.ext_steps} steps x {args.ext_batch} x {L}, theta x{args.theta_factor:g}, "
          f"{out['ext_core_s']} core-s): recall 1x/4x/8x before "
          f"{pre['pre_r1x']:.3f}/{pre['pre_r4x']:.3f}/{pre['pre_r8x']:.3f} after "
          f"{out['ext_r1x']:.3f}/{out['ext_r4x']:.3f}/{out['ext_r8x']:.3f}", flush=True)
    return out


def parse_grid(path: Path) -> tuple[dict[str, str], list[list[str]]]:
    """A grid file (`benchmarks/grids/`): its ``$NAME=value`` definitions and its jobs (one line
    of this script's arguments each, definitions substituted); ``#`` starts a comment."""
    defs: dict[str, str] = {}
    jobs = []
    for n, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("$") and "=" in line.split()[0]:
            name, _, value = line[1:].partition("=")
            defs[name] = value.strip()
            continue
        for name in sorted(defs, key=len, reverse=True):
            line = line.replace("$" + name, defs[name])
        if "$" in line:
            raise SystemExit(f"{path}:{n}: undefined ${line.split('$', 1)[1].split()[0]}; "
                             "fix: define it above with a $NAME=value line")
        jobs.append(shlex.split(line))
    return defs, jobs


RECIPE_DROPS = ("--cache",)
"""Arguments of a grid's shared definition that belong to that run, not to its recipe."""


def recipe_args(spec: str) -> list[str]:
    """The arguments of ``GRID[:NAME]``'s ``$NAME`` definition (default ``R``), without the
    run-specific ones (`RECIPE_DROPS` and their values)."""
    path, _, name = spec.partition(":")
    defs, _ = parse_grid(Path(path))
    name = name or "R"
    if name not in defs:
        raise SystemExit(f"--recipe {spec}: {path} defines no ${name}; fix: name one of "
                         f"{', '.join('$' + d for d in defs) or '(none)'}")
    out, skip = [], False
    for a in shlex.split(defs[name]):
        if skip:
            skip = False
        elif a in RECIPE_DROPS:
            skip = True
        else:
            out.append(a)
    return out


def code_version() -> str:
    """Commit, ``+dirty`` when this script or the package source differs from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=root, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "benchmarks/tiny_emergence.py", "src/olmpool"],
                               capture_output=True, text=True, cwd=root).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except Exception:
        return "unknown"


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a runs TSV as strings, keyed by its own header."""
    lines = path.read_text().splitlines()
    header = lines[0].split("\t") if lines else []
    return [dict(zip(header, ln.split("\t"))) for ln in lines[1:] if ln]


def write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    """Write ``rows`` (strings) under the current columns (empty where a row lacks one),
    through a temporary file."""
    from olmpool.atomic import write_text_atomic

    write_text_atomic("\t".join(TSV_COLUMNS) + "\n"
                      + "".join("\t".join(r.get(c, "") for c in TSV_COLUMNS) + "\n" for r in rows), path)


def append_tsv(path: Path, row: dict) -> None:
    """Append one row; a file written with other columns is first rewritten under the current
    ones (`write_rows`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        write_rows(path, [])
    elif path.read_text().split("\n", 1)[0].split("\t") != list(TSV_COLUMNS):
        write_rows(path, read_rows(path))
    with path.open("a") as fh:
        fh.write("\t".join("" if row.get(c) is None else (f"{row[c]:.3f}" if isinstance(row[c], float)
                                                          else str(row[c])) for c in TSV_COLUMNS) + "\n")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", nargs="+", default=["G_pre_8kv_8k_14k", "A_post_HQK_8kv_8k_13k_SWA_fp8"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--run", default="", help="name of this setting in the TSV")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="cuda: times are wall seconds on the GPU, not CPU core-seconds")
    g = ap.add_argument_group("data")
    g.add_argument("--keys", type=int, default=64)
    g.add_argument("--values", type=int, default=64)
    g.add_argument("--filler", type=int, default=16, help="filler alphabet (1 = one repeated token)")
    g.add_argument("--filler-zipf", type=float, default=0.0)
    g.add_argument("--filler-mode", choices=["iid", "alt"], default="iid")
    g.add_argument("--density", type=float, default=0.5)
    g.add_argument("--repeats", type=int, default=2, help="occurrences per key in training sequences")
    g.add_argument("--layout", choices=["interleaved", "defs_first"], default="interleaved")
    g.add_argument("--answer-weight", type=float, default=1.0)
    g.add_argument("--other-weight", type=float, default=0.0)
    g = ap.add_argument_group("model (the tiny scale's other numbers are kept)")
    g.add_argument("--d-model", type=int, default=64)
    g.add_argument("--n-heads", type=int, default=4, help="query heads; KV heads = kv_heads * n_heads / 32")
    g.add_argument("--head-dim", type=int, default=16)
    g.add_argument("--n-layers", type=int, default=4)
    g.add_argument("--rope-theta", type=float, default=10000.0)
    g.add_argument("--init-std", type=float, default=0.02,
                   help="std of the normal initialisation (output projections / sqrt(2 x layers), as "
                        "Megatron-Core); 0.02 is the paper's at d_model 4096")
    g.add_argument("--context-divisor", type=int, default=32, help="paper contexts / this (8K -> 256 at 32)")
    g = ap.add_argument_group("pretraining")
    g.add_argument("--batch", type=int, default=16, help="sequences of the pretraining length per step")
    g.add_argument("--steps", type=int, default=1000)
    g.add_argument("--lr", type=float, default=3e-3)
    g.add_argument("--lr-warmup", type=int, default=20)
    g.add_argument("--final-lr-frac", type=float, default=0.1)
    g.add_argument("--weight-decay", type=float, default=0.1)
    g.add_argument("--clip", type=float, default=1.0)
    g.add_argument("--warmup-seq", type=int, default=0, help="short-sequence warm-up length (0 = none)")
    g.add_argument("--warmup-steps", type=int, default=0, help="most steps of the short-sequence warm-up")
    g.add_argument("--warmup-until-loss", type=float, default=0.0,
                   help="end the short-sequence warm-up early once its running answer loss is below this")
    g.add_argument("--prev-warmup-steps", type=int, default=0,
                   help="first steps on alternation data (previous-token warm-up), then retrieval")
    g.add_argument("--alt-mix", type=float, default=0.0,
                   help="fraction of each batch's sequences that are alternation data after the warm-up")
    g.add_argument("--pre-local-seg", type=int, default=0,
                   help="pretraining sequences made of independent sequences of this length (0 = off)")
    g.add_argument("--pre-long-frac", type=float, default=0.5,
                   help="with --pre-local-seg: fraction of sequences that are one full-length sequence")
    g.add_argument("--eval-every", type=int, default=50)
    g.add_argument("--eval-seqs", type=int, default=32)
    g.add_argument("--max-core-s", type=float, default=0.0, help="stop pretraining after this many core-s")
    g.add_argument("--stop-recall", type=float, default=0.0, help="stop pretraining at this recall (0 = never)")
    g = ap.add_argument_group("extension")
    g.add_argument("--theta-factor", type=float, default=16.0)
    g.add_argument("--ext-factor", type=int, default=4, help="extension length / pretraining length")
    g.add_argument("--ext-steps", type=int, default=30)
    g.add_argument("--ext-batch", type=int, default=2)
    g.add_argument("--ext-lr", type=float, default=1e-3)
    g.add_argument("--ext-long-frac", type=float, nargs="+", default=[1.0],
                   help="fraction of extension sequences with retrieval over the whole length; the rest "
                        "are pretraining-length retrieval sequences back to back (local dependencies); "
                        "several values: one extension each from the same pretrained model")
    g.add_argument("--ext-curve", type=int, nargs="*", default=[5, 10, 20],
                   help="also measure recall at 4x after these extension steps (smaller budgets)")
    g = ap.add_argument_group("recipe and placement")
    g.add_argument("--recipe", metavar="GRID[:NAME]",
                   help="start from the $NAME (default $R) arguments of a grid file, e.g. "
                        "benchmarks/grids/cpu_all26.txt; arguments given here override them")
    g.add_argument("--place", metavar="RUN",
                   help="afterwards, print where each --archs ranks among the architectures of RUN in "
                        "results/tiny_emergence/runs.tsv (benchmarks/tiny_emergence_rank.py --place)")
    g.add_argument("--tsv", default="results/tiny_emergence/runs.tsv")
    g.add_argument("--cache", default="", help="keep/reuse pretrained models here (compare extension settings)")
    return ap


def place_among(run: str, tsv: Path, archs: list[str]) -> None:
    """Print where each of ``archs`` (rows in ``tsv``) ranks among the architectures of ``run``
    in the bundled results (`tiny_emergence_rank.place`); the run's own rows of the same
    architecture are replaced by the new ones."""
    import pandas as pd

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tiny_emergence_rank as rank

    ref = pd.read_csv(rank.ROOT / "results/tiny_emergence/runs.tsv", sep="\t")
    ref = ref[ref.run == run]
    if ref.empty:
        raise SystemExit(f"--place {run}: no such run in results/tiny_emergence/runs.tsv; fix: name one of its runs")
    new = pd.read_csv(tsv, sep="\t")
    for arch in archs:
        mine = new[new.arch == arch].drop_duplicates(["arch", "seed", "ext_long_frac"], keep="last")
        both = pd.concat([ref[ref.arch != arch], mine.assign(run=run)], ignore_index=True)
        for f in sorted(mine["ext_long_frac"].unique()):
            part = both[both["ext_long_frac"] == f]
            print(f"placed in {run} (extension long-range fraction {f:g}): {rank.place(part, arch, 'ext_r4x')}",
                  flush=True)


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    if args.recipe:
        args = parser.parse_args(recipe_args(args.recipe) + sys.argv[1:])
    torch.set_num_threads(1)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device; fix: run on a GPU machine or use --device cpu")
    if not args.warmup_seq:
        args.warmup_steps = 0
    task = Task(args.keys, args.values, args.filler, args.filler_zipf, args.filler_mode, args.density, args.repeats, args.layout)
    seq = 8192 // args.context_divisor
    if args.warmup_steps:
        task.pairs(args.warmup_seq)
    print(f"task: {task.pairs(seq)} pairs per {seq}-token sequence, vocab {task.vocab}, chance recall "
          f"{1 / task.values:.3f}, filler entropy {task.filler_entropy():.2f} nats", flush=True)
    here = Path(__file__).resolve()
    script = str(here.relative_to(here.parents[1]))  # as run from the repository root
    command = "python " + " ".join(shlex.quote(a) for a in [script, *sys.argv[1:]])
    version = code_version()
    summary = []
    for arch in args.archs:
        for seed in args.seeds:
            results = train_one(arch, seed, args, task)
            for res in results:
                row = {**{k.replace("-", "_"): v for k, v in vars(args).items()}, **res,
                       "arch": arch, "seed": seed, "code_version": version, "command": command,
                       "steps": res["steps_done"]}
                append_tsv(Path(args.tsv), row)
                summary.append(row)
            res = results[0]
            print(f"{arch} seed {seed}: recall 0.5 at "
                  + (f"step {res['step_r50']} ({res['tokens_r50']:,} tokens, {res['cores_r50']} core-s)"
                     if res["step_r50"] else "never")
                  + "; 0.8 at "
                  + (f"step {res['step_r80']} ({res['tokens_r80']:,} tokens, {res['cores_r80']} core-s)"
                     if res["step_r80"] else "never")
                  + f"; final {res['recall_final']:.3f} after {res['pretrain_core_s']} core-s", flush=True)
    if args.place:
        place_among(args.place, Path(args.tsv), args.archs)
    if args.ext_steps > 0 and len(args.archs) >= 2 and len(args.seeds) >= 2:
        for f in args.ext_long_frac:
            by = {a: [r["ext_r4x"] for r in summary if r["arch"] == a and r["ext_long_frac"] == f]
                  for a in args.archs}
            ref, other = args.archs[0], args.archs[1]
            seed_diff = max(max(v) - min(v) for v in by.values())
            diff = abs(np.mean(by[ref]) - np.mean(by[other]))
            print(f"extension long fraction {f:g}, after extension at 4x: {ref} {np.mean(by[ref]):.3f} "
                  f"{other} {np.mean(by[other]):.3f}; difference {diff:.3f} vs 2 x largest seed "
                  f"difference {2 * seed_diff:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
