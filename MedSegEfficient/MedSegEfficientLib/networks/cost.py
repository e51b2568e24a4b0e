"""Parameter and MAC counts of a network at a given input size.

MACs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts the floating-point operations of
every matrix product and convolution the forward pass dispatches (bare matmul and einsum included, unlike
thop) and reports 2 FLOPs per multiply-accumulate; MACs = FLOPs / 2. Normalisation, activation and
interpolation costs are not counted, as in fvcore and thop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class NetworkCost:
    parameters: int
    macs: int
    input_shape: tuple[int, ...]


def parse_shape(text: str) -> tuple[int, ...]:
    """'1x3x256x256' -> (1, 3, 256, 256)"""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"input shape '{text}' is not of the form 1x1x96x96x96") from None
    if len(shape) not in (4, 5) or min(shape) < 1:
        raise ValueError(f"input shape '{text}' needs batch, channels and 2 or 3 spatial sizes")
    return shape


def count_parameters(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


def measure_cost(network: nn.Module, input_shape: tuple[int, ...]) -> NetworkCost:
    from torch.utils.flop_counter import FlopCounterMode

    network = network.eval()
    device = next(network.parameters()).device
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        network(torch.zeros(input_shape, device=device))
    return NetworkCost(count_parameters(network), counter.get_total_flops() // 2, tuple(input_shape))
