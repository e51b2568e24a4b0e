"""The images clients upload (MONAI Label's ``PUT /datastore/`` and ``PUT /session/``), kept in the server's own
temporary folder under names it makes, so a client's image id never becomes a path. Bounded: past
``max_images`` the oldest is dropped; everything is removed when the server stops."""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.io.outputs import VOLUME_SUFFIXES, suffix_of
from MedSegEfficientLib.server.upload_check import refuse_detached_data

_IMAGE_ID = re.compile(r"^[\w.\- ]{1,200}$")


def upload_suffix(filename: str) -> str:
    """The image kind an uploaded file's name says; anything else is refused before it is written."""
    suffix = suffix_of(Path(filename.lower()), VOLUME_SUFFIXES)
    if suffix is None:
        raise MedSegError(f"upload '{printable_name(filename)}': send a {', '.join(VOLUME_SUFFIXES)} image")
    return suffix


def printable_name(filename: str) -> str:
    """A client's file name as it may appear in an answer: its last part, printable, short."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(character if character.isprintable() else "?" for character in name)[:100]


class Datastore:
    def __init__(self, max_images: int = 32) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="medseg-serve-"))  # mode 0700: patients' images
        self.max_images = max_images
        self._images: OrderedDict[str, Path] = OrderedDict()  # image id or session id -> stored file
        self._created: dict[str, float] = {}
        self._lock = threading.Lock()

    def put(self, key: str, filename: str, received: Path) -> str:
        """Keep ``received`` (a file this server wrote in its folder, moved, not copied) as image ``key``."""
        path = received
        try:
            if not _IMAGE_ID.match(key):
                raise MedSegError("an image id is 1 to 200 letters, digits, spaces, '.', '_' or '-'")
            path = self.stored_name(filename)
            received.rename(path)
            refuse_detached_data(path, printable_name(filename))
        except MedSegError:
            path.unlink(missing_ok=True)
            raise
        with self._lock:
            old = self._images.pop(key, None)
            self._images[key] = path
            self._created[key] = time.time()
            while len(self._images) > self.max_images:
                dropped, dropped_path = self._images.popitem(last=False)
                self._created.pop(dropped, None)
                dropped_path.unlink(missing_ok=True)
        if old is not None:
            old.unlink(missing_ok=True)
        return key

    def new_session(self, filename: str, received: Path) -> str:
        return self.put(f"session-{uuid.uuid4().hex}", filename, received)

    def stored_name(self, filename: str) -> Path:
        """A new name in the folder with the image kind the client's file name says (refused if none)."""
        return self.folder / f"{uuid.uuid4().hex}{upload_suffix(filename)}"

    def path(self, key: str) -> Path | None:
        with self._lock:
            return self._images.get(key)

    def describe(self, key: str) -> dict | None:
        path = self.path(key)
        if path is None:
            return None
        return {"session_id": key, "image": key, "created": self._created.get(key, 0.0),
                "size_bytes": path.stat().st_size if path.exists() else 0}

    def remove(self, key: str) -> bool:
        with self._lock:
            path = self._images.pop(key, None)
            self._created.pop(key, None)
        if path is not None:
            path.unlink(missing_ok=True)
        return path is not None

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._images)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


__all__ = ["Datastore", "printable_name", "upload_suffix"]

