"""The mLSTM on CUDA through the Triton chunkwise kernel of ``mlstm_kernels``, when it is installed.

Optional: mlstm_kernels is under the NXAI Community License (not Apache/MIT), so it is never required; without
it the torch chunkwise form runs everywhere. Facts from the H100 (docs/networks.md section 7): the kernel needs a
head dim of at least 16 (zero columns leave the result unchanged once q is rescaled for the kernel's own
1/sqrt(head dim)), a sequence that is a whole number of chunks, and float32 (bfloat16 loses 4-24 %).
``chunkwise--triton_xl_chunk`` can abort the process on Triton 3.6 and is never used.
"""

from __future__ import annotations

import importlib.util
import math

import torch
import torch.nn.functional as F

from MedSegEfficientLib.networks.triton_switch import triton_usable

KERNEL = "chunkwise--triton_limit_chunk"
MIN_HEAD_DIM = 16


def triton_available(device: torch.device) -> bool:
    return device.type == "cuda" and importlib.util.find_spec("mlstm_kernels") is not None and triton_usable()


def pad_for_kernel(q, k, v, i, f, chunk: int):
    """Zero-pad the head dim to a power of two of at least 16, and the sequence to whole chunks.

    q is rescaled so that the kernel's 1/sqrt(padded head dim) equals the model's 1/sqrt(head dim); padded
    positions come last with a vanishing input gate, so causal rows never see them.
    """
    head_dim, length = q.shape[-1], q.shape[-2]
    padded_dim = max(MIN_HEAD_DIM, 2 ** math.ceil(math.log2(head_dim)))  # the kernels want powers of two
    extra_positions = (-length) % chunk
    if padded_dim != head_dim:
        q = q * math.sqrt(padded_dim / head_dim)
        q, k, v = (F.pad(t, (0, padded_dim - head_dim)) for t in (q, k, v))
    if extra_positions:
        q, k, v = (F.pad(t, (0, 0, 0, extra_positions)) for t in (q, k, v))
        i = F.pad(i, (0, extra_positions), value=-1e4)
        f = F.pad(f, (0, extra_positions))
    return q, k, v, i, f


def mlstm_triton(q, k, v, i, f, chunk: int = 64) -> torch.Tensor:
    from mlstm_kernels.torch import get_mlstm_kernel

    head_dim, length = q.shape[-1], q.shape[-2]
    padded = (t.float().contiguous() for t in pad_for_kernel(q, k, v, i, f, chunk))
    hidden = get_mlstm_kernel(KERNEL)(*padded, chunk_size=chunk)
    return hidden[..., :length, :head_dim]
