"""The panel's model picker: what each model file is, whether it fits the input (and why not), importing a
user's model file into the user model folder, and the speed each model last ran at on this machine."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .catalog import list_model_files
from .checkpoint import MODEL_SUFFIX, load_model, user_models_folder
from .errors import ModelFileError
from .volume import Volume

HISTORY_FILE = "run_history.json"


@dataclass(frozen=True)
class InputShape:
    """What decides whether a model can take an input: its channels and whether it is a single slice."""

    channels: int
    single_slice: bool

    @classmethod
    def of(cls, volume: Volume) -> "InputShape":
        return cls(volume.channels, min(volume.grid_shape) == 1)


def why_not_fit(entry: dict, shape: InputShape) -> str | None:
    """None when the model can segment this input, else the reason in words."""
    if entry["in_channels"] != shape.channels:
        kind = "an RGB image" if entry["in_channels"] == 3 else f"{entry['in_channels']} channel(s)"
        return f"needs {kind}; the input has {shape.channels} channel(s)"
    if entry["spatial_dims"] == 3 and shape.single_slice:
        return "a 3D model; the input is a single slice"
    return None


def model_choices(shape: InputShape | None = None) -> tuple[list[dict], list[tuple[dict, str]]]:
    """(models that fit, [(model, why hidden)]): unreadable files are listed as hidden with their error."""
    fitting, hidden = [], []
    for entry in list_model_files():
        if "error" in entry:
            hidden.append((entry, entry["error"]))
            continue
        reason = why_not_fit(entry, shape) if shape is not None else None
        if reason:
            hidden.append((entry, reason))
        else:
            fitting.append(entry)
    return fitting, hidden


def describe_choice(entry: dict, history: dict | None = None) -> str:
    """The tooltip: description, modality, labels, size, validation Dice and the last measured run."""
    lines = [entry["title"], entry["description"] or "(no description)",
             f"network {entry['network']}, {entry['spatial_dims']}D, modality {entry['modality']}, "
             f"{entry['size_bytes'] / 1e6:.1f} MB",
             "labels: " + ", ".join(entry["labels"])]
    if entry.get("validation_mean_dice") is not None:
        lines.append(f"validation mean Dice {entry['validation_mean_dice']:.2f}")
    last = (history or {}).get(entry["path"])
    lines.append(f"last run here: {last['seconds']:.1f} s on {last['device']}" if last else "not run here yet")
    return "\n".join(lines)


def import_model_file(source: str | os.PathLike, folder: Path | None = None) -> Path:
    """Validate a model file completely (card and every weight), then copy it into the user model folder.

    A file with the same name and content is not copied twice; a different file with the same name gets a
    numbered name, so no model is ever overwritten.
    """
    source = Path(source)
    if source.suffix != MODEL_SUFFIX:
        raise ModelFileError(f"{source.name}: only {MODEL_SUFFIX} model files can be imported here; convert a "
                             f"PyTorch checkpoint first with `medseg import` (it never unpickles objects)")
    load_model(source, "cpu")  # raises ModelFileError naming what is wrong
    folder = folder or user_models_folder()
    folder.mkdir(parents=True, exist_ok=True)
    target, number = folder / source.name, 2
    while target.exists():
        if _digest(target) == _digest(source):
            return target
        target, number = folder / f"{source.stem}_{number}{MODEL_SUFFIX}", number + 1
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".part")
    os.close(handle)
    try:
        shutil.copyfile(source, temporary)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return target


def load_history(folder: Path | None = None) -> dict:
    path = (folder or user_models_folder()) / HISTORY_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: the history is a convenience, never an error


def record_run(model_path: str, seconds: float, device: str, folder: Path | None = None) -> None:
    folder = folder or user_models_folder()
    history = load_history(folder)
    history[str(model_path)] = {"seconds": round(seconds, 2), "device": device}
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".part")
    with os.fdopen(handle, "w") as stream:
        json.dump(history, stream, indent=1)
    os.replace(temporary, folder / HISTORY_FILE)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = ["InputShape", "describe_choice", "import_model_file", "load_history", "model_choices", "record_run",
           "why_not_fit"]
