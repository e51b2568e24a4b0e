"""`medseg batch` where the issue found it wanting (nothing lost, nothing leaked), with real worker processes: a case
that kills its worker fails alone, workers end with the batch however it ends, unreadable inputs are reported,
a rerun into the input folder, a DICOM folder beside files, a binary CSV, an absent GPU, a local Ray on loopback."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MedSegEfficientLib.batch.ledger import MAX_ATTEMPTS
from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.model.card import NetworkInfo
from MedSegEfficientLib.volume import to_sitk
from batch_helpers import batch_process, batch_under_way, cohort, lines
from models_for_tests import BANDS, write_threshold_model
from phantoms import make_phantom

LINUX_PROC = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process tree from /proc")


@pytest.mark.slow
def test_a_case_that_kills_its_worker_is_failed_alone(tmp_path):
    inputs = cohort(tmp_path / "in", 4)
    bright, _ = make_phantom(shape=(24, 32, 32), seed=9)
    sitk.WriteImage(to_sitk(bright.with_array(np.full(bright.array.shape, 1000, np.int16))),
                    str(inputs / "poison.nii.gz"))
    model = write_threshold_model(tmp_path / "kills.safetensors",
                                  network=NetworkInfo("test_kills_its_worker", None, {"bands": BANDS}))
    batch = batch_process(str(inputs), "-o", str(tmp_path / "out"), "--workers", "2", "--device", "cpu",
                          "--model", str(model))
    stdout, stderr = batch.communicate(timeout=600)
    assert batch.returncode == 2, stderr[-3000:]
    outcomes = {Path(entry["input"]).name: entry for entry in lines(tmp_path / "out" / "medseg-manifest.jsonl")}
    assert outcomes["poison.nii.gz"]["status"] == "failed"
    assert f"died {MAX_ATTEMPTS} times while running it alone" in outcomes["poison.nii.gz"]["error"]
    assert [outcomes[f"ct{seed}.nii.gz"]["status"] for seed in range(4)] == ["done"] * 4, outcomes
    assert "4 done, 1 failed" in stdout


@pytest.mark.slow
@LINUX_PROC
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_workers_end_with_the_batch(tmp_path, how):
    inputs = cohort(tmp_path / "in", 8, shape=(40, 48, 48))
    out = tmp_path / "out"
    batch, workers = batch_under_way(inputs, out)
    os.kill(batch.pid, how)
    batch.wait(timeout=60)
    deadline = time.time() + 20
    while any(Path(f"/proc/{pid}").exists() and _not_zombie(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.05)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists() and _not_zombie(pid)]
    assert not alive, f"workers {alive} outlived the batch ({how.name})"
    written = {path.name for path in out.glob("ct*.nii.gz")}
    time.sleep(1.0)
    assert {path.name for path in out.glob("ct*.nii.gz")} == written  # nothing written after the batch ended


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def test_dangling_links_and_link_loops_are_reported_as_failed(tmp_path, capsys):
    inputs = cohort(tmp_path / "in", 1)
    (inputs / "gone.nii.gz").symlink_to(tmp_path / "deleted.nii.gz")
    (inputs / "loop.nii.gz").symlink_to(inputs / "loop.nii.gz")
    code = main(["batch", str(inputs), "-o", str(tmp_path / "out"), "--device", "cpu", "--quiet"])
    printed = capsys.readouterr().out
    assert code == 2 and "1 done, 2 failed" in printed
    assert "gone.nii.gz" in printed and "loop.nii.gz" in printed


def test_a_rerun_into_the_input_folder_skips_its_own_outputs(tmp_path, capsys):
    folder = cohort(tmp_path / "in", 2)
    for suffix in (".seg.nrrd", ".nrrd"):
        assert main(["batch", str(folder), "-o", str(folder), "--format", suffix, "--device", "cpu", "--quiet"]) == 0
        assert "2 done, 0 failed" in capsys.readouterr().out
        assert main(["batch", str(folder), "-o", str(folder), "--format", suffix, "--device", "cpu", "--quiet"]) == 0
        assert "0 done, 0 failed, 2 skipped" in capsys.readouterr().out


def test_a_dicom_folder_beside_image_files_is_a_case(tmp_path, capsys):
    inputs = cohort(tmp_path / "in", 1)
    image, _ = make_phantom(shape=(12, 32, 32), seed=4)
    series = inputs / "series"
    series.mkdir()
    volume = sitk.Cast(to_sitk(image), sitk.sitkInt16)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    uid = "1.2.826.0.1.3680043.2.1125.7"
    for index in range(volume.GetDepth()):
        slice_image = volume[:, :, index]
        for tag, value in (("0020|000e", uid), ("0020|0013", str(index + 1)), ("0008|0060", "CT"),
                           ("0020|0032", "\\".join(map(str, volume.TransformIndexToPhysicalPoint((0, 0, index))))),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0028|0030", "1.5\\1.5")):
            slice_image.SetMetaData(tag, value)
        writer.SetFileName(str(series / f"{index:03d}.dcm"))
        writer.Execute(slice_image)
    code = main(["batch", str(inputs), "-o", str(tmp_path / "out"), "--device", "cpu", "--quiet"])
    assert code == 0 and "2 done, 0 failed" in capsys.readouterr().out
    assert (tmp_path / "out" / "series.nii.gz").is_file()


def test_a_binary_csv_is_one_line(tmp_path, capsys):
    listing = tmp_path / "cases.csv"
    listing.write_bytes(bytes(range(256)) * 4)
    assert main(["batch", str(listing), "-o", str(tmp_path / "out"), "--device", "cpu"]) != 0
    assert "is not a text CSV" in capsys.readouterr().err


def test_an_absent_gpu_is_one_line_before_any_worker_starts(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    inputs = cohort(tmp_path / "in", 1)
    assert main(["batch", str(inputs), "-o", str(tmp_path / "out"), "--device", "cuda"]) != 0
    error = capsys.readouterr().err
    assert "no CUDA GPU is available" in error and "Traceback" not in error and "died" not in error


@pytest.mark.slow
@LINUX_PROC
def test_a_local_ray_listens_on_loopback_only(tmp_path):
    pytest.importorskip("ray", reason="the [cluster] extra (Ray) is not installed")
    from MedSegEfficientLib.batch.cases import collect_cases
    from MedSegEfficientLib.batch.manifest import Manifest
    from MedSegEfficientLib.batch.ray_engine import run_ray
    from MedSegEfficientLib.batch.worker import WorkerSettings
    from MedSegEfficientLib.model.library import resolve_model_path

    inputs, out = cohort(tmp_path / "in", 1), tmp_path / "out"
    listening: set[str] = set()
    summary = run_ray(collect_cases([str(inputs)], out), Manifest(out),
                      WorkerSettings(str(resolve_model_path("abdomen_ct_demo"))), workers=1,
                      on_start=lambda placement: listening.update(_listening_addresses_of_descendants(os.getpid())))
    assert len(summary.done) == 1
    assert listening, "no Ray process listens at all: the check would pass vacuously"
    exposed = sorted(address for address in listening if address not in ("127.0.0.1", "::1"))
    assert not exposed, f"a local Ray listens on {exposed}"


def _listening_addresses_of_descendants(root: int) -> set[str]:
    inodes: set[str] = set()
    pending = [root]
    while pending:
        pid = pending.pop()
        try:
            pending += [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                        for child in (task / "children").read_text().split()]
            for descriptor in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(descriptor)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    addresses = set()
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                addresses.add(_address(fields[1].split(":")[0], width))
    return addresses


def _address(hexadecimal: str, width: int) -> str:
    import ipaddress

    raw = bytes.fromhex(hexadecimal)
    if width == 8:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[index:index + 4][::-1] for index in range(0, 16, 4))
    address = ipaddress.IPv6Address(words)
    return str(address.ipv4_mapped or address)
