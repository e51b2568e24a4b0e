"""Small real model files for tests: a registered intensity-threshold network whose weights are set so that
its output is known (label 1 for 20..120 HU, label 2 above 150 HU), and helpers to write model files."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import torch
import torch.nn as nn

from MedSegEfficientLib.model.card import LabelInfo, ModelCard, NetworkInfo, Normalization
from MedSegEfficientLib.model.weights import save_model
from MedSegEfficientLib.networks import NetworkSpec, get_network_spec, register_network


class IntensityBands(nn.Module):
    """Per-voxel logits from intensity: a 1x1 convolution and a quadratic term, trained weights not needed."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, bands: list[list[float]]) -> None:
        super().__init__()
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        self.centres = nn.Parameter(torch.tensor([c for c, _ in bands], dtype=torch.float32))
        self.widths = nn.Parameter(torch.tensor([w for _, w in bands], dtype=torch.float32))
        self.mix = conv(in_channels, 1, 1)  # averages the channels of an RGB input
        nn.init.constant_(self.mix.weight, 1.0 / in_channels)
        nn.init.zeros_(self.mix.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = self.mix(x)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return -((value - self.centres.view(shape)) / self.widths.view(shape)) ** 2


class KillsItsWorker(IntensityBands):
    """IntensityBands that kills the process running it on a bright scan (mean above ``KILLING_MEAN`` after
    normalisation), as a network that runs out of memory or crashes on one case would."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if float(x.mean()) > KILLING_MEAN:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(x)


KILLING_MEAN = 5.0  # in HU / 100: a scan of 1000 HU everywhere kills; the phantoms (mostly -100 HU) do not


def _register() -> None:
    for name, builder in (("test_intensity_bands", IntensityBands), ("test_kills_its_worker", KillsItsWorker)):
        try:
            get_network_spec(name)
        except Exception:
            register_network(NetworkSpec(name=name, builder=builder, spatial_dims=(2, 3),
                                         description="test-only network with known output"))


_register()

# Background near -100 HU, label 1 near 60 HU, label 2 near 180 HU (the phantom's organs), in HU / 100 units.
BANDS = [[-1.0, 0.8], [0.6, 0.5], [1.8, 0.5]]
LABELS = [LabelInfo(1, "big", (221, 130, 101), category=["SCT", "123037004", "Anatomical Structure"],
                    type=["SCT", "10200004", "Liver"]),
          LabelInfo(2, "small", (157, 108, 162), category=["SCT", "123037004", "Anatomical Structure"],
                    type=["SCT", "78961009", "Spleen"])]


def threshold_card(spatial_dims: int = 3, **overrides) -> ModelCard:
    fields = dict(
        name="intensity bands", network=NetworkInfo("test_intensity_bands", None, {"bands": BANDS}),
        spatial_dims=spatial_dims, in_channels=1, labels=list(LABELS),
        normalization=Normalization(kind="ct", lower=-1000, upper=1000, mean=0, std=100),
        spacing=[2.0, 2.0, 2.5] if spatial_dims == 3 else None, patch_size=[16, 16, 16] if spatial_dims == 3 else None,
        size_divisor=8,
    )
    fields.update(overrides)
    return ModelCard(**fields)


def write_threshold_model(path: Path, spatial_dims: int = 3, **overrides) -> Path:
    from MedSegEfficientLib.model.weights import build_from_card

    card = threshold_card(spatial_dims, **overrides)
    return save_model(path, card, build_from_card(card))
