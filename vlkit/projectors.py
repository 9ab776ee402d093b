"""The projector zoo: patch features (B, N, D_enc) -> soft-prompt vectors (B, T, D_lm).

Four kinds, from the papers that use them:
- `linear`: one Linear layer per patch (MiniGPT-4). T = N.
- `mlp`: Linear-GELU-Linear per patch (LLaVA-1.5). T = N.
- `pixel_shuffle`: concatenate each k x k block of neighbouring patches, then the MLP
  (Idefics3 / SmolVLM). T = N / k^2: fewer tokens, so a cheaper LM pass.
- `resampler`: a few learned queries cross-attend to all patches (a Q-Former-lite, as in
  Flamingo's perceiver resampler). T = num_queries whatever the image size.

Every projector reports `num_tokens(grid)` and `token_patch_map(grid)`: a (T, N) matrix whose row t
says how much each patch contributes to image token t. Attention on image tokens is drawn on the
image through this map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ProjectorConfig


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_out))


class Projector(nn.Module):
    """Base class: subclasses set `self.net` and may override the token bookkeeping."""

    def __init__(self, config: ProjectorConfig, in_dim: int, out_dim: int):
        super().__init__()
        self.config, self.in_dim, self.out_dim = config, in_dim, out_dim
        self.hidden_dim = config.hidden_dim or out_dim

    def num_tokens(self, grid: tuple[int, int]) -> int:
        return grid[0] * grid[1]

    def token_patch_map(self, grid: tuple[int, int], index: int = 0) -> torch.Tensor:
        """(T, N) weights mapping image tokens back to patches; identity for per-patch projectors."""
        return torch.eye(grid[0] * grid[1])

    def forward(self, features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return self.net(features)  # (B, N, D_lm)


class LinearProjector(Projector):
    def __init__(self, config, in_dim, out_dim):
        super().__init__(config, in_dim, out_dim)
        self.net = nn.Linear(in_dim, out_dim)


class MLPProjector(Projector):
    def __init__(self, config, in_dim, out_dim):
        super().__init__(config, in_dim, out_dim)
        self.net = _mlp(in_dim, self.hidden_dim, out_dim)


class PixelShuffleProjector(Projector):
    """Merge k x k neighbouring patches into one token (space-to-depth), then an MLP."""

    def __init__(self, config, in_dim, out_dim):
        super().__init__(config, in_dim, out_dim)
        self.k = config.shuffle_factor
        self.net = _mlp(in_dim * self.k * self.k, self.hidden_dim, out_dim)

    def _padded(self, grid):
        k = self.k
        return math.ceil(grid[0] / k) * k, math.ceil(grid[1] / k) * k

    def num_tokens(self, grid):
        hp, wp = self._padded(grid)
        return (hp // self.k) * (wp // self.k)

    def token_patch_map(self, grid, index=0):
        h, w = grid
        k = self.k
        hp, wp = self._padded(grid)
        m = torch.zeros(self.num_tokens(grid), h * w)
        for row in range(h):
            for col in range(w):
                m[(row // k) * (wp // k) + col // k, row * w + col] = 1.0
        return m / m.sum(dim=1, keepdim=True).clamp(min=1.0)  # padding-only cells stay 0

    def forward(self, features, grid):
        b, n, d = features.shape
        h, w = grid
        k = self.k
        x = features.reshape(b, h, w, d)  # (B, h, w, D)
        hp, wp = self._padded(grid)
        if (hp, wp) != (h, w):  # pad the grid with zeros so k divides both sides
            x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
        x = x.reshape(b, hp // k, k, wp // k, k, d)  # (B, h/k, k, w/k, k, D)
        x = x.permute(0, 1, 3, 2, 4, 5)  # (B, h/k, w/k, k, k, D)
        x = x.reshape(b, (hp // k) * (wp // k), k * k * d)  # (B, T, k*k*D)
        return self.net(x)  # (B, T, D_lm)


def _sincos_2d(grid: tuple[int, int], dim: int, device=None) -> torch.Tensor:
    """Fixed 2-D sine-cosine position codes (MAE style) so the resampler knows where patches are."""
    h, w = grid
    quarter = dim // 4
    omega = 1.0 / (
        10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / max(quarter, 1))
    )
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    parts = []
    for pos in (ys.flatten(), xs.flatten()):
        angles = pos[:, None] * omega[None]  # (N, dim/4)
        parts += [angles.sin(), angles.cos()]
    codes = torch.cat(parts, dim=1)  # (N, 4 * (dim // 4))
    return F.pad(codes, (0, dim - codes.shape[1]))  # (N, dim)


class ResamplerProjector(Projector):
    """A fixed number of learned queries cross-attend to the patch features."""

    def __init__(self, config, in_dim, out_dim):
        super().__init__(config, in_dim, out_dim)
        if out_dim % config.num_heads:
            raise ValueError(
                f"resampler num_heads={config.num_heads} must divide the LM hidden size {out_dim}"
            )
        self.queries = nn.Parameter(torch.randn(config.num_queries, out_dim) * 0.02)
        self.kv_proj = nn.Linear(in_dim, out_dim)
        self.norm_q, self.norm_kv = nn.LayerNorm(out_dim), nn.LayerNorm(out_dim)
        self.attn = nn.MultiheadAttention(out_dim, config.num_heads, batch_first=True)
        self.net = _mlp(out_dim, self.hidden_dim, out_dim)
        self.last_attention: torch.Tensor | None = None  # (B, Q, N) from the latest forward

    def num_tokens(self, grid):
        return self.config.num_queries

    def token_patch_map(self, grid, index=0):
        """Each query's own cross-attention over patches (from the latest forward), else uniform."""
        n = grid[0] * grid[1]
        if self.last_attention is not None and self.last_attention.shape[-1] == n:
            return self.last_attention[index].detach().float().cpu()
        return torch.full((self.config.num_queries, n), 1.0 / n)

    def forward(self, features, grid):
        b = features.shape[0]
        kv = self.kv_proj(features)  # (B, N, D_lm)
        kv = self.norm_kv(kv + _sincos_2d(grid, self.out_dim, kv.device).to(kv.dtype))
        q = self.norm_q(self.queries).unsqueeze(0).expand(b, -1, -1)  # (B, Q, D_lm)
        out, weights = self.attn(q, kv, kv, need_weights=True, average_attn_weights=True)
        self.last_attention = weights.detach()  # (B, Q, N)
        return out + self.net(out)  # (B, Q, D_lm)


PROJECTORS = {
    "linear": LinearProjector,
    "mlp": MLPProjector,
    "pixel_shuffle": PixelShuffleProjector,
    "resampler": ResamplerProjector,
}


def build_projector(config: ProjectorConfig, in_dim: int, out_dim: int) -> Projector:
    """Build a projector of `config.kind`, initialised from `config.seed` (same seed, same weights)."""
    with torch.random.fork_rng(devices=[]):  # CPU generator only; leaves the global seed alone
        torch.manual_seed(config.seed)
        return PROJECTORS[config.kind](config, in_dim, out_dim)
