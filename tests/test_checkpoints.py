"""save_pretrained / from_pretrained: identical outputs after a round trip, LoRA in peft's format,
and clear errors for checkpoints that are damaged, from another version, or of the wrong shape."""

import json
import re
from pathlib import Path

import pytest
import torch
from peft import LoraConfig

from vlkit import VisionLanguageModel
from vlkit.errors import CheckpointError

QA = [
    {"role": "user", "content": "<image>\nwhat is in the image ?"},
    {"role": "assistant", "content": "a red circle ."},
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny model with a perturbed projector and LoRA adapters, saved once for the module."""
    torch.manual_seed(0)
    model = VisionLanguageModel.from_preset("tiny")
    model.lm.add_lora(
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    )
    with torch.no_grad():  # LoRA's B starts at zero; give the adapters weights that matter
        for name, p in model.lm.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.config.training = {"stage": "test", "steps": 1}
    path = model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny-lora")
    return model.eval(), path


def test_round_trip_gives_identical_outputs(saved, image):
    model, path = saved
    loaded = VisionLanguageModel.from_pretrained(path)
    batch = model.prepare([QA], [[image]])
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)
    a = model.describe(image, max_new_tokens=12)
    b = loaded.describe(image, max_new_tokens=12)
    assert a.token_ids == b.token_ids
    assert loaded.config.projector_trained


def test_layout_is_safetensors_json_and_peft(saved):
    _, path = saved
    names = {p.name for p in path.iterdir()}
    assert {
        "config.json",
        "projector.safetensors",
        "encoder.safetensors",
        "lm.safetensors",
        "tokenizer",
        "adapter",
    } <= names
    assert {p.name for p in (path / "adapter").iterdir()} == {
        "adapter_config.json",
        "adapter_model.safetensors",
    }  # and no blank model-card template from peft
    adapter_cfg = json.loads((path / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["peft_type"] == "LORA" and adapter_cfg["r"] == 4
    # no LoRA tensors leak into the base LM file
    from safetensors import safe_open

    with safe_open(str(path / "lm.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "lora" in k]
    assert not list(path.parent.glob(".tiny-lora*"))  # no temp folders left behind


def _copy(path: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "copy"
    shutil.copytree(path, target)
    return target


def test_missing_folder_and_missing_config(tmp_path):
    with pytest.raises(CheckpointError, match="not a folder"):
        VisionLanguageModel.from_pretrained(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no config.json"):
        VisionLanguageModel.from_pretrained(tmp_path)


def test_damaged_config(saved, tmp_path):
    path = _copy(saved[1], tmp_path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        VisionLanguageModel.from_pretrained(path)


def test_checkpoint_from_another_format_version(saved, tmp_path):
    path = _copy(saved[1], tmp_path)
    data = json.loads((path / "config.json").read_text())
    data.update(format_version=99, vlkit_version="9.0.0")
    (path / "config.json").write_text(json.dumps(data))
    with pytest.raises(
        CheckpointError, match=r"vlkit 9\.0\.0 in checkpoint format 99.*reads format 1"
    ):
        VisionLanguageModel.from_pretrained(path)


def test_unknown_field_is_named(saved, tmp_path):
    path = _copy(saved[1], tmp_path)
    data = json.loads((path / "config.json").read_text())
    data["projector"]["gate"] = True
    (path / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=re.escape("unknown field(s) ['gate'] in projector")):
        VisionLanguageModel.from_pretrained(path)


def test_projector_of_the_wrong_shape(saved, tmp_path):
    path = _copy(saved[1], tmp_path)
    data = json.loads((path / "config.json").read_text())
    data["projector"]["kind"] = "pixel_shuffle"  # the saved weights are an MLP's
    (path / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="does not fit this model"):
        VisionLanguageModel.from_pretrained(path)


def test_incomplete_checkpoint(saved, tmp_path):
    path = _copy(saved[1], tmp_path)
    (path / "projector.safetensors").unlink()
    with pytest.raises(CheckpointError, match="projector.safetensors is missing"):
        VisionLanguageModel.from_pretrained(path)


def test_saving_over_an_existing_checkpoint_replaces_it(tmp_path):
    model = VisionLanguageModel.from_preset("tiny")
    first = model.save_pretrained(tmp_path / "c")
    with torch.no_grad():
        model.projector.net[0].bias.add_(1.0)
    model.save_pretrained(tmp_path / "c")
    loaded = VisionLanguageModel.from_pretrained(first)
    assert torch.equal(loaded.projector.net[0].bias, model.projector.net[0].bias)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_no_pickle_loading_in_the_package():
    """Checkpoints are safetensors and JSON only: the package never unpickles anything."""
    root = Path(__file__).resolve().parent.parent / "vlkit"
    pattern = re.compile(r"torch\.load\(|pickle\.load|import pickle|weights_only\s*=\s*False")
    hits = [
        f"{p.name}: {line.strip()}"
        for p in root.rglob("*.py")
        for line in p.read_text().splitlines()
        if pattern.search(line)
    ]
    assert hits == []
