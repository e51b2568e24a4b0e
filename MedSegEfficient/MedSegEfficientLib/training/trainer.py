"""Training: MONAI augmentation, Dice + cross-entropy, AdamW with a cosine schedule, AMP on CUDA.

Validation runs the real engine on each validation image every epoch (exactly what a user gets), scores
per-label Dice on the image's own grid, and the best model is written as a model file with its card filled.
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from MedSegEfficientLib.model.card import ModelCard, NetworkInfo
from MedSegEfficientLib.model.weights import LoadedModel, build_from_card, load_model, round_to_half, save_model
from MedSegEfficientLib.training.datasets import (DatasetDescription, TrainingCase, check_label_values, load_cases,
                                                 median_spacing, normalization_from_data)
from MedSegEfficientLib.inference.gpu.devices import describe_device, select_device
from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.inference.preprocessing import resample_labels, to_model_grid
from MedSegEfficientLib.model.postprocessing_rules import is_sided
from MedSegEfficientLib.training.augmentation import training_transforms
from MedSegEfficientLib.training.contrast_enhancement import (ENHANCEMENT_HU, RandContrastEnhancementd,
                                                             enhancement_ranges, normalised_ceiling)
from MedSegEfficientLib.training.config import TrainConfig
from MedSegEfficientLib.training.partial_labels import labelled_classes, marginal_dice_ce
from MedSegEfficientLib.training.prepared import PreparedRun, save_prepared
from MedSegEfficientLib.training.soft_targets import with_background
from MedSegEfficientLib.training.validation import present_mean, validate, validation_metrics


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    seconds: float
    dice: dict[str, float]
    mean_dice: float | None


def train(description: DatasetDescription, output: Path, config: TrainConfig,
          log: Callable[[str], None] = print, show_progress: bool = True, prepare_only: bool = False) -> ModelCard:
    """Train and write the best model to ``output``; ``prepare_only``: write the prepared run there instead
    (training/prepared.py), for ``medseg fit`` elsewhere."""
    config.check()
    partial_validation = [case.label.name for case in description.validation if case.labelled is not None]
    if partial_validation:
        raise MedSegError(f"{', '.join(partial_validation)} label(s) only some structures: a validation scan must "
                          "label them all, or its Dice would count the rest as misses")
    training_cases = load_cases(description.training)
    validation_cases = load_cases(description.validation)
    check_label_values(training_cases + validation_cases, description.labels)
    if not validation_cases and len(training_cases) > 1:
        fully = [case for case in training_cases if case.labelled is None]
        held = min(len(fully), max(1, int(round(len(training_cases) * config.validation_fraction))))
        validation_cases = fully[len(fully) - held:]  # the last fully labelled ones; none if there are none
        held_out = {id(case) for case in validation_cases}  # by identity: cases hold arrays
        training_cases = [case for case in training_cases if id(case) not in held_out]
    card = _initial_card(description, training_cases, config)
    partial = any(case.labelled is not None for case in training_cases)
    items = [labelled_item(case, card, with_classes=partial) for case in training_cases]
    provenance = {"partly_labelled": {case.name: case.labelled for case in training_cases
                                      if case.labelled is not None}} if partial else None
    if prepare_only:
        save_prepared(Path(output), PreparedRun(card, items, [case.name for case in training_cases],
                                                validation_cases, config, provenance or {}))
        return card
    return fit(card, items, validation_cases, Path(output), config, log, show_progress, provenance)


def labelled_item(case: TrainingCase, card: ModelCard, with_classes: bool = False) -> dict[str, np.ndarray]:
    """A case on the model grid, as the loader takes it: the image (C, ...) and its labels (1, ...);
    ``with_classes``: also which classes it labels (K,), for a run with partly labelled cases."""
    grid = to_model_grid(case.image, card)
    labels = resample_labels(case.labels.array, case.labels, grid.geometry)
    item = {"image": grid.array, "label": labels[np.newaxis].astype(np.int64)}
    if with_classes:
        item["labelled"] = labelled_classes(card, case.labelled, case.name)
    return item


def fit(card: ModelCard, items: list[dict[str, np.ndarray]], validation_cases: list[TrainingCase], output: Path,
        config: TrainConfig, log: Callable[[str], None] = print, show_progress: bool = True,
        provenance: dict[str, Any] | None = None, step_hook: Callable[[int, int], None] | None = None) -> ModelCard:
    """Train ``card``'s network on model-grid items; keep the model that validates best. Items with a ``soft``
    entry (K - 1 foreground probabilities, training/soft_targets.py) are fitted to it, with ``label`` only
    steering the crops; all items of one run are of one kind. ``step_hook(done, total)`` runs after every batch
    (a progress bar; it may raise Cancelled, which ends the run with nothing more written)."""
    config.check()
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    device = select_device(config.device)
    log_path = output.with_suffix(".train.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "w", buffering=1)  # line-buffered, so that `tail -f` follows it

    def say(message: str) -> None:
        log(message)
        log_file.write(message + "\n")

    soft, partial = "soft" in items[0], "labelled" in items[0]
    if soft and partial:
        raise MedSegError("soft targets already fill in what a partly labelled case leaves out: give one or the other")
    network = build_from_card(card)
    if config.init:
        taken, total = _initialise_from(network, config.init)
        say(f"started from {config.init}: {taken} of the network's {total} weight tensors")
    network.to(device)
    say(f"training {card.network.name} ({sum(p.numel() for p in network.parameters()) / 1e6:.2f} M parameters) "
        f"on {len(items)} case(s), validating on {len(validation_cases)}, device {describe_device(device)}"
        + (", soft targets" if soft else "") + (", partly labelled cases (marginal loss)" if partial else "")
        + (f", weights averaged (EMA {config.weight_average} per batch)" if config.weight_average else ""))
    say(f"model grid: spacing {card.spacing}, patch {card.patch_size}, normalisation {card.normalization}")

    loader = _training_loader(items, card, config, soft)
    from monai.losses import DiceCELoss

    # Soft targets are class probabilities of the same shape as the logits: Dice and cross-entropy take them as
    # they are (soft Dice, and cross-entropy against a distribution).
    loss_function = DiceCELoss(to_onehot_y=not soft, softmax=True)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    total_steps = config.epochs * config.iterations_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total_steps)))
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    averaged = _weight_average(network, config.weight_average)
    progress = _progress_bar(total_steps, show_progress)
    best: float | None = None
    started = time.time()
    deadline = started + 60 * config.max_minutes if config.max_minutes is not None else math.inf
    for epoch in range(1, config.epochs + 1):
        network.train()
        epoch_start, losses, skipped = time.time(), [], 0
        for batch in loader:
            if losses and time.time() > deadline:  # the limit holds within a batch: the epoch ends, is validated
                say(f"epoch {epoch}: the {config.max_minutes} minute limit passed after {len(losses) + skipped} "
                    f"of {config.iterations_per_epoch} batches")
                break
            optimizer.zero_grad(set_to_none=True)
            loss = _batch_loss(network, batch, device, loss_function, soft, partial)
            if not torch.isfinite(loss):
                skipped += 1
                scheduler.step()
                continue
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(network.parameters(), max_norm=12.0)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if averaged is not None:
                averaged.update_parameters(network)
            losses.append(float(loss.detach()))
            progress.update(1)
            if step_hook is not None:
                step_hook((epoch - 1) * config.iterations_per_epoch + len(losses) + skipped, total_steps)
            progress.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}")
        if skipped:
            say(f"epoch {epoch}: skipped {skipped} batch(es) with a non-finite loss")
        if not losses:
            raise MedSegError("training diverged: every batch of an epoch had a non-finite loss; lower --lr")
        kept = averaged.module if averaged is not None else network  # what is validated is what is saved
        if not all(bool(torch.isfinite(parameter).all()) for parameter in kept.parameters()):
            raise MedSegError(f"training diverged at epoch {epoch}: the weights became NaN or infinite; lower --lr"
                              + (f" (the model of an earlier epoch stays in {output})" if best is not None else
                                 " (nothing was written)"))
        evaluated = round_to_half(kept) if config.half_weights else kept
        dice = validate(LoadedModel(card, evaluated), validation_cases, device, check_memory=False) \
            if validation_cases else {}
        mean_dice = present_mean(dice)
        record = EpochRecord(epoch, float(np.mean(losses)), time.time() - epoch_start, dice, mean_dice)
        say(f"epoch {epoch}/{config.epochs} loss {record.train_loss:.4f} "
            + (f"val mean Dice {mean_dice:.4f} " if mean_dice is not None else "")
            + " ".join(f"{k}={v:.3f}" for k, v in dice.items()) + f" ({record.seconds:.1f} s)" + _network_report(network))
        score = mean_dice if mean_dice is not None else -record.train_loss
        if best is None or score > best:
            best = score
            _record_results(card, record, validation_cases, config, device, time.time() - started, provenance)
            save_model(output, card, kept, half=config.half_weights)
            say(f"saved {output} (epoch {epoch})")
        if time.time() > deadline:
            say(f"stopping after epoch {epoch}: the {config.max_minutes} minute limit has passed")
            break
    progress.close()
    log_file.close()
    return card


def _batch_loss(network: torch.nn.Module, batch: dict, device: torch.device, loss_function, soft: bool,
                partial: bool) -> torch.Tensor:
    """One batch's forward pass and loss (the network in float16 autocast on CUDA, the loss in float32: softmax +
    Dice in float16 overflows now and then and poisons the weights)."""
    images, labels = batch["image"].to(device), batch["label"].to(device)
    target = with_background(batch["soft"].to(device).float()) if soft else labels
    with torch.autocast("cuda", dtype=torch.float16, enabled=device.type == "cuda"):
        logits = network(images)
    criterion = loss_function
    if partial:  # each crop's unlabelled classes count as background (training/partial_labels.py)
        labelled = batch["labelled"].to(device)
        criterion = lambda scores, targets: marginal_dice_ce(scores, targets, labelled)  # noqa: E731
    return _supervised_loss(criterion, logits, target, soft) + _extra_loss(network, labels)


def seconds_per_step(card: ModelCard, items: list[dict[str, np.ndarray]], config: TrainConfig, steps: int = 3) -> float:
    """What one of ``fit``'s batches costs here: crops and augmentation from the loader, the forward and backward
    pass and the optimiser step, timed over ``steps`` batches after one to warm up (a fine-tune's estimate)."""
    device = select_device(config.device)
    network = build_from_card(card).to(device).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=0.0)
    probe = TrainConfig(**{**config.__dict__, "iterations_per_epoch": steps + 1, "workers": 0})
    from monai.losses import DiceCELoss

    loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
    begun = None
    for index, batch in enumerate(_training_loader(items, card, probe, soft=False)):
        if index == 1:
            begun = time.time()
        loss = _batch_loss(network, batch, device, loss_function, soft=False, partial=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), max_norm=12.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        float(loss.detach())  # fit reads each loss: the same wait for the GPU
    return (time.time() - begun) / steps


def _initial_card(description: DatasetDescription, cases: list[TrainingCase], config: TrainConfig) -> ModelCard:
    dims = config.spatial_dims
    spacing = config.spacing or median_spacing(cases)
    if dims == 2:  # in-plane spacing only (the slice axis is z)
        spacing = spacing[:2]
    patch = config.patch_size or ([96, 96, 96] if dims == 3 else [256, 256])
    card = ModelCard(
        name=config.name or Path(description.training[0].image).parent.parent.name,
        description=config.description,
        network=NetworkInfo(config.network, config.preset, dict(config.network_args)),
        spatial_dims=dims, in_channels=cases[0].image.channels, labels=list(description.labels),
        modality=description.modality, normalization=normalization_from_data(cases, description.modality),
        spacing=[float(s) for s in spacing], patch_size=list(patch) if dims == 3 else None,
    )
    return card


def _training_loader(items: list[dict[str, np.ndarray]], card: ModelCard, config: TrainConfig, soft: bool):
    from monai.data import DataLoader, Dataset

    patch = config.patch_size or (card.patch_size if card.spatial_dims == 3 else [256, 256])
    pad_value = min(float(item["image"].min()) for item in items)  # air, as the engine pads at inference
    flips = not any(is_sided(label.name, label.modifier) for label in card.labels)
    transforms = training_transforms(card.spatial_dims, list(patch), pad_value, soft=soft,
                                     strong=config.strong_augmentation, flips=flips and config.strong_augmentation,
                                     enhancement=_contrast_enhancement(card) if config.contrast_enhancement else None)
    # One pass of the loader is one epoch: the cases repeat so that each epoch draws
    # iterations_per_epoch batches of random crops, and worker processes start once.
    draws = config.iterations_per_epoch * config.batch_size
    repeated = [items[index % len(items)] for index in range(draws)]
    return DataLoader(Dataset(repeated, transforms), batch_size=config.batch_size, shuffle=True,
                      num_workers=config.workers, persistent_workers=config.workers > 0, drop_last=True)


def _weight_average(network: torch.nn.Module, decay: float | None) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of the weights (and the norms' running statistics) over the batches: the
    averaged model's held-out Dice swings less from epoch to epoch than the raw one's, so the epoch kept is less a
    matter of luck."""
    if decay is None:
        return None
    from torch.optim import swa_utils

    return swa_utils.AveragedModel(network, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True)


def _contrast_enhancement(card: ModelCard):
    ranges = enhancement_ranges(card.labels, card.normalization)
    if not ranges:
        raise MedSegError("--contrast-enhancement needs a CT model with an enhancing structure among its labels "
                          f"({', '.join(ENHANCEMENT_HU)})")
    return RandContrastEnhancementd(ranges, prob=0.5, ceiling=normalised_ceiling(card.normalization))


def _supervised_loss(loss_function, logits, target: torch.Tensor, soft: bool = False) -> torch.Tensor:
    """One output, or deep supervision (full resolution first): scales weighted 1, 1/2, 1/4, ... as nnU-Net does.
    Labels shrink to a coarser scale by nearest neighbour, soft targets by averaging."""
    if isinstance(logits, torch.Tensor):
        return loss_function(logits.float(), target)
    weights = [0.5 ** index for index in range(len(logits))]
    total = 0.0
    for weight, scale in zip(weights, logits):
        scaled = target
        if scale.shape[2:] != target.shape[2:]:
            scaled = torch.nn.functional.interpolate(target.float(), size=scale.shape[2:], mode="area") if soft \
                else torch.nn.functional.interpolate(target.float(), size=scale.shape[2:], mode="nearest").long()
        total = total + weight * loss_function(scale.float(), scaled)
    return total / sum(weights)


def _extra_loss(network: torch.nn.Module, labels: torch.Tensor) -> torch.Tensor | float:
    """Networks with auxiliary objectives (vector quantisation, boundary scores) expose ``extra_loss(labels)``."""
    extra = getattr(network, "extra_loss", None)
    return extra(labels) if callable(extra) else 0.0


def _network_report(network: torch.nn.Module) -> str:
    """A network's own figures for the epoch line (TokenSeg: codebook usage), if it has any."""
    report = getattr(network, "training_report", None)
    return f" [{report()}]" if callable(report) else ""


def _initialise_from(network: torch.nn.Module, path: str) -> tuple[int, int]:
    """Copy the weights whose names and shapes match (a new label set keeps its fresh head); say how many, since a
    partial start is easy to miss."""
    source = load_model(path).network.state_dict()
    own = network.state_dict()
    matched = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise MedSegError(f"{path}: no weights match this network")
    network.load_state_dict(matched, strict=False)
    return len(matched), len(own)


def _record_results(card: ModelCard, record: EpochRecord, validation_cases: list[TrainingCase],
                    config: TrainConfig, device: torch.device, seconds: float,
                    provenance: dict[str, Any] | None = None) -> None:
    card.training = {
        "command": config.command or "medseg train (from Python)",
        "config": {k: v for k, v in config.__dict__.items() if k != "command"},
        "machine": f"{platform.machine()} {platform.system()}, {describe_device(device)}",
        "torch": torch.__version__,
        "best_epoch": record.epoch,
        "train_loss": round(record.train_loss, 5),
        "seconds": round(seconds, 1),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        **(provenance or {}),
    }
    if record.dice:
        card.metrics = validation_metrics(record.dice, validation_cases)


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="it", dynamic_ncols=True)


__all__ = ["TrainConfig", "fit", "labelled_item", "seconds_per_step", "train", "validate"]
