"""The GPU run files under experiments/training/ (``OUTPUT_NAME PREPARED_FILE [medseg fit options]``, one fit per line, read by
experiments/training/gpu_fit_runs.sh): every line is one that ``medseg fit`` takes, so that a typo shows here and not after a
GPU machine has started. The options are split as the shell splits them, since the script hands them to ``eval``."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from MedSegEfficientLib.cli.main import build_parser
from MedSegEfficientLib.networks.registry import build_network, get_network_spec

ROOT = Path(__file__).resolve().parents[1]
RUNS_FILES = sorted((ROOT / "experiments" / "training").glob("*.runs"))


def run_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def problems_of(line: str) -> list[str]:
    """What is wrong with one run line; empty when ``medseg fit`` would take it as written."""
    try:
        name, prepared, *options = shlex.split(line)
    except ValueError as error:
        return [f"not split as the shell splits it: {error}"]
    problems = []
    if not (prepared.startswith(".gpu/") and prepared.endswith(".npz")):
        problems.append(f"prepared file {prepared} is not a .npz under .gpu/, where gpu_fit_runs.sh's caller puts it")
    try:
        args = build_parser().parse_args(["fit", prepared, "-o", f"{name}.safetensors", *options])
    except SystemExit:
        return problems + [f"medseg fit refuses the options {options}"]
    if args.init and not (ROOT / args.init).is_file():
        problems.append(f"--init {args.init} is not a file in the repository")
    if args.network:
        network, _, preset = args.network.partition(":")
        try:
            spec = get_network_spec(network)
            dims = 3 if 3 in spec.spatial_dims else 2
            build_network(network, dims, 1, 2, preset or None, json.loads(args.args or "{}"))
        except Exception as error:  # noqa: BLE001 - any failure to build is the finding
            problems.append(f"--network {args.network} --args {args.args}: {error}")
    return problems


def test_there_are_run_files_to_check():
    assert RUNS_FILES, "experiments/training/*.runs not found"


@pytest.mark.parametrize("runs_file", RUNS_FILES, ids=lambda path: path.name)
def test_every_run_line_is_one_medseg_fit_takes(runs_file: Path):
    lines = run_lines(runs_file.read_text())
    assert lines, f"{runs_file.name} has no run line"
    names = [line.split()[0] for line in lines]
    assert len(set(names)) == len(names), f"{runs_file.name}: two runs would write the same model file"
    found = {line.split()[0]: problems_of(line) for line in lines}
    assert not any(found.values()), {name: problems for name, problems in found.items() if problems}


@pytest.mark.parametrize("broken", [
    "run_a .gpu/x.npz --epochs ten",
    "run_b .gpu/x.npz --init MedSegEfficient/no_such_model.safetensors",
    "run_c .gpu/x.npz --network xlstm_unet:no_such_preset",
    "run_d .gpu/x.npz --network xlstm_unet:bot_3d --args '{\"plan\": {\"features\": [16]}'",
    "run_e data/x.npz --seed 1",
    "run_f .gpu/x.npz --name 'unclosed",
])
def test_a_broken_line_is_found(broken: str):
    assert problems_of(broken)
