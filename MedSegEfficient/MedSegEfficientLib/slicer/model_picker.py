"""The panel's model picker: whether each model fits the input (and why not), its tooltip, and the speed each
model last ran at on this machine. Torch-free: the panel lists models before any dependency is installed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from MedSegEfficientLib.files import write_atomically
from MedSegEfficientLib.model.library import list_model_files, user_models_folder
from MedSegEfficientLib.volume import Volume

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
    write_atomically(folder / HISTORY_FILE, lambda temporary: temporary.write_text(json.dumps(history, indent=1)))


__all__ = ["InputShape", "describe_choice", "load_history", "model_choices", "record_run", "why_not_fit"]
