"""RULER's text sources: the Paul Graham essay haystack, SQuAD 2.0 dev, HotpotQA dev.

Upstream (NVIDIA/RULER at the commit ``olmpool.eval.upstream`` pins for RULER):
``scripts/data/synthetic/json/download_paulgraham_essay.py`` reads
``PaulGrahamEssays_URLs.txt``, fetches every URL (``.html`` pages from paulgraham.com: the
page decoded with ``unicode_escape``, its first ``<font>`` element converted with html2text
(images, tables and reference links off, everything escaped, code unmarked); other URLs: the
raw ``.txt`` essays of gkamradt/LLMTest_NeedleInAHaystack), skips a URL that fails, keeps the
``*.txt`` files, and writes ``PaulGrahamEssays.json`` = ``{"text": repo essays + html essays}``
concatenated in ``glob`` order. ``download_qa_dataset.sh`` fetches SQuAD 2.0 dev and HotpotQA
dev (distractor) under the names ``squad.json`` and ``hotpotqa.json``.

Kept: the essays concatenated as upstream, each group in file-name order (upstream's glob
order is the file system's, so not reproducible; the order used is recorded). The QA files
are kept whole and verbatim: ``qa.py`` draws its questions at generation time and uses every
other document of the file as distractors, so a subset chosen here would change the haystack.
"""

from __future__ import annotations

from olmpool.data.core import Input, Out, Settings
from olmpool.data.fetch import Fetcher
from olmpool.eval.upstream import UPSTREAM

RULER_COMMIT = UPSTREAM["ruler"]["commit"]
ESSAY_URLS = (f"https://raw.githubusercontent.com/NVIDIA/RULER/{RULER_COMMIT}/"
              "scripts/data/synthetic/json/PaulGrahamEssays_URLs.txt")
SQUAD_URL = "https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v2.0.json"
HOTPOTQA_URL = "http://curtis.ml.cmu.edu/datasets/hotpot/hotpot_dev_distractor_v1.json"
CITE = f"NVIDIA/RULER@{RULER_COMMIT[:10]} scripts/data/synthetic/json/"

ESSAY_FILE = "ruler/PaulGrahamEssays.json"
SQUAD_FILE = "ruler/squad.json"
HOTPOTQA_FILE = "ruler/hotpotqa.json"


def html_essay(raw: bytes) -> str:
    """One paulgraham.com page -> essay text, as upstream's download_paulgraham_essay.py."""
    try:
        import html2text
        from bs4 import BeautifulSoup
    except ImportError as exc:
        from olmpool import OlmPoolError

        raise OlmPoolError("the paulgraham.com essays are converted with beautifulsoup4 + html2text, as RULER does. "
                           "Fix: pip install 'olmpool[data]'") from exc
    h = html2text.HTML2Text()
    h.ignore_images = True
    h.ignore_tables = True
    h.escape_all = True
    h.reference_links = False
    h.mark_code = False
    content = raw.decode("unicode_escape", "utf-8")
    return h.handle(str(BeautifulSoup(content, "html.parser").find("font")))


def essay_collection(url_list: str, read) -> tuple[str, dict]:
    """(concatenated essays, record) from the URL list; ``read(url)`` gives bytes or None (failed)."""
    repo: dict[str, str] = {}
    html: dict[str, str] = {}
    skipped: list[str] = []
    for url in (line.strip() for line in url_list.splitlines()):
        if not url:
            continue
        raw = read(url)
        if raw is None:
            skipped.append(url)  # upstream prints "Fail download" and goes on
            continue
        if ".html" in url:
            html[url.split("/")[-1].replace(".html", ".txt")] = html_essay(raw)
        else:
            repo[url.split("/")[-1]] = raw.decode("utf-8")
    names = [n for n in sorted(repo) if n.endswith(".txt")]  # upstream globs *.txt
    text = "".join(repo[n] for n in names) + "".join(html[n] for n in sorted(html))
    return text, {"essays_repo": len(names), "essays_html": len(html), "skipped_urls": skipped,
                  "order": "repository essays then paulgraham.com essays, each by file name"}


def _build_essay(settings: Settings, fetcher: Fetcher, out: Out) -> dict:
    from olmpool import OlmPoolError

    def read(url: str) -> bytes | None:
        try:
            return fetcher.file(url).read_bytes()
        except OlmPoolError as exc:
            print(f"ruler_essay: skipped {url} ({exc})")
            return None

    url_list = fetcher.file(ESSAY_URLS).read_text(encoding="utf-8")
    text, record = essay_collection(url_list, read)
    if not text:
        raise OlmPoolError(f"no essay could be fetched from the {ESSAY_URLS} list. Fix: check the network or the mirror")
    out.json(ESSAY_FILE, {"text": text}, rows=record["essays_repo"] + record["essays_html"])
    return record


def _build_qa(rel: str, url: str, reader):
    def build(settings: Settings, fetcher: Fetcher, out: Out) -> dict:
        from pathlib import Path

        src = fetcher.file(url)
        qas, docs = reader(Path(src))  # the evaluator's own reader: fails here, not at evaluation
        out.copy(rel, src, rows=len(qas))
        return {"questions": len(qas), "documents": len(docs)}
    return build


def _squad_reader(path):
    from olmpool.eval.ruler import read_squad

    return read_squad(path)


def _hotpot_reader(path):
    from olmpool.eval.ruler import read_hotpotqa

    return read_hotpotqa(path)


INPUTS = [
    Input("ruler_essay", "ruler", f"{CITE}PaulGrahamEssays_URLs.txt (paulgraham.com + gkamradt/LLMTest_NeedleInAHaystack essays)",
          f"URL list at {RULER_COMMIT[:10]}; essays unversioned (sha256 in the manifest)",
          "all essays concatenated ({'text': ...}); order: repository essays, then paulgraham.com, each by file name",
          f"{CITE}download_paulgraham_essay.py; paper Section 2.3 (RULER)",
          lambda s: [ESSAY_FILE], _build_essay),
    Input("ruler_squad", "ruler", SQUAD_URL, "unversioned URL (sha256 in the manifest)",
          "the whole file, verbatim (qa.py draws questions and distractors from all of it)",
          f"paper Section 2.3; {CITE}download_qa_dataset.sh, scripts/data/synthetic/qa.py (qa_1)",
          lambda s: [SQUAD_FILE], _build_qa(SQUAD_FILE, SQUAD_URL, _squad_reader)),
    Input("ruler_hotpotqa", "ruler", HOTPOTQA_URL, "unversioned URL (sha256 in the manifest)",
          "the whole file, verbatim (qa.py draws questions and distractors from all of it)",
          f"paper Section 2.3; {CITE}download_qa_dataset.sh, scripts/data/synthetic/qa.py (qa_2)",
          lambda s: [HOTPOTQA_FILE], _build_qa(HOTPOTQA_FILE, HOTPOTQA_URL, _hotpot_reader)),
]
