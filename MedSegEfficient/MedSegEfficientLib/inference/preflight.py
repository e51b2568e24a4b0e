"""Before a run: the memory it needs, estimated from the model card and the volume (or its header alone), against
what is free.

The estimate counts the buffers the engine allocates (the input on the model grid, blended class scores, the
label map) exactly, and the network's working memory with a conservative rule: 512 bytes per voxel of a batch
of tiles or slices. On the H100 runs in experiments/benchmarks-log.md the networks used 110-500 bytes per tile voxel
(TokenSeg 110, nnU-Net 3d_fullres about 500), so the rule errs on the side of warning.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from MedSegEfficientLib.errors import NotEnoughMemoryError
from MedSegEfficientLib.model.card import ModelCard
from MedSegEfficientLib.volume import Volume

WORKING_BYTES_PER_VOXEL = 512
HEADROOM = 0.9  # use at most this share of what is free


@dataclass(frozen=True)
class MemoryEstimate:
    ram_bytes: int
    gpu_bytes: int  # 0 for a CPU run


@dataclass(frozen=True)
class Preflight:
    estimate: MemoryEstimate
    fits: bool
    advice: list[str] = field(default_factory=list)

    def message(self) -> str:
        need = f"needs about {self.estimate.ram_bytes / 2**30:.1f} GiB RAM"
        if self.estimate.gpu_bytes:
            need += f" and {self.estimate.gpu_bytes / 2**30:.1f} GiB GPU memory"
        return need + ("" if self.fits else ": more than is free. " + " ".join(self.advice))


def model_grid_voxels(volume: Volume, card: ModelCard) -> int:
    """Voxels after resampling to the card's spacing (2D models keep the slice axis as it is)."""
    if card.spacing is None:
        return math.prod(volume.grid_shape)
    spacing_kji = tuple(reversed(volume.spacing))
    target = list(reversed(card.spacing)) if len(card.spacing) == 3 else None
    if target is None:  # 2D spacing (in-plane x, y): the slice axis keeps its count
        target = [spacing_kji[0], card.spacing[1], card.spacing[0]]
    return math.prod(max(1, round(n * s / t)) for n, s, t in zip(volume.grid_shape, spacing_kji, target))


def estimate(volume: Volume, card: ModelCard, gpu: bool, batch: int | None = None,
             parameters: int = 0) -> MemoryEstimate:
    if card.parts:  # one part at a time, beside the merged labels
        needs = [estimate(volume, part, gpu, batch, parameters) for part in card.parts]
        return MemoryEstimate(ram_bytes=max(n.ram_bytes for n in needs) + math.prod(volume.grid_shape),
                              gpu_bytes=max(n.gpu_bytes for n in needs))
    voxels = model_grid_voxels(volume, card)
    classes = card.out_channels
    image = card.in_channels * voxels * 4
    labels = voxels * 5  # int32 argmax, then uint8
    source = math.prod(volume.grid_shape) * volume.channels * 4  # the float32 copy resampling reads
    if card.spatial_dims == 3:
        batch = batch or 4
        unit = math.prod(card.patch_size) if card.patch_size else voxels
        scores = classes * voxels * (2 if gpu else 4) + voxels * 4  # blended scores and their weights
    else:
        batch = batch or 16
        slice_pixels = voxels / max(1, volume.grid_shape[0])
        unit = math.prod(card.patch_size) if card.patch_size else slice_pixels
        scores = 0  # 2D: class scores exist only per batch of slices
    working = int(batch * unit * WORKING_BYTES_PER_VOXEL) + parameters * 4
    if gpu:
        return MemoryEstimate(ram_bytes=source + image + labels, gpu_bytes=image + scores + working)
    return MemoryEstimate(ram_bytes=source + image + labels + scores + working, gpu_bytes=0)


def check(volume: Volume, card: ModelCard, gpu: bool, free_gpu: int | None, free_ram: int | None,
          parameters: int = 0) -> Preflight:
    """Whether the run fits, and what to do if not: Fast mode (one tile at a time) or the CPU, or a region."""
    need = estimate(volume, card, gpu, parameters=parameters)
    gpu_ok = not gpu or free_gpu is None or need.gpu_bytes <= HEADROOM * free_gpu
    ram_ok = free_ram is None or need.ram_bytes <= HEADROOM * free_ram
    if gpu_ok and ram_ok:
        return Preflight(need, True)
    advice = []
    single = estimate(volume, card, gpu, batch=1, parameters=parameters)
    if gpu and not gpu_ok:
        if free_gpu is not None and single.gpu_bytes <= HEADROOM * free_gpu:
            advice.append("Fast mode (one tile at a time) fits on the GPU.")
        cpu = estimate(volume, card, False, parameters=parameters)
        if free_ram is None or cpu.ram_bytes <= HEADROOM * free_ram:
            advice.append("The CPU has room (slower).")
    if not ram_ok or not advice:
        advice.append("Segment a region of interest (ROI) to need less.")
    return Preflight(need, False, advice)


def require_ram(volume, card: ModelCard, gpu: bool, parameters: int = 0) -> MemoryEstimate:
    """Refuse, before anything big is allocated, a run whose host memory would exceed what is available: a process
    out of RAM is killed without a word. (A GPU short of memory is not refused: the engine halves its batch, then
    moves to the CPU, and says so.) ``volume``: a Volume, or an ImageInfo read from the header alone."""
    need = estimate(volume, card, gpu, parameters=parameters)
    _, free_ram = free_memory("cpu")
    if free_ram is not None and need.ram_bytes > HEADROOM * free_ram:
        raise NotEnoughMemoryError(f"this run needs about {need.ram_bytes / 2**30:.1f} GiB of RAM for a "
                              f"{'x'.join(map(str, volume.grid_shape))} image, and {free_ram / 2**30:.1f} GiB is "
                              "available; segment a smaller region, or force it (medseg segment --force, "
                              "SegmentOptions(check_memory=False))")
    return need


def free_memory(device_type: str) -> tuple[int | None, int | None]:
    """(free GPU bytes or None, available RAM bytes or None where the platform does not say)."""
    free_gpu = None
    if device_type == "cuda":
        import torch

        free_gpu = int(torch.cuda.mem_get_info()[0])
    return free_gpu, _available_ram()


RAM_LIMIT_VARIABLE = "MEDSEG_RAM_LIMIT_BYTES"  # treat the machine as having at most this much free RAM


def _available_ram() -> int | None:
    """Available RAM; ``MEDSEG_RAM_LIMIT_BYTES`` caps it (a machine shared with other work, or a test of the
    low-memory path, which reaches the worker process through its environment)."""
    measured = _measured_ram()
    limit = os.environ.get(RAM_LIMIT_VARIABLE)
    if limit:
        return min(int(limit), measured) if measured is not None else int(limit)
    return measured


def _measured_ram() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


__all__ = ["MemoryEstimate", "Preflight", "check", "estimate", "free_memory", "model_grid_voxels", "require_ram"]
