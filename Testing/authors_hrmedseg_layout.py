"""Test-only: the HRMedSeg authors' distilled student (xq141839/HRMedSeg ``SAM/LGViT.py`` as ``image_encoder`` and
the ``neck`` of ``model.py``), written here from reading their code, to make state dicts with their names and
shapes (``up_proj`` narrows the value path to a quarter, ``down_proj`` widens it back; the ``rope.rotations``
buffers; MBConv's ``conv<k>.{c,bn}``) and a reference forward pass for the features the decoder reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from authors_mlla_unet_layout import Attention as MLLAAttention
from torch import nn


class Conv2dBN(nn.Sequential):
    def __init__(self, cin, cout, kernel=1, pad=0, groups=1):
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, kernel, 1, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(cout))


class MBConv(nn.Module):
    def __init__(self, dim, ratio=2.0):
        super().__init__()
        hidden = int(dim * ratio)
        self.conv1, self.conv2 = Conv2dBN(dim, hidden), Conv2dBN(hidden, hidden, 3, 1, hidden)
        self.conv3 = Conv2dBN(hidden, dim)

    def forward(self, x):
        y = self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))
        return F.gelu(y + x)


class Attention(MLLAAttention):
    """Their LinearAttention: MLLA's, with v through ``up_proj`` (narrowing), SiLU, ``down_proj`` (widening)."""

    def __init__(self, dim, side, heads):
        super().__init__(dim, side, heads)
        self.up_proj, self.down_proj = nn.Linear(dim, dim // 4), nn.Linear(dim // 4, dim)

    def value(self, x):
        return self.down_proj(F.silu(self.up_proj(x)))


class Block(nn.Module):  # LGViTBlock: no cpe, no in_proj/dwc (those are MLLA's)
    def __init__(self, dim, side, heads):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.act_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.attn = Attention(dim, side, heads)
        self.mlp = nn.Module()
        self.mlp.fc1, self.mlp.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)

    def forward(self, x):
        normed = self.norm1(x)
        x = x + self.out_proj(self.attn(normed) * F.silu(self.act_proj(normed)))
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


class LayerNorm2d(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        variance = (x - mean).pow(2).mean(1, keepdim=True)
        return self.weight[:, None, None] * (x - mean) / torch.sqrt(variance + 1e-6) + self.bias[:, None, None]


class AuthorsPFDStudent(nn.Module):
    def __init__(self, image_size=256, dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24)):
        super().__init__()
        side = image_size // 16
        self.image_encoder = nn.Module()
        self.image_encoder.patch_embed = nn.Module()
        self.image_encoder.patch_embed.proj = nn.Conv2d(3, dim, 16, 16)
        layers = [nn.Module()]
        layers[0].blocks = nn.ModuleList(MBConv(dim) for _ in range(depths[0]))
        for depth, head in zip(depths[1:], heads[1:]):
            layer = nn.Module()
            layer.blocks = nn.ModuleList(Block(dim, side, head) for _ in range(depth))
            layers.append(layer)
        self.image_encoder.layers = nn.ModuleList(layers)
        self.neck = nn.Sequential(nn.Conv2d(dim, 256, 1, bias=False), LayerNorm2d(256),
                                  nn.Conv2d(256, 256, 3, padding=1, bias=False), LayerNorm2d(256))

    def forward(self, x):
        x = self.image_encoder.patch_embed.proj(x)
        for block in self.image_encoder.layers[0].blocks:
            x = block(x)
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        for layer in self.image_encoder.layers[1:]:
            for block in layer.blocks:
                tokens = block(tokens)
        return self.neck(tokens.transpose(1, 2).reshape(b, c, h, w))
