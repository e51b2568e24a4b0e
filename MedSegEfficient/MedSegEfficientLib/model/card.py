"""The model card: everything needed to run a trained model, stored as JSON inside the model file.

The engine builds the network and its pre/post-processing from the card alone. ``ModelCard.from_dict``
checks every field and reports all problems at once, naming each field.
"""

from __future__ import annotations

import dataclasses
import math
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from MedSegEfficientLib.errors import ModelFileError
from MedSegEfficientLib.model.multi_part import parse_parts
from MedSegEfficientLib.model.nnunet_mode import NnUNetMode, parse_nnunet_mode
from MedSegEfficientLib.model.postprocessing_rules import LabelCleanup, is_sided, parse_cleanup, parse_mirroring

CARD_FORMAT = "medseg-model"
CARD_FORMAT_VERSION = 1
NORMALIZATION_KINDS = ("ct", "zscore", "percentile", "imagenet", "none")
SLICE_FITS = ("resize", "tile")
ORIENTATIONS = ("LPS", "RAS", "LAS", "RPS", "LPI", "RAI", "none")
SPACING_RANGE_MM = (1e-3, 100.0)  # a micron (microscopy) to 10 cm: beyond is a unit mistake
PATCH_RANGE = (1, 2048)  # voxels per axis of a tile or slice
SIZE_DIVISOR_RANGE = (1, 1024)


@dataclass
class Normalization:
    """Intensity normalisation. ``ct``: clip to [lower, upper] then (x - mean) / std with fixed values.
    ``zscore``: per image. ``percentile``: clip to per-image percentiles [lower, upper], scale to [0, 1].
    ``imagenet``: 8-bit RGB to [0, 1], then ImageNet's per-channel mean and std (backbones pretrained on it)."""

    kind: str = "ct"
    lower: float = -1000.0
    upper: float = 1000.0
    mean: float = 0.0
    std: float = 1.0


@dataclass
class LabelInfo:
    value: int
    name: str
    color: tuple[int, int, int] = (128, 174, 128)
    # Slicer terminology: each code is [scheme designator, code value, code meaning].
    category: list[str] | None = None
    type: list[str] | None = None
    modifier: list[str] | None = None
    context: str = "Segmentation category and type - DICOM master list"


@dataclass
class NetworkInfo:
    name: str
    preset: str | None = None
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelCard:
    name: str
    network: NetworkInfo
    spatial_dims: int
    in_channels: int
    labels: list[LabelInfo]
    modality: str = "CT"
    description: str = ""
    normalization: Normalization = field(default_factory=Normalization)
    spacing: list[float] | None = None  # mm, (x, y[, z]); None: the network takes the input grid as is
    orientation: str = "LPS"  # the axis order the network was trained in (ITK letters)
    patch_size: list[int] | None = None  # 3D sliding-window tile; 2D: see slice_fit (None: any size, padded)
    slice_fit: str = "resize"  # 2D with patch_size: "resize" each slice to it, or "tile" it by sliding window
    size_divisor: int = 16  # 2D inputs are padded to a multiple of this
    slice_axis: int = 2  # 2D models: the image axis (x=0, y=1, z=2) across which slices are taken
    # After the network (model/postprocessing_rules.py): per label name, keep the largest piece or drop small
    # islands; image axes of the model grid to mirror at test time. Each is kept only where it raised the
    # validation Dice (training/choose_postprocessing.py).
    postprocessing: dict[str, LabelCleanup] = field(default_factory=dict)
    mirroring: list[int] = field(default_factory=list)  # image axes; in nnU-Net's mode, every combination of them
    nnunet: NnUNetMode | None = None  # run through nnU-Net's own pipeline (imported nnU-Net models)
    # Several networks whose labels merge into this card's (model/multi_part.py): TotalSegmentator's multi-part tasks.
    parts: list["ModelCard"] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format: str = CARD_FORMAT
    format_version: int = CARD_FORMAT_VERSION

    @property
    def out_channels(self) -> int:
        """Background plus one channel per label value up to the largest."""
        return max(label.value for label in self.labels) + 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "ModelCard":
        problems: list[str] = []
        card = _parse_card(data, problems)
        if problems or card is None:
            raise ModelFileError("invalid model card: " + "; ".join(problems))
        return card


def _parse_card(data: Any, problems: list[str]) -> ModelCard | None:
    if not isinstance(data, dict):
        problems.append("the card is not a JSON object")
        return None
    required = ("name", "network", "spatial_dims", "in_channels", "labels")
    for key in required:
        if key not in data:
            problems.append(f"missing field '{key}'")
    if data.get("format", CARD_FORMAT) != CARD_FORMAT:
        problems.append(f"field 'format' must be '{CARD_FORMAT}'")
    version = data.get("format_version", CARD_FORMAT_VERSION)
    if not isinstance(version, int) or version > CARD_FORMAT_VERSION:
        problems.append(f"field 'format_version' {version!r} is newer than this MedSegEfficient reads")
    network = _parse_network(data.get("network"), problems) if "network" in data else None
    labels = _parse_labels(data.get("labels"), problems) if "labels" in data else []
    dims = data.get("spatial_dims")
    if "spatial_dims" in data and dims not in (2, 3):
        problems.append("field 'spatial_dims' must be 2 or 3")
    for key in ("name", "description"):
        if isinstance(data.get(key), str) and not _displayable(data[key], allow_newlines=key == "description"):
            problems.append(f"field '{key}' holds control or text-direction characters")
    channels = data.get("in_channels")
    if "in_channels" in data and (not isinstance(channels, int) or channels < 1):
        problems.append("field 'in_channels' must be a positive integer")
    normalization = _parse_normalization(data.get("normalization", {}), problems)
    _check_optional_lists(data, dims, problems)
    if data.get("orientation", "LPS") not in ORIENTATIONS:
        problems.append(f"field 'orientation' must be one of {', '.join(ORIENTATIONS)}")
    if data.get("slice_fit", "resize") not in SLICE_FITS:
        problems.append(f"field 'slice_fit' must be one of {', '.join(SLICE_FITS)}")
    if data.get("slice_axis", 2) not in (0, 1, 2):
        problems.append("field 'slice_axis' must be 0, 1 or 2")
    _check_scalars(data, problems)
    cleanup = parse_cleanup(data.get("postprocessing"), {label.name for label in labels}, problems)
    nnunet = parse_nnunet_mode(data.get("nnunet"), problems)
    # nnU-Net's mode mirrors as its checkpoint allows: whether sided labels survive it was the trainer's choice.
    sided = data.get("nnunet") is None and any(is_sided(label.name, label.modifier) for label in labels)
    mirroring = parse_mirroring(data.get("mirroring"), dims, data.get("slice_axis", 2), data.get("orientation", "LPS"),
                                sided, problems)
    parts = parse_parts(data, _parse_card, problems)
    if problems or network is None:
        return None
    return ModelCard(
        name=str(data["name"]), network=network, spatial_dims=dims, in_channels=channels, labels=labels,
        modality=str(data.get("modality", "CT")), description=str(data.get("description", "")),
        normalization=normalization, spacing=data.get("spacing"), orientation=data.get("orientation", "LPS"),
        patch_size=data.get("patch_size"), size_divisor=int(data.get("size_divisor", 16)),
        slice_axis=int(data.get("slice_axis", 2)), slice_fit=data.get("slice_fit", "resize"), training=dict(data.get("training", {})),
        metrics=dict(data.get("metrics", {})), format_version=version, postprocessing=cleanup, mirroring=mirroring,
        nnunet=nnunet, parts=parts,
    )


def _displayable(text: str, allow_newlines: bool = False) -> bool:
    """No control characters (ESC sequences rewrite a terminal) and no format characters (a right-to-left override
    reverses what a name appears to say)."""
    allowed = "\n\t" if allow_newlines else ""
    return not any(unicodedata.category(character) in ("Cc", "Cf") and character not in allowed
                   for character in text)


def _parse_network(raw: Any, problems: list[str]) -> NetworkInfo | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        problems.append("field 'network' must be an object with a string 'name'")
        return None
    args = raw.get("args", {})
    if not isinstance(args, dict):
        problems.append("field 'network.args' must be an object")
        return None
    preset = raw.get("preset")
    if preset is not None and not isinstance(preset, str):
        problems.append("field 'network.preset' must be a string or null")
    return NetworkInfo(name=raw["name"], preset=preset, args=args)


def _parse_labels(raw: Any, problems: list[str]) -> list[LabelInfo]:
    if not isinstance(raw, list) or not raw:
        problems.append("field 'labels' must be a non-empty list")
        return []
    labels = []
    for index, entry in enumerate(raw):
        where = f"labels[{index}]"
        if not isinstance(entry, dict) or "value" not in entry or "name" not in entry:
            problems.append(f"field '{where}' needs 'value' and 'name'")
            continue
        value = entry["value"]
        if not isinstance(value, int) or not 1 <= value <= 65535:
            problems.append(f"field '{where}.value' must be an integer in 1..65535")
            continue
        if not isinstance(entry["name"], str) or not entry["name"].strip():
            problems.append(f"field '{where}.name' must be a non-empty string")
            continue
        if not _displayable(entry["name"]):
            problems.append(f"field '{where}.name' holds control or text-direction characters (they would rewrite "
                            "the terminal or the screen it is shown on)")
            continue
        color = entry.get("color", (128, 174, 128))
        if not _is_colour(color):
            hint = (" (these look like 0..1 fractions: multiply by 255)" if isinstance(color, (list, tuple))
                    and len(color) == 3 and all(_is_number(c) and 0 <= c <= 1 for c in color) else "")
            problems.append(f"field '{where}.color' must be three integers in 0..255{hint}")
            continue
        known = {f.name for f in dataclasses.fields(LabelInfo)}
        extra = {k: v for k, v in entry.items() if k in known and k not in ("value", "name", "color")}
        for code in ("category", "type", "modifier"):
            if extra.get(code) is not None and not _is_code(extra[code]):
                problems.append(f"field '{where}.{code}' must be a code [scheme, value, meaning] of three strings")
        if not isinstance(extra.get("context", ""), str):
            problems.append(f"field '{where}.context' must be a string")
        labels.append(LabelInfo(value=value, name=str(entry["name"]), color=tuple(int(c) for c in color), **extra))
    values = [label.value for label in labels]
    if len(set(values)) != len(values):
        problems.append("field 'labels' repeats a value")
    return labels


def _parse_normalization(raw: Any, problems: list[str]) -> Normalization:
    if not isinstance(raw, dict):
        problems.append("field 'normalization' must be an object")
        return Normalization()
    known = {f.name for f in dataclasses.fields(Normalization)}
    unknown = set(raw) - known
    if unknown:
        problems.append(f"field 'normalization' has unknown keys {sorted(unknown)}")
        return Normalization()
    numbers = [key for key in ("lower", "upper", "mean", "std") if key in raw]
    wrong = [key for key in numbers if not _is_number(raw[key]) or not math.isfinite(raw[key])]
    if wrong:
        problems.append(f"field 'normalization.{wrong[0]}' must be a finite number, not {raw[wrong[0]]!r}")
        return Normalization()
    norm = Normalization(**raw)
    if norm.kind not in NORMALIZATION_KINDS:
        problems.append(f"field 'normalization.kind' must be one of {', '.join(NORMALIZATION_KINDS)}")
    if norm.kind in ("ct", "percentile") and not norm.lower < norm.upper:
        problems.append("field 'normalization' needs lower < upper")
    if norm.kind == "ct" and not norm.std > 0:
        problems.append("field 'normalization.std' must be positive")
    return norm


def _check_optional_lists(data: dict, dims: Any, problems: list[str]) -> None:
    for key, kind in (("spacing", float), ("patch_size", int)):
        value = data.get(key)
        if value is None:
            continue
        ok = isinstance(value, list) and all(_is_number(v) and v > 0 for v in value)
        if not ok or (kind is int and not all(isinstance(v, int) for v in value)):
            problems.append(f"field '{key}' must be a list of positive numbers")
        elif dims in (2, 3) and len(value) != dims:
            problems.append(f"field '{key}' must have {dims} entries for a {dims}D model")
        else:
            low, high = SPACING_RANGE_MM if key == "spacing" else PATCH_RANGE
            if not all(low <= v <= high for v in value):
                unit = " mm" if key == "spacing" else " voxels"
                problems.append(f"field '{key}' {value} is outside {low:g}..{high:g}{unit} per axis")


def _check_scalars(data: dict, problems: list[str]) -> None:
    """The simple fields' types: a card is user input, so every field is checked before anything uses it."""
    for key in ("name", "description", "modality"):
        if key in data and not isinstance(data[key], str):
            problems.append(f"field '{key}' must be a string")
    for key in ("training", "metrics"):
        if key in data and not isinstance(data[key], dict):
            problems.append(f"field '{key}' must be an object")
    divisor = data.get("size_divisor", 16)
    low, high = SIZE_DIVISOR_RANGE
    if not isinstance(divisor, int) or isinstance(divisor, bool) or not low <= divisor <= high:
        problems.append(f"field 'size_divisor' must be an integer in {low}..{high}, not {divisor!r}")
    dice = data.get("metrics", {}).get("validation_dice", {}) if isinstance(data.get("metrics"), dict) else {}
    if not isinstance(dice, dict) or not all(v is None or _is_number(v) for v in dice.values()):
        problems.append("field 'metrics.validation_dice' must map label names to numbers (or null: absent)")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_colour(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 3
            and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value))


def _is_code(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(part, str) for part in value)
