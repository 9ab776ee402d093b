"""Every projector: output shapes, token counts, and the token -> patch maps attention relies on."""

import pytest
import torch

from vlkit.config import ProjectorConfig
from vlkit.projectors import build_projector


@pytest.mark.parametrize(
    "kind,grid,tokens",
    [
        ("linear", (8, 8), 64),
        ("mlp", (8, 8), 64),
        ("pixel_shuffle", (8, 8), 16),
        ("pixel_shuffle", (7, 5), 12),  # odd grid: padded to 8x6, then 4x3 tokens
        ("resampler", (8, 8), 32),
    ],
)
def test_shapes_and_maps(kind, grid, tokens):
    proj = build_projector(ProjectorConfig(kind=kind), in_dim=48, out_dim=64)
    n = grid[0] * grid[1]
    out = proj(torch.randn(2, n, 48), grid)
    assert out.shape == (2, tokens, 64)
    assert proj.num_tokens(grid) == tokens
    m = proj.token_patch_map(grid)
    assert m.shape == (tokens, n)
    assert torch.allclose(m.sum(dim=1), torch.ones(tokens), atol=1e-5)
    # every patch feeds at least one token
    assert bool((m.sum(dim=0) > 0).all())


def test_pixel_shuffle_groups_neighbouring_patches():
    """Token t must concatenate exactly the k x k patches its map row names, in row-major order."""
    cfg = ProjectorConfig(kind="pixel_shuffle", shuffle_factor=2)
    proj = build_projector(cfg, in_dim=1, out_dim=8)
    grid = (4, 6)
    features = torch.arange(24, dtype=torch.float32).reshape(1, 24, 1)  # value = patch index
    seen = {}
    proj.net = torch.nn.Identity()  # look at the shuffled input itself
    merged = proj(features, grid)[0]  # (T, 4)
    for t in range(merged.shape[0]):
        seen[t] = sorted(int(v) for v in merged[t])
    m = proj.token_patch_map(grid)
    for t, patches in seen.items():
        assert patches == sorted(int(i) for i in torch.nonzero(m[t]).flatten())
    assert seen[0] == [0, 1, 6, 7]
    assert seen[1] == [2, 3, 8, 9]
    assert seen[3] == [12, 13, 18, 19]


def test_resampler_map_is_its_cross_attention():
    proj = build_projector(ProjectorConfig(kind="resampler", num_queries=4), in_dim=8, out_dim=16)
    grid = (3, 3)
    assert torch.allclose(
        proj.token_patch_map(grid), torch.full((4, 9), 1 / 9)
    )  # before any forward
    proj(torch.randn(1, 9, 8), grid)
    m = proj.token_patch_map(grid)
    assert torch.allclose(m, proj.last_attention[0])
    assert not torch.allclose(m, torch.full((4, 9), 1 / 9))


def test_same_seed_same_weights():
    a = build_projector(ProjectorConfig(kind="mlp", seed=3), 8, 16)
    b = build_projector(ProjectorConfig(kind="mlp", seed=3), 8, 16)
    c = build_projector(ProjectorConfig(kind="mlp", seed=4), 8, 16)
    assert all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    assert not torch.equal(a.net[0].weight, c.net[0].weight)


def test_bad_config_says_what_to_do():
    from vlkit.errors import ConfigError

    with pytest.raises(ConfigError, match="choose one of linear, mlp, pixel_shuffle, resampler"):
        ProjectorConfig(kind="qformer")
