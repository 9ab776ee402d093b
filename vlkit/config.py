"""One dataclass config per component, composed into `VLMConfig` (saved as a checkpoint's config.json).

Every field has a default and a short comment; `__post_init__` checks values and raises
`ConfigError` saying how to fix them. `VLMConfig.from_dict` refuses unknown fields by name, so a
typo in a hand-written config or a checkpoint from another vlkit version fails loudly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ConfigError

FORMAT_VERSION = 1  # bump when the checkpoint layout changes; from_pretrained refuses other values

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PROJECTOR_KINDS = ("linear", "mlp", "pixel_shuffle", "resampler")
DETAILS = ("low", "high", "auto")
DEFAULT_PROMPT = "Describe the image."  # the caption prompt the shipped checkpoints learned


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass
class EncoderConfig:
    source: str = "offline:dinov2-small"  # folder, hub id or "offline:NAME"; "" = random init
    hf_config: dict | None = None  # Hugging Face config dict (with model_type) when source == ""
    image_size: int = 224  # side of the square crop the encoder sees
    resize: int = 256  # shortest edge before the centre crop (== image_size: no cropping)
    mean: tuple[float, ...] = IMAGENET_MEAN  # per-channel normalisation mean
    std: tuple[float, ...] = IMAGENET_STD  # per-channel normalisation std
    feature_layer: int = -1  # hidden state used as patch features; -1 = last (after final norm)
    frozen: bool = True  # encoder weights stay fixed (MiniGPT-4 / LLaVA stage 1 and 2)
    attn_implementation: str = "eager"  # "eager" returns attention maps; "sdpa" is faster

    def __post_init__(self):
        self.mean, self.std = tuple(self.mean), tuple(self.std)
        _check(
            bool(self.source) or self.hf_config is not None,
            "EncoderConfig needs either `source` (a folder, hub id or 'offline:NAME') or `hf_config` "
            "(a Hugging Face config dict with 'model_type') to build a random-init encoder",
        )
        _check(
            not (self.source and self.hf_config is not None),
            f"EncoderConfig has both source={self.source!r} and hf_config: set source='' to build a "
            "random-init encoder from hf_config, or drop hf_config to load pretrained weights",
        )
        _check(
            self.hf_config is None or "model_type" in self.hf_config,
            "EncoderConfig.hf_config must contain 'model_type' (e.g. 'dinov2', 'vit', 'clip_vision_model')",
        )
        _check(
            self.image_size >= 8,
            f"EncoderConfig.image_size={self.image_size}: use at least 8 pixels",
        )
        _check(
            self.resize >= self.image_size,
            f"EncoderConfig.resize={self.resize} is smaller than image_size={self.image_size}: "
            "set resize >= image_size (equal means no crop)",
        )
        _check(
            len(self.mean) == 3 and len(self.std) == 3 and all(s > 0 for s in self.std),
            "EncoderConfig.mean and std need three values each, std all positive",
        )
        _check(
            self.attn_implementation in ("eager", "sdpa"),
            f"EncoderConfig.attn_implementation={self.attn_implementation!r}: use 'eager' or 'sdpa'",
        )


@dataclass
class ProjectorConfig:
    kind: str = "mlp"  # one of linear | mlp | pixel_shuffle | resampler
    hidden_dim: int = 0  # MLP hidden width; 0 = the language model's hidden size
    shuffle_factor: int = 2  # pixel_shuffle: merge k x k neighbouring patches into one token
    num_queries: int = 32  # resampler: learned queries = image tokens per view
    num_heads: int = 4  # resampler: cross-attention heads (must divide the LM hidden size)
    seed: int = 0  # initialisation seed, so two runs start from the same projector

    def __post_init__(self):
        _check(
            self.kind in PROJECTOR_KINDS,
            f"ProjectorConfig.kind={self.kind!r}: choose one of {', '.join(PROJECTOR_KINDS)}",
        )
        _check(self.hidden_dim >= 0, "ProjectorConfig.hidden_dim must be >= 0 (0 = LM hidden size)")
        _check(self.shuffle_factor >= 1, "ProjectorConfig.shuffle_factor must be >= 1")
        _check(self.num_queries >= 1, "ProjectorConfig.num_queries must be >= 1")
        _check(self.num_heads >= 1, "ProjectorConfig.num_heads must be >= 1")


@dataclass
class LMConfig:
    source: str = (
        "offline:smollm2-135m-instruct"  # folder, hub id or "offline:NAME"; "" = random init
    )
    hf_config: dict | None = None  # Hugging Face config dict (with model_type) when source == ""
    tokenizer: str = ""  # tokenizer source; "" = same as `source`; "words" = vlkit's word-level one
    dtype: str = "auto"  # float32 | bfloat16 | float16 | auto (bf16 on CUDA, float32 on CPU)
    attn_implementation: str = "sdpa"  # "eager" is needed to read attention maps
    system_prompt: str | None = None  # prepended as a system message when the chat has none
    max_length: int = 2048  # prompt + answer tokens accepted; longer prompts raise an error

    def __post_init__(self):
        _check(
            bool(self.source) or self.hf_config is not None,
            "LMConfig needs either `source` (a folder, hub id or 'offline:NAME') or `hf_config` "
            "(a Hugging Face config dict with 'model_type') to build a random-init LM",
        )
        _check(
            not (self.source and self.hf_config is not None),
            f"LMConfig has both source={self.source!r} and hf_config: set source='' to build a "
            "random-init LM from hf_config, or drop hf_config to load pretrained weights",
        )
        _check(
            self.hf_config is None or "model_type" in self.hf_config,
            "LMConfig.hf_config must contain 'model_type' (e.g. 'llama')",
        )
        _check(
            self.dtype in ("auto", "float32", "bfloat16", "float16"),
            f"LMConfig.dtype={self.dtype!r}: use auto, float32, bfloat16 or float16",
        )
        _check(
            self.attn_implementation in ("eager", "sdpa"),
            f"LMConfig.attn_implementation={self.attn_implementation!r}: use 'eager' or 'sdpa'",
        )
        _check(self.max_length >= 16, "LMConfig.max_length must be at least 16 tokens")


@dataclass
class VLMConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)  # default: DINOv2 ViT-S/14
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    lm: LMConfig = field(default_factory=LMConfig)  # default: SmolLM2-135M-Instruct
    preset: str = ""  # the preset this model was built from, if any (informational)
    image_token: str = "<image>"  # placeholder in prompt text where an image's tokens go
    max_images: int = 8  # images accepted in one prompt
    auto_detail: str = "low"  # what detail="auto" means (the shipped projectors train on low)
    high_max_tiles: int = 4  # detail="high": at most this many tiles besides the global view
    training: dict = field(default_factory=dict)  # filled by the trainer: stage, steps, data
    format_version: int = FORMAT_VERSION  # checkpoint layout version
    vlkit_version: str = ""  # vlkit version that wrote the checkpoint

    def __post_init__(self):
        _check(self.image_token.strip() != "", "VLMConfig.image_token must not be empty")
        _check(self.max_images >= 1, "VLMConfig.max_images must be >= 1")
        _check(
            self.auto_detail in ("low", "high"),
            f"VLMConfig.auto_detail={self.auto_detail!r}: use 'low' or 'high'",
        )
        _check(1 <= self.high_max_tiles <= 16, "VLMConfig.high_max_tiles must be between 1 and 16")

    @property
    def projector_trained(self) -> bool:
        """True once a trainer has updated the projector (random-init projectors describe noise)."""
        return int(self.training.get("steps", 0)) > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VLMConfig:
        parts = {"encoder": EncoderConfig, "projector": ProjectorConfig, "lm": LMConfig}
        kwargs = {}
        for key, value in data.items():
            if key in parts:
                kwargs[key] = _build(parts[key], value, key)
            else:
                kwargs[key] = value
        return _build(cls, kwargs, "config")


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping of fields, got {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"unknown field(s) {unknown} in {where}; known fields: {sorted(names)}. "
            "The config may come from a newer vlkit: upgrade vlkit or remove the fields."
        )
    return cls(**values)
