"""Batches of 2D slices of a (C, k, j, i) volume, delivered on the network's device.

A 512 x 512 x 256 volume of three channels is 0.8 GB of float32: reordering it on the host (0.3-0.4 s) and
uploading it before the first batch cost more than a fast 2D network's whole pass over it. So nothing is reordered
on the host ahead of time. On a GPU, axial slices (array axis 1, the common case) are staged batch by batch in
pinned memory and copied on a side stream one batch ahead, overlapping the network's work on the batch before.
Slices along the other axes are strided on the host: the volume moves to the GPU once, where it is cut.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import torch

_GPU_INPUT_SHARE = 0.25  # a whole-volume upload may take at most this share of free GPU memory


def slice_batches(array: np.ndarray | torch.Tensor, axis: int, batch: int, device: torch.device,
                  dtype: torch.dtype | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, slices)`` with slices (b, C, H, W) on ``device``, for ``start`` = 0, batch, 2 batch ...

    ``dtype``: the slices' precision (default: the array's). float16 halves what crosses to the GPU; under fp16
    autocast the network's first layer would round its input to float16 anyway.
    """
    source = array if isinstance(array, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(array))
    dtype = dtype or source.dtype
    count = source.shape[axis]
    starts = range(0, count, batch)
    if device.type == "cuda" and axis == 1 and source.device.type == "cpu":
        yield from _prefetched_axial(source, starts, batch, device, dtype)
        return
    if device.type == "cuda" and _fits_on_device(device, source.numel() * dtype.itemsize):
        source = source.to(device, dtype)
    for start in starts:
        slab = source.narrow(axis, start, min(batch, count - start))
        yield start, slab.movedim(axis, 0).to(device, dtype).contiguous()


def _prefetched_axial(source: torch.Tensor, starts: range, batch: int, device: torch.device,
                      dtype: torch.dtype) -> Iterator[tuple[int, torch.Tensor]]:
    """Two pinned host buffers take turns. A helper thread stages the next batch into one (a multithreaded host
    copy that also puts the slices first and converts the precision) and starts its copy to the GPU on a side
    stream, while this thread queues the network's work on the batch before: launching a token network's
    kernels takes most of a CPU core, so staging on the same thread would leave the GPU waiting."""
    copy_stream = torch.cuda.Stream(device)
    compute_stream = torch.cuda.current_stream(device)
    buffers = [staging_buffer(source, batch, dtype, pinned=True) for _ in range(2)]
    uploaded: list[torch.cuda.Event | None] = [None, None]  # when each buffer's last copy to the GPU ended
    inference = torch.is_inference_mode_enabled()  # thread-local: the helper takes the caller's

    def upload(index: int) -> tuple[torch.Tensor, torch.cuda.Event]:
        turn = index % 2
        if uploaded[turn] is not None:
            uploaded[turn].synchronize()  # its previous batch must have left before it is overwritten
        with torch.inference_mode(inference), torch.cuda.stream(copy_stream):
            staged = stage(source, starts[index], batch, buffers[turn])
            slices = staged.to(device, non_blocking=True)
            uploaded[turn] = torch.cuda.Event()
            uploaded[turn].record(copy_stream)
        return slices, uploaded[turn]

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="medseg-slices") as helper:
        pending = helper.submit(upload, 0) if len(starts) else None
        for index, start in enumerate(starts):
            slices, copied = pending.result()
            if index + 1 < len(starts):
                pending = helper.submit(upload, index + 1)
            compute_stream.wait_event(copied)
            slices.record_stream(compute_stream)  # the allocator must not reuse it before the network is done
            yield start, slices


def staging_buffer(source: torch.Tensor, batch: int, dtype: torch.dtype, pinned: bool) -> torch.Tensor:
    """Host memory for ``batch`` axial slices of a (C, k, j, i) volume, slices first: (batch, C, j, i)."""
    channels, _, rows, columns = source.shape
    return torch.empty((batch, channels, rows, columns), dtype=dtype, pin_memory=pinned)


def stage(source: torch.Tensor, start: int, batch: int, buffer: torch.Tensor) -> torch.Tensor:
    """Axial slices start .. start + batch of a (C, k, j, i) volume as (b, C, j, i), in ``buffer``'s memory
    and precision."""
    slab = source[:, start:start + batch]
    staged = buffer[:slab.shape[1]]
    staged.copy_(slab.transpose(0, 1))
    return staged


def _fits_on_device(device: torch.device, nbytes: int) -> bool:
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes < _GPU_INPUT_SHARE * free
