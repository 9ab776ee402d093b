"""Data helpers for `LoRAFineTune`, without widgets: a train/val split that keeps each image's
examples together, and unpacking an uploaded zip safely (no zip slip, no links, a size limit).
"""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path

from vlkit.errors import VlkitError

MAX_ZIP_BYTES = 2 << 30  # uncompressed size refused above this (a zip bomb guard)


class Subset(Sequence):
    """Some examples of a data set, by index (a train/val split), with a name for the trainer."""

    def __init__(self, data, indices, name: str):
        self.data, self.indices, self.name = data, list(indices), name

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        return self.data[self.indices[index]]


def _group_key(data, i: int):
    """Examples of one image belong together (kind "both" makes two per image): split by image."""
    rows = getattr(data, "rows", None)
    if rows is not None:  # HFDataset: a row is one image
        return ("row", rows[i])
    examples = getattr(data, "examples", None)
    if examples is not None:
        images = examples[i].get("images", [])
        if images and all(isinstance(x, (str, os.PathLike)) for x in images):
            return tuple(str(x) for x in images)
    return ("index", i)


def split_data(data, val_fraction: float, seed: int = 0):
    """(train, val) with about `val_fraction` of the images held out (val None when 0)."""
    import numpy as np

    name = getattr(data, "name", "data")
    if not 0 <= val_fraction < 1:
        raise VlkitError(f"val fraction {val_fraction}: use a number in [0, 1), e.g. 0.1")
    groups: dict = {}
    for i in range(len(data)):
        groups.setdefault(_group_key(data, i), []).append(i)
    keys = list(groups)
    n_val = int(round(len(keys) * val_fraction))
    if val_fraction > 0 and len(keys) >= 2:
        n_val = min(max(n_val, 1), len(keys) - 1)
    if n_val == 0:
        return data, None
    order = np.random.default_rng(seed).permutation(len(keys))
    val_keys = {keys[k] for k in order[:n_val]}
    train = [i for k in keys if k not in val_keys for i in groups[k]]
    val = [i for k in keys if k in val_keys for i in groups[k]]
    return Subset(data, sorted(train), f"{name}:train"), Subset(data, sorted(val), f"{name}:val")


def extract_zip(content: bytes, dest: str | os.PathLike, max_bytes: int = MAX_ZIP_BYTES) -> Path:
    """Unpack a zip into `dest`, refusing entries that would land outside it (zip slip), links,
    and archives over `max_bytes` uncompressed; return the folder that holds the data."""
    root = Path(dest).resolve()
    root.mkdir(parents=True, exist_ok=True)
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
    except zipfile.BadZipFile as exc:
        raise VlkitError(
            f"the upload is not a zip file ({exc}): zip the data folder and retry"
        ) from exc
    with archive:
        infos = [i for i in archive.infolist() if not i.filename.startswith("__MACOSX/")]
        total = sum(i.file_size for i in infos)
        if total > max_bytes:
            raise VlkitError(
                f"the zip unpacks to {total / 2**30:.1f} GB, over the {max_bytes / 2**30:.1f} GB "
                "limit: put the data in a folder and give its path instead"
            )
        targets = []
        for info in infos:  # check every entry before writing any
            name = info.filename.replace("\\", "/")
            target = (root / name).resolve()
            if name.startswith("/") or (target != root and root not in target.parents):
                raise VlkitError(
                    f"the zip entry {info.filename!r} would be written outside the folder it is "
                    "unpacked into (a 'zip slip'), so nothing was unpacked: zip the data folder "
                    "itself, with paths relative to it"
                )
            if (info.external_attr >> 16) & 0o170000 != 0o120000:  # links are never created
                targets.append((info, target))
        for info, target in targets:
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return _data_root(root)


def _data_root(folder: Path) -> Path:
    """The folder (or file) inside an unpacked zip that load_data should read."""
    from vlkit.formats import FOLDER_FILES, SAVED_FILES

    for _ in range(4):  # zips often wrap everything in one top folder
        if any((folder / n).is_file() for n in FOLDER_FILES + SAVED_FILES):
            return folder
        entries = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        jsons = [p for p in entries if p.is_file() and p.suffix.lower() in (".json", ".jsonl")]
        if len(jsons) == 1:
            return jsons[0]
        dirs = [p for p in entries if p.is_dir()]
        if len(dirs) == 1 and len(entries) == 1:
            folder = dirs[0]
            continue
        break
    return folder


def first_turn(example: dict, image_token: str = "<image>"):
    """(chat up to the first answer, its images, the question, the reference answer) or None."""
    conv = example["conversation"]
    k = next((i for i, m in enumerate(conv) if m["role"] == "assistant"), None)
    if k is None:
        return None
    prompt = conv[:k]
    n_images = sum(str(m["content"]).count(image_token) for m in prompt)
    question = str(prompt[-1]["content"]).replace(image_token, "").strip()
    return prompt, list(example.get("images", []))[:n_images], question, str(conv[k]["content"])
