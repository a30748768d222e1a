"""``olmpool launch``: run an olmpool training command under torchrun, one process per GPU,
multi-node from SLURM variables.

Inside a SLURM allocation (``srun olmpool launch -- pretrain ...`` with one task per node):

- nodes = ``SLURM_NNODES``, this node's rank = ``SLURM_NODEID``;
- rendezvous host = the first host of ``SLURM_JOB_NODELIST`` (``scontrol show hostnames``
  when available, else parsed), port = ``MASTER_PORT`` or 20000 + SLURM_JOB_ID % 20000;
- processes per node = ``--nproc-per-node``, else ``SLURM_GPUS_ON_NODE``, else the config's
  ``parallel.nproc_per_node``.

Outside SLURM it runs ``torchrun --standalone`` on this machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys

from olmpool import OlmPoolError


def first_host(nodelist: str) -> str:
    """First hostname of a SLURM nodelist such as ``gpu[003-005,009],cpu1`` -> ``gpu003``."""
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                             text=True, timeout=20, check=True).stdout.split()
        if out:
            return out[0]
    except (OSError, subprocess.SubprocessError):
        pass
    m = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not m:
        raise OlmPoolError(f"cannot parse SLURM_JOB_NODELIST {nodelist!r}; set MASTER_ADDR")
    prefix, ranges = m.group(1), m.group(2)
    if not ranges:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def torchrun_command(argv: list[str], nproc: int | None, env: dict | None = None) -> list[str]:
    """The torchrun command line for ``olmpool <argv>`` in environment ``env``."""
    env = dict(os.environ if env is None else env)
    if nproc is None:
        nproc = int(env.get("SLURM_GPUS_ON_NODE", 0) or 0) or None
    if nproc is None:
        nproc = 1
    base = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    if "SLURM_JOB_ID" in env and int(env.get("SLURM_NNODES", "1")) >= 1:
        nnodes = int(env.get("SLURM_NNODES", "1"))
        node_rank = int(env.get("SLURM_NODEID", "0"))
        addr = env.get("MASTER_ADDR") or first_host(env.get("SLURM_JOB_NODELIST", "localhost"))
        port = env.get("MASTER_PORT") or str(20000 + int(env["SLURM_JOB_ID"]) % 20000)
        base += [f"--nnodes={nnodes}", f"--node_rank={node_rank}", f"--master_addr={addr}",
                 f"--master_port={port}"]
    else:
        base += ["--standalone"]
    return base + ["-m", "olmpool.cli", *argv]


def _launch(args) -> int:
    argv = list(args.olmpool_args)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv or argv[0] not in ("pretrain", "extend"):
        raise OlmPoolError("olmpool launch needs a training command after '--', e.g. "
                           "`olmpool launch -- pretrain --config config/paper.yaml --arch ID --out DIR`")
    nproc = args.nproc_per_node
    if nproc is None and "--config" in argv:
        from olmpool.train.config import load_train_config
        cfg = load_train_config(argv[argv.index("--config") + 1])
        if "SLURM_GPUS_ON_NODE" not in os.environ:
            nproc = cfg.parallel.nproc_per_node
    cmd = torchrun_command(argv, nproc)
    print(" ".join(shlex.quote(c) for c in cmd), flush=True)
    if args.dry_run:
        return 0
    return subprocess.call(cmd)


def register(sub) -> None:
    p = sub.add_parser("launch", help="run pretrain/extend under torchrun (multi-node from SLURM)")
    p.add_argument("--nproc-per-node", type=int, default=None, help="processes (GPUs) per node")
    p.add_argument("--dry-run", action="store_true", help="print the torchrun command only")
    p.add_argument("olmpool_args", nargs=argparse.REMAINDER, help="-- pretrain|extend ...")
    p.set_defaults(func=_launch)


if __name__ == "__main__":
    from olmpool.cli import main

    sys.exit(main(["launch", *sys.argv[1:]]))
