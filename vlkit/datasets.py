"""Training data: any sequence of examples `{"conversation": [...], "images": [...]}`.

The trainer needs only `len(data)` and `data[i]`, so a plain list of such dicts already works; the
classes here check the shape up front (an error names the example, not a batch ten minutes in)
and carry a `name` that the trainer records in the checkpoint. A conversation is a list of
`{"role", "content"}` messages with one `<image>` placeholder per image, in order; images are
anything `load_image` takes. An optional `"details"` lists a detail level per image.
"""

from __future__ import annotations

from collections.abc import Sequence

from .data.shapes import ShapesConfig, make_scene, split_seeds
from .errors import VlkitError

SHAPES_KINDS = ("caption", "qa", "both")


def check_example(example, index: int | str = "?") -> dict:
    """Raise a `VlkitError` saying what is wrong with one example; return it unchanged if fine."""
    where = f"example {index}"
    if not isinstance(example, dict) or "conversation" not in example:
        raise VlkitError(
            f"{where} is not a dict with a 'conversation' key: give "
            "{'conversation': [{'role': ..., 'content': ...}, ...], 'images': [...]}"
        )
    conv = example["conversation"]
    if not isinstance(conv, list) or not all(
        isinstance(m, dict) and "role" in m and "content" in m for m in conv
    ):
        raise VlkitError(f"{where}: 'conversation' must be a list of {{'role', 'content'}} dicts")
    if not any(m["role"] == "assistant" for m in conv):
        raise VlkitError(
            f"{where} has no assistant turn, so there is nothing to learn (the loss is on "
            "answers only): add the answer as {'role': 'assistant', 'content': ...}"
        )
    images = example.get("images", [])
    if not isinstance(images, (list, tuple)):
        raise VlkitError(f"{where}: 'images' must be a list (one entry per <image> placeholder)")
    details = example.get("details")
    if details is not None and len(details) != len(images):
        raise VlkitError(f"{where}: 'details' needs one entry per image ({len(images)})")
    return example


def dataset_name(data) -> str:
    """What the trainer records about a data set: its name and size."""
    return f"{getattr(data, 'name', type(data).__name__)} ({len(data)} examples)"


class ConversationDataset(Sequence):
    """A list of examples, checked once when built."""

    def __init__(self, examples, name: str = "conversations"):
        self.examples = [check_example(e, i) for i, e in enumerate(examples)]
        self.name = name

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        return self.examples[index]


class ShapesDataset(Sequence):
    """Scenes of the shapes world as examples, drawn on demand from their seeds.

    kind: "caption" (one describe turn, for align), "qa" (every question as a turn) or "both"
    (each scene twice: its caption, then its QAs). Scenes are redrawn on each access (about 1-3 ms)
    rather than kept, so a large `n` costs no memory.
    """

    def __init__(
        self,
        split: str = "train",
        n: int = 1000,
        kind: str = "caption",
        config: ShapesConfig | None = None,
    ):
        if kind not in SHAPES_KINDS:
            raise VlkitError(f"kind={kind!r}: use one of {', '.join(SHAPES_KINDS)}")
        self.seeds = split_seeds(split, n)
        self.kinds = ["caption", "qa"] if kind == "both" else [kind]
        self.config = config or ShapesConfig()
        self.name = f"shapes:{split}:{kind}"

    def __len__(self) -> int:
        return len(self.seeds) * len(self.kinds)

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} examples")
        scene_index, kind_index = divmod(index % len(self), len(self.kinds))
        scene = make_scene(self.seeds[scene_index], self.config)
        return {
            "conversation": scene.to_conversation(self.kinds[kind_index]),
            "images": [scene.image],
        }


class ConcatDataset(Sequence):
    """Several data sets one after another (the trainer shuffles across all of them)."""

    def __init__(self, parts: list):
        self.parts = [p for p in parts if len(p)]
        self.name = "+".join(getattr(p, "name", type(p).__name__) for p in parts)

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __getitem__(self, index: int) -> dict:
        for part in self.parts:
            if index < len(part):
                return part[index]
            index -= len(part)
        raise IndexError("index out of range")


def from_spec(
    spec: str, split: str, n: int, default_kind: str = "caption", image_size: int = 224
) -> Sequence:
    """Data named on the command line: "shapes" (default_kind), "shapes-caption", "shapes-qa",
    "shapes-both", comma-separated for several. `n` scenes of `split` each."""
    parts = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        base, _, kind = name.partition("-")
        if base != "shapes" or (kind and kind not in SHAPES_KINDS):
            raise VlkitError(
                f"unknown data set {name!r}: use shapes, shapes-caption, shapes-qa or shapes-both "
                "(other formats: build a ConversationDataset in Python)"
            )
        config = ShapesConfig(image_size=max(64, image_size))  # 64 px keeps small shapes >= 3 px
        parts.append(ShapesDataset(split, n, kind or default_kind, config))
    if not parts:
        raise VlkitError(f"data={spec!r} names no data set: use e.g. 'shapes'")
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)
