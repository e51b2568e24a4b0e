"""The mLSTM cell (matrix memory, exponential input gate, log-sigmoid forget gate, stabilised normaliser).

Two interchangeable pure-torch backends with the same maths (docs/networks.md section 0):

- ``parallel``: the quadratic S x S form of the authors' code, the reference for tests.
- ``chunkwise``: linear in time and memory. Chunks of ``chunk`` positions are handled in parallel inside;
  a (head_dim x head_dim) memory carries the past from chunk to chunk.

Both take q, k, v of shape (B, NH, S, DH) and gate pre-activations i, f of shape (B, NH, S).

Why the chunkwise form equals the parallel one: with F_t the cumulative sum of log f and g_j = i_j - F_j,
log D_ij = F_i + g_j, and the row stabiliser m_i = F_i + M_i with M_i = max_{j<=i} g_j (a running maximum).
So D~_ij = exp(g_j - M_i) <= 1 needs no S x S matrix, only the running maximum, and the memory of earlier
chunks can be rescaled exactly from one maximum to the next. F and g are summed in float64: over tens of
thousands of positions their size would otherwise cost float32 precision in the differences.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

EPSILON = 1e-6
# exp(-m) overflows float32 beyond m < -88 (an input gate far below zero); the output there is ~0 either way,
# but inf in the forward pass makes NaN gradients, so the row stabiliser is clamped in the normaliser.
LOWEST_STABILISER = -80.0


def mlstm_parallel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor,
                   f: torch.Tensor) -> torch.Tensor:
    """Quadratic stabilised parallel form: O(S^2) time and memory."""
    length, head_dim = q.shape[-2], q.shape[-1]
    log_f = torch.cumsum(F.logsigmoid(f.double()), dim=-1)  # F_t
    log_d = log_f[..., :, None] - log_f[..., None, :] + i.double()[..., None, :]  # F_i - F_j + i_j
    causal = torch.ones(length, length, dtype=torch.bool, device=q.device).tril()
    log_d = log_d.masked_fill(~causal, float("-inf"))
    stabiliser = log_d.amax(dim=-1, keepdim=True)  # m_i
    decay = torch.exp(log_d - stabiliser).to(q.dtype)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(head_dim) * decay
    floor = torch.exp(-stabiliser.clamp(min=LOWEST_STABILISER)).to(q.dtype)
    normaliser = torch.maximum(scores.sum(-1, keepdim=True).abs(), floor)
    return (scores / (normaliser + EPSILON)) @ v


def mlstm_chunkwise(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor, f: torch.Tensor,
                    chunk: int = 64) -> torch.Tensor:
    """Linear-time chunkwise form; equal to ``mlstm_parallel`` up to rounding."""
    batch, heads, length, head_dim = q.shape
    pad = (-length) % chunk
    if pad:  # padded positions come last and, being causal, never reach the real ones
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        i = F.pad(i, (0, pad), value=-1e4)
        f = F.pad(f, (0, pad))
    chunks = q.shape[2] // chunk
    scale = 1 / math.sqrt(head_dim)
    log_f = torch.cumsum(F.logsigmoid(f.double()), dim=-1)
    g = i.double() - log_f  # log weight of key j before the row stabiliser
    shape = (batch, heads, chunks, chunk)
    g, log_f = g.view(shape), log_f.view(shape)
    qc, kc, vc = (t.reshape(batch, heads, chunks, chunk, head_dim) for t in (q, k, v))

    # Inside each chunk: running maximum of g and the causal, stabilised weights.
    local_max = torch.cummax(g, dim=-1).values  # max over j in the chunk, j <= i
    chunk_max = local_max[..., -1]  # G_c
    # Memory from earlier chunks, each rescaled to a common maximum: a scan over chunks.
    key_weights = torch.exp(g - chunk_max[..., None]).to(q.dtype)  # exp(g_j - G_c) <= 1
    chunk_memory = torch.einsum("bhcl,bhcld,bhcle->bhcde", key_weights, kc, vc)  # sum_j w_j k_j v_j^T
    chunk_norm = torch.einsum("bhcl,bhcld->bhcd", key_weights, kc)
    memory = torch.zeros(batch, heads, head_dim, head_dim, dtype=q.dtype, device=q.device)
    norm = torch.zeros(batch, heads, head_dim, dtype=q.dtype, device=q.device)
    past_max = torch.full((batch, heads), float("-inf"), dtype=torch.float64, device=q.device)
    memories, norms, past_maxima = [], [], []
    for c in range(chunks):
        memories.append(memory)
        norms.append(norm)
        past_maxima.append(past_max)
        new_max = torch.maximum(past_max, chunk_max[..., c])
        keep = torch.exp(past_max - new_max).to(q.dtype)[..., None]
        add = torch.exp(chunk_max[..., c] - new_max).to(q.dtype)[..., None]
        memory = memory * keep[..., None] + chunk_memory[:, :, c] * add[..., None]
        norm = norm * keep + chunk_norm[:, :, c] * add
        past_max = new_max
    memory_before = torch.stack(memories, dim=2)  # (B, NH, NC, DH, DH), scaled by exp(-past_max)
    norm_before = torch.stack(norms, dim=2)
    past_max = torch.stack(past_maxima, dim=2)  # (B, NH, NC)

    row_max = torch.maximum(local_max, past_max[..., None])  # M_i
    from_past = torch.exp(past_max[..., None] - row_max).to(q.dtype)  # rescales the carried memory
    # The L x L weights in the working precision: g and M_i relative to the chunk's own maximum are small.
    g_local = (g - chunk_max[..., None]).to(q.dtype)
    row_local = (row_max - chunk_max[..., None]).to(q.dtype)
    inside = torch.exp(g_local[..., None, :] - row_local[..., :, None])  # (B, NH, NC, L, L), j over the chunk
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    inside = inside.masked_fill(~causal, 0).to(q.dtype)
    scores = (qc @ kc.transpose(-1, -2)) * scale * inside
    numerator = scores @ vc + from_past[..., None] * (qc @ memory_before) * scale
    denominator = scores.sum(-1) + from_past * torch.einsum("bhcld,bhcd->bhcl", qc, norm_before) * scale
    stabiliser = log_f + row_max  # m_i
    floor = torch.exp(-stabiliser.clamp(min=LOWEST_STABILISER)).to(q.dtype)
    normaliser = torch.maximum(denominator.abs(), floor)
    hidden = numerator / (normaliser[..., None] + EPSILON)
    return hidden.reshape(batch, heads, chunks * chunk, head_dim)[:, :, :length]


def _triton(q, k, v, i, f):
    from MedSegEfficientLib.networks.mlstm.mlstm_kernels_backend import mlstm_triton

    return mlstm_triton(q, k, v, i, f)


BACKENDS = {"parallel": mlstm_parallel, "chunkwise": mlstm_chunkwise, "triton": _triton}


def mlstm(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor, f: torch.Tensor,
          backend: str = "auto") -> torch.Tensor:
    """``auto``: the Triton kernel on CUDA when mlstm_kernels is installed, else the torch chunkwise form."""
    if backend == "auto":
        from MedSegEfficientLib.networks.mlstm.mlstm_kernels_backend import triton_available

        backend = "triton" if triton_available(q.device) else "chunkwise"
    if backend not in BACKENDS:
        raise ValueError(f"unknown mLSTM backend '{backend}' (available: auto, {', '.join(BACKENDS)})")
    return BACKENDS[backend](q, k, v, i, f)
