"""Replay a network's forward pass as one CUDA graph: sliding-window tiles and slice batches all have one shape,
and small 3D networks and 2D token networks spend more time launching kernels from Python than running them
(experiments/benchmarks-log.md).

The first call with a new tile shape runs eagerly twice (cuDNN picks its kernels), captures the graph, and checks
that the replay gives the eager result; any failure (a network that synchronises with the host, a shape that
changes) leaves that network on the eager path, with the reason kept for the run report. Other shapes (the last,
smaller batch) run eagerly.
"""

from __future__ import annotations

from typing import Callable

import torch

Forward = Callable[[torch.Tensor], torch.Tensor]


class GraphedForward:
    def __init__(self, forward: Forward, tolerance: float = 2e-2) -> None:
        self.forward, self.tolerance = forward, tolerance
        self.graph: torch.cuda.CUDAGraph | None = None
        self.shape: tuple[int, ...] | None = None
        self.static_input: torch.Tensor | None = None
        self.static_output: torch.Tensor | None = None
        self.disabled_because: str | None = None

    def __call__(self, tiles: torch.Tensor) -> torch.Tensor:
        if self.disabled_because is not None or tiles.device.type != "cuda":
            return self.forward(tiles)
        if self.graph is None:
            return self._capture(tiles)
        if tuple(tiles.shape) != self.shape:
            return self.forward(tiles)
        self.static_input.copy_(tiles)
        self.graph.replay()
        return self.static_output  # read before the next call, as the sliding window does

    def _capture(self, tiles: torch.Tensor) -> torch.Tensor:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                eager = self.forward(tiles)
        torch.cuda.current_stream().wait_stream(side)
        reference = _subsample(eager).clone()  # every 4th position along each axis, all channels
        del eager  # the GPU holds the graph's own memory next
        try:
            self.static_input = tiles.clone()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.static_output = self.forward(self.static_input)
            graph.replay()
            replayed = _subsample(self.static_output).float()
            difference = float((replayed - reference.float()).abs().max())
            scale = float(reference.float().abs().max()) + 1e-6
            if not difference <= self.tolerance * scale:
                raise RuntimeError(f"the replay differs from the eager pass by {difference:.3g}")
        except Exception as error:  # noqa: BLE001 - any capture problem means: stay eager
            self.disabled_because = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            self.static_input = self.static_output = None
            torch.cuda.synchronize()
            return self.forward(tiles)
        self.graph, self.shape = graph, tuple(tiles.shape)
        return self.static_output


def _subsample(scores: torch.Tensor) -> torch.Tensor:
    """Every 4th position along each spatial axis of (B, K, ...) scores: enough to compare, 2D or 3D."""
    return scores[(slice(None), slice(None)) + (slice(None, None, 4),) * (scores.ndim - 2)]


__all__ = ["GraphedForward"]
