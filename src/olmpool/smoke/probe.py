"""Paper-width throughput probe: a few layers of the 7B shape, extrapolated to the full model.

The 7B model is too large to time on one GPU the way it trains (TP 1 on 64 GPUs with a
distributed optimizer), and its step time is, to a good approximation, linear in the
number of layers: ``t(k) = t_fixed + k * t_layer``, where ``t_fixed`` is the embedding, the
final norm, the 100K-row output layer and the loss.  So the probe builds the architecture's
paper-scale shape (``config/scales/paper.yaml``: d_model 4096, 32 heads, the registry's d_ff,
vocabulary 100,278) with only ``k`` layers for two (or more) values of ``k``, times forward +
backward of one micro-batch (``pretrain.micro_batch_size`` x the pretraining length, 2 x 8192
in config/paper.yaml), fits the line, and evaluates it at the scale's ``n_layers`` (32).
Peak memory (``torch.cuda.max_memory_allocated``) is extrapolated the same way.

What the number leaves out (so it is an upper bound on the training throughput): the
optimizer step (distributed Adam over 64 data-parallel ranks: ~1/64 of the parameters per
GPU), the gradient reduce-scatter / all-gather across GPUs, data loading and checkpoints.
With gradient accumulation (4M tokens per step / 64 GPUs = 4 micro-batches of 16K tokens per
GPU) the optimizer step is amortised over 4 forward + backward passes.

The measured rate is printed next to ``cluster.tokens_per_gpu_second.pretrain`` of
config/paper.yaml and turned into that config's pretraining job size
(`olmpool.config.job_resources`, the function the SLURM profile uses) and into GPU hours of
the 26 pretraining runs, both for the assumption and for the measurement.

Configurations: ``auto`` backend in bf16 (Transformer Engine where installed, else the
local backend), and, where Transformer Engine is installed, the same shape with fp8 linears
(TE ``hybrid`` recipe).  On the CPU (``--device cpu``) everything runs in fp32 and peak memory
is not measured: that is how the arithmetic is tested without a GPU (with ``--scale debug``).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from olmpool import OlmPoolError

REPO = Path(__file__).resolve().parents[3]
PAPER_CONFIG = REPO / "config" / "paper.yaml"
GiB = 1024**3


@dataclass(frozen=True)
class Point:
    """One timed configuration: ``layers`` transformer layers of the probed shape."""

    layers: int
    """Transformer layers built."""
    step_s: float
    """Median seconds of one forward + backward of one micro-batch."""
    peak_bytes: int | None
    """Peak allocated device memory during the timed steps (None on the CPU)."""


@dataclass(frozen=True)
class Extrapolation:
    """The line through the timed points, evaluated at the full depth."""

    n_layers: int
    """Depth extrapolated to (the scale's n_layers)."""
    tokens_per_step: int
    """Tokens in one timed forward + backward (micro-batch x sequence length)."""
    layer_s: float
    """Seconds per layer (slope)."""
    fixed_s: float
    """Seconds of everything else (intercept: embedding, output layer, loss)."""
    layer_bytes: float | None
    """Peak memory per layer (slope; None without memory measurements)."""
    fixed_bytes: float | None
    """Peak memory of everything else (intercept)."""

    @property
    def full_step_s(self) -> float:
        """Extrapolated seconds of one forward + backward of the full-depth model."""
        return self.fixed_s + self.n_layers * self.layer_s

    @property
    def tokens_per_s(self) -> float:
        """Extrapolated tokens per second per GPU (forward + backward only)."""
        return self.tokens_per_step / self.full_step_s

    @property
    def layer_tokens_per_s(self) -> float:
        """Tokens per second through one layer alone."""
        return self.tokens_per_step / self.layer_s

    @property
    def full_bytes(self) -> float | None:
        """Extrapolated peak memory of the full-depth model's forward + backward."""
        return None if self.layer_bytes is None else self.fixed_bytes + self.n_layers * self.layer_bytes


def extrapolate(points: list[Point], n_layers: int, tokens_per_step: int) -> Extrapolation:
    """Least-squares line through ``points`` (at least two distinct layer counts) -> `Extrapolation`.

    A non-positive slope (more layers not slower) means the timings are noise, not a
    measurement: refused with the fix."""
    ks = sorted({p.layers for p in points})
    if len(ks) < 2:
        raise OlmPoolError(f"throughput probe: need timings at two or more layer counts, got {ks}; "
                           "fix: pass e.g. --layers 1 2")

    def fit(ys):
        xs = [p.layers for p in points]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        return slope, my - slope * mx

    layer_s, fixed_s = fit([p.step_s for p in points])
    if not layer_s > 0:
        raise OlmPoolError(f"throughput probe: step time does not grow with the layer count "
                           f"({[(p.layers, round(p.step_s, 4)) for p in points]}); the timings are "
                           "noise; fix: more --steps, more layers apart, or a quieter machine")
    if any(p.peak_bytes is None for p in points):
        layer_b = fixed_b = None
    else:
        layer_b, fixed_b = fit([float(p.peak_bytes) for p in points])
    return Extrapolation(n_layers=n_layers, tokens_per_step=tokens_per_step, layer_s=layer_s,
                         fixed_s=max(fixed_s, 0.0), layer_bytes=layer_b, fixed_bytes=fixed_b)


def model_flops_per_token(shape) -> float:
    """Forward + backward FLOPs per token of ``shape`` at its training length: 6 x the
    matmul parameters (every linear layer and the output layer; not the input embedding or
    norms) plus attention scores and values, 12 x d_attn x (mean visible keys) per layer
    (causal: half the sequence; sliding-window layers: at most the window)."""
    d, h, kv, hd, f = shape.d_model, shape.n_heads, shape.n_kv_heads, shape.head_dim, shape.d_ff
    per_layer = d * (h * hd) + 2 * d * (kv * hd) + (h * hd) * d + 3 * d * f
    matmul = shape.n_layers * per_layer + d * shape.embedding_rows
    s = shape.seq_len
    keys = sum(((s + 1) / 2) if w is None else _mean_window_keys(s, w) for w in shape.windows)
    return 6.0 * matmul + 12.0 * (h * hd) * keys


def _mean_window_keys(s: int, w: int) -> float:
    """Mean number of keys a query sees over positions 1..s with a window of w tokens."""
    if w >= s:
        return (s + 1) / 2
    return (w * (w + 1) / 2 + (s - w) * w) / s


@dataclass(frozen=True)
class ClusterComparison:
    """A measured rate against config/paper.yaml's ``cluster`` assumption."""

    assumed: float
    """cluster.tokens_per_gpu_second.pretrain."""
    measured: float
    """The probe's extrapolated tokens/s per GPU."""
    pretrain_tokens: int
    """pretrain.tokens of the config (one pretraining run)."""
    gpus: int
    """cluster.gpus.pretrain."""
    runtime_assumed_min: int
    """SLURM runtime (minutes, safety included) of one pretraining job with the assumption."""
    runtime_measured_min: int
    """The same with the measured rate."""
    n_architectures: int
    """Rows of the registry (pretraining runs of the main study)."""

    @property
    def ratio(self) -> float:
        return self.measured / self.assumed

    def gpu_hours(self, rate: float) -> float:
        """GPU hours of the main study's pretraining runs at ``rate`` tokens/s/GPU (no safety)."""
        return self.n_architectures * self.pretrain_tokens / rate / 3600


def compare_with_cluster(measured: float, config_path: str | Path = PAPER_CONFIG,
                         registry: str | Path | None = None) -> ClusterComparison:
    """Job sizes of ``config_path`` (a study config with a ``cluster`` section) for the assumed
    and for the ``measured`` pretraining throughput."""
    import copy

    from olmpool.arch.registry import load_registry
    from olmpool.config import job_resources, read_config_file

    cfg = read_config_file(config_path)
    cluster = cfg.get("cluster")
    if not cluster or "tokens_per_gpu_second" not in cluster:
        raise OlmPoolError(f"{config_path}: no cluster.tokens_per_gpu_second section to compare with; "
                           "fix: pass the paper config (config/paper.yaml)")
    if not (measured > 0 and math.isfinite(measured)):
        raise OlmPoolError(f"measured throughput {measured!r} is not a positive number")
    tokens = int(cfg["pretrain"]["tokens"])
    mine = copy.deepcopy(cfg)
    mine["cluster"]["tokens_per_gpu_second"]["pretrain"] = measured
    reg = Path(registry) if registry else REPO / cfg.get("registry", "config/architectures.tsv")
    return ClusterComparison(
        assumed=float(cluster["tokens_per_gpu_second"]["pretrain"]), measured=float(measured),
        pretrain_tokens=tokens, gpus=int(cluster["gpus"]["pretrain"]),
        runtime_assumed_min=int(job_resources(cfg, "pretrain", tokens=tokens)["runtime"]),
        runtime_measured_min=int(job_resources(mine, "pretrain", tokens=tokens)["runtime"]),
        n_architectures=len(load_registry(reg)))


# --------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------

def shape_with_layers(shape, k: int):
    """``shape`` cut to its first ``k`` layers (the per-layer window pattern kept)."""
    if not 1 <= k <= shape.n_layers:
        raise OlmPoolError(f"throughput probe: {k} layers requested, the shape has {shape.n_layers}; "
                           f"fix: use --layers between 1 and {shape.n_layers}")
    return dataclasses.replace(shape, n_layers=k, windows=tuple(shape.windows[:k]))


def time_layers(shape, k: int, *, device: str, micro_batch: int, warmup: int, steps: int,
                backend: str = "auto", fp8: str = "off") -> Point:
    """Median wall seconds of forward + backward (per-token loss incl. z-loss, mean) of one
    ``micro_batch`` x ``shape.seq_len`` micro-batch through ``shape`` cut to ``k`` layers,
    on ``device``; peak memory on CUDA.  Parameters are bf16 on CUDA, fp32 on the CPU."""
    import torch

    from olmpool.arch.megatron import build_model

    cuda = device == "cuda"
    sk = shape_with_layers(shape, k)
    torch.manual_seed(0)
    model = build_model(sk, params_dtype=torch.bfloat16 if cuda else torch.float32, backend=backend, fp8=fp8)
    model.to(device)
    s = sk.seq_len
    ids = torch.randint(0, sk.vocab_size, (micro_batch, s + 1), device=device)
    x, y = ids[:, :-1], ids[:, 1:]
    pos = torch.arange(s, device=device).unsqueeze(0).expand(micro_batch, s)

    def step():
        model.zero_grad(set_to_none=True)
        model(x, pos, None, labels=y).float().mean().backward()

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    try:
        for _ in range(warmup):
            step()
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - t)
        peak = int(torch.cuda.max_memory_allocated()) if cuda else None
    finally:
        model = None  # drop the reference before emptying the CUDA cache
        if cuda:
            torch.cuda.empty_cache()
    return Point(layers=k, step_s=statistics.median(times), peak_bytes=peak)


def probe_configs(device: str, te: bool, fp8_requested: str = "auto") -> list[dict]:
    """What to time: bf16 (fp32 on CPU) with the auto backend, plus TE fp8 where TE runs."""
    out = [dict(name="bf16" if device == "cuda" else "fp32", backend="auto", fp8="off")]
    if te and fp8_requested != "off":
        out.append(dict(name="fp8 (TE hybrid)", backend="te", fp8="auto"))
    return out


def _fmt_bytes(b):
    return "n/a" if b is None else f"{b / GiB:.2f} GiB"


def main(args) -> int:
    """``python -m olmpool.smoke probe``: time, extrapolate, compare; write the status line."""
    import torch

    from olmpool.arch.megatron import count_parameters, resolve_backend, te_available
    from olmpool.arch.registry import load_registry, load_scale, resolve
    from olmpool.smoke import FAILED, PASSED, SKIPPED, write_status

    if args.device == "cuda" and not torch.cuda.is_available():
        print(write_status(args.status, SKIPPED, "no CUDA device (torch.cuda.is_available() is False)"))
        return 0
    from olmpool.config import read_config_file

    paper = read_config_file(args.config)
    micro = int(args.micro_batch or paper["pretrain"]["micro_batch_size"])
    reg = load_registry(REPO / "config" / "architectures.tsv")
    scale = load_scale(args.scale, REPO / "config" / "scales")
    te = args.device == "cuda" and te_available()
    layers = sorted(set(args.layers))
    dev_name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"throughput probe on {dev_name}: scale {args.scale}, layers {layers} -> {scale.n_layers}, "
          f"micro-batch {micro}, backend auto = {resolve_backend('auto')}, Transformer Engine "
          f"{'present' if te else 'absent'}; forward + backward only (no optimizer, no communication)")
    failures, lines, notes = [], [], []
    first_rate = None
    unit = "GPU" if args.device == "cuda" else "device"
    for arch_id in args.arch:
        full = resolve(reg[arch_id], scale)
        if args.seq:
            full = dataclasses.replace(full, pretrain_seq_len=args.seq)
        shape_fp8 = dataclasses.replace(full, fp8=True)
        n_params = count_parameters(full)
        for conf in probe_configs(args.device, te, args.fp8):
            shape = shape_fp8 if conf["fp8"] == "auto" else full
            label = f"{arch_id} {conf['name']} seq {shape.seq_len}"
            ex, mb_used = None, micro
            for mb in dict.fromkeys([micro, 1]):  # the config's micro-batch; 1 if that runs out of memory
                points = []
                try:
                    for k in layers:
                        p = time_layers(shape, k, device=args.device, micro_batch=mb, warmup=args.warmup,
                                        steps=args.steps, backend=conf["backend"], fp8=conf["fp8"])
                        points.append(p)
                        print(f"  {label}: micro-batch {mb}, {k} layer(s): {p.step_s * 1e3:9.1f} ms, peak "
                              f"{_fmt_bytes(p.peak_bytes)}", flush=True)
                    ex, mb_used = extrapolate(points, scale.n_layers, mb * shape.seq_len), mb
                    break
                except torch.cuda.OutOfMemoryError as exc:
                    k_failed = layers[len(points)]
                    notes.append(f"{conf['name']}: micro-batch {mb} out of memory at {k_failed} layer(s)")
                    print(f"  {label}: micro-batch {mb}: CUDA out of memory at {k_failed} layer(s): "
                          f"{str(exc).splitlines()[0][:160]}")
                    torch.cuda.empty_cache()
                except OlmPoolError as exc:
                    failures.append(f"{label}: {exc}")
                    print(f"  {label}: FAILED: {exc}")
                    break
            if ex is None:
                if not failures or not failures[-1].startswith(label):
                    failures.append(f"{label}: out of memory even at micro-batch 1")
                continue
            flops = model_flops_per_token(shape)
            print(f"  {label}: per layer {ex.layer_s * 1e3:.1f} ms ({ex.layer_tokens_per_s:,.0f} tokens/s "
                  f"through one layer), peak {_fmt_bytes(ex.layer_bytes)} per layer; fixed part "
                  f"{ex.fixed_s * 1e3:.1f} ms, {_fmt_bytes(ex.fixed_bytes)}")
            print(f"  {label}: {scale.n_layers}-layer model ({n_params / 1e6:,.1f}M parameters): "
                  f"{ex.full_step_s * 1e3:.0f} ms per micro-batch of {ex.tokens_per_step} tokens = "
                  f"{ex.tokens_per_s:,.0f} tokens/s per {unit}, {ex.tokens_per_s * flops / 1e12:.3g} model "
                  f"TFLOP/s; forward + backward peak {_fmt_bytes(ex.full_bytes)}")
            if ex.full_bytes is not None:
                dp = max(1, int(paper["cluster"]["gpus"]["pretrain"]) // _model_parallel(paper))
                extra = n_params * (2 + 12 / dp)  # fp32 grad buffer (vs bf16 grads timed) + Adam shard
                total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
                need = ex.full_bytes + extra
                print(f"  {label}: training estimate {_fmt_bytes(need)} per GPU at micro-batch {mb_used} "
                      f"(+ fp32 gradient buffer and 1/{dp} of fp32 master weights + Adam moments; no "
                      f"activation recompute): {'fits' if need < total else 'does NOT fit'} in "
                      f"{_fmt_bytes(total)}")
                if need >= total:
                    notes.append(f"{conf['name']}: {scale.n_layers} layers at micro-batch {mb_used} need "
                                 f"~{need / GiB:.0f} GiB > {total / GiB:.0f} GiB")
            lines.append(f"{conf['name']}: {ex.tokens_per_s:,.0f} tok/s/{unit}"
                         + (f" at micro-batch {mb_used}" if mb_used != micro else ""))
            first_rate = first_rate or ex.tokens_per_s
    if first_rate is not None:
        c = compare_with_cluster(first_rate, args.config)
        print(f"config {Path(args.config).name} cluster.tokens_per_gpu_second.pretrain = {c.assumed:,.0f}; "
              f"measured (extrapolated, forward + backward only) {c.measured:,.0f} = {c.ratio:.2f}x the assumption")
        print(f"  one pretraining job ({c.pretrain_tokens:,} tokens on {c.gpus} GPUs, safety included): "
              f"{c.runtime_assumed_min / 60:.1f} h assumed vs {c.runtime_measured_min / 60:.1f} h at the measured rate")
        print(f"  {c.n_architectures} pretraining runs: {c.gpu_hours(c.assumed):,.0f} GPU hours assumed vs "
              f"{c.gpu_hours(c.measured):,.0f} at the measured rate (paper, all stages: ~170,000 H100 hours)")
    if failures:
        print(write_status(args.status, FAILED, failures[0]))
        return 1
    extra = f"; assumption {c.assumed:,.0f} ({c.ratio:.2f}x)" if first_rate else ""
    extra += f"; {'; '.join(notes)}" if notes else ""
    print(write_status(args.status, PASSED, f"{dev_name}: " + ", ".join(lines) + extra))
    return 0


def _model_parallel(cfg: dict) -> int:
    p = (cfg.get("parallel") or {}).get("pretrain", {})
    return int(p.get("tp", 1)) * int(p.get("pp", 1)) * int(p.get("cp", 1))
