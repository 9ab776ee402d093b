"""Tests for the captioned photo set (data/photos/captions.jsonl) and vlkit.photos.

Every record must be well formed, the split must be the documented hash of its group, and every
image must load from its package as a sensible RGB picture (about 4 s for all of them).
"""

import collections
import hashlib
import importlib.util
import json

import pytest
from PIL import Image

from vlkit.errors import VlkitError
from vlkit.photos import PHOTOS_DIR, MissingPackageError, load_photo, load_photo_records

JSONL = PHOTOS_DIR / "captions.jsonl"
FIELDS = {"id", "source", "loader", "licence", "split", "group", "caption", "qa", "kind"}
KINDS = {"photo", "medical", "texture", "synthetic"}
SOURCES = {"scikit-image", "scikit-learn", "matplotlib", "mvtb-data"}
IMPORTS = {
    "scikit-image": "skimage",
    "scikit-learn": "sklearn",
    "matplotlib": "matplotlib",
    "mvtb-data": "mvtbdata",
}
SALT = "vlkit-photos-v7:"  # documented in data/photos/README.md

RECORDS = load_photo_records()


def expected_split(group):
    return (
        "test" if int(hashlib.sha256((SALT + group).encode()).hexdigest(), 16) % 5 == 0 else "train"
    )


def test_every_line_is_a_json_object():
    lines = [line for line in JSONL.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert all(isinstance(json.loads(line), dict) for line in lines)
    assert len(lines) == len(RECORDS)


def test_at_least_100_records_with_unique_ids():
    assert len(RECORDS) >= 100
    ids = [r["id"] for r in RECORDS]
    assert len(set(ids)) == len(ids), [i for i, n in collections.Counter(ids).items() if n > 1]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r["id"])
def test_record_is_well_formed(record):
    assert set(record) == FIELDS
    assert record["kind"] in KINDS
    package, version = record["source"].split()
    assert package in SOURCES and version[0].isdigit()
    assert record["split"] in ("train", "test")
    for field in ("loader", "licence", "caption"):
        assert isinstance(record[field], str) and record[field].strip()
    assert 2 <= len(record["qa"]) <= 3
    for pair in record["qa"]:
        assert set(pair) == {"q", "a"}
        assert pair["q"].endswith("?")
        assert 0 < len(pair["a"].split()) <= 5, "answers are short and exact"


def test_split_is_the_documented_hash_of_the_group():
    for record in RECORDS:
        assert record["split"] == expected_split(record["group"]), record["id"]
    groups = collections.defaultdict(set)
    for record in RECORDS:
        groups[record["group"]].add(record["split"])
    assert all(len(splits) == 1 for splits in groups.values()), "near-duplicates split apart"
    share = sum(r["split"] == "test" for r in RECORDS) / len(RECORDS)
    assert 0.15 <= share <= 0.25, share


def test_split_filter():
    train, test = load_photo_records("train"), load_photo_records("test")
    assert len(train) + len(test) == len(RECORDS)
    assert {r["split"] for r in test} == {"test"}
    with pytest.raises(VlkitError, match="split"):
        load_photo_records("validation")


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r["id"])
def test_image_loads_as_rgb(record):
    package = record["source"].split()[0]
    if importlib.util.find_spec(IMPORTS[package]) is None:
        pytest.skip(
            f"{package} is not installed (it is in vlkit's dev extra: pip install {package})"
        )
    image = load_photo(record)
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    assert 32 <= min(image.size) and max(image.size) <= 4096, image.size
    assert image.getextrema() != ((0, 0), (0, 0), (0, 0)), "image is all black"


def test_load_photo_by_id():
    assert load_photo("skimage-coffee").size == (600, 400)
    with pytest.raises(VlkitError, match="no photo record"):
        load_photo("no-such-photo")


def test_missing_package_names_the_pip_install():
    record = dict(RECORDS[0], source="mvtb-data 1.6.1")
    import sys

    saved = sys.modules.get("mvtbdata")
    sys.modules["mvtbdata"] = None  # makes `import mvtbdata` raise ImportError
    try:
        with pytest.raises(MissingPackageError, match="pip install mvtb-data"):
            load_photo(record)
    finally:
        if saved is None:
            del sys.modules["mvtbdata"]
        else:
            sys.modules["mvtbdata"] = saved


def test_unknown_loader_is_refused():
    record = dict(RECORDS[0], loader="__import__('os').system('true')")
    with pytest.raises(VlkitError, match="not one vlkit.photos understands"):
        load_photo(record)
