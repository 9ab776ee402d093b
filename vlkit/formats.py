"""Training data from files: LLaVA-style conversation JSON, an image folder with captions
(captions.jsonl / CSV), and Hugging Face `datasets` data sets with an image column.

`load_data(source)` picks the format from what `source` is; every loader returns a
`ConversationDataset` of `{"conversation", "images"}` examples, checked up front (a missing image
or a malformed record is reported by file and record before training starts), so all formats go
through the model's one collate (`VisionLanguageModel.prepare`) with its chat template and
answer-only loss mask. `vlkit.preview` shows an example as the model sees it.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

from .datasets import SHAPES_KINDS, ConversationDataset, photo_conversation
from .errors import VlkitError

IMAGE_TOKEN = "<image>"
LLAVA_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
FOLDER_FILES = ("captions.jsonl", "captions.csv", "metadata.csv", "metadata.jsonl")
SAVED_FILES = ("dataset_info.json", "state.json", "dataset_dict.json")  # what save_to_disk writes
COLUMN_ARGS = (
    "image_column",
    "caption_column",
    "question_column",
    "answer_column",
    "qa_column",
    "conversations_column",
)
FORMATS = (
    "a LLaVA conversation file (.json or .jsonl), a folder of images with "
    f"{' / '.join(FOLDER_FILES)}, a folder written by datasets' save_to_disk, a datasets.Dataset, "
    "or a Hugging Face hub name"
)


def load_data(
    source,
    kind: str = "caption",
    split: str = "train",
    image_folder: str | os.PathLike | None = None,
    **columns,
) -> ConversationDataset:
    """Read training data in any format vlkit knows, picking the format from what `source` is.

    - a `.json` / `.jsonl` file: LLaVA conversations (`load_llava`); a `captions.jsonl`,
      `metadata.jsonl` or `.csv` file: a caption file (`load_caption_folder`);
    - a folder holding captions.jsonl, captions.csv, metadata.csv or metadata.jsonl: a folder of
      captioned images; a folder written by `save_to_disk`: a Hugging Face data set;
    - a `datasets.Dataset` / `DatasetDict`, or a name that is no local path: a Hugging Face data
      set (`load_hf_dataset`; a name is fetched from the hub).

    `kind` ("caption", "qa" or "both", as for `ShapesDataset`) applies to caption data; LLaVA
    conversations keep their own turns. `split` picks a split of a Hugging Face data set.
    `image_folder` is where relative image paths start (default: the caption or JSON file's
    folder; for a Hugging Face data set of paths, the working folder). `columns` name the columns or fields to read: image_column, caption_column,
    question_column, answer_column, qa_column, conversations_column.
    """
    unknown = sorted(set(columns) - set(COLUMN_ARGS))
    if unknown:
        raise VlkitError(
            f"unknown argument(s) {', '.join(unknown)}: load_data takes the column names "
            f"{', '.join(COLUMN_ARGS)}"
        )
    _check_kind(kind)
    if _is_hf_dataset(source):
        return load_hf_dataset(source, kind, split, image_folder, **columns)
    if not isinstance(source, (str, os.PathLike)):
        raise VlkitError(f"load_data got a {type(source).__name__}: give {FORMATS}")
    path = Path(source).expanduser()
    if path.is_file():
        if path.name in FOLDER_FILES or path.suffix.lower() == ".csv":
            return load_caption_folder(path, kind, image_folder, **columns)
        if path.suffix.lower() in (".json", ".jsonl"):
            if columns:
                raise VlkitError(
                    f"{path} is read as LLaVA conversations, which have fixed field names: "
                    f"drop {', '.join(columns)}"
                )
            return load_llava(path, image_folder)
        raise VlkitError(f"{path}: load_data cannot tell its format from the name; give {FORMATS}")
    if path.is_dir():
        if any((path / name).is_file() for name in FOLDER_FILES):
            return load_caption_folder(path, kind, image_folder, **columns)
        if any((path / name).is_file() for name in SAVED_FILES):
            return load_hf_dataset(path, kind, split, image_folder, **columns)
        raise VlkitError(
            f"the folder {path} holds none of {', '.join(FOLDER_FILES + SAVED_FILES)}: add a "
            "captions.jsonl (one {'file_name': ..., 'caption': ...} per line) or pass the "
            "LLaVA .json file itself"
        )
    if not isinstance(source, str) or _looks_like_path(source):
        raise VlkitError(f"{source}: no such file or folder (load_data reads {FORMATS})")
    return load_hf_dataset(str(source), kind, split, image_folder, **columns)


def _check_kind(kind: str) -> None:
    if kind not in SHAPES_KINDS:
        raise VlkitError(f"kind={kind!r}: use one of {', '.join(SHAPES_KINDS)}")


def _looks_like_path(text: str) -> bool:
    """A hub name is `name` or `owner/name`; anything else that does not exist is a missing path."""
    return (
        text.startswith((".", "/", "~"))
        or "\\" in text
        or text.count("/") > 1
        or Path(text).suffix.lower() in (".json", ".jsonl", ".csv")
    )


def _image_folder(image_folder, default: Path) -> Path:
    """Where relative image paths start, as an absolute path (so a later chdir changes nothing)."""
    if image_folder is None:
        return default.absolute()
    folder = Path(image_folder).expanduser().absolute()
    if not folder.is_dir():
        raise VlkitError(f"image_folder={str(image_folder)!r} is not a folder")
    return folder


def _resolve(folder: Path, name: str) -> str:
    path = Path(name).expanduser()
    return str(path if path.is_absolute() else folder / path)


def _check_images_exist(images: list[tuple[str, str]], folder: Path | None) -> None:
    """Raise one error listing the first missing images of (where, path) pairs, if any are."""
    missing = [(where, path) for where, path in images if not os.path.isfile(path)]
    if not missing:
        return
    shown = "; ".join(f"{path} ({where})" for where, path in missing[:3])
    start = f"relative paths are read from {folder}: " if folder is not None else ""
    raise VlkitError(
        f"{len(missing)} of {len(images)} images are missing: {shown}"
        + (" ..." if len(missing) > 3 else "")
        + f". {start}pass image_folder= the folder the images are in, or fix the paths"
    )


def _llava_conversation(turns, n_images: int, where: str) -> list[dict]:
    """LLaVA's `conversations` ({"from", "value"} turns) as vlkit messages with one `<image>` each.

    Like LLaVA's own loader, a record with images but no placeholder gets them at the start of
    its first user turn."""
    if isinstance(turns, dict) and all(isinstance(v, list) for v in turns.values()):
        # datasets 3 gives a list of dicts column as a dict of lists
        columns = list(turns.values())
        turns = [dict(zip(turns, values, strict=True)) for values in zip(*columns, strict=True)]
    if not isinstance(turns, list) or not turns:
        raise VlkitError(
            f"{where}: 'conversations' must be a non-empty list of turns like "
            "{'from': 'human', 'value': '<image>\\nWhat is this?'}"
        )
    messages = []
    for j, turn in enumerate(turns):
        speaker = turn.get("from", turn.get("role")) if isinstance(turn, dict) else None
        text = turn.get("value", turn.get("content")) if isinstance(turn, dict) else None
        role = LLAVA_ROLES.get(str(speaker).lower())
        if role is None or not isinstance(text, str):
            raise VlkitError(
                f"{where}, turn {j}: {turn!r:.80} is not a turn vlkit reads: give "
                "{'from': 'human' | 'gpt' | 'system', 'value': text}"
            )
        messages.append({"role": role, "content": text})
    if not any(m["role"] == "assistant" for m in messages):
        raise VlkitError(
            f"{where} has no 'gpt' turn, so there is nothing to learn: add the answer as "
            "{'from': 'gpt', 'value': ...} or leave the record out"
        )
    placeholders = sum(m["content"].count(IMAGE_TOKEN) for m in messages)
    if placeholders == 0 and n_images:
        first_user = next((m for m in messages if m["role"] == "user"), None)
        if first_user is None:
            raise VlkitError(f"{where} has images but no 'human' turn to put them in")
        first_user["content"] = f"{IMAGE_TOKEN}\n" * n_images + first_user["content"]
    elif placeholders != n_images:
        raise VlkitError(
            f"{where} has {placeholders} {IMAGE_TOKEN} placeholder(s) but {n_images} image(s): "
            f"put one {IMAGE_TOKEN} in the text per image (or none, to have them all put first)"
        )
    return messages


def _read_json_records(path: Path) -> list[tuple[str, object]]:
    """The records of a .json list or a .jsonl file, each with where it came from."""
    if not path.is_file():
        raise VlkitError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise VlkitError(f"{path} is not UTF-8 text ({exc}): save it as UTF-8 JSON") from exc
    if path.suffix.lower() == ".jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append((f"{path} line {number}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise VlkitError(
                    f"{path} line {number} is not valid JSON ({exc.msg}, column {exc.colno}): a "
                    ".jsonl file holds one JSON object per line; fix or remove that line"
                ) from exc
        return records
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = (
            " (it looks like one record per line: rename it to .jsonl)"
            if exc.msg == "Extra data"
            else ""
        )
        raise VlkitError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}{hint}"
        ) from exc
    if not isinstance(data, list):
        raise VlkitError(
            f"{path} holds a JSON {type(data).__name__}, not a list of records: LLaVA data is "
            '[{"id": ..., "image": ..., "conversations": [...]}, ...]'
        )
    return [(f"record {i} of {path}", record) for i, record in enumerate(data)]


def load_llava(
    path: str | os.PathLike, image_folder: str | os.PathLike | None = None
) -> ConversationDataset:
    """LLaVA-style conversations: a .json list or a .jsonl file of records like

        {"id": "0001", "image": "coco/0001.jpg",
         "conversations": [{"from": "human", "value": "<image>\\nWhat is on the table?"},
                           {"from": "gpt", "value": "A cup of coffee."}]}

    "image" may be one path or a list (also accepted as "images"); records without one are
    text-only. Image paths are relative to `image_folder` (default: the file's folder) and must
    all exist; they stay paths until an example is used.
    """
    path = Path(path).expanduser()
    folder = _image_folder(image_folder, path.parent)
    examples, images = [], []
    for where, record in _read_json_records(path):
        if not isinstance(record, dict):
            raise VlkitError(f"{where} is a {type(record).__name__}, not a JSON object")
        if "id" in record:
            where = f"{where} (id {record['id']!r})"
        if "conversations" not in record:
            raise VlkitError(
                f"{where} has no 'conversations': each record needs 'conversations': "
                "[{'from': 'human', 'value': ...}, {'from': 'gpt', 'value': ...}]"
            )
        names = record.get("image", record.get("images"))
        names = [] if names is None else [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise VlkitError(f"{where}: 'image' must be a path or a list of paths")
        conversation = _llava_conversation(record["conversations"], len(names), where)
        paths = [_resolve(folder, name) for name in names]
        images += [(where, p) for p in paths]
        examples.append({"conversation": conversation, "images": paths})
    if not examples:
        raise VlkitError(f"{path} holds no records")
    _check_images_exist(images, folder)
    return ConversationDataset(examples, name=f"llava:{path.name}")


def _caption_conversations(record: dict, kind: str, where: str) -> list[list[dict]]:
    """The conversations one captioned image gives: its caption, its QAs, or both (in that order).

    `record` holds "caption" (str or None) and "qa" (a list of {"q", "a"}). kind "both" takes
    whichever the record has; "caption" and "qa" need theirs."""
    has = {"caption": bool(record["caption"]), "qa": bool(record["qa"])}
    wanted = ["caption", "qa"] if kind == "both" else [kind]
    if kind != "both" and not has[kind]:
        other = "qa" if kind == "caption" else "caption"
        need = "a caption" if kind == "caption" else "a question and answer"
        raise VlkitError(
            f"{where} has no {need} for kind={kind!r}: add one"
            + (f", or load with kind={other!r}" if has[other] else "")
        )
    if not any(has.values()):
        raise VlkitError(f"{where} has neither a caption nor a question and answer")
    return [photo_conversation(record, k, IMAGE_TOKEN) for k in wanted if has[k]]


def _qa_pairs(value, where: str) -> list[dict]:
    """A `qa` list ({"q", "a"} or {"question", "answer"} items) as {"q", "a"} dicts."""
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise VlkitError(f"{where}: 'qa' must be a list of {{'q': ..., 'a': ...}}")
    pairs = []
    for item in value:
        q = item.get("q", item.get("question")) if isinstance(item, dict) else None
        a = item.get("a", item.get("answer")) if isinstance(item, dict) else None
        if not (isinstance(q, str) and q and isinstance(a, str) and a):
            raise VlkitError(
                f"{where}: qa item {item!r:.80} needs a question and an answer: {{'q': ..., 'a': ...}}"
            )
        pairs.append({"q": q, "a": a})
    return pairs


def _caption_record(row: dict, names: dict, where: str) -> dict:
    """A caption-file row as {"caption", "qa"}, with `names` mapping field -> column."""
    caption = row.get(names["caption"]) or None
    if caption is not None and not isinstance(caption, str):
        raise VlkitError(f"{where}: {names['caption']!r} must be text, not {caption!r:.60}")
    qa = _qa_pairs(row.get(names["qa"]), where)
    question, answer = row.get(names["question"]) or None, row.get(names["answer"]) or None
    if (question is None) != (answer is None):
        raise VlkitError(f"{where} has a {'question' if question else 'answer'} without the other")
    if question is not None:
        qa.append({"q": str(question), "a": str(answer)})
    return {"caption": caption, "qa": qa}


def load_caption_folder(
    folder: str | os.PathLike,
    kind: str = "caption",
    image_folder: str | os.PathLike | None = None,
    **columns,
) -> ConversationDataset:
    """A folder of images with a caption file: captions.jsonl, captions.csv, metadata.csv or
    metadata.jsonl (the first found), or that file itself.

    Each line or row names one image ("file_name" or "image") with a "caption", and optionally
    "question"/"answer" or, in JSON, a "qa" list of {"q", "a"}. kind "caption" asks
    "Describe the image." and learns the caption; "qa" asks the questions as turns; "both" gives
    each image twice (caption, then QAs), like `ShapesDataset`. `columns` rename the fields
    (image_column, caption_column, question_column, answer_column, qa_column). Image paths are
    relative to `image_folder` (default: the caption file's folder) and must all exist.
    """
    _check_kind(kind)
    if columns.get("conversations_column"):
        raise VlkitError("caption files have no conversations: use load_llava for LLaVA data")
    folder = Path(folder).expanduser()
    if folder.is_file():
        file = folder
    else:
        file = next((folder / n for n in FOLDER_FILES if (folder / n).is_file()), None)
        if file is None:
            raise VlkitError(f"{folder} holds none of {', '.join(FOLDER_FILES)}")
    base = _image_folder(image_folder, file.parent)
    if file.suffix.lower() == ".csv":
        rows = _read_csv_rows(file)
    else:
        rows = _read_json_records(file)
    names = {
        "caption": columns.get("caption_column") or "caption",
        "question": columns.get("question_column") or "question",
        "answer": columns.get("answer_column") or "answer",
        "qa": columns.get("qa_column") or "qa",
    }
    image_key = columns.get("image_column")
    examples, images = [], []
    for where, row in rows:
        if not isinstance(row, dict):
            raise VlkitError(f"{where} is a {type(row).__name__}, not a JSON object")
        key = image_key or ("file_name" if row.get("file_name") else "image")
        name = row.get(key)
        if not isinstance(name, str) or not name:
            raise VlkitError(
                f"{where} names no image: give its path (relative to {base}) in 'file_name' or "
                "'image' (or say which field with image_column=)"
            )
        image = _resolve(base, name)
        images.append((where, image))
        record = _caption_record(row, names, where)
        for conversation in _caption_conversations(record, kind, where):
            examples.append({"conversation": conversation, "images": [image]})
    if not examples:
        raise VlkitError(f"{file} holds no records")
    _check_images_exist(images, base)
    return ConversationDataset(examples, name=f"folder:{file.parent.name}:{kind}")


def _read_csv_rows(path: Path) -> list[tuple[str, dict]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = [(f"{path} line {reader.line_num}", row) for row in reader]
            header = reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as exc:
        raise VlkitError(f"{path} could not be read as UTF-8 CSV ({exc}): fix the file") from exc
    if not header:
        raise VlkitError(f"{path} is empty: give a header row like file_name,caption")
    return rows


# ---- Hugging Face datasets ---------------------------------------------------------------------


def _import_datasets():
    try:
        import datasets
    except ImportError as exc:
        raise VlkitError(
            "reading Hugging Face data sets needs the `datasets` package: pip install datasets "
            "(it comes with vlkit[notebooks])"
        ) from exc
    return datasets


def _is_hf_dataset(source) -> bool:
    # Only an imported `datasets` can have made one, so this never imports it.
    module = sys.modules.get("datasets")
    kinds = ("Dataset", "DatasetDict", "IterableDataset", "IterableDatasetDict")
    return module is not None and isinstance(
        source, tuple(getattr(module, k) for k in kinds if hasattr(module, k))
    )


def _open_hf(datasets, source, split: str):
    """`source` (a Dataset, a DatasetDict, a save_to_disk folder or a hub name) as (Dataset, name)."""
    if isinstance(source, (str, os.PathLike)) and Path(source).expanduser().is_dir():
        folder = Path(source).expanduser()
        try:
            source = datasets.load_from_disk(str(folder))
        except (FileNotFoundError, OSError, ValueError) as exc:
            raise VlkitError(
                f"{folder} could not be read as a data set saved with save_to_disk ({exc}): "
                "save it again with dataset.save_to_disk(folder)"
            ) from exc
        name = folder.name
    elif isinstance(source, str):
        hub_name = source
        try:
            source = datasets.load_dataset(hub_name, split=split)
        except Exception as exc:  # no network, unknown name, gated data set: all end here
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise VlkitError(
                f"could not load {hub_name!r} from the Hugging Face hub ({type(exc).__name__}: "
                f"{first}); the hub may not be reachable from here, and there is no local file or "
                f"folder of that name either. To use it offline, on a machine with internet run "
                f"datasets.load_dataset({hub_name!r}, split={split!r}).save_to_disk('some_folder'), "
                "copy the folder here and call load_data('some_folder')"
            ) from exc
        name = f"{hub_name}:{split}"
    else:
        name = getattr(getattr(source, "info", None), "dataset_name", None) or "dataset"
    streaming = tuple(
        getattr(datasets, k)
        for k in ("IterableDataset", "IterableDatasetDict")
        if hasattr(datasets, k)
    )
    if isinstance(source, streaming):
        raise VlkitError(
            "streaming data sets are not supported (vlkit needs len() and random access): load "
            "it with streaming=False, or take a part with Dataset.from_list(list(stream.take(n)))"
        )
    if isinstance(source, datasets.DatasetDict):
        if split not in source:
            raise VlkitError(
                f"the data set {name!r} has no split {split!r}: use split= one of "
                f"{', '.join(source)}"
            )
        return source[split], f"{name}:{split}"
    if not isinstance(source, datasets.Dataset):
        raise VlkitError(f"a {type(source).__name__} is not a data set: give {FORMATS}")
    return source, name


def _image_feature(feature, datasets) -> tuple[str, bool] | None:
    """("image" | "path", is_list) for a column of images or of image paths, else None."""
    inner, is_list = feature, False
    if isinstance(feature, list) and len(feature) == 1:  # datasets 3 spells a list [feature]
        inner, is_list = feature[0], True
    elif hasattr(feature, "feature"):  # List / LargeList / Sequence
        inner, is_list = feature.feature, True
    if isinstance(inner, datasets.Image):
        return "image", is_list
    if getattr(inner, "dtype", None) in ("string", "large_string"):
        return "path", is_list
    return None


def _guess_image_column(features, datasets) -> str:
    for column, feature in features.items():
        if (_image_feature(feature, datasets) or ("",))[0] == "image":
            return column
    return "image"


def _hf_image_counts(table, column: str, form: str, is_list: bool, folder: Path, name: str):
    """How many images each row has (0 where the value is None); raise if an image stored only
    as a path is missing. Reads the column as Arrow in chunks: no image bytes reach Python."""
    import pyarrow.compute as pc

    counts: list[int] = []
    to_check: list[tuple[str, str]] = []
    arrow = table.select_columns([column]).with_format("arrow")
    step = 4096
    for start in range(0, len(table), step):
        values = arrow[start : start + step].column(0).combine_chunks()
        if is_list:
            counts += [n or 0 for n in pc.list_value_length(values).to_pylist()]
            rows = [start + i for i in pc.list_parent_indices(values).to_pylist()]
            values = values.flatten()
        else:
            rows = range(start, start + len(values))
            counts += [0 if null else 1 for null in values.is_null().to_pylist()]
        if form == "image":  # a struct of the encoded bytes and/or the file's path
            no_bytes = values.field("bytes").is_null().to_pylist()
            paths = values.field("path").to_pylist()
        else:
            no_bytes, paths = [True] * len(values), values.to_pylist()
        nulls = values.is_null().to_pylist()
        for row, null, only_path, path in zip(rows, nulls, no_bytes, paths, strict=True):
            where = f"row {row} of {name!r}"
            if null and is_list:
                raise VlkitError(f"{where}: an entry of the image list {column!r} is None")
            if null or not only_path:
                continue
            if not path:
                raise VlkitError(f"{where}: an image in {column!r} has neither bytes nor a path")
            to_check.append((where, _resolve(folder, path)))
    _check_images_exist(to_check, folder)
    return counts


class HFDataset(ConversationDataset):
    """Examples from a Hugging Face data set: conversations built and checked when loading,
    images read from the data set's image column only when their example is asked for.

    `examples` hold the conversations (no images); `rows[i]` is the data set row of example i.
    """

    def __init__(self, examples, rows, table, column: str, folder: Path, name: str):
        super().__init__(examples, name)
        self.rows, self.column, self.folder = rows, column, folder
        # Arrow rows give an Image column's stored bytes/path as they are; load_image decodes.
        self.arrow = table.select_columns([column]).with_format("arrow")

    def image(self, value):
        """One stored image as something `load_image` takes: its bytes, or else its path."""
        if isinstance(value, dict):
            if value.get("bytes") is not None:
                return value["bytes"]
            value = value["path"]
        return _resolve(self.folder, value)

    def __getitem__(self, index: int) -> dict:
        example = self.examples[index]
        value = self.arrow[self.rows[index]].column(0)[0].as_py()
        values = [] if value is None else value if isinstance(value, list) else [value]
        return {**example, "images": [self.image(v) for v in values]}


def load_hf_dataset(
    source,
    kind: str = "caption",
    split: str = "train",
    image_folder: str | os.PathLike | None = None,
    **columns,
) -> ConversationDataset:
    """A Hugging Face data set with an image column: a `datasets.Dataset` (or `DatasetDict`, from
    which `split` is taken), a folder written by `save_to_disk`, or a hub name (needs the hub).

    Columns are guessed unless named: the image column is the first of `datasets.Image` type
    (or a list of them), else "image" (which may also hold paths, relative to `image_folder`,
    default the working folder). Text comes from a "conversations" column in LLaVA form, else
    "caption" and "question"/"answer" (or a "qa" list of {"q", "a"}) as for
    `load_caption_folder`, with `kind` choosing between them.
    """
    _check_kind(kind)
    unknown = sorted(set(columns) - set(COLUMN_ARGS))
    if unknown:
        raise VlkitError(f"unknown argument(s) {', '.join(unknown)}: use {', '.join(COLUMN_ARGS)}")
    datasets = _import_datasets()
    table, name = _open_hf(datasets, source, split)
    features, present = table.features, table.column_names
    folder = _image_folder(image_folder, Path.cwd())

    image_column = columns.get("image_column") or _guess_image_column(features, datasets)
    if image_column not in present:
        raise VlkitError(
            f"the data set {name!r} has no image column (columns: {', '.join(present)}): name "
            "it with image_column="
        )
    found = _image_feature(features[image_column], datasets)
    if found is None:
        raise VlkitError(
            f"column {image_column!r} of {name!r} holds {features[image_column]}, not images or "
            "image paths: name the image column with image_column="
        )
    form, is_list = found
    counts = _hf_image_counts(table, image_column, form, is_list, folder, name)

    conv_column = columns.get("conversations_column")
    text_named = any(columns.get(f"{k}_column") for k in ("caption", "question", "answer", "qa"))
    if conv_column is None and not text_named and "conversations" in present:
        conv_column = "conversations"
    examples, rows = [], []
    if conv_column is not None:
        if conv_column not in present:
            raise VlkitError(
                f"{name!r} has no column {conv_column!r} (columns: {', '.join(present)})"
            )
        for i, row in enumerate(table.select_columns([conv_column]).to_list()):
            conversation = _llava_conversation(row[conv_column], counts[i], f"row {i} of {name!r}")
            examples.append({"conversation": conversation})
            rows.append(i)
    else:
        names = {
            k: columns.get(f"{k}_column") or k for k in ("caption", "question", "answer", "qa")
        }
        wanted = [c for c in names.values() if c in present]
        has_caption = names["caption"] in present
        has_qa = names["question"] in present or names["qa"] in present
        if not {"caption": has_caption, "qa": has_qa, "both": has_caption or has_qa}[kind]:
            need = {
                "caption": f"a caption column ({names['caption']!r})",
                "qa": f"question and answer columns ({names['question']!r}, {names['answer']!r})",
                "both": "caption or question/answer columns",
            }[kind]
            raise VlkitError(
                f"kind={kind!r} needs {need}, and {name!r} has only {', '.join(present)}: name "
                "them with caption_column=, question_column=, answer_column= (or "
                "conversations_column= for LLaVA-style turns)"
            )
        for i, row in enumerate(table.select_columns(wanted).to_list()):
            where = f"row {i} of {name!r}"
            if counts[i] != 1:
                raise VlkitError(
                    f"{where} has {counts[i]} images in {image_column!r}; caption and QA data take "
                    "one image per row (use a conversations column for several)"
                )
            record = _caption_record(row, names, where)
            for conversation in _caption_conversations(record, kind, where):
                examples.append({"conversation": conversation})
                rows.append(i)
    if not examples:
        raise VlkitError(f"the data set {name!r} is empty")
    label = f"hf:{name}" + ("" if conv_column else f":{kind}")
    return HFDataset(examples, rows, table, image_column, folder, label)
