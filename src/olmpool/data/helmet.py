"""HELMET's data: the per-task files of its data archive, and the five ICL datasets.

Upstream: princeton-nlp/HELMET at the commit ``olmpool.eval.upstream`` pins for HELMET. ``scripts/download_data.sh`` fetches
``data.tar.gz`` from the Hugging Face dataset repository princeton-nlp/HELMET (branch main;
the commit it resolves to is recorded in the manifest); ``configs/{recall,rag,rerank}.yaml``
name the per-length files (json_kv/test_k{keys}_dep6.jsonl, ruler/<task>/validation_<length>
.jsonl, kilt/<set>-dev-multikilt_1000_k{passages}_dep{6,3}.jsonl with the train files as
demonstrations, msmarco/test_reranking_data_k{passages}_dep3.jsonl with k10 as demonstrations).
Kept: exactly the files our configured lengths and counts read (``eval.helmet.contexts`` and
``counts``), verbatim; the test samples are drawn from them with the run seed at evaluation,
as upstream draws them in ``run_test``.

ICL (``data.py`` ``load_icl``): TREC (CogComp/trec, train / test, ``coarse_label`` or
``fine_label``), Banking77 (PolyAI/banking77, train / test, ``label``), CLINC150 (clinc_oos,
config ``plus``, train / *validation*, ``intent``), NLU (xingkunliuxtracta/nlu_evaluation_data,
its one train split cut by ``train_test_split(test_size=0.1, seed=seed)``). Kept: every row
as ``{"text", "label"}`` (label = the dataset's integer class id) in ``icl/<name>/{train,test}
.jsonl``, in the order upstream iterates them; the shuffles and label balancing of
``load_icl`` use the run seed and happen at evaluation (``olmpool.eval.helmet``).
"""

from __future__ import annotations

import math
import tarfile
from typing import Iterable

import numpy as np

from olmpool import OlmPoolError
from olmpool.data.core import Input, Out, Settings
from olmpool.data.fetch import Fetcher
from olmpool.eval.upstream import UPSTREAM

HELMET_COMMIT = UPSTREAM["helmet"]["commit"]
ARCHIVE_REPO = "princeton-nlp/HELMET"
ARCHIVE_REVISION = "main"  # scripts/download_data.sh downloads .../resolve/main/data.tar.gz
ARCHIVE_URL = f"https://huggingface.co/datasets/{ARCHIVE_REPO}/resolve/{ARCHIVE_REVISION}/data.tar.gz"
CITE = f"princeton-nlp/HELMET@{HELMET_COMMIT[:10]}"


def archive_files(settings: Settings) -> list[str]:
    """The archive members (relative to its data/ folder) the configured HELMET run reads."""
    from olmpool.eval.helmet import JSON_KV_FILE, KILT_FILES, MSMARCO_FILES, RULER_FILE, RULER_FOR

    def count(key: str, length: int) -> int:
        per = settings.helmet_counts.get(key)
        if not isinstance(per, dict) or not isinstance(per.get(length), int):
            raise OlmPoolError(f"{settings.config_path}: eval.helmet.counts.{key} has no count for length {length}; "
                               "the count names the HELMET archive file. Fix: give {length: count} as upstream's configs do")
        return per[length]

    files = []
    for length in settings.helmet_contexts:
        files.append(f"json_kv/{JSON_KV_FILE.format(k=count('json_kv', length))}")
        files += [f"ruler/{task}/{RULER_FILE.format(length=length)}" for task in RULER_FOR.values()]
        files += [f"kilt/{test.format(k=count('rag', length))}" for test, _ in KILT_FILES.values()]
        files.append(f"msmarco/{MSMARCO_FILES[0].format(k=count('rerank', length))}")
    files += [f"kilt/{demo}" for _, demo in KILT_FILES.values()]
    files.append(f"msmarco/{MSMARCO_FILES[1]}")
    return sorted(set(files))


def _build_archive(settings: Settings, fetcher: Fetcher, out: Out) -> dict:
    from tqdm import tqdm

    want = set(archive_files(settings))
    path = fetcher.file(ARCHIVE_URL)
    found = set()
    with tarfile.open(path, "r:gz") as tar, tqdm(total=len(want), desc="HELMET archive", disable=not fetcher.progress) as bar:
        for member in tar:
            name = member.name.removeprefix("./").removeprefix("data/")
            if name in want and member.isfile():
                data = tar.extractfile(member).read()
                out.raw(f"helmet/{name}", data, rows=sum(1 for line in data.splitlines() if line.strip()))
                found.add(name)
                bar.update(1)
    missing = sorted(want - found)
    if missing:
        raise OlmPoolError(f"{ARCHIVE_URL}: the archive has no data/{missing[0]} ({len(missing)} files missing). "
                           "Fix: check eval.helmet.counts against upstream's configs")
    return {"archive_revision": fetcher.hf_revision(ARCHIVE_REPO, ARCHIVE_REVISION), "files": len(found)}


def hf_train_test_split(n: int, test_size: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, test) row indices of ``Dataset.train_test_split(test_size, seed=seed)``.

    Hugging Face ``datasets`` (``arrow_dataset.py``, ``train_test_split`` with shuffle): test
    gets ceil(test_size * n) rows, train floor((1 - test_size) * n); the rows are
    ``np.random.default_rng(seed).permutation(n)``, test first.
    """
    n_test = math.ceil(test_size * n)
    n_train = math.floor((1 - test_size) * n)
    perm = np.random.default_rng(seed).permutation(n)
    return perm[n_test:n_test + n_train].tolist(), perm[:n_test].tolist()


def icl_rows(rows: Iterable[dict], text_field: str, label_field: str, num_labels: int, where: str) -> list[dict]:
    """``{"text", "label"}`` rows of an ICL dataset (label: the integer class id)."""
    out = []
    for i, r in enumerate(rows):
        try:
            text, label = r[text_field], int(r[label_field])
        except (KeyError, TypeError, ValueError) as exc:
            raise OlmPoolError(f"{where}, row {i}: needs a text field {text_field!r} and an integer {label_field!r} ({exc})") from exc
        if not 0 <= label < num_labels:
            raise OlmPoolError(f"{where}, row {i}: label {label} outside [0, {num_labels}) (HELMET data.py load_icl)")
        out.append({"text": text, "label": label})
    return out


# name -> (dataset, config, train split, test split, text field, label field, labels);
# TRUST_REMOTE_CODE: the datasets load_icl loads with trust_remote_code=True (loading scripts)
TRUST_REMOTE_CODE = {"CogComp/trec", "PolyAI/banking77", "xingkunliuxtracta/nlu_evaluation_data"}
ICL_SOURCES = {
    "trec_coarse": ("CogComp/trec", None, "train", "test", "text", "coarse_label", 6),
    "trec_fine": ("CogComp/trec", None, "train", "test", "text", "fine_label", 50),
    "banking77": ("PolyAI/banking77", None, "train", "test", "text", "label", 77),
    "clinic150": ("clinc_oos", "plus", "train", "validation", "text", "intent", 151),
    "nlu": ("xingkunliuxtracta/nlu_evaluation_data", None, "train", None, "text", "label", 68),
}


def _build_icl(name: str):
    dataset, config, train_split, test_split, text_field, label_field, num_labels = ICL_SOURCES[name]

    def build(settings: Settings, fetcher: Fetcher, out: Out) -> dict:
        where = f"{dataset} ({config or 'default'})"
        remote = dataset in TRUST_REMOTE_CODE
        train = icl_rows(fetcher.hf_rows(dataset, config, train_split, trust_remote_code=remote), text_field, label_field, num_labels, f"{where} {train_split}")
        record = {"dataset_revision": fetcher.hf_revision(dataset)}
        if test_split is None:  # load_icl: data.train_test_split(test_size=0.1, seed=seed)
            tr, te = hf_train_test_split(len(train), 0.1, settings.seed)
            train, test = [train[i] for i in tr], [train[i] for i in te]
            record["split"] = f"train_test_split(test_size=0.1, seed={settings.seed}) of {train_split}"
        else:
            test = icl_rows(fetcher.hf_rows(dataset, config, test_split, trust_remote_code=remote), text_field, label_field, num_labels, f"{where} {test_split}")
        out.jsonl(f"helmet/icl/{name}/train.jsonl", train)
        out.jsonl(f"helmet/icl/{name}/test.jsonl", test)
        return record
    return build


def _icl_input(name: str) -> Input:
    dataset, config, train_split, test_split, text_field, label_field, _ = ICL_SOURCES[name]
    splits = (f"{train_split} / {test_split}" if test_split else f"{train_split}, cut by train_test_split(0.1, seed=eval.seed)")
    return Input(
        f"helmet_icl_{name}", "helmet", f"HF {dataset}" + (f" ({config})" if config else ""),
        "main (commit resolved at fetch, in the manifest)",
        f"all rows of {splits} as {{text, label={label_field}}}",
        f"{CITE} data.py load_icl",
        lambda s, n=name: [f"helmet/icl/{n}/train.jsonl", f"helmet/icl/{n}/test.jsonl"], _build_icl(name))


INPUTS = [
    Input("helmet_archive", "helmet", f"HF dataset {ARCHIVE_REPO}, data.tar.gz",
          "main (commit resolved at fetch, in the manifest)",
          "the json_kv, ruler, kilt and msmarco files of the configured lengths and counts, verbatim",
          f"{CITE} scripts/download_data.sh, configs/{{recall,rag,rerank}}.yaml",
          lambda s: [f"helmet/{m}" for m in archive_files(s)], _build_archive),
    *[_icl_input(n) for n in ICL_SOURCES],
]
