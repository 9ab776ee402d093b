"""The vision encoder: any Hugging Face vision tower turned into patch features.

`VisionEncoder` wraps DINOv2, ViT, CLIP-vision or SigLIP-vision models (pretrained, or random
init from a config for tests). It owns its image preprocessing, so callers hand it PIL images,
and it returns patch features (B, N, D) on a known (h, w) grid, with the attention maps when
asked. Prefix tokens (CLS, registers) are dropped from the features but kept in the attentions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from .config import EncoderConfig

# Multimodal checkpoints (CLIP, SigLIP) hold a text tower too; load only the vision half.
_VISION_CLASSES = {
    "clip": "CLIPVisionModel",
    "siglip": "SiglipVisionModel",
    "siglip2": "Siglip2VisionModel",
}


@dataclass
class EncoderOutput:
    features: torch.Tensor  # (B, N_patches, D) patch features, prefix tokens removed
    grid: tuple[int, int]  # (h, w) patch grid; N_patches == h * w
    num_prefix_tokens: int  # CLS / register tokens before the patches in `attentions`
    attentions: tuple[torch.Tensor, ...] | None = None  # per layer (B, heads, T, T), T = prefix + N


def _load_hf_vision_model(config: EncoderConfig, source: str) -> nn.Module:
    import transformers

    kwargs = {"attn_implementation": config.attn_implementation}
    if not source:
        hf_config = transformers.AutoConfig.for_model(**config.hf_config)
        hf_config._attn_implementation = config.attn_implementation
        return transformers.AutoModel.from_config(hf_config, **kwargs)
    hf_config = transformers.AutoConfig.from_pretrained(source)
    class_name = _VISION_CLASSES.get(hf_config.model_type)
    if class_name is not None:
        return getattr(transformers, class_name).from_pretrained(source, **kwargs)
    if hf_config.model_type == "vit":
        return transformers.ViTModel.from_pretrained(source, add_pooling_layer=False, **kwargs)
    return transformers.AutoModel.from_pretrained(source, **kwargs)


class VisionEncoder(nn.Module):
    """Frozen (by default) vision tower + its preprocessing. Call `encode(images)`."""

    def __init__(self, config: EncoderConfig, model: nn.Module | None = None, source: str = ""):
        super().__init__()
        self.config = config
        self.model = model if model is not None else _load_hf_vision_model(config, source)
        hf = self.model.config
        self.hidden_size: int = hf.hidden_size
        self.patch_size: int = hf.patch_size
        side = config.image_size // self.patch_size
        self.grid: tuple[int, int] = (side, side)
        if config.frozen:
            self.model.requires_grad_(False)
            self.model.eval()

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def train(self, mode: bool = True):
        # A frozen encoder stays in eval mode (no dropout) even when the whole VLM trains.
        super().train(mode)
        if self.config.frozen:
            self.model.eval()
        return self

    # ---- preprocessing -------------------------------------------------------------------
    def _to_tensor(self, image: Image.Image) -> torch.Tensor:
        c = self.config
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0  # (H, W, 3)
        mean, std = np.asarray(c.mean, np.float32), np.asarray(c.std, np.float32)
        return torch.from_numpy(((array - mean) / std).transpose(2, 0, 1).copy())  # (3, H, W)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Resize the shortest edge to `resize`, centre-crop `image_size`, normalise. -> (3, S, S)"""
        c = self.config
        w, h = image.size
        scale = c.resize / min(w, h)
        nw, nh = max(c.image_size, round(w * scale)), max(c.image_size, round(h * scale))
        image = image.convert("RGB").resize((nw, nh), Image.BICUBIC)
        left, top = (nw - c.image_size) // 2, (nh - c.image_size) // 2
        image = image.crop((left, top, left + c.image_size, top + c.image_size))
        return self._to_tensor(image)

    def tiles(self, image: Image.Image, max_tiles: int) -> list[torch.Tensor]:
        """Split an image into a rows x cols grid of encoder-sized tiles (detail='high').

        The grid is the one (rows * cols <= max_tiles) whose aspect ratio is closest to the image's,
        preferring more tiles on ties; the image is resized to fill it exactly, so nothing is cropped.
        """
        s = self.config.image_size
        w, h = image.size
        choices = [
            (r, c)
            for r in range(1, max_tiles + 1)
            for c in range(1, max_tiles + 1)
            if r * c <= max_tiles
        ]
        rows, cols = min(
            choices, key=lambda rc: (abs(np.log((rc[1] / rc[0]) / (w / h))), -rc[0] * rc[1])
        )
        image = image.convert("RGB").resize((cols * s, rows * s), Image.BICUBIC)
        return [
            self._to_tensor(image.crop((x * s, y * s, (x + 1) * s, (y + 1) * s)))
            for y in range(rows)
            for x in range(cols)
        ]

    # ---- forward -------------------------------------------------------------------------
    def forward(self, pixel_values: torch.Tensor, output_attentions: bool = False) -> EncoderOutput:
        """pixel_values (B, 3, S, S) -> EncoderOutput with features (B, h*w, D)."""
        if output_attentions and self.config.attn_implementation != "eager":
            raise RuntimeError(
                "the encoder was loaded with attn_implementation='sdpa', which returns no attention "
                "maps: build it with EncoderConfig(attn_implementation='eager')"
            )
        param = next(self.model.parameters())
        pixel_values = pixel_values.to(device=param.device, dtype=param.dtype)
        want_hidden = self.config.feature_layer != -1
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.frozen):
            out = self.model(
                pixel_values=pixel_values,
                output_attentions=output_attentions,
                output_hidden_states=want_hidden,
            )
        hidden = (
            out.hidden_states[self.config.feature_layer] if want_hidden else out.last_hidden_state
        )
        n_prefix = hidden.shape[1] - self.num_patches  # CLS (+ registers); 0 for SigLIP
        if n_prefix < 0:
            raise RuntimeError(
                f"the encoder returned {hidden.shape[1]} tokens for a {self.grid} patch grid: "
                "check EncoderConfig.image_size against the model's patch size"
            )
        features = hidden[:, n_prefix:]  # (B, N_patches, D)
        attentions = tuple(out.attentions) if output_attentions else None
        return EncoderOutput(features, self.grid, n_prefix, attentions)
