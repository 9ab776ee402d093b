"""`LoRAFineTune`: teach a vision-language model new answers with LoRA, from a notebook.

    from vlkit.widgets import LoRAFineTune
    tune = LoRAFineTune(preset="tiny", data="shapes-qa")   # or LoRAFineTune(model), checkpoint=...
    tune                                                     # pick data, Preview, Start, Stop, Save

1. Data: a built-in sample set (a `vlkit.datasets.from_spec` string such as "shapes-qa"), a folder
   or file `vlkit.formats.load_data` reads (captioned image folder, LLaVA JSON, save_to_disk
   folder), an uploaded .zip of such a folder, or a Hugging Face hub name. "Preview" shows a few
   examples as the model sees them, answer tokens (the ones the loss is on) highlighted.
2. Settings: LoRA rank / alpha / dropout / target layers, learning rate, steps, batch size, the
   validation split, the output folder, and a memory estimate (`LoRAFineTune.estimate_memory`).
3. Start runs `vlkit.train.Trainer` (stage "instruct": projector + LoRA) in a thread: a tqdm.auto
   bar, a live loss plot, and Stop, which ends the run after the current step and still writes
   the checkpoint (`<out>/run-NNN/final`, loadable with `VisionLanguageModel.from_pretrained`).
4. Results: validation loss, the data set's own evaluator when it has one (`vlkit.evaluate`),
   and answers to a few held-out questions before and after training, side by side. "Save"
   writes the model with its adapter (peft's format), or with the adapter merged into the LM.

State lives in traits (`step`, `loss`, `val_loss`, `history`, `running`, `error`, `status`,
`checkpoint`, `before`, `after`, `evaluation`); `wait()` blocks until the worker is done. The
same loss picture is `plot_history(history)` for plain matplotlib.
"""

from __future__ import annotations

import copy
import dataclasses
import html
import io
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import ipywidgets as W
import traitlets as T

from vlkit.errors import VlkitError
from vlkit.train import Callback, TrainConfig

from .chat import Panel, error_html, short_error, uploaded_files
from .finetune_data import extract_zip, first_turn, split_data

BUILTIN_DATA = (
    "shapes-qa",
    "shapes-both",
    "shapes-caption",
    "photos-both",
    "photos-qa",
    "photos-caption",
    "lesions",
)
SOURCES = ("built-in", "folder / file", "zip upload", "hub data set")
KINDS = ("both", "caption", "qa")
DEFAULT_TARGETS = tuple(TrainConfig().lora_target_modules)  # the CLI's (q_proj, v_proj)
PATH_HINT = "a folder with captions.jsonl, a LLaVA .json file, a save_to_disk folder"
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


# ---- helpers without widgets ----------------------------------------------------------------
def plot_history(history: dict, ax=None):
    """Training (per step) and validation loss curves from a `LoRAFineTune.history` dict."""
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6, 3))
    if history.get("step"):
        ax.plot(history["step"], history["loss"], label="train", color="#2563eb", lw=1)
    if history.get("val_step"):
        ax.plot(history["val_step"], history["val_loss"], "o-", label="val", color="#dc2626")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (answer tokens)")
    if history.get("step") or history.get("val_step"):
        ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    return ax


def _figure_png(history: dict) -> bytes:
    from matplotlib.figure import Figure  # no pyplot: safe from a worker thread

    fig = Figure(figsize=(6, 3), dpi=80)
    plot_history(history, fig.add_subplot())
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _flat_figures(result: dict, prefix: str = "") -> dict:
    """The numbers of an evaluator's result, nested keys joined with '/' (examples left out)."""
    out = {}
    for key, value in result.items():
        if key == "examples":
            continue
        if isinstance(value, dict):
            out |= _flat_figures(value, f"{prefix}{key}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = value
    return out


def _table(headers, rows) -> str:
    cell = 'style="border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top"'
    head = "".join(f"<th {cell}>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td {cell}>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in rows
    )
    return f'<table style="border-collapse:collapse;font-size:90%"><tr>{head}</tr>{body}</table>'


# ---- the trainer -> widget bridge -----------------------------------------------------------
class _WidgetCallback(Callback):
    def __init__(self, widget: LoRAFineTune, total: int):
        self.widget, self.total, self.bar = widget, total, None

    def _make_bar(self):
        from tqdm.auto import tqdm

        try:
            from tqdm.notebook import tqdm_notebook
        except ImportError:  # pragma: no cover - tqdm.notebook needs ipywidgets, present here
            tqdm_notebook = None
        if tqdm_notebook is not None and issubclass(tqdm, tqdm_notebook):
            bar = tqdm(total=self.total, desc="LoRA", unit="step", display=False)
            self.widget.progress_box.children = (bar.container,)
        else:  # a terminal or a test: the text bar goes to stderr
            bar = tqdm(total=self.total, desc="LoRA", unit="step", leave=False)
        return bar

    def on_step(self, trainer, step, loss, lr):
        w = self.widget
        if self.bar is None:
            self.bar = self._make_bar()
        self.bar.set_postfix({"loss": f"{loss:.3f}", "lr": f"{lr:.1e}"}, refresh=False)
        self.bar.update(1)
        w._hist["step"].append(step)
        w._hist["loss"].append(loss)
        w.history = {k: list(v) for k, v in w._hist.items()}
        w.loss, w.step = loss, step
        w.status = f"training: step {step}/{self.total}, loss {loss:.3f}"
        w._redraw()
        if w._stop_requested.is_set():
            trainer.stop()

    def on_eval(self, trainer, step, val_loss):
        w = self.widget
        w._hist["val_step"].append(step)
        w._hist["val_loss"].append(val_loss)
        w.history = {k: list(v) for k, v in w._hist.items()}
        w.val_loss = val_loss
        w._redraw(force=True)

    def on_save(self, trainer, step, path):
        self.widget.status = f"step {step}: saved {path}"

    def on_end(self, trainer):
        if self.bar is not None:
            self.bar.close()
        self.widget._redraw(force=True)


# ---- the widget -----------------------------------------------------------------------------
class LoRAFineTune(Panel):
    """Fine-tune a model with LoRA on a data set, live (see the module docstring).

    model: a loaded `VisionLanguageModel` (trained in place: LoRA adapters are added to it), or
    None to load one on first use from `checkpoint` or `preset` (as `vlkit.cli.load_model`).
    data: the built-in set selected at first. `out_dir`: each Start writes `out_dir/run-NNN`.
    `eval_limit`: scenes/images for the data set's evaluator after training (0 = skip);
    `n_compare`: held-out questions answered before and after training.
    """

    step = T.Int(0, help="optimizer steps done in the current run")
    loss = T.Float(None, allow_none=True, help="the last training loss")
    val_loss = T.Float(None, allow_none=True, help="the last validation loss")
    history = T.Dict(help="{'step', 'loss', 'val_step', 'val_loss'}: lists for the loss plot")
    running = T.Bool(False, help="a worker thread is training (or answering before/after)")
    checkpoint = T.Unicode("", help="the last checkpoint written (a from_pretrained folder)")
    before = T.List(help="held-out questions answered before training: question/reference/answer")
    after = T.List(help="the same questions answered after training")
    evaluation = T.Dict(help="figures after training: val_loss and the evaluator's numbers")
    estimate = T.Dict(help="the last memory estimate (see estimate_memory)")
    n_train = T.Int(0, help="training examples loaded")
    n_val = T.Int(0, help="validation examples loaded")

    def __init__(
        self,
        model=None,
        preset: str | None = None,
        checkpoint: str | None = None,
        *,
        data: str = "shapes-qa",
        out_dir: str = "runs/lora",
        steps: int = 100,
        batch_size: int = 4,
        lr: float = 1e-3,
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.05,
        target_modules=DEFAULT_TARGETS,
        train_size: int = 500,
        val_size: int = 50,
        eval_every: int = 20,
        eval_limit: int = 8,
        n_compare: int = 3,
        plot_every_s: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.model, self.preset, self.checkpoint_in = model, preset, checkpoint
        self.n_compare, self.plot_every_s = n_compare, plot_every_s
        self.trainer = None
        self.train_data = self.val_data = None
        self._data_key = None  # what the loaded data came from; reloaded when the inputs change
        self._seq_len: int | None = None
        self._zip_dir: str | None = None
        self._zip_name = ""
        self._zip_root: Path | None = None
        self._hist = {"step": [], "loss": [], "val_step": [], "val_loss": []}
        self._last_draw = 0.0
        self._thread: threading.Thread | None = None
        self._stop_requested = threading.Event()
        self._lock = threading.Lock()

        def css(widget, name):
            widget.add_class(f"vlkit-ft-{name}")
            return widget

        def button(text, name, icon="", style=""):
            return css(W.Button(description=text, icon=icon, button_style=style), name)

        def field(kind, value, name, description, width="180px", **kw):
            layout = W.Layout(width=width)
            return css(kind(value=value, description=description, layout=layout, **kw), name)

        wide = "420px"
        self.status_line = css(W.HTML(), "status")
        # data
        self.source = css(W.ToggleButtons(options=SOURCES, value="built-in"), "source")
        options = list(BUILTIN_DATA) + ([data] if data not in BUILTIN_DATA else [])
        self.builtin = field(W.Dropdown, data, "builtin", "data", "260px", options=options)
        self.train_size = field(
            W.BoundedIntText, train_size, "train-size", "train n", min=1, max=10**7
        )
        self.val_size = field(W.BoundedIntText, val_size, "val-size", "val n", min=0, max=10**6)
        self.path = field(W.Text, "", "path", "path", wide, placeholder=PATH_HINT)
        self.zip_upload = css(W.FileUpload(accept=".zip", multiple=False, description="Zip"), "zip")
        self.zip_info = W.HTML()
        self.hub = field(W.Text, "", "hub", "hub name", "320px", placeholder="owner/name")
        self.hub_split = field(W.Text, "train", "hub-split", "split")
        self.kind = field(W.Dropdown, "both", "kind", "kind", options=KINDS)
        self.val_fraction = field(W.BoundedFloatText, 0.1, "val-fraction", "val frac", max=0.9,
                                  step=0.05)  # fmt: skip
        self.val_path = field(W.Text, "", "val-path", "val set", wide,
                              placeholder="optional: a separate validation set (path)")  # fmt: skip
        self.load_button = button("Load data", "load", "database")
        self.preview_button = button("Preview", "preview", "eye")
        self.data_info = css(W.HTML(), "data-info")
        self.preview_area = css(W.HTML(), "preview-area")
        # settings
        self.r = field(W.BoundedIntText, lora_r, "r", "LoRA r", min=1, max=1024)
        self.alpha = field(W.BoundedIntText, lora_alpha, "alpha", "alpha", min=1, max=4096)
        self.dropout = field(W.BoundedFloatText, lora_dropout, "dropout", "dropout", max=0.9,
                             step=0.05)  # fmt: skip
        self.targets = field(W.Text, ", ".join(target_modules), "targets", "targets", wide)
        self.targets_hint = W.HTML()
        self.lr = field(W.FloatText, lr, "lr", "lr")
        self.steps = field(W.BoundedIntText, steps, "steps", "steps", min=1, max=10**7)
        self.batch_size = field(W.BoundedIntText, batch_size, "batch-size", "batch", min=1,
                                max=4096)  # fmt: skip
        self.eval_every = field(W.BoundedIntText, eval_every, "eval-every", "eval every", max=10**6)
        self.eval_limit = field(W.BoundedIntText, eval_limit, "eval-limit", "eval n", max=10**5)
        self.out_dir = field(W.Text, out_dir, "out-dir", "out dir", "360px")
        self.estimate_area = css(W.HTML(), "estimate")
        self.estimate_button = button("Estimate memory", "estimate-button", "calculator")
        # training
        self.start_button = button("Start", "start", "play", "success")
        self.stop_button = button("Stop", "stop", "stop", "danger")
        self.stop_button.disabled = True
        self.progress_box = css(W.VBox(), "progress")
        self.plot = css(W.Image(format="png"), "plot")
        # results
        self.eval_area = css(W.HTML(), "eval")
        self.compare_area = css(W.HTML(), "compare")
        self.save_path = field(W.Text, "", "save-path", "save to", "360px",
                               placeholder="folder (default: <run>/adapter or <run>/merged)")  # fmt: skip
        self.merge = css(W.Checkbox(False, description="merge LoRA into the LM", indent=False),
                         "merge")  # fmt: skip
        self.save_button = button("Save", "save", "save")
        self.error_box = css(W.HTML(), "error")

        self.load_button.on_click(lambda _: self.load_data())
        self.preview_button.on_click(lambda _: self.preview())
        self.estimate_button.on_click(lambda _: self._refresh_estimate(load=True))
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.save_button.on_click(lambda _: self.save())
        self.zip_upload.observe(self._on_zip, "value")
        self.source.observe(lambda _: self._show_source(), "value")
        for w in (self.r, self.targets, self.batch_size):
            w.observe(lambda _: self._refresh_estimate(), "value")

        def heading(text):
            return W.HTML(f"<b>{text}</b>")

        self._rows = {
            "built-in": W.HBox([self.builtin, self.train_size, self.val_size]),
            "folder / file": W.HBox([self.path]),
            "zip upload": W.HBox([self.zip_upload, self.zip_info]),
            "hub data set": W.HBox([self.hub, self.hub_split]),
        }
        self._file_row = W.HBox([self.kind, self.val_fraction, self.val_path])
        self.children = [
            self.status_line,
            heading("1. Data"),
            self.source,
            *self._rows.values(),
            self._file_row,
            W.HBox([self.load_button, self.preview_button, self.data_info]),
            self.preview_area,
            heading("2. Settings"),
            W.HBox([self.r, self.alpha, self.dropout]),
            W.VBox([self.targets, self.targets_hint]),
            W.HBox([self.lr, self.steps, self.batch_size]),
            W.HBox([self.eval_every, self.eval_limit, self.out_dir]),
            W.HBox([self.estimate_button, self.estimate_area]),
            heading("3. Train"),
            W.HBox([self.start_button, self.stop_button]),
            self.progress_box,
            self.plot,
            heading("4. Results"),
            self.eval_area,
            self.compare_area,
            W.HBox([self.save_path, self.merge, self.save_button]),
            self.error_box,
        ]
        self.add_class("vlkit-finetune")
        self._show_source()
        self._announce_model(model, preset, checkpoint)
        if model is not None:
            self._refresh_estimate()

    # ---- traits -> display ---------------------------------------------------------------

    @T.observe("running")
    def _show_running(self, change):
        running = change["new"]
        for b in (self.start_button, self.load_button, self.preview_button, self.save_button):
            b.disabled = running
        self.stop_button.disabled = not running

    def _show_source(self):
        for name, row in self._rows.items():
            row.layout.display = "" if name == self.source.value else "none"
        self._file_row.layout.display = "none" if self.source.value == "built-in" else ""

    def _redraw(self, force: bool = False):
        now = time.monotonic()
        if not force and now - self._last_draw < self.plot_every_s:
            return
        self._last_draw = now
        try:
            self.plot.value = _figure_png(self.history)
        except Exception:  # a plot must never stop training
            pass

    # ---- the model -------------------------------------------------------------------------
    def _model_status(self) -> str:
        m = self.model
        name = self.checkpoint_in or self.preset or m.config.preset or "model"
        lora = ""
        if m.lm.has_lora:
            lora = f" · has LoRA adapters (r={m.lm.lora_settings()['r']}): Start trains them on"
        return f"model: {name}{lora}"

    def load_model(self):
        """The model, loading it first if needed (raises what loading raises)."""
        return self._load_once(self._lock, self.checkpoint_in)

    def linear_names(self) -> list[str]:
        """Names of the LM's Linear layers that LoRA can target (the last part of each name)."""
        from torch import nn

        base = self.load_model().lm.base_model()
        names = {
            n.rsplit(".", 1)[-1]
            for n, m in base.named_modules()
            if isinstance(m, nn.Linear) and not n.endswith("lm_head") and "lora_" not in n
        }
        return sorted(names)

    # ---- data ------------------------------------------------------------------------------
    def _on_zip(self, change):
        files = uploaded_files(change["new"])
        if not files:
            return
        name, content = files[-1]
        try:
            if self._zip_dir:
                shutil.rmtree(self._zip_dir, ignore_errors=True)
            self._zip_dir = tempfile.mkdtemp(prefix="vlkit-zip-")
            root = extract_zip(content, self._zip_dir)
        except Exception as exc:
            self._zip_dir = None
            self.error = f"{name}: {short_error(exc)}"
            return
        finally:
            self.zip_upload.value = ()
        self._zip_name, self._zip_root = name, root
        self.zip_info.value = html.escape(f"{name}: unpacked; data at {root.name}")
        self.source.value = "zip upload"
        self.error = ""

    def _data_inputs(self):
        s = self.source.value
        if s == "built-in":
            return (s, self.builtin.value, self.train_size.value, self.val_size.value)
        common = (self.kind.value, self.val_fraction.value, self.val_path.value.strip())
        if s == "folder / file":
            return (s, self.path.value.strip(), *common)
        if s == "zip upload":
            return (s, self._zip_dir, *common)
        return (s, self.hub.value.strip(), self.hub_split.value.strip() or "train", *common)

    def _read_data(self):
        from vlkit.datasets import from_spec
        from vlkit.formats import load_data

        model = self.load_model()
        source = self.source.value
        if source == "built-in":
            spec, size = self.builtin.value, model.config.encoder.image_size
            train = from_spec(spec, "train", self.train_size.value, "both", size)
            n_val = self.val_size.value
            return train, (from_spec(spec, "val", n_val, "both", size) if n_val else None)
        kind = self.kind.value
        if source == "folder / file":
            where = self.path.value.strip()
            if not where:
                raise VlkitError("type a path: a folder with captions.jsonl, or a LLaVA .json file")
            data = load_data(where, kind=kind)
        elif source == "zip upload":
            if not self._zip_dir:
                raise VlkitError("upload a .zip of a captioned image folder first")
            data = load_data(self._zip_root, kind=kind)
        else:
            name = self.hub.value.strip()
            if not name:
                raise VlkitError("type a Hugging Face data set name, e.g. owner/name")
            data = load_data(name, kind=kind, split=self.hub_split.value.strip() or "train")
        if self.val_path.value.strip():
            return data, load_data(self.val_path.value.strip(), kind=kind)
        return split_data(data, self.val_fraction.value)

    def load_data(self, force: bool = False) -> bool:
        """Read the selected data (cached until an input changes); False + `error` on failure."""
        key = self._data_inputs()
        if not force and key == self._data_key and self.train_data is not None:
            return True
        try:
            train, val = self._read_data()
            if len(train) == 0:
                raise VlkitError("the training split is empty: lower the val fraction or add data")
        except Exception as exc:
            self.train_data = self.val_data = None
            self._data_key = None
            self.n_train = self.n_val = 0
            self.data_info.value = ""
            self.error = short_error(exc)
            return False
        self.train_data, self.val_data, self._data_key = train, val, key
        self.n_train, self.n_val = len(train), len(val) if val else 0
        self._seq_len = None
        name = getattr(train, "name", type(train).__name__)
        self.data_info.value = html.escape(
            f"{name}: {self.n_train} training examples, {self.n_val} validation"
        )
        self.error = ""
        self._refresh_estimate()
        return True

    def preview(self, n: int = 3) -> bool:
        """Show the first `n` training examples as the model sees them (answers highlighted)."""
        if not self.load_data():
            return False
        from vlkit.preview import preview

        try:
            self.preview_area.value = preview(self.model, self.train_data, n)._repr_html_()
        except Exception as exc:
            self.error = short_error(exc)
            return False
        self.error = ""
        return True

    # ---- memory ----------------------------------------------------------------------------
    def _sequence_length(self) -> int:
        model = self.model
        if self._seq_len is None and self.train_data is not None:
            try:
                lengths = []
                for i in range(min(8, len(self.train_data))):
                    ex = self.train_data[i]
                    batch = model.prepare([ex["conversation"]], [list(ex.get("images", []))])
                    lengths.append(batch["input_ids"].shape[1])
                self._seq_len = max(lengths)
            except Exception:
                self._seq_len = None
        return self._seq_len or model.image_tokens_per_view + 64

    def target_list(self) -> list[str]:
        return [t.strip() for t in self.targets.value.replace(";", ",").split(",") if t.strip()]

    def estimate_memory(
        self,
        batch_size: int | None = None,
        seq_len: int | None = None,
        r: int | None = None,
        targets: list[str] | None = None,
    ) -> dict:
        """A rough estimate (not a measurement) of training memory, in parameters and MB.

            weights     = P_model × b                   b = bytes per LM parameter (4 fp32, 2 bf16)
            lora        = Σ over targeted Linear layers  r × (d_in + d_out)      parameters
            trainable   = lora + projector (+ encoder when it is not frozen)    parameters
            gradients   = trainable × 4 B               (fp32)
            optimizer   = trainable × 8 B               (AdamW: two fp32 moments per parameter)
            activations ≈ B × L × H × n_layers × 16 × b (B batch, L sequence length, H hidden
                          size; ~16 hidden-sized tensors per layer are kept for the backward pass)
            logits      ≈ B × L × V × 8 B               (fp32 logits and their gradient, V vocab)
            total       = weights + lora × b + gradients + optimizer + activations + logits

        L is the longest of the first training examples (image tokens included) when data is
        loaded, else image tokens + 64. Allocator overhead, the CUDA context (~0.5 GB) and the
        frozen encoder's activations (the feature cache skips it) are not counted.
        """
        from torch import nn

        model = self.load_model()
        batch_size = batch_size or self.batch_size.value
        r = r or self.r.value
        targets = self.target_list() if targets is None else targets
        seq_len = seq_len or self._sequence_length()
        base = model.lm.base_model()
        hf = base.config
        dtype = str(next(base.parameters()).dtype).replace("torch.", "")
        b = BYTES.get(dtype, 4)
        if model.lm.has_lora:  # training continues on the adapters already there
            lora = sum(p.numel() for n, p in model.lm.model.named_parameters() if "lora_" in n)
        else:
            lora = sum(
                r * (m.in_features + m.out_features)
                for n, m in base.named_modules()
                if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in targets
            )
        total_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
        trainable = lora + sum(p.numel() for p in model.projector.parameters())
        if not model.encoder.config.frozen:
            trainable += sum(p.numel() for p in model.encoder.parameters())
        hidden, layers = hf.hidden_size, hf.num_hidden_layers
        mb = 1 / 2**20
        parts = {
            "weights_mb": total_params * b * mb,
            "lora_mb": lora * b * mb,
            "gradients_mb": trainable * 4 * mb,
            "optimizer_mb": trainable * 8 * mb,
            "activations_mb": batch_size * seq_len * hidden * layers * 16 * b * mb,
            "logits_mb": batch_size * seq_len * hf.vocab_size * 8 * mb,
        }
        return {
            "total_params": total_params,
            "lora_params": lora,
            "trainable_params": trainable,
            "batch_size": batch_size,
            "seq_len": seq_len,
            **parts,
            "total_mb": sum(parts.values()),
        }

    def _refresh_estimate(self, load: bool = False):
        if self.model is None and not load:
            return
        try:
            if load:
                self.load_model()
            est = self.estimate_memory()
        except Exception as exc:
            self.estimate_area.value = error_html(f"no estimate: {short_error(exc, 200)}")
            return
        self.estimate = est
        if not self.targets_hint.value:
            try:
                names = ", ".join(self.linear_names())
                self.targets_hint.value = (
                    f'<span style="color:#777">LM layers: {html.escape(names)}</span>'
                )
            except Exception:
                pass
        self.estimate_area.value = (
            f"<b>estimate</b> ≈ {est['total_mb']:.0f} MB: weights {est['weights_mb']:.0f}, "
            f"optimizer + gradients {est['optimizer_mb'] + est['gradients_mb']:.1f}, activations "
            f"{est['activations_mb'] + est['logits_mb']:.0f} (batch {est['batch_size']} × "
            f"{est['seq_len']} tokens) · {est['trainable_params']:,} trainable parameters "
            f"({est['lora_params']:,} LoRA)"
        )

    # ---- training --------------------------------------------------------------------------
    def _next_run_dir(self) -> Path:
        root = Path(self.out_dir.value.strip() or "runs/lora").expanduser()
        n = 1
        while (root / f"run-{n:03d}").exists():
            n += 1
        return root / f"run-{n:03d}"

    def train_config(self) -> TrainConfig:
        """The TrainConfig the settings describe (raises ConfigError on a bad value)."""
        steps = self.steps.value
        lora = {"r": self.r.value, "alpha": self.alpha.value, "targets": self.target_list()}
        if self.model is not None and self.model.lm.has_lora:  # training continues that adapter
            lora = self.model.lm.lora_settings()
        return TrainConfig(
            stage="instruct",
            steps=steps,
            batch_size=self.batch_size.value,
            lr=self.lr.value,
            min_lr=min(1e-5, self.lr.value),
            warmup_steps=min(50, steps // 10),
            lora_r=lora["r"],
            lora_alpha=lora["alpha"],
            lora_dropout=self.dropout.value,
            lora_target_modules=lora["targets"],
            eval_every=self.eval_every.value,
            eval_batches=5,
            save_every=0,  # the checkpoint is written at the end, and when stopped
            out_dir=str(self._next_run_dir()),
        )

    def start(self) -> bool:
        """Train in a worker thread with the current data and settings."""
        if self.running:
            self.error = "already training: press Stop first"
            return False
        self.error = ""
        try:
            self.load_model()
            if not self.load_data():
                return False
            config = self.train_config()
            if not self.model.lm.has_lora:
                missing = set(config.lora_target_modules) - set(self.linear_names())
                if missing:
                    raise VlkitError(
                        f"the LM has no layer called {', '.join(sorted(missing))}: choose targets "
                        f"from {', '.join(self.linear_names())}"
                    )
        except Exception as exc:
            self.error = short_error(exc)
            return False
        self._stop_requested.clear()
        self._hist = {"step": [], "loss": [], "val_step": [], "val_loss": []}
        self.history, self.step, self.loss, self.val_loss = dict(self._hist), 0, None, None
        self.before, self.after, self.evaluation = [], [], {}
        self.eval_area.value = self.compare_area.value = ""
        self.progress_box.children = ()
        self.running = True
        self._thread = threading.Thread(target=self._work, args=(config,), daemon=True)
        self._thread.start()
        return True

    def stop(self):
        """End training after the current step; the checkpoint is still written."""
        self._stop_requested.set()
        if self.trainer is not None:
            self.trainer.stop()
        if self.running:
            self.status = "stopping after this step…"

    def wait(self, timeout: float | None = 120.0) -> bool:
        """Block until the worker is done; False if it still runs after `timeout` seconds."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _held_out(self) -> list:
        data = self.val_data if self.val_data else self.train_data
        found = []
        for i in range(min(len(data), 50)):
            turn = first_turn(data[i], self.model.config.image_token)
            if turn is not None:
                found.append(turn)
            if len(found) >= self.n_compare:
                break
        return found

    def _answers(self, held) -> list[dict]:
        if not held:
            return []
        texts = self.model.generate_batch([h[0] for h in held], [h[1] for h in held], 32)
        return [
            {"question": h[2], "reference": h[3], "answer": t}
            for h, t in zip(held, texts, strict=True)
        ]

    def _work(self, config: TrainConfig):
        from vlkit.train import Trainer

        done = ""
        try:
            self.trainer = None
            held = self._held_out()
            self.status = "answering held-out questions before training…"
            self.before = self._answers(held)
            self._show_compare()
            if self._stop_requested.is_set():
                self.status = "stopped before training began (no checkpoint written)"
                return
            self.status = "starting training…"
            callback = _WidgetCallback(self, config.steps)
            self.trainer = Trainer(
                self.model,
                self.train_data,
                self.val_data,
                config,
                callbacks=[callback],
                progress=False,
            )
            try:
                self.trainer.train()
            finally:
                self._stop_requested.set()  # a late Stop must not reach the next run
            final = Path(config.out_dir) / "final"
            self.checkpoint = str(final)
            stopped = self.trainer.step < config.steps
            self.status = (
                f"{'stopped' if stopped else 'finished'} at step {self.trainer.step}; "
                f"saved {final} · answering again…"
            )
            self.after = self._answers(held)
            self._show_compare()
            self._evaluate()
            done = (
                f"{'stopped' if stopped else 'finished'} at step {self.trainer.step}: "
                f"checkpoint {final}"
            )
        except Exception as exc:
            self.error = short_error(exc)
            self.status = "training failed" if self.trainer is not None else self.status
        finally:
            self.running = False
        if done:  # said once the widget is ready again, so "finished" means Start and Save work
            self.status = done

    def _evaluate(self):
        figures: dict = {}
        if self.val_loss is not None:
            figures["val_loss"] = self.val_loss
        if self.history.get("loss"):
            figures["train_loss (last)"] = self.history["loss"][-1]
        task = self._evaluator_task()
        limit = self.eval_limit.value
        if task and limit:
            from vlkit.evaluate import evaluate

            self.status = f"evaluating on {limit} held-out {task} items…"
            try:
                result = evaluate(self.model, task, limit=limit, progress=False)
                figures |= {f"{task}/{k}": v for k, v in _flat_figures(result).items()}
            except Exception as exc:
                figures[f"{task} evaluator"] = f"failed: {short_error(exc, 200)}"
        self.evaluation = figures
        rows = [(k, f"{v:.4g}" if isinstance(v, float) else v) for k, v in figures.items()]
        self.eval_area.value = (
            "<b>after training</b>" + _table(["figure", "value"], rows) if rows else ""
        )

    def _evaluator_task(self) -> str | None:
        """The vlkit.evaluate task of a built-in data set ("shapes-qa" -> "shapes"), if any."""
        if self.source.value != "built-in":
            return None
        try:
            from vlkit.evaluate import TASKS
        except Exception:
            return None
        first = self.builtin.value.split(",")[0].strip()
        base = first.partition("*")[0].partition("-")[0]
        return base if base in TASKS and base != "pointing" else None

    def _show_compare(self):
        rows = []
        for i, b in enumerate(self.before):
            after = self.after[i]["answer"] if i < len(self.after) else "…"
            rows.append((b["question"], b["reference"], b["answer"], after))
        if rows:
            self.compare_area.value = "<b>held-out questions</b>" + _table(
                ["question", "reference", "before", "after"], rows
            )

    # ---- saving ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike | None = None, merge: bool | None = None) -> Path | None:
        """Write the model (projector + LoRA adapter in peft's format) with `save_pretrained`.

        merge: fold the adapter into the LM weights (peft `merge_and_unload`) on a copy of the
        model; the checkpoint then holds the whole LM (its config is rewritten to build the LM
        from lm.safetensors), loads without peft, and runs a little faster. The widget's own
        model keeps its adapters, so training can go on.
        """
        if self.running:
            self.error = "wait for training to end (or press Stop) before saving"
            return None
        merge = self.merge.value if merge is None else merge
        try:
            model = self.load_model()
            if path is None:
                path = self.save_path.value.strip() or None
            if path is None:
                run = Path(self.checkpoint).parent if self.checkpoint else self._next_run_dir()
                path = run / ("merged" if merge else "adapter")
            path = Path(path).expanduser()
            if merge:
                if not model.lm.has_lora:
                    raise VlkitError("the model has no LoRA adapters to merge: train it first")
                model = merged_copy(model)
            self.status = f"saving to {path}…"
            saved = model.save_pretrained(path)
        except Exception as exc:
            self.error = short_error(exc)
            return None
        self.checkpoint = str(saved)
        self.error = ""
        self.status = f"saved {saved}" + (" (LoRA merged into the LM)" if merge else "")
        return saved


def merged_copy(model):
    """A copy of `model` with its LoRA adapters merged into the LM and the config made to
    rebuild that LM from the checkpoint's own lm.safetensors (no base-model download, no peft)."""
    merged = copy.deepcopy(model)
    base = merged.lm.model.merge_and_unload()
    merged.lm.model = base
    hf_config = {k: v for k, v in base.config.to_dict().items() if k != "_name_or_path"}
    lm = dataclasses.replace(merged.config.lm, source="", hf_config=hf_config)
    merged.config = dataclasses.replace(
        merged.config, lm=lm, training={**merged.config.training, "lora_merged": True}
    )
    return merged
