"""Weight initialisation on the device vs the CPU, as the training loop does it.

The training loop seeds ``torch.manual_seed(init_seed(pretrain.seed, family))`` and then
builds the model (`olmpool.train.loop.train`), so that architectures of one initialisation
family (Table 1 "Init") start from the same weights and other families from other weights.
On the CPU, megatron-core draws every weight from torch's default generator
(``use_cpu_initialization``), which that seed controls.  On CUDA it initialises linear and
embedding weights on the GPU inside ``get_cuda_rng_tracker().fork()``
(``_initialize_affine_weight_gpu`` in megatron/core/tensor_parallel/layers.py), whose
states ``model_parallel_cuda_manual_seed`` seeds; `olmpool.arch.megatron.seed_device_init`
reseeds them from the family seed before each build, and this check shows it on the device.

Each build runs in its own process (as every training run does), with the debug scale's
Llama 3 shape:

- device, family seed of ``G``; device, family seed of ``B``; CPU, family seed of ``G``.

Fails when the two families get identical weights on the device, or when the device's
weights do not have the CPU's per-tensor standard deviations (init scheme differs: ratio
outside 0.9-1.1 for any tensor with more than 1,000 entries); prints (does not fail on)
whether the device reproduces the CPU's weights value for value.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ARCH = "G_pre_8kv_8k_14k"
FAMILIES = ("G", "B")


def build_and_save(arch: str, family: str, out: str) -> None:
    """Worker: seed as the training loop does for ``family``, build ``arch`` at debug scale on
    this process's device, save {name: fp32 CPU tensor}."""
    import torch

    from olmpool.arch.megatron import build_model
    from olmpool.arch.registry import load_registry, load_scale, resolve
    from olmpool.train.loop import init_seed
    from olmpool.train.testing import REPO

    reg = load_registry(REPO / "config" / "architectures.tsv")
    shape = resolve(reg[arch], load_scale("debug", REPO / "config" / "scales"))
    torch.manual_seed(init_seed(42, family))
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model = build_model(shape, params_dtype=dtype, fp8="off")
    torch.save({k: v.detach().float().cpu() for k, v in model.state_dict().items()
                if isinstance(v, torch.Tensor) and v.is_floating_point()}, out)


def compare(dev_a: dict, dev_b: dict, cpu_a: dict, device_is_cpu: bool) -> tuple[list[str], list[str]]:
    """(failures, notes) of the three weight sets (see the module docstring)."""
    fails, notes = [], []
    keys = sorted(k for k in cpu_a if k in dev_a and dev_a[k].numel() > 1000 and cpu_a[k].std() > 0)
    if not keys:
        return ["no comparable weight tensors"], notes
    same_family = [k for k in keys if k in dev_b and bool((dev_a[k] == dev_b[k]).all())]
    if len(same_family) == len(keys):
        fails.append(f"two init families ({FAMILIES[0]}, {FAMILIES[1]}) get identical weights on the device "
                     f"({len(keys)} of {len(keys)} tensors equal): the family seed does not reach it")
    elif same_family:
        notes.append(f"{len(same_family)} of {len(keys)} tensors equal across families: {same_family[:3]}")
    ratios = {k: float(dev_a[k].std() / cpu_a[k].std()) for k in keys}
    off = {k: r for k, r in ratios.items() if not 0.9 <= r <= 1.1}
    if off:
        k = next(iter(off))
        fails.append(f"initial weight std on the device differs from the CPU's for {len(off)} tensors "
                     f"(e.g. {k}: ratio {off[k]:.3f})")
    notes.append(f"std device / CPU over {len(keys)} tensors: {min(ratios.values()):.3f} - {max(ratios.values()):.3f}")
    diff = max(float((dev_a[k] - cpu_a[k]).abs().max()) for k in keys)
    tol = 0.0 if device_is_cpu else 1e-2  # bf16 rounding of weights ~0.02 in size
    notes.append("device weights reproduce the CPU's (same family seed): "
                 + ("yes" if diff <= tol else f"no (max |diff| {diff:.3g}); a pretraining run on this device "
                    "does not start from the weights of the same run on the CPU"))
    return fails, notes


def main(args) -> int:
    """``python -m olmpool.smoke init``: three builds in subprocesses, compared; status line."""
    import torch

    from olmpool.smoke import FAILED, PASSED, SKIPPED, write_status
    from olmpool.smoke.compare import device_env

    if args.device == "cuda" and not torch.cuda.is_available():
        print(write_status(args.status, SKIPPED, "no CUDA device (torch.cuda.is_available() is False)"))
        return 0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    runs = [(args.device, FAMILIES[0]), (args.device, FAMILIES[1]), ("cpu", FAMILIES[0])]
    out = {}
    procs = []
    for where, fam in runs:
        path = work / f"init_{where}_{fam}.pt"
        cmd = [sys.executable, "-m", "olmpool.smoke", "init-weights", "--arch", ARCH, "--family", fam, "--out", str(path)]
        procs.append((where, fam, path, subprocess.Popen(cmd, env=device_env(where), stdout=subprocess.PIPE,
                                                         stderr=subprocess.STDOUT, text=True)))
    for where, fam, path, p in procs:
        log, _ = p.communicate(timeout=600)
        if p.returncode != 0:
            print(log[-2000:])
            print(write_status(args.status, FAILED, f"building {ARCH} on {where} exited {p.returncode}"))
            return 1
        out[(where, fam)] = torch.load(path)
    fails, notes = compare(out[(args.device, FAMILIES[0])], out[(args.device, FAMILIES[1])], out[("cpu", FAMILIES[0])],
                           device_is_cpu=args.device == "cpu")
    print(f"init: {ARCH} at debug scale, families {FAMILIES} on {args.device}, family {FAMILIES[0]} on the CPU")
    for n in notes:
        print(f"  {n}")
    for f in fails:
        print(f"  FAILED: {f}")
    if fails:
        print(write_status(args.status, FAILED, fails[0]))
        return 1
    print(write_status(args.status, PASSED, "init families differ on the device; init scale as on the CPU"))
    return 0
