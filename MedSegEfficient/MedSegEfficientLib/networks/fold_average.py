"""Several trained folds of one network as one: their outputs averaged, as nnUNetPredictor averages the folds it
is given. Averaging each tile's logits equals averaging the blended volumes (blending is linear), so the engine
runs the folds as one network; each fold's weights are stored once, under ``members.<n>.``."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

MAX_FOLDS = 10


class FoldAverage(nn.Module):
    def __init__(self, build: Callable[[], nn.Module], folds: int) -> None:
        super().__init__()
        if not isinstance(folds, int) or isinstance(folds, bool) or not 2 <= folds <= MAX_FOLDS:
            raise ValueError(f"folds must be 2..{MAX_FOLDS}, not {folds!r}")
        self.members = nn.ModuleList(build() for _ in range(folds))

    @property
    def size_divisor(self) -> int:
        return int(getattr(self.members[0], "size_divisor", 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        total = self.members[0](images).float()
        for member in self.members[1:]:
            total = total + member(images).float()
        return total / len(self.members)


__all__ = ["FoldAverage", "MAX_FOLDS"]
