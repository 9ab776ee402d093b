"""`VisionLanguageModel`: encoder -> projector -> language model, composed.

The image's patch features go through the projector and take the place of the `<image>`
placeholder's positions in the LM's input embeddings (a soft prompt). `forward` gives logits and
the answer-only loss; `generate` decodes with a KV cache (greedy or sampling) and can stream;
`chat` takes chat-completions messages with image URLs. Checkpoints are safetensors + config.json,
with LoRA adapters in peft's own format; nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from .config import DEFAULT_PROMPT, FORMAT_VERSION, VLMConfig
from .encoders import VisionEncoder
from .errors import CheckpointError, ConfigError, MessageError, VlkitError
from .images import load_image
from .llms import IGNORE_INDEX, LanguageModel
from .messages import ImageRef, parse_messages
from .projectors import Projector, build_projector


@dataclass
class VLMOutput:
    logits: torch.Tensor  # (B, L, vocab)
    loss: torch.Tensor | None = None  # mean cross-entropy over answer tokens
    attentions: tuple[torch.Tensor, ...] | None = None  # LM attentions per layer (B, H, L, L)
    past_key_values: object | None = None


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]
    image_tokens: list[int]  # image tokens each image cost, in order
    prompt_tokens: int  # including image tokens
    completion_tokens: int
    finish_reason: str  # "stop" (end-of-turn token) or "length" (max_new_tokens reached)
    seconds: float
    details: list[str] = field(default_factory=list)  # the detail level used for each image


def _resolve_source(source: str, role: str) -> str:
    if source.startswith("offline:"):
        from .weights import ensure_small_weights

        return str(ensure_small_weights()[role])
    return source


class VisionLanguageModel(nn.Module):
    def __init__(
        self, encoder: VisionEncoder, projector: Projector, lm: LanguageModel, config: VLMConfig
    ):
        super().__init__()
        self.encoder, self.projector, self.lm, self.config = encoder, projector, lm, config

    # ---- building ---------------------------------------------------------------------------
    @classmethod
    def from_config(
        cls, config: VLMConfig, *, encoder_dir: str = "", lm_dir: str = "", tokenizer_dir: str = ""
    ):
        encoder = VisionEncoder(
            config.encoder, source=encoder_dir or _resolve_source(config.encoder.source, "encoder")
        )
        lm_source = lm_dir or _resolve_source(config.lm.source, "lm")
        tok = tokenizer_dir or (
            config.lm.tokenizer
            if config.lm.tokenizer in ("", "words")
            else _resolve_source(config.lm.tokenizer, "lm")
        )
        lm = LanguageModel(config.lm, source=lm_source, tokenizer_source=tok)
        projector = build_projector(config.projector, encoder.hidden_size, lm.hidden_size)
        return cls(encoder, projector, lm, config)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> VisionLanguageModel:
        """Build a preset by name (`tiny`, `small`, or a hub preset); see `vlkit.presets.PRESETS`."""
        from .presets import preset_config

        return cls.from_config(preset_config(name, **overrides))

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    @property
    def image_tokens_per_view(self) -> int:
        return self.projector.num_tokens(self.encoder.grid)

    # ---- images -> embeddings ----------------------------------------------------------------
    def image_views(self, image, detail: str = "auto") -> tuple[list[torch.Tensor], str]:
        """An image as the list of encoder-sized views it becomes at a detail level.

        low: one view of the whole image (resized, centre-cropped). high: that view plus a grid of
        up to `high_max_tiles` full-resolution tiles. auto: `config.auto_detail`.
        """
        image = load_image(image)
        detail = self.config.auto_detail if detail == "auto" else detail
        if detail not in ("low", "high"):
            raise VlkitError(f"detail={detail!r}: use 'low', 'high' or 'auto'")
        views = [self.encoder.preprocess(image)]
        if detail == "high":
            views += self.encoder.tiles(image, self.config.high_max_tiles)
        return views, detail

    def encode_images(self, pixel_values: torch.Tensor, output_attentions: bool = False):
        """(V, 3, S, S) views -> (V, T, D_lm) soft-prompt vectors (and the encoder output)."""
        enc = self.encoder(pixel_values, output_attentions=output_attentions)
        projector_param = next(self.projector.parameters())
        features = enc.features.to(projector_param.dtype)  # (V, N_patches, D_enc)
        return self.projector(features, enc.grid), enc  # (V, T, D_lm)

    def embed_inputs(self, input_ids, image_mask=None, pixel_values=None, image_embeds=None):
        """Token embeddings with the image positions filled by projected image features."""
        embeds = self.lm.embed(input_ids)  # (B, L, D)
        if image_mask is None or not bool(image_mask.any()):
            return embeds
        if image_embeds is None:
            image_embeds, _ = self.encode_images(pixel_values)
        flat = image_embeds.reshape(-1, image_embeds.shape[-1]).to(embeds.dtype)  # (V*T, D)
        if flat.shape[0] != int(image_mask.sum()):
            raise VlkitError(
                f"{int(image_mask.sum())} image positions in the prompt but {flat.shape[0]} image "
                "tokens from the projector: build the batch with model.prepare(...)"
            )
        mask = image_mask.unsqueeze(-1).expand_as(embeds)  # (B, L, D)
        return embeds.masked_scatter(mask, flat)

    # ---- batches ---------------------------------------------------------------------------
    def prepare(
        self,
        conversations,
        images=None,
        details=None,
        add_generation_prompt=False,
        padding_side="right",
    ):
        """Tokenize a batch of conversations (lists of {'role','content'} with `<image>` placeholders).

        `images[i]` lists the images of conversation i, in placeholder order; `details[i]` their
        detail levels. Returns a dict of tensors for `forward` / `generate_ids`, plus per-image token
        counts under 'image_tokens'.
        """
        images = images or [[] for _ in conversations]
        details = details or [["auto"] * len(imgs) for imgs in images]
        rows, views, counts, used = [], [], [], []
        per_view = self.image_tokens_per_view
        for conv, imgs, dets in zip(conversations, images, details, strict=True):
            if len(imgs) > self.config.max_images:
                raise VlkitError(
                    f"{len(imgs)} images in one prompt; this model takes at most {self.config.max_images}"
                )
            n_tokens = []
            for img, det in zip(imgs, dets, strict=True):
                v, used_detail = self.image_views(img, det)
                views += v
                n_tokens.append(len(v) * per_view)
                used.append(used_detail)
            counts.append(n_tokens)
            rows.append(
                self.lm.tokenize(conv, n_tokens, self.config.image_token, add_generation_prompt)
            )
        length = max(len(r.input_ids) for r in rows)
        pad = self.lm.tokenizer.pad_token_id

        def padded(values, fill):
            extra = [fill] * (length - len(values))
            return extra + values if padding_side == "left" else values + extra

        batch = {
            "input_ids": torch.tensor([padded(r.input_ids, pad) for r in rows]),
            "attention_mask": torch.tensor([padded([1] * len(r.input_ids), 0) for r in rows]),
            "image_mask": torch.tensor([padded(r.image_mask, False) for r in rows]),
            "labels": torch.tensor([padded(r.labels, IGNORE_INDEX) for r in rows]),
            "pixel_values": torch.stack(views) if views else None,
            "image_tokens": counts,
            "details": used,
        }
        return batch

    # ---- forward -----------------------------------------------------------------------------
    def forward(
        self,
        input_ids,
        attention_mask=None,
        image_mask=None,
        pixel_values=None,
        labels=None,
        output_attentions: bool = False,
        patch_features: torch.Tensor | None = None,
        **_ignored,
    ) -> VLMOutput:
        """Logits and answer-only loss. `patch_features` (V, N, D_enc), e.g. from a feature cache,
        stand in for running the frozen encoder on `pixel_values`."""
        device = self.device
        input_ids = input_ids.to(device)
        attention_mask = (
            torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(device)
        )
        image_mask = None if image_mask is None else image_mask.to(device)
        image_embeds = None
        if patch_features is not None:
            projector_dtype = next(self.projector.parameters()).dtype
            image_embeds = self.projector(
                patch_features.to(device, projector_dtype), self.encoder.grid
            )
        embeds = self.embed_inputs(input_ids, image_mask, pixel_values, image_embeds)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, L); padding-aware
        out = self.lm(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_attentions=output_attentions,
            use_cache=False,
        )
        loss = None
        if labels is not None:
            labels = labels.to(device)
            # Token t predicts token t+1; answer-only labels were set by LanguageModel.tokenize.
            loss = F.cross_entropy(
                out.logits[:, :-1].reshape(-1, out.logits.shape[-1]).float(),
                labels[:, 1:].reshape(-1),
                ignore_index=IGNORE_INDEX,
            )
        return VLMOutput(out.logits, loss, getattr(out, "attentions", None))

    # ---- generation ----------------------------------------------------------------------------
    @staticmethod
    def _pick(logits, temperature: float, top_p: float, generator) -> torch.Tensor:
        logits = logits.float()
        if temperature <= 0:
            return logits.argmax(-1)  # (B,)
        probs = torch.softmax(logits / temperature, dim=-1)
        if top_p < 1.0:  # keep the smallest set of tokens whose probability reaches top_p
            sorted_p, order = probs.sort(dim=-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p > top_p
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    @torch.no_grad()
    def iter_token_ids(
        self,
        batch: dict,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        use_cache: bool = True,
    ) -> Iterator[torch.Tensor]:
        """Yield the next token id of every sequence, (B,), one step at a time.

        The batch must be left-padded (`prepare(..., padding_side='left')`). With `use_cache=False`
        every step re-runs the whole sequence: slow, kept to check the cache gives the same answer.
        """
        if not 0.0 < top_p <= 1.0:
            raise VlkitError(f"top_p={top_p}: use a value in (0, 1]")
        if max_new_tokens < 1:
            raise VlkitError(f"max_new_tokens={max_new_tokens}: ask for at least 1 token")
        device = self.device
        ids = batch["input_ids"].to(device)
        am = batch["attention_mask"].to(device)
        image_mask = batch["image_mask"].to(device)
        embeds = self.embed_inputs(ids, image_mask, batch.get("pixel_values"))  # (B, L, D)
        pos = (am.cumsum(-1) - 1).clamp(min=0)  # (B, L)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=device).manual_seed(seed)
        eos = torch.tensor(sorted(self.lm.eos_token_ids), device=device)
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=device)
        out = self.lm(
            inputs_embeds=embeds,
            attention_mask=am,
            position_ids=pos,
            use_cache=use_cache,
            logits_to_keep=1,
        )
        for _ in range(max_new_tokens):
            token = self._pick(out.logits[:, -1], temperature, top_p, generator)
            token = token.masked_fill(done, self.lm.tokenizer.pad_token_id)
            yield token
            done |= torch.isin(token, eos)
            if bool(done.all()):
                return
            new = self.lm.embed(token[:, None])  # (B, 1, D)
            am = torch.cat([am, torch.ones_like(am[:, :1])], dim=1)
            pos = torch.cat([pos, pos[:, -1:] + 1], dim=1)
            if use_cache:
                out = self.lm(
                    inputs_embeds=new,
                    attention_mask=am,
                    position_ids=pos[:, -1:],
                    past_key_values=out.past_key_values,
                    use_cache=True,
                )
            else:
                embeds = torch.cat([embeds, new], dim=1)
                out = self.lm(
                    inputs_embeds=embeds,
                    attention_mask=am,
                    position_ids=pos,
                    use_cache=False,
                    logits_to_keep=1,
                )

    def _prepare_chat(self, messages, images=None, detail="auto"):
        chat, refs = parse_messages(messages, self.config.image_token, default_detail=detail)
        extra = [ImageRef(img, detail) for img in (images or [])]
        if extra:  # images passed beside a plain-text prompt go first, one placeholder each
            placeholders = "\n".join([self.config.image_token] * len(extra))
            users = [i for i, m in enumerate(chat) if m["role"] == "user"]
            if not users:
                raise MessageError(
                    "images were given but the messages hold no user message to attach them to"
                )
            first_user = users[0]
            chat[first_user]["content"] = placeholders + "\n" + chat[first_user]["content"]
            refs = extra + refs
        return self.prepare(
            [chat],
            [[r.source for r in refs]],
            [[r.detail for r in refs]],
            add_generation_prompt=True,
            padding_side="left",
        )

    def generate(
        self,
        prompt: str | list[dict] = DEFAULT_PROMPT,
        images=None,
        *,
        detail: str = "auto",
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        use_cache: bool = True,
        stream: Callable[[str], None] | None = None,
    ) -> GenerationResult:
        """Answer one prompt. `prompt` is a string or chat-completions messages; `images` are
        extra images (anything `load_image` takes) placed before the prompt text. `stream` is
        called with each new piece of text as it is decoded."""
        start = time.perf_counter()
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        batch = self._prepare_chat(prompt, images, detail)
        ids: list[int] = []
        text = ""
        finish = "length"
        eos = self.lm.eos_token_ids
        for token in self.iter_token_ids(
            batch, max_new_tokens, temperature, top_p, seed, use_cache
        ):
            tid = int(token[0])
            if tid in eos:
                finish = "stop"
                break
            ids.append(tid)
            new_text = self.lm.decode(ids)
            if stream is not None and len(new_text) > len(text) and not new_text.endswith("\ufffd"):
                stream(new_text[len(text) :])
                text = new_text
        text = self.lm.decode(ids)
        return GenerationResult(
            text=text.strip(),
            token_ids=ids,
            image_tokens=batch["image_tokens"][0],
            prompt_tokens=int(batch["attention_mask"].sum()),
            completion_tokens=len(ids) + (finish == "stop"),
            finish_reason=finish,
            seconds=time.perf_counter() - start,
            details=batch["details"],
        )

    @torch.no_grad()
    def generate_batch(
        self, conversations: list[list[dict]], images: list[list], max_new_tokens: int = 64
    ) -> list[str]:
        """Greedy answers to several chats at once (one left-padded batch); for evaluation.

        `conversations[i]` holds `<image>` placeholders for the images in `images[i]`. Greedy
        decoding gives the same answers as `generate` one chat at a time (padding is masked and
        positions skip it)."""
        batch = self.prepare(conversations, images, add_generation_prompt=True, padding_side="left")
        rows: list[list[int]] = [[] for _ in conversations]
        finished = [False] * len(conversations)
        eos = self.lm.eos_token_ids
        for token in self.iter_token_ids(batch, max_new_tokens):
            for i, tid in enumerate(token.tolist()):
                if finished[i]:
                    continue
                if tid in eos:
                    finished[i] = True
                else:
                    rows[i].append(tid)
        return [self.lm.decode(ids).strip() for ids in rows]

    def stream(self, prompt=DEFAULT_PROMPT, images=None, **kwargs) -> Iterator[str]:
        """Like `generate`, but yields pieces of text as they are decoded (runs in a thread)."""
        import queue
        import threading

        pieces: queue.Queue = queue.Queue()
        failure: list[BaseException] = []

        def work():
            try:
                self.generate(prompt, images, stream=pieces.put, **kwargs)
            except BaseException as exc:  # handed to the consumer below
                failure.append(exc)
            finally:
                pieces.put(None)

        threading.Thread(target=work, daemon=True).start()
        while (piece := pieces.get()) is not None:
            yield piece
        if failure:
            raise failure[0]

    def chat(self, messages: list[dict], **kwargs) -> GenerationResult:
        """Answer chat-completions messages (text and image_url parts, several images, `detail`).

        `detail` per image: low = one view at the encoder's resolution (`image_tokens_per_view`
        tokens); high = that view plus up to `high_max_tiles` tiles, each as many tokens again;
        auto = `config.auto_detail`. The result's `image_tokens` says what each image cost.
        """
        return self.generate(messages, **kwargs)

    def describe(self, image, prompt: str = DEFAULT_PROMPT, **kwargs) -> GenerationResult:
        return self.generate(prompt, [image], **kwargs)

    # ---- checkpoints -----------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write config.json + projector.safetensors (+ random-init parts, tokenizer, peft adapter).

        The folder is written beside the target and renamed into place, so an interrupted save
        never leaves a half-written checkpoint behind.
        """
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            data = self.config.to_dict() | {
                "vlkit_version": __version__,
                "format_version": FORMAT_VERSION,
            }
            (tmp / "config.json").write_text(json.dumps(data, indent=2) + "\n")
            save_file(_plain_state(self.projector.state_dict()), tmp / "projector.safetensors")
            if not self.config.encoder.source:
                save_file(
                    _plain_state(self.encoder.model.state_dict()), tmp / "encoder.safetensors"
                )
            if not self.config.lm.source:
                save_file(_plain_state(_base_state(self.lm.base_model())), tmp / "lm.safetensors")
            if not self.config.lm.source or self.config.lm.tokenizer == "words":
                self.lm.tokenizer.save_pretrained(tmp / "tokenizer")
            if self.lm.has_lora:
                self.lm.model.save_pretrained(tmp / "adapter")
                # peft also writes a blank model-card template naming this machine's paths
                (tmp / "adapter" / "README.md").unlink(missing_ok=True)
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                path.rename(old)
                tmp.rename(path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, trainable_lora: bool = False
    ) -> VisionLanguageModel:
        from safetensors.torch import load_file

        path = Path(path)
        config = read_checkpoint_config(path)
        tokenizer_dir = str(path / "tokenizer") if (path / "tokenizer").is_dir() else ""
        try:
            model = cls.from_config(config, tokenizer_dir=tokenizer_dir)
        except VlkitError:
            raise
        except (OSError, ValueError) as exc:
            raise CheckpointError(
                f"could not build the model described in {path}/config.json: {exc}"
            ) from exc
        parts = [("projector.safetensors", model.projector)]
        if not config.encoder.source:
            parts.append(("encoder.safetensors", model.encoder.model))
        if not config.lm.source:
            parts.append(("lm.safetensors", model.lm.base_model()))
        for name, module in parts:
            file = path / name
            if not file.is_file():
                raise CheckpointError(
                    f"{file} is missing: the checkpoint is incomplete; save it again"
                )
            try:
                module.load_state_dict(load_file(file), strict=True)
            except (RuntimeError, OSError) as exc:
                first = str(exc).strip().splitlines()[:4]
                raise CheckpointError(
                    f"{file} does not fit this model ({' '.join(first)}). The checkpoint was made for a "
                    "different encoder, projector or LM: load it with the preset/config it was trained with"
                ) from exc
        if (path / "adapter").is_dir():
            from peft import PeftModel

            from .llms import quiet_peft

            with quiet_peft():
                model.lm.model = PeftModel.from_pretrained(
                    model.lm.model, path / "adapter", is_trainable=trainable_lora
                )
        return model.eval()


def read_checkpoint_config(path: Path) -> VLMConfig:
    """Read and check a checkpoint's config.json, with errors that say what to do."""
    file = path / "config.json"
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a folder: pass the folder save_pretrained wrote")
    if not file.is_file():
        raise CheckpointError(f"{path} holds no config.json, so it is not a vlkit checkpoint")
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{file} is not valid JSON ({exc}); the checkpoint is damaged"
        ) from exc
    if not isinstance(data, dict) or "format_version" not in data:
        raise CheckpointError(f"{file} is not a vlkit config (no format_version)")
    if data["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by vlkit {data.get('vlkit_version', '?')} in checkpoint format "
            f"{data['format_version']}; this vlkit ({__version__}) reads format {FORMAT_VERSION}. "
            f"Install the vlkit version that wrote it, or retrain with this one."
        )
    try:
        return VLMConfig.from_dict(data)
    except ConfigError as exc:
        raise CheckpointError(f"{file}: {exc}") from exc


def _base_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A state dict without LoRA tensors, with peft's `.base_layer` names mapped back."""
    return {
        k.replace(".base_layer.", "."): v
        for k, v in module.state_dict().items()
        if "lora_" not in k
    }


def _plain_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share memory (tied embeddings); store each one on its own.
    return {k: v.detach().contiguous().clone() for k, v in state.items()}
