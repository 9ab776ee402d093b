"""`ImageChat`: talk to a vision-language model about your own images, in a notebook.

    from vlkit.widgets import ImageChat
    chat = ImageChat(preset="tiny")       # or ImageChat(model), ImageChat(checkpoint="runs/x/final")
    chat                                   # upload images, Describe or Ask; answers stream in

Images come from a file upload (several at once) or a pasted http(s) / data URL; they wait as
thumbnails until the next question, which takes them along. The answer streams in token by token
from a worker thread, so the notebook stays responsive and Stop works. The conversation is kept,
so follow-up questions see the earlier turns; "New chat" forgets it. "Attention" opens the
attention explorer on the last answer.

Everything a test (or a curious user) needs is in traits: `answer`, `partial`, `history`, `busy`,
`error`, `status`, `n_images`; `wait()` blocks until the worker is done. Every failure ends up as
a short message in `error` (shown in red), never as a traceback, and the widget keeps working.
"""

from __future__ import annotations

import base64
import html
import io
import threading
import time

import ipywidgets as W
import traitlets as T

from vlkit.config import DEFAULT_PROMPT, DETAILS

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # larger uploads are refused before they are decoded
THUMB_PX = 96  # thumbnail side
TURN_THUMB_PX = 48  # height of an image beside its question in the transcript
ERROR_STYLE = "color:#b91c1c;font-weight:500"


class _Stopped(Exception):
    """Raised from the stream callback to end a generation early (the Stop button)."""


def short_error(exc: BaseException, limit: int = 600) -> str:
    """An exception as one short line for a widget: vlkit's own messages as they are (they already
    say what to do), anything else with its type name in front."""
    from vlkit.errors import VlkitError

    text = str(exc).strip() if isinstance(exc, VlkitError) else f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[:limit] + "…"


def error_html(text: str) -> str:
    return f'<div style="{ERROR_STYLE}">{html.escape(text)}</div>' if text else ""


def uploaded_files(value) -> list[tuple[str, bytes]]:
    """(name, content) of each file in a FileUpload value: ipywidgets 8's list of dicts with
    name/type/size/content/last_modified, or ipywidgets 7's {name: {"metadata", "content"}}."""
    if isinstance(value, dict):  # ipywidgets 7
        items = [{"name": k, "content": v.get("content", b"")} for k, v in value.items()]
    else:
        items = list(value or ())
    out = []
    for item in items:
        content = item["content"]
        if isinstance(content, memoryview):
            content = content.tobytes()
        out.append((str(item.get("name") or "upload"), bytes(content)))
    return out


def thumbnail_png(image, side: int = THUMB_PX) -> bytes:
    thumb = image.copy()
    thumb.thumbnail((side, side))
    buffer = io.BytesIO()
    thumb.save(buffer, format="PNG")
    return buffer.getvalue()


def _data_url(image) -> str:
    """A small PNG of `image` as a data URL, to show beside its question in the transcript."""
    return "data:image/png;base64," + base64.b64encode(thumbnail_png(image, TURN_THUMB_PX)).decode()


def _turn_images(urls: list[str], names: list[str]) -> str:
    tags = "".join(
        f'<img class="vlkit-chat-turn-image" src="{url}" title="{html.escape(name)}" '
        f'style="height:{TURN_THUMB_PX}px;margin:2px 4px 0 0;vertical-align:top">'
        for url, name in zip(urls, names, strict=True)
    )
    return f"<div>{tags}</div>" if tags else ""


def _model_name(model, preset, checkpoint) -> str:
    if checkpoint:
        return str(checkpoint)
    return preset or model.config.preset or type(model).__name__


class Panel(W.VBox):
    """What both notebook panels share: an `error` and a `status` trait shown in their own boxes.

    Subclasses create `self.error_box` and `self.status_line` (HTML widgets) in __init__.
    """

    error = T.Unicode("", help="the last error, as a short message ('' when all is well)")
    status = T.Unicode("", help="what the widget is doing, in words")

    def _announce_model(self, model, preset, checkpoint) -> None:
        if model is not None:
            self.status = self._model_status()
        else:
            what = f"checkpoint {checkpoint}" if checkpoint else f"preset {preset or '(default)'}"
            self.status = f"model: {what}, loaded on first use"

    def _load_once(self, lock, checkpoint, prepare=lambda model: model):
        """self.model, built by the CLI's loader from self.preset / `checkpoint` on first use."""
        with lock:
            if self.model is None:
                from vlkit.cli import load_model

                what = checkpoint or self.preset or "the default model"
                self.status = f"loading {what}…"
                try:
                    self.model = prepare(load_model(self.preset, checkpoint))
                except Exception:
                    self.status = f"could not load {what}"
                    raise
                self.status = self._model_status()
            return self.model

    @T.observe("error")
    def _show_error(self, change):
        self.error_box.value = error_html(change["new"])

    @T.observe("status")
    def _show_status(self, change):
        self.status_line.value = f'<span style="color:#555">{html.escape(change["new"])}</span>'


class ImageChat(Panel):
    """A chat about images with a `VisionLanguageModel` (see the module docstring).

    model: a loaded model, or None to load one on first use from `checkpoint` (a save_pretrained
    folder) or `preset` ("tiny", "small", a hub preset); with neither, the CLI's default (the
    shipped checkpoint if there is one, else "small"). `max_new_tokens` caps each answer.
    """

    answer = T.Unicode("", help="the last finished answer")
    partial = T.Unicode("", help="the answer being streamed (updated per piece of text)")
    history = T.List(help="the conversation: [{'role', 'text', 'images'}], images as names")
    busy = T.Bool(False, help="a worker thread is generating, loading or building attention")
    n_images = T.Int(0, help="images waiting to go with the next question")
    explorer = T.Any(None, allow_none=True, help="the AttentionExplorer of the last answer")

    def __init__(
        self,
        model=None,
        preset: str | None = None,
        checkpoint: str | None = None,
        *,
        max_new_tokens: int = 64,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.model, self.preset, self.checkpoint = model, preset, checkpoint
        self.max_new_tokens, self.max_upload_bytes = max_new_tokens, max_upload_bytes
        self._pending: list[tuple[object, str]] = []  # (PIL image, name) for the next turn
        self._messages: list[dict] = []  # chat-completions messages, images as PIL parts
        self._turn_thumbs: dict[int, list[str]] = {}  # history index -> small PNG data URLs
        self._asking: tuple[list[str], list[str]] = ([], [])  # the current question's images
        self._last: tuple[list, str, str] | None = None  # (images, prompt, answer) of last turn
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._load_lock = threading.Lock()
        self.n_updates = 0  # stream callbacks during the last answer

        def button(text, cls, icon="", style="", tip=""):
            b = W.Button(description=text, icon=icon, button_style=style, tooltip=tip)
            b.add_class(cls)
            return b

        self.status_line = W.HTML()
        self.status_line.add_class("vlkit-chat-status")
        self.upload = W.FileUpload(accept="image/*", multiple=True, description="Images")
        self.upload.add_class("vlkit-chat-upload")
        self.url = W.Text(placeholder="https://… or data:image/png;base64,…", description="URL")
        self.url.add_class("vlkit-chat-url")
        self.add_url_button = button(
            "Add", "vlkit-chat-add-url", "plus", tip="add the image at this URL"
        )
        self.thumbnails = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self.thumbnails.add_class("vlkit-chat-thumbnails")
        self.clear_images_button = button("Clear images", "vlkit-chat-clear-images", "times")
        self.transcript = W.HTML()
        self.transcript.add_class("vlkit-chat-history")
        self.answer_area = W.HTML()
        self.answer_area.add_class("vlkit-chat-answer")
        self.prompt = W.Textarea(
            placeholder="Ask about the images…", layout=W.Layout(width="100%", height="4em")
        )
        self.prompt.add_class("vlkit-chat-prompt")
        self.detail = W.Dropdown(options=list(DETAILS), value="auto", description="detail")
        self.detail.layout.width = "160px"
        self.detail.add_class("vlkit-chat-detail")
        self.describe_button = button(
            "Describe", "vlkit-chat-describe", style="primary", tip=f"ask: {DEFAULT_PROMPT}"
        )
        self.ask_button = button("Ask", "vlkit-chat-ask", "paper-plane", "primary")
        self.stop_button = button("Stop", "vlkit-chat-stop", "stop", "warning")
        self.new_chat_button = button("New chat", "vlkit-chat-new", "refresh")
        self.attention_button = button(
            "Attention",
            "vlkit-chat-show-attention",
            "eye",
            tip="where did the last answer look?",
        )
        self.error_box = W.HTML()
        self.error_box.add_class("vlkit-chat-error")
        self.explorer_area = W.VBox()
        self.explorer_area.add_class("vlkit-chat-explorer")
        self.stop_button.disabled = True

        self.upload.observe(self._on_upload, "value")
        self.add_url_button.on_click(lambda _: self.add_url())
        self.clear_images_button.on_click(lambda _: self.clear_images())
        self.describe_button.on_click(lambda _: self.describe())
        self.ask_button.on_click(lambda _: self.ask())
        self.stop_button.on_click(lambda _: self.stop())
        self.new_chat_button.on_click(lambda _: self.new_chat())
        self.attention_button.on_click(lambda _: self.show_attention())

        self.children = [
            self.status_line,
            W.HBox([self.upload, self.url, self.add_url_button]),
            W.HBox([self.thumbnails, self.clear_images_button]),
            self.transcript,
            self.answer_area,
            self.prompt,
            W.HBox(
                [
                    self.detail,
                    self.describe_button,
                    self.ask_button,
                    self.stop_button,
                    self.new_chat_button,
                    self.attention_button,
                ]
            ),
            self.error_box,
            self.explorer_area,
        ]
        self.add_class("vlkit-chat")
        self._announce_model(model, preset, checkpoint)

    # ---- traits -> display ---------------------------------------------------------------

    @T.observe("busy")
    def _show_busy(self, change):
        busy = change["new"]
        for b in (
            self.describe_button,
            self.ask_button,
            self.new_chat_button,
            self.attention_button,
        ):
            b.disabled = busy
        self.stop_button.disabled = not busy

    def _render_thumbnails(self):
        boxes = []
        for image, name in self._pending:
            img = W.Image(
                value=thumbnail_png(image), format="png", layout=W.Layout(max_width=f"{THUMB_PX}px")
            )
            label = W.HTML(
                f'<div style="font-size:80%;max-width:{THUMB_PX}px;overflow:hidden;'
                f'text-overflow:ellipsis;white-space:nowrap">{html.escape(name)}</div>'
            )
            boxes.append(W.VBox([img, label]))
        self.thumbnails.children = boxes
        self.n_images = len(self._pending)

    def _render_transcript(self):
        rows = []
        for index, turn in enumerate(self.history):
            who = "You" if turn["role"] == "user" else "Model"
            extra = f" <i>[{len(turn['images'])} image(s)]</i>" if turn.get("images") else ""
            urls = self._turn_thumbs.get(index, [])
            thumbs = _turn_images(urls, turn.get("images", []) if urls else [])
            rows.append(f"<div><b>{who}:</b> {html.escape(turn['text'])}{extra}{thumbs}</div>")
        self.transcript.value = "".join(rows)

    def _render_answer(self, question: str, text: str, note: str = ""):
        note_html = f' <i style="color:#888">{html.escape(note)}</i>' if note else ""
        urls, names = self._asking
        self.answer_area.value = (
            f"<div><b>You:</b> {html.escape(question)}{_turn_images(urls, names)}</div>"
            f'<div><b>Model:</b> <span style="white-space:pre-wrap">{html.escape(text)}</span>'
            f"{note_html}</div>"
        )

    @property
    def conversation(self) -> list[dict]:
        """The chat so far as chat-completions messages (images as {"type": "image"} parts)."""
        return list(self._messages)

    # ---- images ------------------------------------------------------------------------
    def add_image(self, source, name: str | None = None) -> bool:
        """Queue an image (anything `vlkit.load_image` takes) for the next question.
        Returns False (and sets `error`) if it cannot be read."""
        from vlkit.images import describe_source, load_image

        try:
            image = load_image(source, max_bytes=self.max_upload_bytes)
        except Exception as exc:
            self.error = short_error(exc)
            return False
        self._pending.append((image, name or describe_source(source)[:60]))
        self._render_thumbnails()
        self.error = ""
        return True

    def add_url(self, url: str | None = None) -> bool:
        """Queue the image at an http(s) URL or data URL (default: the URL box's text)."""
        url = (self.url.value if url is None else url).strip()
        if not url:
            self.error = "paste an image URL (https://…) or a data URL (data:image/…) first"
            return False
        ok = self.add_image(url, url if not url.startswith("data:") else "pasted image")
        if ok:
            self.url.value = ""
        return ok

    def _on_upload(self, change):
        files = uploaded_files(change["new"])
        if not files:
            return
        errors = []
        for name, content in files:
            if len(content) > self.max_upload_bytes:
                errors.append(
                    f"{name} is {len(content) / 2**20:.1f} MB, over the "
                    f"{self.max_upload_bytes / 2**20:.0f} MB limit: resize or compress it"
                )
            elif self.add_image(content, name):
                continue
            else:
                errors.append(f"{name}: {self.error}")
        self.error = "; ".join(errors)
        self.upload.value = ()  # so the same file can be chosen again

    def clear_images(self):
        self._pending = []
        self._render_thumbnails()

    # ---- the model -----------------------------------------------------------------------
    def _model_status(self) -> str:
        model = self.model
        trained = model.config.projector_trained
        note = "" if trained else " · projector untrained: answers are not real descriptions"
        return (
            f"model: {_model_name(model, self.preset, self.checkpoint)} · "
            f"{model.image_tokens_per_view} image tokens per view{note}"
        )

    def load_model(self):
        """The model, loading it first if needed (raises what loading raises)."""
        return self._load_once(self._load_lock, self.checkpoint, lambda model: model.eval())

    # ---- asking --------------------------------------------------------------------------
    def _conversation_images(self) -> int:
        return sum(len(t.get("images", [])) for t in self.history)

    def describe(self) -> bool:
        """Ask DEFAULT_PROMPT about the queued images (or those already in the chat)."""
        if not self._pending and not self._conversation_images():
            self.error = "add an image first: upload one, or paste a URL and press Add"
            return False
        return self._start(DEFAULT_PROMPT)

    def ask(self, prompt: str | None = None) -> bool:
        """Ask `prompt` (default: the prompt box's text), with the queued images."""
        prompt = (self.prompt.value if prompt is None else prompt).strip()
        if not prompt:
            self.error = "type a question in the prompt box first"
            return False
        if self._start(prompt):
            self.prompt.value = ""
            return True
        return False

    def _start(self, prompt: str) -> bool:
        if self.busy:
            self.error = "still busy with the last request: wait, or press Stop"
            return False
        self.error = ""
        pending, self._pending = self._pending, []
        self._asking = ([_data_url(image) for image, _ in pending], [name for _, name in pending])
        self._render_thumbnails()
        self._render_transcript()
        self._render_answer(prompt, "", "…")
        return self._run(self._generate, pending, prompt, self.detail.value)

    def _run(self, target, *args) -> bool:
        self.busy = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._guarded, args=(target, *args), daemon=True)
        self._thread.start()
        return True

    def _guarded(self, target, *args):
        publish = None
        try:
            publish = target(*args)  # may return what to publish once no longer busy
        except Exception as exc:  # the widget must outlive any failure
            self.error = short_error(exc)
        finally:
            self.busy = False
        if publish is not None:  # observers of answer / history may act at once (e.g. Attention)
            publish()

    def _generate(self, pending, prompt, detail):
        parts = [{"type": "image", "image": img, "detail": detail} for img, _ in pending]
        message = {"role": "user", "content": [*parts, {"type": "text", "text": prompt}]}
        self.partial, self.n_updates = "", 0

        def on_piece(text):
            if self._stop.is_set():
                raise _Stopped
            self.n_updates += 1
            self.partial += text
            self._render_answer(prompt, self.partial)

        try:
            model = self.load_model()
            self.status = f"{self._model_status()} · answering…"
            start = time.perf_counter()
            result = model.generate(
                [*self._messages, message],
                detail=detail,
                max_new_tokens=self.max_new_tokens,
                stream=on_piece,
            )
            text, note = result.text, ""
            info = f"{result.completion_tokens} tokens in {time.perf_counter() - start:.1f} s"
        except _Stopped:
            text, note, info = self.partial.strip(), "[stopped]", "stopped"
        except Exception as exc:
            self._pending = pending + self._pending  # give the images back for another try
            self._render_thumbnails()
            self._render_answer(prompt, self.partial, "[failed]")
            self.error = short_error(exc)
            if self.model is not None:
                self.status = self._model_status()
            return
        self._messages += [message, {"role": "assistant", "content": text}]
        all_images = [
            p["image"]
            for m in self._messages
            if m["role"] == "user"
            for p in m["content"]
            if isinstance(p, dict) and p.get("type") == "image"
        ]
        self._last = (all_images, prompt, text)

        def publish():
            self._turn_thumbs[len(self.history)] = self._asking[0]
            self.history = [
                *self.history,
                {"role": "user", "text": prompt, "images": [name for _, name in pending]},
                {"role": "assistant", "text": text},
            ]
            self._render_answer(prompt, text, note)
            self.answer = text
            self.status = f"{self._model_status()} · {info}"

        return publish

    def stop(self):
        """End the answer being generated (it keeps what was written so far)."""
        self._stop.set()

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Block until the worker thread is done; False if it is still running after `timeout`."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def new_chat(self):
        """Forget the conversation (queued images stay)."""
        if self.busy:
            self.error = "still busy: wait, or press Stop, before starting a new chat"
            return
        self._messages, self._last, self._turn_thumbs = [], None, {}
        self.history, self.answer, self.partial, self.error = [], "", "", ""
        self.transcript.value = self.answer_area.value = ""
        self.explorer = None
        self.explorer_area.children = ()

    # ---- attention ---------------------------------------------------------------------------
    def show_attention(self) -> bool:
        """Build the attention explorer for the last answer and show it below the chat."""
        if self.busy:
            self.error = "still busy: wait for the answer first"
            return False
        if self._last is None:
            self.error = "ask something first: the explorer shows where the last answer looked"
            return False
        if not self._last[0]:
            self.error = "the last answer had no image to look at: add an image and ask again"
            return False
        self.error = ""
        return self._run(self._build_explorer, *self._last)

    def _build_explorer(self, images, prompt, answer):
        try:
            from vlkit.widgets.explorer import AttentionExplorer
        except Exception as exc:
            self.error = f"the attention explorer is not available ({short_error(exc, 200)})"
            return
        self.status = f"{self._model_status()} · capturing attention…"
        explorer = AttentionExplorer.from_model(self.model, images, prompt, answer=answer)

        def publish():
            if isinstance(explorer, W.Widget):
                self.explorer_area.children = (explorer,)
            else:  # anything else IPython can display
                out = W.Output()
                out.append_display_data(explorer)
                self.explorer_area.children = (out,)
            self.explorer = explorer
            self.status = self._model_status()

        return publish
