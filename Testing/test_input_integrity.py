"""Nothing silently wrong on input: truncated files, NaN voxels, header bombs, DICOM folders with several series or
a missing slice, and voxel types the engine cannot read each end in one clear line, or in a result that says
what it chose."""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MedSegEfficientLib.errors import InputImageError
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.io.images import read_image, read_image_info, write_label_image
from MedSegEfficientLib.model.weights import load_model
from MedSegEfficientLib.cli.main import main
from models_for_tests import write_threshold_model
from phantoms import make_phantom

SCOUT_UID = "1.2.826.0.1.3680043.8.498.1"


def segment(capsys, *argv):
    code = main(["segment", *map(str, argv), "--device", "cpu", "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture()
def model(tmp_path) -> Path:
    return write_threshold_model(tmp_path / "bands.safetensors")


def phantom_file(path: Path, dtype=np.int16) -> Path:
    image, _ = make_phantom(shape=(16, 20, 24), seed=2)
    return write_label_image(image.array.astype(dtype), image, path)


@pytest.mark.parametrize("name", ["ct.nii", "ct.nii.gz", "ct.nrrd", "ct.mha"])
def test_a_truncated_file_is_refused_not_read_as_zeros(tmp_path, capsys, model, name):
    whole = phantom_file(tmp_path / f"whole-{name}")
    cut = tmp_path / name
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    code, out, err = segment(capsys, cut, "-o", tmp_path / "out.nii.gz", "--model", model)
    assert code == 2 and err.count("\n") == 1 and out == ""
    assert "truncated" in err or "expected" in err or "not read completely" in err
    assert not (tmp_path / "out.nii.gz").exists()


@pytest.mark.parametrize("name", ["ct.nii", "ct.nii.gz", "ct.nrrd", "ct.mha"])
def test_nan_and_infinite_voxels_are_found_in_every_format(tmp_path, capsys, model, name):
    image, _ = make_phantom(shape=(16, 20, 24), seed=2)
    array = image.array.astype(np.float32)
    array[3, 4, 5], array[6, 7, 8] = np.nan, np.inf
    path = write_label_image(array, image, tmp_path / name)
    code, _, err = segment(capsys, path, "-o", tmp_path / "out.nii.gz", "--model", model)
    assert code == 2 and "NaN or infinite" in err and err.count("\n") == 1


def _nifti_header_claiming(shape: tuple[int, int, int], path: Path) -> Path:
    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, *shape, 1, 1, 1, 1)
    struct.pack_into("<2h", header, 70, 16, 32)  # float32
    struct.pack_into("<8f", header, 76, 1, 1, 1, 1, 1, 1, 1, 1)
    struct.pack_into("<f", header, 108, 352.0)
    header[344:348] = b"n+1\0"
    path.write_bytes(bytes(header))
    return path


def _run_bounded(argv: list[str], limit_bytes: int = 2 << 30) -> subprocess.CompletedProcess:
    """The CLI in a process that cannot map more than ``limit_bytes``: a bomb would fail loudly, not quietly."""
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (%d, %d)); "
            "from MedSegEfficientLib.cli.main import main; sys.exit(main(sys.argv[1:]))") % (limit_bytes, limit_bytes)
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300)


def test_a_header_claiming_2000_cubed_voxels_is_refused_unread(tmp_path):
    bomb = _nifti_header_claiming((2000, 2000, 2000), tmp_path / "bomb.nii")
    done = _run_bounded(["segment", str(bomb), "-o", str(tmp_path / "out.nii.gz"), "--device", "cpu", "--quiet"])
    assert done.returncode == 2 and "truncated" in done.stderr and done.stderr.count("\n") == 1, done.stderr


def test_a_run_that_cannot_fit_in_ram_is_refused_before_reading(tmp_path):
    """A complete header for 1600^3 int16 voxels (8 GiB; the run would need far more): refused from the header."""
    big = tmp_path / "big.nrrd"
    big.write_text("NRRD0004\ntype: short\ndimension: 3\nsizes: 1600 1600 1600\nspacings: 1 1 1\n"
                   "endian: little\nencoding: gzip\n\n")
    with open(big, "ab") as stream:
        stream.write(gzip.compress(b"\0" * 1024))
    done = _run_bounded(["segment", str(big), "-o", str(tmp_path / "out.nii.gz"), "--device", "cpu", "--quiet"])
    assert done.returncode == 2 and "GiB of RAM" in done.stderr and "--force" in done.stderr, done.stderr
    info = read_image_info(big)
    assert info.grid_shape == (1600, 1600, 1600) and info.voxel_bytes == 2 * 1600 ** 3


def _dicom_folder_with_a_scout(samples, folder: Path) -> Path:
    folder.mkdir()
    files = sorted(Path(samples["example_ct_dicom"]).iterdir())
    for file in files:
        shutil.copy(file, folder / file.name)
    for index, file in enumerate(files[:5]):  # five small slices of another series
        image = sitk.ReadImage(str(file))
        small = sitk.Shrink(image, [4, 4, 1])
        for key in ("0008|0060", "0010|0010", "0010|0020", "0020|000d", "0020|0032", "0020|0037", "0020|0013"):
            if image.HasMetaDataKey(key):
                small.SetMetaData(key, image.GetMetaData(key))
        small.SetMetaData("0020|000e", SCOUT_UID)
        small.SetMetaData("0008|103e", "scout")
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(folder / f"scout{index}.dcm"))
        writer.Execute(small)
    return folder


def test_a_folder_with_two_series_segments_the_largest_and_says_so(tmp_path, capsys, samples, model):
    folder = _dicom_folder_with_a_scout(samples, tmp_path / "dicom")
    code, out, err = main(["segment", str(folder), "--list-series"]), *capsys.readouterr()
    assert code == 0 and len(out.strip().splitlines()) == 2 and SCOUT_UID in out
    notices: list[str] = []
    volume = read_image(folder, notices=notices)
    assert volume.grid_shape == (20, 512, 512) and "holds 2 series" in notices[0] and "--series" in notices[0]
    assert read_image(folder, series=SCOUT_UID).grid_shape == (5, 128, 128)
    scout_number = next(line.split()[0] for line in out.splitlines() if SCOUT_UID in line)
    assert read_image(folder, series=scout_number).grid_shape == (5, 128, 128)  # a series without a UID: by number
    code, _, err = segment(capsys, folder, "-o", tmp_path / "out.nii.gz", "--model", model)
    assert code == 0 and "holds 2 series" in err
    code, _, err = segment(capsys, folder, "-o", tmp_path / "out2.nii.gz", "--model", model, "--series", "1.2.3")
    assert code == 2 and "no series 1.2.3" in err


def test_a_series_with_a_missing_slice_is_refused(tmp_path, capsys, samples, model):
    folder = tmp_path / "gap"
    folder.mkdir()
    files = sorted(Path(samples["example_ct_dicom"]).iterdir(),
                   key=lambda f: float(sitk.ReadImage(str(f)).GetOrigin()[2]))
    for file in files[:9] + files[10:]:
        shutil.copy(file, folder / file.name)
    code, _, err = segment(capsys, folder, "-o", tmp_path / "out.nii.gz", "--model", model)
    assert code == 2 and "not evenly spaced" in err and "4.00 mm gap" in err and err.count("\n") == 1


@pytest.mark.parametrize("dtype, works", [(np.bool_, True), (np.float16, True), (np.uint16, True),
                                          (np.complex64, False), (object, False)])
def test_every_voxel_type_works_or_is_refused_through_the_api(tmp_path, dtype, works):
    image, _ = make_phantom(shape=(16, 20, 24), seed=2)
    array = (image.array > 0) if dtype is np.bool_ else image.array.astype(dtype)
    segmenter = Segmenter(load_model(write_threshold_model(tmp_path / "bands.safetensors")),
                          SegmentOptions(device="cpu"))
    if works:
        assert segmenter.segment(image.with_array(array)).labels.shape == (16, 20, 24)
    else:
        with pytest.raises(InputImageError, match="cannot be segmented"):
            segmenter.segment(image.with_array(array))


def test_a_complex_image_file_is_one_clear_line(tmp_path, capsys, model):
    path = tmp_path / "complex.nii"  # NIfTI and NRRD keep the type (MetaImage stores two float channels)
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 5, 6), np.complex64)), str(path))
    code, _, err = segment(capsys, path, "-o", tmp_path / "out.nii.gz", "--model", model)
    assert code == 2 and "complex voxels" in err and err.count("\n") == 1


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_named_pipe_as_input_is_one_line_not_a_hang(tmp_path):
    """segment reads its input: a FIFO would block the reader for ever (issue 34); it is refused at once."""
    fifo = tmp_path / "scan.nii.gz"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-m", "MedSegEfficientLib.cli.main", "segment", str(fifo), "-o",
                           str(tmp_path / "out.nii.gz"), "--device", "cpu", "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "not a regular file" in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["scan.nii.gz"]


@pytest.mark.parametrize("given, sibling", [("scan.nii.gz", "scan.nii"), ("scan.nii", "scan.hdr"),
                                            ("scan.nii.gz", "scan.hdr")])
def test_a_nifti_is_read_as_itself_whatever_sits_beside_it(tmp_path, given, sibling):
    wanted = sitk.GetImageFromArray(np.full((5, 6, 7), 3, np.int16))
    decoy = sitk.GetImageFromArray(np.full((4, 4, 4), 900, np.int16))
    sitk.WriteImage(wanted, str(tmp_path / given))
    sitk.WriteImage(decoy, str(tmp_path / sibling))  # ITK's reader used to open this one instead, without a word
    assert read_image_info(tmp_path / given).grid_shape == (5, 6, 7)
    volume = read_image(tmp_path / given)
    assert volume.array.shape == (5, 6, 7) and int(volume.array.max()) == 3


@pytest.mark.parametrize("geometry, message", [
    ({"spacing": (0.0, 1.0, 1.0)}, "voxel spacing"), ({"spacing": (float("nan"), 1.0, 1.0)}, "voxel spacing"),
    ({"spacing": (-1.0, 1.0, 1.0)}, "voxel spacing"), ({"origin": (float("inf"), 0.0, 0.0)}, "origin"),
    ({"direction": np.zeros((3, 3))}, "direction matrix is singular"),
    ({"direction": [[1, 0, 0], [1, 0, 0], [0, 0, 1]]}, "direction matrix is singular"),
])
def test_a_volume_with_an_unusable_geometry_is_one_line_from_the_python_api(geometry, message):
    from MedSegEfficientLib.volume import Volume

    with pytest.raises(InputImageError, match=message):
        Volume(np.zeros((4, 4, 4), np.int16), **geometry)
