"""The segmentation worker process: ``python -m MedSegEfficientLib.slicer.worker_main --exchange FOLDER``.

Slicer's main thread sits in Qt's event loop holding the GIL, so a network run in a Python thread there crawls;
every Slicer segmentation extension runs its network in another process, and so do we. Started with Slicer's own
Python (PythonSlicer), it reads requests from stdin, writes events to stdout and keeps its models loaded between
runs. It ends on a 'quit' request, when stdin closes (Slicer exited or crashed), or after ``--idle-seconds`` without
a request, and its GPU memory goes with it.

``MEDSEG_WORKER_IMPORTS`` (networks/plugins.py) are imported first, so that a researcher's own networks load here.

A reader thread takes the requests off stdin so that a 'cancel' is seen while a run is in progress: the run checks
it between tiles. Anything the engine prints goes to stderr; stdout carries only the protocol.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO

from MedSegEfficientLib.networks.plugins import import_network_plugins
from MedSegEfficientLib.slicer.worker_protocol import PROTOCOL_VERSION, ProtocolError, decode, encode


class _Pipe:
    """The protocol's stdout, written by the run and by the reader thread (for protocol errors) alike."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream, self._lock = stream, threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._stream.write(encode(message))
            self._stream.flush()


def _read_requests(stdin: BinaryIO, requests: queue.Queue, cancelled: set, pipe: _Pipe) -> None:
    for line in stdin:
        try:
            message = decode(line)
        except ProtocolError as error:
            pipe.send({"event": "error", "id": None, "message": str(error), "kind": "ProtocolError"})
            continue
        if message.get("op") == "cancel":
            cancelled.add(message.get("id"))  # set.add is atomic: the run reads the set between tiles
        else:
            requests.put(message)
    requests.put(None)  # stdin closed: Slicer is gone


def serve(exchange: Path, idle_seconds: float, stdin: BinaryIO, stdout: BinaryIO) -> int:
    from MedSegEfficientLib.slicer.worker_session import WorkerSession

    pipe = _Pipe(stdout)
    requests: queue.Queue = queue.Queue()
    cancelled: set = set()
    threading.Thread(target=_read_requests, args=(stdin, requests, cancelled, pipe), name="requests",
                     daemon=True).start()
    session = WorkerSession(exchange, pipe.send)
    pipe.send({"event": "ready", "protocol": PROTOCOL_VERSION, "pid": os.getpid()})
    while True:
        try:
            request = requests.get(timeout=idle_seconds)
        except queue.Empty:
            pipe.send({"event": "exit", "reason": f"idle for {idle_seconds:g} s"})
            return 0
        if request is None:  # Slicer is gone (exited or crashed): nothing of the patient's is left behind
            shutil.rmtree(exchange, ignore_errors=True)
            return 0
        if request.get("op") == "quit":
            return 0
        run_id = request.get("id")
        session.handle(request, lambda: run_id in cancelled)
        cancelled.discard(run_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchange", type=Path, required=True, help="the folder the volumes and labels pass through")
    parser.add_argument("--idle-seconds", type=float, default=600.0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    # The protocol keeps the real stdout; fd 1 becomes stderr so that prints (ours or a library's) cannot corrupt it.
    protocol_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import_network_plugins()
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    return serve(args.exchange, args.idle_seconds, sys.stdin.buffer, protocol_out)


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    # Not sys.exit: the request reader may sit in a read of stdin, and interpreter shutdown aborts on its lock.
    os._exit(code)
