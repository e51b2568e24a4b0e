"""Markdown tables from the benchmark JSON files, for experiments/benchmarks-log.md.

    python benchmarks/report.py experiments/results > experiments/benchmark-tables.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def bench_table(data: dict) -> list[str]:
    machine = data["machine"]
    lines = [f"Machine: {machine['device']}, torch {machine['torch']}, {machine['threads']} CPU threads, "
             f"{machine['date']}. Input: {data['input']['source']} (grid k,j,i {data['input']['grid_kji']}).", "",
             "| entry | params | MACs per tile/slice | total s | preprocess / network / postprocess s | speed | peak GPU GiB |",
             "|---|---|---|---|---|---|---|"]
    for row in data["results"]:
        if "error" in row:
            lines.append(f"| {row['entry']} | error: {row['error']} | | | | | |")
            continue
        stages = " / ".join(f"{row['seconds'][k]:.2f}" for k in ("preprocessing", "network", "postprocessing"))
        speed = (f"{row['slices_per_second']:.0f} slices/s" if "slices_per_second" in row
                 else f"{row['input_voxels_per_second'] / 1e6:.1f} Mvox/s")
        lines.append(f"| {row['entry']} | {row['parameters'] / 1e6:.2f} M | {row['macs_per_unit'] / 1e9:.1f} G "
                     f"({row['unit']}) | {row['total_seconds']:.2f} | {stages} | {speed} | "
                     f"{row['peak_gpu_bytes'] / 2**30:.2f} |")
    return lines


def end_to_end_table(data: dict) -> list[str]:
    spacing = f" run at {data['spacing_override_mm']} mm (speed only)" if "spacing_override_mm" in data else ""
    lines = [f"Machine: {data['device']}; model {data['model']}{spacing}; image {Path(data['image']).name}.", "",
             "| run | wall s | load / preprocess / network / back to grid / save s | peak RAM GiB | peak GPU GiB |",
             "|---|---|---|---|---|"]
    for name, run in data["runs"].items():
        s = run["stage_seconds"]
        stages = " / ".join(f"{s[k]:.2f}" for k in ("load", "preprocessing", "network", "postprocessing", "save"))
        lines.append(f"| {name.replace('_', ' ')} | {run['wall_seconds']:.2f} | {stages} | "
                     f"{run['peak_ram_bytes'] / 2**30:.2f} | {run['peak_gpu_bytes'] / 2**30:.2f} |")
    return lines


def main(folder: Path) -> None:
    for name, render in (("end_to_end_cpu.json", end_to_end_table), ("end_to_end_cpu_1.5mm.json", end_to_end_table),
                         ("end_to_end_gpu.json", end_to_end_table), ("end_to_end_gpu_1.5mm.json", end_to_end_table),
                         ("bench_cpu.json", bench_table), ("bench_gpu.json", bench_table),
                         ("bench_gpu_2d_mlstm.json", bench_table), ("bench_gpu_3d_mlstm.json", bench_table)):
        path = folder / name
        if path.exists():
            print(f"### {name}\n")
            print("\n".join(render(json.loads(path.read_text()))) + "\n")
    startup = folder / "startup_gpu.json"
    if startup.exists():
        print("### startup_gpu.json (each step in a fresh process, seconds)\n")
        print("| step | s |\n|---|---|")
        for step, seconds in json.loads(startup.read_text()).items():
            print(f"| {step} | {seconds:.2f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/results"))
