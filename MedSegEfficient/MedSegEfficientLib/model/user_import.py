"""Importing a user's model file into the user model folder: validated completely first, never overwriting."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from MedSegEfficientLib.errors import ModelFileError
from MedSegEfficientLib.files import sha256_of, write_atomically
from MedSegEfficientLib.model.library import user_models_folder
from MedSegEfficientLib.model.model_file import MODEL_SUFFIX
from MedSegEfficientLib.model.weights import load_model


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
        if sha256_of(target) == sha256_of(source):
            return target
        target, number = folder / f"{source.stem}_{number}{MODEL_SUFFIX}", number + 1
    return write_atomically(target, lambda temporary: shutil.copyfile(source, temporary))


__all__ = ["import_model_file"]
