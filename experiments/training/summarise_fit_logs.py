"""Summarise training logs (*.train.log): per run, the best epoch's held-out Dice and how much the held-out mean
moves from one epoch to the next, as experiments/distillation-log.md reports the CT and brain tries (liver / spleen / aorta
for a CT run).

    python experiments/training/summarise_fit_logs.py experiments/results/ct_distill_attempts/try8_*.train.log
"""

from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

EPOCH = re.compile(r"epoch (\d+)/\d+ loss \S+ val mean Dice (\S+) (.*) \(")
LABEL = re.compile(r"([a-z][a-z ]*?)=(\S+)")
WATCHED = ("liver", "spleen", "aorta")


def epochs(path: Path) -> list[tuple[int, float, dict[str, float]]]:
    """(epoch, held-out mean, per-label Dice) for each validated epoch of one log."""
    found = []
    for line in path.read_text().splitlines():
        match = EPOCH.match(line)
        if match:
            scores = {name.strip(): float(value) for name, value in LABEL.findall(match.group(3))}
            found.append((int(match.group(1)), float(match.group(2)), scores))
    return found


def summary(path: Path) -> str | None:
    rows = epochs(path)
    if len(rows) < 2:
        return None
    epoch, mean, scores = max(rows, key=lambda row: row[1])
    means = [row[1] for row in rows]
    swing = statistics.mean(abs(later - earlier) for earlier, later in zip(means, means[1:]))
    line = f"{path.name}: {len(rows)} epochs, best epoch {epoch}: {mean:.3f}"
    tail = f"last 10 mean {statistics.mean(means[-10:]):.3f}, mean change per epoch {swing:.3f}"
    if not any(name in scores for name in WATCHED):  # not a CT run (the brain's one label is the mean)
        return f"{line}, {tail}"
    watched = " / ".join(f"{scores.get(name, float('nan')):.2f}" for name in WATCHED)
    highest_spleen = max(row[2].get("spleen", float("nan")) for row in rows)
    return f"{line} ({watched}), {tail}, highest spleen {highest_spleen:.2f}"


def main(paths: list[str]) -> None:
    if not paths:
        raise SystemExit("usage: python experiments/training/summarise_fit_logs.py LOG [LOG ...]")
    for path in paths:
        line = summary(Path(path))
        print(line if line else f"{path}: fewer than two validated epochs")


if __name__ == "__main__":
    main(sys.argv[1:])
