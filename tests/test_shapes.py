"""Tests for vlkit.data.shapes: scenes are deterministic, their captions, QAs and masks agree with
what is drawn, splits never share a seed, and every word fits the tiny tokenizer's vocabulary."""

import re
from collections import Counter
from functools import cache

import numpy as np
import pytest

from vlkit.data.shapes import (
    QA,
    ShapesConfig,
    iter_split,
    make_scene,
    make_split,
    parse_caption,
    position_word,
    split_seeds,
)
from vlkit.errors import ConfigError
from vlkit.tiny import tiny_vocab

N_SEEDS = 300


@cache
def scenes():
    """300 scenes, made once and shared: making them is most of this file's run time."""
    return [make_scene(seed) for seed in range(N_SEEDS)]


def words(text):
    return re.findall(r"[a-z]+|[^\sa-z]", text.lower())


def test_same_seed_same_scene_and_different_seeds_differ():
    a, b = make_scene(7), make_scene(7)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert (a.caption, a.qas, a.seed) == (b.caption, b.qas, 7)
    assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a.objects, b.objects, strict=True))
    others = [make_scene(seed) for seed in (8, 9)]
    for other in others:
        assert not np.array_equal(np.asarray(a.image), np.asarray(other.image))
    assert a.image.mode == "RGB" and a.image.size == (224, 224)


def test_splits_are_disjoint_and_bounded():
    train, val, test = (set(split_seeds(s, 1000)) for s in ("train", "val", "test"))
    assert len(train) == len(val) == len(test) == 1000
    assert not (train & val or train & test or val & test)
    with pytest.raises(ConfigError, match="ask for fewer"):
        split_seeds("train", 10_000_001)
    with pytest.raises(ConfigError, match="'train', 'val', 'test'"):
        split_seeds("validation", 3)
    listed = make_split("val", 3)
    assert [s.seed for s in listed] == split_seeds("val", 3)
    assert [s.caption for s in iter_split("val", 3)] == [s.caption for s in listed]


def test_masks_are_the_visible_objects_in_their_cells():
    cell = 224 / 3
    for scene in scenes()[:100]:
        pixels = np.asarray(scene.image, dtype=np.float32)  # (H, W, 3)
        masks = [o.mask for o in scene.objects]
        assert all(m.shape == (224, 224) and m.dtype == bool and m.any() for m in masks)
        assert np.sum(masks, axis=0).max() == 1  # pairwise disjoint
        for obj in scene.objects:
            mean = pixels[obj.mask].mean(axis=0)
            assert np.abs(mean - obj.rgb).max() < 20, (scene.seed, obj.name, mean)
            rows, cols = np.nonzero(obj.mask)
            x, y = cols.mean() + 0.5, rows.mean() + 0.5  # pixel centres sit at i + 0.5
            assert obj.col * cell < x < (obj.col + 1) * cell
            assert obj.row * cell < y < (obj.row + 1) * cell
            assert np.hypot(x - obj.centre[0], y - obj.centre[1]) < 1.5  # shapes are centred
        # Outside every mask the image is background, up to the anti-aliased rims.
        outside = ~np.any(masks, axis=0)
        assert np.median(pixels[outside], axis=0).tolist() == [235.0, 235.0, 235.0]


def test_large_objects_cover_more_pixels_than_small_ones_of_the_same_shape():
    area = {}
    for scene in scenes():
        for obj in scene.objects:
            area.setdefault((obj.shape, obj.size), []).append(obj.mask.sum())
    for shape in ("circle", "square", "triangle", "star"):
        assert np.mean(area[shape, "large"]) > 3 * np.mean(area[shape, "small"])


def test_caption_round_trips_through_parse_caption():
    for scene in scenes()[:200]:
        expected = [
            {"size": o.size, "colour": o.colour, "shape": o.shape, "position": o.position}
            for o in scene.objects
        ]
        assert parse_caption(scene.caption) == expected, scene.caption


def test_caption_reads_in_order_with_number_words():
    scene = next(s for s in scenes() if len(s.objects) == 1)
    assert scene.caption.startswith("There is one object: a ")
    scene = next(s for s in scenes() if len(s.objects) == 3)
    assert scene.caption.startswith("There are three objects: ")
    assert scene.caption.count(",") == 1 and " and " in scene.caption
    for scene in scenes():
        cells = [(o.row, o.col) for o in scene.objects]
        assert cells == sorted(cells)


def test_parse_caption_is_tolerant():
    text = (
        "THERE ARE TWO OBJECTS; a Big red circle in the centre, and a blue small square, top-left!"
    )
    assert parse_caption(text) == [
        {"size": "large", "colour": "red", "shape": "circle", "position": "center"},
        {"size": "small", "colour": "blue", "shape": "square", "position": "top left"},
    ]
    assert parse_caption("a circle of color green and a star") == [
        {"size": None, "colour": "green", "shape": "circle", "position": None},
        {"size": None, "colour": None, "shape": "star", "position": None},
    ]
    assert parse_caption("nothing to see") == []


def test_qa_answers_agree_with_the_objects():
    kinds = Counter()
    for scene in scenes():
        objects = scene.objects
        names = Counter(o.name for o in objects)
        assert scene.qas[0] == QA(
            "How many objects are there?", ["one", "two", "three", "four"][len(objects) - 1], None
        )
        for qa in scene.qas[1:]:
            obj = objects[qa.object_index] if qa.object_index is not None else None
            if m := re.fullmatch(r"What colour is the (\w+)\?", qa.question):
                kinds["colour"] += 1
                assert [o.shape for o in objects].count(m[1]) == 1
                assert obj.shape == m[1] and qa.answer == obj.colour
            elif m := re.fullmatch(r"Where is the (\w+ \w+)\?", qa.question):
                kinds["where"] += 1
                assert names[m[1]] == 1 and obj.name == m[1] and qa.answer == obj.position
            elif m := re.fullmatch(r"Is there an? (\w+ \w+)\?", qa.question):
                kinds[qa.answer] += 1
                assert qa.answer == ("yes" if names[m[1]] else "no")
                assert obj is None or obj.name == m[1]
            elif m := re.fullmatch(
                r"Which is larger, the (\w+ \w+) or the (\w+ \w+)\?", qa.question
            ):
                kinds["larger"] += 1
                a, b = (next(o for o in objects if o.name == n) for n in (m[1], m[2]))
                assert names[m[1]] == names[m[2]] == 1 and a.size != b.size
                assert qa.answer == f"the {obj.name}" and obj.size == "large"
            else:
                raise AssertionError(f"unexpected question {qa.question!r}")
        assert [qa.answer for qa in scene.qas].count("yes") == 1
    assert min(kinds.values()) > 50, kinds  # every kind of question is common


def test_object_counts_span_one_to_four():
    counts = Counter(len(s.objects) for s in scenes())
    assert sorted(counts) == [1, 2, 3, 4] and min(counts.values()) > 40


def test_every_word_is_in_the_tiny_vocabulary():
    vocab = set(tiny_vocab())
    used = set()
    for scene in scenes():
        for message in scene.to_conversation("caption") + scene.to_conversation("qa"):
            used |= set(words(message["content"].replace("<image>", "")))
    assert used - vocab == set()


def test_to_conversation():
    scene = scenes()[0]
    assert scene.to_conversation() == [
        {"role": "user", "content": "<image>\nDescribe the image."},
        {"role": "assistant", "content": scene.caption},
    ]
    turns = scene.to_conversation("qa", image_token="<img>")
    assert len(turns) == 2 * len(scene.qas)
    assert [t["role"] for t in turns[:4]] == ["user", "assistant", "user", "assistant"]
    assert turns[0]["content"] == "<img>\n" + scene.qas[0].question
    assert turns[1]["content"] == scene.qas[0].answer
    assert sum("<img>" in t["content"] for t in turns) == 1
    with pytest.raises(ConfigError, match="'caption' or 'qa'"):
        scene.to_conversation("story")


def test_position_words():
    names = [position_word(r, c) for r in range(3) for c in range(3)]
    assert names == ["top left", "top", "top right", "left", "center", "right",
                     "bottom left", "bottom", "bottom right"]  # fmt: skip
    assert position_word(0, 1, grid=2) == "top right" and position_word(0, 0, grid=1) == "center"
    assert position_word(1, 3, grid=4) == "right" and position_word(1, 2, grid=4) == "center"


def test_other_configs_still_work():
    config = ShapesConfig(image_size=64, grid=2, max_objects=4, background=(255, 255, 255))
    scene = make_scene(3, config)
    assert scene.image.size == (64, 64) and all(o.mask.any() for o in scene.objects)
    assert parse_caption(scene.caption, config)[0]["shape"] == scene.objects[0].shape


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_objects": 10}, "lower max_objects or raise grid"),
        ({"min_objects": 3, "max_objects": 2}, "1 <= min_objects <= max_objects"),
        ({"shapes": ("circle", "hexagon")}, "choose from circle, square, triangle, star"),
        ({"sizes": {"small": 0.2, "large": 0.6}}, "objects stay in their cells"),
        ({"sizes": {"small": 0.3, "large": 0.35}}, "differ by 1.5x"),
        ({"image_size": 32, "grid": 3}, "raise image_size or lower grid"),
        ({"colours": {"red": (300, 0, 0)}}, "ints in 0..255"),
        ({"colours": {"gray": (230, 230, 230)}}, "too close to background"),
        ({"colours": {"Dark Red": (120, 0, 0)}}, "single lower-case words"),
        ({"jitter": 0.6}, "fraction of the cell"),
    ],
)
def test_config_errors_say_how_to_fix(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        ShapesConfig(**kwargs)
