"""The real ``medseg serve`` process for the tests that play a hostile client: started on a free loopback port with
its own temporary folder, its standard error kept, its memory read from /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ServeProcess:
    process: subprocess.Popen
    url: str
    port: int
    temporary: Path  # the server's TMPDIR: its datastore folder lives here
    errors: list[str] = field(default_factory=list)

    def peak_rss_bytes(self) -> int:
        """VmHWM: the most resident memory the process has held so far (Linux)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc")

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc")

    def datastore_folders(self) -> list[Path]:
        return sorted(self.temporary.glob("medseg-serve-*"))

    def stop(self, how: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(how)
        return self.process.wait(timeout=90)

    def stderr_text(self) -> str:
        return "".join(self.errors)


def start_serve(model: str, temporary: Path, *options: str) -> ServeProcess:
    temporary.mkdir(parents=True, exist_ok=True)
    environment = {"PYTHONPATH": str(ROOT / "MedSegEfficient"), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                   "TMPDIR": str(temporary), "HOME": os.environ.get("HOME", str(temporary))}
    process = subprocess.Popen([sys.executable, "-m", "MedSegEfficientLib.cli", "serve", "--port", "0", "--device",
                                "cpu", "--model", model, *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=environment)
    first = process.stdout.readline()
    if "MONAI Label protocol" not in first:
        process.kill()
        raise RuntimeError(f"medseg serve did not start: {first}{process.stderr.read()[-3000:]}")
    url = first.split()[2].rstrip(",")
    running = ServeProcess(process, url, int(url.rsplit(":", 1)[1]), temporary)
    threading.Thread(target=lambda: running.errors.extend(process.stderr), daemon=True).start()
    return running


__all__ = ["ServeProcess", "start_serve"]
