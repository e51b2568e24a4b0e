"""TokenSeg's full-resolution refinement, run densely or only inside chosen cells (docs/tokenseg-design.md).

The refinement is a small convolutional head: a 3^3 convolution at half resolution, a x2 transposed convolution,
the image joined in, a 3^3 convolution and a 1x1 convolution at full resolution, giving a correction to the
upsampled coarse logits. Run on a whole tile it is a dense decoder; run on cells (16^3 voxels each) it reads each
cell with the halo its convolutions need and writes the cell back, so the result inside a refined cell equals the
dense result exactly (zeros outside the volume included) while unrefined cells cost nothing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

CELL = 16  # full-resolution voxels per cell edge; 8 at half resolution
HALF_HALO = 2  # half-resolution voxels read around a cell: one per 3^3 convolution (half, then full resolution)


class RefinementHead(nn.Module):
    def __init__(self, half_channels: int, image_channels: int, out_channels: int, width_half: int = 16,
                 width_full: int = 8) -> None:
        super().__init__()
        self.half_conv = nn.Conv3d(half_channels, width_half, 3)
        self.upsample = nn.ConvTranspose3d(width_half, width_full, 2, stride=2)
        self.full_conv = nn.Conv3d(width_full + image_channels, width_full, 3)
        self.head = nn.Conv3d(width_full, out_channels, 1)

    def dense(self, half_input: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """The correction for the whole tile: (B, K, D, H, W)."""
        x = F.leaky_relu(self.half_conv(F.pad(half_input, (1,) * 6)), 0.01)
        x = self.upsample(x)
        x = F.leaky_relu(self.full_conv(F.pad(torch.cat([x, image], 1), (1,) * 6)), 0.01)
        return self.head(x)

    def cells(self, half_input: torch.Tensor, image: torch.Tensor, batch: torch.Tensor,
              cells: torch.Tensor) -> torch.Tensor:
        """The correction inside the given cells: batch (n,), cells (n, 3) cell coordinates -> (n, K, 16, 16, 16)."""
        origins = cells * (CELL // 2) - HALF_HALO  # half-resolution corner of each read window
        crop = gather_windows(half_input, batch, origins, CELL // 2 + 2 * HALF_HALO)
        x = F.leaky_relu(self.half_conv(crop), 0.01)  # (n, w, 10, 10, 10): the cell plus one voxel around it
        x = self.upsample(x)[:, :, 1:-1, 1:-1, 1:-1]  # (n, w, 18, 18, 18): the cell plus one full voxel around it
        # The dense path pads the full-resolution convolution with zeros outside the volume: do the same here.
        full_origins = cells * CELL - 1
        x = x * inside_mask(full_origins, CELL + 2, tuple(image.shape[2:]))
        image_crop = gather_windows(image, batch, full_origins, CELL + 2)
        x = F.leaky_relu(self.full_conv(torch.cat([x, image_crop], 1)), 0.01)
        return self.head(x)


def gather_windows(volume: torch.Tensor, batch: torch.Tensor, origins: torch.Tensor, size: int) -> torch.Tensor:
    """Cubes of ``size`` voxels at ``origins`` (n, 3) of a (B, C, D, H, W) volume, zeros outside: (n, C, s, s, s)."""
    pad = size
    padded = F.pad(volume, (pad,) * 6)
    steps = torch.arange(size, device=volume.device)
    z, y, x = (origins[:, axis, None] + pad + steps for axis in range(3))
    windows = padded[batch[:, None, None, None], :, z[:, :, None, None], y[:, None, :, None], x[:, None, None, :]]
    return windows.permute(0, 4, 1, 2, 3)


def inside_mask(origins: torch.Tensor, size: int, volume_size: tuple[int, int, int]) -> torch.Tensor:
    """1 where a window voxel lies inside the volume, else 0: (n, 1, s, s, s)."""
    steps = torch.arange(size, device=origins.device)
    inside = [((origins[:, axis, None] + steps) >= 0) & ((origins[:, axis, None] + steps) < volume_size[axis])
              for axis in range(3)]
    mask = inside[0][:, :, None, None] & inside[1][:, None, :, None] & inside[2][:, None, None, :]
    return mask[:, None].float()


def add_to_cells(logits: torch.Tensor, batch: torch.Tensor, cells: torch.Tensor,
                 corrections: torch.Tensor) -> torch.Tensor:
    """Adds each cell's correction (n, K, 16, 16, 16) to logits (B, K, D, H, W) in place; cells are distinct."""
    b, k, d, h, w = logits.shape
    grid = logits.view(b, k, d // CELL, CELL, h // CELL, CELL, w // CELL, CELL)  # in place: callers pass a fresh tensor
    z, y, x = cells.unbind(1)
    grid[batch, :, z, :, y, :, x, :] += corrections  # advanced indices first: (n, K, 16, 16, 16)
    return grid.view(b, k, d, h, w)


def add_to_cells_repeating(logits: torch.Tensor, batch: torch.Tensor, cells: torch.Tensor,
                           corrections: torch.Tensor) -> torch.Tensor:
    """``add_to_cells`` for cells that may repeat (their corrections add up), through a cell-major copy of the
    logits: callers can pad to a fixed count with zero corrections and never ask the host how many are real."""
    b, k, d, h, w = logits.shape
    grid_size = (d // CELL, h // CELL, w // CELL)
    grid = logits.view(b, k, grid_size[0], CELL, grid_size[1], CELL, grid_size[2], CELL)
    cell_major = grid.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b * math.prod(grid_size), -1)
    flat = ((batch * grid_size[0] + cells[:, 0]) * grid_size[1] + cells[:, 1]) * grid_size[2] + cells[:, 2]
    cell_major.index_add_(0, flat, corrections.reshape(corrections.shape[0], -1).to(logits.dtype))
    grid.copy_(cell_major.view(b, *grid_size, k, CELL, CELL, CELL).permute(0, 4, 1, 5, 2, 6, 3, 7))
    return logits
