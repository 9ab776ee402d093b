"""AttentionExplorer: an interactive picture of where each answer token looked in the image.

An anywidget. The kernel side holds an `AttentionCapture` (from `vlkit.attention`) and, whenever
the layer, head, method or image changes, sends the browser one map per answer token for that
choice (plus the mean over tokens). The browser then switches between tokens on hover with no
round trip. Hovering a patch sends its index back; the kernel answers with the tokens that
attended to that patch most. Every choice is a trait, so the widget is testable without a
browser, and `plot()` draws the current choice with matplotlib for places widgets don't render.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import anywidget
import numpy as np
import traitlets

from vlkit.attention import AttentionCapture, capture_attention, plot_attention

_HERE = Path(__file__).parent
METHODS = {  # name -> label shown in the menu
    "attention": "LM attention",
    "gradient": "attention × gradient",
    "rollout": "encoder rollout",
    "cls": "encoder CLS (last layer)",
}
CLIP_PERCENTILE = 98.0  # the colour scale tops out here, as in plot_attention


def _png_data_url(view: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray((np.clip(view, 0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _choice(value, count: int, what: str):
    """'mean' / 'max' / an index in range (also as a numeric string, the way a <select> sends it)."""
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    if value in ("mean", "max"):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and -count <= value < count:
        return value % count
    raise traitlets.TraitError(f"{what}={value!r}: use 'mean', 'max' or an index below {count}")


class AttentionExplorer(anywidget.AnyWidget):
    """Answer tokens as chips over the image: hover or click one to see where it looked.

    Build it with `AttentionExplorer.from_model(model, image, prompt)` (generates an answer, or
    teacher-forces `answer=`) or `AttentionExplorer.from_capture(capture)`.
    """

    _esm = _HERE / "explorer.js"
    _css = _HERE / "explorer.css"

    # what the browser chooses (all synced both ways)
    token = traitlets.Int(-1).tag(sync=True)  # answer-token index; -1 = mean over all tokens
    layer = traitlets.Union([traitlets.Int(), traitlets.Unicode()], default_value="mean").tag(
        sync=True
    )  # LM layer index, "mean" or "max"
    head = traitlets.Union([traitlets.Int(), traitlets.Unicode()], default_value="mean").tag(
        sync=True
    )  # attention head index, "mean" or "max"
    method = traitlets.Unicode("attention").tag(sync=True)  # a key of METHODS
    image_index = traitlets.Int(0).tag(sync=True)  # which image of the prompt
    hovered_patch = traitlets.Int(-1).tag(sync=True)  # row-major patch index; -1 = none
    opacity = traitlets.Float(0.55, min=0.0, max=1.0).tag(sync=True)  # overlay opacity

    # what the kernel sends (read-only for the browser)
    image_url = traitlets.Unicode("").tag(sync=True)  # PNG data URL of the view the encoder saw
    grid = traitlets.List(traitlets.Int(), default_value=[1, 1]).tag(sync=True)  # [h, w]
    tokens = traitlets.List(traitlets.Unicode()).tag(sync=True)  # answer tokens as text
    prompt = traitlets.Unicode("").tag(sync=True)
    maps = traitlets.List().tag(sync=True)  # [n_tokens + 1][h*w]: row 0 = mean, row i+1 = token i
    scales = traitlets.List().tag(sync=True)  # [n_tokens + 1][lo, hi] colour range per row
    patch_tokens = traitlets.List().tag(sync=True)  # [[token, text, share], ...] for hovered_patch
    options = traitlets.Dict().tag(sync=True)  # layers, heads, methods, images on offer
    message = traitlets.Unicode("").tag(sync=True)  # a short note or error shown under the image

    def __init__(self, capture: AttentionCapture, **kwargs):
        if not isinstance(capture, AttentionCapture):
            raise TypeError(
                "AttentionExplorer takes an AttentionCapture: use "
                "AttentionExplorer.from_model(model, image, prompt) or "
                "AttentionExplorer.from_capture(vlkit.attention.capture_attention(...))"
            )
        if not capture.images:
            raise ValueError("the capture holds no image: the prompt must contain one")
        self.capture = capture
        first = capture.images[0]
        n_layers, n_heads = int(first.attention.shape[0]), int(first.attention.shape[1])
        methods = ["attention"]
        if first.gradient is not None:
            methods.append("gradient")
        if first.encoder_attentions is not None:
            methods.append("rollout")
            if first.num_prefix_tokens >= 1:
                methods.append("cls")
        super().__init__(
            tokens=[t for t in capture.tokens],
            prompt=capture.prompt,
            options={
                "layers": n_layers,
                "heads": n_heads,
                "methods": [[m, METHODS[m]] for m in methods],
                "images": len(capture.images),
            },
            **kwargs,
        )
        self._refresh_image()

    # ---- building ---------------------------------------------------------------------------

    @classmethod
    def from_capture(cls, capture: AttentionCapture, **kwargs) -> AttentionExplorer:
        return cls(capture, **kwargs)

    @classmethod
    def from_model(
        cls,
        model,
        image,
        prompt: str | None = None,
        answer: str | None = None,
        max_new_tokens: int = 32,
        gradient: bool = True,
        **kwargs,
    ) -> AttentionExplorer:
        """Capture attention for `prompt` over `image` (one image or a list) and explore it.

        Generates the answer greedily unless `answer` is given (then it is teacher-forced).
        `gradient=False` skips the attention x gradient view, which costs one backward pass per
        answer token.
        """
        from vlkit.config import DEFAULT_PROMPT

        capture = capture_attention(
            model,
            image,
            prompt or DEFAULT_PROMPT,
            answer=answer,
            max_new_tokens=max_new_tokens,
            gradient=gradient,
        )
        return cls(capture, **kwargs)

    # ---- validation: the browser sends strings from <select>s -----------------------------------

    @traitlets.validate("layer")
    def _valid_layer(self, proposal):
        return _choice(proposal["value"], int(self.capture.images[0].attention.shape[0]), "layer")

    @traitlets.validate("head")
    def _valid_head(self, proposal):
        return _choice(proposal["value"], int(self.capture.images[0].attention.shape[1]), "head")

    @traitlets.validate("method")
    def _valid_method(self, proposal):
        offered = [m for m, _ in self.options.get("methods", [])] or list(METHODS)
        if proposal["value"] not in offered:
            raise traitlets.TraitError(f"method={proposal['value']!r}: choose one of {offered}")
        return proposal["value"]

    @traitlets.validate("token")
    def _valid_token(self, proposal):
        value = proposal["value"]
        if not -1 <= value < len(self.capture.tokens):
            raise traitlets.TraitError(
                f"token={value}: use -1 (all tokens) or an index below {len(self.capture.tokens)}"
            )
        return value

    @traitlets.validate("image_index")
    def _valid_image(self, proposal):
        if not 0 <= proposal["value"] < len(self.capture.images):
            raise traitlets.TraitError(
                f"image_index={proposal['value']}: the prompt has {len(self.capture.images)} images"
            )
        return proposal["value"]

    @traitlets.validate("hovered_patch")
    def _valid_patch(self, proposal):
        h, w = self.capture.images[self.image_index].grid
        return proposal["value"] if 0 <= proposal["value"] < h * w else -1

    # ---- the kernel's answers to the browser's choices --------------------------------------

    @traitlets.observe("image_index")
    def _image_changed(self, change):
        self._refresh_image()

    @traitlets.observe("layer", "head", "method")
    def _choice_changed(self, change):
        self._refresh_maps()

    @traitlets.observe("hovered_patch")
    def _patch_changed(self, change):
        self.patch_tokens = self.tokens_for_patch(change["new"]) if change["new"] >= 0 else []

    def _refresh_image(self) -> None:
        target = self.capture.images[self.image_index]
        with self.hold_sync():
            self.image_url = _png_data_url(target.view)
            self.grid = [int(target.grid[0]), int(target.grid[1])]
            self.hovered_patch = -1
            self.patch_tokens = []
            self._refresh_maps()

    def _refresh_maps(self) -> None:
        rows = self.token_maps()  # (n_tokens + 1, h*w)
        lo = rows.min(axis=1)
        hi = np.percentile(rows, CLIP_PERCENTILE, axis=1)
        hi = np.where(hi > lo, hi, rows.max(axis=1))
        with self.hold_sync():
            self.maps = [[float(f"{v:.5g}") for v in row] for row in rows]
            self.scales = [[float(a), float(b)] for a, b in zip(lo, hi, strict=True)]
            if self.hovered_patch >= 0:
                self.patch_tokens = self.tokens_for_patch(self.hovered_patch)

    def token_maps(self) -> np.ndarray:
        """Flattened patch maps for the current choice: row 0 the mean, row i+1 token i."""
        target = self.capture.images[self.image_index]
        layer, head, method = self.layer, self.head, self.method
        if method in ("rollout", "cls"):  # the encoder's own view: the same for every token
            one = target.heatmap(method=method).reshape(-1).numpy()
            return np.tile(one, (len(self.capture.tokens) + 1, 1))
        rows = [target.heatmap(None, layer, head, method)]
        rows += [target.heatmap(i, layer, head, method) for i in range(len(self.capture.tokens))]
        return np.stack([r.reshape(-1).numpy() for r in rows])

    def heatmap(self) -> np.ndarray:
        """The (h, w) map the browser is showing now."""
        h, w = self.capture.images[self.image_index].grid
        return np.asarray(self.maps[self.token + 1], dtype=np.float32).reshape(h, w)

    def tokens_for_patch(self, patch: int, k: int = 3) -> list[list]:
        """The k answer tokens that sent this patch the largest share of their attention.

        Each row of the current maps is divided by its sum first, so a token that looks everywhere
        a little does not outrank one that looks only here. -> [[token index, text, share], ...]
        """
        if not self.capture.tokens or self.method in ("rollout", "cls"):
            return []
        rows = np.asarray(self.maps[1:], dtype=np.float64)  # (n_tokens, h*w)
        totals = rows.sum(axis=1)
        shares = np.divide(rows[:, patch], totals, out=np.zeros(len(rows)), where=totals > 0)
        best = np.argsort(-shares, kind="stable")[:k]
        return [[int(i), self.capture.tokens[i], round(float(shares[i]), 4)] for i in best]

    # ---- a static picture of the same choice -----------------------------------------------

    def plot(self, ax=None):
        """The current token/layer/head/method as a matplotlib overlay (renders anywhere)."""
        target = self.capture.images[self.image_index]
        word = "all tokens" if self.token < 0 else repr(self.capture.tokens[self.token].strip())
        title = f"{word}: {METHODS[self.method]}, layer {self.layer}, head {self.head}"
        return plot_attention(target.view, self.heatmap(), ax=ax, alpha=self.opacity, title=title)
