"""The HTTP side of ``medseg serve``: MONAI Label's endpoints on the standard library's threading HTTP server.

Endpoints (as MONAI Label's server answers them): ``GET /auth/``, ``POST /auth/token``, ``GET /auth/token/valid``,
``GET /info/``, ``GET|PUT /datastore/``, ``PUT /session/``, ``GET|DELETE /session/{id}``, ``POST /infer/{model}``.
Every body is bounded by ``max_upload_bytes`` and read only after an inference has a place in the queue; with a
token, every endpoint but the auth ones needs ``Authorization: Bearer TOKEN``.
"""

from __future__ import annotations

import hmac
import json
import sys
import threading
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.io.outputs import SEGMENTATION_SUFFIX, VOLUME_SUFFIXES
from MedSegEfficientLib.model.card import ModelCard
from MedSegEfficientLib.server.datastore import Datastore, upload_suffix
from MedSegEfficientLib.server.inference_queue import InferenceQueue, QueueFull
from MedSegEfficientLib.server.protocol import info_document, multipart_result, parse_form

_DRAIN_CHUNK = 2**20
RESULT_SUFFIXES = (*VOLUME_SUFFIXES, SEGMENTATION_SUFFIX)


class HttpError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class MedSegServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], inference: InferenceQueue, cards: dict[str, ModelCard],
                 token: str | None = None, max_upload_bytes: int = 2**30, quiet: bool = False) -> None:
        super().__init__(address, _Handler)
        self.inference = inference
        self.cards = cards
        self.datastore = Datastore()
        self.token = token
        self.max_upload_bytes = max_upload_bytes
        self.quiet = quiet
        self.served = 0
        self._count_lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def count(self) -> None:
        with self._count_lock:
            self.served += 1

    def close(self) -> None:
        self.server_close()
        self.inference.close()
        self.datastore.close()


class _Handler(BaseHTTPRequestHandler):
    server: MedSegServer
    server_version = "medseg-serve"

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"medseg serve: {self.address_string()} {format % args}\n")

    # --- routing ---------------------------------------------------------------------------------------------

    def _route(self, method: str) -> None:
        url = urlparse(self.path)
        path = "/" + url.path.strip("/")
        query = {key: values[-1] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
        self._body_read = False
        try:
            if path == "/auth" and method == "GET":
                return self._json({"enabled": self.server.token is not None, "client_id": "medseg"})
            if path == "/auth/token" and method == "POST":
                return self._token()
            self._check_token()
            if path == "/auth/token/valid" and method == "GET":
                return self._json({})
            if path == "/info" and method == "GET":
                return self._json(info_document(self.server.cards, len(self.server.datastore.keys())))
            if path.startswith("/infer/") and method == "POST":
                return self._infer(unquote(path[len("/infer/"):]), query)
            if path == "/datastore" and method == "PUT":
                return self._upload(query.get("image") or uuid.uuid4().hex)
            if path == "/datastore" and method == "GET":
                keys = [key for key in self.server.datastore.keys() if not key.startswith("session-")]
                return self._json({"name": "medseg-serve", "total": len(keys),
                                   "objects": {key: {"image": {"ext": ""}, "labels": {}} for key in keys}})
            if path == "/session" and method == "PUT":
                return self._new_session()
            if path.startswith("/session/"):
                return self._session(method, unquote(path[len("/session/"):]))
            raise HttpError(404, "Not Found")
        except HttpError as error:
            self._refuse(error.status, str(error))
        except QueueFull as error:
            self._refuse(503, str(error), {"Retry-After": "5"})
        except MedSegError as error:
            self._refuse(400, str(error))
        except Exception as error:  # noqa: BLE001 - one request's bug: a 500 with one line, the trace in the log
            traceback.print_exc()
            self._refuse(500, f"internal error: {type(error).__name__}: {error}")

    def _refuse(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        self._drain()  # read an unread upload so that the client sees the answer, not a reset connection
        self._json({"detail": detail}, status, headers)

    # --- endpoints ---------------------------------------------------------------------------------------------

    def _token(self) -> None:
        if self.server.token is None:
            raise HttpError(400, "this server runs without a token")
        form = parse_form(self.headers.get("Content-Type", ""), self._body())
        if not hmac.compare_digest(form.fields.get("password", ""), self.server.token):
            raise HttpError(401, "wrong token")
        self._json({"access_token": self.server.token, "token_type": "bearer"})

    def _check_token(self) -> None:
        if self.server.token is None:
            return
        scheme, _, given = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), self.server.token):
            raise HttpError(401, "this server needs Authorization: Bearer TOKEN")

    def _infer(self, model: str, query: dict[str, str]) -> None:
        if model not in self.server.cards:
            raise HttpError(404, f"unknown model '{model}' (served: {', '.join(self.server.cards)})")
        slot = self.server.inference.admit()  # before the upload is read: a full queue costs no memory
        uploaded: Path | None = None
        output: Path | None = None
        try:
            form = parse_form(self.headers.get("Content-Type", ""), self._body())
            params = form.params()
            suffix = str(params.get("result_extension") or ".nii.gz").lower()
            if suffix not in RESULT_SUFFIXES:
                raise MedSegError(f"result_extension {suffix}: use one of {', '.join(RESULT_SUFFIXES)}")
            if "file" in form.files:
                filename, content = form.files["file"]
                uploaded = self.server.datastore.folder / f"request-{uuid.uuid4().hex}{upload_suffix(filename)}"
                uploaded.write_bytes(content)
                source = uploaded
            else:
                key = query.get("session_id") or query.get("image") or ""
                source = self.server.datastore.path(key)
                if source is None:
                    raise HttpError(404, f"no uploaded image or session '{key}': upload it first "
                                         "(PUT /datastore/?image=ID or PUT /session/) or send it as 'file'")
            output = self.server.datastore.folder / f"{uuid.uuid4().hex}{suffix}"
            future = self.server.inference.submit(slot, model, source, output)
            slot = None  # the worker releases it
            result = future.result()
            card = self.server.cards[model]
            answer = {"label_names": {label.name: label.value for label in card.labels},
                      "segments": result.labels_found, "latencies": result.report.seconds,
                      "device": result.report.device, "notices": result.report.notices}
            self.server.count()
            mode = query.get("output", "all")
            if mode == "json":
                return self._json(answer)
            content = output.read_bytes()
            if mode == "image":
                return self._send(200, "application/octet-stream", content,
                                  {"Content-Disposition": f'attachment; filename="{output.name}"'})
            self._send(200, *multipart_result(answer, output.name, content))
        finally:
            if slot is not None:
                slot.release()
            for path in (uploaded, output):
                if path is not None:
                    path.unlink(missing_ok=True)

    def _upload(self, image_id: str) -> None:
        form = parse_form(self.headers.get("Content-Type", ""), self._body())
        filename, content = self._only_file(form)
        self._json({"image": self.server.datastore.put(image_id, filename, content)})

    def _new_session(self) -> None:
        form = parse_form(self.headers.get("Content-Type", ""), self._body())
        filename, content = self._only_file(form)
        key = self.server.datastore.new_session(filename, content)
        self._json({"session_id": key, "session_info": self.server.datastore.describe(key)})

    def _session(self, method: str, key: str) -> None:
        if method == "GET":
            described = self.server.datastore.describe(key)
            if described is None:
                raise HttpError(404, f"no session '{key}'")
            return self._json(described)
        if method == "DELETE":
            if not self.server.datastore.remove(key):
                raise HttpError(404, f"no session '{key}'")
            return self._json({})
        raise HttpError(404, "Not Found")

    # --- bodies and answers ------------------------------------------------------------------------------------

    @staticmethod
    def _only_file(form) -> tuple[str, bytes]:
        if len(form.files) != 1:
            raise MedSegError(f"send one image file, not {len(form.files)}")
        return next(iter(form.files.values()))

    def _length(self) -> int:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise HttpError(400, "Content-Length is not a number") from None
        if length < 0:
            raise HttpError(400, "Content-Length is negative")
        return length

    def _body(self) -> bytes:
        length = self._length()
        if length > self.server.max_upload_bytes:
            self.close_connection = True
            raise HttpError(413, f"the upload is {length / 2**20:.0f} MiB; this server takes at most "
                                 f"{self.server.max_upload_bytes / 2**20:.0f} MiB (--max-upload-mb)")
        body = self.rfile.read(length)
        self._body_read = True
        if len(body) != length:
            raise HttpError(400, "the upload ended early")
        return body

    def _drain(self) -> None:
        try:
            left = self._length()
        except HttpError:
            left = 0
        if self._body_read or left > self.server.max_upload_bytes:
            self.close_connection = True
            return
        while left > 0:
            chunk = self.rfile.read(min(left, _DRAIN_CHUNK))
            if not chunk:
                break
            left -= len(chunk)
        self._body_read = True

    def _json(self, value: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, "application/json", json.dumps(value).encode(), headers)

    def _send(self, status: int, content_type: str, content: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(content)


__all__ = ["MedSegServer", "RESULT_SUFFIXES"]
