"""The terminal progress bar of long commands, driven by the engine's ``(fraction, stage)`` callback."""

from __future__ import annotations

import sys


class ProgressBar:
    """tqdm bar driven by the engine's (fraction, stage) callback."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __enter__(self) -> "ProgressBar":
        from tqdm import tqdm

        self.bar = tqdm(total=100, disable=not self.enabled, unit="%", dynamic_ncols=True, file=sys.stderr,
                        bar_format="{desc:<15} {percentage:3.0f}%|{bar}| {elapsed}")
        return self

    def update(self, fraction: float, stage: str) -> None:
        self.bar.set_description_str(stage, refresh=False)
        self.bar.n = round(fraction * 100)
        self.bar.refresh()

    def __exit__(self, *exc) -> None:
        self.bar.close()


__all__ = ["ProgressBar"]
