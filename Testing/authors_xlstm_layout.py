"""Test-only: the xLSTM-UNet authors' module layout (docs/networks.md section 2), written here from that description,
to produce checkpoints with exactly their key names and shapes and a reference forward pass to compare with.

Residual blocks after the first of a stage are dynamic_network_architectures' real ``BasicBlockD``, as in the
authors' code; the ViL block keeps their attribute names (``vil.norm``, ``layer.conv1d.conv``,
``layer.mlstm_cell.{igate,fgate,outnorm}``) and computes with the parallel mLSTM cell.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from dynamic_network_architectures.building_blocks.residual import BasicBlockD
from MedSegEfficientLib.networks.mlstm.cell import mlstm_parallel
from torch import nn


def _ops(dims):
    return (nn.Conv2d, nn.InstanceNorm2d) if dims == 2 else (nn.Conv3d, nn.InstanceNorm3d)


class FirstBlock(nn.Module):  # conv1 norm1 act conv2 norm2 + conv3 (1x1, always), act
    def __init__(self, dims, cin, cout, kernel, stride):
        super().__init__()
        conv, norm = _ops(dims)
        pad = [k // 2 for k in kernel]
        self.conv1, self.norm1 = conv(cin, cout, kernel, stride=stride, padding=pad), norm(cout, affine=True)
        self.conv2, self.norm2 = conv(cout, cout, kernel, padding=pad), norm(cout, affine=True)
        self.conv3 = conv(cin, cout, 1, stride=stride)

    def forward(self, x):
        y = self.norm2(self.conv2(F.leaky_relu(self.norm1(self.conv1(x)), 0.01)))
        return F.leaky_relu(y + self.conv3(x), 0.01)


def later_block(dims, channels, kernel):
    conv, norm = _ops(dims)
    return BasicBlockD(conv, channels, channels, kernel, 1, True, norm, {"eps": 1e-5, "affine": True},
                       nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True})


def stage(dims, cin, cout, kernel, stride, blocks):
    return nn.Sequential(FirstBlock(dims, cin, cout, kernel, stride), *[later_block(dims, cout, kernel)
                                                                         for _ in range(blocks - 1)])


class Headwise(nn.Module):
    def __init__(self, width, block):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(width // block, block, block) * 0.3)

    def forward(self, x):
        return torch.einsum("...hd,hod->...ho", x.unflatten(-1, (self.weight.shape[0], -1)), self.weight).flatten(-2)


class Cell(nn.Module):
    def __init__(self, inner, heads):
        super().__init__()
        self.heads = heads
        self.igate, self.fgate = nn.Linear(3 * inner, heads), nn.Linear(3 * inner, heads)
        self.outnorm = nn.Module()
        self.outnorm.weight = nn.Parameter(torch.randn(inner) * 0.1)  # offset weight, no bias


class AuthorsViL(nn.Module):  # the wrapper: an unused LayerNorm "norm" and the block "vil"
    def __init__(self, dim, channel_token=False):
        super().__init__()
        block = 4 if dim % 4 == 0 else 2
        inner = 2 * dim
        self.channel_token = channel_token
        self.norm = nn.LayerNorm(dim)
        self.vil = nn.Module()
        self.vil.norm = nn.Module()
        self.vil.norm.weight = nn.Parameter(torch.randn(dim) * 0.1)
        layer = self.vil.layer = nn.Module()
        layer.proj_up = nn.Linear(dim, 2 * inner, bias=False)
        layer.q_proj, layer.k_proj, layer.v_proj = (Headwise(inner, block) for _ in range(3))
        layer.conv1d = nn.Module()
        layer.conv1d.conv = nn.Conv1d(inner, inner, 4, padding=3, groups=inner)
        layer.mlstm_cell = Cell(inner, block)
        layer.learnable_skip = nn.Parameter(torch.rand(inner))
        layer.proj_down = nn.Linear(inner, dim, bias=False)

    def sequence(self, x):  # (B, S, D)
        layer, cell = self.vil.layer, self.vil.layer.mlstm_cell
        h = F.layer_norm(x, (x.shape[-1],), weight=1 + self.vil.norm.weight)
        x_m, z = layer.proj_up(h).chunk(2, -1)
        c = F.silu(layer.conv1d.conv(x_m.transpose(1, 2))[..., :x.shape[1]].transpose(1, 2))
        q, k, v = layer.q_proj(c), layer.k_proj(c), layer.v_proj(x_m)
        gates = torch.cat([q, k, v], -1)
        heads = [t.unflatten(-1, (cell.heads, -1)).transpose(1, 2) for t in (q, k, v)]
        out = mlstm_parallel(*heads, cell.igate(gates).transpose(1, 2), cell.fgate(gates).transpose(1, 2))
        out = out.transpose(1, 2).flatten(2)
        out = F.group_norm(out.reshape(-1, out.shape[-1]), cell.heads, weight=1 + cell.outnorm.weight).reshape(out.shape)
        return x + layer.proj_down((out + layer.learnable_skip * c) * F.silu(z))

    def forward(self, x):
        if self.channel_token:
            return self.sequence(x.flatten(2)).reshape(x.shape)
        return self.sequence(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(x.shape)


class AuthorsEncoder(nn.Module):
    def __init__(self, dims, variant, cin, features, kernels, strides, blocks, patch):
        super().__init__()
        n = len(features)
        self.stem = stage(dims, cin, features[0], kernels[0], [1] * dims, blocks[0])
        self.stages = nn.ModuleList()
        self.output_channels, self.strides = features, strides
        layers, size, previous = [], list(patch), features[0]
        for s in range(n):
            self.stages.append(stage(dims, previous, features[s], kernels[s], strides[s], blocks[s]))
            size = [a // b for a, b in zip(size, strides[s])]
            voxels = math.prod(size)
            vil = (s >= 3) if dims == 3 else (s > 1 and bool(s % 2) ^ bool(n % 2))
            extra = (s < 3) if dims == 3 else s == 1
            if variant == "enc" and vil:
                layers.append(AuthorsViL(min(voxels, features[s]), voxels <= features[s]))
            elif variant == "enc" and extra:
                layers.append(later_block(dims, features[s], kernels[s]))
            else:
                layers.append(nn.Identity())
            previous = features[s]
        if variant == "enc":
            self.xlstm_layers = nn.ModuleList(layers)

    def forward(self, x):
        x, skips = self.stem(x), []
        for s, block in enumerate(self.stages):
            x = block(x)
            if hasattr(self, "xlstm_layers"):
                x = self.xlstm_layers[s](x)
            skips.append(x)
        return skips


class Upsample(nn.Module):
    def __init__(self, dims, cin, cout, stride):
        super().__init__()
        self.conv, self.stride = _ops(dims)[0](cin, cout, 1), [float(s) for s in stride]

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=self.stride, mode="nearest"))


class AuthorsNetwork(nn.Module):
    def __init__(self, dims, variant, cin, classes, features, kernels, strides, blocks, decoder_blocks, patch):
        super().__init__()
        self.dims = dims
        self.encoder = AuthorsEncoder(dims, variant, cin, features, kernels, strides, blocks, patch)
        if variant == "bot":
            self.xlstm = AuthorsViL(features[-1])
        self.decoder = nn.Module()
        self.decoder.encoder = self.encoder  # the authors' decoder keeps the encoder: every tensor saved twice
        n = len(features)
        self.decoder.upsample_layers = nn.ModuleList(Upsample(dims, features[-s], features[-s - 1], strides[-s])
                                                     for s in range(1, n))
        skip_free_last = dims == 2
        self.decoder.stages = nn.ModuleList(
            stage(dims, features[-s - 1] * (1 if skip_free_last and s == n - 1 else 2), features[-s - 1],
                  kernels[-s - 1], [1] * dims, decoder_blocks[s - 1]) for s in range(1, n))
        self.decoder.seg_layers = nn.ModuleList(_ops(dims)[0](features[-s - 1], classes, 1) for s in range(1, n))

    def forward(self, x):
        skips = self.encoder(x)
        if hasattr(self, "xlstm"):
            skips[-1] = self.xlstm(skips[-1])
        x, last = skips[-1], len(self.decoder.stages) - 1
        for s, (up, block) in enumerate(zip(self.decoder.upsample_layers, self.decoder.stages)):
            x = up(x)
            if not (self.dims == 2 and s == last):
                x = torch.cat([x, skips[-(s + 2)]], 1)
            x = block(x)
        return self.decoder.seg_layers[-1](x)


def nnunet_checkpoint(network: nn.Module, trainer: str, configuration: str, plans: dict, dataset: dict) -> dict:
    """The dict nnU-Net v2 saves, numpy numbers in its logs included."""
    return {"network_weights": network.state_dict(), "optimizer_state": {"state": {}, "param_groups": []},
            "grad_scaler_state": None, "logging": {"train_losses": [np.float64(0.9), np.float64(0.5)],
                                                    "mean_fg_dice": [np.float64(0.2)], "ema_fg_dice": [0.2]},
            "_best_ema": np.float64(0.2), "current_epoch": 2, "trainer_name": trainer,
            "init_args": {"plans": plans, "configuration": configuration, "fold": 0, "dataset_json": dataset,
                          "unpack_dataset": True, "device": torch.device("cpu")},
            "inference_allowed_mirroring_axes": (0, 1, 2)}
