"""Training data: any sequence of examples `{"conversation": [...], "images": [...]}`.

The trainer needs only `len(data)` and `data[i]`, so a plain list of such dicts already works; the
classes here check the shape up front (an error names the example, not a batch ten minutes in)
and carry a `name` that the trainer records in the checkpoint. A conversation is a list of
`{"role", "content"}` messages with one `<image>` placeholder per image, in order; images are
anything `load_image` takes. An optional `"details"` lists a detail level per image.

`load_data` (in `vlkit.formats`, also importable from here) reads data in other formats into such examples: LLaVA's conversation JSON, a
folder of images with a captions file, or a Hugging Face `datasets` data set with an image column.
Everything that can be checked without decoding images (files present, JSON well formed, turns
shaped right, one `<image>` per image) is checked when loading, so a bad record stops the load
with its file and line, not a training run halfway through; the images themselves stay paths or
bytes until an example is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .data.shapes import ShapesConfig, make_scene, split_seeds, turns
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
    placeholders = sum(str(m["content"]).count("<image>") for m in conv)
    if "images" in example and placeholders != len(images):  # lazy sources check their own
        raise VlkitError(
            f"{where} has {placeholders} <image> placeholder(s) for {len(images)} image(s): put "
            "one <image> in the messages for each image, in order"
        )
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
        if self.kinds[kind_index] == "qa":
            # Each scene asks its questions in its own order, so every kind of question is also
            # seen as the first turn, right after the image (the way evaluation asks it).
            order = np.random.default_rng([scene.seed, 2]).permutation(len(scene.qas))
            scene.qas = [scene.qas[i] for i in order]
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
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} examples")
        index %= len(self)
        for part in self.parts:
            if index < len(part):
                return part[index]
            index -= len(part)
        raise IndexError("index out of range")


class PhotosDataset(Sequence):
    """The captioned photos of `data/photos` (see `vlkit.photos`) as examples.

    kind as for `ShapesDataset`. `repeat` lists every record that many times, to weigh the photos
    against a larger data set in a mix. Images are loaded from their packages once and kept.
    """

    def __init__(self, split: str = "train", kind: str = "caption", repeat: int = 1):
        from .photos import load_photo_records

        if kind not in SHAPES_KINDS:
            raise VlkitError(f"kind={kind!r}: use one of {', '.join(SHAPES_KINDS)}")
        if repeat < 1:
            raise VlkitError(f"repeat={repeat}: use 1 or more")
        self.records = load_photo_records(split)
        self.kinds = ["caption", "qa"] if kind == "both" else [kind]
        self.repeat = repeat
        self.name = f"photos:{split}:{kind}" + (f"*{repeat}" if repeat > 1 else "")
        self._images: dict[str, object] = {}

    def __len__(self) -> int:
        return len(self.records) * len(self.kinds) * self.repeat

    def image(self, record: dict):
        from .photos import load_photo

        if record["id"] not in self._images:
            self._images[record["id"]] = load_photo(record)
        return self._images[record["id"]]

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} examples")
        index %= len(self.records) * len(self.kinds)
        record_index, kind_index = divmod(index, len(self.kinds))
        record = self.records[record_index]
        return {
            "conversation": photo_conversation(record, self.kinds[kind_index]),
            "images": [self.image(record)],
        }


class LesionsDataset(Sequence):
    """Simulated screening (`vlkit.data.lesions`) as examples, drawn on demand from their seeds.

    The spots are SIMULATED (painted onto a real fundus photograph), not clinical findings. Of the
    `n` records of a split, a share `modality_fraction` (spread evenly: with 0.2, every fifth) are
    modality images: a real CT, MRI, ultrasound, pathology or fundus image with the caption "An
    MRI scan." (a fundus image has its scene's caption) and the question "What kind of image is
    this?" (after its scene's questions, for a fundus image). The others are lesion scenes with a
    caption and the count, presence and (with exactly one spot) quadrant questions. kind as for
    `ShapesDataset`; with kind "qa" each record asks its questions in its own order.
    """

    def __init__(
        self,
        split: str = "train",
        n: int = 1000,
        kind: str = "caption",
        config=None,
        modality_fraction: float = 0.2,
    ):
        from .data.lesions import LesionsConfig

        if kind not in SHAPES_KINDS:
            raise VlkitError(f"kind={kind!r}: use one of {', '.join(SHAPES_KINDS)}")
        if not 0 <= modality_fraction <= 1:
            raise VlkitError(f"modality_fraction={modality_fraction!r}: use a share in [0, 1]")
        self.seeds = split_seeds(split, n)
        self.kinds = ["caption", "qa"] if kind == "both" else [kind]
        self.config = config or LesionsConfig()
        self.modality_fraction = modality_fraction
        self.name = f"lesions:{split}:{kind}"

    def __len__(self) -> int:
        return len(self.seeds) * len(self.kinds)

    def is_modality(self, record_index: int) -> bool:
        """Whether record `record_index` is a modality image (else a lesion scene)."""
        f = self.modality_fraction
        return int((record_index + 1) * f) > int(record_index * f)

    def record(self, record_index: int):
        """The `LesionScene` or `ModalityImage` behind record `record_index`."""
        from .data.lesions import make_modality_image
        from .data.lesions import make_scene as make_lesion_scene

        seed = self.seeds[record_index]
        if self.is_modality(record_index):
            return make_modality_image(seed, self.config)
        return make_lesion_scene(seed, self.config)

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} examples")
        record_index, kind_index = divmod(index % len(self), len(self.kinds))
        record = self.record(record_index)
        if self.kinds[kind_index] == "qa":
            order = np.random.default_rng([record.seed, 2]).permutation(len(record.qas))
            record.qas = [record.qas[i] for i in order]
        return {
            "conversation": record.to_conversation(self.kinds[kind_index]),
            "images": [record.image],
        }


def photo_conversation(record: dict, kind: str, image_token: str = "<image>") -> list[dict]:
    """Chat messages for one photo record, shaped like the shapes world's (image in turn one)."""
    if kind == "caption":
        pairs = [("Describe the image.", record["caption"])]
    else:
        pairs = [(qa["q"], qa["a"]) for qa in record["qa"]]
    return turns(pairs, image_token)


DATA_NAMES = "shapes, photos or lesions, each optionally -caption, -qa or -both and *N to repeat"


def from_spec(
    spec: str, split: str, n: int, default_kind: str = "caption", image_size: int = 224
) -> Sequence:
    """Data named on the command line, comma-separated: "shapes" (n scenes of `split`) or "photos"
    (every record of the split; "val" reads the photos' held-out "test" split) or "lesions" (n
    simulated screening records of `split`, see `LesionsDataset`), each optionally
    with a kind suffix (-caption, -qa, -both; else `default_kind`) and a repeat count ("photos*8")."""
    parts = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        base, _, times = name.partition("*")
        base, _, kind = base.partition("-")
        try:
            repeat = int(times) if times else 1
        except ValueError:
            repeat = 0
        if (
            base not in ("shapes", "photos", "lesions")
            or (kind and kind not in SHAPES_KINDS)
            or repeat < 1
        ):
            raise VlkitError(
                f"unknown data set {name!r}: use {DATA_NAMES}, e.g. 'shapes,photos-caption*8' "
                "(other formats: vlkit.datasets.load_data)"
            )
        if base == "photos":
            part = PhotosDataset(
                "test" if split != "train" else "train", kind or default_kind, repeat
            )
        elif base == "lesions":
            from .data.lesions import LesionsConfig

            config = LesionsConfig(image_size=max(64, image_size))
            part = LesionsDataset(split, n * repeat, kind or default_kind, config)
        else:
            config = ShapesConfig(image_size=max(64, image_size))  # 64 px keeps shapes >= 3 px
            part = ShapesDataset(split, n * repeat, kind or default_kind, config)
        parts.append(part)
    if not parts:
        raise VlkitError(f"data={spec!r} names no data set: use e.g. 'shapes'")
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


# ---- other people's formats: LLaVA JSON, captioned image folders, Hugging Face data sets ------


def __getattr__(name):  # the file formats live in vlkit.formats; keep them reachable from here
    if name in ("load_data", "load_llava", "load_caption_folder", "load_hf_dataset", "HFDataset"):
        from . import formats

        return getattr(formats, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
