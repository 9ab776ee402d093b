"""Simulated screening: real medical images with painted lesion-like spots and exact answers.

THE LESIONS ARE SIMULATED. Every "spot" is a dark red, soft-edged roundish blob painted by this module
at a known position onto a real fundus photograph; none is a clinical finding, and nothing
trained on these scenes has learnt to screen anyone. What the scenes give is exact ground truth
(how many spots, which quadrant, a pixel mask per spot) on a realistic background, so a model's
counting, localisation and attention can be checked exactly, the way the shapes world
(`vlkit.data.shapes`) does it on drawn shapes.

Two kinds of record:

- `LesionScene` (`make_scene`): a seeded augmented view of scikit-image's fundus photograph
  (`skimage.data.retina()`, CC0): a square crop of 45-100% of the fundus diameter, a small
  rotation, a multiple of 90 degrees and a flip, gamma, brightness and colour-balance jitter,
  resized to `image_size` (224 px by default), with 0-3 spots of radius 5-9 px (at 224 px) painted
  inside the fundus. Spots never overlap, keep clear of the optic disc, of the fovea (a natural
  dark patch that is never counted) and of the image border, and keep a margin from the centre
  lines, so each lies wholly in one quadrant and quadrant answers are exact.
- `ModalityImage` (`make_modality_image`): an augmented view (letterbox to a square, crop of
  80-100%, small rotation, horizontal flip except where burned-in text would read mirrored,
  gamma and gain jitter) of one of the real medical images that ship inside Python packages,
  labelled with its imaging modality: CT (pydicom's CT_small.dcm), MRI (pydicom's MR_small.dcm
  and examples_overlay.dcm, matplotlib's s1045.ima.gz), ultrasound (pydicom's
  examples_rgb_color.dcm, examples_palette.dcm and the frames of the examples_ybr_color.dcm echo
  loop), pathology (scikit-image's immunohistochemistry()) and fundus (a `LesionScene`).

Questions and exact answers (see `COUNT_Q` etc.): "How many spots are there?" -> "zero" ...
"three" (number words, as in the shapes world); "Are there any spots?" -> "yes" / "no"; "In which
quadrant is the spot?" (only when there is exactly one) -> "upper left" / "upper right" / "lower
left" / "lower right"; "What kind of image is this?" -> one of `MODALITIES`' answers; and a
caption, e.g. "A fundus photograph with two spots, in the upper left and lower right."

Splits: everything follows from one integer seed, and train, val and test seeds come from
disjoint ranges (`split_seeds`, shared with the shapes world). ALL lesion scenes of ALL splits
come from the same single retina photograph, so held-out means held-out augmentations, not
held-out patients or eyes. Where it is possible the splits also differ by region: a scene's crop
is centred in a sector of the fundus that belongs to its split (train 0-240 degrees, val 240-300,
test 300-360, around the fundus centre; the views still overlap in content), and the echo loop's
frames are split too (train 0-19, val 20-24, test 25-29). The other modality images are single
images, seen by every split under different augmentations.

Real medical VQA sets, for users with a model hub (not tested here: there is no hub), load
through `vlkit.formats.load_data`; see data/lesions/README.md.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from PIL import Image

from vlkit.data.shapes import NUMBER_WORDS, QA, SPLIT_SIZE, SPLIT_STARTS, split_seeds, turns
from vlkit.errors import ConfigError, VlkitError

__all__ = [
    "COUNT_Q",
    "MODALITIES",
    "MODALITY_Q",
    "MODALITY_SOURCES",
    "PRESENCE_Q",
    "QUADRANTS",
    "QUADRANT_Q",
    "LesionScene",
    "LesionsConfig",
    "ModalityImage",
    "Spot",
    "count_word",
    "iter_split",
    "load_modality_source",
    "make_modality_image",
    "make_modality_split",
    "make_scene",
    "make_split",
    "quadrant_of",
    "split_of_seed",
    "split_seeds",
]

CAPTION_Q = "Describe the image."
COUNT_Q = "How many spots are there?"
PRESENCE_Q = "Are there any spots?"
QUADRANT_Q = "In which quadrant is the spot?"
MODALITY_Q = "What kind of image is this?"

QUADRANTS = ("upper left", "upper right", "lower left", "lower right")  # index = 2 * lower + right
COUNT_WORDS = ("zero", *NUMBER_WORDS)
MODALITIES = {  # key -> the answer to MODALITY_Q
    "ct": "a CT scan",
    "mri": "an MRI scan",
    "ultrasound": "an ultrasound image",
    "fundus": "a fundus photograph",
    "pathology": "a pathology slide",
}
# name -> (modality, where it comes from). "retina" is drawn as a LesionScene.
MODALITY_SOURCES = {
    "CT_small.dcm": ("ct", "pydicom.data.get_testdata_file('CT_small.dcm')"),
    "MR_small.dcm": ("mri", "pydicom.data.get_testdata_file('MR_small.dcm')"),
    "examples_overlay.dcm": ("mri", "pydicom.data.get_testdata_file('examples_overlay.dcm')"),
    "s1045.ima.gz": ("mri", "matplotlib.cbook.get_sample_data('s1045.ima.gz'), 256x256 uint16"),
    "examples_rgb_color.dcm": (
        "ultrasound",
        "pydicom.data.get_testdata_file('examples_rgb_color.dcm')",
    ),
    "examples_palette.dcm": (
        "ultrasound",
        "pydicom.data.get_testdata_file('examples_palette.dcm')",
    ),
    "examples_ybr_color.dcm": (
        "ultrasound",
        "pydicom.data.get_testdata_file('examples_ybr_color.dcm'), one of 30 frames",
    ),
    "immunohistochemistry": ("pathology", "skimage.data.immunohistochemistry()"),
    "retina": ("fundus", "skimage.data.retina(), with simulated spots (make_scene)"),
}
# Ultrasound screens carry burned-in text, which a flip would mirror: these are never flipped.
_NO_FLIP = {"examples_rgb_color.dcm", "examples_palette.dcm", "examples_ybr_color.dcm"}
ECHO_FRAMES = {"train": range(0, 20), "val": range(20, 25), "test": range(25, 30)}
SECTORS = {"train": (0.0, 240.0), "val": (240.0, 300.0), "test": (300.0, 360.0)}  # degrees

# Measured on skimage.data.retina() (1411 x 1411): fundus centre and diameter, the optic disc and
# the fovea, in source pixels (x, y, radius). Spots keep clear of both landmarks.
_FUNDUS_CENTRE, _FUNDUS_DIAMETER = (705.0, 702.0), 1396.0
_OPTIC_DISC = (235.0, 650.0, 150.0)
_FOVEA = (704.0, 706.0, 75.0)
# What a spot at full strength keeps of the background, per channel: red falls least, so spots
# are a darker red, like a dot-blot haemorrhage (at the usual strength about as dark as a vessel).
_SPOT_KEEP = np.array([0.55, 0.22, 0.22])


@dataclass
class LesionsConfig:
    image_size: int = 224  # side of the square image in pixels
    spot_weights: tuple[float, ...] = (0.4, 0.3, 0.15, 0.15)  # P(0 spots), P(1), P(2), P(3)
    radius: tuple[float, float] = (5 / 224, 9 / 224)  # spot radius range, / image side
    strength: tuple[float, float] = (0.6, 0.85)  # how far a spot's centre goes to dark red
    zoom: tuple[float, float] = (0.45, 1.0)  # crop side / fundus diameter (1: whole fundus)
    max_angle: float = 12.0  # largest small rotation, degrees (on top of multiples of 90)
    jitter: float = 0.15  # gain and gamma drawn from 1 +- jitter
    edge_margin: float = 0.1  # no spot nearer the border than this, / image side
    gap: float = 0.03  # clearance from the centre lines and between spots, / image side

    def __post_init__(self):
        if not isinstance(self.image_size, int) or self.image_size < 32:
            raise ConfigError(
                f"image_size={self.image_size!r}: use an int of at least 32, e.g. 224"
            )
        w = self.spot_weights
        if not 1 <= len(w) <= 5 or any(x < 0 for x in w) or sum(w) <= 0:
            raise ConfigError(
                f"spot_weights={w!r}: give 1 to 5 non-negative weights for 0, 1, ... spots, "
                "e.g. (0.4, 0.3, 0.15, 0.15)"
            )
        lo, hi = self.radius
        if not 0 < lo <= hi <= 0.08:
            raise ConfigError(
                f"radius={self.radius!r}: give (low, high) fractions of the image side with "
                "0 < low <= high <= 0.08, e.g. (5 / 224, 9 / 224)"
            )
        if hi * self.image_size < 1.5:
            raise ConfigError(
                f"radius={self.radius!r} is under 1.5 px at image_size={self.image_size}: "
                "raise image_size or radius"
            )
        if not 0 < self.strength[0] <= self.strength[1] <= 1:
            raise ConfigError(f"strength={self.strength!r}: use 0 < low <= high <= 1")
        if not 0.2 <= self.zoom[0] <= self.zoom[1] <= 1.2:
            raise ConfigError(f"zoom={self.zoom!r}: use 0.2 <= low <= high <= 1.2")
        if not 0 <= self.max_angle <= 45:
            raise ConfigError(f"max_angle={self.max_angle!r}: use 0 to 45 degrees")
        if not 0 <= self.jitter <= 0.5:
            raise ConfigError(f"jitter={self.jitter!r}: use 0 to 0.5")
        if not 0 <= self.edge_margin <= 0.25 or not 0 <= self.gap <= 0.1:
            raise ConfigError(
                f"edge_margin={self.edge_margin!r}, gap={self.gap!r}: use edge_margin in "
                "[0, 0.25] and gap in [0, 0.1]"
            )


@dataclass
class Spot:
    centre: tuple[float, float]  # (x, y) in pixels; pixel (i, j) covers [j, j+1) x [i, i+1)
    radius: float  # in pixels: the longer semi-axis (spots are ellipses, axis ratio 0.75-1)
    quadrant: str  # one of QUADRANTS
    strength: float  # how far the centre goes to dark red, 0..1
    mask: np.ndarray = field(repr=False)  # (H, W) bool: pixel centres inside the ellipse


@dataclass
class LesionScene:
    image: Image.Image  # RGB
    spots: list[Spot]  # in reading order of their quadrants, then top to bottom
    caption: str
    qas: list[QA]  # object_index: the spot the answer is about (the quadrant question)
    seed: int
    fundus: np.ndarray = field(repr=False)  # (H, W) bool: inside the fundus
    view: dict = field(default_factory=dict)  # the augmentation drawn, for inspection
    modality: str = "fundus"

    def to_conversation(self, kind: str = "caption", image_token: str = "<image>") -> list[dict]:
        """Chat messages: a caption turn ("caption") or all the QAs as turns ("qa")."""
        return _conversation(self, kind, image_token)


@dataclass
class ModalityImage:
    image: Image.Image  # RGB
    modality: str  # a key of MODALITIES
    source: str  # a key of MODALITY_SOURCES
    caption: str  # e.g. "An MRI scan."
    qas: list[QA]
    seed: int
    view: dict = field(default_factory=dict)

    def to_conversation(self, kind: str = "caption", image_token: str = "<image>") -> list[dict]:
        return _conversation(self, kind, image_token)


def _conversation(record, kind: str, image_token: str) -> list[dict]:
    if kind == "caption":
        pairs = [(CAPTION_Q, record.caption)]
    elif kind == "qa":
        pairs = [(qa.question, qa.answer) for qa in record.qas]
    else:
        raise ConfigError(f"kind={kind!r}: use 'caption' or 'qa'")
    return turns(pairs, image_token)


def count_word(n: int) -> str:
    """The answer to COUNT_Q: "zero", "one", ... (number words, as the shapes world counts)."""
    return COUNT_WORDS[n]


def quadrant_of(x: float, y: float, size: int) -> str:
    """The image quadrant of the point (x, y) in an image `size` pixels square."""
    return QUADRANTS[2 * (y >= size / 2) + (x >= size / 2)]


def split_of_seed(seed: int) -> str | None:
    """The split whose seed range holds `seed`, or None outside all three ranges."""
    for split, start in SPLIT_STARTS.items():
        if start <= seed < start + SPLIT_SIZE:
            return split
    return None


# ---- the source images --------------------------------------------------------------------------
def _require(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        from vlkit.photos import MissingPackageError

        raise MissingPackageError(
            f"the simulated screening images come from {package}, which is not installed: "
            f"pip install {package} (or pip install 'vlkit[notebooks]')"
        ) from exc


@cache
def _retina() -> dict:
    """The fundus photograph at full, half and quarter resolution, and its masks (as L images)."""
    skimage_data = _require("skimage.data", "scikit-image")
    rgb = np.asarray(skimage_data.retina())  # (1411, 1411, 3) uint8
    size = rgb.shape[0]
    fundus = rgb[..., 0] > 20  # the fundus is bright red, the surround black
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    allowed = fundus.copy()
    for x, y, r in (_OPTIC_DISC, _FOVEA):
        allowed &= (xx - x) ** 2 + (yy - y) ** 2 > r * r
    full = Image.fromarray(rgb)
    levels = [full]
    for _ in range(2):  # a pyramid, so that a wide crop is never resampled by more than 2x
        levels.append(levels[-1].reduce(2))
    as_l = {
        k: Image.fromarray(v.astype(np.uint8) * 255) for k, v in (("f", fundus), ("a", allowed))
    }
    return {"levels": levels, "fundus": as_l["f"], "allowed": as_l["a"]}


def _testdata(name: str) -> str:
    return _require("pydicom.data", "pydicom").get_testdata_file(name)


@cache
def load_modality_source(name: str, frame: int = 0) -> Image.Image:
    """One of MODALITY_SOURCES as an RGB PIL image (`frame` picks a frame of the echo loop)."""
    from vlkit.images import load_image

    if name not in MODALITY_SOURCES:
        raise VlkitError(f"unknown source {name!r}: use one of {', '.join(MODALITY_SOURCES)}")
    if name == "retina":
        return _retina()["levels"][0]
    if name == "immunohistochemistry":
        return load_image(_require("skimage.data", "scikit-image").immunohistochemistry())
    if name == "s1045.ima.gz":
        cbook = _require("matplotlib.cbook", "matplotlib")
        with cbook.get_sample_data("s1045.ima.gz") as file:
            raw = np.frombuffer(file.read(), np.uint16)
        return load_image(raw.reshape(256, 256))
    if name == "examples_ybr_color.dcm" and frame:
        # load_image shows a loop's first frame; the others are decoded (to RGB) here.
        path = _testdata(name)
        try:
            from pydicom.pixels import pixel_array

            pixels = pixel_array(path, index=frame)
        except ImportError:  # pydicom 2.x
            import pydicom
            from pydicom.pixel_data_handlers.util import convert_color_space

            dataset = pydicom.dcmread(path)
            pixels = convert_color_space(dataset.pixel_array[frame], "YBR_FULL", "RGB")
        return load_image(np.ascontiguousarray(pixels))
    return load_image(_testdata(name))


# ---- augmentation -------------------------------------------------------------------------------
def _affine(cx: float, cy: float, side: float, out: int, degrees: float) -> tuple:
    """PIL AFFINE coefficients: an `out`-pixel square showing a `side`-pixel square of the source
    centred on (cx, cy), turned by `degrees`."""
    s = side / out
    c, n = math.cos(math.radians(degrees)) * s, math.sin(math.radians(degrees)) * s
    h = out / 2
    return (c, -n, cx - c * h + n * h, n, c, cy - n * h - c * h)


def _dihedral(array: np.ndarray, turns90: int, flip: bool) -> np.ndarray:
    array = np.rot90(array, turns90)
    return np.ascontiguousarray(array[:, ::-1] if flip else array)


def _tone(rgb: np.ndarray, rng: np.random.Generator, jitter: float) -> tuple[np.ndarray, dict]:
    """Gamma, brightness and a slight colour cast, as between cameras and exposures; black stays
    black."""
    gamma = 1 + rng.uniform(-jitter, jitter)
    gain = (1 + rng.uniform(-jitter, jitter)) * (1 + rng.uniform(-jitter, jitter, 3) / 3)
    out = 255.0 * (rgb / 255.0) ** gamma * gain  # (H, W, 3)
    return np.clip(out, 0, 255), {"gamma": round(gamma, 3), "gain": np.round(gain, 3).tolist()}


def _fundus_view(seed: int, rng: np.random.Generator, config: LesionsConfig):
    """An augmented view of the retina: (rgb float (S, S, 3), allowed (S, S), fundus (S, S), view)."""
    source = _retina()
    size = config.image_size
    zoom = rng.uniform(*config.zoom)
    sector = SECTORS.get(split_of_seed(seed), (0.0, 360.0))
    theta = math.radians(rng.uniform(*sector))
    rho = rng.uniform(0.05, 0.28) * _FUNDUS_DIAMETER
    cx = _FUNDUS_CENTRE[0] + rho * math.cos(theta)
    cy = _FUNDUS_CENTRE[1] - rho * math.sin(theta)  # angles counter-clockwise, y down
    angle = rng.uniform(-config.max_angle, config.max_angle)
    turns90, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
    side = zoom * _FUNDUS_DIAMETER

    # Draw at 2x and halve, from the pyramid level that leaves at most a 2x reduction.
    out = 2 * size
    level = min(max(0, int(math.floor(math.log2(side / out)))), len(source["levels"]) - 1)
    k = 2**level
    coeffs = _affine(cx / k, cy / k, side / k, out, angle)
    big = source["levels"][level].transform(
        (out, out), Image.Transform.AFFINE, coeffs, Image.Resampling.BICUBIC, fillcolor=0
    )
    rgb = np.asarray(big.reduce(2), dtype=np.float32)  # (S, S, 3)
    masks = [
        np.asarray(
            source[key].transform(
                (size, size), Image.Transform.AFFINE, _affine(cx, cy, side, size, angle),
                Image.Resampling.NEAREST, fillcolor=0,
            )
        ) > 127
        for key in ("allowed", "fundus")
    ]  # fmt: skip
    rgb, allowed, fundus = (_dihedral(a, turns90, flip) for a in (rgb, *masks))
    rgb, tone = _tone(rgb, rng, config.jitter)
    view = {
        "zoom": round(zoom, 3),
        "centre": (round(cx, 1), round(cy, 1)),
        "angle": round(angle, 2),
        "turns90": turns90,
        "flip": flip,
        **tone,
    }
    return rgb, allowed, fundus, view


# ---- spots --------------------------------------------------------------------------------------
def _place_spots(rgb, allowed, rng: np.random.Generator, config: LesionsConfig) -> list[Spot]:
    """Paint the scene's spots onto `rgb` (in place) and return them."""
    from scipy.ndimage import distance_transform_edt

    size = config.image_size
    weights = np.asarray(config.spot_weights, dtype=float)
    n = int(rng.choice(len(weights), p=weights / weights.sum()))
    clearance = distance_transform_edt(allowed)  # (S, S): px to the nearest forbidden pixel
    yy, xx = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
    edge, gap = config.edge_margin * size, config.gap * size
    spots: list[Spot] = []
    for quadrant in rng.integers(4, size=n):
        radius = rng.uniform(*config.radius) * size
        reach = radius + gap  # the blur's tail stays inside this
        ok = clearance >= reach
        ok &= (xx >= edge + radius) & (xx <= size - edge - radius)
        ok &= (yy >= edge + radius) & (yy <= size - edge - radius)
        ok &= np.abs(xx - size / 2) >= reach  # wholly on one side of each centre line
        ok &= np.abs(yy - size / 2) >= reach
        for other in spots:
            ox, oy = other.centre
            ok &= (xx - ox) ** 2 + (yy - oy) ** 2 >= (radius + other.radius + gap) ** 2
        # The drawn quadrant first; if it has no room (rare: a crop mostly outside the fundus),
        # the next one; a spot that fits nowhere is left out, and the answers follow.
        for q in [(int(quadrant) + i) % 4 for i in range(4)]:
            lower, right = divmod(q, 2)
            here = ok & ((yy >= size / 2) == bool(lower)) & ((xx >= size / 2) == bool(right))
            candidates = np.flatnonzero(here)
            if len(candidates):
                i, j = divmod(int(candidates[rng.integers(len(candidates))]), size)
                break
        else:
            continue
        x, y = j + 0.5, i + 0.5
        strength = rng.uniform(*config.strength)
        keep = np.clip(_SPOT_KEEP * rng.uniform(0.85, 1.15, 3), 0, 1)
        # A slightly elliptical blob (axes `radius` and `aspect` * `radius`, turned at random),
        # so spots are not all perfect discs; `distance` is 1 on its outline.
        aspect, turn = rng.uniform(0.75, 1.0), rng.uniform(0, math.pi)
        u = (xx - x) * math.cos(turn) + (yy - y) * math.sin(turn)
        v = (yy - y) * math.cos(turn) - (xx - x) * math.sin(turn)
        distance = np.sqrt(u**2 + (v / aspect) ** 2) / radius  # (S, S)
        # Soft-edged: half strength on the outline, fading over about a fifth of the radius.
        alpha = strength / (1 + np.exp((distance - 1) / (0.18 + 0.3 / radius)))  # (S, S)
        rgb *= 1 - alpha[..., None] * (1 - keep)
        spots.append(Spot((x, y), radius, quadrant_of(x, y, size), strength, distance <= 1))
    spots.sort(key=lambda s: (QUADRANTS.index(s.quadrant), s.centre[1], s.centre[0]))
    return spots


def _caption(spots: list[Spot]) -> str:
    n = len(spots)
    if n == 0:
        return "A fundus photograph with no spots."
    head = f"A fundus photograph with {count_word(n)} spot{'s' if n > 1 else ''}"
    counts = Counter(s.quadrant for s in spots)  # in QUADRANTS order: spots are sorted so
    if len(counts) == 1 and n > 1:
        return f"{head}, {'both' if n == 2 else 'all'} in the {spots[0].quadrant}."
    if all(k == 1 for k in counts.values()):
        places = list(counts)
        listed = places[0] if n == 1 else ", ".join(places[:-1]) + " and " + places[-1]
        return f"{head}, in the {listed}."
    parts = [f"{count_word(k)} in the {q}" for q, k in counts.items()]
    return f"{head}, {', '.join(parts[:-1])} and {parts[-1]}."


def _qas(spots: list[Spot]) -> list[QA]:
    qas = [
        QA(COUNT_Q, count_word(len(spots)), None),
        QA(PRESENCE_Q, "yes" if spots else "no", None),
    ]
    if len(spots) == 1:
        qas.append(QA(QUADRANT_Q, spots[0].quadrant, 0))
    return qas


def make_scene(seed: int, config: LesionsConfig | None = None) -> LesionScene:
    """The simulated screening scene for `seed`: the same seed always gives the same pixels."""
    config = config or LesionsConfig()
    rng = np.random.default_rng([seed, 11])
    rgb, allowed, fundus, view = _fundus_view(seed, rng, config)
    spots = _place_spots(rgb, allowed, np.random.default_rng([seed, 12]), config)
    image = Image.fromarray(np.round(rgb).astype(np.uint8), mode="RGB")
    return LesionScene(image, spots, _caption(spots), _qas(spots), seed, fundus, view)


# ---- modality images ----------------------------------------------------------------------------
def make_modality_image(seed: int, config: LesionsConfig | None = None) -> ModalityImage:
    """A real medical image of a modality drawn by `seed` (uniform over MODALITIES), augmented.

    Fundus images are `LesionScene`s (their spots are simulated), with the scene's caption and
    questions before the modality question."""
    config = config or LesionsConfig()
    rng = np.random.default_rng([seed, 21])
    modality = list(MODALITIES)[int(rng.integers(len(MODALITIES)))]
    names = [n for n, (m, _) in MODALITY_SOURCES.items() if m == modality]
    name = names[int(rng.integers(len(names)))]
    question = QA(MODALITY_Q, MODALITIES[modality], None)
    if modality == "fundus":
        scene = make_scene(seed, config)
        return ModalityImage(
            scene.image, modality, name, scene.caption, [*scene.qas, question], seed, scene.view
        )
    frame = 0
    if name == "examples_ybr_color.dcm":
        frames = ECHO_FRAMES.get(split_of_seed(seed), range(30))
        frame = frames[int(rng.integers(len(frames)))]
    image, view = _augment(load_modality_source(name, frame), rng, config, name not in _NO_FLIP)
    view["frame"] = frame
    caption = MODALITIES[modality][0].upper() + MODALITIES[modality][1:] + "."
    return ModalityImage(image, modality, name, caption, [question], seed, view)


def _augment(image: Image.Image, rng: np.random.Generator, config: LesionsConfig, may_flip: bool):
    size = config.image_size
    side = max(image.size)
    square = Image.new("RGB", (side, side))  # letterbox on black, as scanners show them
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    crop = rng.uniform(0.8, 1.0) * side
    cx, cy = (side / 2 + rng.uniform(-0.5, 0.5) * (side - crop) for _ in range(2))
    angle = rng.uniform(-config.max_angle, config.max_angle) * 0.6
    flip = bool(rng.random() < 0.5) and may_flip
    # Upsample small scans with BICUBIC; reduce large ones over 2x to avoid aliasing.
    out = 2 * size
    picture = square.transform(
        (out, out), Image.Transform.AFFINE, _affine(cx, cy, crop, out, angle),
        Image.Resampling.BICUBIC, fillcolor=0,
    ).reduce(2)  # fmt: skip
    rgb = np.asarray(picture, dtype=np.float32)
    rgb, tone = _tone(rgb[:, ::-1] if flip else rgb, rng, config.jitter * 0.7)
    view = {"crop": round(crop / side, 3), "angle": round(angle, 2), "flip": flip, **tone}
    return Image.fromarray(np.round(rgb).astype(np.uint8), mode="RGB"), view


# ---- splits -------------------------------------------------------------------------------------
def iter_split(split: str, n: int, config: LesionsConfig | None = None) -> Iterator[LesionScene]:
    """The split's first `n` lesion scenes one at a time."""
    for seed in split_seeds(split, n):
        yield make_scene(seed, config)


def make_split(split: str, n: int, config: LesionsConfig | None = None) -> list[LesionScene]:
    """The first `n` lesion scenes of "train", "val" or "test"."""
    return list(iter_split(split, n, config))


def make_modality_split(
    split: str, n: int, config: LesionsConfig | None = None, offset: int = 0
) -> list[ModalityImage]:
    """`n` modality images of `split`, from the split's seeds `offset` onwards (so that they can
    be kept apart from the seeds used for lesion scenes)."""
    return [make_modality_image(s, config) for s in split_seeds(split, offset + n)[offset:]]
