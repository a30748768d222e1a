"""CLI: ``olmpool data prepare`` and the prepared-data part of ``olmpool data check``."""

from __future__ import annotations

from pathlib import Path

from olmpool import OlmPoolError


def _prepare(args) -> int:
    from olmpool.data.prepare import input_table, prepare
    from olmpool.data.registry import eval_root_of, load_doc, settings_from

    if args.list:
        print(input_table())
        return 0
    if not args.config:
        raise OlmPoolError("olmpool data prepare needs --config (config/paper.yaml)")
    doc = load_doc(args.config)
    out = args.out or eval_root_of(doc)
    if not out:
        raise OlmPoolError(f"{args.config}: no output directory. Fix: pass --out DIR or set data.eval_root")
    mirror = Path(args.mirror) if args.mirror else None
    if mirror is not None and not mirror.is_dir():
        raise OlmPoolError(f"--from {mirror}: not a directory. Fix: give the mirror directory (layout: olmpool.data.fetch)")
    settings = settings_from(doc, args.config)
    manifest = prepare(settings, Path(out), args.only, mirror, progress=not args.no_progress)
    done = args.only or sorted(manifest["inputs"])
    print(f"prepared {len(done)} input(s) in {out}; manifest {Path(out) / 'manifest.json'}")
    return 0


def check_prepared(config: str | Path, full: bool = True, eval_root: str | Path | None = None) -> int:
    """Verify data.eval_root against its manifest; raise naming the command for the first problem.

    Returns the number of files checked (0 when the config has no data.eval_root).
    """
    from olmpool.data.registry import load_doc

    return check_prepared_doc(load_doc(config), str(config), full=full, eval_root=eval_root)


def check_prepared_doc(doc: dict, config: str, full: bool = False, eval_root: str | Path | None = None) -> int:
    """``check_prepared`` on a parsed config (the study DAG's, at parse time: sizes only by
    default, the sha256 comparison is the first job's); ``config`` names the file in the fix."""
    from olmpool.data.prepare import check, prepare_command, raise_problems
    from olmpool.data.registry import INPUTS, MANIFEST, eval_root_of, settings_from

    root = eval_root or eval_root_of(doc)
    if not root:
        return 0
    if not (Path(root) / MANIFEST).is_file():
        raise OlmPoolError(f"data.eval_root {root} has no {MANIFEST}: the evaluation inputs are not prepared. "
                           f"Fix: {prepare_command(str(config), root, [])}")
    settings = settings_from(doc, str(config))
    raise_problems(check(settings, Path(root), full=full), str(config), Path(root))
    return sum(len(i.files(settings)) for i in INPUTS)


def register(dsub) -> None:
    p = dsub.add_parser("prepare", help="fetch every paper-scale input (evaluation data, tokenized training data) from its public source, convert it, "
                                        "and write DIR/manifest.json")
    p.add_argument("--config", default=None, help="study config (config/paper.yaml)")
    p.add_argument("--out", default=None, help="output directory (default: data.eval_root of the config)")
    p.add_argument("--only", nargs="+", default=None, metavar="NAME", help="prepare only these inputs (see --list)")
    p.add_argument("--from", dest="mirror", default=None, metavar="MIRROR",
                   help="convert from a local mirror instead of the network (layout: olmpool.data.fetch)")
    p.add_argument("--list", action="store_true", help="print the inputs (source, revision, what is kept) and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_prepare)
