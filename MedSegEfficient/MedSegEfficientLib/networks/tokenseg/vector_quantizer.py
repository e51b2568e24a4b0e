"""Vector quantisation (VQ-VAE) of token vectors: nearest codebook entry, straight-through gradient, the codebook and
commitment losses, and restarts of codes that nothing uses any more (dead codes).

Codes live in a low-dimensional space (``code_dim``) reached by a linear projection, as factorised codebooks do:
distances are cheap and far more of the codebook stays in use than with full-width codes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class VectorQuantizer(nn.Module):
    def __init__(self, dim: int, codes: int = 4096, code_dim: int = 32, commitment: float = 0.25,
                 usage_decay: float = 0.99, restart_every: int = 25, dead_below: float = 1e-3) -> None:
        super().__init__()
        self.codes, self.commitment = codes, commitment
        self.down, self.up = nn.Linear(dim, code_dim), nn.Linear(code_dim, dim)
        self.codebook = nn.Parameter(torch.empty(codes, code_dim).uniform_(-1.0 / codes, 1.0 / codes))
        self.usage_decay, self.restart_every, self.dead_below = usage_decay, restart_every, dead_below
        # Running code frequencies (not saved in model files: they only steer restarts during training).
        self.register_buffer("usage", torch.full((codes,), 1.0 / codes), persistent=False)
        self.register_buffer("epoch_counts", torch.zeros(codes), persistent=False)
        self.steps = 0
        self.last_loss: torch.Tensor | None = None

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (..., dim) -> (quantised tokens with a straight-through gradient, code indices (...))."""
        with torch.autocast(tokens.device.type, enabled=False):  # distances in float32: float16 ties codes
            latent = self.down(tokens.float())
            flat = latent.reshape(-1, latent.shape[-1])
            distances = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t()
                         + self.codebook.pow(2).sum(1)[None])
            indices = distances.argmin(1)
            quantised = self.codebook[indices].view_as(latent)
            self.last_loss = (F.mse_loss(quantised, latent.detach())
                              + self.commitment * F.mse_loss(latent, quantised.detach()))
            if self.training:
                self._track_usage(indices, flat)
            straight_through = latent + (quantised - latent).detach()
            return self.up(straight_through).to(tokens.dtype), indices.view(latent.shape[:-1])

    @torch.no_grad()
    def _track_usage(self, indices: torch.Tensor, latents: torch.Tensor) -> None:
        counts = torch.bincount(indices, minlength=self.codes).float()
        self.epoch_counts += counts
        self.usage.mul_(self.usage_decay).add_(counts / counts.sum(), alpha=1 - self.usage_decay)
        self.steps += 1
        if self.steps % self.restart_every == 0:
            self.restart_dead_codes(latents)

    @torch.no_grad()
    def restart_dead_codes(self, latents: torch.Tensor) -> int:
        """Move every code used less than ``dead_below`` of the time onto a random recent latent (plus noise)."""
        dead = (self.usage < self.dead_below / self.codes).nonzero().flatten()
        if dead.numel() == 0 or latents.shape[0] == 0:
            return 0
        picks = latents[torch.randint(latents.shape[0], (dead.numel(),), device=latents.device)]
        self.codebook.data[dead] = picks + 0.01 * picks.std() * torch.randn_like(picks)
        self.usage[dead] = 1.0 / self.codes
        return int(dead.numel())

    def usage_report(self) -> str:
        """Codes used since the last report and the perplexity of their distribution; resets the count."""
        counts = self.epoch_counts
        total = float(counts.sum())
        if total == 0:
            return "codebook: no tokens seen"
        probabilities = counts / total
        perplexity = float(torch.exp(-(probabilities * (probabilities + 1e-10).log()).sum()))
        used = int((counts > 0).sum())
        self.epoch_counts.zero_()
        return f"codebook {used}/{self.codes} codes used, perplexity {perplexity:.0f}"
