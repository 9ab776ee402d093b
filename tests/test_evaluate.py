"""Evaluation: caption scoring against exact scenes, answer matching, BLEU and CIDEr-D by hand."""

import json
import math

import pytest

from vlkit.cli import main
from vlkit.data.shapes import make_scene
from vlkit.errors import VlkitError
from vlkit.evaluate import (
    bleu,
    cider_d,
    evaluate_shapes,
    normalise_answer,
    score_caption,
)


def _scene_with(n_objects: int):
    for seed in range(200):
        scene = make_scene(seed)
        if len(scene.objects) == n_objects:
            return scene
    raise AssertionError("no scene with that many objects in the first 200 seeds")


def test_exact_caption_scores_every_attribute():
    scene = _scene_with(3)
    score = score_caption(scene.caption, scene)
    assert score["objects"] == score["objects_said"] == 3
    assert score["count_correct"]
    assert score["correct"] == {"colour": 3, "shape": 3, "size": 3, "position": 3}


def test_caption_scoring_matches_objects_in_any_order_and_counts_misses():
    scene = _scene_with(3)
    a, b, c = scene.objects
    # Out of order, one object missing, one colour wrong.
    wrong = next(x for x in ("red", "green", "blue") if x != b.colour)
    text = (
        f"There are two objects: a {c.size} {c.colour} {c.shape} at the {c.position} "
        f"and a {b.size} {wrong} {b.shape} at the {b.position}."
    )
    score = score_caption(text, scene)
    assert score["objects_said"] == 2 and not score["count_correct"]
    assert score["correct"] == {"colour": 1, "shape": 2, "size": 2, "position": 2}


def test_empty_and_runaway_captions():
    scene = _scene_with(2)
    assert score_caption("", scene)["correct"] == dict.fromkeys(
        ("colour", "shape", "size", "position"), 0
    )
    runaway = " and ".join(["a small red circle at the top left"] * 40)
    score = score_caption(runaway, scene)  # must not try 40-object permutations
    assert score["objects_said"] == 9 and not score["count_correct"]


@pytest.mark.parametrize(
    ("said", "truth", "same"),
    [
        ("The red circle.", "the red circle", True),
        ("Yes", "yes", True),
        ("  two. ", "two", True),
        ("a top left", "top left", True),
        ("top right", "top left", False),
        ("three objects", "three", False),
    ],
)
def test_normalise_answer(said, truth, same):
    assert (normalise_answer(said) == normalise_answer(truth)) is same


def test_bleu_by_hand():
    # 1-grams 5/6, 2-grams 3/5, 3-grams 1/4, equal lengths: (5/6 * 3/5 * 1/4) ** (1/3) = 0.5
    value = bleu(["The cat sat on the mat."], [["the cat is on the mat"]], max_n=3)
    assert value == pytest.approx(0.5)
    assert bleu(["the cat sat on the mat"], [["the cat is on the mat"]]) == 0.0  # no 4-gram
    assert bleu(["a b c d e"], [["a b c d e"]]) == pytest.approx(1.0)
    # brevity: half the reference's length costs exp(1 - 2)
    assert bleu(["a b c d"], [["a b c d a b c d"]]) == pytest.approx(math.exp(-1))
    with pytest.raises(VlkitError):
        bleu(["a"], [])


def test_cider_d_by_hand():
    refs = [["a red circle on grey"], ["two blue squares side by side"]]
    # Identical captions: cosine 1 for every n, no length penalty -> 10 per image.
    assert cider_d([r[0] for r in refs], refs) == pytest.approx(10.0)
    # Swapped captions share no n-gram with their references.
    assert cider_d([refs[1][0], refs[0][0]], refs) == pytest.approx(0.0)
    # An n-gram that every reference holds has idf 0 and earns nothing.
    shared = [["the cat"], ["the dog"]]
    assert cider_d(["the", "the"], shared) == pytest.approx(0.0)
    # Partial overlap lies strictly between, and a longer candidate is penalised more.
    partial = cider_d(["a red circle", "two blue squares"], refs)
    padded = cider_d(["a red circle x x x x x x x x", "two blue squares x x x x x x x"], refs)
    assert 0 < padded < partial < 10


def test_evaluate_shapes_on_tiny_reports_every_figure(tiny):
    result = evaluate_shapes(tiny, limit=4, batch_size=3, progress=False)
    assert result["scenes"] == 4
    scenes = [make_scene(s) for s in range(20_000_000, 20_000_004)]  # the test split's seeds
    assert result["questions"] == sum(len(s.qas) for s in scenes)
    assert result["objects"] == sum(len(s.objects) for s in scenes)
    assert set(result["caption"]) == {"colour", "shape", "size", "position", "count"}
    assert sum(row["n"] for row in result["qa_by_type"].values()) == result["questions"]
    for value in [*result["caption"].values(), result["qa_exact_match"]]:
        assert 0.0 <= value <= 1.0
    json.dumps(result)  # all plain values


def test_eval_command_writes_json(tmp_path, capsys):
    out = tmp_path / "figures.json"
    code = main(["eval", "--task", "shapes", "--preset", "tiny", "--limit", "2", "--json",
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed
    assert printed["scenes"] == 2 and printed["model"] == "tiny"


def test_eval_command_rejects_unknown_task(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--task", "nope", "--preset", "tiny"])
