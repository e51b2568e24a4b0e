"""The card's ``parts`` field: one model made of several networks, each with its own grid, normalisation and
pipeline, whose labels merge into the card's label map, as TotalSegmentator's multi-part tasks (its ``total`` task
is five nnU-Net models) merge theirs: each part's labels are mapped by name into the merged map and written in part
order, a later part's label replacing an earlier one's where both say something (``merge_lookup``).

A multi-part card names the network ``parts``; its own spacing, tile, normalisation, mirroring and clean-up are
unused and must be left empty, so that nothing in the card says one thing and runs another.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

MULTI_PART_NETWORK = "parts"
MAX_PARTS = 16
_PART_LEVEL_FIELDS = ("nnunet", "mirroring", "postprocessing", "patch_size", "spacing")


def parse_parts(data: dict, parse_card: Callable[[Any, list[str]], Any], problems: list[str]) -> list:
    """The part cards, each checked as a card; every part label must be a merged label of the same name."""
    raw = data.get("parts")
    network = data.get("network", {}).get("name") if isinstance(data.get("network"), dict) else None
    if raw is None or raw == []:  # a card of one network (asdict writes its empty list)
        if network == MULTI_PART_NETWORK:
            problems.append(f"network '{MULTI_PART_NETWORK}' needs the field 'parts'")
        return []
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_PARTS:
        problems.append(f"field 'parts' must be a list of 1..{MAX_PARTS} model cards")
        return []
    if network != MULTI_PART_NETWORK:
        problems.append(f"a card with 'parts' names the network '{MULTI_PART_NETWORK}', not {network!r}")
    for key in _PART_LEVEL_FIELDS:
        if data.get(key):
            problems.append(f"field '{key}' belongs in each part of a multi-part card")
    merged = {entry.get("name") for entry in data.get("labels", []) if isinstance(entry, dict)}
    parts = []
    for index, entry in enumerate(raw):
        own: list[str] = []
        if isinstance(entry, dict) and entry.get("parts"):
            own.append("a part cannot have parts")
        part = parse_card(entry, own) if not own else None
        if part is not None:
            unknown = [label.name for label in part.labels if label.name not in merged]
            if unknown:
                own.append(f"labels {unknown} are not in the merged label map")
            for key in ("spatial_dims", "in_channels"):
                if key in data and getattr(part, key) != data[key]:
                    own.append(f"'{key}' {getattr(part, key)} differs from the card's {data[key]}")
        problems.extend(f"parts[{index}]: {problem}" for problem in own)
        parts.append(part)
    return parts if not problems else []


def merge_lookup(part_labels: Sequence, merged_labels: Sequence) -> np.ndarray:
    """Part label value -> merged label value (0 stays 0), by name."""
    merged = {label.name: label.value for label in merged_labels}
    lookup = np.zeros(max(label.value for label in part_labels) + 1, dtype=np.int64)
    for label in part_labels:
        lookup[label.value] = merged[label.name]
    return lookup


def merged_label_values(part_names: Sequence[Sequence[str]]) -> dict[str, int]:
    """TotalSegmentator's merged numbering: the parts' labels in part order, numbered from 1, each name once."""
    values: dict[str, int] = {}
    for names in part_names:
        for name in names:
            values.setdefault(name, len(values) + 1)
    return values


__all__ = ["MAX_PARTS", "MULTI_PART_NETWORK", "merge_lookup", "merged_label_values", "parse_parts"]
