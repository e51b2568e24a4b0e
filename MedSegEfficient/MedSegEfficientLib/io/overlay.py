"""A PNG picture of a segmentation over its image: the axial slice with the most foreground, with a legend of the
labels it shows, in colours that tell neighbours apart (the card's terminology colours where they differ enough)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from MedSegEfficientLib.files import StagedOutputs, write_atomically
from MedSegEfficientLib.model.card import LabelInfo
from MedSegEfficientLib.volume import Volume, to_sitk

MIN_COLOUR_DISTANCE = 90.0  # RGB distance under which two labels look alike on a CT slice
MIN_SATURATION = 60  # max - min of R, G, B under which a colour reads as grey on a grey-scale slice
# A qualitative palette of well-separated colours (Kelly's colours of maximum contrast, without black and white).
PALETTE = [(243, 195, 0), (135, 86, 146), (243, 132, 0), (161, 202, 241), (190, 0, 50), (194, 178, 128),
           (0, 136, 86), (230, 143, 172), (0, 103, 165), (249, 133, 121), (96, 78, 151), (246, 166, 0),
           (179, 68, 108), (220, 211, 0), (136, 45, 23), (141, 182, 0), (101, 69, 34), (226, 88, 34), (43, 61, 38)]
_LEGEND_ROW = 22


def display_colours(labels: list[LabelInfo]) -> dict[int, tuple[int, int, int]]:
    """Each label's colour in the picture: its own where it has a hue and differs enough from the others kept; the
    rest get the palette colours farthest from every colour chosen so far."""
    chosen: dict[int, tuple[int, int, int]] = {}
    alike: list[LabelInfo] = []
    for label in labels:  # the terminology colours first, so that a palette colour never pushes one out
        colour = tuple(int(c) for c in label.color)
        grey = max(colour) - min(colour) < MIN_SATURATION  # white or grey vanishes on a grey-scale slice
        if grey or (chosen and _distance(colour, chosen.values()) < MIN_COLOUR_DISTANCE):
            alike.append(label)
        else:
            chosen[label.value] = colour
    for label in alike:
        chosen[label.value] = max(PALETTE, key=lambda candidate: _distance(candidate, chosen.values())) \
            if chosen else PALETTE[0]
    return {label.value: chosen[label.value] for label in labels}


def _distance(colour, others) -> float:
    return min(float(np.linalg.norm(np.subtract(colour, other))) for other in others)


CT_WINDOW = (-160.0, 240.0)  # an abdominal soft-tissue window in HU


def write_overlay_png(image: Volume, labels: np.ndarray, label_infos: list[LabelInfo], path: str | os.PathLike,
                      window: tuple[float, float] | None = None, opacity: float = 0.45,
                      outputs: StagedOutputs | None = None, modality: str = "CT") -> Path:
    """``window``: the grey levels shown from black to white; by default a soft-tissue window for CT, and the
    slice's 1st to 99th percentile otherwise (an MR head in a CT window is white, and a light label on it invisible).
    Each label is tinted and outlined at full strength, so that its border shows whatever its colour."""
    import SimpleITK as sitk
    from PIL import Image

    # Radiological display: orient to LPS so rows run anterior to posterior and the patient's right is on the left.
    gray = sitk.GetArrayFromImage(sitk.DICOMOrient(to_sitk(image if image.channels == 1 else
                                                           image.with_array(image.array[..., 0])), "LPS"))
    mask = sitk.GetArrayFromImage(sitk.DICOMOrient(to_sitk(image.with_array(labels)), "LPS"))
    index = int(np.argmax((mask > 0).reshape(mask.shape[0], -1).sum(axis=1)))
    if window is None:
        window = CT_WINDOW if modality.upper() == "CT" else tuple(
            float(v) for v in np.percentile(gray[index], [1.0, 99.0]))
    low, high = window
    base = np.clip((gray[index].astype(np.float32) - low) / max(high - low, 1e-6), 0, 1) * 255
    rgb = np.repeat(base[..., np.newaxis], 3, axis=-1)
    colours = display_colours(label_infos)
    shown = [label for label in label_infos if np.any(mask[index] == label.value)]
    for label in shown:
        where = mask[index] == label.value
        rgb[where] = (1 - opacity) * rgb[where] + opacity * np.asarray(colours[label.value], dtype=np.float32)
        rgb[_outline(where)] = colours[label.value]
    scale = max(1, 512 // max(rgb.shape[:2]))  # small grids are enlarged so that the picture is readable
    rgb = rgb.repeat(scale, axis=0).repeat(scale, axis=1)
    picture = _with_legend(Image.fromarray(rgb.astype(np.uint8)), shown, colours)
    return write_atomically(path, lambda temporary: picture.save(str(temporary), format="PNG"), outputs)


def _outline(where: np.ndarray) -> np.ndarray:
    """The pixels of ``where`` with a 4-neighbour outside it."""
    padded = np.pad(where, 1, constant_values=False)
    inside = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return where & ~inside


def _with_legend(slice_picture, shown: list[LabelInfo], colours: dict[int, tuple[int, int, int]]):
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=14)
    width = 40 + max([int(font.getlength(label.name)) for label in shown] + [60])
    height = max(slice_picture.height, 12 + _LEGEND_ROW * len(shown))
    canvas = Image.new("RGB", (slice_picture.width + width, height), (0, 0, 0))
    canvas.paste(slice_picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for row, label in enumerate(shown):
        top = 8 + row * _LEGEND_ROW
        left = slice_picture.width + 8
        draw.rectangle((left, top, left + 14, top + 14), fill=colours[label.value])
        draw.text((left + 20, top - 1), label.name, fill=(255, 255, 255), font=font)
    return canvas


__all__ = ["display_colours", "write_overlay_png"]
