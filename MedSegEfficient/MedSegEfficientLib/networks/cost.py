"""Parameter and MAC counts of a network at a given input size.

MACs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts the floating-point operations of
every matrix product and convolution the forward pass dispatches (bare matmul and einsum included, unlike
thop) and reports 2 FLOPs per multiply-accumulate; MACs = FLOPs / 2. Normalisation, activation and
interpolation costs are not counted, as in fvcore and thop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from MedSegEfficientLib.errors import NetworkConfigError


@dataclass
class NetworkCost:
    parameters: int
    macs: int
    input_shape: tuple[int, ...]


MAX_INPUT_ELEMENTS = 2**30  # a 1024^3 volume: what a synthetic input may make us allocate


def parse_shape(text: str) -> tuple[int, ...]:
    """'1x3x256x256' -> (1, 3, 256, 256); NetworkConfigError (one line) for anything else or anything huge."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise NetworkConfigError(f"--input {text[:40]!r}: give BATCHxCHANNELSxSIZES, e.g. 1x1x96x96x96") from None
    if len(shape) not in (4, 5) or min(shape) < 1:
        raise NetworkConfigError(f"--input {text[:40]}: needs batch, channels and 2 or 3 spatial sizes, each 1 or more "
                                 "(e.g. 1x1x96x96x96)")
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise NetworkConfigError(f"--input {text[:40]}: {math.prod(shape):,} elements, more than the "
                                 f"{MAX_INPUT_ELEMENTS:,} this command will allocate")
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
