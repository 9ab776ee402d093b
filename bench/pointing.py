"""The pointing game per method, for the trained tiny preset and the shipped small checkpoint.

    python bench/pointing.py [--tiny-scenes 40] [--small-scenes 30] [--tiny-steps 400] [--skip-small]

For each colour or shape word of a held-out shapes caption (teacher-forced), each method's
heatmap peak either lands on the object the word names or not (see `vlkit.evaluate.
evaluate_pointing`). Chance is the share of patches on the object. The tiny preset is first
trained with `vlkit.train.train_tiny_shapes` (about 75 s); small is the checkpoint in
data/checkpoints/small. Prints one table: method x model, with words scored and wall time.
"""

from __future__ import annotations

import argparse
import time

from transformers.utils import logging as hf_logging

from vlkit import VisionLanguageModel
from vlkit.cli import default_checkpoint
from vlkit.evaluate import POINTING_METHODS, evaluate_pointing
from vlkit.train import train_tiny_shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny-scenes", type=int, default=40)
    parser.add_argument("--small-scenes", type=int, default=30)
    parser.add_argument("--tiny-steps", type=int, default=400)
    parser.add_argument("--skip-small", action="store_true")
    args = parser.parse_args()
    hf_logging.disable_progress_bar()  # the table is the output

    results = {}
    start = time.perf_counter()
    tiny, history = train_tiny_shapes(steps=args.tiny_steps, progress=False)
    trained_in = time.perf_counter() - start
    start = time.perf_counter()
    results["tiny"] = evaluate_pointing(tiny, limit=args.tiny_scenes, progress=False)
    results["tiny"]["seconds"] = time.perf_counter() - start
    print(
        f"tiny: trained {args.tiny_steps} steps in {trained_in:.0f} s, "
        f"final loss {sum(history.loss[-50:]) / len(history.loss[-50:]):.2f}"
    )
    if not args.skip_small:
        checkpoint = default_checkpoint()
        if checkpoint is None:
            raise SystemExit("no shipped small checkpoint found: run with --skip-small")
        small = VisionLanguageModel.from_pretrained(checkpoint)
        start = time.perf_counter()
        results["small"] = evaluate_pointing(small, limit=args.small_scenes, progress=False)
        results["small"]["seconds"] = time.perf_counter() - start
        print(f"small: {checkpoint}")

    names = list(results)
    print()
    print("| method | " + " | ".join(names) + " |")
    print("| --- | " + " | ".join("---" for _ in names) + " |")
    for method in POINTING_METHODS:
        cells = [f"{100 * results[n]['accuracy'][method]:.1f}%" for n in names]
        print(f"| {method} | " + " | ".join(cells) + " |")
    print("| chance | " + " | ".join(f"{100 * results[n]['chance']:.1f}%" for n in names) + " |")
    print("| scenes / words | " + " | ".join(
        f"{results[n]['scenes']} / {results[n]['words']}" for n in names) + " |")  # fmt: skip
    print("| seconds | " + " | ".join(f"{results[n]['seconds']:.0f}" for n in names) + " |")


if __name__ == "__main__":
    main()
