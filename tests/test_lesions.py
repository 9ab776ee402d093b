"""Tests for the simulated screening data (vlkit.data.lesions), LesionsDataset and
evaluate_lesions: scenes are deterministic, masks and answers agree with what is painted, splits
differ, modality images load with their labels, and scoring counts right and wrong exactly."""

import json
from collections import Counter
from functools import cache

import numpy as np
import pytest

import vlkit.evaluate as evaluate_module
from vlkit.cli import main
from vlkit.data.lesions import (
    COUNT_Q,
    MODALITIES,
    MODALITY_Q,
    MODALITY_SOURCES,
    PRESENCE_Q,
    QUADRANT_Q,
    QUADRANTS,
    LesionsConfig,
    count_word,
    load_modality_source,
    make_modality_image,
    make_scene,
    make_split,
    split_of_seed,
    split_seeds,
)
from vlkit.datasets import ConcatDataset, LesionsDataset, check_example, from_spec
from vlkit.errors import ConfigError, VlkitError
from vlkit.evaluate import (
    evaluate,
    evaluate_lesions,
    evaluate_spot_attention,
    lesion_questions,
    patch_overlap,
    read_count,
    read_modality,
    read_quadrant,
    score_lesion_answer,
    score_lesions,
)

N_SCENES = 40


@cache
def scenes():
    """40 train scenes, made once and shared."""
    return make_split("train", N_SCENES)


def test_same_seed_same_scene_and_different_seeds_differ():
    a, b = make_scene(3), make_scene(3)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert (a.caption, a.qas, a.view) == (b.caption, b.qas, b.view)
    assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a.spots, b.spots, strict=True))
    assert not np.array_equal(np.asarray(a.image), np.asarray(make_scene(4).image))
    assert a.image.mode == "RGB" and a.image.size == (224, 224)
    m1, m2 = make_modality_image(5), make_modality_image(5)
    assert np.array_equal(np.asarray(m1.image), np.asarray(m2.image)) and m1.qas == m2.qas


def test_splits_differ_by_seed_and_region():
    seeds = {s: split_seeds(s, 20) for s in ("train", "val", "test")}
    assert not (set(seeds["train"]) & set(seeds["test"]) or set(seeds["val"]) & set(seeds["test"]))
    assert [split_of_seed(s[0]) for s in seeds.values()] == ["train", "val", "test"]
    # Each split's crops are centred in its own sector of the fundus.
    for split, (lo, hi) in {"train": (0, 240), "val": (240, 300), "test": (300, 360)}.items():
        for scene in make_split(split, 4):
            x, y = scene.view["centre"]
            angle = np.degrees(np.arctan2(-(y - 702.0), x - 705.0)) % 360
            assert lo - 0.5 <= angle <= hi + 0.5, (split, angle)
    test = make_split("test", 3)
    assert all(
        not np.array_equal(np.asarray(a.image), np.asarray(b.image))
        for a, b in zip(scenes()[:3], test, strict=True)
    )


def test_masks_lie_in_their_quadrant_inside_the_fundus_and_never_overlap():
    counts = Counter()
    for scene in scenes():
        size = scene.image.size[0]
        counts[len(scene.spots)] += 1
        union = np.zeros((size, size), dtype=int)
        for spot in scene.spots:
            ys, xs = np.nonzero(spot.mask)
            assert len(xs) > 0.5 * np.pi * spot.radius**2  # an ellipse with axis ratio >= 0.75
            lower, right = ys + 0.5 >= size / 2, xs + 0.5 >= size / 2
            assert lower.all() or not lower.any()
            assert right.all() or not right.any()
            assert QUADRANTS[2 * lower[0] + right[0]] == spot.quadrant
            assert scene.fundus[spot.mask].all()  # inside the fundus, hence inside the image
            assert 5 <= spot.radius <= 9
            union += spot.mask
        assert union.max() <= 1
    assert set(counts) == {0, 1, 2, 3}


def test_spots_are_visible_darker_red():
    scene = next(s for s in scenes() if s.spots)
    rgb = np.asarray(scene.image).astype(float)
    for spot in scene.spots:
        x, y = map(int, spot.centre)
        ring = rgb[y - int(2.5 * spot.radius) : y + int(2.5 * spot.radius), x]
        centre = rgb[y, x]
        assert centre[0] < ring[:, 0].max() - 30  # clearly darker
        assert centre[0] > centre[1] + 40  # still red


def test_answers_and_captions_match_the_spots():
    for scene in scenes():
        answers = {qa.question: qa.answer for qa in scene.qas}
        n = len(scene.spots)
        assert answers[COUNT_Q] == count_word(n)
        assert answers[PRESENCE_Q] == ("yes" if n else "no")
        assert (QUADRANT_Q in answers) == (n == 1)
        if n == 1:
            assert answers[QUADRANT_Q] == scene.spots[0].quadrant
            assert scene.qas[-1].object_index == 0
        assert scene.caption.startswith("A fundus photograph with ")
        if n == 0:
            assert scene.caption == "A fundus photograph with no spots."
        for quadrant in {s.quadrant for s in scene.spots}:
            assert quadrant in scene.caption
        assert read_count(scene.caption) == n


def test_caption_wording():
    from vlkit.data.lesions import Spot, _caption

    def spots(*quadrants):
        return [Spot((0, 0), 5, q, 0.7, np.zeros((1, 1), bool)) for q in quadrants]

    assert _caption(spots("upper left")) == "A fundus photograph with one spot, in the upper left."
    assert (
        _caption(spots("upper left", "lower right"))
        == "A fundus photograph with two spots, in the upper left and lower right."
    )
    assert _caption(spots("lower left", "lower left")) == (
        "A fundus photograph with two spots, both in the lower left."
    )
    assert _caption(spots("upper left", "upper left", "lower right")) == (
        "A fundus photograph with three spots, two in the upper left and one in the lower right."
    )


def test_modality_images_load_and_are_labelled():
    for name, (modality, _) in MODALITY_SOURCES.items():
        image = load_modality_source(name)
        assert image.mode == "RGB" and min(image.size) >= 64, name
        assert modality in MODALITIES
    frame = load_modality_source("examples_ybr_color.dcm", 27)
    first = load_modality_source("examples_ybr_color.dcm", 0)
    assert frame.size == first.size and not np.array_equal(np.asarray(frame), np.asarray(first))
    records = [make_modality_image(s) for s in split_seeds("val", 30)]
    assert {r.modality for r in records} == set(MODALITIES)
    for r in records:
        assert r.image.size == (224, 224) and r.image.mode == "RGB"
        assert r.qas[-1].question == MODALITY_Q and r.qas[-1].answer == MODALITIES[r.modality]
        assert MODALITY_SOURCES[r.source][0] == r.modality
        assert read_modality(r.qas[-1].answer) == r.modality
        if r.source == "examples_ybr_color.dcm":
            assert 20 <= r.view["frame"] < 25  # val frames of the echo loop


def test_dataset_examples_pass_check_example_and_mix_modalities():
    data = LesionsDataset("train", n=10, kind="both")
    assert len(data) == 20 and data.name == "lesions:train:both"
    for i in range(len(data)):
        example = check_example(data[i], i)
        assert example["images"][0].size == (224, 224)
    assert [data.is_modality(i) for i in range(10)] == [False] * 4 + [True] + [False] * 4 + [True]
    qa = data[9]["conversation"]  # record 4, a modality image, asked its questions
    assert MODALITY_Q in [m["content"].replace("<image>\n", "") for m in qa]
    assert all(
        not LesionsDataset("val", 5, "qa", modality_fraction=0).is_modality(i) for i in range(5)
    )
    with pytest.raises(VlkitError, match="kind="):
        LesionsDataset(kind="captions")


def test_from_spec_parses_lesions():
    part = from_spec("lesions-qa*2", "val", 3, image_size=64)
    assert isinstance(part, LesionsDataset) and len(part) == 6 and part.name == "lesions:val:qa"
    assert part[0]["images"][0].size == (64, 64)
    mixed = from_spec("shapes,lesions", "train", 2)
    assert isinstance(mixed, ConcatDataset) and len(mixed) == 4
    with pytest.raises(VlkitError, match="lesions"):
        from_spec("lesion", "train", 2)


def test_config_checks():
    with pytest.raises(ConfigError, match="spot_weights"):
        LesionsConfig(spot_weights=(-1, 1))
    with pytest.raises(ConfigError, match="radius"):
        LesionsConfig(radius=(0.1, 0.05))


def test_answer_readers():
    assert [read_count(t) for t in ("two", "2 spots", "There are none.", "zero", "many")] == [
        2, 2, 0, 0, None,
    ]  # fmt: skip
    assert read_count("No, there are two.") == 2 and read_count("There are no spots.") == 0
    assert read_quadrant("Top-left.") == "upper left"
    assert read_quadrant("the lower right quadrant") == "lower right"
    assert read_quadrant("left") is None
    assert read_modality("An MRI scan") == "mri" and read_modality("a CT") == "ct"
    assert read_modality("an MRI or a CT scan") is None
    assert score_lesion_answer("presence", "Yes, there are.", "yes")
    assert not score_lesion_answer("presence", "no", "yes")


def test_scoring_with_hand_written_answers():
    items = [
        {"type": "count", "question": COUNT_Q, "answer": "two", "truth": 2},
        {"type": "count", "question": COUNT_Q, "answer": "zero", "truth": 0},
        {"type": "count", "question": COUNT_Q, "answer": "zero", "truth": 0},
        {"type": "presence", "question": PRESENCE_Q, "answer": "yes", "truth": "yes"},
        {"type": "presence", "question": PRESENCE_Q, "answer": "no", "truth": "no"},
        {"type": "quadrant", "question": QUADRANT_Q, "answer": "upper left", "truth": "upper left"},
        {"type": "modality", "question": MODALITY_Q, "answer": "a CT scan", "truth": "ct"},
        {"type": "modality", "question": MODALITY_Q, "answer": "an MRI scan", "truth": "mri"},
    ]
    for i, item in enumerate(items):
        item.update(image=None, seed=i)
    answers = ["2", "none", "three", "yes", "yes", "top left", "CT", "an ultrasound image"]
    result = score_lesions(items, answers, examples=8)
    assert result["count"] == {"accuracy": 2 / 3, "n": 3, "chance": 2 / 3, "majority": "zero"}
    assert result["presence"]["accuracy"] == 0.5 and result["presence"]["chance"] == 0.5
    assert result["quadrant"] == {"accuracy": 1.0, "n": 1, "chance": 1.0, "majority": "upper left"}
    assert result["modality"]["accuracy"] == 0.5 and result["modality"]["n"] == 2
    assert [e["type"] for e in result["examples"][:4]] == [
        "count",
        "quadrant",
        "presence",
        "modality",
    ]
    assert [e["right"] for e in result["examples"] if e["type"] == "count"] == [True, True, False]
    with pytest.raises(VlkitError, match="one per question"):
        score_lesions(items, answers[:-1])


def test_evaluate_lesions_with_known_answers(monkeypatch):
    items = lesion_questions("test", 8, LesionsConfig(image_size=64))
    written = [i["answer"] for i in items]

    def perfect(model, prompts, images, *args):
        assert prompts == [i["question"] for i in items]
        return written

    class Model:
        class config:  # noqa: N801
            class encoder:  # noqa: N801
                image_size = 64

    monkeypatch.setattr(evaluate_module, "_answers", perfect)
    result = evaluate_lesions(Model(), split="test", limit=8, progress=False)
    assert result["images"] == 8 and result["questions"] == len(items)
    for kind in ("count", "presence", "modality"):
        assert result[kind]["accuracy"] == 1.0 and result[kind]["n"] > 0


def test_evaluate_lesions_runs_on_tiny(tiny):
    result = evaluate(
        tiny, "lesions", split="test", limit=10, batch_size=10, max_new_tokens=4, progress=False
    )
    assert result["task"] == "lesions" and result["images"] == 10
    for kind in ("count", "quadrant", "presence", "modality"):
        row = result[kind]
        assert row["n"] > 0, kind
        assert 0 <= row["accuracy"] <= 1 and 0 < row["chance"] <= 1
    assert result["examples"] and json.dumps(result)


def test_eval_command_lesions(tiny, monkeypatch, capsys):
    monkeypatch.setattr("vlkit.cli.load_model", lambda preset, checkpoint: tiny)
    # The wiring is under test here, not generation (test_evaluate_lesions_runs_on_tiny runs it).
    monkeypatch.setattr(evaluate_module, "_answers", lambda m, prompts, *a: ["yes"] * len(prompts))
    code = main(["eval", "--task", "lesions", "--preset", "tiny", "--limit", "4", "--json"])
    assert code == 0
    out = capsys.readouterr().out
    result = json.loads(out[out.index("{") :])
    assert result["task"] == "lesions" and result["images"] == 4
    assert result["presence"]["accuracy"] == result["presence"]["chance"]  # "yes" is the majority


# ---- spot attention: how much of the answer's map lies on the painted spot ---------------------
def test_patch_overlap_marks_every_patch_a_mask_touches():
    mask = np.zeros((64, 64), bool)
    mask[15, 15] = True  # last pixel of patch (1, 1) in an 8 x 8 grid of 8-pixel patches
    mask[16, 40:50] = True  # first row of patches (2, 5) and (2, 6)
    hits = patch_overlap(mask, (8, 8))
    assert hits.shape == (8, 8)
    assert sorted(zip(*np.nonzero(hits), strict=True)) == [(1, 1), (2, 5), (2, 6)]
    assert not patch_overlap(np.zeros((64, 64), bool), (4, 4)).any()


class _WholeView:
    class config:  # noqa: N801
        class encoder:  # noqa: N801
            image_size = 64
            resize = 64


def _fake_capture(place):
    """A capture_attention stand-in whose every map is `place(spot)` on an 8 x 8 grid."""
    import torch

    seen = []

    def capture(model, image, prompt, answer, **kwargs):
        scene = next(s for s in make_split("test", 200, LesionsConfig(image_size=64))
                     if np.array_equal(np.asarray(s.image), np.asarray(image)))  # fmt: skip
        assert prompt == QUADRANT_Q and len(scene.spots) == 1
        assert answer == scene.spots[0].quadrant
        seen.append(scene)
        heat = torch.as_tensor(place(scene.spots[0]), dtype=torch.float32)

        class Image:
            grid = (8, 8)

            def heatmap(self, **spec):
                return heat

        return type("Capture", (), {"images": [Image()]})()

    return capture, seen


def test_spot_attention_on_the_spot_and_flat(monkeypatch):
    capture, seen = _fake_capture(lambda spot: patch_overlap(spot.mask, (8, 8)) * 5.0)
    monkeypatch.setattr("vlkit.attention.capture_attention", capture)
    result = evaluate_spot_attention(_WholeView(), limit=5, progress=False)
    assert result["scenes"] == 5 and len(seen) == 5
    assert all(v == pytest.approx(1.0) for v in result["on_spot"].values())
    area = np.mean([patch_overlap(s.spots[0].mask, (8, 8)).mean() for s in seen])
    assert result["area"] == pytest.approx(area) and 0 < area < 0.2
    assert all(r == pytest.approx(1 / area) for r in result["ratio"].values())

    capture, _ = _fake_capture(lambda spot: np.ones((8, 8)))  # a flat map
    monkeypatch.setattr("vlkit.attention.capture_attention", capture)
    flat = evaluate_spot_attention(_WholeView(), limit=5, progress=False)
    assert all(v == pytest.approx(area) for v in flat["on_spot"].values())
    assert all(r == pytest.approx(1.0) for r in flat["ratio"].values())


def test_spot_attention_runs_on_tiny_and_from_the_command_line(tiny, capsys):
    result = evaluate(tiny, "spot-attention", limit=3, progress=False)
    assert result["task"] == "spot-attention" and result["scenes"] == 3
    assert set(result["on_spot"]) == {"last_layer", "mean_layers", "gradient", "rollout"}
    for name, share in result["on_spot"].items():
        assert 0 <= share <= 1
        assert result["ratio"][name] == pytest.approx(share / result["area"])
    assert main(["eval", "--task", "spot-attention", "--preset", "tiny", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "one-spot scenes 2" in out and "x a flat map" in out


def test_spot_attention_refuses_a_cropping_encoder():
    class Cropping:
        class config:  # noqa: N801
            class encoder:  # noqa: N801
                image_size = 64
                resize = 72

    with pytest.raises(VlkitError, match="resize equals image_size"):
        evaluate_spot_attention(Cropping(), limit=2, progress=False)
    with pytest.raises(VlkitError, match="at least one scene"):
        evaluate_spot_attention(_WholeView(), limit=0, progress=False)
