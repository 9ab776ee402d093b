"""Where a model looks: attention maps over image patches, and plain matplotlib pictures of them.

So far this holds the encoder's own view: CLS attention per layer (mean over heads) and attention
rollout (Abnar & Zuidema, 2020), which multiplies the layers' head-averaged attentions, each mixed
with the identity for the residual stream, to follow how the CLS token draws on the patches
through the whole network. `plot_attention` overlays any (h, w) map on the image the encoder saw.
"""

from __future__ import annotations

import numpy as np
import torch


def cls_attention(
    attentions: tuple[torch.Tensor, ...], num_prefix: int, grid: tuple[int, int], layer: int = -1
):
    """CLS -> patch attention of one layer, averaged over heads. -> (B, h, w)"""
    if num_prefix < 1:
        raise ValueError(
            "this encoder has no CLS token (e.g. SigLIP): use attention_rollout instead"
        )
    att = attentions[layer].float().mean(dim=1)  # (B, T, T)
    return att[:, 0, num_prefix:].reshape(-1, *grid)  # (B, h, w)


def attention_rollout(attentions: tuple[torch.Tensor, ...], num_prefix: int, grid: tuple[int, int]):
    """Attention rollout to the patches. -> (B, h, w), each map summing to 1.

    With a CLS token the map is the CLS row; without one (SigLIP) it is the mean over all rows,
    i.e. how much each patch feeds the whole image's representation.
    """
    rollout = None
    for att in attentions:
        a = att.float().mean(dim=1)  # (B, T, T)
        a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], device=a.device)  # residual connection
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    rows = rollout[:, 0] if num_prefix >= 1 else rollout.mean(dim=1)  # (B, T)
    patches = rows[:, num_prefix:]  # (B, N)
    patches = patches / patches.sum(dim=-1, keepdim=True)
    return patches.reshape(-1, *grid)  # (B, h, w)


def view_image(pixel_values: torch.Tensor, mean, std) -> np.ndarray:
    """Undo the encoder's normalisation: (3, S, S) tensor -> (S, S, 3) floats in [0, 1]."""
    x = pixel_values.detach().float().cpu().numpy().transpose(1, 2, 0)
    return np.clip(x * np.asarray(std) + np.asarray(mean), 0.0, 1.0)


def plot_attention(
    image,
    heatmap,
    ax=None,
    alpha: float = 0.5,
    cmap: str = "inferno",
    title: str | None = None,
    clip: float | None = 98.0,
):
    """Overlay an (h, w) patch heatmap on an image (array or PIL), stretched to the image's size.

    `clip` caps the colour scale at that percentile of the map: ViTs without registers (DINOv2-S
    among them) put a large share of attention on a few artifact patches, which would otherwise
    leave the rest of the map black. `clip=None` shows the raw range.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    image = np.asarray(image)
    heat = (
        heatmap.detach().float().cpu().numpy()
        if isinstance(heatmap, torch.Tensor)
        else np.asarray(heatmap)
    )
    if clip is not None:
        heat = np.minimum(heat, np.percentile(heat, clip))
    span = float(heat.max() - heat.min())
    heat = (heat - heat.min()) / span if span > 0 else np.zeros_like(heat)
    height, width = image.shape[:2]
    ax.imshow(image)
    # nearest-neighbour blocks keep each patch visible as a patch rather than a blur
    ax.imshow(heat, cmap=cmap, alpha=alpha, extent=(0, width, height, 0), interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return ax
