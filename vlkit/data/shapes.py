"""The shapes world: procedurally drawn scenes whose exact contents are known.

Each scene is a few coloured shapes on a plain background, one per cell of a grid, with an exact
caption, exact question-answer pairs and a pixel mask per object. Because the ground truth is
exact, the scenes serve both as training data for the align and instruct stages and as a check
on attention maps (did the model look at the object a question is about?).

Everything follows from one integer seed, and the train, val and test splits draw their seeds
from disjoint ranges, so no scene is ever in two splits.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
from PIL import Image, ImageDraw

from vlkit.errors import ConfigError

__all__ = [
    "QA",
    "Scene",
    "SceneObject",
    "ShapesConfig",
    "iter_split",
    "make_scene",
    "make_split",
    "parse_caption",
    "position_word",
    "split_seeds",
]

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 90, 220),
    "yellow": (240, 200, 20),
    "purple": (140, 60, 180),
    "orange": (245, 130, 20),
}
SHAPES = ("circle", "square", "triangle", "star")
SIZES = {"small": 0.2, "large": 0.4}  # radius as a fraction of the cell side
LIGHT_GRAY, WHITE = (235, 235, 235), (255, 255, 255)
NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
POSITION_WORDS = {"top", "bottom", "left", "right", "center"}

SPLIT_STARTS = {"train": 0, "val": 10_000_000, "test": 20_000_000}
SPLIT_SIZE = 10_000_000  # seeds per split; the ranges above never overlap

_SUPERSAMPLE = 4  # draw at 4x and downsample with LANCZOS for clean anti-aliased edges
_MIN_RADIUS_PX = 3.0  # smaller than this and a star is no longer recognisable as one


@dataclass
class ShapesConfig:
    image_size: int = 224  # side of the square image in pixels
    grid: int = 3  # cells per side; each object sits in its own cell
    min_objects: int = 1  # fewest objects in a scene
    max_objects: int = 4  # most objects in a scene (at most grid * grid)
    colours: dict[str, tuple[int, int, int]] = field(default_factory=COLOURS.copy)  # word -> RGB
    shapes: tuple[str, ...] = SHAPES  # any of circle, square, triangle, star
    sizes: dict[str, float] = field(default_factory=SIZES.copy)  # word -> radius / cell side
    background: tuple[int, int, int] = LIGHT_GRAY  # RGB; WHITE also works
    jitter: float = 0.05  # largest shift of an object's centre from its cell's centre, / cell side

    def __post_init__(self):
        if not isinstance(self.image_size, int) or self.image_size < 16:
            raise ConfigError(
                f"image_size={self.image_size!r}: use an int of at least 16, e.g. 224"
            )
        if not isinstance(self.grid, int) or self.grid < 1:
            raise ConfigError(f"grid={self.grid!r}: use an int of at least 1 (3 gives a 3x3 grid)")
        cells = self.grid * self.grid
        if not 1 <= self.min_objects <= self.max_objects:
            raise ConfigError(
                f"min_objects={self.min_objects}, max_objects={self.max_objects}: "
                "need 1 <= min_objects <= max_objects"
            )
        if self.max_objects > min(cells, len(NUMBER_WORDS)):
            raise ConfigError(
                f"max_objects={self.max_objects}: a {self.grid}x{self.grid} grid holds at most "
                f"{cells} objects and captions count up to {len(NUMBER_WORDS)}; lower max_objects "
                "or raise grid"
            )
        if not _is_rgb(self.background):
            raise ConfigError(
                f"background={self.background!r}: give an (r, g, b), e.g. {LIGHT_GRAY} (light gray)"
            )
        for name, rgb in self.colours.items():
            if not _is_rgb(rgb):
                raise ConfigError(f"colours[{name!r}]={rgb!r}: give an (r, g, b) of ints in 0..255")
            if max(abs(a - b) for a, b in zip(rgb, self.background, strict=True)) < 60:
                raise ConfigError(
                    f"colours[{name!r}]={rgb} is too close to background={self.background}; "
                    "pick a stronger colour or a lighter background"
                )
        if not self.colours or not self.shapes or not self.sizes:
            raise ConfigError("colours, shapes and sizes each need at least one entry")
        unknown = [s for s in self.shapes if s not in _DRAWERS]
        if unknown:
            raise ConfigError(
                f"shapes {unknown} cannot be drawn; choose from {', '.join(_DRAWERS)}"
            )
        if not 0 <= self.jitter < 0.5:
            raise ConfigError(f"jitter={self.jitter!r}: use a fraction of the cell in [0, 0.5)")
        cell_px = self.image_size / self.grid
        radii = sorted(self.sizes.values())
        for name, radius in self.sizes.items():
            # radius + jitter < 1/2 keeps every object inside its own cell, so none overlap.
            if not 0 < radius < 0.5 - self.jitter:
                raise ConfigError(
                    f"sizes[{name!r}]={radius!r}: radius (a fraction of the cell) must be in "
                    f"(0, {0.5 - self.jitter:.3g}) so objects stay in their cells; lower it or jitter"
                )
            if radius * cell_px < _MIN_RADIUS_PX:
                raise ConfigError(
                    f"sizes[{name!r}]={radius} is {radius * cell_px:.1f} px at image_size="
                    f"{self.image_size}, grid={self.grid}; raise image_size or lower grid"
                )
        if any(b < 1.5 * a for a, b in pairwise(radii)):
            raise ConfigError(
                f"sizes={self.sizes}: radii must differ by 1.5x or more to tell apart"
            )
        # parse_caption reads one word per attribute, so the word lists must not share a word.
        words = [*self.colours, *self.shapes, *self.sizes]
        clashes = [w for w, n in Counter([*words, *POSITION_WORDS]).items() if n > 1]
        bad = [w for w in words if not (w.isalpha() and w.islower())]
        if clashes or bad:
            raise ConfigError(
                f"colour, shape and size names must be distinct single lower-case words; "
                f"fix {sorted(set(clashes + bad))}"
            )


def _is_rgb(value) -> bool:
    return (
        isinstance(value, (tuple, list))
        and len(value) == 3
        and all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in value)
    )


@dataclass
class SceneObject:
    shape: str  # circle | square | triangle | star
    colour: str  # colour word, e.g. "red"
    size: str  # size word, e.g. "large"
    row: int  # grid cell row, 0 at the top
    col: int  # grid cell column, 0 at the left
    position: str  # position word for the cell, e.g. "top left"
    centre: tuple[float, float]  # (x, y) in pixels; pixel (i, j) covers [j, j+1) x [i, i+1)
    radius: float  # in pixels
    rgb: tuple[int, int, int]  # the colour's RGB value
    mask: np.ndarray = field(repr=False)  # (H, W) bool: the pixels the object covers

    @property
    def name(self) -> str:
        """Colour and shape, e.g. "red circle": how questions refer to the object."""
        return f"{self.colour} {self.shape}"


@dataclass
class QA:
    question: str
    answer: str
    object_index: int | None  # the object the answer is about, for the pointing game; None if none


@dataclass
class Scene:
    image: Image.Image  # RGB
    objects: list[SceneObject]  # in reading order: by row, then column
    caption: str
    qas: list[QA]
    seed: int

    def to_conversation(self, kind: str = "caption", image_token: str = "<image>") -> list[dict]:
        """Chat messages for training: a caption turn ("caption") or all the QAs as turns ("qa")."""
        if kind == "caption":
            pairs = [("Describe the image.", self.caption)]
        elif kind == "qa":
            pairs = [(qa.question, qa.answer) for qa in self.qas]
        else:
            raise ConfigError(f"kind={kind!r}: use 'caption' or 'qa'")
        return turns(pairs, image_token)


def turns(pairs, image_token: str = "<image>") -> list[dict]:
    """(question, answer) pairs as chat messages; only the first user turn carries the image,
    later turns refer back to it."""
    messages = []
    for i, (question, answer) in enumerate(pairs):
        content = f"{image_token}\n{question}" if i == 0 else question
        messages += [
            {"role": "user", "content": content},
            {"role": "assistant", "content": answer},
        ]
    return messages


def position_word(row: int, col: int, grid: int = 3) -> str:
    """The position words for a cell, e.g. (0, 0) -> "top left", (1, 1) -> "center".

    The image is split into thirds each way and a cell is named by the third its centre falls in,
    so a 3x3 grid gets nine distinct names and any other grid reuses the same nine words (on a
    4x4 grid the middle two rows both count as neither "top" nor "bottom"; a 2x2 grid has only
    corners). The vocabulary thus stays the same whatever the grid.
    """
    thirds = ("top", "", "bottom"), ("left", "", "right")
    vertical = thirds[0][min(int(3 * (row + 0.5) / grid), 2)]
    horizontal = thirds[1][min(int(3 * (col + 0.5) / grid), 2)]
    return " ".join(w for w in (vertical, horizontal) if w) or "center"


# Each drawer gives an outline as (x, y) points around (0, 0) for radius r, or None for a circle.
def _star(r: float) -> list[tuple[float, float]]:
    radii = [r if i % 2 == 0 else 0.45 * r for i in range(10)]  # 0.45: points stay sharp when small
    return [(q * math.cos(a), q * math.sin(a)) for q, a in zip(radii, _angles(10), strict=True)]


def _angles(n: int) -> list[float]:
    return [-math.pi / 2 + 2 * math.pi * i / n for i in range(n)]  # first point straight up


_DRAWERS = {
    "circle": lambda r: None,
    "square": lambda r: [
        (sx * 0.82 * r, sy * 0.82 * r) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))
    ],
    "triangle": lambda r: [(r * math.cos(a), r * math.sin(a)) for a in _angles(3)],
    "star": _star,
}


def _coverage(shape: str, cx: float, cy: float, r: float, size: int) -> tuple[np.ndarray, tuple]:
    """How much of each pixel near the object it covers, in [0, 1], and the box (x0, y0, x1, y1).

    Drawn alone at 4x and downsampled with LANCZOS over a box around the object only. The filter
    is linear and the box is aligned to whole output pixels with a margin wider than the filter,
    so this equals drawing the whole image at 4x and downsampling it, at a fraction of the cost.
    """
    s, margin = _SUPERSAMPLE, 4  # LANCZOS reaches 3 output pixels at 4x downsampling
    x0, y0 = max(int(cx - r) - margin, 0), max(int(cy - r) - margin, 0)
    x1, y1 = min(math.ceil(cx + r) + margin, size), min(math.ceil(cy + r) + margin, size)
    canvas = Image.new("L", ((x1 - x0) * s, (y1 - y0) * s), 0)
    draw = ImageDraw.Draw(canvas)

    def hi(x: float, y: float) -> tuple[float, float]:
        # ImageDraw puts pixel centres at integer coordinates, hence the half-pixel shift.
        return (x - x0) * s - 0.5, (y - y0) * s - 0.5

    outline = _DRAWERS[shape](r)
    if outline is None:
        draw.ellipse([hi(cx - r, cy - r), hi(cx + r, cy + r)], fill=255)
    else:
        draw.polygon([hi(cx + dx, cy + dy) for dx, dy in outline], fill=255)
    small = canvas.resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.float32) / 255.0, (x0, y0, x1, y1)  # (h, w) in the box


def make_scene(seed: int, config: ShapesConfig | None = None) -> Scene:
    """The scene for `seed`: the same seed always gives the same pixels, caption and QAs."""
    config = config or ShapesConfig()
    rng = np.random.default_rng(seed)
    size, grid = config.image_size, config.grid
    cell = size / grid
    colours, shapes, sizes = list(config.colours), list(config.shapes), list(config.sizes)

    n = int(rng.integers(config.min_objects, config.max_objects + 1))
    cells = sorted(rng.choice(grid * grid, size=n, replace=False).tolist())  # reading order
    background = np.asarray(config.background, dtype=np.float32)
    image = np.broadcast_to(background, (size, size, 3)).copy()  # (H, W, 3)
    objects = []
    for index in cells:
        row, col = divmod(index, grid)
        shape, colour, size_word = (str(rng.choice(words)) for words in (shapes, colours, sizes))
        dx, dy = rng.uniform(-config.jitter, config.jitter, size=2)
        cx, cy = (col + 0.5 + dx) * cell, (row + 0.5 + dy) * cell
        radius = config.sizes[size_word] * cell
        alpha, (x0, y0, x1, y1) = _coverage(shape, cx, cy, radius, size)
        rgb = tuple(int(v) for v in config.colours[colour])
        # Objects never overlap, so blending each onto the background in turn is exact.
        alpha = np.clip(alpha, 0.0, 1.0)[..., None]  # (h, w, 1)
        box = image[y0:y1, x0:x1]
        image[y0:y1, x0:x1] = box * (1 - alpha) + np.asarray(rgb, np.float32) * alpha
        mask = np.zeros((size, size), dtype=bool)
        mask[y0:y1, x0:x1] = alpha[..., 0] >= 0.5  # the same geometry as the visible object
        objects.append(
            SceneObject(shape, colour, size_word, row, col, position_word(row, col, grid),
                        (float(cx), float(cy)), float(radius), rgb, mask)
        )  # fmt: skip
    pil = Image.fromarray(np.round(image).astype(np.uint8), mode="RGB")
    # The questions get their own stream, so changing them never changes the pictures.
    qas = _make_qas(objects, config, np.random.default_rng([seed, 1]))
    return Scene(pil, objects, _caption(objects), qas, seed)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _caption(objects: list[SceneObject]) -> str:
    phrases = [
        f"{_article(o.size)} {o.size} {o.colour} {o.shape} at the {o.position}" for o in objects
    ]
    listed = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    n = len(objects)
    head = "There is one object" if n == 1 else f"There are {NUMBER_WORDS[n - 1]} objects"
    return f"{head}: {listed}."


def _make_qas(
    objects: list[SceneObject], config: ShapesConfig, rng: np.random.Generator
) -> list[QA]:
    qas = [QA("How many objects are there?", NUMBER_WORDS[len(objects) - 1], None)]
    shape_counts = Counter(o.shape for o in objects)
    name_counts = Counter(o.name for o in objects)
    unique = [i for i, o in enumerate(objects) if name_counts[o.name] == 1]
    for i, o in enumerate(objects):
        if shape_counts[o.shape] == 1:  # otherwise "the circle" would be ambiguous
            qas.append(QA(f"What colour is the {o.shape}?", o.colour, i))
    for i in unique:
        qas.append(QA(f"Where is the {objects[i].name}?", objects[i].position, i))

    present = int(rng.integers(len(objects)))
    name = objects[present].name
    # With two red circles in the scene the "yes" is about neither one in particular.
    pointed = present if name_counts[name] == 1 else None
    yes_no = [QA(f"Is there {_article(name)} {name}?", "yes", pointed)]
    absent = [
        f"{c} {s}" for c in config.colours for s in config.shapes if f"{c} {s}" not in name_counts
    ]
    if absent:
        name = absent[int(rng.integers(len(absent)))]
        yes_no.append(QA(f"Is there {_article(name)} {name}?", "no", None))
    qas += [yes_no[i] for i in rng.permutation(len(yes_no))]  # so "yes" is not always first

    pairs = [(i, j) for i in unique for j in unique if i < j and objects[i].size != objects[j].size]
    if pairs:
        i, j = pairs[int(rng.integers(len(pairs)))]
        if rng.random() < 0.5:
            i, j = j, i
        larger = max((i, j), key=lambda k: config.sizes[objects[k].size])
        question = f"Which is larger, the {objects[i].name} or the {objects[j].name}?"
        qas.append(QA(question, f"the {objects[larger].name}", larger))
    return qas


def split_seeds(split: str, n: int) -> list[int]:
    """The first `n` seeds of a split; train, val and test seeds come from disjoint ranges."""
    if split not in SPLIT_STARTS:
        raise ConfigError(f"split={split!r}: use one of {', '.join(map(repr, SPLIT_STARTS))}")
    if not isinstance(n, int) or not 0 <= n <= SPLIT_SIZE:
        raise ConfigError(
            f"n={n!r}: a split holds 0 to {SPLIT_SIZE:,} scenes (more would reach into the next "
            "split's seeds); ask for fewer"
        )
    start = SPLIT_STARTS[split]
    return list(range(start, start + n))


def iter_split(split: str, n: int, config: ShapesConfig | None = None) -> Iterator[Scene]:
    """The split's scenes one at a time, for when `n` scenes would not fit in memory."""
    for seed in split_seeds(split, n):
        yield make_scene(seed, config)


def make_split(split: str, n: int, config: ShapesConfig | None = None) -> list[Scene]:
    """The first `n` scenes of "train", "val" or "test"."""
    return list(iter_split(split, n, config))


def parse_caption(text: str, config: ShapesConfig | None = None) -> list[dict]:
    """Read the objects back out of a caption, e.g. a generated one, to score it.

    Tolerant of case, punctuation, "color" or "colour", "big", "centre"/"middle" and word order
    within an object ("a red large circle"). Each object is a dict with keys size, colour, shape
    and position; a part the caption leaves out is None. An article, "and", or a second word for
    a part already filled starts the next object.
    """
    config = config or ShapesConfig()
    synonyms = {"big": "large", "centre": "center", "middle": "center"}
    slots = {w: "size" for w in config.sizes} | {w: "colour" for w in config.colours}
    slots |= {w: "shape" for w in config.shapes} | {w: "position" for w in POSITION_WORDS}
    objects: list[dict] = []
    current: dict = {}
    where: list[str] = []

    def flush():
        if current:
            objects.append({key: current.get(key) for key in ("size", "colour", "shape")})
            objects[-1]["position"] = _join_position(where)
        current.clear()
        where.clear()

    for word in re.findall(r"[a-z]+", text.lower()):
        word = synonyms.get(word, word)
        slot = slots.get(word)
        if word in ("a", "an", "and"):
            flush()
        elif slot == "position":
            if current:  # position words name the object just described
                where.append(word)
        elif slot is not None:
            if slot in current or where:
                flush()
            current[slot] = word
    flush()
    return objects


def _join_position(words: list[str]) -> str | None:
    if not words:
        return None
    vertical = next((w for w in words if w in ("top", "bottom")), "")
    horizontal = next((w for w in words if w in ("left", "right")), "")
    return " ".join(w for w in (vertical, horizontal) if w) or "center"
