"""A real JupyterLab on 127.0.0.1 driven by a real chromium, for the browser tests.

Chromium is Debian's (/usr/bin/chromium, or $VLKIT_CHROMIUM); Playwright only drives it and never
downloads a browser of its own. `JupyterLab` starts a server on a free port over a folder;
`open_notebook` opens a notebook in a page and runs all its cells through the Lab UI.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    path = os.environ.get("VLKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if Path(path).exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """`jupyter lab` over `root`, bound to 127.0.0.1 with a random token; stop() ends it."""

    def __init__(self, root: Path, log: Path, timeout: float = 90.0):
        self.root = Path(root)
        self.port = _free_port()
        self.token = uuid.uuid4().hex
        self.log = open(log, "w")  # noqa: SIM115 - closed in stop()
        command = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            f"--ServerApp.token={self.token}",
            "--ServerApp.password=",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.news_url=",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run commands by name
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")
        settings = self.root / ".lab-settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True, exist_ok=True)
        # no "get notified about Jupyter news?" toast over the page
        (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
        command.append(f"--LabApp.user_settings_dir={self.root / '.lab-settings'}")
        command.append(f"--LabApp.workspaces_dir={self.root / '.lab-workspaces'}")
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(self.root / ".jupyter-config"))
        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.root, env=env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited early; see {log}")
            try:
                with urllib.request.urlopen(
                    f"{self.base}/api/status?token={self.token}", timeout=2
                ) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"jupyter lab did not answer within {timeout:.0f} s; see {log}")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, notebook: str) -> str:
        return f"{self.base}/lab/tree/{notebook}?token={self.token}&reset"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def open_notebook(page, lab: JupyterLab, notebook: str, timeout_ms: int = 120_000) -> None:
    """Open `notebook` in Lab, wait for its kernel, and run all its cells (Run > Run All Cells)."""
    page.goto(lab.url(notebook), timeout=timeout_ms)
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=timeout_ms)
    # Lab may still ask which kernel to start (it does when the session store is fresh): accept
    # the preselected one, the notebook's own python3
    try:
        page.click(".jp-Dialog .jp-mod-accept", timeout=5_000)
    except Exception:  # no dialog: the kernel started on its own
        pass
    # a kernel is ready when the status bar / toolbar indicator says Idle
    page.wait_for_selector(
        ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=timeout_ms
    )
    page.wait_for_function(
        "window.jupyterapp && window.jupyterapp.commands.hasCommand('notebook:run-all-cells')"
    )
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
