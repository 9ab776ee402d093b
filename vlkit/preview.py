"""See what the model learns from an example: its tokens, with the answer tokens marked.

`preview_example` runs the model's own `prepare` (the call the trainer makes for every batch) and
reads the labels it returns, so the tokens marked as answer are exactly the ones the loss is
computed on, chat-template markers included; nothing is re-derived from the text. Each image shows
as one block with the number of tokens it costs. In a notebook the result renders as HTML
(answers highlighted); in a terminal `print` it, answers in [[double brackets]].

    from vlkit.preview import preview
    preview(model, load_data("llava.json"), n=3)
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import NamedTuple

from .llms import IGNORE_INDEX

ANSWER_COLOUR = "#fde68a"  # amber: the tokens the loss is computed on
IMAGE_COLOUR = "#9ca3af"  # grey chip: one image's tokens
_WINDOW = 6  # tokens of context when decoding one token (enough for byte-level BPE merges)


class Segment(NamedTuple):
    text: str  # the token as text; an image position shows the image placeholder
    is_answer: bool  # the loss is computed on this token (its label is not IGNORE_INDEX)
    is_image: bool  # an image position (a projected image vector goes here)


@dataclass
class Preview:
    """One example as the model sees it: one segment per token, in order."""

    segments: list[Segment]
    image_tokens: list[int]  # tokens each image takes, in order (as `prepare` reported them)

    @property
    def answers(self) -> list[str]:
        """The text of each run of answer tokens (one per assistant turn), as decoded."""
        return [text for kind, text, is_answer in self.runs() if kind == "text" and is_answer]

    @property
    def num_tokens(self) -> int:
        return len(self.segments)

    @property
    def num_answer_tokens(self) -> int:
        return sum(s.is_answer for s in self.segments)

    def runs(self) -> list[tuple[str, str | int, bool]]:
        """Consecutive tokens grouped: ("text", text, is_answer) or ("image", n_tokens, False),
        one "image" run per image even when two images sit side by side."""
        runs: list[tuple[str, str | int, bool]] = []
        counts = iter(self.image_tokens)
        i = 0
        while i < len(self.segments):
            seg = self.segments[i]
            if seg.is_image:
                n = next(counts)
                runs.append(("image", n, False))
                i += n
                continue
            if runs and runs[-1][0] == "text" and runs[-1][2] == seg.is_answer:
                runs[-1] = ("text", runs[-1][1] + seg.text, seg.is_answer)
            else:
                runs.append(("text", seg.text, seg.is_answer))
            i += 1
        return runs

    def summary(self) -> str:
        n_image = sum(self.image_tokens)
        return (
            f"{self.num_tokens} tokens: {self.num_tokens - n_image - self.num_answer_tokens} "
            f"prompt, {n_image} image ({len(self.image_tokens)} image(s)), "
            f"{self.num_answer_tokens} answer (in the loss)"
        )

    def to_text(self) -> str:
        """Plain text: answer tokens in [[...]], each image as <image × N tokens>."""
        out = []
        for kind, value, is_answer in self.runs():
            if kind == "image":
                out.append(f"<image × {value} tokens>")
            elif is_answer:  # whitespace at the edges goes outside the brackets, for reading
                core = value.strip()
                lead = value[: len(value) - len(value.lstrip())]
                trail = value[len(value.rstrip()) :] if core else ""
                out.append(f"{lead}[[{core}]]{trail}")
            else:
                out.append(value)
        return "".join(out)

    def __str__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        parts = []
        for kind, value, is_answer in self.runs():
            if kind == "image":
                parts.append(
                    f'<span title="{value} image tokens" style="background:{IMAGE_COLOUR};'
                    'color:white;border-radius:4px;padding:0 5px;margin:0 1px">'
                    f"image: {value} tokens</span>"
                )
                continue
            style = f"background:{ANSWER_COLOUR};" if is_answer else ""
            title = "answer (in the loss)" if is_answer else "prompt (not in the loss)"
            parts.append(
                f'<span class="vlkit-{"answer" if is_answer else "prompt"}" title="{title}" '
                f'style="{style}">{_visible(value)}</span>'
            )
        legend = (
            f'<div style="font-size:85%;color:#555;margin-bottom:4px">{html.escape(self.summary())}'
            f' · <span style="background:{ANSWER_COLOUR}">answer</span></div>'
        )
        body = (
            '<div style="font-family:monospace;white-space:pre-wrap;line-height:1.6">'
            + "".join(parts)
            + "</div>"
        )
        return f'<div class="vlkit-preview">{legend}{body}</div>'


def _visible(text: str) -> str:
    """HTML for token text, with newlines and tabs shown as faint marks (and still breaking)."""
    mark = '<span style="color:#bbb">{}</span>'
    return (
        html.escape(text)
        .replace("\t", mark.format("→") + "\t")
        .replace("\n", mark.format("↵") + "\n")
    )


def _token_texts(tokenizer, ids: list[int]) -> list[str]:
    """The text each token adds, decoded in context (so spaces and merged bytes come out right)."""
    texts = []
    for i in range(len(ids)):
        lo = max(0, i - _WINDOW)
        before = tokenizer.decode(ids[lo:i], skip_special_tokens=False)
        upto = tokenizer.decode(ids[lo : i + 1], skip_special_tokens=False)
        if upto.startswith(before):
            texts.append(upto[len(before) :])
        else:  # the decoder rewrote earlier text (rare): show the token on its own
            texts.append(tokenizer.decode([ids[i]], skip_special_tokens=False))
    return texts


def preview_example(model, example: dict) -> Preview:
    """One example (`{"conversation", "images", optional "details"}`) as the model tokenizes it."""
    images = list(example.get("images", []))
    details = example.get("details")
    batch = model.prepare(
        [example["conversation"]], [images], [list(details)] if details is not None else None
    )
    ids = batch["input_ids"][0].tolist()  # (L,); one row, so no padding
    labels = batch["labels"][0].tolist()
    image_mask = batch["image_mask"][0].tolist()
    image_token = model.config.image_token
    segments: list[Segment] = []
    start = 0
    while start < len(ids):  # text runs between images are decoded on their own
        if image_mask[start]:
            segments.append(Segment(image_token, False, True))
            start += 1
            continue
        end = start
        while end < len(ids) and not image_mask[end]:
            end += 1
        texts = _token_texts(model.lm.tokenizer, ids[start:end])
        for pos, text in zip(range(start, end), texts, strict=True):
            segments.append(Segment(text, labels[pos] != IGNORE_INDEX, False))
        start = end
    return Preview(segments, list(batch["image_tokens"][0]))


class Previews(list):
    """Several previews; renders as all of them, one after another."""

    def to_text(self) -> str:
        return "\n\n".join(
            f"--- example {i}: {p.summary()}\n{p.to_text()}" for i, p in enumerate(self)
        )

    def __str__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        return "".join(
            f'<div style="margin:0 0 10px"><b>example {i}</b>{p._repr_html_()}</div>'
            for i, p in enumerate(self)
        )


def preview(model, dataset, n: int = 3) -> Previews:
    """Previews of the first `n` examples of `dataset` (any sequence of examples)."""
    return Previews(preview_example(model, dataset[i]) for i in range(min(n, len(dataset))))
