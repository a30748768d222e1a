"""``olmpool data prepare`` and ``olmpool data check``: make the inputs, record them, verify them.

``DIR/manifest.json`` records per input its source, revision (as resolved when fetched),
what is kept, the selection made, each file's path, rows, bytes and sha256, and the command
that makes it again. ``check`` compares the files with the manifest and names, for the first
missing or edited file, the ``olmpool data prepare --only NAME`` command that makes it.
"""

from __future__ import annotations

import datetime as _dt
import json
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

from olmpool import OlmPoolError
from olmpool.data.core import Input, Out, Settings
from olmpool.results import sha256 as sha256_file
from olmpool.data.fetch import Fetcher
from olmpool.data.registry import INPUTS, MANIFEST, select

FORMAT = 1


def prepare_command(config: str, out: str | Path, names: list[str], mirror: str | Path | None = None) -> str:
    cmd = ["olmpool", "data", "prepare", "--config", str(config), "--out", str(out)]
    if names:
        cmd += ["--only", *names]
    if mirror is not None:
        cmd += ["--from", str(mirror)]
    return shlex.join(cmd)


def read_manifest(root: Path) -> dict:
    path = Path(root) / MANIFEST
    if not path.is_file():
        return {"format": FORMAT, "inputs": {}}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != FORMAT or not isinstance(doc.get("inputs"), dict):
            raise ValueError(f"format {doc.get('format')!r}")
    except (ValueError, json.JSONDecodeError) as exc:
        raise OlmPoolError(f"{path}: not an olmpool data manifest ({exc}). Fix: rerun `olmpool data prepare`") from exc
    return doc


def _write_manifest(root: Path, doc: dict) -> None:
    from olmpool.atomic import write_text_atomic

    write_text_atomic(json.dumps(doc, indent=1, ensure_ascii=False, sort_keys=True) + "\n", Path(root) / MANIFEST, encoding="utf-8")


def prepare(settings: Settings, out: Path, names: list[str] | None = None, mirror: Path | None = None,
            progress: bool = True, log=print) -> dict:
    """Make the named inputs (all by default) under ``out``; update and return the manifest.

    Each input is recorded once all its files are written, so an interrupted run leaves the
    manifest describing only finished inputs.
    """
    from olmpool.provenance import code_version

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = select(names)
    for inp in chosen:  # settings errors (e.g. HELMET counts) before any download
        inp.files(settings)
    fetcher = Fetcher(downloads=out / ".downloads", mirror=mirror, progress=progress)
    doc = read_manifest(out)
    for k, inp in enumerate(chosen, start=1):
        if not inp.files(settings):
            log(f"[{k}/{len(chosen)}] {inp.name}: not used by {settings.config_path}, skipped")
            continue
        log(f"[{k}/{len(chosen)}] {inp.name}: {inp.source}")
        writer = Out(out)
        record = inp.build(settings, fetcher, writer) or {}
        expected = sorted(inp.files(settings))
        got = sorted(w.path for w in writer.written)
        if got != expected:
            raise OlmPoolError(f"{inp.name}: wrote {got}, expected {expected} (a converter bug)")
        doc["inputs"][inp.name] = {
            "benchmark": inp.benchmark, "source": inp.source, "revision": inp.revision, "kept": inp.kept,
            "defined_in": inp.defined_in, "resolved": record,
            "from": str(mirror) if mirror is not None else "network",
            "files": [{"path": w.path, "rows": w.rows, "bytes": (out / w.path).stat().st_size,
                       "sha256": sha256_file(out / w.path)} for w in writer.written],
            "rows": sum(w.rows for w in writer.written),
            "command": prepare_command(settings.config_path, out, [inp.name], mirror),
            "prepared": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        doc["format"] = FORMAT
        doc["code_version"] = code_version()
        doc["settings"] = asdict(settings)
        _write_manifest(out, doc)
    return doc


@dataclass
class Problem:
    name: str
    path: str
    what: str

    def message(self, config: str, root: Path) -> str:
        return (f"{root / self.path}: {self.what}. Fix: {prepare_command(config, root, [self.name])}")


def check(settings: Settings, root: Path, full: bool = True, names: list[str] | None = None) -> list[Problem]:
    """Problems with the prepared inputs under ``root`` (empty: all present and unchanged).

    ``full``: compare sha256 (else sizes only: cheap enough to run when the DAG is parsed).
    """
    root = Path(root)
    doc = read_manifest(root)
    problems = []
    for inp in (select(names) if names else INPUTS):
        entry = doc["inputs"].get(inp.name)
        recorded = {f["path"]: f for f in (entry or {}).get("files", [])}
        for rel in inp.files(settings):
            path = root / rel
            f = recorded.get(rel)
            if not path.is_file():
                problems.append(Problem(inp.name, rel, "missing"))
            elif f is None:
                problems.append(Problem(inp.name, rel, f"not in {root / MANIFEST} (not made by `olmpool data prepare`, or for other settings)"))
            elif path.stat().st_size != f["bytes"]:
                problems.append(Problem(inp.name, rel, f"{path.stat().st_size} bytes, the manifest records {f['bytes']} (edited or truncated)"))
            elif full and sha256_file(path) != f["sha256"]:
                problems.append(Problem(inp.name, rel, "sha256 differs from the manifest (edited)"))
    return problems


def raise_problems(problems: list[Problem], config: str, root: Path, show: int = 12) -> None:
    """One OlmPoolError listing the problems (the first ``show``) and the command that fixes them."""
    if problems:
        lines = [f"  {root / p.path}: {p.what}" for p in problems[:show]]
        if len(problems) > show:
            lines.append(f"  ... and {len(problems) - show} more")
        names = sorted({p.name for p in problems}, key=[i.name for i in INPUTS].index)
        raise OlmPoolError(f"prepared data in {root}: {len(problems)} file(s) missing or changed:\n" + "\n".join(lines)
                           + f"\nFix: {prepare_command(config, root, names)}")


def input_table(inputs: list[Input] | None = None) -> str:
    """The README table: input, source, revision, what is kept, where it is defined."""
    rows = ["| input | source | revision | kept | defined in |", "|---|---|---|---|---|"]
    for i in inputs or INPUTS:
        rows.append(f"| `{i.name}` | {i.source} | {i.revision} | {i.kept} | {i.defined_in} |")
    return "\n".join(rows)
