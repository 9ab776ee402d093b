"""Where does shapes information get lost? Linear probes on the encoder's and the projector's output.

    python bench/probe_shapes.py [--checkpoint DIR | --preset small] [--train 450] [--test 150]

Single-object shapes scenes (6 colours, 4 shapes, 9 grid cells). For each scene the frozen
encoder's patch features and the projector's image tokens are average-pooled to a 4x4 grid (so
position survives) and a logistic-regression probe is fitted per attribute on the train scenes and
scored on held-out ones. Compare with `vlkit eval --task shapes` on the same checkpoint: what the
probes read but the generated captions get wrong is lost in the language model, what the encoder
probe reads but the projector probe does not is lost in the projector. Prints a table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from vlkit.cli import load_model
from vlkit.data.shapes import ShapesConfig, make_split


@torch.no_grad()
def features(model, scenes, batch_size=25, pools=("mean",)):
    """{pool: (encoder, projector)} features, each (n, 16 * D), pooled to a 4x4 grid by "mean"
    and/or "max"; the scenes are encoded once."""
    rows = {(pool, where): [] for pool in pools for where in ("encoder", "projector")}
    poolings = {"mean": F.adaptive_avg_pool2d, "max": F.adaptive_max_pool2d}
    for start in range(0, len(scenes), batch_size):
        views = torch.stack(
            [model.encoder.preprocess(s.image) for s in scenes[start : start + batch_size]]
        )
        out = model.encoder(views.to(model.device))
        patches = out.features  # (B, h*w, D)
        tokens = model.projector(patches, out.grid)  # (B, T, D_lm)
        for where, x in (("encoder", patches), ("projector", tokens)):
            side = int(round(x.shape[1] ** 0.5))
            grid = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], side, side)  # (B, D, s, s)
            for pool in pools:
                pooled = poolings[pool](grid.float(), 4)  # (B, D, 4, 4)
                rows[pool, where].append(pooled.flatten(1).cpu().numpy())
    return {
        pool: (np.concatenate(rows[pool, "encoder"]), np.concatenate(rows[pool, "projector"]))
        for pool in pools
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--train", type=int, default=450)
    parser.add_argument("--test", type=int, default=150)
    args = parser.parse_args()

    model = load_model(args.preset, args.checkpoint).eval()  # the CLI's loader
    config = ShapesConfig(image_size=model.config.encoder.image_size, min_objects=1, max_objects=1)
    train, test = make_split("train", args.train, config), make_split("test", args.test, config)
    start = time.perf_counter()
    train_enc, train_proj = features(model, train)["mean"]
    test_enc, test_proj = features(model, test)["mean"]
    print(f"{args.checkpoint or args.preset}: {len(train)} train / {len(test)} test single-object "
          f"scenes, features in {time.perf_counter() - start:.0f} s")  # fmt: skip
    labels = {
        "colour": lambda s: s.objects[0].colour,
        "shape": lambda s: s.objects[0].shape,
        "position": lambda s: s.objects[0].position,
        "size": lambda s: s.objects[0].size,
    }
    print(f"{'attribute':<10} {'chance':>7} {'encoder':>8} {'projector':>10}")
    for name, get in labels.items():
        y_train = [get(s) for s in train]
        y_test = [get(s) for s in test]
        chance = max(y_test.count(v) for v in set(y_test)) / len(y_test)  # majority class
        scores = []
        for x_train, x_test in ((train_enc, test_enc), (train_proj, test_proj)):
            probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
            probe.fit(x_train, y_train)
            scores.append(probe.score(x_test, y_test))
        print(f"{name:<10} {chance:7.2f} {scores[0]:8.2f} {scores[1]:10.2f}")


if __name__ == "__main__":
    main()
