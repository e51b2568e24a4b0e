"""The settings of a training run: what ``medseg train``, ``distill`` and ``fit`` share, checked before any data
is read."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from MedSegEfficientLib.errors import MedSegError


MAX_PATCH_SIDE = 2048
MAX_PATCH_VOXELS = 512**3
MAX_SPACING_MM = 1000.0


@dataclass
class TrainConfig:
    network: str = "monai_unet"
    preset: str | None = "small"
    network_args: dict[str, Any] = field(default_factory=dict)
    spatial_dims: int = 3
    patch_size: list[int] | None = None
    spacing: list[float] | None = None  # None: the median spacing of the training images
    epochs: int = 50
    iterations_per_epoch: int = 50
    batch_size: int = 2
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    device: str = "auto"
    seed: int = 0
    init: str | None = None  # a model file whose weights start the training
    name: str | None = None
    description: str = ""
    workers: int = 0
    validation_fraction: float = 0.2
    strong_augmentation: bool = False  # bias field, resolution, wider contrast, larger rotations, flips if unsided
    contrast_enhancement: bool = False  # CT: simulated contrast phases on the labelled structures
    weight_average: float | None = None  # EMA decay per batch (e.g. 0.995): validate and keep the averaged weights
    half_weights: bool = False  # store float16 weights; validation then runs on the float16-rounded weights
    max_minutes: float | None = None  # stop within a batch of this wall time (after validating), keeping the best
    command: str = ""  # the command line, recorded in the card for provenance

    def check(self) -> None:
        """One line naming the first setting that cannot train, before any data is read."""
        dims = self.spatial_dims
        if dims not in (2, 3):
            raise MedSegError(f"spatial dims must be 2 or 3, not {dims}")
        if self.patch_size is not None and (len(self.patch_size) != dims or min(self.patch_size) < 1):
            raise MedSegError(f"--patch-size needs {dims} positive sizes for a {dims}D model, not {self.patch_size}")
        if self.patch_size is not None and (max(self.patch_size) > MAX_PATCH_SIDE
                                            or math.prod(self.patch_size) > MAX_PATCH_VOXELS):
            raise MedSegError(f"--patch-size {'x'.join(map(str, self.patch_size))} is too large: at most "
                              f"{MAX_PATCH_SIDE} a side and {MAX_PATCH_VOXELS:,} voxels (512^3)")
        if self.spacing is not None and (len(self.spacing) not in ((2, 3) if dims == 2 else (3,))
                                         or not all(math.isfinite(value) and 0 < value <= MAX_SPACING_MM
                                                    for value in self.spacing)):
            raise MedSegError(f"--spacing needs {'2 or 3' if dims == 2 else 3} values in mm above 0 and at most "
                              f"{MAX_SPACING_MM:g}, not {self.spacing}")
        if self.seed < 0:
            raise MedSegError(f"--seed must be 0 or more, not {self.seed}")
        if not (math.isfinite(self.learning_rate) and 0 < self.learning_rate <= 10):
            raise MedSegError(f"--lr must be above 0 and at most 10, not {self.learning_rate}")
        if self.max_minutes is not None and not (math.isfinite(self.max_minutes) and self.max_minutes > 0):
            raise MedSegError(f"--max-minutes must be a positive number, not {self.max_minutes}")
        for name, value in (("--epochs", self.epochs), ("--iterations-per-epoch", self.iterations_per_epoch),
                            ("--batch-size", self.batch_size)):
            if value < 1:
                raise MedSegError(f"{name} must be 1 or more, not {value}")
        if self.weight_average is not None and not 0 < self.weight_average < 1:
            raise MedSegError(f"--weight-average is a decay between 0 and 1 (e.g. 0.995), not {self.weight_average}")
        if not self.learning_rate > 0 or self.workers < 0 or (self.max_minutes is not None and self.max_minutes <= 0):
            raise MedSegError("--lr and --max-minutes must be positive, --workers 0 or more")
