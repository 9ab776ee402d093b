"""ImageChat without a browser: uploads through FileUpload.set_state (the front end's own wire
format), button clicks, streaming, multi-turn history, errors that leave the widget working."""

import base64
import io
import sys
import types

import ipywidgets as W
import pytest
from PIL import Image

from vlkit.widgets import ImageChat

pytestmark = pytest.mark.usefixtures("one_thread")


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def upload(chat, *files):
    """What the browser sends when files are chosen: ipywidgets 8's serialized value."""
    value = [
        {
            "name": name,
            "type": "image/png",
            "size": len(content),
            "content": memoryview(content),
            "last_modified": 1_700_000_000_000,
        }
        for name, content in files
    ]
    chat.upload.set_state({"value": value})


def turn_images(html_text: str) -> list[tuple[str, tuple[int, int]]]:
    """(title, decoded PNG size) of each image shown beside a question."""
    import re

    found = re.findall(
        r'<img class="vlkit-chat-turn-image" src="data:image/png;base64,([^"]+)" title="([^"]*)"',
        html_text,
    )
    return [(title, Image.open(io.BytesIO(base64.b64decode(data))).size) for data, title in found]


@pytest.fixture
def chat(tiny):
    return ImageChat(tiny, max_new_tokens=12)


def finish(chat):
    assert chat.wait(30), "the generation thread did not finish"
    assert not chat.busy


def test_package_exports_lazily():
    import vlkit.widgets as w

    assert {"ImageChat", "LoRAFineTune", "AttentionExplorer"} <= set(dir(w))
    assert w.ImageChat is ImageChat


def test_upload_describe_streams_and_records_history(chat, image, image2):
    assert "tiny" in chat.status
    upload(chat, ("a.png", png_bytes(image)), ("b.png", png_bytes(image2)))
    assert chat.n_images == 2 and chat.error == ""
    assert len(chat.thumbnails.children) == 2
    assert chat.upload.value == ()  # reset, so the same file can be uploaded again

    pieces = []
    chat.observe(lambda c: pieces.append(c["new"]), "partial")
    chat.describe_button.click()
    finish(chat)
    assert chat.error == ""
    assert chat.answer and len(pieces) > 1  # streamed, not delivered at once
    assert chat.n_updates > 1
    assert chat.answer in chat.answer_area.value or chat.answer.split()[0] in chat.answer_area.value
    assert chat.n_images == 0  # the images went with the question
    assert [t["role"] for t in chat.history] == ["user", "assistant"]
    assert chat.history[0]["images"] == ["a.png", "b.png"]
    shown = turn_images(chat.answer_area.value)  # the question's images, beside it
    assert [name for name, _ in shown] == ["a.png", "b.png"]
    assert all(max(size) == 48 for _, size in shown)  # small copies, not the uploads

    chat.prompt.value = "what colour is it?"
    chat.ask_button.click()
    finish(chat)
    assert len(chat.history) == 4 and chat.history[2]["text"] == "what colour is it?"
    assert chat.prompt.value == ""
    assert "what colour is it?" in chat.transcript.value + chat.answer_area.value
    assert [name for name, _ in turn_images(chat.transcript.value)] == ["a.png", "b.png"]
    assert turn_images(chat.answer_area.value) == []  # the follow-up had no new image

    chat.new_chat_button.click()
    assert chat.history == [] and chat.answer == ""
    assert turn_images(chat.transcript.value + chat.answer_area.value) == []


def test_corrupt_upload_then_valid_describe_still_works(chat, image):
    upload(chat, ("broken.png", b"\x89PNG\r\n\x1a\n not really a png"))
    assert "broken.png" in chat.error and chat.n_images == 0
    assert "color" in chat.error_box.value  # shown in red
    assert "Traceback" not in chat.error

    upload(chat, ("notes.txt", b"hello, I am text"))
    assert "notes.txt" in chat.error

    upload(chat, ("ok.png", png_bytes(image)))
    assert chat.error == "" and chat.n_images == 1
    chat.describe_button.click()
    finish(chat)
    assert chat.error == "" and chat.answer


def test_oversized_upload_is_refused(tiny, image):
    chat = ImageChat(tiny, max_upload_bytes=1000)
    upload(chat, ("big.png", b"\0" * 5000))
    assert "over the" in chat.error and "limit" in chat.error and chat.n_images == 0


def test_describe_without_an_image_and_empty_ask_are_errors(chat):
    chat.describe_button.click()
    assert "add an image" in chat.error and not chat.busy
    chat.prompt.value = "   "
    chat.ask_button.click()
    assert "question" in chat.error and not chat.busy


def test_data_url_is_added_and_bad_url_is_an_error(chat, image):
    chat.url.value = "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()
    chat.add_url_button.click()
    assert chat.error == "" and chat.n_images == 1 and chat.url.value == ""
    chat.url.value = "data:image/png;base64,AAAA"
    chat.add_url_button.click()
    assert chat.error and chat.n_images == 1
    chat.url.value = "ftp://example.com/x.png"
    chat.add_url_button.click()
    assert "ftp" in chat.error
    chat.clear_images_button.click()
    assert chat.n_images == 0 and chat.thumbnails.children == ()


def test_model_load_failure_is_an_error_not_a_traceback(image):
    chat = ImageChat(preset="no-such-preset")
    assert "loaded on first use" in chat.status
    chat.add_image(image)
    chat.describe_button.click()
    finish(chat)
    assert "no-such-preset" in chat.error
    assert chat.n_images == 1  # the image is kept for another try


def test_lazy_preset_load(image):
    chat = ImageChat(preset="tiny", max_new_tokens=4)
    assert chat.model is None
    chat.add_image(image)
    chat.describe()
    finish(chat)
    assert chat.model is not None and chat.error == "" and "tiny" in chat.status


def test_generation_error_is_shown_and_the_next_question_works(chat, image, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("out of memory (pretend)")

    chat.add_image(image)
    monkeypatch.setattr(chat.model, "generate", boom)
    chat.describe()
    finish(chat)
    assert "out of memory" in chat.error and chat.history == []
    monkeypatch.undo()
    chat.describe()
    finish(chat)
    assert chat.error == "" and len(chat.history) == 2


def test_stop_keeps_the_partial_answer(chat, image):
    chat.max_new_tokens = 64
    chat.add_image(image)
    chat.observe(lambda c: chat.stop() if len(c["new"]) > 3 else None, "partial")
    chat.describe()
    finish(chat)
    assert chat.error == "" and "[stopped]" in chat.answer_area.value
    assert len(chat.history) == 2


def test_show_attention_builds_the_explorer(chat, image, monkeypatch):
    calls = []

    class FakeExplorer(W.HTML):
        @classmethod
        def from_model(cls, model, images, prompt, answer=None):
            calls.append((model, images, prompt, answer))
            return cls("explorer")

    chat.attention_button.click()
    assert "ask something first" in chat.error

    fake = types.ModuleType("vlkit.widgets.explorer")
    fake.AttentionExplorer = FakeExplorer
    monkeypatch.setitem(sys.modules, "vlkit.widgets.explorer", fake)
    chat.add_image(image)
    chat.describe()
    finish(chat)
    chat.attention_button.click()
    finish(chat)
    assert chat.error == ""
    assert isinstance(chat.explorer, FakeExplorer)
    assert chat.explorer_area.children == (chat.explorer,)
    model, images, prompt, answer = calls[0]
    assert model is chat.model and len(images) == 1 and answer == chat.answer
    assert isinstance(images[0], Image.Image)


def test_show_attention_without_the_explorer_module_is_a_short_error(chat, image, monkeypatch):
    monkeypatch.setitem(sys.modules, "vlkit.widgets.explorer", None)  # import fails
    chat.add_image(image)
    chat.describe()
    finish(chat)
    chat.show_attention()
    finish(chat)
    assert "explorer is not available" in chat.error and chat.explorer is None
    chat.describe()  # still works
    finish(chat)
    assert chat.error == ""


def test_stable_css_classes(chat):
    wanted = {
        "vlkit-chat-describe": chat.describe_button,
        "vlkit-chat-ask": chat.ask_button,
        "vlkit-chat-prompt": chat.prompt,
        "vlkit-chat-answer": chat.answer_area,
        "vlkit-chat-show-attention": chat.attention_button,
        "vlkit-chat-upload": chat.upload,
        "vlkit-chat-error": chat.error_box,
    }
    for cls, widget in wanted.items():
        assert cls in widget._dom_classes


def test_answer_observers_see_the_widget_ready(chat, image):
    """When `answer` (or `history`) changes the widget is no longer busy, so an observer can ask
    for the explorer or the next answer at once."""
    seen = []

    def on_answer(change):
        seen.append((chat.busy, len(chat.history), chat.describe_button.disabled))
        chat.show_attention()  # what a notebook's observer might do

    chat.observe(on_answer, "answer")
    chat.add_image(image, "scene.png")
    chat.describe_button.click()
    assert chat.wait(30)  # the answer's worker, which started the explorer's before it ended
    finish(chat)  # the explorer's own worker
    assert seen == [(False, 2, False)]
    assert chat.error == "" and chat.explorer is not None
