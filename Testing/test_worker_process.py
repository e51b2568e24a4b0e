"""The segmentation worker process that the Slicer panel and Logic use: a real child process of this Python,
talked to through its pipes, as Slicer's main thread does (no Qt, no MRML here: test_panel.py covers those)."""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import pytest

from MedSegEfficientLib.errors import Cancelled
from MedSegEfficientLib.inference.engine import Segmenter, SegmentOptions
from MedSegEfficientLib.slicer import worker_client
from MedSegEfficientLib.slicer.worker_client import SegmentationWorker
from MedSegEfficientLib.slicer.worker_protocol import (MAX_MESSAGE_BYTES, ProtocolError, decode, read_array,
                                                       volume_header, write_array)
from MedSegEfficientLib.slicer.worker_session import WorkerSession
from MedSegEfficientLib.volume import Volume
from models_for_tests import write_threshold_model
from phantoms import oblique_direction


def phantom() -> Volume:
    array = np.full((30, 48, 40), -100, np.int16)
    array[5:25, 10:30, 8:20] = 60
    array[8:20, 30:44, 22:36] = 180
    return Volume(array, (1.2, 0.9, 2.5), (10.0, -20.0, 5.0), oblique_direction(12))


@pytest.fixture()
def worker():
    worker = SegmentationWorker(idle_seconds=120, threads=1)
    yield worker
    worker.stop()


def segment_request(model, volume, **options):
    return {"model": str(model), "options": {"device": "cpu", **options}, "geometry": volume_header(volume)}


def test_the_worker_gives_the_labels_the_engine_gives_and_keeps_the_model_warm(worker, tmp_path):
    model, volume = write_threshold_model(tmp_path / "bands.safetensors"), phantom()
    direct = Segmenter.from_file(model, SegmentOptions(device="cpu")).segment(volume)
    first = worker.submit("segment", segment_request(model, volume), {"input": volume.array}).wait(120)
    assert first.done and first.error is None, first.error
    assert np.array_equal(first.result.labels, direct.labels) and set(np.unique(direct.labels)) == {0, 1, 2}
    assert first.result.report.device.startswith("CPU") and first.fraction == 1.0
    pid = worker.process.pid
    second = worker.submit("segment", segment_request(model, volume), {"input": volume.array}).wait(120)
    assert np.array_equal(second.result.labels, direct.labels)
    assert worker.process.pid == pid and worker.starts == 1  # the same warm process
    # nothing is left in the exchange folder but the worker's log: inputs and labels are removed after each run
    assert [path.name for path in worker.exchange.iterdir()] == ["worker-stderr.txt"]


def test_errors_come_back_as_one_line_and_the_worker_stays(worker, tmp_path):
    model, volume = write_threshold_model(tmp_path / "bands.safetensors"), phantom()
    corrupt = volume.array.astype(np.float32)
    corrupt[3, 4, 5] = np.nan
    failed = worker.submit("segment", segment_request(model, volume), {"input": corrupt}).wait(120)
    assert failed.done and "NaN" in failed.error and not failed.cancelled
    missing = worker.submit("segment", segment_request(tmp_path / "none.safetensors", volume),
                            {"input": volume.array}).wait(120)
    assert missing.error and "none.safetensors" in missing.error
    assert worker.submit("segment", segment_request(model, volume), {"input": volume.array}).wait(120).result is not None
    assert worker.starts == 1


def test_a_worker_that_dies_mid_run_ends_the_run_with_one_line_and_the_next_run_starts_another(worker, tmp_path):
    model, volume = write_threshold_model(tmp_path / "bands.safetensors"), phantom()
    assert worker.submit("segment", segment_request(model, volume), {"input": volume.array}).wait(120).result is not None
    run = worker.submit("segment", segment_request(model, volume), {"input": volume.array})
    os.kill(worker.process.pid, signal.SIGKILL)  # as the kernel's OOM killer or a CUDA fault would end it
    status = run.wait(30)
    assert status.done and not status.cancelled
    assert status.error.startswith("the segmentation worker stopped unexpectedly (exit code -9)")
    again = worker.submit("segment", segment_request(model, volume), {"input": volume.array}).wait(120)
    assert again.result is not None and worker.starts == 2


@pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP")
def test_a_cancel_the_worker_does_not_answer_ends_its_process_tree(worker, tmp_path, monkeypatch):
    monkeypatch.setattr(worker_client, "CANCEL_GRACE", 0.5)
    model, volume = write_threshold_model(tmp_path / "bands.safetensors"), phantom()
    run = worker.submit("segment", segment_request(model, volume), {"input": volume.array})
    process = worker.process
    os.kill(process.pid, signal.SIGSTOP)  # a worker stuck in a long kernel: it reads no Cancel
    run.cancel()
    status = run.wait(30)
    assert status.cancelled and status.error is None
    assert process.poll() is not None and not worker.alive()  # ended, not left running
    assert worker.submit("segment", segment_request(model, volume), {"input": volume.array}).wait(120).result is not None


def test_an_idle_worker_ends_itself(tmp_path):
    worker = SegmentationWorker(idle_seconds=1, threads=1)
    model, volume = write_threshold_model(tmp_path / "bands.safetensors"), phantom()
    assert worker.submit("segment", segment_request(model, volume), {"input": volume.array}).wait(120).result is not None
    process = worker.process
    process.wait(60)  # the idle time passes: it exits by itself, freeing what it held
    assert process.returncode == 0
    assert worker.submit("segment", segment_request(model, volume), {"input": volume.array}).wait(120).result is not None
    assert worker.starts == 2
    worker.stop()
    assert process.poll() is not None and worker.process is None


def test_run_anyway_is_honoured_by_a_model_loaded_for_a_checked_run(tmp_path):
    """The kept model's key holds every option: a run the user confirmed past the memory check is not refused by
    the Segmenter an earlier, checked run loaded."""
    model = write_threshold_model(tmp_path / "bands.safetensors")
    session = WorkerSession(tmp_path, lambda message: None)
    checked = session.segmenter(str(model), SegmentOptions(device="cpu", check_memory=True))
    confirmed = session.segmenter(str(model), SegmentOptions(device="cpu", check_memory=False))
    assert checked.options.check_memory and not confirmed.options.check_memory
    assert session.segmenter(str(model), SegmentOptions(device="cpu", check_memory=False)) is confirmed


def test_a_session_reports_a_cancel_between_tiles(tmp_path):
    model, volume = write_threshold_model(tmp_path / "bands.safetensors"), phantom()
    sent = []
    session = WorkerSession(tmp_path, sent.append)
    spec = write_array(tmp_path / "input-1.npy", volume.array)
    session.handle({"op": "segment", "id": 1, "input": spec, **segment_request(model, volume)}, lambda: True)
    assert sent[-1] == {"event": "cancelled", "id": 1}
    with pytest.raises(Cancelled):
        Segmenter.from_file(model, SegmentOptions(device="cpu")).segment(volume, cancel=lambda: True)


def test_the_protocol_refuses_what_it_did_not_make(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    spec = write_array(outside / "a.npy", np.zeros((4, 4, 4), np.int16))
    folder = tmp_path / "exchange"
    folder.mkdir()
    with pytest.raises(ProtocolError, match="outside the exchange folder"):
        read_array(spec, folder)
    assert read_array(spec, outside).shape == (4, 4, 4)
    with pytest.raises(ProtocolError, match="holds"):
        read_array({**spec, "shape": [4, 4, 5]}, outside)
    with pytest.raises(ProtocolError, match="size limit"):
        read_array({**spec, "shape": [100000, 100000, 100000]}, outside)
    with pytest.raises(ProtocolError):
        read_array({**spec, "dtype": "object"}, outside)
    with pytest.raises(ProtocolError):
        decode(b"[1, 2]")
    with pytest.raises(ProtocolError):
        decode(b" " * MAX_MESSAGE_BYTES)
    with pytest.raises(ProtocolError):
        write_array(tmp_path / "o.npy", np.array(["text"], dtype=object))


def test_the_worker_python_is_slicers_own(tmp_path, monkeypatch):
    application = tmp_path / "Slicer"
    application.write_text("")
    python_slicer = tmp_path / "PythonSlicer"
    python_slicer.write_text("")
    monkeypatch.setattr(sys, "executable", str(application))
    assert worker_client.worker_python() == str(python_slicer)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python3.12"))
    assert worker_client.worker_python() == str(tmp_path / "python3.12")


def test_a_worker_whose_slicer_is_gone_exits_and_removes_the_exchange_folder(tmp_path):
    worker = SegmentationWorker(idle_seconds=120, threads=1)
    model, volume = write_threshold_model(tmp_path / "bands.safetensors"), phantom()
    assert worker.submit("segment", segment_request(model, volume), {"input": volume.array}).wait(120).result is not None
    process, exchange = worker.process, worker.exchange
    process.stdin.close()  # as when Slicer crashes: the pipe closes, nobody says quit
    assert process.wait(60) == 0
    assert not exchange.exists()  # the patient's voxels do not outlive Slicer in shared memory
