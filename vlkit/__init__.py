"""vlkit: build, train and look inside small vision-language models, in Jupyter.

    from vlkit import VisionLanguageModel
    model = VisionLanguageModel.from_preset("tiny")          # or "small", or a checkpoint folder
    print(model.describe("photo.jpg").text)

The package never imports ipywidgets or IPython at import time; widgets live in `vlkit.widgets`.
"""

__version__ = "0.1.0"

from .config import EncoderConfig, LMConfig, ProjectorConfig, VLMConfig  # noqa: E402
from .errors import CheckpointError, ConfigError, ImageError, MessageError, VlkitError, WeightsError  # noqa: E402
from .presets import PRESETS  # noqa: E402


def __getattr__(name):
    # torch and transformers load only when a model is first asked for, so `import vlkit` is quick.
    if name in ("VisionLanguageModel", "GenerationResult"):
        from . import model

        return getattr(model, name)
    if name == "load_image":
        from .images import load_image

        return load_image
    raise AttributeError(f"module 'vlkit' has no attribute {name!r}")


__all__ = [
    "CheckpointError",
    "ConfigError",
    "EncoderConfig",
    "GenerationResult",
    "ImageError",
    "LMConfig",
    "MessageError",
    "PRESETS",
    "ProjectorConfig",
    "VLMConfig",
    "VisionLanguageModel",
    "VlkitError",
    "WeightsError",
    "load_image",
]
