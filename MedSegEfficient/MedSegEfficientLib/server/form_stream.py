"""Request bodies read as a stream: multipart files go straight to disk, small fields stay in memory, and every count
and size a client controls is bounded before it costs anything (issue: nothing leaked).

A body arrives as chunks (``request_body.BodyReader``); the parser keeps at most one chunk plus a boundary's length
in memory, whatever the upload's size. Limits: ``MAX_PARTS`` parts, ``MAX_PART_HEADER_BYTES`` of headers a part,
``MAX_FIELD_BYTES`` for a field (``params``), ``MAX_SMALL_BODY_BYTES`` for a JSON or url-encoded body, and
``MAX_JSON_DEPTH`` levels of nesting in ``params``.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qsl

from MedSegEfficientLib.errors import MedSegError

MAX_PARTS = 16
MAX_PART_HEADER_BYTES = 8 * 1024
MAX_FIELD_BYTES = 64 * 1024
MAX_SMALL_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32


class FormError(MedSegError):
    """A body that breaks the form rules or one of the bounds: the client's fault, answered 400."""


@dataclass
class FormBody:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, Path]] = field(default_factory=dict)  # form name -> (client's file name, on disk)

    def params(self) -> dict[str, Any]:
        """The request's ``params`` JSON object (MONAI Label sends it as a form field)."""
        text = self.fields.get("params") or "{}"
        try:
            value = json.loads(text)
        except RecursionError:
            raise FormError(f"params is nested deeper than {MAX_JSON_DEPTH} levels") from None
        except ValueError:
            raise FormError("params is not JSON") from None
        if not isinstance(value, dict):
            raise FormError("params must be a JSON object")
        if _depth(value) > MAX_JSON_DEPTH:
            raise FormError(f"params is nested deeper than {MAX_JSON_DEPTH} levels")
        return value

    def discard(self) -> None:
        for _, path in self.files.values():
            path.unlink(missing_ok=True)
        self.files.clear()


def read_form(content_type: str, chunks: Iterable[bytes], folder: Path) -> FormBody:
    """The body as a form; uploaded files are written under ``folder`` with names this server makes. On any error
    the files written so far are removed."""
    kind, _, parameters = content_type.partition(";")
    kind = kind.strip().lower()
    if kind == "multipart/form-data":
        boundary = _boundary(parameters)
        parser = _MultipartParser(boundary, folder)
        try:
            for chunk in chunks:
                parser.feed(chunk)
            return parser.finish()
        except BaseException:
            parser.form.discard()
            parser.close_open_file()
            raise
    body = _small_body(chunks)
    form = FormBody()
    if kind == "application/json":
        form.fields["params"] = body.decode("utf-8", "replace") or "{}"
    elif kind == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_PARTS)
        except ValueError:
            raise FormError(f"a form of more than {MAX_PARTS} fields") from None
        form.fields.update(pairs)
    elif body:
        raise FormError(f"unsupported body type '{kind[:60]}'")
    return form


def _small_body(chunks: Iterable[bytes]) -> bytes:
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > MAX_SMALL_BODY_BYTES:
            raise FormError(f"a JSON or form body over {MAX_SMALL_BODY_BYTES // 1024} KiB: send files as multipart")
    return bytes(body)


def _boundary(parameters: str) -> bytes:
    header = email.parser.Parser(policy=email.policy.HTTP).parsestr(
        f"Content-Type: multipart/form-data;{parameters[:1000]}\r\n\r\n")
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not 1 <= len(boundary) <= 70:
        raise FormError("a multipart body needs a boundary of 1 to 70 characters in its Content-Type")
    return boundary.encode("latin-1", "replace")


class _MultipartParser:
    """RFC 7578 multipart/form-data, fed chunk by chunk."""

    def __init__(self, boundary: bytes, folder: Path) -> None:
        self.form = FormBody()
        self._delimiter = b"\r\n--" + boundary
        self._folder = folder
        self._buffer = bytearray(b"\r\n")  # so the first delimiter looks like every other one
        self._state = "preamble"
        self._parts = 0
        self._name = ""
        self._file: BinaryIO | None = None
        self._field = bytearray()

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        while self._step():
            pass

    def finish(self) -> FormBody:
        if self._state != "done":
            raise FormError("the multipart body ended before its closing boundary" if self._parts else
                            "a multipart body without parts")
        return self.form

    def close_open_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _step(self) -> bool:
        """Advance on what is buffered; False when more input is needed."""
        if self._state == "preamble":
            at = self._buffer.find(self._delimiter)
            if at < 0:
                if len(self._buffer) > MAX_PART_HEADER_BYTES:
                    raise FormError("no multipart boundary where the body starts")
                return False
            del self._buffer[:at + len(self._delimiter)]
            self._state = "after-delimiter"
            return True
        if self._state == "after-delimiter":
            if len(self._buffer) < 2:
                return False
            if self._buffer[:2] == b"--":
                self._state = "done"
                self._buffer.clear()  # the epilogue is ignored, as RFC 2046 says
                return False
            end = self._buffer.find(b"\r\n")  # transport padding (spaces, tabs) may precede the line break
            if end < 0:
                if len(self._buffer) > 256:
                    raise FormError("a malformed multipart boundary line")
                return False
            if self._buffer[:end].strip(b" \t"):
                raise FormError("a malformed multipart boundary line")
            del self._buffer[:end + 2]
            self._state = "headers"
            return True
        if self._state == "headers":
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0 and not self._buffer.startswith(b"\r\n"):
                if len(self._buffer) > MAX_PART_HEADER_BYTES:
                    raise FormError(f"a part's headers are over {MAX_PART_HEADER_BYTES // 1024} KiB")
                return False
            headers, skip = (b"", 2) if self._buffer.startswith(b"\r\n") else (self._buffer[:end], end + 4)
            if len(headers) > MAX_PART_HEADER_BYTES:
                raise FormError(f"a part's headers are over {MAX_PART_HEADER_BYTES // 1024} KiB")
            del self._buffer[:skip]
            self._open_part(bytes(headers))
            self._state = "content"
            return True
        if self._state == "content":
            at = self._buffer.find(self._delimiter)
            if at < 0:
                keep = len(self._delimiter) - 1  # a delimiter may straddle two chunks
                if len(self._buffer) > keep:
                    self._write(self._buffer[:-keep])
                    del self._buffer[:-keep]
                return False
            self._write(self._buffer[:at])
            del self._buffer[:at + len(self._delimiter)]
            self._close_part()
            self._state = "after-delimiter"
            return True
        if self._state == "done":
            self._buffer.clear()
        return False

    def _open_part(self, headers: bytes) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise FormError(f"a multipart body of more than {MAX_PARTS} parts")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(headers + b"\r\n\r\n")
        name = message.get_param("name", header="content-disposition")
        filename = message.get_filename()
        self._name = name if isinstance(name, str) else ""
        self._field.clear()
        if self._name and filename:
            if self._name in self.form.files:
                raise FormError(f"the file field '{self._name[:60]}' is sent twice")
            path = self._folder / f"part-{uuid.uuid4().hex}"
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            self._file = os.fdopen(descriptor, "wb")
            self.form.files[self._name] = (filename, path)

    def _write(self, data: bytearray) -> None:
        if not data:
            return
        if self._file is not None:
            self._file.write(data)
        elif self._name:
            self._field += data
            if len(self._field) > MAX_FIELD_BYTES:
                raise FormError(f"the field '{self._name[:60]}' is over {MAX_FIELD_BYTES // 1024} KiB")

    def _close_part(self) -> None:
        if self._file is not None:
            self.close_open_file()
        elif self._name:
            self.form.fields[self._name] = self._field.decode("utf-8", "replace")
        self._name = ""


def _depth(value: Any) -> int:
    """How deeply lists and objects nest, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


__all__ = ["FormBody", "FormError", "MAX_PARTS", "read_form"]
