"""`medseg batch`: every output and a manifest from two workers, a rerun that skips what is done, one bad case that
stops nothing, and a worker killed mid-run that loses no case."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from MedSegEfficientLib.batch.cases import collect_cases
from MedSegEfficientLib.batch.manifest import MANIFEST_NAME, Entry, Manifest
from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.errors import MedSegError, OutputError
from batch_helpers import batch_under_way, cohort, lines



@pytest.mark.slow
def test_two_workers_write_every_output_and_a_rerun_skips_the_done(tmp_path, capsys):
    inputs = cohort(tmp_path / "in", 3)
    (inputs / "broken.nii.gz").write_bytes(b"not an image" * 20)
    out = tmp_path / "out"
    code = main(["batch", str(inputs), "-o", str(out), "--workers", "2", "--device", "cpu", "--quiet"])
    printed = capsys.readouterr().out
    assert code == 2 and "3 done, 1 failed, 0 skipped" in printed and "broken.nii.gz" in printed
    assert sorted(p.name for p in out.glob("ct*.nii.gz")) == ["ct0.nii.gz", "ct1.nii.gz", "ct2.nii.gz"]
    first = lines(out / "medseg-manifest.jsonl")
    assert sorted(entry["status"] for entry in first) == ["done", "done", "done", "failed"]
    assert all(entry["seconds"] > 0 and entry["device"].startswith("CPU") for entry in first if entry["status"] == "done")
    code = main(["batch", str(inputs), "-o", str(out), "--workers", "2", "--device", "cpu", "--quiet"])
    captured = capsys.readouterr()
    assert "3 of 4 cases already done" in captured.err and "0 done, 1 failed, 3 skipped" in captured.out
    assert len(lines(out / "medseg-manifest.jsonl")) == 5  # only the failed case ran again


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process tree from Linux /proc")
def test_a_killed_worker_loses_no_case(tmp_path):
    count = 6
    inputs = cohort(tmp_path / "in", count, shape=(40, 48, 48))
    out = tmp_path / "out"
    batch, workers = batch_under_way(inputs, out)
    manifest = out / "medseg-manifest.jsonl"
    # One case has finished, so both workers have the model loaded, and the other cases are in their hands.
    os.kill(workers[0], signal.SIGKILL)
    stdout, stderr = batch.communicate(timeout=300)
    assert batch.returncode == 0, stderr[-2000:]
    entries = lines(manifest)
    assert sorted(Path(entry["input"]).name for entry in entries) == [f"ct{seed}.nii.gz" for seed in range(count)]
    assert all(entry["status"] == "done" for entry in entries) and f"{count} done, 0 failed" in stdout
    assert "sent again to another worker after theirs died" in stdout  # the kill hit a worker mid-run
    assert sorted(p.name for p in out.glob("ct*.nii.gz")) == [f"ct{seed}.nii.gz" for seed in range(count)]
    assert not list(out.glob(".*part*"))


def test_cases_come_from_folders_globs_and_csv_and_never_collide(tmp_path):
    inputs = cohort(tmp_path / "in", 2, shape=(8, 10, 12))
    listing = tmp_path / "cases.csv"
    listing.write_text("input\nin/ct1.nii.gz\n")
    cases = collect_cases([str(inputs / "ct0.nii.gz"), str(tmp_path / "in" / "ct*.nii.gz"), str(listing)],
                          tmp_path / "out", ".seg.nrrd")
    assert [case.output.name for case in cases] == ["ct0.seg.nrrd", "ct1.seg.nrrd"]
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "ct0.nii.gz").write_bytes((inputs / "ct0.nii.gz").read_bytes())
    with pytest.raises(MedSegError, match="would both write ct0.nii.gz"):
        collect_cases([str(inputs), str(other)], tmp_path / "out")
    with pytest.raises(MedSegError, match="no such file, folder or pattern"):
        collect_cases([str(tmp_path / "nothing*.nii.gz")], tmp_path / "out")


def test_a_manifest_cut_mid_line_stays_true(tmp_path):
    manifest = Manifest(tmp_path)
    output = tmp_path / "a.nii.gz"
    output.write_bytes(b"result")
    manifest.append(Entry("/in/a.nii.gz", str(output), "done", 1.0, "CPU"))
    manifest.append(Entry("/in/b.nii.gz", str(tmp_path / "b.nii.gz"), "done", 1.0, "CPU"))  # output gone since
    with open(manifest.path, "a") as stream:
        stream.write('{"input": "/in/c.nii.gz", "out')  # a crash mid-line
    assert set(manifest.done()) == {"/in/a.nii.gz"}
    assert set(manifest.latest()) == {"/in/a.nii.gz", "/in/b.nii.gz"}


def test_a_dead_workers_half_written_output_goes_before_its_case_is_sent_again(tmp_path):
    from MedSegEfficientLib.batch.cases import Case
    from MedSegEfficientLib.batch.ledger import Ledger

    out = tmp_path / "out"
    out.mkdir()
    case = Case(tmp_path / "ct1.nii.gz", out / "ct1.nii.gz")
    left = out / ".ct1.k3x9q2.part.nii.gz"  # the temporary name StagedOutputs gives ct1.nii.gz
    others = [out / ".ct10.a1b2c3.part.nii.gz", out / "ct1.nii.gz.bak", out / "ct10.nii.gz"]  # not ct1's
    for path in [left, *others]:
        path.write_bytes(b"x")
    ledger = Ledger([case], Manifest(out))
    assert ledger.worker_died(case)
    assert not left.exists() and all(path.exists() for path in others)


def test_a_manifest_that_is_a_link_or_a_folder_is_refused_and_nothing_outside_is_written(tmp_path, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("not yours\n")
    (out / MANIFEST_NAME).symlink_to(outside)
    code = main(["batch", str(inputs), "-o", str(out), "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "is a link or not a regular file" in err, err
    assert outside.read_text() == "not yours\n"
    with pytest.raises(OutputError, match="link or not a regular file"):
        Manifest(out).append(Entry("a", "b", "done", 1.0))
    assert outside.read_text() == "not yours\n"
    (out / MANIFEST_NAME).unlink()
    (out / MANIFEST_NAME).mkdir()
    with pytest.raises(OutputError, match="not a regular file"):
        Manifest(out).latest()


def test_a_binary_or_foreign_manifest_is_read_as_holding_no_case(tmp_path):
    (tmp_path / MANIFEST_NAME).write_bytes(b"\xff\xfe\x00binary\n[1, 2]\nnull\n\"text\"\n")
    assert Manifest(tmp_path).latest() == {}
    Manifest(tmp_path).append(Entry("a", "b", "failed", 1.0))
    assert list(Manifest(tmp_path).latest()) == ["a"]
