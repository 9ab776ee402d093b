"""Captioned photos that ship inside Python packages, for offline captioning and VQA examples.

`data/photos/captions.jsonl` holds one record per image: a caption and 2-3 short question-answer
pairs written by looking at the image, the package and exact call it is loaded with, the licence
the package documents for it, and a fixed train/test split. The pixels are never copied into
this repository: `load_photo` loads them from scikit-image, scikit-learn, matplotlib or mvtb-data
at run time (all four are in the `notebooks` and `dev` extras).

    from vlkit.photos import load_photo, load_photo_records
    record = load_photo_records("test")[0]
    image = load_photo(record)                # an RGB PIL image
    record["caption"], record["qa"]
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from PIL import Image

from vlkit.errors import VlkitError
from vlkit.images import load_image

__all__ = ["MissingPackageError", "PHOTOS_DIR", "load_photo", "load_photo_records"]

PHOTOS_DIR = Path(__file__).resolve().parent.parent / "data" / "photos"
SPLITS = ("train", "test")

# pip distribution name -> import name, for the packages the loaders use
_IMPORT_NAMES = {
    "scikit-image": "skimage",
    "scikit-learn": "sklearn",
    "matplotlib": "matplotlib",
    "mvtb-data": "mvtbdata",
}

# The loader strings are parsed, never evaluated: only these shapes are accepted.
_SKIMAGE = re.compile(r"skimage\.data\.([a-z][a-z0-9_]*)\(\)(?:\[(\d+)\])?")
_SKLEARN = re.compile(r"sklearn\.datasets\.load_sample_images\(\)\.images\[(\d+)\]\s*#\s*(\S+)")
_MPL_FILE = re.compile(r'PIL\.Image\.open\(matplotlib\.cbook\.get_sample_data\("([^"]+)"\)\)')
_MPL_RAW = re.compile(
    r'numpy\.frombuffer\(matplotlib\.cbook\.get_sample_data\("([^"]+)"\)\.read\(\), '
    r"numpy\.uint16\)\.reshape\((\d+), (\d+)\)"
)
_MVTB = re.compile(r'PIL\.Image\.open\(importlib\.resources\.files\("mvtbdata"\) / "([^"]+)"\)')


class MissingPackageError(VlkitError, ImportError):
    """The package an image ships in is not installed; the message says what to pip install."""


def load_photo_records(split: str | None = None) -> list[dict]:
    """Return the caption records, all of them or only the "train" or "test" split."""
    if split is not None and split not in SPLITS:
        raise VlkitError(f"split must be None, 'train' or 'test', not {split!r}")
    path = PHOTOS_DIR / "captions.jsonl"
    if not path.is_file():
        raise VlkitError(
            f"{path} is missing: the photo captions ship with the vlkit source checkout "
            "(data/photos), not with an installed wheel; run from a clone of the repository"
        )
    records = []
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise VlkitError(f"{path}, line {number} is not valid JSON: {exc}") from exc
    return [r for r in records if split is None or r["split"] == split]


def load_photo(record: dict | str) -> Image.Image:
    """Load the image a record (or a record id) describes, as an RGB PIL image."""
    if isinstance(record, str):
        matches = [r for r in load_photo_records() if r["id"] == record]
        if not matches:
            raise VlkitError(f"no photo record has the id {record!r}: see load_photo_records()")
        record = matches[0]
    loader, source = record["loader"].strip(), record["source"]
    package = _import(source.split()[0], source, record["id"])

    if m := _SKIMAGE.fullmatch(loader):
        name, index = m.group(1), m.group(2)
        if name == "download_all" or not callable(getattr(package.data, name, None)):
            raise VlkitError(f"{record['id']}: skimage.data has no image loader {name!r}")
        data = getattr(package.data, name)()
        return load_image(data[int(index)] if index is not None else data)
    if m := _SKLEARN.fullmatch(loader):
        sample = importlib.import_module("sklearn.datasets").load_sample_images()
        names = [Path(f).name for f in sample.filenames]
        # Prefer the file name over the index, in case a later release reorders the images.
        index = names.index(m.group(2)) if m.group(2) in names else int(m.group(1))
        return load_image(sample.images[index])
    if m := _MPL_FILE.fullmatch(loader):
        cbook = importlib.import_module("matplotlib.cbook")
        return load_image(Path(cbook.get_sample_data(m.group(1), asfileobj=False)))
    if m := _MPL_RAW.fullmatch(loader):
        import numpy as np

        cbook = importlib.import_module("matplotlib.cbook")
        with cbook.get_sample_data(m.group(1)) as file:
            raw = np.frombuffer(file.read(), np.uint16)
        return load_image(raw.reshape(int(m.group(2)), int(m.group(3))))
    if m := _MVTB.fullmatch(loader):
        root = Path(package.__file__).resolve().parent
        path = (root / m.group(1)).resolve()
        if root not in path.parents:
            raise VlkitError(f"{record['id']}: {m.group(1)!r} points outside the mvtbdata package")
        return load_image(path)
    raise VlkitError(f"{record['id']}: the loader {loader!r} is not one vlkit.photos understands")


def _import(distribution: str, source: str, record_id: str):
    module = _IMPORT_NAMES.get(distribution)
    if module is None:
        raise VlkitError(f"{record_id}: unknown source package {source!r}")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingPackageError(
            f"{record_id} ships inside {distribution}, which is not installed: "
            f"pip install {distribution} (or pip install 'vlkit[notebooks]'); "
            f"the captions were written against {source}"
        ) from exc
