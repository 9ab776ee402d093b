"""Core figures for a preset (default `small`): load time, image encode time, and decode speed of
the composed model against the same LM generating from text alone with the same prompt length.

    python bench/core.py [--preset small] [--tokens 32] [--repeats 3]

The image should cost prefill only: once its tokens are in the KV cache, each new token costs
the same as for text. Prints a table; never part of the tests' pass/fail.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch

COLD = "import time; t=time.perf_counter(); from vlkit import VisionLanguageModel; VisionLanguageModel.from_preset({!r}); print(time.perf_counter()-t)"


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def prefill_and_decode(lm, embeds, n_tokens):
    """Prefill `embeds`, then greedily decode exactly `n_tokens` (end-of-turn ignored). -> (s, s)"""
    am = torch.ones(embeds.shape[:2], dtype=torch.long)
    start = time.perf_counter()
    out = lm(inputs_embeds=embeds, attention_mask=am, use_cache=True, logits_to_keep=1)
    prefill = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(n_tokens):
        token = out.logits[:, -1].argmax(-1, keepdim=True)  # (1, 1)
        am = torch.cat([am, torch.ones_like(token)], dim=1)
        out = lm(
            inputs_embeds=lm.embed(token),
            attention_mask=am,
            past_key_values=out.past_key_values,
            use_cache=True,
        )
    return prefill, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="small")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from vlkit import VisionLanguageModel
    from vlkit.images import load_image

    cold = float(
        subprocess.run(
            [sys.executable, "-c", COLD.format(args.preset)],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    model = VisionLanguageModel.from_preset(args.preset).eval()  # pays this process's imports
    start = time.perf_counter()
    model = VisionLanguageModel.from_preset(args.preset).eval()
    warm = time.perf_counter() - start

    image = load_image(
        str(
            __import__("pathlib").Path(__file__).resolve().parent.parent
            / "data"
            / "samples"
            / "chelsea.jpg"
        )
    )
    view = model.encoder.preprocess(image)[None]  # (1, 3, S, S)
    batch8 = view.repeat(8, 1, 1, 1)
    with torch.no_grad():
        model.encoder(view)  # warm-up
        enc1 = timed(lambda: model.encoder(view), args.repeats)
        enc8 = timed(lambda: model.encoder(batch8), args.repeats)
        features = model.encoder(view).features  # (1, N_patches, D)
        proj = timed(lambda: model.projector(features, model.encoder.grid), args.repeats)

    batch = model.prepare(
        [[{"role": "user", "content": "<image>\nDescribe this image briefly."}]],
        [[image]],
        add_generation_prompt=True,
        padding_side="left",
    )
    prompt_len = batch["input_ids"].shape[1]
    text_ids = model.lm.tokenizer(
        "Tell me a long story about a cat. " * 40, add_special_tokens=False
    )["input_ids"][:prompt_len]
    text_embeds = model.lm.embed(torch.tensor([text_ids])).detach()

    rows = []
    for name, make in [
        (
            "composed (image + text)",
            lambda: model.embed_inputs(
                batch["input_ids"], batch["image_mask"], batch["pixel_values"]
            ),
        ),
        ("LM alone (text)", lambda: text_embeds),
    ]:
        prefill_and_decode(model.lm, make().detach(), 2)  # warm-up
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            embeds = make().detach()
            build = time.perf_counter() - start
            pre, dec = prefill_and_decode(model.lm, embeds, args.tokens)
            runs.append((build + pre, dec))
        rows.append(
            (
                name,
                statistics.median(r[0] for r in runs),
                args.tokens / statistics.median(r[1] for r in runs),
            )
        )

    threads = torch.get_num_threads()
    print(
        f"vlkit core bench: preset={args.preset}, torch {torch.__version__}, {threads} threads, median of {args.repeats}"
    )
    print("| figure | value |\n| --- | --- |")
    print(f"| load, fresh process (imports + weights from cache) | {cold:.2f} s |")
    print(f"| load again, same process (imports done) | {warm:.2f} s |")
    print(
        f"| encode 1 image ({view.shape[-1]} px, {model.encoder.num_patches} patches) | {enc1 * 1000:.0f} ms |"
    )
    print(f"| encode 8 images, batched | {enc8 * 1000:.0f} ms ({enc8 / 8 * 1000:.0f} ms each) |")
    print(
        f"| projector ({model.config.projector.kind}, {model.image_tokens_per_view} tokens) | {proj * 1000:.1f} ms |"
    )
    print(f"| prompt length (image + text tokens) | {prompt_len} |")
    for name, pre, tps in rows:
        print(f"| {name}: encode + prefill | {pre * 1000:.0f} ms |")
        print(f"| {name}: decode | {tps:.1f} tokens/s |")
    ratio = rows[0][2] / rows[1][2]
    print(f"| decode speed composed / LM alone | {ratio:.2f} |")


if __name__ == "__main__":
    main()
