"""Synthetic CT phantoms for tests: ellipsoid "organs" with CT-like HU and noise on anisotropic, oblique grids."""

from __future__ import annotations

import numpy as np

from MedSegEfficientLib.volume import Volume

# (centre as a fraction of the grid (z, y, x), radii as a fraction, HU, label)
ORGANS = [((0.5, 0.45, 0.35), (0.28, 0.22, 0.2), 60.0, 1),
          ((0.5, 0.55, 0.72), (0.18, 0.15, 0.12), 180.0, 2)]


def make_phantom(shape=(40, 48, 48), spacing=(1.5, 1.5, 2.5), seed=0, direction=None,
                 jitter: float = 0.04) -> tuple[Volume, Volume]:
    """A CT volume (int16 HU) and its label map (uint8) on the same grid; ``seed`` moves the organs a little."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    image = np.full(shape, -100.0)  # soft tissue body
    labels = np.zeros(shape, np.uint8)
    for centre, radii, hu, value in ORGANS:
        c = np.asarray(centre) + rng.uniform(-jitter, jitter, 3)
        r = np.asarray(radii) * rng.uniform(0.9, 1.1, 3)
        inside = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2 <= 1
        image[inside] = hu
        labels[inside] = value
    image += rng.normal(0, 15, shape)
    geometry = dict(spacing=spacing, origin=(-30.0, 20.0, 100.0),
                    direction=np.eye(3) if direction is None else direction)
    return (Volume(image.astype(np.int16), **geometry), Volume(labels, **geometry))


def oblique_direction(degrees: float = 20.0) -> np.ndarray:
    angle = np.radians(degrees)
    return np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])


def train_on_phantom(folder, shape, config):
    """Write one phantom case, train on it with ``config``; returns the card and the per-epoch losses."""
    from MedSegEfficientLib.training.datasets import describe_pairs
    from MedSegEfficientLib.io.images import write_label_image
    from MedSegEfficientLib.training.trainer import train

    image, labels = make_phantom(shape=shape)
    write_label_image(image.array, image, folder / "image.nii.gz")
    write_label_image(labels.array, labels, folder / "labels.nii.gz")
    description = describe_pairs([(str(folder / "image.nii.gz"), str(folder / "labels.nii.gz"))],
                                 {1: "big", 2: "small"})
    messages: list[str] = []
    card = train(description, folder / "model.safetensors", config, log=messages.append, show_progress=False)
    losses = [float(m.split("loss ")[1].split()[0]) for m in messages if m.startswith("epoch ")]
    return card, losses
