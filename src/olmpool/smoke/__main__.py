"""``python -m olmpool.smoke <check> ...``: the checks of scripts/gpu_smoke.sh (see olmpool.smoke)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m olmpool.smoke", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="check", required=True)

    c = sub.add_parser("compare", help="tiny pretrain/extend/evaluate: device vs CPU fp32")
    c.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="device of the runs compared with CPU fp32")
    c.add_argument("--work", required=True, help="work directory (corpus, runs, logs)")
    c.add_argument("--arch", action="append", default=None, help="architecture id (repeat; default: Llama 3 and the worst)")
    c.add_argument("--jobs", type=int, default=None, help="processes at once (default: half the cores, at most 6)")
    c.add_argument("--status", default=None, help="write the one-line status here")

    i = sub.add_parser("init", help="weight initialisation: init families differ on the device, scale as on the CPU")
    i.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    i.add_argument("--work", required=True)
    i.add_argument("--status", default=None)
    w = sub.add_parser("init-weights", help=argparse.SUPPRESS)
    w.add_argument("--arch", required=True)
    w.add_argument("--family", required=True)
    w.add_argument("--out", required=True)

    e = sub.add_parser("env", help="describe the machine; import everything the checks need")
    e.add_argument("--status", default=None)
    e.add_argument("--print-pip-download", action="store_true", help="only print the pip download command of the wheels")

    r = sub.add_parser("pytest-report", help="status line of a finished pytest run (JUnit XML)")
    r.add_argument("--junit", required=True)
    r.add_argument("--returncode", type=int, required=True)
    r.add_argument("--status", default=None)

    p = sub.add_parser("probe", help="paper-width throughput probe, extrapolated to the full depth")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--arch", nargs="+", default=["G_pre_8kv_8k_14k"], help="architecture ids (default: Llama 3)")
    p.add_argument("--scale", default="paper", help="scale preset whose shape is probed (tiny: for tests)")
    p.add_argument("--layers", nargs="+", type=int, default=[1, 2], help="layer counts timed (two or more)")
    p.add_argument("--micro-batch", type=int, default=None, help="default: pretrain.micro_batch_size of --config")
    p.add_argument("--seq", type=int, default=None, help="sequence length (default: the architecture's pretraining length)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per configuration")
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration (median)")
    p.add_argument("--fp8", default="auto", choices=["auto", "off"], help="auto: also time TE fp8 where TE is installed")
    p.add_argument("--config", default=str(REPO / "config" / "paper.yaml"), help="study config with the cluster section")
    p.add_argument("--status", default=None)
    return ap


def main(argv: list[str] | None = None) -> int:
    from olmpool import OlmPoolError

    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except OlmPoolError as exc:
        print(f"olmpool.smoke: error: {exc}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    if args.check == "env" and args.print_pip_download:
        from olmpool.smoke.env import pip_download_command

        print(pip_download_command())
        return 0
    if args.check == "init-weights":
        from olmpool.smoke.initcheck import build_and_save

        build_and_save(args.arch, args.family, args.out)
        return 0
    if args.check == "compare":
        from olmpool.smoke.compare import main as run
    elif args.check == "init":
        from olmpool.smoke.initcheck import main as run
    elif args.check == "env":
        from olmpool.smoke.env import main as run
    elif args.check == "pytest-report":
        from olmpool.smoke.pytest_report import main as run
    elif args.check == "probe":
        from olmpool.smoke.probe import main as run
    return int(run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
