"""Attention maps: hand-built attention gives the expected patches for every projector; rollout;
capture on the tiny model."""

import pytest
import torch

from vlkit.attention import ImageAttention, attention_rollout, capture_attention, rollout_matrix
from vlkit.config import ProjectorConfig
from vlkit.projectors import build_projector


def _one_hot_attention(n_tokens: int, token: int) -> torch.Tensor:
    att = torch.zeros(2, 3, 1, n_tokens)  # (layers, heads, n_answer, T)
    att[..., token] = 1.0
    return att


@pytest.mark.parametrize(
    "kind,token,expected",
    [
        ("linear", 5, {5: 1.0}),
        ("mlp", 9, {9: 1.0}),
        ("pixel_shuffle", 0, {0: 0.25, 1: 0.25, 4: 0.25, 5: 0.25}),  # 4x4 grid, k=2: top-left block
        ("pixel_shuffle", 3, {10: 0.25, 11: 0.25, 14: 0.25, 15: 0.25}),  # bottom-right block
    ],
)
def test_hand_built_attention_lands_on_the_right_patches(kind, token, expected):
    grid = (4, 4)
    proj = build_projector(ProjectorConfig(kind=kind), in_dim=8, out_dim=16)
    t = proj.num_tokens(grid)
    cap = ImageAttention(
        view=None,
        grid=grid,
        token_patch_map=proj.token_patch_map(grid),
        attention=_one_hot_attention(t, token),
    )
    heat = cap.heatmap(token=0).flatten()
    want = torch.zeros(16)
    for patch, value in expected.items():
        want[patch] = value
    assert torch.allclose(heat, want)


def test_resampler_queries_spread_by_their_own_attention():
    grid = (2, 2)
    proj = build_projector(ProjectorConfig(kind="resampler", num_queries=3), in_dim=8, out_dim=16)
    proj(torch.randn(1, 4, 8), grid)
    cap = ImageAttention(
        view=None,
        grid=grid,
        token_patch_map=proj.token_patch_map(grid),
        attention=_one_hot_attention(3, 2),
    )
    assert torch.allclose(cap.heatmap(token=0).flatten(), proj.last_attention[0, 2])


def test_layer_and_head_choices():
    grid = (1, 2)
    att = torch.zeros(2, 2, 1, 2)
    att[0, 0, 0] = torch.tensor([1.0, 0.0])  # layer 0 head 0 looks left
    att[1, 1, 0] = torch.tensor([0.0, 1.0])  # layer 1 head 1 looks right
    cap = ImageAttention(view=None, grid=grid, token_patch_map=torch.eye(2), attention=att)
    assert cap.heatmap(token=0, layer=0, head=0).flatten().tolist() == [1.0, 0.0]
    assert cap.heatmap(token=0, layer=1, head="max").flatten().tolist() == [0.0, 1.0]
    assert cap.heatmap(token=0, layer="mean", head="mean").flatten().tolist() == [0.25, 0.25]
    with pytest.raises(ValueError, match="layer="):
        cap.heatmap(layer="median")


def test_rollout_of_identity_attention_is_the_identity():
    eye = torch.eye(5).expand(1, 2, 5, 5)  # (B, heads, T, T)
    assert torch.allclose(rollout_matrix((eye, eye, eye))[0], torch.eye(5))
    # and the CLS row then holds nothing for the patches: an all-zero map, not NaN
    assert torch.equal(attention_rollout((eye,), 1, (2, 2)), torch.zeros(1, 2, 2))


def test_rollout_follows_attention_through_layers():
    # layer 1: CLS copies patch 2 entirely; layer 2: identity. Rollout puts CLS's mass on patch 2.
    a = torch.eye(4)
    a[0] = torch.tensor([0.0, 0.0, 1.0, 0.0])
    heat = attention_rollout((a[None, None], torch.eye(4)[None, None]), 1, (1, 3))
    assert int(heat.flatten().argmax()) == 1  # patch index 1 == token 2


def test_capture_on_the_tiny_model(tiny, image, image2):
    cap = capture_attention(tiny, [image, image2], "what is this ?", answer="a red circle .")
    assert cap.tokens == ["a", "red", "circle", "."]
    layers, heads = 2, 4
    for img in cap.images:
        assert img.attention.shape == (layers, heads, 4, 64)
        assert img.gradient.shape == img.attention.shape
        assert bool((img.attention >= 0).all()) and float(img.attention.sum(-1).max()) <= 1.0 + 1e-5
        assert bool((img.gradient >= 0).all()) and float(img.gradient.abs().sum()) > 0
        for method in ("attention", "gradient", "rollout", "cls"):
            assert img.heatmap(token=1, method=method).shape == (8, 8)
    # the two images get their own maps
    assert not torch.allclose(cap.images[0].attention, cap.images[1].attention)
    assert tiny.lm.base_model().config._attn_implementation == "sdpa"  # restored afterwards
