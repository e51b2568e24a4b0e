"""The networks of a multi-part model (model/multi_part.py) held together, so that one model file stores them all:
part ``n``'s weights are named ``parts.<n>.``. Each part runs through the engine on its own grid, so there is no
forward pass of the whole."""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn


class MultiPartNetwork(nn.Module):
    def __init__(self, parts: Iterable[nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise TypeError("a multi-part model runs part by part on each part's own grid (inference/multi_part.py)")


__all__ = ["MultiPartNetwork"]
