"""Configs: defaults are usable, bad values fail with messages that say how to fix them."""

import pytest

from vlkit.config import EncoderConfig, LMConfig, VLMConfig
from vlkit.errors import ConfigError
from vlkit.presets import preset_config


def test_defaults_describe_the_small_model():
    config = VLMConfig()
    assert config.encoder.source == "offline:dinov2-small"
    assert config.lm.source == "offline:smollm2-135m-instruct"
    assert VLMConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: EncoderConfig(hf_config={"model_type": "vit"}), "set source=''"),
        (lambda: EncoderConfig(source="", hf_config=None), "needs either `source`"),
        (
            lambda: EncoderConfig(source="", hf_config={"hidden_size": 8}),
            "must contain 'model_type'",
        ),
        (lambda: EncoderConfig(image_size=224, resize=200), "set resize >= image_size"),
        (lambda: LMConfig(dtype="float8"), "use auto, float32, bfloat16 or float16"),
        (lambda: LMConfig(attn_implementation="flash"), "use 'eager' or 'sdpa'"),
        (lambda: VLMConfig(auto_detail="auto"), "use 'low' or 'high'"),
        (lambda: preset_config("medium"), "choose one of tiny, small"),
    ],
)
def test_bad_values_say_how_to_fix(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_every_preset_builds_a_valid_config():
    for name in ("tiny", "small", "siglip-smollm2-360m", "clip-qwen2.5-0.5b"):
        config = preset_config(name)
        assert config.preset == name
        assert VLMConfig.from_dict(config.to_dict()) == config
