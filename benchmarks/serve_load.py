"""Load on ``medseg serve`` through MONAI Label's own client: N concurrent clients send M inference requests in all
over loopback and each result is checked against a reference label map; prints latency p50/p95 and throughput.

    python benchmarks/serve_load.py IMAGE [--model NAME] [--clients 8] [--requests 40] [--json OUT]

It starts the server itself on 127.0.0.1 (a free port, CPU or --device) and stops it at the end. Testing/test_serve.py
runs the same load on a small image.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "MedSegEfficient"))

from MedSegEfficientLib.cli.serve import served_models  # noqa: E402
from MedSegEfficientLib.io.images import read_image  # noqa: E402
from MedSegEfficientLib.model.model_file import read_card  # noqa: E402
from MedSegEfficientLib.server.http_app import MedSegServer  # noqa: E402
from MedSegEfficientLib.server.inference_queue import InferenceQueue  # noqa: E402


def start_server(model: str, device: str = "cpu", waiting: int = 16, token: str | None = None,
                 max_upload_bytes: int = 2**30) -> MedSegServer:
    """A real server on a free loopback port, serving in a background thread."""
    models = served_models([model])
    inference = InferenceQueue(models, [device], waiting)
    server = MedSegServer(("127.0.0.1", 0), inference, {name: read_card(path) for name, path in models.items()},
                          token, max_upload_bytes, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_load(url: str, model: str, image: Path, reference: np.ndarray, clients: int, requests: int,
             folder: Path) -> dict:
    """Each request uploads the image as a file and gets its labels back; every result is compared."""
    from monailabel.client import MONAILabelClient

    def one(index: int) -> tuple[float, bool]:
        client = MONAILabelClient(url, tmpdir=str(folder), client_id=f"load-{index % clients}")
        started = time.perf_counter()
        result, _ = client.infer(model, f"case-{index}", {"result_extension": ".nii.gz"}, file=str(image))
        seconds = time.perf_counter() - started
        same = np.array_equal(read_image(result).array, reference)
        Path(result).unlink()
        return seconds, same

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        outcomes = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    latencies = sorted(seconds for seconds, _ in outcomes)
    return {"clients": clients, "requests": requests, "answered": len(outcomes),
            "equal_to_reference": sum(same for _, same in outcomes), "wall_seconds": wall,
            "requests_per_minute": 60 * requests / wall, "p50_seconds": statistics.median(latencies),
            "p95_seconds": latencies[max(0, int(round(0.95 * len(latencies))) - 1)]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--model", default="abdomen_ct_demo")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
    from MedSegEfficientLib.inference.file_pipeline import segment_file

    with tempfile.TemporaryDirectory() as folder:
        reference_file = Path(folder) / "reference.nii.gz"
        segment_file(Segmenter.from_file(served_models([args.model])[args.model], SegmentOptions(device=args.device)),
                     args.image, reference_file)
        reference = read_image(reference_file).array
        server = start_server(args.model, args.device, waiting=args.clients)
        try:
            figures = run_load(server.url, args.model, Path(args.image), reference, args.clients, args.requests,
                               Path(folder))
        finally:
            server.shutdown()
            server.close()
    figures.update({"image": Path(args.image).name, "model": args.model, "device": args.device,
                    "machine": f"{platform.node()} ({platform.processor() or platform.machine()})",
                    "date": time.strftime("%Y-%m-%d")})
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["equal_to_reference"] == figures["requests"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
