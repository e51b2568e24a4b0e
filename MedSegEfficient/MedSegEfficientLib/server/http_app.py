"""The HTTP side of ``medseg serve``: MONAI Label's endpoints on the standard library's threading HTTP server.

Endpoints (as MONAI Label's server answers them): ``GET /auth/``, ``POST /auth/token``, ``GET /auth/token/valid``,
``GET /info/``, ``GET|PUT /datastore/``, ``PUT /session/``, ``GET|DELETE /session/{id}``, ``POST /infer/{model}``.

Nothing a client sends is trusted before it is checked, and nothing is read before it has to be: the ``Host`` is
checked first, then the token (before any body is parsed; a login body is bounded to ``LOGIN_BODY_BYTES``), then an
upload takes a place in the queue and only then is streamed to disk (``form_stream``), never whole in memory.
Uploads that keep their voxels in another file are refused (``upload_check``); answers name no server path and no
server figure (``client_message``).
"""

from __future__ import annotations

import json
import re
import sys
import threading
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from MedSegEfficientLib.errors import MedSegError, NotEnoughMemoryError
from MedSegEfficientLib.io.outputs import SEGMENTATION_SUFFIX, VOLUME_SUFFIXES
from MedSegEfficientLib.model.card import ModelCard
from MedSegEfficientLib.server.connection_guard import (CLIENT_SECONDS, ConnectionDeadlines, TokenGuard,
                                                        allowed_hosts, host_of)
from MedSegEfficientLib.server.datastore import Datastore, printable_name
from MedSegEfficientLib.server.form_stream import FormBody, read_form
from MedSegEfficientLib.server.inference_queue import InferenceQueue, QueueFull
from MedSegEfficientLib.server.protocol import info_document, multipart_result
from MedSegEfficientLib.server.request_body import BodyError, BodyReader
from MedSegEfficientLib.server.upload_check import refuse_detached_data

RESULT_SUFFIXES = (*VOLUME_SUFFIXES, SEGMENTATION_SUFFIX)
LOGIN_BODY_BYTES = 4096
_SERVER_NAME = re.compile(r"\b(part-|request-)?[0-9a-f]{32}(\.[a-z.]+)?")


class HttpError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class MedSegServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the listen backlog: a burst of clients waits instead of being reset

    def __init__(self, address: tuple[str, int], inference: InferenceQueue, cards: dict[str, ModelCard],
                 token: str | None = None, max_upload_bytes: int = 2**30, quiet: bool = False,
                 client_seconds: float = CLIENT_SECONDS) -> None:
        super().__init__(address, _Handler)
        self.inference = inference
        self.cards = cards
        self.datastore = Datastore()
        self.tokens = TokenGuard(token)
        self.hosts = allowed_hosts(self.server_address[0])
        if self.hosts is not None:
            self.hosts.add(address[0].lower())  # the name it was started with (--host NAME)
        self.deadlines = ConnectionDeadlines(client_seconds)
        self.max_upload_bytes = max_upload_bytes
        self.quiet = quiet
        self.served = 0
        self._count_lock = threading.Lock()

    @property
    def token(self) -> str | None:
        return self.tokens.token

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def count(self) -> None:
        with self._count_lock:
            self.served += 1

    def handle_error(self, request, client_address) -> None:
        """A client that went away (reset, timed out, cut off by its deadline) is its own business, not a trace."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError, OSError)) and not isinstance(error, FileNotFoundError):
            return
        super().handle_error(request, client_address)

    def client_message(self, error: BaseException) -> str:
        """An error as a client may read it: no server path, no file name the server made, no memory figures."""
        if isinstance(error, NotEnoughMemoryError):
            return "the image needs more memory than this server has free now; send a smaller image or try later"
        text = str(error).replace(str(self.datastore.folder), "")
        return _SERVER_NAME.sub("the upload", text)

    def close(self) -> None:
        self.server_close()
        self.deadlines.stop()
        self.inference.close()
        self.datastore.close()


class _Handler(BaseHTTPRequestHandler):
    server: MedSegServer
    server_version = "medseg-serve"
    protocol_version = "HTTP/1.1"  # keep-alive, as MONAI Label's clients expect; idle connections have a deadline
    def setup(self) -> None:
        self.timeout = 4 * self.server.deadlines.client_seconds  # a read waiting this long fails; deadlines cut sooner
        super().setup()

    def handle_one_request(self) -> None:
        self.server.deadlines.wait_for_request(self.connection)  # the request line and headers, or idle
        self._body: BodyReader | None = None
        self._continue_pending = False
        super().handle_one_request()

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue`` is answered only when the body is wanted: after the Host, the token and a
        place in the queue; a refused client then never sends its body."""
        self._continue_pending = True
        return True

    def _want_body(self) -> None:
        if self._continue_pending:
            self._continue_pending = False
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()

    def finish(self) -> None:
        self.server.deadlines.forget(self.connection)
        try:
            super().finish()
        except OSError:
            pass

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
            text = format % args
            printable = "".join(character if character.isprintable() else "?" for character in text)
            sys.stderr.write(f"medseg serve: {self.address_string()} {printable}\n")

    # --- routing ---------------------------------------------------------------------------------------------

    def _route(self, method: str) -> None:
        try:
            self._answer(method)
        finally:
            if self._body is None or not self._body.consumed:
                self.close_connection = True  # unread bytes must not be taken for the next request

    def _answer(self, method: str) -> None:
        try:
            self._check_host()
            self._body = BodyReader(self.rfile, self.headers, self.server.max_upload_bytes)
            url = urlparse(self.path)
            path = "/" + url.path.strip("/")
            query = {key: values[-1] for key, values in
                     parse_qs(url.query, keep_blank_values=True, max_num_fields=64).items()}
            if path == "/auth" and method == "GET":
                return self._json({"enabled": self.server.token is not None, "client_id": "medseg"})
            if path == "/auth/token" and method == "POST":
                return self._login()
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
        except (HttpError, BodyError) as error:
            self._refuse(error.status, str(error))
        except QueueFull as error:
            self._refuse(503, str(error), {"Retry-After": "5"})
        except NotEnoughMemoryError as error:
            self._refuse(503, self.server.client_message(error), {"Retry-After": "30"})
        except MedSegError as error:
            self._refuse(400, self.server.client_message(error))
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away or was cut off: nobody to answer
        except Exception as error:  # noqa: BLE001 - one request's bug: a 500 with one line, the trace in the log
            traceback.print_exc()
            self._refuse(500, f"internal error: {type(error).__name__}")

    def _refuse(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        # Read what is left of the body (bounded) so that a client still sending sees this answer, not a reset.
        budget = 2 * self.server.max_upload_bytes + (64 << 20)
        if self._continue_pending or self._body is None or not self._body.discard(budget):
            self.close_connection = True  # a client told to wait for 100 Continue has not sent its body
        self._json({"detail": detail}, status, headers)

    def _check_host(self) -> None:
        given = self.headers.get("Host")
        if self.server.hosts is None or given is None:
            return
        if host_of(given) not in self.server.hosts:
            self.close_connection = True
            raise HttpError(421, "this server does not answer for that Host")

    # --- endpoints ---------------------------------------------------------------------------------------------

    def _login(self) -> None:
        if self.server.token is None:
            raise HttpError(400, "this server runs without a token")
        login = BodyReader(self.rfile, self.headers, LOGIN_BODY_BYTES)  # bounded before it is parsed
        self._body = login
        login.check_declared_size()
        self._want_body()
        form = read_form(self.headers.get("Content-Type", ""), login.chunks(), self.server.datastore.folder)
        form.discard()
        if not self.server.tokens.accepts(form.fields.get("password", "")):
            raise HttpError(401, "wrong token")
        self._json({"access_token": self.server.token, "token_type": "bearer"})

    def _check_token(self) -> None:
        if self.server.token is None:
            return
        scheme, _, given = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not self.server.tokens.accepts(given.strip()):
            self.close_connection = True
            raise HttpError(401, "this server needs Authorization: Bearer TOKEN")

    def _infer(self, model: str, query: dict[str, str]) -> None:
        if model not in self.server.cards:
            raise HttpError(404, f"unknown model '{printable_name(model)}' (served: {', '.join(self.server.cards)})")
        slot = self.server.inference.admit()  # before the upload is read: a full queue costs nothing
        form: FormBody | None = None
        uploaded: Path | None = None
        output: Path | None = None
        try:
            form = self._read_form()
            params = form.params()
            suffix = str(params.get("result_extension") or ".nii.gz").lower()
            if suffix not in RESULT_SUFFIXES:
                raise MedSegError(f"result_extension {printable_name(suffix)}: use one of {', '.join(RESULT_SUFFIXES)}")
            if "file" in form.files:
                filename, received = form.files.pop("file")
                uploaded = self.server.datastore.stored_name(filename)
                received.rename(uploaded)
                refuse_detached_data(uploaded, printable_name(filename))
                source = uploaded
            else:
                key = query.get("session_id") or query.get("image") or ""
                source = self.server.datastore.path(key)
                if source is None:
                    raise HttpError(404, f"no uploaded image or session '{printable_name(key)}': upload it first "
                                         "(PUT /datastore/?image=ID or PUT /session/) or send it as 'file'")
            output = self.server.datastore.folder / f"{uuid.uuid4().hex}{suffix}"
            future = self.server.inference.submit(slot, model, source, output)
            slot = None  # the worker releases it
            self.server.deadlines.set(self.connection, None)  # waiting for the network is not the client's delay
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
            if form is not None:
                form.discard()
            for path in (uploaded, output):
                if path is not None:
                    path.unlink(missing_ok=True)

    def _upload(self, image_id: str) -> None:
        filename, received = self._receive_one_file()
        self._json({"image": self.server.datastore.put(image_id, filename, received)})

    def _new_session(self) -> None:
        filename, received = self._receive_one_file()
        key = self.server.datastore.new_session(filename, received)
        self._json({"session_id": key, "session_info": self.server.datastore.describe(key)})

    def _session(self, method: str, key: str) -> None:
        if method == "GET":
            described = self.server.datastore.describe(key)
            if described is None:
                raise HttpError(404, f"no session '{printable_name(key)}'")
            return self._json(described)
        if method == "DELETE":
            if not self.server.datastore.remove(key):
                raise HttpError(404, f"no session '{printable_name(key)}'")
            return self._json({})
        raise HttpError(404, "Not Found")

    # --- bodies and answers ------------------------------------------------------------------------------------

    def _read_form(self) -> FormBody:
        """The body streamed into the datastore's folder, under a deadline for its size."""
        assert self._body is not None
        expected = self._body.length if not self._body.chunked else self.server.max_upload_bytes
        self.server.deadlines.for_transfer(self.connection, min(expected, self.server.max_upload_bytes))
        self._body.check_declared_size()  # before 100 Continue: a refused client never sends its body
        self._want_body()
        return read_form(self.headers.get("Content-Type", ""), self._body.chunks(), self.server.datastore.folder)

    def _receive_one_file(self) -> tuple[str, Path]:
        """An upload to keep: it holds a place in the queue while it is read, as an inference does."""
        slot = self.server.inference.admit()
        form: FormBody | None = None
        try:
            form = self._read_form()
            if len(form.files) != 1:
                raise MedSegError(f"send one image file, not {len(form.files)}")
            name, (filename, received) = next(iter(form.files.items()))
            del form.files[name]
            return filename, received
        finally:
            slot.release()
            if form is not None:
                form.discard()

    def _json(self, value: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, "application/json", json.dumps(value).encode(), headers)

    def _send(self, status: int, content_type: str, content: bytes, headers: dict[str, str] | None = None) -> None:
        self.server.deadlines.for_transfer(self.connection, len(content))
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(content)))
            if self.close_connection:
                self.send_header("Connection", "close")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(content)
        except OSError:
            self.close_connection = True  # the client went away; nothing to tell it


__all__ = ["MedSegServer", "RESULT_SUFFIXES"]
