"""mLSTM cell: the linear chunkwise backend equals the quadratic parallel reference and the plain recurrence."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from MedSegEfficientLib.networks.mlstm.cell import mlstm, mlstm_chunkwise, mlstm_parallel


def random_inputs(batch=2, heads=3, length=200, head_dim=8, seed=0, forget_bias=3.0):
    generator = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, length, head_dim, generator=generator) for _ in range(3))
    i = torch.randn(batch, heads, length, generator=generator) * 2
    f = torch.randn(batch, heads, length, generator=generator) + forget_bias
    return q, k, v, i, f


def recurrent_reference(q, k, v, i, f):
    """The matrix memory step by step (docs/networks.md: C_t = f C + i v k^T, n_t = f n + i k), log-stabilised."""
    batch, heads, length, head_dim = q.shape
    q, k, v, i, f = (t.double() for t in (q, k, v, i, f))
    memory = torch.zeros(batch, heads, head_dim, head_dim, dtype=torch.float64)
    norm = torch.zeros(batch, heads, head_dim, dtype=torch.float64)
    stabiliser = torch.zeros(batch, heads, dtype=torch.float64)
    outputs = []
    for t in range(length):
        log_f = F.logsigmoid(f[..., t])
        new = torch.maximum(log_f + stabiliser, i[..., t]) if t else i[..., t]
        forget = torch.exp(log_f + stabiliser - new) if t else torch.zeros_like(new)
        write = torch.exp(i[..., t] - new)
        key = k[..., t, :] / math.sqrt(head_dim)
        memory = forget[..., None, None] * memory + write[..., None, None] * v[..., t, :, None] * key[..., None, :]
        norm = forget[..., None] * norm + write[..., None] * key
        numerator = (memory @ q[..., t, :, None])[..., 0]
        denominator = torch.maximum((norm * q[..., t, :]).sum(-1).abs(), torch.exp(-new))
        outputs.append(numerator / (denominator[..., None] + 1e-6))
        stabiliser = new
    return torch.stack(outputs, dim=2).float()


@pytest.mark.parametrize("length, chunk", [(200, 64), (64, 64), (37, 16), (1, 8)])
def test_chunkwise_equals_parallel(length, chunk):
    inputs = random_inputs(length=length)
    assert torch.allclose(mlstm_chunkwise(*inputs, chunk=chunk), mlstm_parallel(*inputs), atol=1e-4, rtol=1e-4)


def test_parallel_equals_the_recurrence():
    inputs = random_inputs(length=50, heads=2)
    assert torch.allclose(mlstm_parallel(*inputs), recurrent_reference(*inputs), atol=1e-4, rtol=1e-4)


def test_long_sequence_with_fast_forgetting():
    """Thousands of positions and forget gates near 0.5: the cumulative log forget reaches -2800."""
    inputs = random_inputs(batch=1, heads=2, length=4096, head_dim=16, forget_bias=0.0)
    assert torch.allclose(mlstm_chunkwise(*inputs), mlstm_parallel(*inputs), atol=1e-4, rtol=1e-4)


def test_gradients_agree():
    inputs = [t.clone().requires_grad_() for t in random_inputs(length=96)]
    mlstm_chunkwise(*inputs, chunk=32).square().sum().backward()
    chunk_grads = [t.grad.clone() for t in inputs]
    for t in inputs:
        t.grad = None
    mlstm_parallel(*inputs).square().sum().backward()
    for ours, reference in zip(chunk_grads, (t.grad for t in inputs)):
        assert torch.allclose(ours, reference, atol=1e-3, rtol=1e-3)


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown mLSTM backend"):
        mlstm(*random_inputs(length=4), backend="magic")


@pytest.mark.parametrize("head_dim, length", [(4, 100), (8, 64), (24, 70), (40, 65)])
def test_padding_for_the_triton_kernel_changes_nothing(head_dim, length):
    """The kernel needs head dims of 16+ and whole chunks, and scales by 1/sqrt(its own head dim), as our
    chunkwise form does: run on the padded problem, our form must give the unpadded answer."""
    from MedSegEfficientLib.networks.mlstm.mlstm_kernels_backend import pad_for_kernel

    inputs = random_inputs(length=length, head_dim=head_dim)
    padded = pad_for_kernel(*inputs, chunk=64)
    padded_dim = padded[0].shape[-1]
    assert padded_dim >= 16 and padded_dim & (padded_dim - 1) == 0 and padded[0].shape[-2] % 64 == 0
    answer = mlstm_chunkwise(*padded)[..., :length, :head_dim]
    assert torch.allclose(answer, mlstm_chunkwise(*inputs), atol=1e-4, rtol=1e-4)


def test_auto_backend_is_chunkwise_without_cuda():
    inputs = random_inputs(length=30)
    assert torch.equal(mlstm(*inputs, backend="auto"), mlstm_chunkwise(*inputs))
