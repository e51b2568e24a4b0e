"""The card's ``nnunet`` field: an imported nnU-Net model runs through nnU-Net's own pipeline (the array as
stored, cropped to its non-zero box, normalised, then resampled with the plans' splines; nnU-Net's tiles and
Gaussian; mirroring along every combination of the allowed axes; class scores resampled to the input, then the
argmax). The importer writes it from the plans; inference/nnunet/ runs it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

ANISOTROPY_THRESHOLD = 3.0  # nnunetv2.configuration.ANISO_THRESHOLD
SPLINE_ORDERS = (0, 1, 3)


@dataclass(frozen=True)
class Resampling:
    """One of the plans' ``resampling_fn_*_kwargs``: spline order in-plane, order along a separate slice axis, and
    whether that axis is separate (True, False, or None: decided from the spacings)."""

    order: int = 3
    order_z: int = 0
    force_separate_z: bool | None = None
    anisotropy_threshold: float = ANISOTROPY_THRESHOLD

    def separate_axis(self, current: Sequence[float], new: Sequence[float]) -> int | None:
        """nnU-Net's ``determine_do_sep_z_and_axis``: the array axis resampled on its own, or None."""
        if self.force_separate_z is not None:
            axes = _lowres_axes(current) if self.force_separate_z else []
        elif max(current) / min(current) > self.anisotropy_threshold:
            axes = _lowres_axes(current)
        elif max(new) / min(new) > self.anisotropy_threshold:
            axes = _lowres_axes(new)
        else:
            axes = []
        return axes[0] if len(axes) == 1 else None


def _lowres_axes(spacing: Sequence[float]) -> list[int]:
    largest = max(spacing)
    return [axis for axis, value in enumerate(spacing) if largest / value == 1]


@dataclass(frozen=True)
class NnUNetMode:
    tile_step: float = 0.5  # nnUNetPredictor's tile_step_size
    data: Resampling = field(default_factory=Resampling)  # the image to the model grid
    scores: Resampling = field(default_factory=lambda: Resampling(order=1))  # logits back to the input grid


def parse_nnunet_mode(raw: Any, problems: list[str]) -> NnUNetMode | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append("field 'nnunet' must be an object")
        return None
    step = raw.get("tile_step", 0.5)
    if not isinstance(step, (int, float)) or isinstance(step, bool) or not 0 < step <= 1:
        problems.append(f"field 'nnunet.tile_step' must be in (0, 1], not {step!r}")
    data = _parse_resampling(raw.get("data", {}), "nnunet.data", Resampling(), problems)
    scores = _parse_resampling(raw.get("scores", {}), "nnunet.scores", Resampling(order=1), problems)
    unknown = set(raw) - {"tile_step", "data", "scores"}
    if unknown:
        problems.append(f"field 'nnunet' has unknown keys {sorted(unknown)}")
    return NnUNetMode(float(step), data, scores) if not problems else None


def _parse_resampling(raw: Any, name: str, default: Resampling, problems: list[str]) -> Resampling:
    if not isinstance(raw, dict):
        problems.append(f"field '{name}' must be an object")
        return default
    order, order_z = raw.get("order", default.order), raw.get("order_z", default.order_z)
    separate = raw.get("force_separate_z", default.force_separate_z)
    threshold = raw.get("anisotropy_threshold", default.anisotropy_threshold)
    if order not in SPLINE_ORDERS or order_z not in SPLINE_ORDERS or isinstance(order, bool) \
            or isinstance(order_z, bool):
        problems.append(f"field '{name}' orders must be one of {SPLINE_ORDERS}")
    if separate not in (None, True, False):
        problems.append(f"field '{name}.force_separate_z' must be true, false or null")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not math.isfinite(threshold) \
            or threshold < 1:
        problems.append(f"field '{name}.anisotropy_threshold' must be a number >= 1")
    if problems:
        return default
    return Resampling(int(order), int(order_z), separate, float(threshold))


__all__ = ["ANISOTROPY_THRESHOLD", "NnUNetMode", "Resampling", "parse_nnunet_mode"]
