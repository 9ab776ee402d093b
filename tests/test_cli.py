"""The `vlkit` command: a bad image among good ones is reported and the rest still described."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "vlkit", *args], capture_output=True, text=True, timeout=300
    )


def test_describe_json_reports_each_image_and_fails_softly(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(
        good
    )
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    proc = run(
        "describe",
        "--preset",
        "tiny",
        "--json",
        "--max-new-tokens",
        "5",
        str(good),
        str(bad),
        str(good),
    )
    assert proc.returncode == 1, proc.stderr  # one input failed
    records = json.loads(proc.stdout)
    assert [r["image"] for r in records] == [str(good), str(bad), str(good)]
    for r in (records[0], records[2]):
        assert set(r) >= {"image", "text", "image_tokens", "seconds"}
        assert r["image_tokens"] == 64 and isinstance(r["text"], str)
        assert r["projector_trained"] is False
    assert "bad.png" in records[1]["error"]
    assert "bad.png" in proc.stderr and "untrained" in proc.stderr


def test_describe_all_good_exits_zero(tmp_path):
    good = tmp_path / "a.jpg"
    Image.new("RGB", (30, 30), "red").save(good)
    proc = run("describe", "--preset", "tiny", "--max-new-tokens", "3", str(good))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{good}:")


def test_unknown_preset_is_a_usage_error(tmp_path):
    proc = run("describe", "--preset", "huge", "x.png")
    assert proc.returncode == 2
    assert "unknown preset 'huge'" in proc.stderr and "tiny" in proc.stderr


def test_attention_writes_a_picture_and_names_missing_tokens(tmp_path):
    img = tmp_path / "a.png"
    Image.new("RGB", (40, 40), "blue").save(img)
    out = tmp_path / "att.png"
    proc = run(
        "attention",
        str(img),
        "--preset",
        "tiny",
        "--answer",
        "a blue square .",
        "--token",
        "blue",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size[0] > 100
    proc = run(
        "attention",
        str(img),
        "--preset",
        "tiny",
        "--answer",
        "a blue square .",
        "--token",
        "red",
        "--out",
        str(out),
    )
    assert proc.returncode == 2 and "no token 'red'" in proc.stderr
