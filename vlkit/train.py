"""Two-stage training on Hugging Face Accelerate, with checkpoints that resume exactly.

- align: only the projector learns, on image-caption pairs (MiniGPT-4 / LLaVA stage 1).
- instruct: the projector plus LoRA adapters on the LM learn, on conversations (stage 2).

The same loop runs on a CPU, one GPU, or several (`accelerate launch -m vlkit train ...`; on a
CPU-only box, `ACCELERATE_USE_CPU=1 torchrun --nproc_per_node N -m vlkit train ...`).
Resuming gives the same weights as an uninterrupted run: the data order is a pure function of
(seed, sample position), and a checkpoint holds the model, optimizer, scheduler and RNG states.
Nothing is pickled: tensors go to safetensors files, everything else to JSON. While the encoder
is frozen, each image is encoded once (`FeatureCache`) and only the projector and LM run per step.
The trainer reports through callbacks (`on_step`, `on_eval`, `on_save`, `on_end`), so notebooks
can draw it live without the trainer importing any widget.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import statistics
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__
from .datasets import check_example, dataset_name
from .errors import CheckpointError, ConfigError, TrainingError
from .feature_cache import FeatureCache
from .llms import IGNORE_INDEX
from .model import VisionLanguageModel

STAGES = ("align", "instruct")
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")


@dataclass
class TrainConfig:
    stage: str = "align"  # align: projector only | instruct: projector + LoRA on the LM
    steps: int = 1000  # optimizer steps in all (a resumed run counts the steps already done)
    batch_size: int = 8  # examples per micro-batch, per process
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 1e-3  # peak learning rate of the projector (and encoder, if it is not frozen)
    lora_lr: float = 0.0  # peak learning rate of the LoRA adapters; 0 = same as lr
    min_lr: float = 1e-5  # the cosine schedule ends here; LoRA's lr decays by the same factor
    warmup_steps: int = 50  # linear warm-up from 0 to the peak lr
    weight_decay: float = 0.0  # AdamW decay of weight matrices (biases and norms never decay)
    max_grad_norm: float = 1.0  # clip the gradient norm to this; 0 = no clipping
    lora_r: int = 8  # instruct: LoRA rank
    lora_alpha: int = 16  # instruct: LoRA scale numerator (scale = alpha / r)
    lora_dropout: float = 0.05  # instruct: dropout on the LoRA input
    lora_target_modules: list = field(default_factory=lambda: ["q_proj", "v_proj"])  # LoRA'd layers
    eval_every: int = 100  # steps between validation runs; 0 = only at the end
    eval_batches: int = 10  # validation batches per run (the same ones every time)
    save_every: int = 500  # steps between checkpoints; 0 = only at the end
    keep_checkpoints: int = 2  # newest checkpoints kept in out_dir/checkpoints; 0 = keep all
    seed: int = 0  # seeds data order, LoRA init and dropout
    mixed_precision: str = "auto"  # auto (bf16 on CUDA, else no) | no | bf16 | fp16
    feature_cache: bool = True  # encode each image once while the encoder is frozen
    feature_cache_mb: int = 1024  # memory for cached features; least recently used go first
    feature_cache_dir: str = ""  # also keep features on disk here; "" = memory only
    explode_factor: float = 10.0  # stop if loss > this x the median of recent losses; 0 = off
    guard_window: int = 50  # recent losses in that median
    zero_loss_steps: int = 20  # stop if the loss stays below 1e-6 this many steps; 0 = off
    out_dir: str = "runs/train"  # checkpoints/ and final/ go here

    def __post_init__(self):
        def check(ok, message):
            if not ok:
                raise ConfigError(message)

        check(self.stage in STAGES, f"TrainConfig.stage={self.stage!r}: use 'align' or 'instruct'")
        for name in ("steps", "batch_size", "grad_accum", "lora_r", "guard_window"):
            check(getattr(self, name) >= 1, f"TrainConfig.{name} must be at least 1")
        for name in ("warmup_steps", "eval_every", "eval_batches", "save_every"):
            check(getattr(self, name) >= 0, f"TrainConfig.{name} must be >= 0 (0 turns it off)")
        check(self.keep_checkpoints >= 0, "TrainConfig.keep_checkpoints must be >= 0 (0 = all)")
        check(self.lr > 0, f"TrainConfig.lr={self.lr}: use a positive learning rate, e.g. 1e-3")
        check(self.lora_lr >= 0, "TrainConfig.lora_lr must be >= 0 (0 = same as lr)")
        check(
            0 <= self.min_lr <= self.lr,
            f"TrainConfig.min_lr={self.min_lr} must lie in [0, lr={self.lr}]",
        )
        check(self.weight_decay >= 0, "TrainConfig.weight_decay must be >= 0")
        check(self.max_grad_norm >= 0, "TrainConfig.max_grad_norm must be >= 0 (0 = no clipping)")
        check(0 <= self.lora_dropout < 1, "TrainConfig.lora_dropout must be in [0, 1)")
        check(
            bool(self.lora_target_modules),
            "TrainConfig.lora_target_modules is empty: name LM layers, e.g. ['q_proj', 'v_proj']",
        )
        check(
            self.mixed_precision in MIXED_PRECISION,
            f"TrainConfig.mixed_precision={self.mixed_precision!r}: use {', '.join(MIXED_PRECISION)}",
        )
        check(self.feature_cache_mb >= 0, "TrainConfig.feature_cache_mb must be >= 0")
        check(
            self.explode_factor == 0 or self.explode_factor > 1,
            "TrainConfig.explode_factor must be > 1 (or 0 to turn the check off)",
        )
        check(self.zero_loss_steps >= 0, "TrainConfig.zero_loss_steps must be >= 0 (0 = off)")
        self.lora_target_modules = list(self.lora_target_modules)


# ---- callbacks ----------------------------------------------------------------------------
class Callback:
    """Override any of these; the trainer calls them on the main process only."""

    def on_step(self, trainer, step: int, loss: float, lr: float) -> None: ...

    def on_eval(self, trainer, step: int, val_loss: float) -> None: ...

    def on_save(self, trainer, step: int, path: Path) -> None: ...

    def on_end(self, trainer) -> None: ...


class TqdmCallback(Callback):
    """A tqdm.auto progress bar with the loss and learning rate (a widget in Jupyter)."""

    def __init__(self):
        self.bar, self.val_loss = None, None

    def on_step(self, trainer, step, loss, lr):
        if self.bar is None:
            from tqdm.auto import tqdm

            cfg = trainer.config
            self.bar = tqdm(total=cfg.steps, initial=step - 1, desc=cfg.stage, unit="step")
        postfix = {"loss": f"{loss:.3f}", "lr": f"{lr:.2e}"}
        if self.val_loss is not None:
            postfix["val"] = f"{self.val_loss:.3f}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def on_eval(self, trainer, step, val_loss):
        self.val_loss = val_loss

    def on_end(self, trainer):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class HistoryCallback(Callback):
    """Records the curves for plots: step/loss/lr every step, val_step/val_loss at each eval."""

    def __init__(self):
        self.step, self.loss, self.lr, self.val_step, self.val_loss = [], [], [], [], []

    def on_step(self, trainer, step, loss, lr):
        self.step.append(step)
        self.loss.append(loss)
        self.lr.append(lr)

    def on_eval(self, trainer, step, val_loss):
        self.val_step.append(step)
        self.val_loss.append(val_loss)


# ---- loss guard ---------------------------------------------------------------------------
class LossGuard:
    """Stops training on a NaN/inf loss, an explosion, or a loss that stays ~0 (a data bug)."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.recent: deque[float] = deque(maxlen=config.guard_window)
        self.zero_run = 0

    def check(self, step: int, loss: float) -> None:
        cfg = self.config
        advice = (
            f"The weights are those after step {step - 1}. Try a lower lr (now {cfg.lr:g}), "
            f"gradient clipping (max_grad_norm=1.0, now {cfg.max_grad_norm:g}) or "
            "mixed_precision='no', and check the data"
        )
        if not math.isfinite(loss):
            raise TrainingError(
                f"the loss is {loss} at step {step}: training diverged, or a batch has no "
                f"answer tokens to learn from. {advice} (every example needs an assistant answer)."
            )
        if cfg.explode_factor and len(self.recent) >= min(10, cfg.guard_window):
            median = statistics.median(self.recent)
            if loss > cfg.explode_factor * median:
                raise TrainingError(
                    f"the loss jumped to {loss:.4g} at step {step}, over {cfg.explode_factor:g}x "
                    f"the recent median {median:.4g}: training is blowing up. {advice} "
                    "(or raise explode_factor if this batch is just unusually hard)."
                )
        self.zero_run = self.zero_run + 1 if loss < 1e-6 else 0
        if cfg.zero_loss_steps and self.zero_run >= cfg.zero_loss_steps:
            raise TrainingError(
                f"the loss has stayed below 1e-6 for {self.zero_run} steps (step {step}): the "
                "model is probably reading its answers from the prompt. Check that the answers "
                "are only in assistant turns and not copied into the user's text or the images."
            )
        self.recent.append(loss)

    def state(self) -> dict:
        return {"recent": list(self.recent), "zero_run": self.zero_run}

    def load(self, state: dict) -> None:
        self.recent.extend(state.get("recent", []))
        self.zero_run = int(state.get("zero_run", 0))


# ---- the loss, as one module (so DDP and autocast wrap it) ---------------------------------
class _LossModule(nn.Module):
    def __init__(self, model: VisionLanguageModel):
        super().__init__()
        self.model = model

    def forward(self, batch: dict, features: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(**batch, patch_features=features).loss


# ---- the trainer --------------------------------------------------------------------------
class Trainer:
    """Train `model` on `train_data` (a sequence of examples); see the module docstring."""

    def __init__(
        self,
        model: VisionLanguageModel,
        train_data,
        val_data=None,
        config: TrainConfig | None = None,
        callbacks: list | None = None,
        progress: bool = True,
    ):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.config = cfg = config or TrainConfig()
        if len(train_data) == 0:
            raise ConfigError("train_data is empty: give at least one example")
        check_example(train_data[0], 0)  # fail now, not at the first step
        self.model, self.train_data, self.val_data = model, train_data, val_data
        self.callbacks = list(callbacks or [])
        if progress and not any(isinstance(c, TqdmCallback) for c in self.callbacks):
            self.callbacks.insert(0, TqdmCallback())
        mp = cfg.mixed_precision
        if mp == "auto":
            mp = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
        self.accelerator = Accelerator(
            gradient_accumulation_steps=cfg.grad_accum, mixed_precision=mp
        )
        set_seed(cfg.seed, device_specific=True)  # LoRA init and dropout; per process
        self.step, self.position = 0, 0  # optimizer steps done; samples of the stream consumed
        self.guard = LossGuard(cfg)
        self.last_loss: float | None = None
        self.last_val_loss: float | None = None
        self._stop = False
        self._previous = dict(model.config.training) or None  # an earlier stage's record
        self._perms: dict[int, np.ndarray] = {}

        self._setup_trainable()
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(self._param_groups(), lr=cfg.lr)
        # A plain function (not a bound method), so the scheduler's state_dict is pure JSON.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: self._lr_factor(s))
        frozen = model.encoder.config.frozen
        self.cache = None
        if cfg.feature_cache and frozen:
            self.cache = FeatureCache(cfg.feature_cache_mb << 20, cfg.feature_cache_dir or None)
        self._loss = _LossModule(model)
        self._wrapped, self.optimizer = self.accelerator.prepare(self._loss, optimizer)

    # ---- setup ---------------------------------------------------------------------------
    def _setup_trainable(self) -> None:
        cfg, model = self.config, self.model
        model.requires_grad_(False)
        model.projector.requires_grad_(True)
        if not model.encoder.config.frozen:
            model.encoder.requires_grad_(True)
        if cfg.stage == "instruct":
            if not model.lm.has_lora:
                from peft import LoraConfig

                model.lm.add_lora(
                    LoraConfig(
                        r=cfg.lora_r,
                        lora_alpha=cfg.lora_alpha,
                        lora_dropout=cfg.lora_dropout,
                        target_modules=cfg.lora_target_modules,
                    )
                )
            else:  # continue the checkpoint's own adapter: its rank and modules win
                have = model.lm.lora_settings()
                if (have["r"], have["targets"]) != (cfg.lora_r, sorted(cfg.lora_target_modules)):
                    warnings.warn(
                        f"the model already has a LoRA adapter (r={have['r']} on "
                        f"{', '.join(have['targets'])}); training continues it, so lora_r="
                        f"{cfg.lora_r} and lora_target_modules={cfg.lora_target_modules} are not "
                        "used. Start from a checkpoint without an adapter (e.g. an align run) "
                        "for a new one.",
                        stacklevel=3,
                    )
            for name, p in model.lm.model.named_parameters():
                if "lora_" in name:
                    p.requires_grad_(True)

    def _param_groups(self) -> list[dict]:
        cfg = self.config
        groups: dict[tuple[str, bool], list] = {}
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                part = "lora" if "lora_" in name else name.split(".")[0]
                groups.setdefault((part, p.ndim >= 2), []).append(p)
        return [
            {
                "params": params,
                "name": f"{part}{'' if decay else '/no_decay'}",
                "lr": (cfg.lora_lr or cfg.lr) if part == "lora" else cfg.lr,
                "weight_decay": cfg.weight_decay if decay else 0.0,
            }
            for (part, decay), params in groups.items()
        ]

    def _lr_factor(self, step: int) -> float:
        """Linear warm-up, then a cosine from the peak lr down to min_lr at the last step."""
        cfg = self.config
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        floor = cfg.min_lr / cfg.lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    # ---- data ----------------------------------------------------------------------------
    def _sample(self, position: int) -> dict:
        """The example at a position of the endless stream: epoch e is permutation (seed, e)."""
        epoch, index = divmod(position, len(self.train_data))
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.config.seed, epoch]).permutation(
                len(self.train_data)
            )}  # fmt: skip
        return self.train_data[int(self._perms[epoch][index])]

    def _collate(self, examples: list[dict]) -> dict:
        images = [list(e.get("images", [])) for e in examples]
        details = None
        if any(e.get("details") for e in examples):
            details = [
                e.get("details") or ["auto"] * len(i) for e, i in zip(examples, images, strict=True)
            ]
        return self.model.prepare([e["conversation"] for e in examples], images, details)

    def _next_batch(self) -> dict:
        b, acc = self.config.batch_size, self.accelerator
        start = self.position + acc.process_index * b  # this process's slice of the global batch
        self.position += b * acc.num_processes
        return self._collate([self._sample(p) for p in range(start, start + b)])

    def _batch_loss(self, batch: dict, module: nn.Module) -> torch.Tensor:
        device = self.accelerator.device
        tensors = {
            k: batch[k].to(device) for k in ("input_ids", "attention_mask", "image_mask", "labels")
        }
        features = None
        if batch["pixel_values"] is not None:
            if self.cache is not None:
                features = self.cache.encode(self.model.encoder, batch["pixel_values"])
            else:
                tensors["pixel_values"] = batch["pixel_values"].to(device)
        return module(tensors, features)

    # ---- the loop ------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to stop after the current step (safe from a callback or another thread)."""
        self._stop = True

    def train(self) -> VisionLanguageModel:
        """Run until `config.steps`; save checkpoints, then the final model to out_dir/final."""
        cfg, acc = self.config, self.accelerator
        self._stop = False
        self.model.train()
        try:
            while self.step < cfg.steps and not self._stop:
                micro = []
                for _ in range(cfg.grad_accum):
                    batch = self._next_batch()
                    with acc.accumulate(self._wrapped):
                        loss = self._batch_loss(batch, self._wrapped)
                        acc.backward(loss)
                    micro.append(loss.detach())
                loss = acc.reduce(torch.stack(micro).mean(), reduction="mean").item()
                self.guard.check(self.step + 1, loss)  # before the update: bad steps never land
                if cfg.max_grad_norm > 0:
                    acc.clip_grad_norm_(self.trainable, cfg.max_grad_norm)
                lr = self.scheduler.get_last_lr()[0]
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                self.last_loss = loss
                self._emit("on_step", self.step, loss, lr)
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    self._eval()
                if cfg.save_every and self.step % cfg.save_every == 0:
                    self.save_checkpoint()
            if not (cfg.eval_every and self.step % cfg.eval_every == 0):
                self._eval()
            self.save_checkpoint()
            if acc.is_main_process:
                self._record_training()
                self.model.save_pretrained(Path(cfg.out_dir) / "final")
            acc.wait_for_everyone()
        finally:
            self.model.eval()
            self._emit("on_end")
        return self.model

    def _emit(self, name: str, *args) -> None:
        if self.accelerator.is_main_process:
            for callback in self.callbacks:
                hook = getattr(callback, name, None)
                if hook is not None:
                    hook(self, *args)

    @torch.no_grad()
    def evaluate(self, max_batches: int | None = None) -> float | None:
        """Mean loss per answer token over the first `max_batches` validation batches."""
        if not self.val_data:
            return None
        cfg, acc = self.config, self.accelerator
        max_batches = cfg.eval_batches if max_batches is None else max_batches
        was_training = self.model.training
        self.model.eval()
        total = torch.zeros(2, device=acc.device)  # (sum of token losses, token count)
        b, n = cfg.batch_size, len(self.val_data)
        for start in range(0, min(n, max_batches * b * acc.num_processes), b * acc.num_processes):
            lo = start + acc.process_index * b
            examples = [self.val_data[i] for i in range(lo, min(lo + b, n))]
            if not examples:
                continue
            batch = self._collate(examples)
            tokens = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
            with acc.autocast():
                loss = self._batch_loss(batch, self._loss)
            total += torch.stack([loss.float() * tokens, torch.tensor(float(tokens))]).to(total)
        total = acc.reduce(total, reduction="sum")
        self.model.train(was_training)
        return float(total[0] / total[1]) if total[1] > 0 else None

    def _eval(self) -> None:
        val = self.evaluate()
        if val is not None:
            self.last_val_loss = val
            self._emit("on_eval", self.step, val)

    def _record_training(self) -> None:
        cfg = self.config
        record = {
            "stage": cfg.stage,
            "steps": self.step,
            "data": dataset_name(self.train_data),
            "val_data": dataset_name(self.val_data) if self.val_data else None,
            "seed": cfg.seed,
            "batch_size": cfg.batch_size * cfg.grad_accum * self.accelerator.num_processes,
            "lr": cfg.lr,
            "final_loss": self.last_loss,
            "val_loss": self.last_val_loss,
        }
        if cfg.stage == "instruct":
            record["lora"] = self.model.lm.lora_settings()  # as trained, not as asked for
        if self._previous:
            record["previous"] = self._previous
        self.model.config.training = record

    # ---- checkpoints ---------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Write out_dir/checkpoints/step-NNNNNNNN atomically: built in a temp folder, renamed."""
        acc = self.accelerator
        root = Path(self.config.out_dir) / "checkpoints"
        final = root / f"step-{self.step:08d}"
        if final.is_dir():  # already saved at this step (save_every hit the last step)
            return final
        tmp = root / f".tmp-{final.name}"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)  # what a crash mid-save left behind
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        _save_rng(tmp, acc.process_index)  # each process has its own generators
        acc.wait_for_everyone()
        if acc.is_main_process:
            self._record_training()
            self.model.save_pretrained(tmp / "model")
            _save_optimizer(self.optimizer.state_dict(), tmp)
            _write_json(tmp / "scheduler.json", self.scheduler.state_dict())
            state = {
                "step": self.step,
                "position": self.position,
                "guard": self.guard.state(),
                "config": dataclasses.asdict(self.config),
                "num_processes": acc.num_processes,
                "vlkit_version": __version__,
            }
            _write_json(tmp / "trainer.json", state)  # written last: its presence marks a whole one
            os.rename(tmp, final)
            self._prune(root)
        acc.wait_for_everyone()
        self._emit("on_save", self.step, final)
        return final

    def _prune(self, root: Path) -> None:
        keep = self.config.keep_checkpoints
        for stale in root.glob(".tmp-step-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if keep:
            for old in list_checkpoints(root.parent)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)

    def load_state(self, checkpoint: str | os.PathLike) -> None:
        """Restore optimizer, scheduler, RNG, step and data position (the model is loaded apart)."""
        path = Path(checkpoint)
        state = _read_json(path / "trainer.json")
        _load_optimizer(self.optimizer, path)
        self.scheduler.load_state_dict(_read_json(path / "scheduler.json"))
        self.step, self.position = int(state["step"]), int(state["position"])
        self.guard.load(state.get("guard", {}))
        self._previous = self.model.config.training.get("previous")  # this run's own record
        _load_rng(path, self.accelerator.process_index, self.config.seed + self.step)

    @classmethod
    def resume(
        cls,
        checkpoint: str | os.PathLike,
        train_data,
        val_data=None,
        callbacks: list | None = None,
        progress: bool = True,
        **overrides,
    ) -> Trainer:
        """A trainer that continues from a checkpoint folder, or from the newest one in an out_dir.

        The model comes from the checkpoint (random-init parts included), the config from its
        trainer.json with `overrides` applied (e.g. steps=2000 to train on).
        """
        path = Path(checkpoint)
        if not (path / "trainer.json").is_file():
            found = latest_checkpoint(path)
            if found is None:
                raise CheckpointError(
                    f"no checkpoint in {path / 'checkpoints'}: start a run without resume first"
                )
            overrides.setdefault("out_dir", str(path))
            path = found
        else:
            overrides.setdefault("out_dir", str(path.parent.parent))
        saved = _read_json(path / "trainer.json")["config"]
        config = TrainConfig(**(saved | overrides))
        model = VisionLanguageModel.from_pretrained(path / "model", trainable_lora=True)
        trainer = cls(model, train_data, val_data, config, callbacks, progress)
        trainer.load_state(path)
        return trainer


def list_checkpoints(out_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in out_dir/checkpoints, oldest first (temp folders never count)."""
    root = Path(out_dir) / "checkpoints"
    found = [
        p
        for p in root.glob("step-*")
        if p.is_dir() and p.name[5:].isdigit() and (p / "trainer.json").is_file()
    ]
    return sorted(found, key=lambda p: int(p.name[5:]))


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


# ---- state files: safetensors for tensors, JSON for the rest -------------------------------
def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n")


def _read_json(path: Path):
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the checkpoint is incomplete; use an older one")
    return json.loads(path.read_text())


def _save_optimizer(state: dict, folder: Path) -> None:
    from safetensors.torch import save_file

    tensors, rest = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                rest.setdefault(str(index), {})[key] = value
    save_file(tensors, folder / "optimizer.safetensors")
    _write_json(folder / "optimizer.json", {"param_groups": state["param_groups"], "state": rest})


def _load_optimizer(optimizer, folder: Path) -> None:
    from safetensors.torch import load_file

    meta = _read_json(folder / "optimizer.json")
    state: dict[int, dict] = {}
    for key, tensor in load_file(folder / "optimizer.safetensors").items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = tensor
    for index, values in meta["state"].items():
        state.setdefault(int(index), {}).update(values)
    groups = meta["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])  # JSON turned the tuple into a list
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as exc:
        raise CheckpointError(
            f"the optimizer state in {folder} does not fit this model's trainable parameters "
            f"({exc}): resume with the stage and LoRA settings the checkpoint was made with"
        ) from exc


def _save_rng(folder: Path, process: int) -> None:
    from safetensors.torch import save_file

    tensors = {"torch_cpu": torch.get_rng_state()}  # uint8
    if torch.cuda.is_available():
        tensors["torch_cuda"] = torch.stack(torch.cuda.get_rng_state_all())  # (devices, n) uint8
    save_file(tensors, folder / f"rng-{process}.safetensors")
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    _write_json(
        folder / f"rng-{process}.json",
        {
            "python": [version, list(mt), gauss],
            "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        },
    )


def _load_rng(folder: Path, process: int, fallback_seed: int) -> None:
    from safetensors.torch import load_file

    file = folder / f"rng-{process}.safetensors"
    if not file.is_file():  # resumed on more processes than saved: a fresh, still seeded, stream
        from accelerate.utils import set_seed

        set_seed(fallback_seed, device_specific=True)
        return
    tensors = load_file(file)
    torch.set_rng_state(tensors["torch_cpu"])
    if "torch_cuda" in tensors and torch.cuda.is_available():
        states = list(tensors["torch_cuda"])[: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)
    rest = _read_json(folder / f"rng-{process}.json")
    version, mt, gauss = rest["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = rest["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


# ---- one call for the CLI and notebooks ----------------------------------------------------
def run_training(
    *,
    preset: str = "small",
    stage: str | None = None,
    data: str = "shapes",
    out_dir: str = "runs/train",
    resume: bool = False,
    init: str | None = None,
    train_size: int = 5000,
    val_size: int = 200,
    progress: bool = True,
    **overrides,
) -> Path:
    """Build model and data by name, train, and return the final model's folder.

    `init` starts from a checkpoint (e.g. an align run's final/ for instruct); `resume` continues
    from the newest checkpoint in out_dir. `overrides` set TrainConfig fields (steps, lr, ...).
    """
    from .datasets import from_spec
    from .model import read_checkpoint_config

    overrides = {k: v for k, v in overrides.items() if v is not None}
    if resume:
        found = latest_checkpoint(out_dir)
        if found is None:
            raise CheckpointError(f"--resume: no checkpoint in {out_dir}/checkpoints yet")
        saved = _read_json(found / "trainer.json")["config"]
        if stage not in (None, saved["stage"]):
            raise ConfigError(
                f"{found} is a {saved['stage']} run: resume it as {saved['stage']}, or start "
                f"{stage} from it with init={str(found / 'model')!r}"
            )
        stage = saved["stage"]
        image_size = read_checkpoint_config(found / "model").encoder.image_size
    else:
        if init:
            model = VisionLanguageModel.from_pretrained(init)
        else:
            model = VisionLanguageModel.from_preset(preset)
        image_size = model.config.encoder.image_size
        stage = stage or "align"
    kind = "caption" if stage == "align" else "both"
    train = from_spec(data, "train", train_size, kind, image_size)
    val = from_spec(data, "val", val_size, kind, image_size) if val_size else None
    if resume:
        trainer = Trainer.resume(out_dir, train, val, progress=progress, **overrides)
    else:
        config = TrainConfig(stage=stage, out_dir=str(out_dir), **overrides)
        trainer = Trainer(model, train, val, config, progress=progress)
    trainer.train()
    return Path(trainer.config.out_dir) / "final"


TINY_LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def train_tiny_shapes(
    steps: int = 400,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    callbacks: list[Callback] | None = None,
) -> tuple[VisionLanguageModel, HistoryCallback]:
    """The tiny preset trained on shapes captions: a model whose attention means something, fast.

    The tiny preset has no pretrained parts (random encoder, random LM over a word-level
    vocabulary), so this recipe puts LoRA on every linear layer of the LM: the LM has to learn
    the caption language as well as read the image. About 75 s on 2 CPU cores for 400 steps;
    tests/test_learning.py records what it reaches. -> (model in eval mode, loss history)
    """
    import tempfile

    from .data.shapes import ShapesConfig
    from .datasets import ShapesDataset

    torch.manual_seed(seed)
    model = VisionLanguageModel.from_preset("tiny")
    data = ShapesDataset("train", 4000, "caption", ShapesConfig(image_size=64))
    history = HistoryCallback()
    with tempfile.TemporaryDirectory(prefix="vlkit-tiny-shapes-") as scratch:
        config = TrainConfig(
            stage="instruct", steps=steps, batch_size=16, lr=3e-3, warmup_steps=30, seed=seed,
            lora_target_modules=TINY_LORA_MODULES, lora_r=16, lora_alpha=32, lora_dropout=0.0,
            eval_every=0, save_every=0, out_dir=str(out_dir or scratch),
        )  # fmt: skip
        trainer = Trainer(
            model, data, None, config, callbacks=[history, *(callbacks or [])], progress=progress
        )
        trainer.train()
    return model.eval(), history
