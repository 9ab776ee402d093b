"""The tiny preset learns the shapes world in a short CPU run, and then looks where it should.

One module-scoped run trains the tiny preset on shapes captions (`vlkit.train.train_tiny_shapes`,
LoRA on every linear layer of the LM, since nothing in the tiny preset is pretrained).
Measured on 2 CPU cores (one thread, 76 s for 400 steps): loss 6.06 over the first 20 steps,
0.68 over the last 50; greedy captions of 60 test scenes get colour 34% (chance 17%), shape 43%
(25%), size 70% (50%), position 29% (~11%), count 45% (25%). Pointing game on 20 test scenes
(114 colour and shape words): mean over layers 13.2%, attention x gradient 13.2%, last layer
0.9%, encoder rollout 10.5% (the same map for every word), chance 2.2%. The bounds below sit
under those figures and well above chance.
"""

import statistics

import pytest

from vlkit.evaluate import evaluate_pointing, evaluate_shapes
from vlkit.train import train_tiny_shapes

STEPS = 400


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny_shapes(
        steps=STEPS, seed=0, out_dir=tmp_path_factory.mktemp("tiny-shapes"), progress=False
    )


def test_tiny_learns_shapes_captions(trained):
    model, history = trained
    first = statistics.mean(history.loss[:10])
    last = statistics.mean(history.loss[-50:])
    assert first > 4.0  # a random model over the tiny vocabulary
    assert last < 1.2, f"loss fell only from {first:.2f} to {last:.2f}"
    result = evaluate_shapes(model, limit=60, batch_size=30, progress=False)
    caption = result["caption"]
    # Chance: colour 1/6, shape 1/4, count 1/4 (1-4 objects), position about 1/9.
    assert caption["colour"] > 2 * (1 / 6), caption
    assert caption["shape"] > 1.5 * (1 / 4), caption
    assert caption["count"] > 1.5 * (1 / 4), caption
    assert caption["position"] > 2 * (1 / 9), caption


def test_pointing_game_on_trained_tiny_beats_chance(trained):
    model, _ = trained
    result = evaluate_pointing(model, limit=20, progress=False)
    assert result["words"] > 50
    best = max(result["accuracy"][m] for m in ("last_layer", "mean_layers", "gradient"))
    assert best > 2 * result["chance"], result
