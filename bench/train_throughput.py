"""Stage-1 (align) training speed: with and without the feature cache, against the LM-alone floor.

    python bench/train_throughput.py [--preset small] [--batch-size 8] [--batches 4]

With the encoder frozen, an align step needs the projector and the LM's forward and backward (the
backward runs through the LM to reach the projector, though no LM weight gets a gradient). The
floor is that LM forward + backward alone, on inputs of exactly the same shape: no step can cost
less. Three figures per run:
- uncached: every step encodes its images;
- cached: the second epoch over the same batches, when every image's features are in the cache;
- floor: the LM alone on the same token counts, and again with 4x the image tokens (what the
  pixel-shuffle projector saves over one token per patch).
On a CUDA machine the run uses bf16 autocast and also prints model FLOPs utilisation (MFU).
Prints a table; never part of the tests' pass/fail.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from vlkit import VisionLanguageModel
from vlkit.data.shapes import ShapesConfig
from vlkit.datasets import ShapesDataset
from vlkit.train import Callback, TrainConfig, Trainer

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense, from vendor sheets


class StepTimes(Callback):
    def __init__(self):
        self.times = [time.perf_counter()]

    def on_step(self, trainer, step, loss, lr):
        if trainer.device_sync:
            trainer.device_sync()
        self.times.append(time.perf_counter())

    def durations(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:], strict=False)]


def run(model, data, batch_size, cached: bool, epochs: int) -> list[float]:
    """Per-step seconds of an align run over `data` for `epochs` epochs."""
    steps = epochs * len(data) // batch_size
    timer = StepTimes()
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            stage="align", steps=steps, batch_size=batch_size, warmup_steps=1, eval_every=0,
            save_every=0, feature_cache=cached, out_dir=out, explode_factor=0, zero_loss_steps=0,
        )  # fmt: skip
        trainer = Trainer(model, data, None, config, callbacks=[timer], progress=False)
        trainer.device_sync = torch.cuda.synchronize if torch.cuda.is_available() else None
        timer.times = [time.perf_counter()]
        trainer.train()
    return timer.durations()


def lm_floor(model, batch, extra_tokens: int, repeats: int) -> tuple[float, int]:
    """Seconds for the LM's forward + backward (to its inputs) on the batch's shape."""
    lm = model.lm.model
    ids = batch["input_ids"]
    b, length = ids.shape
    length += extra_tokens
    device = model.device
    embeds = torch.randn(b, length, lm.config.hidden_size, device=device) * 0.02
    embeds.requires_grad_(True)
    mask = torch.ones(b, length, dtype=torch.long, device=device)
    labels = torch.randint(0, lm.config.vocab_size, (b, length), device=device)
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        start = time.perf_counter()
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            loss = lm(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss
        loss.backward()
        embeds.grad = None
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]), b * length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=4, help="batches per epoch")
    args = parser.parse_args()

    model = VisionLanguageModel.from_preset(args.preset)
    if torch.cuda.is_available():
        model.to("cuda")
    n = args.batch_size * args.batches
    data = ShapesDataset(
        "train", n, "caption", ShapesConfig(image_size=model.config.encoder.image_size)
    )

    uncached = run(model, data, args.batch_size, cached=False, epochs=1)[1:]  # step 1: warm-up
    cached_all = run(model, data, args.batch_size, cached=True, epochs=2)
    cached = cached_all[args.batches :]  # the second epoch: every image already cached

    batch = model.prepare([data[i]["conversation"] for i in range(args.batch_size)],
                          [data[i]["images"] for i in range(args.batch_size)])  # fmt: skip
    per_image = model.image_tokens_per_view
    floor, tokens = lm_floor(model, batch, 0, repeats=max(3, args.batches))
    floor4, tokens4 = lm_floor(model, batch, 3 * per_image, repeats=max(3, args.batches))

    def row(name, seconds, note=""):
        print(
            f"{name:<44} {seconds:8.3f} s/step {args.batch_size / seconds:8.2f} samples/s  {note}"
        )

    device = "cuda " + torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"preset {args.preset} on {device}, torch threads {torch.get_num_threads()}, "
          f"batch {args.batch_size}, {tokens // args.batch_size} tokens/sample "
          f"({per_image} image tokens)")  # fmt: skip
    u, c = statistics.median(uncached), statistics.median(cached)
    row("align step, no feature cache", u)
    row("align step, feature cache (2nd epoch)", c, f"{c / floor:.2f}x the floor")
    row("floor: LM forward + backward, same tokens", floor)
    row(f"floor with {4 * per_image} image tokens (no pixel shuffle)", floor4,
        f"{floor4 / floor:.2f}x")  # fmt: skip
    if torch.cuda.is_available():
        params = sum(p.numel() for p in model.lm.model.parameters())
        flops = 4 * params * tokens  # forward 2NT + backward to the inputs only ~2NT
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device), None)
        if peak:
            print(f"MFU (cached step, 4*N*T FLOPs, bf16 peak {peak:.0f} TFLOPS): "
                  f"{flops / c / (peak * 1e12):.2%}")  # fmt: skip


if __name__ == "__main__":
    main()
