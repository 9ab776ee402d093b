"""ImageChat and the attention explorer in a real JupyterLab, driven through a real chromium.

The test writes a notebook that shows `ImageChat` with the tiny preset, opens it in JupyterLab on
127.0.0.1, runs it, uploads a PNG through the upload button's file chooser, clicks Describe, waits for
the streamed answer, opens the attention explorer, hovers an answer token and checks that the
overlay the browser drew changed. Screenshots of each step go to $VLKIT_ARTIFACTS (default
out/test-artifacts/browser). Needs Debian's chromium (`apt-get install chromium`, which .ci/run
does) and the `playwright` Python package; without them the test is skipped locally and fails in
CI (where $CI is set), so a broken setup cannot pass quietly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from lab_browser import CHROMIUM_ARGS, JupyterLab, chromium_path, open_notebook

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("VLKIT_ARTIFACTS", ROOT / "out" / "test-artifacts")) / "browser"
TIMEOUT_MS = 240_000  # a 2-core CI machine starting Lab, a kernel and torch


def _requirements():
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[dev]')")
    if chromium_path() is None:
        missing.append("chromium (apt-get install chromium)")
    if missing:
        message = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": (
                "import torch\n"
                "from vlkit.widgets import ImageChat\n"
                "torch.manual_seed(0)\n"
                "chat = ImageChat(preset='tiny', max_new_tokens=12)\n"
                "chat.load_model()\n"
                "chat"
            ),
        }
    ],
    "metadata": {
        "kernelspec": {
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "name": "python3",
        }
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


def test_image_chat_and_explorer_in_jupyterlab(tmp_path):
    _requirements()
    from playwright.sync_api import sync_playwright

    from vlkit.data.shapes import ShapesConfig, make_scene

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (tmp_path / "chat.ipynb").write_text(json.dumps(NOTEBOOK))
    picture = tmp_path / "scene.png"
    make_scene(3, ShapesConfig(image_size=224)).image.save(picture)

    lab = JupyterLab(tmp_path, ARTIFACTS / "jupyterlab.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            try:
                open_notebook(page, lab, "chat.ipynb", timeout_ms=TIMEOUT_MS)
                page.wait_for_selector(".vlkit-chat-describe")
                page.wait_for_function(
                    "document.querySelector('.vlkit-chat-status').innerText.includes('tiny')"
                )
                page.screenshot(path=ARTIFACTS / "1_chat_ready.png")

                # click the upload button and answer the file chooser it opens, as a user does
                with page.expect_file_chooser() as chooser:
                    page.click(".vlkit-chat-upload")
                chooser.value.set_files(str(picture))
                page.wait_for_selector(".vlkit-chat-thumbnails img")
                page.click(".vlkit-chat-describe")
                page.wait_for_function(
                    "document.querySelector('.vlkit-chat-status').innerText.includes('tokens in')"
                )
                answer = page.inner_text(".vlkit-chat-answer").strip()
                assert answer, "Describe produced no answer text in the page"
                assert not page.inner_text(".vlkit-chat-error").strip()
                page.screenshot(path=ARTIFACTS / "2_described.png")

                page.click(".vlkit-chat-show-attention")
                page.wait_for_selector(".vlkit-explorer-chip >> nth=2")
                overlay = ".vlkit-explorer-overlay"
                before = page.get_attribute(overlay, "data-signature")
                page.screenshot(path=ARTIFACTS / "3_explorer.png")
                chips = page.query_selector_all(".vlkit-explorer-chip")
                chosen = next(
                    i for i, chip in enumerate(chips) if chip.get_attribute("data-index") != "-1"
                )
                chips[chosen].hover()
                page.wait_for_function(
                    f"document.querySelector('{overlay}').dataset.signature !== '{before}'"
                )
                assert page.get_attribute(overlay, "data-token") == chips[chosen].get_attribute(
                    "data-index"
                )
                page.screenshot(path=ARTIFACTS / "4_token_hovered.png")
            except Exception:
                page.screenshot(path=ARTIFACTS / "failure.png")
                raise
            finally:
                browser.close()
    finally:
        lab.stop()
