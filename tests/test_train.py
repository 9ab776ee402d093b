"""The trainer on the tiny preset: exact resume, atomic checkpoints, loss guards, which weights
train in each stage, the feature cache, the CLI, and that a short run learns shapes captions."""

import json
import warnings

import pytest
import torch

from vlkit import VisionLanguageModel
from vlkit.data.shapes import ShapesConfig
from vlkit.datasets import ConversationDataset, ShapesDataset
from vlkit.errors import TrainingError, VlkitError
from vlkit.feature_cache import FeatureCache
from vlkit.train import (
    HistoryCallback,
    LossGuard,
    TrainConfig,
    Trainer,
    latest_checkpoint,
    list_checkpoints,
)

SHAPES64 = ShapesConfig(image_size=64)  # the tiny encoder's size; small scenes draw fast


@pytest.fixture(autouse=True)
def _quiet():
    # peft warns about LoRA on a tied lm_head (see test_tiny_learns_shapes_captions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)  # transformers, via peft
        yield


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return VisionLanguageModel.from_preset("tiny")


def config(tmp_path, **kw):
    base = dict(
        steps=4, batch_size=2, lr=1e-2, warmup_steps=1, eval_every=0, save_every=0,
        out_dir=str(tmp_path / "run"),
    )  # fmt: skip
    return TrainConfig(**(base | kw))


def trainable_state(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def all_state(model):
    return {n: t.detach().clone() for n, t in model.state_dict().items()}


@pytest.fixture(scope="module")
def data():
    return ShapesDataset("train", 12, "both", SHAPES64)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, data):
    """instruct (projector + LoRA with dropout), grad_accum 2, a warm-up and cosine schedule:
    6 steps straight == 3 steps, save, a fresh model from the checkpoint, 3 more steps."""
    kw = dict(stage="instruct", steps=6, save_every=3, grad_accum=2, warmup_steps=2, lr=5e-3)
    straight = Trainer(tiny_model(), data, None, config(tmp_path / "a", **kw), progress=False)
    straight.train()

    class StopAt3:
        def on_step(self, trainer, step, loss, lr):
            if step == 3:
                trainer.stop()

    first = Trainer(
        tiny_model(), data, None, config(tmp_path / "b", **kw), [StopAt3()], progress=False
    )
    first.train()
    assert first.step == 3
    torch.manual_seed(1234)  # a "new process": the global RNG is elsewhere
    resumed = Trainer.resume(tmp_path / "b" / "run", data, progress=False)
    assert (resumed.step, resumed.position) == (3, 3 * 2 * 2)
    resumed.train()

    a, b = trainable_state(straight.model), trainable_state(resumed.model)
    assert a.keys() == b.keys() and any("lora_" in n for n in a)
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=1e-6), name
    exact = all(torch.equal(a[n], b[n]) for n in a)
    print(f"resume bit-exact: {exact}")
    # the final instruct model loads with its adapter and gives the same logits
    loaded = VisionLanguageModel.from_pretrained(tmp_path / "b" / "run" / "final")
    assert loaded.lm.has_lora and loaded.config.training["stage"] == "instruct"
    assert loaded.config.training["steps"] == 6 and loaded.config.projector_trained
    ex = data[0]
    batch = loaded.prepare([ex["conversation"]], [ex["images"]])
    resumed.model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(**batch).logits, resumed.model(**batch).logits, atol=1e-6)


def test_an_interrupted_save_never_loads_half_written(tmp_path, data, monkeypatch):
    import safetensors.torch

    trainer = Trainer(tiny_model(), data, None, config(tmp_path, steps=2), progress=False)
    trainer.train()  # a whole checkpoint at step 2
    good = latest_checkpoint(tmp_path / "run")
    assert good.name == "step-00000002"

    trainer.step = 3  # pretend another step ran, then crash after the first file of the save
    real_save, calls = safetensors.torch.save_file, []

    def crashing_save(*args, **kwargs):
        calls.append(args)
        if len(calls) > 1:
            raise OSError("disk full (simulated)")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", crashing_save)
    with pytest.raises(OSError, match="simulated"):
        trainer.save_checkpoint()
    monkeypatch.setattr(safetensors.torch, "save_file", real_save)

    leftovers = [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()]
    assert ".tmp-step-00000003" in leftovers  # what a crash leaves behind...
    assert latest_checkpoint(tmp_path / "run") == good  # ...is never taken for a checkpoint
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-00000002"]
    resumed = Trainer.resume(tmp_path / "run", data, progress=False)
    assert resumed.step == 2
    VisionLanguageModel.from_pretrained(good / "model")


def test_nan_loss_stops_with_a_training_error_before_the_update(tmp_path, data):
    model = tiny_model()
    with torch.no_grad():
        model.projector.net[0].weight[0, 0] = float("nan")
    trainer = Trainer(model, data, None, config(tmp_path), progress=False)
    before = trainable_state(model)
    with pytest.raises(TrainingError, match="lower lr") as info:
        trainer.train()
    assert isinstance(info.value, VlkitError) and "step 1" in str(info.value)
    after = trainable_state(model)
    assert all(torch.allclose(before[n], after[n], rtol=0, atol=0, equal_nan=True) for n in before)


def test_loss_guard_catches_explosions_and_a_suspiciously_zero_loss():
    guard = LossGuard(TrainConfig(explode_factor=10, zero_loss_steps=3))
    for step in range(1, 21):
        guard.check(step, 2.0 - step * 0.01)
    with pytest.raises(TrainingError, match="jumped"):
        guard.check(21, 50.0)
    guard = LossGuard(TrainConfig(zero_loss_steps=3))
    guard.check(1, 0.0)
    guard.check(2, 0.0)
    with pytest.raises(TrainingError, match="below 1e-6"):
        guard.check(3, 0.0)


@pytest.mark.parametrize("stage", ["align", "instruct"])
def test_only_the_stages_weights_change(tmp_path, data, stage):
    model = tiny_model()
    trainer = Trainer(model, data, None, config(tmp_path, stage=stage, steps=3), progress=False)
    before = all_state(model)  # after LoRA was added (instruct), before any step
    trainer.train()
    after = all_state(model)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    projector = {n for n in before if n.startswith("projector.")}
    lora_b = {
        n for n in before if "lora_B" in n
    }  # A gets no gradient while B is still 0... at first
    assert projector <= changed
    if stage == "align":
        assert changed == projector
    else:
        assert lora_b and lora_b <= changed
        assert all(n.startswith("projector.") or "lora_" in n for n in changed)
    # the encoder and the base LM are bit-identical
    assert not any(n.startswith("encoder.") for n in changed)
    assert not any(n.startswith("lm.") and "lora_" not in n for n in changed)


def test_feature_cache_gives_the_same_loss_and_grads_and_encodes_each_image_once(tmp_path):
    examples = [ShapesDataset("train", 6, "caption", SHAPES64)[i] for i in range(6)]
    data = ConversationDataset(examples, name="six")
    model = tiny_model()
    trainer = Trainer(model, data, None, config(tmp_path, steps=6, batch_size=2), progress=False)
    assert trainer.cache is not None
    seen = []
    model.encoder.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[0]))

    batch = trainer._collate(examples[:3])
    losses, grads = [], []
    for module in (trainer._loss, None):  # through the cache, then the plain forward
        model.zero_grad()
        loss = trainer._batch_loss(batch, module) if module else model(**batch).loss
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in model.projector.parameters()])
    assert torch.allclose(losses[0], losses[1], rtol=0, atol=1e-6)
    for g0, g1 in zip(*grads, strict=True):
        assert torch.allclose(g0, g1, rtol=0, atol=1e-6)

    model.zero_grad()
    trainer.cache = FeatureCache()  # start empty
    seen.clear()
    trainer.train()  # 6 steps x 2 examples = two epochs over the 6 images
    assert sum(seen) == 6  # views through the encoder: each image once
    assert (trainer.cache.misses, trainer.cache.hits) == (6, 6)

    # on disk: a second cache over the same folder needs the encoder no more
    disk = FeatureCache(folder=tmp_path / "features")
    pixels = batch["pixel_values"]
    first = disk.encode(model.encoder, pixels)
    seen.clear()
    again = FeatureCache(folder=tmp_path / "features").encode(model.encoder, pixels)
    assert seen == [] and torch.equal(first, again)
    other = tiny_model(seed=1)  # same config, other weights: never shares entries
    FeatureCache(folder=tmp_path / "features").encode(other.encoder, pixels)
    assert len(list((tmp_path / "features").glob("*.safetensors"))) == 2 * pixels.shape[0]
    view_bytes = first[0].numel() * first[0].element_size()
    small = FeatureCache(max_bytes=2 * view_bytes)  # memory only, room for two views
    small.encode(model.encoder, pixels)
    assert len(small) == 2 and small.bytes <= small.max_bytes


def test_history_and_final_record(tmp_path, data):
    history = HistoryCallback()
    val = ShapesDataset("val", 4, "caption", SHAPES64)
    cfg = config(tmp_path, steps=4, eval_every=2, eval_batches=2)
    trainer = Trainer(tiny_model(), data, val, cfg, [history], progress=False)
    trainer.train()
    assert history.step == [1, 2, 3, 4] and len(history.lr) == 4
    assert history.val_step == [2, 4] and all(v > 0 for v in history.val_loss)
    record = VisionLanguageModel.from_pretrained(tmp_path / "run" / "final").config.training
    assert record["stage"] == "align" and record["steps"] == 4 and record["seed"] == 0
    assert record["data"] == "shapes:train:both (24 examples)"


def test_cli_train_and_resume(tmp_path, capsys):
    from vlkit.cli import main

    out = tmp_path / "cli"
    common = ["--preset", "tiny", "--out", str(out), "--train-size", "8", "--val-size", "2"]
    assert main(["train", *common, "--steps", "2", "--batch-size", "2"]) == 0
    assert main(["train", *common, "--steps", "3", "--resume"]) == 0
    state = json.loads((latest_checkpoint(out) / "trainer.json").read_text())
    assert state["step"] == 3 and state["config"]["batch_size"] == 2
    assert "final model:" in capsys.readouterr().out
    # instruct from the align result (--init), as the two-stage recipe does
    init = ["--init", str(out / "final"), "--stage", "instruct"]
    assert main(["train", *common[2:], *init, "--steps", "1", "--out", str(tmp_path / "i")]) == 0
    record = VisionLanguageModel.from_pretrained(tmp_path / "i" / "final").config.training
    assert record["stage"] == "instruct" and record["previous"]["stage"] == "align"


def test_cli_lora_targets_and_continuing_an_adapter_records_what_was_trained(tmp_path, capsys):
    from vlkit.cli import main

    common = ["--preset", "tiny", "--train-size", "8", "--val-size", "0", "--batch-size", "2"]
    first = tmp_path / "first"
    args = ["--stage", "instruct", "--lora-r", "4", "--lora-targets", "q_proj, o_proj,up_proj"]
    assert main(["train", *common, *args, "--steps", "1", "--out", str(first)]) == 0
    model = VisionLanguageModel.from_pretrained(first / "final")
    assert model.config.training["lora"] == {
        "r": 4, "alpha": 16, "targets": ["o_proj", "q_proj", "up_proj"]
    }  # fmt: skip
    names = [n for n, _ in model.lm.model.named_parameters() if ".lora_A." in n]
    adapted = {n.split(".lora_A.")[0].rsplit(".", 1)[-1] for n in names}
    assert adapted == {"q_proj", "o_proj", "up_proj"}
    # continuing that adapter with other settings: warned, and the record keeps the real adapter
    again = ["--init", str(first / "final"), "--stage", "instruct", "--lora-r", "16"]
    with pytest.warns(UserWarning, match=r"already has a LoRA adapter \(r=4"):
        assert main(["train", *common, *again, "--steps", "1", "--out", str(tmp_path / "b")]) == 0
    record = VisionLanguageModel.from_pretrained(tmp_path / "b" / "final").config.training
    assert record["lora"]["r"] == 4 and record["previous"]["lora"]["r"] == 4
    capsys.readouterr()
    bad = ["train", *common, "--stage", "instruct", "--lora-targets", " , ", "--out", "x"]
    assert main(bad) != 0
    assert "--lora-targets: name LM layers" in capsys.readouterr().err
