"""Improve a model on the user's corrected cases (training/user_cases.py): fine-tune a copy, keep it only if it is
not worse on cases it did not train on.

One case in five (at least one) is held out. The old model's Dice on them is measured first (which also times
an engine run), then a few real training steps are timed, so that the run's length is known before it starts: the
epochs (at most ``MAX_EPOCHS``) are chosen to fit the time budget (``minutes``). The copy trains with the old model's grid, tile and
normalisation, starting from its weights; the epoch of lowest training loss is kept. The held-out cases decide
once, at the end, and never pick the epoch (that would flatter the new model): it is written only if its held-out
mean Dice is not lower than the old model's, and its card records the cases (names and SHA-256 sums, not the
images), both Dice figures and the command. Nothing overwrites the old model; Cancel ends the run with nothing
written.
"""

from __future__ import annotations

import shlex
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


from MedSegEfficientLib.errors import Cancelled, MedSegError
from MedSegEfficientLib.files import sha256_of
from MedSegEfficientLib.inference.gpu.devices import select_device
from MedSegEfficientLib.model.card import ModelCard
from MedSegEfficientLib.model.library import SHIPPED_MODELS_DIR, resolve_model_path, user_models_folder
from MedSegEfficientLib.model.weights import LoadedModel, load_model, save_model
from MedSegEfficientLib.training.config import TrainConfig
from MedSegEfficientLib.training.datasets import CasePaths, check_label_values, describe_folder, load_cases
from MedSegEfficientLib.training.user_cases import StoredCase, cases_folder, stored_cases
from MedSegEfficientLib.training.validation import dice_for_card, present_mean, validate, validation_metrics

Progress = Callable[[float, str], None]
HELD_OUT_SHARE = 5  # one case in five
# A short fine-tune: on the sample scans 1 epoch raised the held-out Dice and 15 or 21 lowered it (five cases are
# soon overfitted; experiments/benchmarks-log.md). The time budget may cut it shorter still.
MAX_EPOCHS = 5


@dataclass
class FinetuneSettings:
    minutes: float | None = None  # time budget; None: 4 on a GPU, 25 on a CPU
    epochs: int | None = None  # None: as many as fit the budget (at most MAX_EPOCHS)
    iterations_per_epoch: int = 20
    batch_size: int = 2
    learning_rate: float = 5e-4  # a quarter of training's: the start is already a model
    device: str = "auto"
    seed: int = 0
    base_data: Path | None = None  # the model's own training data, trained on beside the user's cases
    command: str = ""


@dataclass
class FinetuneOutcome:
    kept: bool
    output: Path | None
    dice_before: dict[str, float | None]
    dice_after: dict[str, float | None]
    mean_before: float | None
    mean_after: float | None
    training_cases: list[str]
    held_out: list[str]
    estimate_seconds: float
    seconds: float
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        change = f"held-out mean Dice {_figure(self.mean_before)} -> {_figure(self.mean_after)}"
        if self.kept:
            return f"kept the fine-tuned model {self.output} ({change})"
        return f"discarded the fine-tuned model: {change} is lower; the old model stays as it was"


def split_cases(cases: list[StoredCase]) -> tuple[list[StoredCase], list[StoredCase]]:
    """Training and held-out cases: every fifth case by name (at least one) is held out."""
    if len(cases) < 2:
        raise MedSegError(f"{len(cases)} case(s): fine-tuning needs at least 2 (one is held out to check the result)")
    ordered = sorted(cases, key=lambda case: case.name)
    count = max(1, len(ordered) // HELD_OUT_SHARE)
    held = set(range(len(ordered) - 1, -1, -HELD_OUT_SHARE)[:count])  # the last, then every fifth before it
    return [c for i, c in enumerate(ordered) if i not in held], [c for i, c in enumerate(ordered) if i in held]


def default_output(model_path: Path) -> Path:
    """``<model>_finetuned.safetensors`` in the user model folder, numbered if taken: old and new both stay."""
    folder = user_models_folder()
    stem = model_path.stem.removesuffix("_finetuned")
    for index in range(1, 1000):
        candidate = folder / f"{stem}_finetuned{'' if index == 1 else f'_{index}'}.safetensors"
        if not candidate.exists():
            return candidate
    raise MedSegError(f"no free name for a fine-tuned copy of {stem} in {folder}")


def finetune(model: str | Path, output: Path | None = None, cases: Path | None = None,
             settings: FinetuneSettings | None = None, progress: Progress | None = None,
             cancel: Callable[[], bool] | None = None, log: Callable[[str], None] = print) -> FinetuneOutcome:
    settings = settings or FinetuneSettings()
    model_path = resolve_model_path(model)
    old = load_model(model_path)
    _check_can_finetune(old.card)
    folder = Path(cases) if cases is not None else cases_folder(model_path, old.card)
    output = Path(output) if output is not None else default_output(model_path)
    _check_output(output, model_path)
    report = progress or (lambda fraction, stage: None)
    started = time.time()
    stored = stored_cases(folder, old.card)
    train_cases, held = split_cases(stored)
    hashes = {case.name: (sha256_of(case.image), sha256_of(case.labels)) for case in stored}  # once: as trained on
    notes = _changed_since_added(stored, hashes)
    report(0.0, f"reading {len(stored)} case(s)")
    training, held_out = _loaded(train_cases), _loaded(held)
    base = _base_data(old.card, settings.base_data, notes)
    check_label_values(training + held_out + base, old.card.labels)
    device = select_device(settings.device)
    report(0.02, f"measuring the current model on {len(held)} held-out case(s)")
    check_started = time.time()
    before = validate(old, held_out, device, check_memory=False)
    check_seconds = time.time() - check_started
    card = ModelCard.from_dict(old.card.to_dict())
    from MedSegEfficientLib.training.trainer import fit, labelled_item, seconds_per_step

    items = [labelled_item(case, card) for case in training + base]
    config = TrainConfig(network=card.network.name, preset=card.network.preset, spatial_dims=card.spatial_dims,
                         patch_size=card.patch_size, iterations_per_epoch=settings.iterations_per_epoch,
                         batch_size=settings.batch_size, learning_rate=settings.learning_rate, device=settings.device,
                         seed=settings.seed, init=str(model_path), command=settings.command)
    report(0.04, "timing a few training steps")
    step_seconds = seconds_per_step(card, items, config)
    budget = 60 * (settings.minutes if settings.minutes is not None else (4 if device.type == "cuda" else 25))
    left = budget - (time.time() - started) - check_seconds  # the held-out cases are scored once more at the end
    config.epochs = settings.epochs or max(1, min(MAX_EPOCHS, int(left // (config.iterations_per_epoch * step_seconds))))
    config.max_minutes = 1.5 * budget / 60  # a guard: the estimate holds unless the machine gets busy
    estimate = time.time() - started + config.epochs * config.iterations_per_epoch * step_seconds + check_seconds
    log(f"fine-tuning {old.card.name} on {len(training)} case(s)" + (f" + {len(base)} of its own" if base else "")
        + f", {len(held_out)} held out: {config.epochs} epoch(s) of {config.iterations_per_epoch} steps, about "
        f"{_minutes(estimate)} in all")
    if cancel is not None and cancel():
        raise Cancelled("fine-tuning was cancelled; the old model stays as it was and nothing was written")
    first = time.time()

    def step(done: int, total: int) -> None:
        if cancel is not None and cancel():
            raise Cancelled("fine-tuning was cancelled; the old model stays as it was and nothing was written")
        remaining = (time.time() - first) / done * (total - done) + check_seconds
        report(0.05 + 0.9 * done / total, f"fine-tuning: step {done}/{total}, about {_minutes(remaining)} left")

    with tempfile.TemporaryDirectory(prefix="medseg-finetune-") as scratch:
        candidate = Path(scratch) / "candidate.safetensors"
        # No validation cases: the held-out ones decide once, at the end, and never pick the epoch (picking on
        # them would make the comparison with the old model optimistic). The lowest training loss is kept.
        fit(card, items, [], candidate, config, log=lambda line: None, show_progress=False, step_hook=step)
        report(0.96, f"measuring the fine-tuned model on {len(held)} held-out case(s)")
        new = load_model(candidate)
        after = validate(new, held_out, device, check_memory=False)
        mean_before, mean_after = present_mean(before), present_mean(after)
        outcome = FinetuneOutcome(
            kept=mean_after is not None and mean_before is not None and round(mean_after, 4) >= round(mean_before, 4),
            output=None, dice_before=dice_for_card(before), dice_after=dice_for_card(after),
            mean_before=None if mean_before is None else round(mean_before, 4),
            mean_after=None if mean_after is None else round(mean_after, 4),
            training_cases=[c.name for c in train_cases], held_out=[c.name for c in held],
            estimate_seconds=round(estimate, 1), seconds=0.0, notes=notes)
        outcome.seconds = round(time.time() - started, 1)
        if outcome.kept:
            report(0.98, "writing the fine-tuned model")
            new.card.metrics = validation_metrics(after, held_out)
            save_model(output, _recorded_card(new, old, model_path, hashes, train_cases, outcome, settings),
                       new.network)
            outcome.output = output
    report(1.0, outcome.summary())
    return outcome


def _check_can_finetune(card: ModelCard) -> None:
    if card.parts:
        raise MedSegError(f"model '{card.name}' has {len(card.parts)} parts: fine-tune each part's model instead")
    if card.nnunet is not None:
        raise MedSegError(f"model '{card.name}' runs in nnU-Net's pipeline, which training here does not "
                          "reproduce: fine-tune it with nnU-Net and import it again")


def _check_output(output: Path, model_path: Path) -> None:
    target = output.resolve()
    if target == model_path.resolve():
        raise MedSegError(f"the output {output} is the model being fine-tuned: give another file")
    if target.parent == SHIPPED_MODELS_DIR.resolve():
        raise MedSegError(f"{output} is in the shipped models' folder: write fine-tuned models elsewhere")
    if output.suffix != ".safetensors":
        raise MedSegError(f"the output {output.name} must end in .safetensors")


def _loaded(cases: list[StoredCase]) -> list:
    loaded = load_cases([CasePaths(case.image, case.labels) for case in cases])
    for case, stored in zip(loaded, cases):
        case.name = stored.name  # the case's name, not its image file's
    return loaded


def _changed_since_added(stored: list[StoredCase], hashes: dict[str, tuple[str, str]]) -> list[str]:
    """Cases whose files changed after they were added (edited by hand): trained on as they are now, and said."""
    changed = [case.name for case in stored
               if (case.image_sha256 and hashes[case.name][0] != case.image_sha256)
               or (case.labels_sha256 and hashes[case.name][1] != case.labels_sha256)]
    return [f"case(s) {', '.join(changed)} changed since they were added"] if changed else []


def _base_data(card: ModelCard, folder: Path | None, notes: list[str]) -> list:
    """The model's own training cases, where they are at hand: ``folder``, or the dataset folder its training
    command names if it exists here."""
    if folder is None:
        words = shlex.split(str(card.training.get("command", ""))) if card.training.get("command") else []
        named = next((Path(w) for w in words[2:3] if words[:2] == ["medseg", "train"]), None)
        folder = named if named is not None and (named / "dataset.json").is_file() else None
        if folder is None:
            return []
    description = describe_folder(Path(folder))
    if {(l.value, l.name) for l in description.labels} != {(l.value, l.name) for l in card.labels}:
        raise MedSegError(f"{folder}'s labels are not model '{card.name}''s: it is not the data it was trained on")
    notes.append(f"trained also on {len(description.training)} case(s) of {folder}")
    return load_cases(description.training)


def _recorded_card(new: LoadedModel, old: LoadedModel, model_path: Path, hashes: dict[str, tuple[str, str]],
                   train_cases: list[StoredCase], outcome: FinetuneOutcome, settings: FinetuneSettings) -> ModelCard:
    card = new.card
    card.name = f"{old.card.name} (fine-tuned)" if not old.card.name.endswith("(fine-tuned)") else old.card.name
    roles = {case.name: "training" for case in train_cases}
    card.training = {
        **card.training,
        "command": settings.command or "medseg finetune (from Python)",
        "finetuned_from": {"name": old.card.name, "file": model_path.name, "sha256": sha256_of(model_path),
                           "training_command": old.card.training.get("command", "")},
        "user_cases": str(old.card.training.get("user_cases") or model_path.stem),
        "cases": [{"name": name, "role": roles.get(name, "held out"), "image_sha256": image, "labels_sha256": labels}
                  for name, (image, labels) in hashes.items()],
        "dice_before": outcome.dice_before, "dice_after": outcome.dice_after,
        "mean_dice_before": outcome.mean_before, "mean_dice_after": outcome.mean_after,
        "seconds": outcome.seconds, "notes": outcome.notes,
    }
    return card


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


__all__ = ["FinetuneOutcome", "FinetuneSettings", "default_output", "finetune", "split_cases"]
