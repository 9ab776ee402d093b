"""The main job (`make demo` / `vlkit demo`): describe every sample image and show where the encoder looks.

For each image in data/samples/ it writes the model's answer and a picture of the encoder's
attention rollout over the patches it saw, then an index (out/demo/README.md) and results.json.
While no trained projector ships, the answers come from a random projector: the output says so
in plain words and keeps that text apart from anything called a description.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .attention import attention_rollout, cls_attention, plot_attention, view_image
from .cli import UNTRAINED_WARNING, default_checkpoint, load_model
from .config import DEFAULT_PROMPT
from .errors import VlkitError
from .images import load_image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".dcm"}
PROMPT = DEFAULT_PROMPT


def _attention_figure(model, image, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    view = model.encoder.preprocess(image)  # (3, S, S): exactly what the encoder sees
    with torch.no_grad():
        enc = model.encoder(view[None], output_attentions=True)
    shown = view_image(view, model.encoder.config.mean, model.encoder.config.std)
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.5))
    axes[0].imshow(shown)
    axes[0].set_axis_off()
    axes[0].set_title("encoder input (centre crop)", fontsize=9)
    layers = len(enc.attentions)
    layer = (
        3 * layers
    ) // 4  # a late-middle layer: object parts, fewer artifact patches than the last
    if enc.num_prefix_tokens:
        heat = cls_attention(enc.attentions, enc.num_prefix_tokens, enc.grid, layer=layer)[
            0
        ]  # (h, w)
        plot_attention(
            shown, heat, ax=axes[1], title=f"CLS attention, layer {layer + 1} of {layers}"
        )
    else:
        axes[1].set_axis_off()
    heat = attention_rollout(enc.attentions, enc.num_prefix_tokens, enc.grid)[0]  # (h, w)
    plot_attention(
        shown, heat, ax=axes[2], title=f"attention rollout, {enc.grid[0]}x{enc.grid[1]} patches"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_demo(
    samples: Path, out: Path, preset: str | None = None, checkpoint: str | None = None
) -> int:
    files = (
        sorted(p for p in samples.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if samples.is_dir()
        else []
    )
    if not files:
        raise VlkitError(f"no images found in {samples}: point --samples at a folder of images")
    out.mkdir(parents=True, exist_ok=True)
    source = checkpoint or (None if preset else default_checkpoint())
    print(
        f"loading {'checkpoint ' + str(source) if source else 'preset ' + (preset or 'small')} ...",
        flush=True,
    )
    model = load_model(preset, checkpoint)
    trained = model.config.projector_trained
    if not trained:
        print(UNTRAINED_WARNING)
    records, failed = [], 0
    for path in files:
        start = time.perf_counter()
        try:
            image = load_image(path)
            result = model.describe(image, PROMPT, max_new_tokens=48)
            picture = out / f"{path.stem}_attention.png"
            _attention_figure(model, image, picture)
        except VlkitError as exc:
            failed += 1
            print(f"{path.name}: error: {exc}")
            records.append({"image": path.name, "error": str(exc)})
            continue
        record = {
            "image": path.name,
            "description": result.text if trained else None,
            "untrained_output": None if trained else result.text,
            "image_tokens": sum(result.image_tokens),
            "seconds": round(time.perf_counter() - start, 2),
            "attention_picture": picture.name,
        }
        records.append(record)
        shown = result.text if trained else "(no description: untrained projector)"
        print(
            f"{path.name}: {shown}  [{record['image_tokens']} image tokens, {record['seconds']} s]",
            flush=True,
        )
    summary = {
        "model": source and str(source) or (preset or "small"),
        "projector_trained": trained,
        "prompt": PROMPT,
        "results": records,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    _write_index(out, summary)
    print(f"wrote {out / 'README.md'} and {out / 'results.json'}")
    return 1 if failed else 0


def _write_index(out: Path, summary: dict) -> None:
    lines = ["# vlkit demo", "", f'Model: `{summary["model"]}`. Prompt: "{summary["prompt"]}"', ""]
    if not summary["projector_trained"]:
        lines += [
            "**No trained projector ships yet.** The projector that maps image features into the",
            "language model is still random, so the model's text below is noise, shown only to prove",
            "that the pipeline runs end to end. It is not a description of the image. The attention",
            "pictures are real: they come from the pretrained vision encoder alone.",
            "",
        ]
    elif Path(summary["model"]).resolve() == default_checkpoint():
        lines += [
            "The shipped checkpoint is a short CPU run (450 steps on shapes scenes and 117 photos):",
            "it names shapes scenes partly right (shape 79%, colour 41% of objects) and its photo",
            "descriptions are mostly wrong.",
            "Its measured figures are in data/checkpoints/README.md.",
            "",
        ]
    for r in summary["results"]:
        lines.append(f"## {r['image']}")
        if "error" in r:
            lines += [f"Error: {r['error']}", ""]
            continue
        if r["description"] is not None:
            lines.append(f"Description: {r['description']}")
        else:
            lines.append(
                f"Untrained-projector output (not a description): `{r['untrained_output']}`"
            )
        lines += [
            "",
            f"{r['image_tokens']} image tokens, {r['seconds']} s",
            "",
            f"![attention]({r['attention_picture']})",
            "",
        ]
    (out / "README.md").write_text("\n".join(lines))
