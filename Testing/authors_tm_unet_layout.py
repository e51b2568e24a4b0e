"""Test-only: the TM-UNet authors' module tree (xq141839/TM-UNet ``tmunet.Model``), written here from reading their
code, to make state dicts with exactly their key names, shapes and container (``torch.save(model.state_dict())``),
and a reference forward pass with their operations: pooling over the (token, channel) plane of the (B, N, C)
tokens, batch norm before each upsampling, one sigmoid logit, and the built-but-never-called ``dwconv_1``.
The mLSTM itself computes with the parallel cell, as theirs does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from authors_mlla_unet_layout import randomised  # noqa: F401 - the tests' trained-looking weights
from authors_xlstm_layout import Headwise
from MedSegEfficientLib.networks.mlstm.cell import mlstm_parallel
from torch import nn

QKV_BLOCK = 4  # their ViLLayer's qkv_block_size, which is also the cell's number of heads


class Cell(nn.Module):  # MatrixLSTMCell: igate, fgate, outnorm (MultiHeadLayerNorm with weight offset and bias)
    def __init__(self, inner):
        super().__init__()
        self.igate, self.fgate = nn.Linear(3 * inner, QKV_BLOCK), nn.Linear(3 * inner, QKV_BLOCK)
        self.outnorm = nn.Module()
        self.outnorm.weight = nn.Parameter(torch.randn(inner) * 0.1)
        self.outnorm.bias = nn.Parameter(torch.randn(inner) * 0.1)


class AuthorsViLLayer(nn.Module):  # expansion 1; the second of a block scans from the bottom right
    def __init__(self, dim, from_bottom_right):
        super().__init__()
        self.flip = from_bottom_right
        self.proj_up = nn.Linear(dim, 2 * dim, bias=False)
        self.q_proj, self.k_proj, self.v_proj = (Headwise(dim, QKV_BLOCK) for _ in range(3))
        self.conv1d = nn.Module()
        self.conv1d.conv = nn.Conv1d(dim, dim, 4, padding=3, groups=dim)
        self.mlstm_cell = Cell(dim)
        self.learnable_skip = nn.Parameter(torch.rand(dim))
        self.proj_down = nn.Linear(dim, dim, bias=False)

    def forward(self, x):  # (B, S, D)
        x = x.flip(1) if self.flip else x
        cell = self.mlstm_cell
        x_m, z = self.proj_up(x).chunk(2, -1)
        c = F.silu(self.conv1d.conv(x_m.transpose(1, 2))[..., :x.shape[1]].transpose(1, 2))
        q, k, v = self.q_proj(c), self.k_proj(c), self.v_proj(x_m)
        gates = torch.cat([q, k, v], -1)
        heads = [t.unflatten(-1, (QKV_BLOCK, -1)).transpose(1, 2) for t in (q, k, v)]
        out = mlstm_parallel(*heads, cell.igate(gates).transpose(1, 2), cell.fgate(gates).transpose(1, 2))
        out = out.transpose(1, 2).flatten(2)
        out = F.group_norm(out.reshape(-1, out.shape[-1]), QKV_BLOCK, weight=1 + cell.outnorm.weight,
                           bias=cell.outnorm.bias).reshape(out.shape)
        y = self.proj_down((out + self.learnable_skip * c) * F.silu(z))
        return y.flip(1) if self.flip else y


class DWBnReLU(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dwconv, self.bn = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim), nn.BatchNorm2d(dim)

    def forward(self, x, h, w):
        b, n, c = x.shape
        y = F.relu(self.bn(self.dwconv(x.transpose(1, 2).reshape(b, c, h, w))))
        return y.flatten(2).transpose(1, 2)


class XLSTMLayer(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc2, self.fc3 = AuthorsViLLayer(dim, False), AuthorsViLLayer(dim, True)
        self.dwconv_1, self.dwconv_2, self.dwconv_3 = DWBnReLU(dim), DWBnReLU(dim), DWBnReLU(dim)

    def forward(self, x, h, w):  # dwconv_1 is never called
        return self.dwconv_3(self.fc3(self.dwconv_2(self.fc2(x), h, w)), h, w)


class XLSTMBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm2, self.norm1 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.layer = XLSTMLayer(dim)

    def forward(self, x, h, w):
        normed = self.norm1(x)  # their Pooling: AvgPool2d on (B, N, C), i.e. over the token x channel plane
        x = x + sum(F.avg_pool2d(normed, k, 1, k // 2, count_include_pad=False) - normed for k in (5, 9, 13))
        return x + self.layer(self.norm2(x), h, w)


class PatchEmbed(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.proj, self.norm = nn.Conv2d(cin, cout, 3, 2, 1), nn.LayerNorm(cout)

    def forward(self, x):
        x = self.proj(x)
        _, _, h, w = x.shape
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class AuthorsTMUNet(nn.Module):
    def __init__(self, embed_dims, in_channels=3):
        super().__init__()
        c = embed_dims
        self.encoder1, self.encoder2, self.encoder3 = (nn.Conv2d(a, b, 3, 1, 1) for a, b in
                                                       ((in_channels, c[0]), (c[0], c[1]), (c[1], c[2])))
        self.ebn1, self.ebn2, self.ebn3 = nn.BatchNorm2d(c[0]), nn.BatchNorm2d(c[1]), nn.BatchNorm2d(c[2])
        self.norm3, self.norm4 = nn.LayerNorm(c[3]), nn.LayerNorm(c[4])
        self.dnorm3, self.dnorm4 = nn.LayerNorm(c[3]), nn.LayerNorm(c[2])
        self.block1, self.block2 = nn.ModuleList([XLSTMBlock(c[3])]), nn.ModuleList([XLSTMBlock(c[4])])
        self.dblock1, self.dblock2 = nn.ModuleList([XLSTMBlock(c[3])]), nn.ModuleList([XLSTMBlock(c[2])])
        self.patch_embed3, self.patch_embed4 = PatchEmbed(c[2], c[3]), PatchEmbed(c[3], c[4])
        self.decoder1, self.decoder2 = nn.Conv2d(c[4], c[3], 3, 1, 1), nn.Conv2d(c[3], c[2], 3, 1, 1)
        self.decoder3, self.decoder4 = nn.Conv2d(c[2], c[1], 3, 1, 1), nn.Conv2d(c[1], c[0], 3, 1, 1)
        self.decoder5 = nn.Conv2d(c[0], c[0] // 2, 3, 1, 1)
        self.dbn1, self.dbn2 = nn.BatchNorm2d(c[3]), nn.BatchNorm2d(c[2])
        self.dbn3, self.dbn4 = nn.BatchNorm2d(c[1]), nn.BatchNorm2d(c[0])
        self.final = nn.Conv2d(c[0] // 2, 1, 1)

    @staticmethod
    def _map(tokens, b, h, w):
        return tokens.reshape(b, h, w, -1).permute(0, 3, 1, 2)

    @staticmethod
    def _up(x):
        return F.relu(F.interpolate(x, scale_factor=(2, 2), mode="bilinear"))

    def forward(self, x):
        b = x.shape[0]
        t1 = out = F.relu(F.max_pool2d(self.ebn1(self.encoder1(x)), 2, 2))
        t2 = out = F.relu(F.max_pool2d(self.ebn2(self.encoder2(out)), 2, 2))
        t3 = out = F.relu(F.max_pool2d(self.ebn3(self.encoder3(out)), 2, 2))
        out, h, w = self.patch_embed3(out)
        out = self.norm3(self.block1[0](out, h, w))
        t4 = out = self._map(out, b, h, w)
        out, h, w = self.patch_embed4(out)
        out = self._map(self.norm4(self.block2[0](out, h, w)), b, h, w)
        out = self._up(self.dbn1(self.decoder1(out))) + t4
        _, _, h, w = out.shape
        out = self._map(self.dnorm3(self.dblock1[0](out.flatten(2).transpose(1, 2), h, w)), b, h, w)
        out = self._up(self.dbn2(self.decoder2(out))) + t3
        _, _, h, w = out.shape
        out = self._map(self.dnorm4(self.dblock2[0](out.flatten(2).transpose(1, 2), h, w)), b, h, w)
        out = self._up(self.dbn3(self.decoder3(out))) + t2
        out = self._up(self.dbn4(self.decoder4(out))) + t1
        return self.final(self._up(self.decoder5(out)))

