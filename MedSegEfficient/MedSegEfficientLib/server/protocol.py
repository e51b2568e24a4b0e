"""MONAI Label's wire format, the part its Slicer module and Python client use: the ``/info/`` document and the
multipart result out (``params`` JSON plus the label image). Bodies in are read by ``form_stream``."""

from __future__ import annotations

import json
import uuid
from typing import Any

from MedSegEfficientLib import __version__
from MedSegEfficientLib.model.card import ModelCard


def model_info(card: ModelCard) -> dict[str, Any]:
    """One entry of ``/info/``'s models, as MONAI Label's InferTask.info() writes it."""
    return {"type": "segmentation", "dimension": card.spatial_dims, "description": card.description or card.name,
            "labels": {label.name: label.value for label in card.labels}, "config": {}}


def info_document(cards: dict[str, ModelCard], images: int) -> dict[str, Any]:
    labels: list[str] = []
    for card in cards.values():
        labels += [label.name for label in card.labels if label.name not in labels]
    return {"name": "MedSegEfficient", "version": __version__,
            "description": "Efficient deep-network segmentation (medseg serve, MONAI Label protocol)",
            "labels": labels, "models": {name: model_info(card) for name, card in cards.items()},
            "trainers": {}, "strategies": {}, "scoring": {}, "train_stats": {},
            "datastore": {"total": images, "completed": 0}}


def multipart_result(params: dict[str, Any], filename: str, content: bytes) -> tuple[str, bytes]:
    """The response MONAI Label's client parses: a ``params`` JSON field and the result file."""
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"params\"\r\n"
            f"Content-Type: application/json\r\n\r\n{json.dumps(params)}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    return f"multipart/form-data; boundary={boundary}", head + content + f"\r\n--{boundary}--\r\n".encode()


__all__ = ["info_document", "model_info", "multipart_result"]
