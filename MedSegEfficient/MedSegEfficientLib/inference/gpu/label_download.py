"""Label batches from the network's device into one host array while the network goes on with the next batches.

A 512 x 512 x 256 label volume is 64 MB: copied to pageable host memory after the last batch it took 5 ms per batch
of 32 slices on an H100 host, a sixth of a fast 2D network's time (benchmarks/engine_overhead.py). Here each batch
goes to one of two pinned buffers on a side stream as soon as its argmax is queued, and a helper thread moves it
from there into the result, so only the last batch's copy is left when the network finishes.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch


class HostLabels:
    """``put`` (b, H, W) label batches at their slice offsets, then ``finish`` for the (count, H, W) array.

    On a CPU device batches are stored directly. Use as a context manager: leaving it, also on an error or a
    cancel, waits for the copies in flight and stops the helper thread.
    """

    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, batch: int) -> None:
        # numpy, not torch: the helper thread writes it, outside the caller's inference mode.
        self.result = np.empty(shape, dtype=torch.empty(0, dtype=dtype).numpy().dtype)
        self._cuda = device.type == "cuda"
        self._turn = 0
        if self._cuda:
            self._stream = torch.cuda.Stream(device)
            self._pinned = [torch.empty((batch, *shape[1:]), dtype=dtype, pin_memory=True) for _ in range(2)]
            self._moves: list[Future | None] = [None, None]  # each pinned buffer's move into the result
            self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medseg-labels")

    def __enter__(self) -> "HostLabels":
        return self

    def __exit__(self, error_type, *exc) -> None:
        if self._cuda:
            try:
                self._drain()
            except Exception:  # noqa: BLE001 - a failed copy matters only when nothing else failed first
                if error_type is None:
                    raise
            finally:
                self._helper.shutdown(wait=True)

    def put(self, start: int, labels: torch.Tensor) -> None:
        if not self._cuda:
            self.result[start:start + labels.shape[0]] = labels.numpy()
            return
        turn, self._turn = self._turn, 1 - self._turn
        if self._moves[turn] is not None:
            self._moves[turn].result()  # the buffer's previous batch must be in the result before it is reused
        pinned = self._pinned[turn][:labels.shape[0]]
        self._stream.wait_stream(torch.cuda.current_stream(labels.device))  # the labels' argmax is queued there
        with torch.cuda.stream(self._stream):
            pinned.copy_(labels, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(self._stream)
        labels.record_stream(self._stream)  # the allocator must not hand its memory out before the copy is done
        self._moves[turn] = self._helper.submit(self._move, copied, pinned, start)

    def _move(self, copied: torch.cuda.Event, pinned: torch.Tensor, start: int) -> None:
        copied.synchronize()
        # torch's copy runs on all cores (numpy's on one): the last batch's move is the part nothing overlaps.
        torch.from_numpy(self.result[start:start + pinned.shape[0]]).copy_(pinned)

    def _drain(self) -> None:
        for index, move in enumerate(self._moves):
            if move is not None:
                self._moves[index] = None
                move.result()

    def finish(self) -> np.ndarray:
        if self._cuda:
            self._drain()
        return self.result
