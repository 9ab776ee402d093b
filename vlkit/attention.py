"""Where a model looks: attention maps over image patches, and plain matplotlib pictures of them.

Two views. The language model's: `capture_attention` records, for each answer token, the attention
from the step that produced it to every image token, per layer and head (and attention x gradient),
and maps image tokens back to patches through the projector's token->patch map. The encoder's own:
CLS attention per layer (mean over heads) and attention rollout (Abnar & Zuidema, 2020), which multiplies the layers' head-averaged attentions, each mixed
with the identity for the residual stream, to follow how the CLS token draws on the patches
through the whole network. `plot_attention` overlays any (h, w) map on the image the encoder saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


def rollout_matrix(attentions: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Attention rollout over all layers: (B, T, T), row i = how token i draws on every input token.

    Each layer's head-averaged attention is mixed half-and-half with the identity (the residual
    stream) and renormalised, then the layers are multiplied from first to last.
    """
    rollout = None
    for att in attentions:
        a = att.float().mean(dim=1)  # (B, T, T)
        a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], device=a.device)  # residual connection
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return rollout


def attention_rollout(attentions: tuple[torch.Tensor, ...], num_prefix: int, grid: tuple[int, int]):
    """Attention rollout to the patches. -> (B, h, w), each map summing to 1 (or all zero).

    With a CLS token the map is the CLS row; without one (SigLIP) it is the mean over all rows,
    i.e. how much each patch feeds the whole image's representation.
    """
    rollout = rollout_matrix(attentions)
    rows = rollout[:, 0] if num_prefix >= 1 else rollout.mean(dim=1)  # (B, T)
    patches = rows[:, num_prefix:]  # (B, N)
    patches = patches / patches.sum(dim=-1, keepdim=True).clamp(min=1e-12)
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

    `clip` caps the colour scale at that percentile of the map: a handful of patches often take
    several times their share of attention (in ViTs without registers, high-norm artifact
    patches can take most of it), and an uncapped scale would leave the rest of the map black.
    `clip=None` shows the raw range.
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


# ---- the language model's view: answer tokens -> image patches ----------------------------------


@dataclass
class ImageAttention:
    """Where an answer's tokens looked in one image, captured by `capture_attention`."""

    view: np.ndarray  # (S, S, 3) the global view the encoder saw, floats in [0, 1]
    grid: tuple[int, int]  # (h, w) patch grid
    token_patch_map: torch.Tensor  # (T, h*w) image token -> patch weights (from the projector)
    attention: (
        torch.Tensor
    )  # (layers, heads, n_answer, T) attention from answer steps to image tokens
    gradient: torch.Tensor | None = (
        None  # same shape: attention x d log p(token) / d attention, ReLU'd
    )
    encoder_attentions: tuple[torch.Tensor, ...] | None = (
        None  # per layer (heads, P, P), P = prefix + h*w
    )
    num_prefix_tokens: int = 0

    def heatmap(
        self,
        token: int | None = None,
        layer: int | str = "mean",
        head: int | str = "mean",
        method: str = "attention",
    ):
        """An (h, w) map over patches for answer token `token` (None = all answer tokens averaged).

        method: "attention" (LM attention to image tokens, mapped back to patches), "gradient"
        (attention x gradient), "rollout" (the encoder's own attention rollout; ignores token, layer
        and head), "cls" (the encoder's last-layer CLS attention).
        """
        if method in ("rollout", "cls"):
            atts = tuple(a[None] for a in self.encoder_attentions)
            if method == "rollout":
                return attention_rollout(atts, self.num_prefix_tokens, self.grid)[0]
            return cls_attention(atts, self.num_prefix_tokens, self.grid)[0]
        if method == "gradient":
            if self.gradient is None:
                raise ValueError("no gradient captured: call capture_attention(..., gradient=True)")
            values = self.gradient
        elif method == "attention":
            values = self.attention
        else:
            raise ValueError(f"method={method!r}: use attention, gradient, rollout or cls")
        values = _reduce(values, layer, dim=0, what="layer")  # (heads, n_answer, T)
        values = _reduce(values, head, dim=0, what="head")  # (n_answer, T)
        values = values.mean(dim=0) if token is None else values[token]  # (T,)
        patches = self.token_patch_map.T @ values.float()  # (h*w,)
        return patches.reshape(self.grid)


def _reduce(values: torch.Tensor, which: int | str, dim: int, what: str) -> torch.Tensor:
    if which == "mean":
        return values.mean(dim=dim)
    if which == "max":
        return values.max(dim=dim).values
    if isinstance(which, int):
        return values.select(dim, which)
    raise ValueError(f"{what}={which!r}: use an index, 'mean' or 'max'")


@dataclass
class AttentionCapture:
    """Everything `capture_attention` records for one prompt and answer."""

    prompt: str
    answer: str
    tokens: list[str]  # the answer's tokens, as text pieces
    token_ids: list[int]
    images: list[ImageAttention] = field(default_factory=list)


def capture_attention(
    model,
    images,
    prompt: str,
    answer: str | None = None,
    max_new_tokens: int = 32,
    gradient: bool = True,
    gradient_tokens=None,
):
    """Attention from each answer token to each image's patches, per LM layer and head.

    If `answer` is None the model first generates one (greedy); either way the answer is then
    teacher-forced in one forward pass with eager attention. A token's attention is read at the
    step that *produced* it (the query one position before the token). Each image keeps its own
    maps; with detail='high' only the global view's tokens are mapped (tiles are not drawn).
    `gradient_tokens` limits the attention x gradient view (one backward pass per token) to these
    answer-token indices, the others getting zeros; it may also be a function of the answer's
    token ids that returns the indices, for callers that choose tokens by what they are.
    """
    from .images import load_image
    from .llms import IGNORE_INDEX

    images = [
        load_image(img) for img in (images if isinstance(images, (list, tuple)) else [images])
    ]
    if answer is None:
        answer = model.generate(prompt, images, max_new_tokens=max_new_tokens).text
    placeholders = "\n".join([model.config.image_token] * len(images))
    chat = [
        {"role": "user", "content": f"{placeholders}\n{prompt}"},
        {"role": "assistant", "content": answer},
    ]
    batch = model.prepare([chat], [images], details=[["low"] * len(images)])
    labels = batch["labels"][0]
    positions = [int(p) for p in torch.nonzero(labels != IGNORE_INDEX).flatten()]
    eos = model.lm.eos_token_ids
    ends = [i for i, p in enumerate(positions) if int(labels[p]) in eos]
    positions = (
        positions[: ends[0]] if ends else positions
    )  # the end-of-turn marker and after are not words
    token_ids = [int(labels[p]) for p in positions]
    image_positions = torch.nonzero(batch["image_mask"][0]).flatten()  # (sum T,)

    base = model.lm.base_model()
    previous = base.config._attn_implementation
    base.set_attn_implementation("eager")  # sdpa and flash kernels return no attention weights
    try:
        with torch.set_grad_enabled(gradient):
            image_embeds, enc = model.encode_images(batch["pixel_values"], output_attentions=True)
            device = model.device
            embeds = model.embed_inputs(
                batch["input_ids"].to(device),
                batch["image_mask"].to(device),
                image_embeds=image_embeds,
            )
            out = model.lm(inputs_embeds=embeds, output_attentions=True, use_cache=False)
            atts = out.attentions  # per layer (1, heads, L, L)
            for a in atts:
                if gradient:
                    a.retain_grad()
            queries = torch.tensor([p - 1 for p in positions])
            stacked = torch.stack(
                [a[0][:, queries][:, :, image_positions] for a in atts]
            )  # (layers, heads, n, sumT)
            grads = None
            if gradient and positions:
                grads = torch.zeros_like(stacked)
                logp = torch.log_softmax(out.logits[0].float(), dim=-1)
                if callable(gradient_tokens):
                    gradient_tokens = gradient_tokens(token_ids)
                wanted = set(range(len(token_ids)) if gradient_tokens is None else gradient_tokens)
                last = max(wanted, default=-1)
                for i, (q, tid) in enumerate(zip(queries.tolist(), token_ids, strict=True)):
                    if i not in wanted:
                        continue
                    for a in atts:
                        a.grad = None
                    logp[q, tid].backward(retain_graph=i < last)
                    g = torch.stack(
                        [a.grad[0][:, q][:, image_positions] for a in atts]
                    )  # (layers, heads, sumT)
                    grads[:, :, i] = (stacked[:, :, i] * g).clamp(min=0)
    finally:
        base.set_attn_implementation(previous)

    capture = AttentionCapture(
        prompt, answer, [model.lm.tokenizer.decode([t]) for t in token_ids], token_ids
    )
    per_view = model.image_tokens_per_view
    for i in range(len(images)):
        span = slice(i * per_view, (i + 1) * per_view)  # detail='low': one view per image
        view = batch["pixel_values"][i]
        capture.images.append(
            ImageAttention(
                view=view_image(view, model.encoder.config.mean, model.encoder.config.std),
                grid=enc.grid,
                token_patch_map=model.projector.token_patch_map(enc.grid, index=i),
                attention=stacked[..., span].detach().float().cpu(),
                gradient=None if grads is None else grads[..., span].detach().float().cpu(),
                encoder_attentions=tuple(a[i].detach().float().cpu() for a in enc.attentions),
                num_prefix_tokens=enc.num_prefix_tokens,
            )
        )
    return capture


def plot_token_grid(
    capture: AttentionCapture,
    image: int = 0,
    method: str = "attention",
    layer="mean",
    head="mean",
    columns: int = 6,
    alpha: float = 0.55,
):
    """One small overlay per answer token (plus the mean over tokens) for one image. -> Figure"""
    import matplotlib.pyplot as plt

    target = capture.images[image]
    panels = [("all tokens (mean)", None)] + [
        (repr(t.strip() or t), i) for i, t in enumerate(capture.tokens)
    ]
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.1 * columns, 2.3 * rows), squeeze=False)
    for ax, (title, token) in zip(axes.flat, panels, strict=False):
        plot_attention(
            target.view, target.heatmap(token, layer, head, method), ax=ax, alpha=alpha, title=title
        )
    for ax in axes.flat[len(panels) :]:
        ax.set_axis_off()
    fig.suptitle(f"{method}, layer {layer}, head {head}: answer {capture.answer!r}", fontsize=9)
    fig.tight_layout()
    return fig
