"""The language model: any Hugging Face causal LM with its tokenizer and chat template.

`LanguageModel` turns a conversation whose text holds `<image>` placeholders into token ids, a
mask of where image tokens go, and labels that cover the assistant's answers only (the loss
never trains the model to predict the user's words or the image). LoRA goes on through peft's
own `LoraConfig` / `get_peft_model`, and comes off through peft's own save format.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from .config import LMConfig
from .errors import VlkitError

IGNORE_INDEX = -100  # label value the loss skips


@dataclass
class Tokenized:
    input_ids: list[int]  # image positions hold the pad id; `image_mask` marks them
    image_mask: list[bool]
    labels: list[int]  # IGNORE_INDEX everywhere but the assistant's answer tokens
    text: str  # the rendered prompt, with the image placeholders in it


def resolve_dtype(name: str, device: torch.device | str | None = None) -> torch.dtype:
    if name == "auto":
        is_cuda = device is not None and torch.device(device).type == "cuda"
        return torch.bfloat16 if is_cuda else torch.float32
    return getattr(torch, name)


def _load_hf_lm(config: LMConfig, source: str, tokenizer_source: str):
    import transformers

    from .tiny import build_word_tokenizer

    if tokenizer_source == "words":
        tokenizer = build_word_tokenizer()
    else:
        tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_source or source)
    dtype = resolve_dtype(config.dtype)
    kwargs = {"attn_implementation": config.attn_implementation, "dtype": dtype}
    if source:
        model = transformers.AutoModelForCausalLM.from_pretrained(source, **kwargs)
    else:
        hf_config = transformers.AutoConfig.for_model(**config.hf_config)
        model = transformers.AutoModelForCausalLM.from_config(hf_config, **kwargs)
    return model, tokenizer


class LanguageModel(nn.Module):
    """A causal LM + tokenizer. Its weights are frozen; LoRA adapters (if added) train."""

    def __init__(
        self,
        config: LMConfig,
        model=None,
        tokenizer=None,
        source: str = "",
        tokenizer_source: str = "",
    ):
        super().__init__()
        self.config = config
        if model is None:
            model, tokenizer = _load_hf_lm(config, source, tokenizer_source)
        self.model = model
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:  # many LMs ship no pad token; any id works, it is masked
            tokenizer.pad_token = tokenizer.eos_token
        if tokenizer.chat_template is None:
            raise VlkitError(
                "this tokenizer has no chat template: use an instruct/chat model, or set "
                "tokenizer.chat_template before building the LanguageModel"
            )
        self.model.requires_grad_(False)
        self.hidden_size: int = self.model.config.hidden_size

    # ---- LoRA --------------------------------------------------------------------------
    @property
    def has_lora(self) -> bool:
        return hasattr(self.model, "peft_config")

    def add_lora(self, lora_config) -> None:
        """Wrap the LM with peft LoRA adapters (a `peft.LoraConfig`); only the adapters train."""
        from peft import get_peft_model

        if self.has_lora:
            raise VlkitError(
                "this LM already has LoRA adapters; build a fresh model to add new ones"
            )
        with quiet_peft():
            self.model = get_peft_model(self.model, lora_config)

    def lora_settings(self) -> dict | None:
        """The adapter's rank, alpha and target modules (sorted), or None without LoRA."""
        if not self.has_lora:
            return None
        config = self.model.peft_config["default"]
        return {
            "r": config.r,
            "alpha": config.lora_alpha,
            "targets": sorted(config.target_modules),
        }

    def base_model(self) -> nn.Module:
        """The Hugging Face model underneath any peft wrapper."""
        return self.model.get_base_model() if self.has_lora else self.model

    # ---- embeddings and forward -------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(input_ids)  # (B, L, D)

    def forward(self, **kwargs):
        return self.model(**kwargs)

    @property
    def eos_token_ids(self) -> set[int]:
        ids = set()
        eos = (
            self.base_model().generation_config.eos_token_id
            if self.base_model().generation_config
            else None
        )
        for value in (eos, self.tokenizer.eos_token_id):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(value)
        return ids

    # ---- text in ------------------------------------------------------------------------
    def _render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def with_system_prompt(self, messages: list[dict]) -> list[dict]:
        if self.config.system_prompt and (not messages or messages[0]["role"] != "system"):
            return [{"role": "system", "content": self.config.system_prompt}, *messages]
        return messages

    def _answer_spans(self, messages: list[dict], full: str) -> list[tuple[int, int]]:
        """Character spans of the assistant turns (answer text + end-of-turn marker) in `full`.

        Rendering the conversation up to each answer, with and without it, gives exact spans for any
        template that renders a prefix of a chat as a prefix of the whole (all common ones do).
        """
        spans, cursor = [], 0
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = self._render(messages[:i], add_generation_prompt=True)
            upto = self._render(messages[: i + 1], add_generation_prompt=False)
            if full.startswith(upto) and upto.startswith(before):
                spans.append((len(before), len(upto)))
            else:  # fall back to finding the answer text itself
                start = full.find(message["content"], cursor)
                if start < 0:
                    raise VlkitError(
                        "could not locate an assistant answer in the rendered chat template"
                    )
                spans.append((start, start + len(message["content"])))
            cursor = spans[-1][1]
        return spans

    def tokenize(
        self,
        messages: list[dict],
        image_token_counts: list[int],
        image_token: str = "<image>",
        add_generation_prompt: bool = False,
    ) -> Tokenized:
        """Render `messages` with the chat template and tokenize, expanding each `<image>`.

        The i-th placeholder becomes `image_token_counts[i]` image positions. Labels keep the
        assistant turns only, so the loss is on answers.
        """
        messages = self.with_system_prompt(messages)
        full = self._render(messages, add_generation_prompt)
        pieces = full.split(image_token)
        if len(pieces) - 1 != len(image_token_counts):
            raise VlkitError(
                f"the prompt has {len(pieces) - 1} {image_token} placeholder(s) but "
                f"{len(image_token_counts)} image(s) were given: put one {image_token} in the text "
                "for each image"
            )
        spans = self._answer_spans(messages, full) if not add_generation_prompt else []
        pad = self.tokenizer.pad_token_id
        ids, mask, labels = [], [], []
        offset = 0
        for i, piece in enumerate(pieces):
            enc = self.tokenizer(piece, add_special_tokens=False, return_offsets_mapping=True)
            for tid, (s, _e) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
                ids.append(tid)
                mask.append(False)
                pos = offset + s
                labels.append(tid if any(a <= pos < b for a, b in spans) else IGNORE_INDEX)
            offset += len(piece) + len(image_token)
            if i < len(image_token_counts):
                n = image_token_counts[i]
                ids += [pad] * n
                mask += [True] * n
                labels += [IGNORE_INDEX] * n
        if len(ids) > self.config.max_length:
            raise VlkitError(
                f"the prompt is {len(ids)} tokens (images included), over max_length="
                f"{self.config.max_length}: use fewer or lower-detail images or a shorter text"
            )
        return Tokenized(ids, mask, labels, full)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


@contextmanager
def quiet_peft():
    """peft reads `is_gradient_checkpointing`, which transformers 5 deprecates with a FutureWarning
    on every wrap; the warning is about peft's code, not the user's, so keep it out of notebooks."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
        )
        yield
