"""What a run returns: the labels and a report of its stages. Torch-free, so that Slicer's side of the worker
pipe rebuilds them without the engine."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class RunReport:
    device: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    peak_gpu_bytes: int = 0
    peak_ram_bytes: int = 0
    notices: list[str] = field(default_factory=list)

    def summary(self) -> str:
        stages = ", ".join(f"{name} {value:.2f} s" for name, value in self.seconds.items())
        total = sum(self.seconds.values())
        memory = f"peak RAM {self.peak_ram_bytes / 2**30:.2f} GiB"
        if self.peak_gpu_bytes:
            memory += f", peak GPU {self.peak_gpu_bytes / 2**30:.2f} GiB"
        return f"{total:.2f} s ({stages}); {memory}; device {self.device}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> "RunReport":
        return cls(device=str(fields.get("device", "")),
                   seconds={str(k): float(v) for k, v in dict(fields.get("seconds", {})).items()},
                   peak_gpu_bytes=int(fields.get("peak_gpu_bytes", 0)), peak_ram_bytes=int(fields.get("peak_ram_bytes", 0)),
                   notices=[str(n) for n in fields.get("notices", [])])


@dataclass
class SegmentationResult:
    labels: np.ndarray  # integer labels on the input grid, (k, j, i)
    report: RunReport


__all__ = ["RunReport", "SegmentationResult"]
