"""MONAI Label's wire format, the part its Slicer module and Python client use: the ``/info/`` document, multipart
form bodies in (``params`` plus files) and the multipart result out (``params`` JSON plus the label image)."""

from __future__ import annotations

import email.parser
import email.policy
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from MedSegEfficientLib import __version__
from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.model.card import ModelCard


@dataclass
class FormBody:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # form name -> (file name, content)

    def params(self) -> dict[str, Any]:
        """The request's ``params`` JSON object (MONAI Label sends it as a form field)."""
        text = self.fields.get("params") or "{}"
        try:
            value = json.loads(text)
        except ValueError:
            raise MedSegError("params is not JSON") from None
        if not isinstance(value, dict):
            raise MedSegError("params must be a JSON object")
        return value


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


def parse_form(content_type: str, body: bytes) -> FormBody:
    """A multipart/form-data or urlencoded body; a JSON body is taken as the params (OHIF sends one)."""
    form = FormBody()
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json":
        form.fields["params"] = body.decode("utf-8", "replace") or "{}"
        return form
    if kind == "application/x-www-form-urlencoded":
        from urllib.parse import parse_qsl

        form.fields.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        return form
    if kind != "multipart/form-data":
        if body:
            raise MedSegError(f"unsupported body type '{kind}'")
        return form
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise MedSegError("a multipart body without parts")
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        content = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename:
            form.files[name] = (filename, content)
        else:
            form.fields[name] = content.decode("utf-8", "replace")
    return form


def multipart_result(params: dict[str, Any], filename: str, content: bytes) -> tuple[str, bytes]:
    """The response MONAI Label's client parses: a ``params`` JSON field and the result file."""
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"params\"\r\n"
            f"Content-Type: application/json\r\n\r\n{json.dumps(params)}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    return f"multipart/form-data; boundary={boundary}", head + content + f"\r\n--{boundary}--\r\n".encode()


__all__ = ["FormBody", "info_document", "model_info", "multipart_result", "parse_form"]
