"""Can the spots be read from the frozen encoder at all? Linear probes on the screening scenes.

    python bench/probe_lesions.py [--checkpoint DIR | --preset small] [--train 600] [--test 200]

The simulated screening scenes (`vlkit.data.lesions`: 0-3 painted spots on crops of a real
fundus photograph) are encoded once; the encoder's patch features and the projector's image
tokens are pooled to a 4x4 grid, by mean and by max (a spot covers about one of 256 patches, and
a mean over 16 patches dilutes it), and a logistic-regression probe per question is fitted on the
train scenes and scored on held-out ones: presence (any spot), count (0-3), and quadrant (scenes
with one spot). Compare with `vlkit eval --task lesions`: what a probe reads but the model's
answers miss is lost after the encoder. Prints a table.
"""

from __future__ import annotations

import argparse
import time

from probe_shapes import features  # the same pooling as the shapes probes (bench/ is on sys.path)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from vlkit.cli import load_model
from vlkit.data.lesions import LesionsConfig, make_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--train", type=int, default=600)
    parser.add_argument("--test", type=int, default=200)
    args = parser.parse_args()

    model = load_model(args.preset, args.checkpoint).eval()  # the CLI's loader
    config = LesionsConfig(image_size=model.config.encoder.image_size)
    train, test = make_split("train", args.train, config), make_split("test", args.test, config)
    start = time.perf_counter()
    train_f = features(model, train, pools=("mean", "max"))
    test_f = features(model, test, pools=("mean", "max"))
    print(f"{args.checkpoint or args.preset}: {len(train)} train / {len(test)} test screening "
          f"scenes, features in {time.perf_counter() - start:.0f} s")  # fmt: skip
    questions = {
        "presence": (lambda s: True, lambda s: len(s.spots) > 0),
        "count": (lambda s: True, lambda s: len(s.spots)),
        "quadrant": (lambda s: len(s.spots) == 1, lambda s: s.spots[0].quadrant),
    }
    columns = [(pool, where) for pool in ("mean", "max") for where in ("encoder", "projector")]
    print(f"{'question':<9} {'n test':>6} {'chance':>7} " + " ".join(
        f"{where + ' ' + pool:>15}" for pool, where in columns))  # fmt: skip
    for name, (keep, label) in questions.items():
        rows_train = [i for i, s in enumerate(train) if keep(s)]
        rows_test = [i for i, s in enumerate(test) if keep(s)]
        y_train = [label(train[i]) for i in rows_train]
        y_test = [label(test[i]) for i in rows_test]
        chance = max(y_test.count(v) for v in set(y_test)) / len(y_test)  # majority class
        scores = []
        for pool, where in columns:
            k = 0 if where == "encoder" else 1  # features() gives (encoder, projector)
            x_train, x_test = train_f[pool][k], test_f[pool][k]
            probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
            probe.fit(x_train[rows_train], y_train)
            scores.append(probe.score(x_test[rows_test], y_test))
        print(
            f"{name:<9} {len(y_test):>6} {chance:7.2f} " + " ".join(f"{v:>15.2f}" for v in scores)
        )


if __name__ == "__main__":
    main()
