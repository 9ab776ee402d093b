"""Encode each image once: a cache of a frozen encoder's patch features.

While the encoder is frozen (the align and instruct stages) an image's patch features never
change, so the trainer computes them once and reuses them every epoch; only the projector and the
LM run at each step. A view is keyed by a hash of exactly what the encoder sees (the preprocessed
pixel tensor, so the detail level and tile index are part of the key) plus a fingerprint of the
encoder (its config and its weights), so two encoders never share an entry. Entries live in
memory, in an LRU bounded by bytes, and optionally on disk as one safetensors file per view, which
also survives restarts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import weakref
from collections import OrderedDict
from pathlib import Path

import torch

from .errors import VlkitError


def encoder_fingerprint(encoder) -> str:
    """A hash of the encoder's config and weights: the same features come from the same hash.

    Hashing the weights (about 0.1 s per 100 MB) also tells apart random-init encoders that
    share a config but not a seed.
    """
    h = hashlib.blake2b(digest_size=16)
    config = dataclasses.asdict(encoder.config)
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in encoder.model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class FeatureCache:
    """Patch features (N, D) per encoder view, in memory (LRU, `max_bytes`) and on disk (`folder`)."""

    def __init__(self, max_bytes: int = 1 << 30, folder: str | os.PathLike | None = None):
        self.max_bytes = max_bytes
        self.folder = Path(folder) if folder else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._fingerprints: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.bytes = 0  # held in memory
        self.hits = 0
        self.misses = 0  # views that went through the encoder

    def __len__(self) -> int:
        return len(self._memory)

    def clear(self) -> None:
        """Forget the in-memory entries (files on disk stay)."""
        self._memory.clear()
        self.bytes = 0

    # ---- lookup --------------------------------------------------------------------------
    def encode(self, encoder, pixel_values: torch.Tensor) -> torch.Tensor:
        """(V, 3, S, S) views -> (V, N_patches, D_enc) features, running the encoder on misses only."""
        if not encoder.config.frozen:
            raise VlkitError(
                "the feature cache needs a frozen encoder (a training encoder's features change "
                "every step): set EncoderConfig.frozen=True or train without the cache"
            )
        if encoder not in self._fingerprints:
            self._fingerprints[encoder] = encoder_fingerprint(encoder)
        prefix = self._fingerprints[encoder].encode()
        views = pixel_values.detach().to("cpu", torch.float32).contiguous()  # (V, 3, S, S)
        keys = [_view_key(prefix, view) for view in views]
        found: dict[str, torch.Tensor] = {}
        for key in keys:
            if key not in found and (features := self._get(key)) is not None:
                found[key] = features
        missing = list(dict.fromkeys(k for k in keys if k not in found))  # each distinct view once
        self.hits += len(keys) - len(missing)
        if missing:
            rows = [keys.index(k) for k in missing]
            with torch.no_grad():
                out = encoder(pixel_values[rows]).features  # (M, N_patches, D_enc)
            for key, features in zip(missing, out, strict=True):
                found[key] = features.detach().to("cpu").clone()  # clone: own memory, not a view
                self._put(key, found[key])
            self.misses += len(missing)
        device = next(encoder.model.parameters()).device
        return torch.stack([found[k] for k in keys]).to(device)  # (V, N_patches, D_enc)

    # ---- storage -------------------------------------------------------------------------
    def _get(self, key: str) -> torch.Tensor | None:
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        if self.folder is not None and (file := self.folder / f"{key}.safetensors").is_file():
            from safetensors.torch import load_file

            features = load_file(file)["features"]
            self._remember(key, features)
            return features
        return None

    def _put(self, key: str, features: torch.Tensor) -> None:
        self._remember(key, features)
        if self.folder is not None:
            from safetensors.torch import save_file

            # Written beside the target and renamed, so a reader never sees half a file.
            tmp = self.folder / f".{key}.{os.getpid()}.tmp"
            save_file({"features": features.contiguous()}, tmp)
            os.replace(tmp, self.folder / f"{key}.safetensors")

    def _remember(self, key: str, features: torch.Tensor) -> None:
        size = features.numel() * features.element_size()
        if size > self.max_bytes:
            return
        self._memory[key] = features
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, old = self._memory.popitem(last=False)  # least recently used
            self.bytes -= old.numel() * old.element_size()


def _view_key(prefix: bytes, view: torch.Tensor) -> str:
    h = hashlib.blake2b(prefix, digest_size=16)
    h.update(str(tuple(view.shape)).encode())
    h.update(view.numpy().tobytes())
    return h.hexdigest()
