"""`medseg batch --engine ray`: two CPU Ray actors on this machine, one killed mid-case; no case is lost, the
manifest stays true, and a rerun skips the done cases. Plus the placement rules for GPUs and CPUs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from MedSegEfficientLib.batch.ray_engine import plan_placement
from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.errors import MedSegError
from batch_helpers import ROOT, cohort, lines

ray = pytest.importorskip("ray", reason="the [cluster] extra (Ray) is not installed")


def _actors_inside_a_case() -> list[int]:
    """Ray workers running SegmentActor.segment: Ray sets the process title to the method it runs."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if command.startswith(b"ray::SegmentActor.segment"):
                pids.append(int(entry.name))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").is_file(), reason="finds the actors through Linux /proc")
def test_a_killed_ray_actor_loses_no_case_and_a_rerun_skips_the_done(tmp_path, capsys):
    inputs = cohort(tmp_path / "in", 6, shape=(48, 64, 64))
    (inputs / "broken.nii.gz").write_bytes(b"not an image" * 20)
    out = tmp_path / "out"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "MedSegEfficient"), str(ROOT / "Testing")])}
    batch = subprocess.Popen([sys.executable, "-m", "MedSegEfficientLib.cli", "batch", str(inputs), "-o", str(out),
                              "--engine", "ray", "--workers", "2", "--device", "cpu", "--model", "abdomen_ct_demo",
                              "--quiet"], env=environment,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    victims: list[int] = []
    while not victims and time.time() < deadline and batch.poll() is None:
        # An actor seen inside a case twice, 0.3 s apart, is in the middle of a real scan (the broken file fails
        # within milliseconds): the kill then cannot land between two cases.
        first = set(_actors_inside_a_case())
        time.sleep(0.3)
        victims = sorted(first & set(_actors_inside_a_case()))
    assert victims, "no Ray actor was seen inside a case"
    os.kill(victims[0], signal.SIGKILL)
    stdout, stderr = batch.communicate(timeout=300)
    assert batch.returncode == 2, stderr[-2000:]  # the broken file fails; everything else is done
    assert "2 Ray actor(s), 1 CPU each" in stderr
    assert "sent again to another worker after theirs died" in stdout  # the kill hit a case
    entries = lines(out / "medseg-manifest.jsonl")
    names = sorted(Path(entry["input"]).name for entry in entries)
    assert names == ["broken.nii.gz"] + [f"ct{seed}.nii.gz" for seed in range(6)]  # one line per case, none lost
    assert [entry["status"] for entry in entries].count("done") == 6
    assert all(" on " in entry["device"] for entry in entries if entry["status"] == "done")  # device and node
    assert sorted(p.name for p in out.glob("ct*.nii.gz")) == [f"ct{seed}.nii.gz" for seed in range(6)]
    assert not list(out.glob(".*part*"))

    code = main(["batch", str(inputs / "ct*.nii.gz"), "-o", str(out), "--engine", "ray", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0 and "6 of 6 cases already done" in captured.err and "0 done, 0 failed, 6 skipped" in captured.out
    assert len(lines(out / "medseg-manifest.jsonl")) == 7  # nothing ran again, so Ray was never started


def test_placement_one_actor_per_gpu_or_n_cpu_actors():
    assert plan_placement("auto", None, cluster_gpus=2, cluster_cpus=32) == plan_placement("cuda", 2, 2, 32)
    assert plan_placement("auto", None, 2, 32).actors == 2 and plan_placement("auto", None, 2, 32).gpus_per_actor == 1
    shared = plan_placement("cuda", None, 1, 16, gpus_per_worker=0.5)
    assert shared.actors == 2 and shared.gpus_per_actor == 0.5
    cpu = plan_placement("auto", 2, cluster_gpus=0, cluster_cpus=2)
    assert (cpu.actors, cpu.gpus_per_actor, cpu.cpus_per_actor) == (2, 0.0, 1.0)
    assert plan_placement("cpu", None, cluster_gpus=4, cluster_cpus=8).gpus_per_actor == 0  # --device cpu wins
    with pytest.raises(MedSegError, match="3 GPU workers need 3 GPUs; the cluster has 2"):
        plan_placement("cuda", 3, 2, 32)
    with pytest.raises(MedSegError, match="has no GPU"):
        plan_placement("cuda", None, 0, 32)
    with pytest.raises(MedSegError, match="gpus-per-worker"):
        plan_placement("cuda", None, 2, 32, gpus_per_worker=1.5)


def test_an_address_without_ray_engine_is_one_line(tmp_path, capsys):
    inputs = cohort(tmp_path / "in", 1, shape=(8, 10, 12))
    assert main(["batch", str(inputs), "-o", str(tmp_path / "out"), "--address", "auto"]) != 0
    assert "--address is for --engine ray" in capsys.readouterr().err
