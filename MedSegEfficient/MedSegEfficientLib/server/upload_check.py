"""An uploaded image must hold its own voxels. Formats with detached data would make the server read a file that it
names: an NRRD ``data file:`` field, a MetaImage ``ElementDataFile`` other than ``LOCAL``, an Analyze or NIfTI
``.hdr``/``.img`` pair (magic ``ni1``). Such uploads are refused from their header, before ITK opens them; the
server takes one file an upload, so a detached file can never have come with it."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from MedSegEfficientLib.errors import InputImageError

_HEADER_BYTES = 64 * 1024  # NRRD and MetaImage headers are text lines before the voxels
_NIFTI_SINGLE_FILE = {b"n+1\x00", b"n+2\x00"}


def refuse_detached_data(path: Path, client_name: str) -> None:
    """Raises InputImageError when the upload at ``path`` (stored with its image kind's suffix) points elsewhere."""
    name = path.name.lower()
    if name.endswith(".nrrd"):
        _check_nrrd(_head(path), client_name)
    elif name.endswith(".mha"):
        _check_metaimage(_head(path), client_name)
    elif name.endswith((".nii", ".nii.gz")):
        _check_nifti_magic(path, client_name)


def _head(path: Path) -> bytes:
    with open(path, "rb") as stream:
        return stream.read(_HEADER_BYTES)


def _header_lines(head: bytes) -> list[str]:
    """The text lines before the first empty one (NRRD) or before the voxels (MetaImage's last key ends them)."""
    text = head.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
    return text.decode("latin-1").splitlines()


def _check_nrrd(head: bytes, client_name: str) -> None:
    if not head.startswith(b"NRRD"):
        raise InputImageError(f"{client_name} is not an NRRD file (no NRRD magic)")
    for line in _header_lines(head)[1:]:
        key = line.split(":", 1)[0].strip().lower().replace(" ", "")
        if ":" in line and not line.startswith("#") and key == "datafile":
            raise InputImageError(f"{client_name} keeps its voxels in another file ('data file'): this server reads "
                                  "only what was uploaded; send an NRRD with its data inside (.nrrd, not .nhdr)")


def _check_metaimage(head: bytes, client_name: str) -> None:
    for line in _header_lines(head):
        key, _, value = line.partition("=")
        if key.strip().lower() == "elementdatafile":
            if value.strip().upper() != "LOCAL":
                raise InputImageError(f"{client_name} keeps its voxels in another file (ElementDataFile = "
                                      f"{value.strip()[:40]}): this server reads only what was uploaded; send an .mha "
                                      "with ElementDataFile = LOCAL")
            return
    raise InputImageError(f"{client_name} is not a MetaImage with its voxels inside (no ElementDataFile = LOCAL)")


def _check_nifti_magic(path: Path, client_name: str) -> None:
    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as stream:
            head = stream.read(544)
    except (OSError, EOFError, zlib.error):
        raise InputImageError(f"cannot read {client_name} as an image: not a valid gzip stream") from None
    magic_nifti1, magic_nifti2 = head[344:348], head[4:8]
    if magic_nifti1 not in _NIFTI_SINGLE_FILE and magic_nifti2 not in _NIFTI_SINGLE_FILE:
        raise InputImageError(f"{client_name} is not a single-file NIfTI image (magic 'n+1' or 'n+2'): an Analyze or "
                              ".hdr/.img header keeps its voxels in another file, which this server does not read")


__all__ = ["refuse_detached_data"]
