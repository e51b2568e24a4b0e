"""``medseg serve`` against a hostile client, the real process over loopback (issue: nothing lost and nothing leaked).

Each test is a case the issue found: the server read files that an upload's header named, parsed bodies before
authentication, held whole uploads in memory, accepted any Host, let tokens be guessed at full speed, answered
500 to a non-ASCII token or deep JSON, kept idle connections for ever, answered a too-large body with a reset and
left patients' images behind on SIGTERM."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MedSegEfficientLib.io.images import write_label_image
from MedSegEfficientLib.server.connection_guard import FAILED_TOKEN_SECONDS
from MedSegEfficientLib.server.form_stream import MAX_PARTS
from phantoms import make_phantom
from serve_process import ServeProcess, start_serve

requests = pytest.importorskip("requests")

MODEL = "abdomen_ct_demo"
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    running = start_serve(MODEL, tmp_path_factory.mktemp("open-server"), "--max-upload-mb", "64",
                          "--client-timeout", "2")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    running = start_serve(MODEL, tmp_path_factory.mktemp("token-server"), "--token", TOKEN, "--client-timeout", "2")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def small_nifti(tmp_path_factory) -> Path:
    image, _ = make_phantom(shape=(24, 32, 32), seed=3)
    path = tmp_path_factory.mktemp("images") / "small.nii.gz"
    write_label_image(image.array, image, path)
    return path


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b""
    for name, value in fields.items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for name, (filename, content) in files.items():
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def infer(server: ServeProcess, filename: str, content: bytes, params: dict | None = None, **headers):
    body, kind = multipart({"params": json.dumps(params or {})}, {"file": (filename, content)})
    return requests.post(f"{server.url}/infer/{MODEL}?output=json", data=body,
                         headers={"Content-Type": kind, **headers}, timeout=120)


# --- the server reads only what it was sent --------------------------------------------------------------------

def detached_nrrd(data_file: str) -> bytes:
    return (f"NRRD0004\ntype: float\ndimension: 3\nsizes: 16 16 16\nencoding: raw\nendian: little\n"
            f"space directions: (1,0,0) (0,1,0) (0,0,1)\ndata file: {data_file}\n\n").encode()


def test_images_that_name_another_file_are_refused_and_answers_name_no_server_path(open_server, tmp_path):
    secret = tmp_path / "server-side-secret.raw"
    np.full((16, 16, 16), 300.0, np.float32).tofile(secret)
    cases = {
        "absolute.nrrd": detached_nrrd(str(secret)),
        "relative.nrrd": detached_nrrd("../../" + secret.name),
        "absolute.mha": (f"ObjectType = Image\nNDims = 3\nDimSize = 16 16 16\nElementType = MET_FLOAT\n"
                         f"ElementDataFile = {secret}\n").encode(),
    }
    analyze = sitk.GetImageFromArray(np.zeros((4, 4, 4), np.int16))
    sitk.WriteImage(analyze, str(tmp_path / "pair.hdr"))  # a NIfTI pair: header here, voxels in pair.img
    cases["pair.nii"] = (tmp_path / "pair.hdr").read_bytes()
    for filename, content in cases.items():
        answer = infer(open_server, filename, content)
        assert answer.status_code == 400, (filename, answer.status_code, answer.text)
        assert "another file" in answer.json()["detail"], answer.text
        assert str(tmp_path) not in answer.text and "medseg-serve-" not in answer.text
        stored = requests.put(f"{open_server.url}/datastore/?image=x", data=multipart({}, {"file": (filename, content)})[0],
                              headers={"Content-Type": multipart({}, {})[1]}, timeout=60)
        assert stored.status_code == 400
    garbage = infer(open_server, "broken.nii.gz", b"\x1f\x8b" + b"not gzip" * 20)
    assert garbage.status_code == 400 and "medseg-serve-" not in garbage.text and "/tmp" not in garbage.text
    assert not list(open_server.datastore_folders()[0].iterdir())  # nothing refused was kept


def test_an_image_with_its_voxels_inside_still_segments(open_server, small_nifti):
    answer = infer(open_server, "small.nii.gz", small_nifti.read_bytes())
    assert answer.status_code == 200, answer.text
    assert answer.json()["segments"], answer.text


def test_a_chunked_upload_is_read_like_any_other(open_server, small_nifti):
    body, kind = multipart({"params": "{}"}, {"file": ("small.nii.gz", small_nifti.read_bytes())})
    connection = http.client.HTTPConnection("127.0.0.1", open_server.port, timeout=120)
    pieces = (body[start:start + 7000] for start in range(0, len(body), 7000))
    connection.request("POST", f"/infer/{MODEL}?output=json", body=pieces, headers={"Content-Type": kind},
                       encode_chunked=True)
    answer = connection.getresponse()
    assert answer.status == 200, answer.read()
    assert json.loads(answer.read())["segments"]


# --- bounded before it is read ---------------------------------------------------------------------------------

def peak_growth_during(server: ServeProcess, action) -> int:
    """The most the server's resident memory grew above where it started while ``action`` ran."""
    start, peak, done = server.rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], server.rss_bytes() - start)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        action()
    finally:
        done.set()
        sampler.join()
    return peak[0]


def test_an_upload_is_streamed_to_disk_not_held_in_memory(open_server, tmp_path):
    big = tmp_path / "big.nii"
    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(0).random((200, 250, 240), np.float32)), str(big))
    body, kind = multipart({}, {"file": ("big.nii", big.read_bytes())})
    assert len(body) > 45 * 2**20
    answers = []
    growth = peak_growth_during(open_server, lambda: answers.append(requests.put(
        f"{open_server.url}/datastore/?image=big", data=body, headers={"Content-Type": kind}, timeout=120)))
    assert answers[0].status_code == 200, answers[0].text
    print(f"\n48 MiB upload: server memory grew by at most {growth / 2**20:.1f} MiB")
    assert growth < 16 * 2**20  # the old in-memory parser took about 12x the upload


def test_a_body_over_the_limit_gets_413_not_a_reset(open_server):
    answer = requests.put(f"{open_server.url}/datastore/?image=huge", data=b"\0" * (70 * 2**20),
                          headers={"Content-Type": "multipart/form-data; boundary=x"}, timeout=120)
    assert answer.status_code == 413 and "at most 64.0 MiB" in answer.json()["detail"]


def test_part_counts_and_json_depth_are_bounded(open_server, small_nifti):
    many = {f"f{index}": "x" for index in range(60_000)}
    body, kind = multipart(many, {})
    answer = requests.post(f"{open_server.url}/infer/{MODEL}", data=body, headers={"Content-Type": kind}, timeout=60)
    assert answer.status_code == 400 and f"more than {MAX_PARTS} parts" in answer.json()["detail"]
    body, kind = multipart({"params": "[" * 20_000 + "]" * 20_000}, {"file": ("s.nii.gz", small_nifti.read_bytes())})
    answer = requests.post(f"{open_server.url}/infer/{MODEL}", data=body, headers={"Content-Type": kind}, timeout=60)
    assert answer.status_code == 400, answer.text
    assert "nested deeper" in answer.json()["detail"] or "JSON object" in answer.json()["detail"]


def test_login_bodies_are_bounded_before_they_are_parsed(token_server):
    answers = []
    growth = peak_growth_during(token_server, lambda: answers.append(requests.post(
        f"{token_server.url}/auth/token", data=b"password=" + b"x" * (48 * 2**20),
        headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=60)))
    assert answers[0].status_code == 413
    assert growth < 8 * 2**20


def test_the_host_header_must_name_this_server(open_server):
    for host, expected in ((f"localhost:{open_server.port}", 200), (f"127.0.0.1:{open_server.port}", 200),
                           ("rebound.attacker.example", 421), ("rebound.attacker.example:80", 421)):
        answer = requests.get(f"{open_server.url}/info/", headers={"Host": host}, timeout=30)
        assert answer.status_code == expected, (host, answer.status_code)


def test_wrong_tokens_are_slowed_and_a_non_ascii_token_is_just_wrong(token_server):
    started = time.monotonic()
    for _ in range(4):
        assert requests.get(f"{token_server.url}/info/", headers={"Authorization": "Bearer guess"},
                            timeout=30).status_code == 401
    assert time.monotonic() - started >= 4 * FAILED_TOKEN_SECONDS  # a floor the server sets, not a speed
    connection = http.client.HTTPConnection("127.0.0.1", token_server.port, timeout=30)
    connection.putrequest("GET", "/info/")
    connection.putheader("Authorization", "Bearer caf\xe9-\u00fc".encode("latin-1"))
    connection.endheaders()
    assert connection.getresponse().status == 401
    login = requests.post(f"{token_server.url}/auth/token", data={"username": "u", "password": TOKEN}, timeout=30)
    assert login.status_code == 200 and login.json()["access_token"] == TOKEN


# --- connections ---------------------------------------------------------------------------------------------------

def test_idle_and_slow_connections_are_cut_off(open_server):
    idle = socket.create_connection(("127.0.0.1", open_server.port), timeout=30)
    slow = socket.create_connection(("127.0.0.1", open_server.port), timeout=30)
    slow.sendall(b"GET /info/ HTTP/1.1\r\n")
    started = time.monotonic()
    for _ in range(40):  # one header byte every 0.25 s: slower than the 2 s the server allows for headers
        try:
            slow.sendall(b"X")
        except OSError:
            break
        time.sleep(0.25)
    assert idle.recv(100) == b""  # closed by the server, not by this test's 30 s timeout
    assert time.monotonic() - started < 30
    slow.settimeout(5)
    try:
        assert slow.recv(100) == b""
    except ConnectionResetError:
        pass
    assert "Traceback" not in open_server.stderr_text()


def test_a_burst_of_clients_is_queued_not_reset(open_server):
    results: list[int] = []

    def one() -> None:
        try:
            results.append(requests.get(f"{open_server.url}/info/", timeout=60).status_code)
        except requests.ConnectionError:
            results.append(-1)

    threads = [threading.Thread(target=one) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(200) == 40


def test_clients_that_hang_up_leave_no_tracebacks(open_server):
    for _ in range(50):
        half = socket.create_connection(("127.0.0.1", open_server.port), timeout=10)
        half.sendall(f"POST /infer/{MODEL} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
                     "Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n".encode())
        half.close()
    assert requests.get(f"{open_server.url}/info/", timeout=30).status_code == 200
    time.sleep(0.5)
    assert "Traceback" not in open_server.stderr_text()


def test_sigterm_removes_the_uploaded_images(small_nifti, tmp_path):
    server = start_serve(MODEL, tmp_path / "server")
    try:
        body, kind = multipart({}, {"file": ("small.nii.gz", small_nifti.read_bytes())})
        assert requests.put(f"{server.url}/datastore/?image=patient", data=body, headers={"Content-Type": kind},
                            timeout=60).status_code == 200
        assert any(folder.iterdir() for folder in server.datastore_folders())  # the patient's image is on disk
    finally:
        assert server.stop(signal.SIGTERM) == 0
    assert server.datastore_folders() == [], "SIGTERM left patients' images behind"
    assert "stopped (SIGTERM)" in server.stderr_text()
