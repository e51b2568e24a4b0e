"""A prepared training run in one file: the student's card, every training item already on the model grid (with
its labels or soft targets), the validation scans and the settings. ``medseg train|distill --prepare-only`` writes
it; ``medseg fit`` trains from it on another machine, a GPU node that needs neither the images, the teachers nor
SimpleITK.

The file is a NumPy ``.npz`` read with ``allow_pickle=False``; the JSON parts are stored as bytes. Before any
array is read its header is checked, and the whole is refused if it would need more memory than is available.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.files import write_atomically
from MedSegEfficientLib.inference.preflight import free_memory
from MedSegEfficientLib.model.card import ModelCard
from MedSegEfficientLib.training.datasets import TrainingCase
from MedSegEfficientLib.training.config import TrainConfig
from MedSegEfficientLib.volume import Volume

FORMAT = "medseg-prepared-training-1"
RAM_SHARE = 0.8  # of the available memory a prepared file may fill once loaded


@dataclass
class PreparedRun:
    card: ModelCard
    items: list[dict[str, np.ndarray]]
    item_names: list[str]
    validation: list[TrainingCase]
    config: TrainConfig
    provenance: dict[str, Any] = field(default_factory=dict)

    def without(self, names: list[str]) -> "PreparedRun":
        """The run without the named training items (cross-validation folds from one prepared file)."""
        unknown = set(names) - set(self.item_names)
        if unknown:
            raise MedSegError(f"no training item named {', '.join(sorted(unknown))} (items: {', '.join(self.item_names)})")
        kept = [index for index, name in enumerate(self.item_names) if name not in names]
        if not kept:
            raise MedSegError("leaving these out leaves nothing to train on")
        return PreparedRun(self.card, [self.items[i] for i in kept], [self.item_names[i] for i in kept],
                           self.validation, self.config, self.provenance)

    def validated_on(self, names: list[str]) -> "PreparedRun":
        chosen = [case for case in self.validation if case.name in names]
        if len(chosen) != len(set(names)):
            raise MedSegError(f"validation cases are {', '.join(case.name for case in self.validation)}, "
                              f"not {', '.join(names)}")
        return PreparedRun(self.card, self.items, self.item_names, chosen, self.config, self.provenance)


def save_prepared(path: Path, run: PreparedRun) -> Path:
    arrays: dict[str, np.ndarray] = {}
    for index, item in enumerate(run.items):
        arrays[f"item{index}.image"] = item["image"].astype(np.float16)
        arrays[f"item{index}.label"] = item["label"].astype(np.uint8 if item["label"].max() < 256 else np.uint16)
        if "labelled" in item:
            arrays[f"item{index}.labelled"] = item["labelled"].astype(np.uint8)
        if "soft" in item:
            # 1/255 steps: finer than any teacher's calibration, and a quarter of float16's compressed size.
            arrays[f"item{index}.soft"] = np.round(np.clip(item["soft"], 0, 1) * 255).astype(np.uint8)
    for index, case in enumerate(run.validation):
        arrays[f"validation{index}.image"] = case.image.array
        arrays[f"validation{index}.labels"] = case.labels.array
        arrays[f"validation{index}.geometry"] = _geometry(case.image)
    meta = {"format": FORMAT, "card": run.card.to_dict(), "item_names": run.item_names,
            "validation_names": [case.name for case in run.validation], "provenance": run.provenance,
            "config": {f.name: getattr(run.config, f.name) for f in fields(TrainConfig)}}
    arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    def write(staging: Path) -> None:
        with open(staging, "wb") as sink:
            np.savez_compressed(sink, **arrays)

    return write_atomically(path, write)


def load_prepared(path: Path) -> PreparedRun:
    path = Path(path)
    _check_size(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta.json"]).decode())
            if meta.get("format") != FORMAT:
                raise MedSegError(f"{path.name} is not a prepared training file ({FORMAT})")
            for key in ("item_names", "validation_names"):
                if not isinstance(meta[key], list) or not all(isinstance(name, str) for name in meta[key]):
                    raise MedSegError(f"{path.name} is not a readable prepared training file: '{key}' is not a list "
                                      "of names")
            card = ModelCard.from_dict(meta["card"])
            items = []
            for index in range(len(meta["item_names"])):
                item = {"image": data[f"item{index}.image"].astype(np.float32),
                        "label": data[f"item{index}.label"].astype(np.int64)}
                if f"item{index}.labelled" in data:
                    item["labelled"] = data[f"item{index}.labelled"].astype(bool)
                if f"item{index}.soft" in data:
                    item["soft"] = data[f"item{index}.soft"].astype(np.float32) / 255
                items.append(item)
            validation = []
            for index, name in enumerate(meta["validation_names"]):
                geometry = data[f"validation{index}.geometry"]
                image = _volume(data[f"validation{index}.image"], geometry)
                validation.append(TrainingCase(name, image, image.with_array(data[f"validation{index}.labels"])))
        known = {f.name for f in fields(TrainConfig)}
        config = TrainConfig(**{key: value for key, value in meta["config"].items() if key in known})
        config.check()
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, zipfile.BadZipFile) as error:
        # json.JSONDecodeError is a ValueError; a list where an object belongs is a TypeError or AttributeError
        raise MedSegError(f"{path.name} is not a readable prepared training file: {type(error).__name__}: "
                          f"{str(error)[:200]}") from None
    return PreparedRun(card, items, list(meta["item_names"]), validation, config, meta.get("provenance", {}))


def _geometry(volume: Volume) -> np.ndarray:
    return np.concatenate([volume.spacing, volume.origin, volume.direction.ravel()]).astype(np.float64)


def _volume(array: np.ndarray, geometry: np.ndarray) -> Volume:
    return Volume(array, tuple(geometry[:3]), tuple(geometry[3:6]), geometry[6:15].reshape(3, 3))


def _check_size(path: Path) -> None:
    """The arrays' sizes from their headers, before any is read: a file cannot make us allocate without bound."""
    if not path.is_file():
        raise MedSegError(f"{path} does not exist")
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                with archive.open(member) as stream:
                    version = np.lib.format.read_magic(stream)
                    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                        else np.lib.format.read_array_header_2_0
                    shape, _, dtype = read_header(stream)
                total += int(np.prod(shape, dtype=np.int64)) * 8  # at most: labels load as int64, the rest as float32
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise MedSegError(f"{path.name} is not a readable prepared training file: {error}") from None
    available = free_memory("cpu")[1]
    if available is not None and total > RAM_SHARE * available:
        raise MedSegError(f"{path.name} would need {total / 2**30:.1f} GiB of memory; "
                          f"{available / 2**30:.1f} GiB are available")


__all__ = ["PreparedRun", "load_prepared", "save_prepared"]
