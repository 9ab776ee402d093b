"""LoRAFineTune without a browser, on the tiny preset: a short run records its history and
before/after answers, Stop leaves a checkpoint that loads and generates, data errors land in the
`error` trait, zip uploads (and zip slips) are handled, the memory estimate grows with the batch."""

import io
import json
import warnings
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from vlkit import VisionLanguageModel
from vlkit.widgets import LoRAFineTune
from vlkit.widgets.finetune_data import extract_zip, split_data

SMALL_RUN = dict(
    steps=4, batch_size=2, train_size=8, val_size=4, eval_every=2, eval_limit=1, n_compare=2
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():  # peft on the tiny LM's tied lm_head; transformers via peft
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def fresh_tiny():
    torch.manual_seed(0)
    return VisionLanguageModel.from_preset("tiny")


def finish(tune, timeout=60):
    assert tune.wait(timeout), "the training thread did not finish"
    assert not tune.running


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short run on shapes-qa, shared by the tests that look at its results."""
    out = tmp_path_factory.mktemp("lora")
    tune = LoRAFineTune(fresh_tiny(), data="shapes-qa", out_dir=str(out), **SMALL_RUN)
    tune.said_done = []  # (running, start disabled) whenever the status says the run is over
    tune.observe(
        lambda c: (
            c["new"].startswith("finished at")
            and ": checkpoint" in c["new"]
            and tune.said_done.append((tune.running, tune.start_button.disabled))
        ),
        "status",
    )
    tune.start_button.click()
    finish(tune)
    return tune


def test_short_run_finishes_and_records_everything(trained):
    tune = trained
    assert tune.error == "", tune.error
    assert tune.step == 4 and tune.history["step"] == [1, 2, 3, 4]
    assert len(tune.history["loss"]) == 4 and all(np.isfinite(tune.history["loss"]))
    assert tune.history["val_step"] == [2, 4] and tune.val_loss is not None
    assert tune.checkpoint.endswith("run-001/final")
    assert (
        json.loads(open(f"{tune.checkpoint}/config.json").read())["training"]["stage"] == "instruct"
    )
    assert len(tune.before) == 2 and len(tune.after) == 2
    assert {"question", "reference", "answer"} <= set(tune.before[0])
    assert "before" in tune.compare_area.value and "after" in tune.compare_area.value
    assert "val_loss" in tune.evaluation
    assert any(k.startswith("shapes/") for k in tune.evaluation), tune.evaluation
    assert tune.plot.value[:4] == b"\x89PNG"  # the loss plot was drawn
    assert "finished" in tune.status
    assert tune.said_done == [(False, False)]  # "finished" is said once it is ready again


def test_save_adapter_and_merged(trained, tmp_path, image):
    tune = trained
    adapter = tune.save(tmp_path / "adapter")
    assert tune.error == "" and tune.checkpoint == str(adapter)
    assert (adapter / "adapter").is_dir()
    assert VisionLanguageModel.from_pretrained(adapter).lm.has_lora

    tune.merge.value = True
    tune.save_path.value = str(tmp_path / "merged")
    tune.save_button.click()
    assert tune.error == "", tune.error
    merged = VisionLanguageModel.from_pretrained(tmp_path / "merged")
    assert not merged.lm.has_lora and tune.model.lm.has_lora  # the widget's model keeps them
    want = tune.model.generate("what colour is it?", [image], max_new_tokens=8).token_ids
    got = merged.generate("what colour is it?", [image], max_new_tokens=8).token_ids
    assert got == want


def test_stop_leaves_a_checkpoint_that_loads_and_generates(tmp_path, image):
    tune = LoRAFineTune(
        fresh_tiny(),
        data="shapes-qa",
        out_dir=str(tmp_path),
        **(SMALL_RUN | {"steps": 500, "eval_limit": 0}),
    )
    tune.observe(lambda c: tune.stop_button.click() if c["new"] >= 2 else None, "step")
    assert tune.start()
    finish(tune)
    assert tune.error == "", tune.error
    assert 2 <= tune.step < 500 and "stopped" in tune.status
    loaded = VisionLanguageModel.from_pretrained(tune.checkpoint)
    assert loaded.lm.has_lora and loaded.config.training["steps"] == tune.step
    out = loaded.generate("Describe the image.", [image], max_new_tokens=5)
    assert out.completion_tokens >= 1


def test_bad_inputs_give_an_error_and_the_widget_keeps_working(tiny, tmp_path):
    tune = LoRAFineTune(tiny, out_dir=str(tmp_path), **SMALL_RUN)
    tune.source.value = "folder / file"
    tune.path.value = str(tmp_path / "no" / "such" / "folder")
    tune.load_button.click()
    assert "no such file" in tune.error and tune.n_train == 0
    assert not tune.start() and not tune.running

    tune.source.value = "built-in"
    tune.builtin.options = [*tune.builtin.options, "no-such-set"]
    tune.builtin.value = "no-such-set"
    tune.load_button.click()
    assert "unknown data set" in tune.error

    tune.builtin.value = "shapes-qa"
    tune.targets.value = "q_proj, nonsense_proj"
    assert not tune.start() and "nonsense_proj" in tune.error

    tune.targets.value = "q_proj"
    tune.lr.value = -1.0
    assert not tune.start() and "lr" in tune.error

    tune.lr.value = 1e-3
    tune.preview_button.click()
    assert tune.error == "" and "vlkit-answer" in tune.preview_area.value
    assert tune.n_train == 8 and tune.n_val == 4


def caption_zip(wrap="mydata/", extra=()) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(buffer, "w") as zf:
        lines = []
        for i in range(5):
            png = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(png, "PNG")
            zf.writestr(f"{wrap}img{i}.png", png.getvalue())
            lines.append(json.dumps({"file_name": f"img{i}.png", "caption": f"picture {i}"}))
        zf.writestr(f"{wrap}captions.jsonl", "\n".join(lines))
        for name, content in extra:
            zf.writestr(name, content)
    return buffer.getvalue()


def upload_zip(tune, content, name="data.zip"):
    tune.zip_upload.set_state(
        {
            "value": [
                {
                    "name": name,
                    "type": "application/zip",
                    "size": len(content),
                    "content": memoryview(content),
                    "last_modified": 1_700_000_000_000,
                }
            ]
        }
    )


def test_zip_upload_of_a_caption_folder(tiny, tmp_path):
    tune = LoRAFineTune(tiny, out_dir=str(tmp_path), **SMALL_RUN)
    tune.kind.value = "caption"
    tune.val_fraction.value = 0.2
    upload_zip(tune, caption_zip())
    assert tune.error == "" and tune.source.value == "zip upload"
    assert tune.load_data()
    assert (tune.n_train, tune.n_val) == (4, 1)
    assert tune.preview() and "picture" in tune.preview_area.value


def test_zip_slip_is_refused(tiny, tmp_path):
    tune = LoRAFineTune(tiny, out_dir=str(tmp_path))
    upload_zip(tune, caption_zip(extra=[("../../evil.txt", "gotcha")]))
    assert "zip slip" in tune.error
    dest = tmp_path / "unpack"
    with pytest.raises(Exception, match="zip slip"):
        extract_zip(caption_zip(extra=[("../evil.txt", "x")]), dest)
    assert not (tmp_path / "evil.txt").exists()
    assert not [p for p in dest.rglob("*") if p.is_file()]  # checked before anything is written
    upload_zip(tune, b"not a zip at all")
    assert "not a zip" in tune.error


def test_val_split_keeps_an_images_examples_together(tiny, tmp_path):
    folder = tmp_path / "unzipped"
    root = extract_zip(caption_zip(), folder)
    from vlkit.formats import load_data

    data = load_data(root, kind="both")  # caption only here, but grouped by image anyway
    train, val = split_data(data, 0.4)
    train_images = {str(train[i]["images"][0]) for i in range(len(train))}
    val_images = {str(val[i]["images"][0]) for i in range(len(val))}
    assert len(train) + len(val) == len(data) and not train_images & val_images


def test_memory_estimate_is_positive_and_grows_with_the_batch(tiny):
    tune = LoRAFineTune(tiny, lora_r=8)
    one, eight = tune.estimate_memory(batch_size=1), tune.estimate_memory(batch_size=8)
    assert all(v > 0 for v in one.values())
    assert (
        eight["total_mb"] > one["total_mb"] and eight["activations_mb"] == 8 * one["activations_mb"]
    )
    # tiny LM: 2 layers, hidden 64, 2 KV heads of 16 -> q_proj 64x64, v_proj 64x32
    assert one["lora_params"] == 2 * 8 * ((64 + 64) + (64 + 32))
    assert "estimate" in tune.estimate_area.value and tune.estimate["total_mb"] > 0
    assert tune.estimate_memory(r=16)["lora_params"] == 2 * one["lora_params"]


def test_stable_css_classes(tiny):
    tune = LoRAFineTune(tiny)
    for name in (
        "start",
        "stop",
        "source",
        "builtin",
        "path",
        "zip",
        "preview",
        "preview-area",
        "estimate",
        "plot",
        "compare",
        "eval",
        "save",
        "merge",
        "error",
        "status",
    ):
        widget = next(
            (
                w
                for w in vars(tune).values()
                if hasattr(w, "_dom_classes") and f"vlkit-ft-{name}" in w._dom_classes
            ),
            None,
        )
        assert widget is not None, name


def test_a_model_with_an_adapter_trains_that_adapter_as_it_is(tmp_path):
    from peft import LoraConfig

    model = fresh_tiny()
    model.lm.add_lora(LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "o_proj"]))
    tune = LoRAFineTune(model, out_dir=str(tmp_path), lora_r=16, target_modules=("v_proj",))
    assert "has LoRA adapters (r=4)" in tune.status
    config = tune.train_config()  # the settings' r and targets would not apply: the adapter's do
    assert (config.lora_r, config.lora_alpha) == (4, 8)
    assert config.lora_target_modules == ["o_proj", "q_proj"]
