"""Chat-completions messages (the GPT-4o API's shape) -> vlkit's internal chat + image list.

A message is `{"role": ..., "content": str | [parts]}`; a part is `{"type": "text", "text": ...}` or
`{"type": "image_url", "image_url": {"url": URL_OR_DATA_URL, "detail": "low|high|auto"}}`. As a
notebook convenience vlkit also takes `{"type": "image", "image": PIL_IMAGE_OR_PATH_OR_ARRAY}`.
Each image part becomes an image placeholder in the text at the place it appeared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import DETAILS
from .errors import MessageError

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass
class ImageRef:
    source: Any  # URL, data URL, path, bytes, PIL image or array: anything load_image takes
    detail: str  # low | high | auto


def _image_part(part: dict, where: str, default_detail: str) -> ImageRef:
    if part["type"] == "image":
        if "image" not in part:
            raise MessageError(f"{where}: an 'image' part needs an 'image' field")
        return ImageRef(part["image"], part.get("detail", default_detail))
    spec = part.get("image_url")
    if isinstance(spec, str):
        spec = {"url": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("url"), str):
        raise MessageError(
            f"{where}: an 'image_url' part needs image_url={{'url': 'https://... or data:image/...;base64,...'}}"
        )
    detail = spec.get("detail") or default_detail
    if detail not in DETAILS:
        raise MessageError(f"{where}: detail={detail!r} is not one of {', '.join(DETAILS)}")
    return ImageRef(spec["url"], detail)


def parse_messages(
    messages: list[dict], image_token: str = "<image>", default_detail: str = "auto"
) -> tuple[list[dict], list[ImageRef]]:
    """Return (messages with string content and image placeholders, images in order of appearance)."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise MessageError(
            "messages must be a non-empty list of {'role': ..., 'content': ...} dicts"
        )
    chat, images = [], []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise MessageError(f"{where} must be a dict with 'role' and 'content'")
        role = ROLES.get(message["role"])
        if role is None:
            raise MessageError(
                f"{where}: role {message['role']!r} is not one of {', '.join(ROLES)}"
            )
        content = message["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, (list, tuple)):
            raise MessageError(f"{where}: content must be a string or a list of parts")
        texts = []
        for j, part in enumerate(content):
            pwhere = f"{where}.content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                if not isinstance(part.get("text"), str):
                    raise MessageError(f"{pwhere}: a 'text' part needs a string 'text' field")
                # A literal placeholder in user text would be read as an image slot; defuse it.
                texts.append(part["text"].replace(image_token, image_token.replace("<", "< ")))
            elif kind in ("image_url", "image"):
                if role != "user":
                    raise MessageError(f"{pwhere}: only user messages may hold images")
                images.append(_image_part(part, pwhere, default_detail))
                texts.append(image_token)
            else:
                raise MessageError(
                    f"{pwhere}: part type {kind!r} is not 'text', 'image_url' or 'image'"
                )
        chat.append({"role": role, "content": "\n".join(texts)})
    return chat, images
