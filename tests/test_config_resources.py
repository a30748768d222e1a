"""Cluster resources derive from token counts and the parallel layout (config/paper.yaml)."""

from pathlib import Path

import pytest
import yaml

from olmpool.config import ConfigError, job_resources

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper():
    return yaml.safe_load((ROOT / "config/paper.yaml").read_text())


def test_pretrain_runtime_follows_tokens(paper):
    c = paper["cluster"]
    tokens = paper["pretrain"]["tokens"]
    r = job_resources(paper, "pretrain", tokens=tokens)
    gpus = c["gpus"]["pretrain"]
    expect_min = tokens / (c["tokens_per_gpu_second"]["pretrain"] * gpus) / 60 * c["runtime_safety"]
    assert r["runtime"] == pytest.approx(expect_min, abs=1)
    assert r["nodes"] * c["gpus_per_node"] == gpus
    # twice the tokens, twice the time
    assert job_resources(paper, "pretrain", tokens=2 * tokens)["runtime"] == pytest.approx(2 * r["runtime"], abs=2)


def test_extension_gpus_must_fit_context_parallel(paper):
    bad = {**paper, "cluster": {**paper["cluster"], "gpus": {**paper["cluster"]["gpus"], "extend": 4}}}
    with pytest.raises(ConfigError, match="multiple of tp x pp x cp = 8"):
        job_resources(bad, "extend", tokens=1e9)


def test_tiny_has_no_cluster():
    tiny = yaml.safe_load((ROOT / "config/debug.yaml").read_text())
    assert job_resources(tiny, "pretrain", tokens=1e6) == {"mem_mb": 4000, "runtime": 60}
