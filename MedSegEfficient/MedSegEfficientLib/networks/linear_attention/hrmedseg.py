"""HRMedSeg (arXiv 2504.06205): a light gated linear-attention encoder (LGViT), a SAM-shaped neck, and the
efficient cross-multiscale decoder (ECM-Decoder), 2D at high resolution (docs/networks.md section 3).

LGViT: a 16x16 patch embedding, then every stage at the same 1/16 grid: two MBConv blocks, then 2 + 6 + 2 gated
linear-attention blocks. The neck maps 96 to 256 channels. The decoder is a two-way transformer between a few
output tokens and the image embedding (SAM's mask decoder at mlp width 256); its image keys are made
multi-scale by parameter-free average pooling before every token-to-image attention (docs/hrmedseg-design.md
says why and how). Masks come from per-token hypernetworks on a x4 upscaled embedding, then bilinear to the input
size. Every attention is linear in the number of pixels: the tokens are few and fixed.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from MedSegEfficientLib.networks.linear_attention.attention import LinearAttention
from MedSegEfficientLib.networks.registry import NetworkSpec, register_network
from MedSegEfficientLib.networks.linear_attention.token_layout import LayerNorm, grid, tokens

MULTISCALE_POOLS = (3, 5, 7)


class LayerNorm2d(LayerNorm):
    """Layer norm over the channels of a (B, C, H, W) map (a view for channels-last maps)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 1, groups: int = 1, zero_scale: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False)
        self.norm = nn.BatchNorm2d(cout)
        if zero_scale:  # the residual branch starts as identity
            nn.init.zeros_(self.norm.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class MBConv(nn.Module):
    def __init__(self, dim: int, expansion: int = 2) -> None:
        super().__init__()
        hidden = dim * expansion
        self.conv1, self.conv2 = ConvBN(dim, hidden), ConvBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBN(hidden, dim, zero_scale=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))
        return F.gelu(x + y)


class GatedAttentionBlock(nn.Module):
    """x + out(LinAttn(LN x) * SiLU(act(LN x))), then x + MLP(LN x); v through a width/4 bottleneck."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.act_proj = nn.Linear(dim, dim)
        self.attn = LinearAttention(dim, heads, value_bottleneck=dim // 4)
        self.out_proj = nn.Linear(dim, dim)
        self.norm2 = LayerNorm(dim)
        self.mlp = nn.Sequential()
        self.mlp.fc1, self.mlp.act, self.mlp.fc2 = nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        normed = self.norm1(x)
        x = x + self.out_proj(self.attn(normed, height, width) * F.silu(self.act_proj(normed)))
        return x + self.mlp(self.norm2(x))


class LGViT(nn.Module):
    def __init__(self, in_channels: int, dim: int = 96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), patch: int = 16,
                 checkpointing: bool = False) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.convs = nn.ModuleList(MBConv(dim) for _ in range(depths[0]))
        self.blocks = nn.ModuleList(GatedAttentionBlock(dim, h) for d, h in zip(depths[1:], heads[1:]) for _ in range(d))
        self.checkpointing = checkpointing

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(image)
        for conv in self.convs:
            x = self._run(conv, x)
        height, width = x.shape[2:]
        tokens = x.flatten(2).transpose(1, 2)
        for block in self.blocks:
            tokens = self._run(block, tokens, height, width)
        return tokens.transpose(1, 2).reshape(x.shape)

    def _run(self, module: nn.Module, *args):
        if self.checkpointing and self.training:
            return torch.utils.checkpoint.checkpoint(module, *args, use_reentrant=False)
        return module(*args)


class TokenAttention(nn.Module):
    """Multi-head softmax attention with an optional narrower inner width (``downsample``)."""

    def __init__(self, dim: int, heads: int, downsample: int = 1) -> None:
        super().__init__()
        inner = dim // downsample
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(dim, inner), nn.Linear(dim, inner), nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        split = lambda t: t.unflatten(-1, (self.heads, -1)).transpose(1, 2)
        out = F.scaled_dot_product_attention(split(self.q_proj(q)), split(self.k_proj(k)), split(self.v_proj(v)))
        return self.out_proj(out.transpose(1, 2).flatten(2))


def multiscale_keys(keys: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """keys + sum over pools s of (AvgPool_s(keys) - keys) on the grid: each key also sees its neighbourhoods.
    Each pool is a depthwise box-sum convolution on the channels-last view of the tokens, divided by the number
    of positions inside the image: the same as ``avg_pool2d(count_include_pad=False)``, at a fraction of its
    time on the GPU (its channels-last kernel took 20 % of HRMedSeg's time on the H100)."""
    keys_map = grid(keys, height, width)
    pooled = sum(_box_mean(keys_map, size) for size in MULTISCALE_POOLS)
    return tokens(pooled - (len(MULTISCALE_POOLS) - 1) * keys_map)


def _box_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over the size x size box around each position, positions outside the map not counted."""
    channels, height, width = x.shape[1:]
    ones = x.new_ones(channels, 1, size, size)
    sums = F.conv2d(x, ones, padding=size // 2, groups=channels)
    return sums * _inverse_counts(height, width, size, x.device, sums.dtype)


@lru_cache(maxsize=32)
def _inverse_counts(height: int, width: int, size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(H, W): 1 / the number of positions of the size x size box around each position that lie in the map."""
    with torch.inference_mode(False), torch.no_grad():
        def inside(length: int) -> torch.Tensor:
            position = torch.arange(length, device=device)
            return ((position + size // 2).clamp(max=length - 1) - (position - size // 2).clamp(min=0) + 1).double()
        return (1.0 / (inside(height)[:, None] * inside(width)[None, :])).to(dtype)


class TwoWayBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, first: bool) -> None:
        super().__init__()
        self.first = first
        self.self_attn = TokenAttention(dim, heads)
        self.cross_attn_token_to_image = TokenAttention(dim, heads, 2)
        self.cross_attn_image_to_token = TokenAttention(dim, heads, 2)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.ReLU(), nn.Linear(mlp_dim, dim))
        self.norm1, self.norm2, self.norm3, self.norm4 = (LayerNorm(dim) for _ in range(4))

    def forward(self, queries, keys, query_pe, key_pe, height: int, width: int):
        if self.first:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        image_keys = multiscale_keys(keys, height, width) + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, image_keys, keys))
        queries = self.norm3(queries + self.mlp(queries))
        keys = self.norm4(keys + self.cross_attn_image_to_token(keys + key_pe, queries + query_pe, queries))
        return queries, keys


class ECMDecoder(nn.Module):
    def __init__(self, dim: int = 256, heads: int = 8, depth: int = 2, mlp_dim: int = 256, masks: int = 3) -> None:
        super().__init__()
        self.masks = masks
        self.output_tokens = nn.Parameter(torch.randn(1 + masks, dim) * 0.02)  # an IoU token, then one per mask
        self.no_mask_embed = nn.Parameter(torch.randn(dim) * 0.02)
        self.register_buffer("fourier_matrix", torch.randn(2, dim // 2), persistent=True)
        self.layers = nn.ModuleList(TwoWayBlock(dim, heads, mlp_dim, first=i == 0) for i in range(depth))
        self.final_attn_token_to_image = TokenAttention(dim, heads, 2)
        self.norm_final_attn = LayerNorm(dim)
        self.output_upscaling = nn.Sequential(nn.ConvTranspose2d(dim, dim // 4, 2, stride=2), LayerNorm2d(dim // 4),
                                              nn.GELU(), nn.ConvTranspose2d(dim // 4, dim // 8, 2, stride=2), nn.GELU())
        self.hypernetworks = nn.ModuleList(nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(),
                                                         nn.Linear(dim, dim // 8)) for _ in range(masks))

    def positional_encoding(self, height: int, width: int) -> torch.Tensor:
        """Random Fourier features of the normalised grid position, (H*W, dim)."""
        ys = (torch.arange(height, device=self.fourier_matrix.device) + 0.5) / height
        xs = (torch.arange(width, device=self.fourier_matrix.device) + 0.5) / width
        coords = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2) * 2 - 1
        projected = 2 * math.pi * coords @ self.fourier_matrix
        return torch.cat([projected.sin(), projected.cos()], dim=-1)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        batch, dim, height, width = embedding.shape
        keys = tokens(embedding + self.no_mask_embed[:, None, None])
        key_pe = self.positional_encoding(height, width).to(keys.dtype)[None]
        query_pe = self.output_tokens[None].repeat(batch, 1, 1).to(keys.dtype)  # a copy, not a view of the parameter
        queries = query_pe
        for layer in self.layers:
            queries, keys = layer(queries, keys, query_pe, key_pe, height, width)
        image_keys = multiscale_keys(keys, height, width) + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(queries + query_pe, image_keys, keys))
        upscaled = self.output_upscaling(grid(keys, height, width))  # channels-last, (B, C', 4H, 4W)
        weights = torch.stack([mlp(queries[:, 1 + m]) for m, mlp in enumerate(self.hypernetworks)], dim=1)
        masks = torch.bmm(weights.to(upscaled.dtype), tokens(upscaled).transpose(1, 2))  # (B, masks, 16 H W)
        return masks.unflatten(-1, upscaled.shape[2:])


class HRMedSeg(nn.Module):
    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, dim: int = 96,
                 depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), checkpointing: bool = False) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError("HRMedSeg is 2D")
        self.out_channels = out_channels
        self.size_divisor = 16
        self.image_encoder = LGViT(in_channels, dim, depths, heads, checkpointing=checkpointing)
        self.neck = nn.Sequential(nn.Conv2d(dim, 256, 1, bias=False), LayerNorm2d(256),
                                  nn.Conv2d(256, 256, 3, padding=1, bias=False), LayerNorm2d(256))
        # The authors' layout has three mask tokens and outputs the first; more classes get more tokens.
        self.mask_decoder = ECMDecoder(masks=max(3, out_channels))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        masks = self.mask_decoder(self.neck(self.image_encoder(image)))[:, :self.out_channels]
        return F.interpolate(masks, size=image.shape[2:], mode="bilinear", align_corners=False)


register_network(NetworkSpec(
    name="hrmedseg", builder=HRMedSeg, spatial_dims=(2,), default_preset="default",
    description="HRMedSeg: gated linear-attention encoder + cross-multiscale decoder, 2D high resolution",
    presets={"default": {}, "checkpointed": {"checkpointing": True}},
    preset_dims={"default": 2, "checkpointed": 2},
))
