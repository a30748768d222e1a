"""Megatron adapter vs the plain-PyTorch reference decoder, z-loss, fp8 policy, masking."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from olmpool import OlmPoolError
from olmpool.arch.registry import analytic_param_count, load_registry, load_scale, resolve

M = pytest.importorskip("olmpool.arch.megatron")
from olmpool.arch import reference as R  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REG = load_registry(ROOT / "config" / "architectures.tsv")
TINY = load_scale(ROOT / "config" / "scales" / "debug.yaml")
PAPER = load_scale(ROOT / "config" / "scales" / "paper.yaml")

# One architecture per family of variants (norm order x QK norm x GQA x SWA x fp8).
FAMILIES = [
    "G_pre_8kv_8k_14k",  # Llama 3: pre, no QK norm, GQA
    "H_post_LQK_32kv_8k_11k_SWA",  # Olmo 3: post, layerwise, MHA, SWA
    "K_post_HQK_8kv_12k",  # Qwen 3: pre, headwise, GQA
    "A_post_HQK_8kv_8k_13k_SWA_fp8",  # post, headwise, GQA, SWA, fp8
    "G_pre_LQK_8kv_8k_14k",  # pre, layerwise, GQA
    "G_pre_4kv_8k_14k",  # 1 KV head at tiny scale
]


def _build(aid, seed=0, perturb=True):
    sh = resolve(REG[aid], TINY)
    torch.manual_seed(seed)
    m = M.build_model(sh)
    if perturb:  # norms start at 1; perturb them so a wrong norm placement shows
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for n, p in m.named_parameters():
                if "norm" in n:
                    p.add_(0.3 * torch.randn(p.shape, generator=g))
    return sh, m


@pytest.mark.parametrize("aid", FAMILIES)
def test_megatron_matches_reference_logits_and_grads(aid):
    sh, m = _build(aid)
    ids = torch.randint(0, sh.vocab_size, (2, 2 * sh.pretrain_seq_len // 3 + 17), generator=torch.Generator().manual_seed(3))
    assert ids.shape[1] > 256  # longer than the window
    ref = R.load_megatron_into_reference(m.state_dict(), sh)
    if sh.fp8:  # emulated fp8 changes the numerics: compare in full precision
        m = M.build_model(dataclasses.replace(sh, fp8=False))
        R.load_reference_into_megatron(m, ref.state_dict(), sh)
    out = M.logits(m, ids)
    r = ref(ids)
    assert (out - r).abs().max().item() <= 1e-4
    # gradients: same loss on both sides
    F.cross_entropy(out[:, :-1].reshape(-1, sh.vocab_size), ids[:, 1:].reshape(-1)).backward()
    F.cross_entropy(r[:, :-1].reshape(-1, sh.vocab_size), ids[:, 1:].reshape(-1)).backward()
    g_m = R.megatron_to_reference({n: p.grad for n, p in m.named_parameters()}, sh)
    for n, p in ref.named_parameters():
        assert torch.allclose(g_m[n], p.grad, atol=1e-6, rtol=1e-4), n


def test_conversion_roundtrip_and_parameter_count():
    for aid in FAMILIES:
        sh, m = _build(aid)
        sd = {k: v for k, v in m.state_dict().items() if not k.endswith("_extra_state")}
        back = R.reference_to_megatron(R.megatron_to_reference(sd, sh), sh)
        assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
        assert sum(p.numel() for p in m.parameters()) == analytic_param_count(sh)


def test_kv_cache_and_attention_capture():
    sh, m = _build("H_post_LQK_32kv_8k_11k_SWA")
    ref = R.load_megatron_into_reference(m.state_dict(), sh)
    ids = torch.randint(0, sh.vocab_size, (1, 300))
    full = ref(ids)
    cache = ref.new_cache(1)
    seen = []
    parts = [ref(ids[:, :280], cache=cache)]
    for t in range(280, 300):
        parts.append(ref(ids[:, t:t + 1], cache=cache,
                         attn_capture=lambda i, q, k, w: seen.append((i, q.shape, k.shape, w))))
    assert cache.length == 300
    assert (torch.cat(parts, 1) - full).abs().max() < 1e-4
    assert seen[0] == (0, (1, 8, 1, 16), (1, 8, 281, 16), 256)
    assert seen[3] == (3, (1, 8, 1, 16), (1, 8, 281, 16), None)


def test_window_semantics_independent():
    """A local layer with window W: query i sees exactly keys i-W+1..i (brute force)."""
    mask = M.causal_window_mask(10, 10, 3)
    for i in range(10):
        for j in range(10):
            assert bool(mask[i, j]) == (i - 3 < j <= i)


def test_z_loss_term():
    sh, m = _build("G_pre_8kv_8k_14k")
    assert sh.z_loss == 1e-5
    m.z_loss = 0.1  # large so the term is visible
    ids = torch.randint(0, sh.vocab_size, (2, 64))
    labels = torch.roll(ids, -1, 1)
    loss = m(ids, torch.arange(64)[None].expand(2, 64), None, labels=labels)  # [b, s]
    lg = M.logits(m, ids)
    expect = F.cross_entropy(lg.transpose(1, 2), labels, reduction="none") + 0.1 * torch.logsumexp(lg, -1) ** 2
    assert (loss - expect).abs().max() < 1e-4
    # gradients of the z-loss objective equal the reference decoder's
    ref = R.load_megatron_into_reference(m.state_dict(), sh)
    m.zero_grad()
    m(ids, torch.arange(64)[None].expand(2, 64), None, labels=labels).sum().backward()
    r = ref(ids)
    (F.cross_entropy(r.transpose(1, 2), labels, reduction="none") + 0.1 * torch.logsumexp(r, -1) ** 2).sum().backward()
    g_m = R.megatron_to_reference({n: p.grad for n, p in m.named_parameters()}, sh)
    for n, p in ref.named_parameters():
        assert torch.allclose(g_m[n], p.grad, atol=1e-5, rtol=1e-4), n


def test_intra_document_mask():
    """With a block-diagonal attention_mask, the 2nd document's logits equal running it alone
    (RoPE is relative, so continuous positions do not matter)."""
    sh, m = _build("H_post_LQK_32kv_8k_11k_SWA")
    ids = torch.randint(0, sh.vocab_size, (1, 300))
    eod = 5
    ids[ids == eod] = 6
    ids[0, 119] = eod  # first document = tokens 0..119 (its EOD included)
    masked = M.intra_document_mask(ids, eod)  # [1, 1, s, s], True = masked
    assert masked.shape == (1, 1, 300, 300) and not masked[0, 0, 119, 0] and masked[0, 0, 120, 119]
    out = M.logits(m, ids, attention_mask=masked)
    alone = M.logits(m, ids[:, 120:])
    assert (out[:, 120:] - alone).abs().max() < 1e-4
    assert (M.logits(m, ids)[:, 120:] - alone).abs().max() > 1e-3  # the mask mattered


def test_fp8_policy():
    a = REG["A_post_HQK_8kv_8k_13k_SWA_fp8"]
    with pytest.raises(OlmPoolError, match="Transformer Engine"):
        M.transformer_config(resolve(a, PAPER), backend="local")
    # emulation: linear inputs/weights are representable in e4m3 after scaling
    x = torch.randn(1000) * 3
    q = M.fake_quant(x, torch.float8_e4m3fn, M.E4M3_MAX)
    s = M.E4M3_MAX / x.abs().max()
    assert torch.allclose((q * s).to(torch.float8_e4m3fn).float(), q * s, rtol=1e-6, atol=0)
    assert 0 < (q - x).abs().max() < 0.1 * x.abs().max()
    sh, m = _build("A_post_HQK_8kv_8k_13k_SWA_fp8")
    assert type(m.decoder.layers[0].self_attention.linear_qkv).__name__ == "Fp8EmulatedColumnParallelLinear"
    ids = torch.randint(0, sh.vocab_size, (2, 64))
    ref = R.load_megatron_into_reference(m.state_dict(), sh)
    d = (M.logits(m, ids) - ref(ids)).abs().max()
    assert 1e-5 < d < 0.5  # quantisation noise, not garbage


def test_fp8_emulation_backward_is_e5m2():
    """The output gradient reaching the matmul is e5m2-representable after per-tensor scaling."""
    seen = {}
    x = torch.randn(64, 32, requires_grad=True)
    y = M._GradFakeQuantE5M2.apply(x)
    y.register_hook(lambda g: seen.setdefault("g", g))
    g = torch.randn(64, 32)
    y.backward(g)
    s = M.E5M2_MAX / g.abs().max()
    q = x.grad * s
    assert torch.allclose(q.to(torch.float8_e5m2).float(), q, rtol=1e-6, atol=0)
    assert not torch.equal(x.grad, g)  # it was quantised
    assert torch.equal(M._FakeQuantE4M3.apply(x), M.fake_quant(x, torch.float8_e4m3fn, M.E4M3_MAX))


# ---- context parallelism: layout, masks, RoPE (no torchrun; CP=2 runs in test_arch_cp.py) --


class _CPGroup:
    """Stands in for a CP process group of ``size`` ranks as seen from rank ``rank``
    (megatron's helpers only call ``.size()`` / ``.rank()`` on it)."""

    def __init__(self, size: int, rank: int):
        self._size, self._rank = size, rank

    def size(self) -> int:
        return self._size

    def rank(self) -> int:
        return self._rank


@pytest.mark.parametrize("s,cp", [(16, 2), (24, 3), (64, 4), (8, 1)])
def test_cp_split_is_megatrons_and_reorders_back(s, cp):
    """`cp_rank_positions` is the layout of megatron's get_batch_on_this_cp_rank (tokens
    along dim 1, attention_mask rows along dim 2); concatenating the ranks' parts in rank
    order (what an all-gather returns) and sorting by position restores the sequence."""
    from megatron.core.utils import get_batch_on_this_cp_rank

    M.ensure_parallel_state(1)  # megatron reads group sizes only with torch.distributed up
    tokens = torch.arange(100, 100 + s).repeat(2, 1)  # [b=2, s]
    full_mask = torch.rand(2, 1, s, s) > 0.5           # [b, 1, s, s]
    parts, positions = [], []
    for r in range(cp):
        pos = M.cp_rank_positions(s, cp, r)
        got = get_batch_on_this_cp_rank({"tokens": tokens.clone(), "attention_mask": full_mask.clone()},
                                        cp_group=_CPGroup(cp, r))
        assert torch.equal(got["tokens"], tokens[:, pos])
        assert torch.equal(got["attention_mask"], full_mask[:, :, pos, :])  # rows only, all keys
        chunk = s // (2 * cp)  # chunks r and 2cp-1-r
        assert pos.tolist() == list(range(r * chunk, (r + 1) * chunk)) + list(
            range((2 * cp - 1 - r) * chunk, (2 * cp - r) * chunk))
        parts.append(got["tokens"])
        positions.append(pos)
    gathered = torch.cat(parts, dim=1)  # rank order
    assert torch.equal(gathered[:, torch.argsort(torch.cat(positions))], tokens)
    with pytest.raises(OlmPoolError, match="2 x context-parallel size"):
        M.cp_rank_positions(s + 1, cp, 0)


def test_cp_global_position_mask_matches_full_mask_rows():
    """The CP attention's mask for one rank's queries against all keys is exactly those rows
    of the full causal + window mask (brute force over both windows)."""
    s, cp = 48, 3
    for window in (5, 2**62):
        full = M.causal_window_mask(s, s, window)
        for r in range(cp):
            q = M.cp_rank_positions(s, cp, r)
            m = M.window_mask_at(q, torch.arange(s), window)  # [s/cp, s]
            assert torch.equal(m, full[q])
            for a, i in enumerate(q.tolist()):
                for j in range(s):
                    assert bool(m[a, j]) == (i - window < j <= i)


def test_cpu_rotary_embedding_keeps_this_ranks_positions():
    """`CPURotaryEmbedding` (megatron's RotaryEmbedding with a CPU-safe CP slice) returns the
    rows of the full-sequence embedding at this rank's global positions; megatron's own
    slice cannot run without CUDA (pin_memory + .cuda())."""
    from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding

    s, cp = 32, 2
    full = RotaryEmbedding(kv_channels=16, rotary_percent=1.0, rotary_base=500000,
                           use_cpu_initialization=True)(s)  # [s, 1, 1, 16]
    for r in range(cp):
        emb = M.CPURotaryEmbedding(kv_channels=16, rotary_percent=1.0, rotary_base=500000,
                                   use_cpu_initialization=True, cp_group=_CPGroup(cp, r))(s)
        assert torch.equal(emb, full[M.cp_rank_positions(s, cp, r)])
    if not torch.cuda.is_available():  # why the subclass exists; stale once this passes
        from megatron.core.models.common.embeddings.rope_utils import get_pos_emb_on_this_cp_rank

        with pytest.raises(RuntimeError):
            get_pos_emb_on_this_cp_rank(full, 0, _CPGroup(cp, 0))


def test_cp_config_and_spec():
    """CP > 1 on the local backend: megatron's context_parallel_size (RoPE length) and the
    all-gather comm type in the config, the CP core attention in the layer spec."""
    sh = resolve(REG["G_post_LQK_8kv_4k_14k_SWA"], TINY)
    cfg = M.transformer_config(sh, cp=2, backend="local")
    assert cfg.context_parallel_size == 2 and cfg.cp_comm_type == "all_gather"
    assert M.transformer_config(sh, backend="local").cp_comm_type is None

    def core(cp):
        return M.layer_spec(sh, "local", cp=cp).submodules.self_attention.submodules.core_attention

    assert core(2) is M.ContextParallelSDPACoreAttention and core(1) is M.SDPACoreAttention


def test_device_init_is_seeded_from_the_callers_seed(monkeypatch):
    """On CUDA megatron draws weights from its RNG tracker, not torch's default generator:
    the tracker must be reseeded from the seed the caller set (the init family's), on every
    build; CPU initialisation needs no reseed."""
    from megatron.core import tensor_parallel

    seen = []
    monkeypatch.setattr(tensor_parallel, "model_parallel_cuda_manual_seed", seen.append)
    cfg = M.transformer_config(resolve(REG["G_pre_8kv_8k_14k"], TINY), backend="local")
    assert cfg.use_cpu_initialization  # this machine: CPU init, nothing to reseed
    M.seed_device_init(cfg)
    assert seen == []
    gpu_cfg = dataclasses.replace(cfg, use_cpu_initialization=False)
    for family_seed in (1234567, 7654321):
        torch.manual_seed(family_seed)
        M.seed_device_init(gpu_cfg)
    assert seen == [1234567, 7654321]
    M.seed_device_init(dataclasses.replace(gpu_cfg, perform_initialization=False))
    assert seen == [1234567, 7654321]
