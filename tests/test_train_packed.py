"""Intra-document masking as packed (THD) micro-batches, the Transformer Engine input format.

CPU checks: the packing (cu_seqlens against the boolean intra-document mask, padding for
context parallelism), megatron-core's THD code path end to end on CPU (a reference THD core
attention stands in for TEDotProductAttention, which needs CUDA) against the attention-mask
path, the wiring of the training loop, and the refusals.  The TE kernels themselves are
checked by tests/test_arch_gpu.py (marked gpu).
"""

from __future__ import annotations

import pytest
import torch

from olmpool import OlmPoolError
from olmpool.arch.registry import get_architecture, load_scale, resolve
from olmpool.train.config import StageParallel
from olmpool.train.data import MicroBatch, intra_document_mask, pack_micro_batch

M = pytest.importorskip("olmpool.arch.megatron")

EOD = 0
SWA = "H_post_LQK_32kv_8k_11k_SWA"   # sliding windows of 256 tokens at tiny scale
FULL = "G_pre_8kv_8k_14k"            # full attention only


def _micro_batch(tokens: torch.Tensor) -> MicroBatch:
    B, T = tokens.shape
    g = torch.Generator().manual_seed(7)
    return MicroBatch(tokens=tokens, labels=torch.randint(1, 2048, (B, T), generator=g),
                      loss_mask=torch.rand(B, T, generator=g).round(),
                      position_ids=torch.arange(T).expand(B, T).clone())


EDGE_CASES = {
    "no_eod": torch.tensor([[5, 6, 7, 8, 9, 10]]),
    "eod_last": torch.tensor([[5, 6, EOD, 8, 9, EOD]]),
    "eod_first": torch.tensor([[EOD, 6, 7, 8, 9, 10]]),
    "consecutive_eods": torch.tensor([[5, EOD, EOD, EOD, 9, 10]]),
    "only_eods": torch.tensor([[EOD, EOD, EOD]]),
    "several_rows": torch.tensor([[3, 4, EOD, 5, 6, 7, EOD, 8],
                                  [EOD, 1, 2, 3, EOD, EOD, 4, 5],
                                  [9, 9, 9, 9, 9, 9, 9, EOD]]),
    "random": torch.randint(0, 4, (4, 37), generator=torch.Generator().manual_seed(0)),  # ~1/4 EOD
}


def _kernel_visibility(cu: torch.Tensor, cu_padded: torch.Tensor | None, t: int) -> torch.Tensor:
    """BoolTensor[t, t]: which packed positions a causal varlen kernel lets attend to which,
    read from the cu_seqlens alone (Transformer Engine's meaning: sequence d occupies
    cu_padded[d] .. cu_padded[d+1]-1 of the row, its first cu[d+1]-cu[d] tokens real)."""
    cu_padded = cu if cu_padded is None else cu_padded
    pos = torch.arange(t)
    seq = torch.searchsorted(cu_padded.long(), pos, right=True) - 1          # [t]
    real = pos - cu_padded.long()[seq] < (cu.long().diff())[seq]             # [t]
    same = seq[:, None] == seq[None, :]
    return same & (pos[None, :] <= pos[:, None]) & real[:, None] & real[None, :]


@pytest.mark.parametrize("multiple", [1, 4, 6])
@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_packing_has_the_documents_of_the_intra_document_mask(case, multiple):
    tokens = EDGE_CASES[case]
    B, T = tokens.shape
    mb = _micro_batch(tokens)
    p = pack_micro_batch(mb, EOD, multiple)
    t = p.tokens.shape[1]
    # cu_seqlens: int32, from 0 to the number of real tokens; padded offsets end at the row length
    assert p.cu_seqlens.dtype == torch.int32 and p.cu_seqlens[0] == 0 and p.cu_seqlens[-1] == B * T
    lengths = p.cu_seqlens.diff()
    assert (lengths > 0).all()
    if multiple == 1:
        assert p.cu_seqlens_padded is None and t == B * T
        assert p.max_seqlen == int(lengths.max())
    else:
        padded = p.cu_seqlens_padded.diff()
        assert p.cu_seqlens_padded.dtype == torch.int32 and p.cu_seqlens_padded[-1] == t
        assert (padded % multiple == 0).all() and (padded >= lengths).all()
        assert (padded - lengths < multiple).all()                          # no more padding than needed
        assert p.max_seqlen == int(padded.max())
    # every token lands once, in order, with its label / loss mask / position; the rest is padding
    assert (p.index.diff() > 0).all() and p.index.shape == (B * T,)
    for field in ("tokens", "labels", "loss_mask", "position_ids"):
        assert torch.equal(getattr(p, field)[0, p.index], getattr(mb, field).flatten()), field
    pad = torch.ones(t, dtype=torch.bool)
    pad[p.index] = False
    assert (p.loss_mask[0, pad] == 0).all() and (p.tokens[0, pad] == EOD).all()
    # the attention the kernel derives from cu_seqlens is the intra-document mask of every row
    # (and nothing across rows)
    seen = _kernel_visibility(p.cu_seqlens, p.cu_seqlens_padded, t)
    rows = p.index.view(B, T)
    allowed = ~intra_document_mask(tokens, EOD)[:, 0]                        # [B, T, T]
    for b in range(B):
        for c in range(B):
            block = seen[rows[b]][:, rows[c]]                                # [T, T]
            assert torch.equal(block, allowed[b] if b == c else torch.zeros_like(block)), (b, c)
    assert not seen[pad].any() and not seen[:, pad].any()


def test_packing_by_hand():
    """The numbers for the two-row example, worked out by hand."""
    mb = _micro_batch(EDGE_CASES["several_rows"][:2])
    p = pack_micro_batch(mb, EOD)
    # row 0: [3 4 E] [5 6 7 E] [8] | row 1: [E] [1 2 3 E] [E] [4 5]
    assert p.cu_seqlens.tolist() == [0, 3, 7, 8, 9, 13, 14, 16] and p.max_seqlen == 4
    q = pack_micro_batch(mb, EOD, 4)
    assert q.cu_seqlens.tolist() == p.cu_seqlens.tolist()
    assert q.cu_seqlens_padded.tolist() == [0, 4, 8, 12, 16, 20, 24, 28] and q.max_seqlen == 4
    assert q.tokens[0, :9].tolist() == [3, 4, EOD, EOD, 5, 6, 7, EOD, 8]


# --------------------------------------------------------------------------------------
# megatron-core's THD path on CPU
# --------------------------------------------------------------------------------------

class ReferenceTHDCoreAttention(M.SDPACoreAttention):
    """Test stand-in for TEDotProductAttention on THD input (CPU): causal + this layer's
    window inside each packed sequence of ``packed_seq_params.cu_seqlens_q``, SDPA.
    query [t, np, hn], key/value [t, ng, hn] (megatron squeezes the batch dimension for
    THD) -> [t, 1, np*hn]."""

    def forward(self, query, key, value, attention_mask, attn_mask_type=None, attention_bias=None,
                packed_seq_params=None):
        assert attention_mask is None and packed_seq_params.qkv_format == "thd"
        t = query.shape[0]
        visible = _kernel_visibility(packed_seq_params.cu_seqlens_q, packed_seq_params.cu_seqlens_q_padded, t)
        allowed = visible & M.causal_window_mask(t, t, self.window)          # [t, t]
        return self._attend(query[:, None], key[:, None], value[:, None], allowed)


def _models(aid):
    """The local-backend model and the same weights with the reference THD core attention."""
    from megatron.core.transformer.transformer_block import TransformerBlockSubmodules

    shape = resolve(get_architecture(aid), load_scale("debug"))
    torch.manual_seed(0)
    masked = M.build_model(shape, backend="local", fp8="off")
    layer = M.layer_spec(shape, "local", fp8="off")
    layer.submodules.self_attention.submodules.core_attention = ReferenceTHDCoreAttention
    spec = TransformerBlockSubmodules(layer_specs=[layer] * shape.n_layers, layer_norm=M.RMSNorm)
    packed = M._gpt_model(shape, masked.config, spec, pre_process=True, post_process=True,
                          parallel_output=True)
    packed.load_state_dict(masked.state_dict())
    return shape, masked, packed


def _swa_batch(shape):
    """Two rows of 384 tokens; documents longer and shorter than the 256-token window."""
    B, T = 2, 384
    assert T > shape.windows[0]
    tokens = torch.randint(1, shape.vocab_size, (B, T), generator=torch.Generator().manual_seed(1))
    tokens[0, [40, 41, 330]] = EOD        # documents of 41, 1, 289 (> window) and 53 tokens
    tokens[1, 383] = EOD                  # one document of the whole row (EOD last)
    return _micro_batch(tokens)


def test_thd_path_gives_the_attention_mask_losses_and_grads():
    """Megatron's THD code path (squeezed q/k/v, RoPE restarted per document by
    rope_utils._apply_rotary_pos_emb_thd, [t, 1, h] hidden states, [1, t] per-token loss) on
    the loop's packed micro-batch equals the attention-mask path on the [b, s] micro-batch,
    losses and gradients - although the RoPE positions differ (continuous vs per document).
    Shifting the document boundaries by one token breaks the equality (the check can fail)."""
    from megatron.core.packed_seq_params import PackedSeqParams

    from olmpool.train.loop import micro_batch_on_this_rank, packed_micro_batch_on_this_rank

    shape, masked, packed = _models(SWA)
    mb = _swa_batch(shape)
    B, T = mb.tokens.shape
    a = micro_batch_on_this_rank(mb, EOD, "cpu")
    b = packed_micro_batch_on_this_rank(mb, EOD, "cpu")
    params = b["packed_seq_params"]
    assert b["attention_mask"] is None and a["packed_seq_params"] is None
    assert b["tokens"].shape == (1, B * T) and params.qkv_format == "thd"
    assert params.cu_seqlens_q.tolist() == [0, 41, 42, 331, 384, 768] and params.cu_seqlens_q_padded is None
    assert params.max_seqlen_q == params.max_seqlen_kv == 384

    want = masked(a["tokens"], a["position_ids"], a["attention_mask"], labels=a["labels"])   # [B, T]
    got = packed(b["tokens"], b["position_ids"], None, labels=b["labels"], packed_seq_params=params)
    assert got.shape == (1, B * T)
    assert (got.view(B, T) - want).abs().max() < 2e-5
    (want * a["loss_mask"]).sum().backward()
    (got * b["loss_mask"]).sum().backward()
    for (name, p), q in zip(masked.named_parameters(), packed.parameters()):
        assert (p.grad - q.grad).abs().max() <= 1e-5 * p.grad.abs().max(), name   # fp32 rounding

    # boundaries one token late (EOD opening the next document): not the same model input
    cu = params.cu_seqlens_q.clone()
    cu[1:-1] += 1
    wrong = PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu,
                            max_seqlen_q=params.max_seqlen_q, max_seqlen_kv=params.max_seqlen_kv)
    with torch.no_grad():
        off = packed(b["tokens"], b["position_ids"], None, labels=b["labels"], packed_seq_params=wrong)
    assert (off.view(B, T) - want.detach()).abs().max() > 1e-2


def test_forward_step_hands_packed_seq_params_to_the_model():
    from olmpool.train.loop import _forward_step

    seen = {}

    def model(tokens, position_ids, attention_mask, labels=None, packed_seq_params=None):
        seen.update(attention_mask=attention_mask, packed_seq_params=packed_seq_params)
        return torch.zeros_like(labels, dtype=torch.float)

    sentinel = object()
    mb = {"tokens": torch.ones(1, 8, dtype=torch.long), "position_ids": torch.arange(8)[None],
          "labels": torch.ones(1, 8, dtype=torch.long), "loss_mask": torch.ones(1, 8),
          "attention_mask": None, "packed_seq_params": sentinel}
    out, loss_fn = _forward_step(iter([mb]), model, n_global=8.0, z_loss=0.0, captured={})
    assert seen == {"attention_mask": None, "packed_seq_params": sentinel} and out.shape == (1, 8)


# --------------------------------------------------------------------------------------
# What cannot run, refused before work starts
# --------------------------------------------------------------------------------------

def test_packed_sequence_rules():
    from olmpool.train.loop import _check_packed_sequences, thd_pad_multiple

    paper = load_scale("paper")
    swa = resolve(get_architecture(SWA), paper).with_extension()
    full = resolve(get_architecture(FULL), paper).with_extension()
    recipe = StageParallel(tp=1, pp=1, cp=8)                                 # config/paper.yaml
    _check_packed_sequences(full, recipe, "extend", "2.8.0")                 # p2p CP takes THD
    _check_packed_sequences(swa, StageParallel(cp=1), "extend", "2.8.0")    # windows at cp = 1
    swa_cp = (r"parallel\.extend\.cp = 8.*sliding windows.*Transformer Engine 2\.8\.0.*fix: install "
              r"transformer-engine >= 2\.18\.0.*or set parallel\.extend\.core_attention: sdpa")
    with pytest.raises(OlmPoolError, match=swa_cp):
        _check_packed_sequences(swa, recipe, "extend", "2.8.0")
    _check_packed_sequences(swa, recipe, "extend", "2.18.0")                # THD all-gather CP
    _check_packed_sequences(swa, StageParallel(cp=8, core_attention="sdpa"), "extend", "2.8.0")
    with pytest.raises(OlmPoolError, match=r"parallel\.extend: cp = 2 and pp = 2.*fix"):
        _check_packed_sequences(full, StageParallel(cp=2, pp=2), "extend", "2.8.0")
    with pytest.raises(OlmPoolError, match=r"extend\.intra_document_masking.*1\.6\.0.*>= 1\.7"):
        _check_packed_sequences(full, StageParallel(), "extend", "1.6.0")
    assert thd_pad_multiple(StageParallel(cp=1, tp=2, sequence_parallel=True)) == 1
    assert thd_pad_multiple(recipe) == 16
    assert thd_pad_multiple(StageParallel(cp=4, tp=2, sequence_parallel=True)) == 16


def test_packed_sequences_config():
    """Packed sequences under CP need Transformer Engine attention (refused on the local
    backend, whose CP attention takes a mask); with cp = 1 they change nothing.  The TE
    schemes are tested in tests/test_te_support.py."""
    tiny = load_scale("debug")
    swa, full = resolve(get_architecture(SWA), tiny), resolve(get_architecture(FULL), tiny)
    assert M.transformer_config(swa, backend="local", packed_sequences=True).cp_comm_type is None
    assert M.transformer_config(full, cp=2, backend="local").cp_comm_type == "all_gather"
    with pytest.raises(OlmPoolError, match="need Transformer Engine attention"):
        M.transformer_config(swa, cp=2, backend="local", packed_sequences=True)
    with pytest.raises(OlmPoolError, match="need Transformer Engine attention"):
        M.transformer_config(full, cp=2, backend="local", packed_sequences=True)
