"""A request's body as bounded chunks: by ``Content-Length`` or ``Transfer-Encoding: chunked``, never more than
``limit`` bytes in all and never more than ``CHUNK_BYTES`` at a time in memory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

CHUNK_BYTES = 256 * 1024
_MAX_CHUNK_LINE = 1024
_MAX_TRAILER_LINES = 32


class BodyError(Exception):
    """A body this server will not read; ``status`` is the HTTP answer (400, 411, 413, 501)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def too_large(size: int, limit: int) -> BodyError:
    return BodyError(413, f"the upload is {size / 2**20:.1f} MiB or more; this server takes at most "
                          f"{limit / 2**20:.1f} MiB (--max-upload-mb)")


class BodyReader:
    def __init__(self, stream: BinaryIO, headers, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self.consumed = False  # every byte of the body has been read (the connection may be reused)
        self.read_bytes = 0
        encoding = (headers.get("Transfer-Encoding") or "").strip().lower()
        length_header = headers.get("Content-Length")
        self.chunked = encoding == "chunked"
        if encoding and not self.chunked:
            raise BodyError(501, f"Transfer-Encoding '{encoding[:40]}' is not supported: send chunked or a length")
        if self.chunked and length_header is not None:
            raise BodyError(400, "a body with both Content-Length and Transfer-Encoding")
        self.length = 0
        if not self.chunked:
            try:
                self.length = int(length_header or 0)
            except ValueError:
                raise BodyError(400, "Content-Length is not a number") from None
            if self.length < 0:
                raise BodyError(400, "Content-Length is negative")
        self.consumed = not self.chunked and self.length == 0

    def check_declared_size(self) -> None:
        if not self.chunked and self.length > self._limit:
            raise too_large(self.length, self._limit)

    def chunks(self) -> Iterator[bytes]:
        self.check_declared_size()
        source = self._chunked() if self.chunked else self._counted(self.length)
        for chunk in source:
            self.read_bytes += len(chunk)
            if self.read_bytes > self._limit:
                raise too_large(self.read_bytes, self._limit)
            yield chunk
        self.consumed = True

    def discard(self, budget: int) -> bool:
        """Read and drop what is left of the body, at most ``budget`` bytes: so that a client still sending sees
        the answer rather than a reset connection. True if the whole body was read."""
        if self.consumed:
            return True
        source = self._chunked() if self.chunked else self._counted(self.length - self.read_bytes)
        dropped = 0
        try:
            for chunk in source:
                dropped += len(chunk)
                if dropped > budget:
                    return False
        except (BodyError, OSError):
            return False
        self.consumed = True
        return True

    def _counted(self, left: int) -> Iterator[bytes]:
        while left > 0:
            chunk = self._stream.read(min(left, CHUNK_BYTES))
            if not chunk:
                raise BodyError(400, "the upload ended early")
            left -= len(chunk)
            yield chunk

    def _chunked(self) -> Iterator[bytes]:
        while True:
            line = self._stream.readline(_MAX_CHUNK_LINE + 1)
            if not line.endswith(b"\n"):
                raise BodyError(400, "a malformed chunk in a chunked body")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BodyError(400, "a malformed chunk size in a chunked body") from None
            if size < 0:
                raise BodyError(400, "a malformed chunk size in a chunked body")
            if size == 0:
                break
            if self.read_bytes + size > self._limit:
                raise too_large(self.read_bytes + size, self._limit)
            yield from self._counted(size)
            if self._stream.readline(3) not in (b"\r\n", b"\n"):
                raise BodyError(400, "a malformed chunk in a chunked body")
        for _ in range(_MAX_TRAILER_LINES):  # trailers, ignored, end at an empty line
            if self._stream.readline(_MAX_CHUNK_LINE + 1) in (b"\r\n", b"\n", b""):
                return
        raise BodyError(400, "too many trailer lines in a chunked body")


__all__ = ["BodyError", "BodyReader", "CHUNK_BYTES", "too_large"]
