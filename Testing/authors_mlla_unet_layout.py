"""Test-only: the MLLA-UNet authors' module tree (csyfjiang/MLLA-UNet ``networks/mlla_unet.py`` inside the
``MLLAUnet`` wrapper of ``MLLA_Unet_Build.py``), written here from reading their code, to make checkpoints with
exactly their key names and shapes (``torch.save(model.state_dict())`` of the wrapper: keys under ``mlla_unet.``)
and a reference forward pass with their operations: RoPE as a complex product with the stored ``rotations``, the
PatchExpand without an activation after its transposed convolution, and the x4 expansion's rows as (p1, p2, c).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvLayer(nn.Module):  # conv, optional batch norm, optional ReLU
    def __init__(self, cin, cout, kernel=3, stride=1, padding=0, groups=1, bias=True, norm=True, act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=bias)
        self.norm = nn.BatchNorm2d(cout) if norm else None
        self.act = act

    def forward(self, x):
        x = self.conv(x)
        x = self.norm(x) if self.norm is not None else x
        return F.relu(x) if self.act else x


class RoPE(nn.Module):
    def __init__(self, height, width, dim, base=10000):
        super().__init__()
        k_max = dim // 4
        theta = 1 / (base ** (torch.arange(k_max) / k_max))
        angles = torch.cat([t.unsqueeze(-1) * theta for t in torch.meshgrid(torch.arange(height), torch.arange(width),
                                                                              indexing="ij")], dim=-1)
        self.register_buffer("rotations", torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1))

    def forward(self, x):
        x = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
        return torch.view_as_real(torch.view_as_complex(self.rotations) * x).flatten(-2)


class Attention(nn.Module):
    def __init__(self, dim, side, heads):
        super().__init__()
        self.heads = heads
        self.qk = nn.Linear(dim, 2 * dim)
        self.lepe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.rope = RoPE(side, side, dim)

    def forward(self, x):
        b, n, c = x.shape
        h = w = int(n ** 0.5)
        d = c // self.heads
        q, k = (F.elu(t) + 1.0 for t in self.qk(x).reshape(b, n, 2, c).permute(2, 0, 1, 3))
        split = lambda t: t.reshape(b, n, self.heads, d).permute(0, 2, 1, 3)  # noqa: E731
        q_rope, k_rope = (split(self.rope(t.reshape(b, h, w, c))) for t in (q, k))
        q, k, v = split(q), split(k), split(self.value(x))
        z = 1 / (q @ k.mean(dim=-2, keepdim=True).transpose(-2, -1) + 1e-6)
        out = (q_rope @ ((k_rope.transpose(-2, -1) * n ** -0.5) @ (v * n ** -0.5)) * z).transpose(1, 2).reshape(b, n, c)
        return out + self.lepe(v.transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(b, n, c)


    def value(self, x):  # MLLA: v is the input itself
        return x


class Mlp(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, side, heads):
        super().__init__()
        self.cpe1, self.cpe2 = (nn.Conv2d(dim, dim, 3, padding=1, groups=dim) for _ in range(2))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.in_proj, self.act_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.dwc = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.attn, self.mlp = Attention(dim, side, heads), Mlp(dim)

    def forward(self, x):
        b, n, c = x.shape
        h = w = int(n ** 0.5)
        as_map = lambda t: t.reshape(b, h, w, c).permute(0, 3, 1, 2)  # noqa: E731
        x = x + self.cpe1(as_map(x)).flatten(2).permute(0, 2, 1)
        shortcut, x = x, self.norm1(x)
        act_res = F.silu(self.act_proj(x))
        x = F.silu(self.dwc(as_map(self.in_proj(x)))).permute(0, 2, 3, 1).reshape(b, n, c)
        x = shortcut + self.out_proj(self.attn(x) * act_res)
        x = x + self.cpe2(as_map(x)).flatten(2).permute(0, 2, 1)
        return x + self.mlp(self.norm2(x))


class Resample(nn.Module):  # PatchMerging (down=True) or PatchExpand (down=False)
    def __init__(self, dim, down):
        super().__init__()
        self.down = down
        hidden = 8 * dim if down else 4 * dim
        out = 2 * dim if down else dim // 2
        middle = (ConvLayer(hidden, hidden, 3, 2, 1, groups=hidden, norm=False) if down else
                  nn.ConvTranspose2d(hidden, hidden, 3, 2, 1, output_padding=1, groups=hidden, bias=False))
        self.conv = nn.Sequential(ConvLayer(dim, hidden, 1, norm=False), middle, ConvLayer(hidden, out, 1, act=False))
        if not down:
            self.norm = nn.LayerNorm(out)

    def forward(self, x):
        b, n, c = x.shape
        side = int(n ** 0.5)
        x = self.conv(x.reshape(b, side, side, c).permute(0, 3, 1, 2)).flatten(2).permute(0, 2, 1)
        return x if self.down else self.norm(x)


class Layer(nn.Module):
    def __init__(self, dim, side, depth, heads, resample=None):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, side, heads) for _ in range(depth))
        if resample == "down":
            self.downsample = Resample(dim, True)
        elif resample == "up":
            self.upsample = Resample(dim, False)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        resample = getattr(self, "downsample", None) or getattr(self, "upsample", None)
        return resample(x) if resample is not None else x


class Stem(nn.Module):
    def __init__(self, cin, dim):
        super().__init__()
        half = dim // 2
        self.conv1 = ConvLayer(cin, half, 3, 2, 1, bias=False)
        self.conv2 = nn.Sequential(ConvLayer(half, half, 3, 1, 1, bias=False), ConvLayer(half, half, 3, 1, 1, bias=False, act=False))
        self.conv3 = nn.Sequential(ConvLayer(half, 4 * dim, 3, 2, 1, bias=False), ConvLayer(4 * dim, dim, 1, bias=False, act=False))

    def forward(self, x):
        x = self.conv1(x)
        return self.conv3(self.conv2(x) + x).flatten(2).transpose(1, 2)


class AuthorsMLLAUNet(nn.Module):
    def __init__(self, image_size, classes, dim=32, depths=(1, 1, 1, 1), decoder_depths=(1, 1, 1, 1), heads=(1, 2, 4, 8)):
        super().__init__()
        side = image_size // 4
        self.patch_embed = Stem(3, dim)
        self.layers = nn.ModuleList(Layer(dim * 2 ** i, side >> i, depths[i], heads[i], "down" if i < 3 else None)
                                    for i in range(4))
        self.layers_up = nn.ModuleList([Resample(dim * 8, False)] + [
            Layer(dim * 2 ** (3 - i), side >> (3 - i), decoder_depths[i], heads[3 - i], "up" if i < 3 else None)
            for i in range(1, 4)])
        self.concat_back_dim = nn.ModuleList([nn.Identity()] + [nn.Linear(2 * dim * 2 ** (3 - i), dim * 2 ** (3 - i))
                                                                for i in range(1, 4)])
        self.norm, self.norm_up = nn.LayerNorm(dim * 8), nn.LayerNorm(dim)
        self.up = nn.Module()
        self.up.expand, self.up.norm = nn.Linear(dim, 16 * dim, bias=False), nn.LayerNorm(dim)
        self.output = nn.Conv2d(dim, classes, 1, bias=False)
        self.side, self.dim = side, dim

    def forward(self, x):
        x = self.patch_embed(x)
        skips = []
        for layer in self.layers:
            skips.append(x)
            x = layer(x)
        x = self.layers_up[0](self.norm(x))
        for index in range(1, 4):
            x = self.layers_up[index](self.concat_back_dim[index](torch.cat([x, skips[3 - index]], -1)))
        x = self.up.expand(self.norm_up(x))  # rows (p1 p2 c): rearrange 'b h w (p1 p2 c) -> b (h p1) (w p2) c'
        b, s = x.shape[0], self.side
        x = x.reshape(b, s, s, 4, 4, self.dim).permute(0, 1, 3, 2, 4, 5).reshape(b, 4 * s, 4 * s, self.dim)
        return self.output(self.up.norm(x).permute(0, 3, 1, 2))


class AuthorsWrapper(nn.Module):
    """MLLA_Unet_Build.MLLAUnet: one grey channel is repeated to the three the network takes."""

    def __init__(self, **kwargs):
        super().__init__()
        self.mlla_unet = AuthorsMLLAUNet(**kwargs)

    def forward(self, x):
        return self.mlla_unet(x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x)


def randomised(network: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
        for module in network.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return network.eval()
