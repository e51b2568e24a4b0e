"""`medseg serve` answered by MONAI Label's own Python client over loopback: info, upload and infer on the sample
CT equal to `medseg segment`'s labels, sessions, a bounded load of 8 clients and 40 requests, a full queue that
answers 503, bounded uploads, and the token."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.inference.file_pipeline import segment_file
from MedSegEfficientLib.io.images import read_image, write_label_image
from MedSegEfficientLib.model.library import resolve_model_path
from phantoms import make_phantom

pytest.importorskip("monailabel.client", reason="MONAI Label's client (pip install --no-deps monailabel)")
from monailabel.client import MONAILabelClient  # noqa: E402
from monailabel.client.client import MONAILabelClientException  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from serve_load import run_load, start_server  # noqa: E402

MODEL = "abdomen_ct_demo"


def reference_labels(image: Path, folder: Path) -> np.ndarray:
    output = folder / "reference.nii.gz"
    segment_file(Segmenter.from_file(resolve_model_path(MODEL), SegmentOptions(device="cpu")), image, output)
    return read_image(output).array


@pytest.fixture()
def small_image(tmp_path) -> Path:
    image, _ = make_phantom(shape=(24, 32, 32), seed=3)
    path = tmp_path / "small.nii.gz"
    write_label_image(image.array, image, path)
    return path


@pytest.fixture()
def server():
    running = start_server(MODEL, waiting=16)
    yield running
    running.shutdown()
    running.close()


@pytest.mark.slow
def test_the_cli_server_answers_monai_labels_client_like_medseg_segment(samples, tmp_path):
    serve = subprocess.Popen([sys.executable, "-m", "MedSegEfficientLib.cli", "serve", "--port", "0", "--device",
                              "cpu", "--model", MODEL, "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={"PYTHONPATH": str(ROOT / "MedSegEfficient"), "PATH": "/usr/bin:/bin"})
    try:
        first = serve.stdout.readline()
        assert "MONAI Label protocol" in first, serve.stderr.read()[-2000:] if serve.poll() is not None else first
        url = first.split()[2]
        client = MONAILabelClient(url, tmpdir=str(tmp_path))
        info = client.info()
        assert info["models"][MODEL]["type"] == "segmentation" and info["models"][MODEL]["dimension"] == 3
        assert info["models"][MODEL]["labels"]["liver"] == 1 and "spleen" in info["labels"]
        assert client.auth_enabled() is False
        # The Slicer module's flow: upload the scene's volume to the datastore, then infer by its id.
        assert client.upload_image(str(samples["example_ct"]), "example ct")["image"] == "example ct"
        result, params = client.infer(MODEL, "example ct", {"result_extension": ".nrrd", "result_dtype": "uint8"})
        assert result.endswith(".nrrd") and "liver" in params["segments"] and params["label_names"]["spleen"] == 2
        served = read_image(result).array
        expected = reference_labels(samples["example_ct"], tmp_path)
        assert served.shape == expected.shape and np.array_equal(served, expected)
        assert len(np.unique(served)) > 5  # a real segmentation, not an empty map
    finally:
        serve.terminate()
        serve.wait(timeout=30)


@pytest.mark.slow
def test_eight_clients_forty_requests_nothing_lost(server, small_image, tmp_path):
    reference = reference_labels(small_image, tmp_path)
    figures = run_load(server.url, MODEL, small_image, reference, clients=8, requests=40, folder=tmp_path)
    print(f"\nserve load: {figures}")
    assert figures["answered"] == 40 and figures["equal_to_reference"] == 40
    assert server.served == 40 and server.inference.taken == 0
    assert 0 < figures["p50_seconds"] <= figures["p95_seconds"]


def test_sessions_and_errors_as_monai_label_answers_them(server, small_image, tmp_path):
    client = MONAILabelClient(server.url, tmpdir=str(tmp_path))
    session = client.create_session(str(small_image))["session_id"]
    assert client.get_session(session)["session_id"] == session
    result, params = client.infer(MODEL, "", {}, session_id=session)
    assert np.array_equal(read_image(result).array, reference_labels(small_image, tmp_path))
    client.remove_session(session)
    with pytest.raises(MONAILabelClientException, match="404"):
        client.get_session(session)
    with pytest.raises(MONAILabelClientException, match=r"404.*unknown model \W*nope"):
        client.infer("nope", "x", {}, file=str(small_image))
    with pytest.raises(MONAILabelClientException, match=r"404.*no uploaded image or session \W*never-sent"):
        client.infer(MODEL, "never-sent", {})
    with pytest.raises(MONAILabelClientException, match="400.*result_extension .exe"):
        client.infer(MODEL, "x", {"result_extension": ".exe"}, file=str(small_image))
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not an image")
    with pytest.raises(MONAILabelClientException, match="400.*send a .nii.gz"):
        client.infer(MODEL, "x", {}, file=str(bogus))
    assert server.inference.taken == 0  # every refused request gave its slot back


def test_a_full_queue_answers_503_and_uploads_are_bounded(samples, small_image, tmp_path):
    server = start_server(MODEL, waiting=0, max_upload_bytes=4 * 2**20)  # one request at a time, 4 MiB bodies
    try:
        client = MONAILabelClient(server.url, tmpdir=str(tmp_path))
        busy = threading.Thread(target=client.infer, args=(MODEL, "a", {}), kwargs={"file": str(samples["example_ct"])})
        busy.start()
        deadline = time.time() + 60
        while server.inference.taken == 0 and time.time() < deadline:
            time.sleep(0.01)
        assert server.inference.taken == 1, "the first request never started"
        with pytest.raises(MONAILabelClientException, match="503.*the server is busy"):
            client.infer(MODEL, "b", {}, file=str(small_image))
        busy.join(timeout=120)
        assert server.served == 1 and server.inference.taken == 0
        big = tmp_path / "big.nii"
        big.write_bytes(b"\0" * (5 * 2**20))
        with pytest.raises(MONAILabelClientException, match="413"):
            client.infer(MODEL, "c", {}, file=str(big))
        assert server.inference.taken == 0
    finally:
        server.shutdown()
        server.close()


def test_a_token_guards_everything_but_login(small_image, tmp_path, capsys):
    assert main(["serve", "--host", "0.0.0.0", "--model", MODEL]) != 0  # other machines only with a token
    assert "--host 0.0.0.0 lets other machines in: give --token" in capsys.readouterr().err
    server = start_server(MODEL, token="s3cret-token")
    try:
        client = MONAILabelClient(server.url, tmpdir=str(tmp_path))
        assert client.auth_enabled() is True
        with pytest.raises(MONAILabelClientException, match="401"):
            client.info()
        with pytest.raises(MONAILabelClientException, match="401"):
            client.auth_token("radiologist", "wrong")
        client.update_auth(client.auth_token("radiologist", "s3cret-token"))  # the Slicer module's login
        assert client.auth_valid_token() and MODEL in client.info()["models"]
        result, _ = client.infer(MODEL, "x", {}, file=str(small_image))
        assert Path(result).is_file()
    finally:
        server.shutdown()
        server.close()
