"""What a card may ask of the labels after the network: per label, keep only the largest connected piece (organs
that are one piece) or drop islands under a size; and test-time mirroring along the axes that swap no sided
label. Parsed and checked here like every card field; applied by inference/cleanup.py and the engine."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ISLAND_RANGE_MM3 = (0.0, 1e7)  # up to 10 litres: beyond is a unit mistake
_SIDED = re.compile(r"(?<![a-z])(left|right)(?![a-z])", re.IGNORECASE)  # "kidney_left" too
_LEFT_RIGHT = {"L", "R"}


@dataclass
class LabelCleanup:
    largest_component: bool = False  # keep only the largest face-connected piece
    min_island_mm3: float = 0.0  # drop pieces smaller than this


def is_sided(name: str, modifier: list[str] | None = None) -> bool:
    """A label that mirroring left to right would swap (left kidney, right lung)."""
    return bool(_SIDED.search(name)) or bool(modifier and _SIDED.search(modifier[-1]))


def left_right_axis(orientation: str) -> int | None:
    """The model grid's image axis that runs left to right, or None where the orientation is not fixed."""
    if not isinstance(orientation, str) or orientation == "none":
        return None
    return next((axis for axis, letter in enumerate(orientation) if letter in _LEFT_RIGHT), None)


def parse_cleanup(raw: Any, label_names: set[str], problems: list[str]) -> dict[str, LabelCleanup]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append("field 'postprocessing' must map label names to rules")
        return {}
    rules: dict[str, LabelCleanup] = {}
    for name, rule in raw.items():
        if name not in label_names:
            problems.append(f"field 'postprocessing' names '{name}', which is not one of the card's labels")
            continue
        if not isinstance(rule, dict) or set(rule) - {"largest_component", "min_island_mm3"}:
            problems.append(f"field 'postprocessing.{name}' takes only largest_component and min_island_mm3")
            continue
        largest = rule.get("largest_component", False)
        island = rule.get("min_island_mm3", 0.0)
        low, high = ISLAND_RANGE_MM3
        if not isinstance(largest, bool):
            problems.append(f"field 'postprocessing.{name}.largest_component' must be true or false")
        elif not isinstance(island, (int, float)) or isinstance(island, bool) or not low <= island <= high:
            problems.append(f"field 'postprocessing.{name}.min_island_mm3' must be a number in {low:g}..{high:g}")
        else:
            rules[name] = LabelCleanup(largest, float(island))
    return rules


def parse_mirroring(raw: Any, spatial_dims: Any, slice_axis: Any, orientation: Any, sided: bool,
                    problems: list[str]) -> list[int]:
    """Image axes (x=0, y=1, z=2) of the model grid to mirror at test time; never across the slices of a 2D
    model, never left to right when a label is sided, never at all with sided labels and no fixed orientation."""
    if raw is None or raw == []:
        return []
    if not isinstance(raw, list) or not all(isinstance(a, int) and not isinstance(a, bool) for a in raw) \
            or len(set(raw)) != len(raw) or not all(0 <= a <= 2 for a in raw):
        problems.append("field 'mirroring' must be a list of distinct image axes 0, 1, 2")
        return []
    if spatial_dims == 2 and slice_axis in raw:
        problems.append(f"field 'mirroring' names axis {slice_axis}, across which a 2D model takes its slices")
    if sided and isinstance(orientation, str):
        across = left_right_axis(orientation)
        if across is None:
            problems.append("field 'mirroring' needs a fixed orientation when labels are sided (left/right)")
        elif across in raw:
            problems.append(f"field 'mirroring' names axis {across}, which would swap the sided (left/right) labels")
    return list(raw)


__all__ = ["LabelCleanup", "is_sided", "left_right_axis", "parse_cleanup", "parse_mirroring"]
