"""The course notebooks: stored clean, Colab-only install first, and all run in tiny mode via nbval.

nbval executes every notebook in notebooks/ top to bottom in a fresh kernel of this environment
(`VLKIT_TINY=1`: the random `tiny` preset, seconds per notebook) and fails on any cell error.
`--nbval-lax` checks only cells marked to compare outputs; none are, since outputs are not stored.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PRESET_LINE = 'PRESET = "tiny" if os.environ.get("VLKIT_TINY") == "1" else "small"'


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def test_there_are_notebooks():
    assert NOTEBOOKS, "no numbered notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_clean(path):
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["metadata"]["kernelspec"]["name"] == "python3", (
        f"{path.name}: set the kernelspec name to 'python3'"
    )
    dirty = [
        i
        for i, cell in enumerate(data["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, (
        f"{path.name} has stored outputs in cells {dirty}: "
        f"run `jupyter nbconvert --clear-output --inplace notebooks/{path.name}`"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_installs_on_colab_only(path):
    cells = _cells(path)
    code = [_source(c) for c in cells if c["cell_type"] == "code"]
    first = _source(cells[0])
    assert cells[0]["cell_type"] == "code" and 'if "google.colab" in sys.modules:' in first, (
        f"{path.name}: cell 1 must be the Colab-only install (a code cell)"
    )
    # Anything that installs must sit inside that `if` (indented), so the cell is a no-op elsewhere.
    for line in first.splitlines():
        if line.lstrip().startswith("#"):
            continue
        if "pip" in line or ("git" in line and "clone" in line):
            assert line.startswith((" ", "\t")), f"{path.name}: {line.strip()!r} runs outside Colab"
    assert any(PRESET_LINE in c for c in code[1:]), f"{path.name}: missing the visible PRESET line"


def test_readme_lists_every_notebook():
    readme = (ROOT / "notebooks" / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in NOTEBOOKS if p.name not in readme]
    assert not missing, f"notebooks/README.md does not list {missing}"


def test_notebooks_run_in_tiny_mode():
    env = dict(os.environ, VLKIT_TINY="1")
    command = [
        sys.executable,
        "-m",
        "pytest",
        "--nbval-lax",
        "--nbval-current-env",
        "--nbval-cell-timeout=300",
        "-p",
        "no:cacheprovider",
        "-q",
        *[str(p) for p in NOTEBOOKS],
    ]
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
    )
    plain = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)  # drop colour codes
    tail = plain[-6000:]
    assert result.returncode == 0, f"nbval failed (exit {result.returncode}):\n{tail}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_figure_has_a_numbered_caption(path):
    """Each cell that shows a matplotlib figure is followed, before the next figure, by a markdown
    caption "*Figure N.*", numbered 1, 2, ... through the notebook."""
    cells = _cells(path)
    figures = 0
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        shown = _source(cell).count("plt.show()")
        if not shown:
            continue
        assert shown == 1, f"{path.name} cell {i}: one figure per cell, so each gets its caption"
        figures += 1
        text = ""
        for later in cells[i + 1 :]:
            if later["cell_type"] == "code" and "plt.show()" in _source(later):
                break
            if later["cell_type"] == "markdown":
                text += _source(later)
        numbers = [int(n) for n in re.findall(r"\*Figure (\d+)\.\*", text)]
        assert numbers[:1] == [figures], (
            f"{path.name} cell {i}: figure {figures} needs a caption '*Figure {figures}.*' in the "
            f"markdown after it (found {numbers or 'none'})"
        )
