"""The error types vlkit raises on bad input.

Every message names the offending input and says what to do about it, so a notebook user can
act on it without reading a traceback.
"""


class VlkitError(Exception):
    """Base class for every error vlkit raises on purpose."""


class ImageError(VlkitError, ValueError):
    """An image could not be read, decoded or converted (see `vlkit.images.load_image`)."""


class CheckpointError(VlkitError, ValueError):
    """A checkpoint folder is missing, from another vlkit version, or does not fit the model."""


class WeightsError(VlkitError, RuntimeError):
    """Pretrained weights could not be obtained or converted (see `vlkit weights`)."""


class ConfigError(VlkitError, ValueError):
    """A configuration value is invalid; the message says which field and what is allowed."""


class MessageError(VlkitError, ValueError):
    """A chat message is not in the chat-completions shape vlkit accepts (see `VisionLanguageModel.chat`)."""


class TrainingError(VlkitError, RuntimeError):
    """Training stopped because the loss went wrong (NaN, exploding, or suspiciously zero)."""
