"""The models a user has: the shipped ones and those imported into the user model folder, found by name,
listed with what their cards say, and imported safely (validated completely, never overwriting a model)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from MedSegEfficientLib.errors import MedSegError, ModelFileError
from MedSegEfficientLib.model.model_file import MODEL_SUFFIX, existing_model_file, read_card

SHIPPED_MODELS_DIR = Path(__file__).resolve().parent / "shipped"
DEFAULT_MODEL = "abdomen_ct_tokenseg"  # the best on the held-out scan (README), and the fastest on a CPU


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """A path as is, or the name of a shipped or user-imported model."""
    candidate = Path(name_or_path)
    if candidate.suffix == MODEL_SUFFIX or candidate.exists():
        return existing_model_file(candidate)
    for folder in model_search_folders():
        match = folder / f"{name_or_path}{MODEL_SUFFIX}"
        if match.is_file():
            return match
    names = ", ".join(sorted(p.stem for f in model_search_folders() for p in f.glob(f"*{MODEL_SUFFIX}")))
    raise ModelFileError(f"no model file or known model named '{name_or_path}' (known: {names or 'none'})")


def model_search_folders() -> list[Path]:
    folders = [SHIPPED_MODELS_DIR, user_models_folder()]
    return [folder for folder in folders if folder.is_dir()]


def user_models_folder() -> Path:
    root = os.environ.get("MEDSEG_MODELS_DIR")
    return Path(root) if root else Path.home() / ".medsegefficient" / "models"


def default_model_path() -> Path:
    return SHIPPED_MODELS_DIR / f"{DEFAULT_MODEL}{MODEL_SUFFIX}"




def list_model_files() -> list[dict[str, Any]]:
    entries = []
    for folder in model_search_folders():
        for path in sorted(folder.glob(f"*{MODEL_SUFFIX}")):
            entries.append(describe_model_file(path))
    return entries


def describe_model_file(path: Path) -> dict[str, Any]:
    try:
        card = read_card(path)
    except MedSegError as error:
        return {"path": str(path), "error": str(error)}
    return {
        "path": str(path), "name": path.stem, "title": card.name, "description": card.description,
        "network": card.network.name + (f":{card.network.preset}" if card.network.preset else ""),
        "spatial_dims": card.spatial_dims, "in_channels": card.in_channels, "modality": card.modality,
        "labels": [label.name for label in card.labels], "size_bytes": path.stat().st_size,
        "validation_dice": card.metrics.get("validation_dice"),
        "validation_mean_dice": card.metrics.get("validation_mean_dice"),
        "validation_cases": card.metrics.get("validation_cases", []),
        "training_cases": card.training.get("training_items", []),
        "training_command": card.training.get("command", ""),
    }


__all__ = ["DEFAULT_MODEL", "SHIPPED_MODELS_DIR", "default_model_path", "describe_model_file", "list_model_files",
           "model_search_folders", "resolve_model_path", "user_models_folder"]
