"""The terminal progress bar of long commands, driven by the engine's ``(fraction, stage)`` callback."""

from __future__ import annotations

import sys


class ProgressBar:
    """tqdm bar driven by the engine's (fraction, stage) callback. It is drawn at the first progress, not before:
    a run that fails on its input shows the error line alone, not an empty bar above it."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None

    def __enter__(self) -> "ProgressBar":
        return self

    def update(self, fraction: float, stage: str) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=100, unit="%", dynamic_ncols=True, file=sys.stderr,
                            bar_format="{desc:<15} {percentage:3.0f}%|{bar}| {elapsed}")
        self.bar.set_description_str(stage, refresh=False)
        self.bar.n = round(fraction * 100)
        self.bar.refresh()

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


__all__ = ["ProgressBar"]
