"""Distillation: a student network learns a teacher's class probabilities on unlabelled, augmented images.

Teachers are model files (several: an ensemble, their probabilities averaged) or probability maps that an
outside teacher wrote (training/teachers/ runs such tools on trusted packages; the product never loads their
code). Where an image has reference labels, its target mixes them in: ``label_weight`` of the one-hot labels,
the rest the teacher's. The student's card records the teachers, the images, the licence and the validation.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.inference.gpu.devices import select_device
from MedSegEfficientLib.inference.preprocessing import resample_labels, to_model_grid
from MedSegEfficientLib.io.images import read_image
from MedSegEfficientLib.model.card import LabelInfo, ModelCard, NetworkInfo, Normalization
from MedSegEfficientLib.model.weights import LoadedModel, load_model
from MedSegEfficientLib.training.datasets import CasePaths, image_stem, label_array, load_cases
from MedSegEfficientLib.training.prepared import PreparedRun, save_prepared
from MedSegEfficientLib.training.partial_labels import labelled_classes
from MedSegEfficientLib.training.soft_targets import map_targets, one_hot_foreground, teacher_targets
from MedSegEfficientLib.training.config import TrainConfig
from MedSegEfficientLib.training.trainer import fit


@dataclass
class DistillSources:
    teachers: list[Path] = field(default_factory=list)  # model files
    images: list[Path] = field(default_factory=list)  # unlabelled images, for the model-file teachers
    soft_maps: list[tuple[Path, Path]] = field(default_factory=list)  # (image, an outside teacher's probabilities)
    labelled: list[CasePaths] = field(default_factory=list)  # images with reference labels, mixed in
    validation: list[CasePaths] = field(default_factory=list)  # never trained on
    labels: list[LabelInfo] | None = None  # needed where no model-file teacher names them
    modality: str | None = None


@dataclass
class DistillOptions:
    label_weight: float = 0.5
    licence: str = ""  # of the student: the teachers' and the images' terms
    teacher_description: str = ""  # who made the probability maps (an outside teacher), for the card

    def check(self) -> None:
        if not 0.0 <= self.label_weight <= 1.0:
            raise MedSegError(f"--label-weight must be within 0..1, not {self.label_weight}")


def distill(sources: DistillSources, output: Path, config: TrainConfig, options: DistillOptions,
            log: Callable[[str], None] = print, show_progress: bool = True, prepare_only: bool = False) -> ModelCard:
    """Train the student and write it to ``output``; ``prepare_only``: write the prepared run there instead."""
    run = prepare_distillation(sources, Path(output), config, options, log)
    if prepare_only:
        save_prepared(Path(output), run)
        return run.card
    return fit(run.card, run.items, run.validation, Path(output), config, log, show_progress, run.provenance)


def prepare_distillation(sources: DistillSources, output: Path, config: TrainConfig, options: DistillOptions,
                         log: Callable[[str], None] = print) -> PreparedRun:
    """The student's card and every training image with its soft target on the student's grid."""
    config.check()
    options.check()
    _check_sources(sources, Path(output))
    teachers = [load_model(path) for path in sources.teachers]
    labels = _agreed_labels(teachers, sources)
    first_image = read_image(_training_images(sources)[0])
    card = _student_card(teachers, labels, first_image.channels, sources, config)
    device = select_device(config.device)
    segmenters = [Segmenter(teacher, SegmentOptions(device=device.type)) for teacher in teachers]
    items = _soft_items(sources, card, segmenters, options.label_weight, log)
    validation_cases = load_cases(sources.validation)
    provenance: dict[str, Any] = {"distillation": _provenance(sources, teachers, options)}
    if options.licence:
        provenance["licence"] = options.licence
    names = [image_stem(path.name) for path in _training_images(sources)]
    return PreparedRun(card, items, names, validation_cases, config, provenance)


def _training_images(sources: DistillSources) -> list[Path]:
    return [*sources.images, *(image for image, _ in sources.soft_maps), *(case.image for case in sources.labelled)]


def _check_sources(sources: DistillSources, output: Path) -> None:
    if not sources.teachers and not sources.soft_maps:
        raise MedSegError("no teacher: give model files, or --soft-targets IMAGE:PROBABILITIES from an outside teacher")
    if sources.images and not sources.teachers:
        raise MedSegError("--images need a model-file teacher to label them; outside teachers come as --soft-targets")
    if sources.labelled and not sources.teachers and not sources.soft_maps:
        raise MedSegError("labelled images alone are training, not distillation: use medseg train")
    training = {path.resolve() for path in _training_images(sources)}
    if not training:
        raise MedSegError("no training images: give --images, --soft-targets or --data")
    for case in sources.validation:
        if case.image.resolve() in training:
            raise MedSegError(f"{case.image} is both a training and a validation image: validation needs unseen scans")
    inputs = training | {path.resolve() for path in sources.teachers}
    if output.resolve() in inputs:
        raise MedSegError(f"{output} is an input: write the student to another file")


def _agreed_labels(teachers: list[LoadedModel], sources: DistillSources) -> list[LabelInfo]:
    """The teachers must name the same labels with the same values; the student takes them."""
    if not teachers:
        if not sources.labels:
            raise MedSegError("outside teachers' maps carry no label names: give --labels (a JSON list or dataset.json)")
        return sources.labels
    reference = [(label.value, label.name) for label in teachers[0].card.labels]
    for teacher in teachers[1:]:
        if [(label.value, label.name) for label in teacher.card.labels] != reference:
            raise MedSegError(f"teachers '{teachers[0].card.name}' and '{teacher.card.name}' have different labels; "
                              "an ensemble needs the same labels in the same values")
    if sources.labels and [(label.value, label.name) for label in sources.labels] != reference:
        raise MedSegError("--labels differ from the teachers' labels; leave --labels out to take the teachers'")
    return list(teachers[0].card.labels)


def _student_card(teachers: list[LoadedModel], labels: list[LabelInfo], channels: int, sources: DistillSources,
                  config: TrainConfig) -> ModelCard:
    dims = config.spatial_dims
    guide = teachers[0].card if teachers else None
    modality = sources.modality or (guide.modality if guide else "MR")
    if guide is not None and guide.in_channels != channels:
        raise MedSegError(f"the teacher takes {guide.in_channels} channel(s), the images have {channels}")
    normalization = guide.normalization if guide else (
        Normalization(kind="zscore") if modality.upper() != "CT" else Normalization(kind="ct", std=500.0))
    spacing = config.spacing or (guide.spacing if guide and guide.spatial_dims == dims and guide.spacing else None)
    if spacing is None:
        spacing = [float(s) for s in np.median([read_image(path).spacing for path in _training_images(sources)],
                                               axis=0)]
    spacing = list(spacing)[:2] if dims == 2 else list(spacing)
    patch = config.patch_size or (guide.patch_size if guide and guide.spatial_dims == dims and guide.patch_size else
                                  ([96, 96, 96] if dims == 3 else [256, 256]))
    return ModelCard(
        name=config.name or f"{config.network} distilled", description=config.description,
        network=NetworkInfo(config.network, config.preset, dict(config.network_args)), spatial_dims=dims,
        in_channels=channels, labels=labels, modality=modality, normalization=normalization,
        spacing=[float(s) for s in spacing], patch_size=list(patch) if dims == 3 else None,
        orientation=guide.orientation if guide else "LPS",
    )


def _soft_items(sources: DistillSources, card: ModelCard, teachers: list[Segmenter], label_weight: float,
                log: Callable[[str], None]) -> list[dict[str, np.ndarray]]:
    """Every training image on the student's grid with its soft target (K - 1 foreground probabilities)."""
    classes = card.out_channels
    work: list[tuple[Path, Path | None, CasePaths | None]] = [(path, None, None) for path in sources.images]
    work += [(image, probabilities, None) for image, probabilities in sources.soft_maps]
    work += [(case.image, None, case) for case in sources.labelled]
    items = []
    for number, (image_path, map_path, case) in enumerate(work, start=1):
        started = time.perf_counter()
        volume = read_image(image_path)
        grid = to_model_grid(volume, card)
        if map_path is not None:
            soft = map_targets(read_image(map_path), map_path.name, classes, grid.geometry)
        elif teachers:
            soft = teacher_targets(teachers, volume, grid.geometry)
        else:
            soft = None
        if case is not None:
            if soft is None and case.labelled is not None:
                raise MedSegError(f"{case.label.name} labels only {', '.join(case.labelled)}: a partly labelled "
                                  "image needs a model-file teacher for the rest")
            reference = read_image(case.label)
            reference = reference.with_array(label_array(reference.array, case.label))
            truth = one_hot_foreground(resample_labels(reference.array, reference, grid.geometry), classes)
            soft = truth if soft is None else mix_labels(truth, soft, label_weight, labelled_channels(card, case))
        steer = np.where(soft.max(0) > 1.0 - soft.sum(0), soft.argmax(0) + 1, 0)  # crops around the teacher's organs
        items.append({"image": grid.array, "soft": soft.astype(np.float32),
                      "label": steer[np.newaxis].astype(np.int64)})
        log(f"soft targets {number}/{len(work)}: {image_path.name} ({time.perf_counter() - started:.1f} s)")
    return items


def labelled_channels(card: ModelCard, case: CasePaths) -> np.ndarray:
    """Which foreground channels (label value - 1) the case's map annotates; unknown names are refused."""
    return labelled_classes(card, case.labelled, case.label.name)[1:]


def mix_labels(truth: np.ndarray, teacher: np.ndarray, weight: float, labelled: np.ndarray) -> np.ndarray:
    """The target where an image has reference labels: on the labelled channels ``weight`` of the labels and the
    rest the teacher's; on the others the teacher's alone, scaled down where the labelled channels leave them
    less than the teacher gave (a voxel's probabilities never add up to more than one)."""
    target = teacher.copy()
    target[labelled] = weight * truth[labelled] + (1.0 - weight) * teacher[labelled]
    if labelled.all():
        return target
    room = 1.0 - target[labelled].sum(0)
    others = target[~labelled]
    total = others.sum(0)
    scale = np.where(total > room, room / np.maximum(total, 1e-6), 1.0)
    target[~labelled] = others * np.clip(scale, 0.0, 1.0)
    return target


def _provenance(sources: DistillSources, teachers: list[LoadedModel], options: DistillOptions) -> dict[str, Any]:
    record: dict[str, Any] = {
        "teachers": [_teacher_record(path, teacher) for path, teacher in zip(sources.teachers, teachers)],
        "images": [path.name for path in sources.images],
        "label_weight": options.label_weight,
    }
    if sources.soft_maps:
        record["outside_teacher"] = options.teacher_description or "probability maps given with --soft-targets"
        record["soft_target_images"] = [image.name for image, _ in sources.soft_maps]
    if sources.labelled:
        record["labelled_images"] = [case.image.name + (f" ({', '.join(case.labelled)} only)" if case.labelled else "")
                                     for case in sources.labelled]
    return record


def _teacher_record(path: Path, teacher: LoadedModel) -> dict[str, Any]:
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return {"name": teacher.card.name, "file": Path(path).name, "sha256": digest,
            "network": teacher.card.network.name, "preset": teacher.card.network.preset,
            "validation_mean_dice": teacher.card.metrics.get("validation_mean_dice"),
            "licence": teacher.card.training.get("licence", "")}


__all__ = ["DistillOptions", "DistillSources", "distill"]
