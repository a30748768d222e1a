"""Registry, scale presets and resolved shapes (no megatron needed)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from olmpool import OlmPoolError
from olmpool.arch.registry import (
    analytic_param_count,
    load_registry,
    load_scale,
    resolve,
    window_pattern,
)

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = ROOT / "config" / "architectures.tsv"
SCALES = ROOT / "config" / "scales"
PAPER_MODELS = ROOT / "results" / "bundled" / "paper" / "models.tsv"


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_registry_has_the_26_models():
    reg = load_registry(REGISTRY)
    assert len(reg) == 26
    roles = {r: [a.id for a in reg.values() if r in a.roles] for r in ("llama3", "olmo3", "qwen3", "worst", "best")}
    assert roles == {
        "llama3": ["G_pre_8kv_8k_14k"], "olmo3": ["H_post_LQK_32kv_8k_11k_SWA"],
        "qwen3": ["K_post_HQK_8kv_12k"], "worst": ["A_post_HQK_8kv_8k_13k_SWA_fp8"],
        "best": ["J_pre_16kv_8k_14k"],
    }
    assert reg["K_post_HQK_8kv_12k"].norm_order == "pre"  # released under a post-norm name


def test_registry_agrees_with_bundled_paper_table():
    """Every architecture field of the sheet equals the bundled Table 1 mapping."""
    reg = {r["id"]: r for r in _rows(REGISTRY)}
    paper = {r["model"]: r for r in _rows(PAPER_MODELS)}
    assert set(reg) == set(paper)
    fields = ["swa", "qk_norm", "norm_order", "fp8", "init", "kv_heads", "pretrain_context", "d_ff"]
    for mid, row in paper.items():
        for f in fields:
            assert reg[mid][f] == row[f], (mid, f)


def test_paper_scale_preset():
    s = load_scale("paper", SCALES)
    assert (s.n_layers, s.d_model, s.n_heads, s.vocab_size) == (32, 4096, 32, 100278)
    assert (s.rope_theta, s.extend_rope_theta, s.extend_seq_len) == (500000, 8000000, 65536)
    reg = load_registry(REGISTRY)
    olmo3 = resolve(reg["H_post_LQK_32kv_8k_11k_SWA"], s)
    assert olmo3.windows == tuple(([4096] * 3 + [None]) * 8)
    assert olmo3.head_dim == 128 and olmo3.n_kv_heads == 32 and olmo3.pretrain_seq_len == 8192
    ext = olmo3.with_extension()
    assert ext.rope_theta == 8e6 and ext.seq_len == 65536 and olmo3.rope_theta == 5e5


def test_tiny_scale_keeps_ratios():
    s = load_scale("debug", SCALES)
    reg = load_registry(REGISTRY)
    for a in reg.values():
        sh = resolve(a, s)
        assert sh.n_heads / sh.n_kv_heads == 32 / a.kv_heads
        assert sh.pretrain_seq_len * 16 == a.pretrain_context
        assert sh.d_ff == a.d_ff * 128 // 4096
        if a.swa:
            assert sh.windows == (256, 256, 256, None)
            assert max(w for w in sh.windows if w) < sh.extend_seq_len
        else:
            assert sh.windows == (None,) * 4


def test_window_pattern_last_layer_full():
    assert window_pattern(6, 8) == (8, 8, 8, None, 8, None)
    assert window_pattern(5, 8, last_layer_full=False) == (8, 8, 8, None, 8)
    assert window_pattern(3, None) == (None, None, None)


def test_analytic_params_match_table1():
    """Formula count (independent of any model code) vs Table 1 Params, within 0.05B."""
    s = load_scale("paper", SCALES)
    reg = load_registry(REGISTRY)
    for row in _rows(PAPER_MODELS):
        n = analytic_param_count(resolve(reg[row["model"]], s)) / 1e9
        assert abs(n - float(row["params_b"])) <= 0.05, (row["model"], n)


def _write_registry(tmp_path, edit):
    rows = _rows(REGISTRY)
    edit(rows)
    p = tmp_path / "arch.tsv"
    with p.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows(rows)
    return p


@pytest.mark.parametrize(
    "field,value,needle",
    [
        ("qk_norm", "rms", "qk_norm"),
        ("norm_order", "sandwich", "norm_order"),
        ("swa", "yes", "swa"),
        ("kv_heads", "3", "kv_heads"),
        ("kv_heads", "x", "kv_heads"),
        ("d_ff", "-5", "d_ff"),
        ("roles", "fastest", "roles"),
        ("pretrain_context", "4096", "pretrain_context"),  # contradicts the id's "8k"
    ],
)
def test_bad_field_names_row_field_and_fix(tmp_path, field, value, needle):
    def edit(rows):
        rows[4][field] = value

    p = _write_registry(tmp_path, edit)
    with pytest.raises(OlmPoolError) as e:
        load_registry(p)
    msg = str(e.value)
    assert "line 6" in msg and rows_id(4) in msg and f"'{needle}'" in msg and "fix:" in msg


def rows_id(i):
    return _rows(REGISTRY)[i]["id"]


def test_duplicate_id_and_missing_column(tmp_path):
    p = _write_registry(tmp_path, lambda rows: rows.append(dict(rows[0])))
    with pytest.raises(OlmPoolError, match="duplicate id"):
        load_registry(p)
    p2 = tmp_path / "bad.tsv"
    p2.write_text("id\tswa\nX\ttrue\n")
    with pytest.raises(OlmPoolError, match="column 'qk_norm' missing"):
        load_registry(p2)


def test_user_row_and_user_scale_without_code(tmp_path):
    """A new row and a new scale file are pure data."""
    def edit(rows):
        new = dict(rows[0])
        new.update(id="my_variant", swa="true", qk_norm="none", norm_order="pre", fp8="false",
                   init="Z", kv_heads="2", pretrain_context="8192", d_ff="8192", roles="", note="user")
        rows.append(new)

    reg = load_registry(_write_registry(tmp_path, edit))
    scale_file = tmp_path / "small.yaml"
    scale_file.write_text(
        "n_layers: 8\nd_model: 256\nn_heads: 16\nvocab_size: 4096\nrope_theta: 10000\n"
        "extend_rope_theta: 100000\nextend_seq_len: 2048\ncontext_divisor: 8\nwindow: 4096\n"
    )
    s = load_scale(scale_file)
    sh = resolve(reg["my_variant"], s)
    assert s.name == "small"
    assert (sh.n_kv_heads, sh.d_ff, sh.pretrain_seq_len) == (1, 512, 1024)
    assert sh.windows == (512, 512, 512, None, 512, 512, 512, None)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("n_layers: 0\n", "n_layers"),
        ("head_dim: 15\n", "head_dim"),
        ("bogus: 1\n", "bogus"),
        ("extend_seq_len: 200\n", "window"),
    ],
)
def test_bad_scale_fields(tmp_path, text, needle):
    base = (SCALES / "debug.yaml").read_text()
    key = text.split(":")[0]
    lines = [ln for ln in base.splitlines() if not ln.startswith(key + ":")]
    p = tmp_path / "s.yaml"
    p.write_text("\n".join(lines) + "\n" + text)
    with pytest.raises(OlmPoolError) as e:
        load_scale(p)
    assert f"'{needle}'" in str(e.value) and "fix:" in str(e.value)


def test_unknown_scale_lists_available():
    with pytest.raises(OlmPoolError, match="tiny"):
        load_scale("huge", SCALES)


def test_tp_divisibility():
    reg = load_registry(REGISTRY)
    s = load_scale("debug", SCALES)
    resolve(reg["G_pre_8kv_8k_14k"], s, tp=2)
    with pytest.raises(OlmPoolError, match="tensor-parallel"):
        resolve(reg["G_pre_4kv_8k_14k"], s, tp=2)  # 1 KV head at tiny scale


def test_shape_roundtrip_dict():
    reg = load_registry(REGISTRY)
    sh = resolve(reg["A_post_HQK_8kv_8k_13k_SWA_fp8"], load_scale("debug", SCALES))
    from olmpool.arch.registry import ModelShape

    assert ModelShape.from_dict(sh.to_dict()) == sh


def test_shape_for_stages():
    from olmpool.arch.registry import shape_for

    pre = shape_for("G_pre_8kv_8k_14k", SCALES / "debug.yaml", registry=REGISTRY)
    ext = shape_for("G_pre_8kv_8k_14k", SCALES / "debug.yaml", registry=REGISTRY, stage="extend")
    assert (pre.rope_theta, pre.seq_len) == (5e5, 512) and (ext.rope_theta, ext.seq_len) == (8e6, 4096)
    with pytest.raises(OlmPoolError, match="stage"):
        shape_for("G_pre_8kv_8k_14k", SCALES / "debug.yaml", registry=REGISTRY, stage="anneal")


def test_json_schema_mirrors_registry():
    import json

    import jsonschema

    schema = json.loads((ROOT / "config" / "schemas" / "architecture.schema.json").read_text())
    from olmpool.arch.registry import KNOWN_ROLES, NORM_ORDERS, QK_NORM_KINDS

    assert tuple(schema["properties"]["qk_norm"]["enum"]) == QK_NORM_KINDS
    assert tuple(schema["properties"]["norm_order"]["enum"]) == NORM_ORDERS
    assert tuple(schema["properties"]["roles"]["items"]["enum"]) == KNOWN_ROLES
    import dataclasses

    for a in load_registry(REGISTRY).values():
        row = dataclasses.asdict(a)
        row["roles"] = list(row["roles"])
        jsonschema.validate(row, schema)
    bad = dict(row, qk_norm="rms")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_paper_vocab_padded_for_tensor_parallel():
    s = load_scale("paper", SCALES)
    sh = resolve(load_registry(REGISTRY)["G_pre_8kv_8k_14k"], s, tp=8)
    assert (sh.vocab_size, sh.embedding_rows) == (100278, 100352)
    tiny = resolve(load_registry(REGISTRY)["G_pre_8kv_8k_14k"], load_scale("debug", SCALES))
    assert tiny.vocab_size == tiny.embedding_rows == 2048
