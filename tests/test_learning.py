"""The tiny preset learns the shapes world in a short CPU run, and then looks where it should.

One module-scoped run trains the tiny preset on shapes captions. The tiny model has no pretrained
parts at all (random encoder, random LM over a word-level vocabulary), so the run puts LoRA on
every linear layer of the LM: the LM has to learn the caption language as well as read the image.
Measured on 2 CPU cores (one thread, 76 s for 400 steps): loss 6.06 over the first 20 steps,
0.68 over the last 50; greedy captions of 60 test scenes get colour 34% (chance 17%), shape 43%
(25%), size 70% (50%), position 29% (~11%), count 45% (25%). Pointing game on 20 test scenes
(114 colour and shape words): mean over layers 13.2%, attention x gradient 13.2%, last layer
0.9%, encoder rollout 10.5% (the same map for every word), chance 2.2%. The bounds below sit
under those figures and well above chance.
"""

import statistics

import pytest
import torch

from vlkit import VisionLanguageModel
from vlkit.data.shapes import ShapesConfig
from vlkit.datasets import ShapesDataset
from vlkit.evaluate import evaluate_pointing, evaluate_shapes
from vlkit.train import HistoryCallback, TrainConfig, Trainer

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
STEPS = 400


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    model = VisionLanguageModel.from_preset("tiny")
    data = ShapesDataset("train", 4000, "caption", ShapesConfig(image_size=64))
    history = HistoryCallback()
    config = TrainConfig(
        stage="instruct", steps=STEPS, batch_size=16, lr=3e-3, warmup_steps=30,
        lora_target_modules=ALL_LINEAR, lora_r=16, lora_alpha=32, lora_dropout=0.0,
        eval_every=0, save_every=0, out_dir=str(tmp_path_factory.mktemp("tiny-shapes")),
    )  # fmt: skip
    Trainer(model, data, None, config, callbacks=[history], progress=False).train()
    return model.eval(), history


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
