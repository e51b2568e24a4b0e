"""What smooth labels cost (issue: labels come back as labels): the default model on one CT, the argmax on the model
grid with labels brought back by nearest neighbour against class probabilities resampled to the input grid and the
argmax there (``SegmentOptions.smooth_labels``). Warm runs, alternated, the median of ``--repeat``; the time of
the postprocessing stage (where the resampling runs), the whole run, and the peak RAM / GPU memory of each.
Prints JSON (``--json OUT`` also writes it).

    python benchmarks/smooth_labels.py CT.nii.gz --device cpu|cuda [--model NAME] [--repeat 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.io.images import read_image
from MedSegEfficientLib.metrics import dice_per_label
from MedSegEfficientLib.model.library import default_model_path, resolve_model_path
from MedSegEfficientLib.model.weights import load_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    volume = read_image(args.image)
    model = load_model(resolve_model_path(args.model or default_model_path()))
    runs = {True: Segmenter(model, SegmentOptions(device=args.device, smooth_labels=True)),
            False: Segmenter(model, SegmentOptions(device=args.device, smooth_labels=False))}
    figures: dict[bool, dict[str, list[float]]] = {key: {"total": [], "postprocessing": [], "ram": [], "gpu": []}
                                                  for key in runs}
    labels = {}
    for key, segmenter in runs.items():  # warm-up: model on the device, kernels chosen
        labels[key] = segmenter.segment(volume).labels
    for _ in range(args.repeat):
        for key, segmenter in runs.items():
            started = time.perf_counter()
            report = segmenter.segment(volume).report
            figures[key]["total"].append(time.perf_counter() - started)
            figures[key]["postprocessing"].append(report.seconds.get("postprocessing", 0.0))
            figures[key]["ram"].append(report.peak_ram_bytes / 2**30)
            figures[key]["gpu"].append((report.peak_gpu_bytes or 0) / 2**30)
    values = [label.value for label in model.card.labels]
    agreement = dice_per_label([labels[True]], [labels[False]], values)
    median = {key: {name: statistics.median(series) for name, series in table.items()} for key, table in figures.items()}
    result = {
        "image": args.image, "grid": list(volume.grid_shape), "model": model.card.name, "device": args.device,
        "machine": platform.node(), "date": time.strftime("%Y-%m-%d"), "repeat": args.repeat,
        "nearest_seconds": median[False]["total"], "smooth_seconds": median[True]["total"],
        "nearest_postprocessing_seconds": median[False]["postprocessing"],
        "smooth_postprocessing_seconds": median[True]["postprocessing"],
        "smooth_over_nearest": median[True]["total"] / median[False]["total"],
        "nearest_peak_ram_gib": median[False]["ram"], "smooth_peak_ram_gib": median[True]["ram"],
        "nearest_peak_gpu_gib": median[False]["gpu"], "smooth_peak_gpu_gib": median[True]["gpu"],
        "dice_smooth_vs_nearest": {label.name: round(agreement[label.value], 4) for label in model.card.labels
                                   if agreement[label.value] == agreement[label.value]},
        "runs": {("smooth" if key else "nearest"): table for key, table in figures.items()},
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as stream:
            stream.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
