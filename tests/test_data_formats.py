"""Tests for the data formats `vlkit.datasets.load_data` reads and for `vlkit.preview`.

Each format is written as tiny files under tmp_path (8x8 PNGs); Hugging Face data sets are built
locally (`Dataset.from_dict`, `save_to_disk`, the packaged "imagefolder" builder), never fetched.
"""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vlkit.datasets import ConversationDataset, load_data
from vlkit.errors import VlkitError
from vlkit.images import load_image
from vlkit.llms import IGNORE_INDEX
from vlkit.preview import ANSWER_COLOUR, Preview, Segment, preview, preview_example

datasets = pytest.importorskip("datasets")


def make_png(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def pics(tmp_path):
    """Three tiny PNGs under tmp_path/images."""
    return [make_png(tmp_path / "images" / f"{name}.png", i) for i, name in enumerate("abc")]


def write_json(path, data):
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def user(text):
    return {"role": "user", "content": text}


def bot(text):
    return {"role": "assistant", "content": text}


# ---- LLaVA conversations -------------------------------------------------------------------


def llava_records():
    return [
        {
            "id": "one",
            "image": "images/a.png",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat colour is it?"},
                {"from": "gpt", "value": "Red."},
                {"from": "human", "value": "How many?"},
                {"from": "gpt", "value": "One."},
            ],
        },
        {
            "id": "two",
            "image": ["images/a.png", "images/b.png"],
            "conversations": [
                {"from": "system", "value": "Be brief."},
                {"from": "human", "value": "<image> and <image>: same?"},
                {"from": "gpt", "value": "No."},
            ],
        },
        {
            "id": "text",
            "conversations": [
                {"from": "human", "value": "Say yes."},
                {"from": "gpt", "value": "Yes."},
            ],
        },
    ]


def test_llava_json_maps_roles_and_resolves_image_paths(tmp_path, pics):
    data = load_data(write_json(tmp_path / "llava.json", llava_records()))
    assert isinstance(data, ConversationDataset)
    assert data.name == "llava:llava.json"
    assert len(data) == 3
    assert data[0] == {
        "conversation": [
            user("<image>\nWhat colour is it?"),
            bot("Red."),
            user("How many?"),
            bot("One."),
        ],
        "images": [str(pics[0])],
    }
    assert data[1]["conversation"] == [
        {"role": "system", "content": "Be brief."},
        user("<image> and <image>: same?"),
        bot("No."),
    ]
    assert data[1]["images"] == [str(pics[0]), str(pics[1])]
    assert data[2] == {"conversation": [user("Say yes."), bot("Yes.")], "images": []}


def test_llava_puts_missing_placeholders_at_the_start_of_the_first_user_turn(tmp_path, pics):
    records = [
        {
            "image": "images/a.png",
            "conversations": [
                {"from": "system", "value": "Be brief."},
                {"from": "human", "value": "What is this?"},
                {"from": "gpt", "value": "A square."},
                {"from": "human", "value": "Sure?"},
                {"from": "gpt", "value": "Yes."},
            ],
        },
        {
            "images": ["images/a.png", "images/b.png"],
            "conversations": [
                {"from": "human", "value": "Compare."},
                {"from": "gpt", "value": "Same size."},
            ],
        },
    ]
    data = load_data(write_json(tmp_path / "llava.json", records))
    first = data[0]["conversation"]
    assert first[0] == {"role": "system", "content": "Be brief."}  # not into the system turn
    assert first[1] == user("<image>\nWhat is this?")
    assert first[3] == user("Sure?")  # only the first user turn gets it
    assert data[1]["conversation"][0] == user("<image>\n<image>\nCompare.")
    assert data[1]["images"] == [str(pics[0]), str(pics[1])]


def test_llava_jsonl_reads_images_from_image_folder(tmp_path, pics):
    lines = [json.dumps(r) for r in llava_records()]
    file = tmp_path / "elsewhere" / "chat.jsonl"
    file.parent.mkdir()
    file.write_text(lines[0] + "\n\n" + lines[2] + "\n", encoding="utf-8")  # a blank line is fine
    data = load_data(file, image_folder=tmp_path)
    assert len(data) == 2
    assert data[0]["images"] == [str(pics[0])]
    assert data[1]["images"] == []
    # without image_folder the paths are read next to the file, where they are not
    with pytest.raises(VlkitError, match=r"1 of 1 images are missing.*a\.png.*image_folder="):
        load_data(file)


@pytest.mark.parametrize(
    "records, match",
    [
        ([{"id": "x7", "image": "images/a.png"}], r"id 'x7'.* has no 'conversations'"),
        (
            [{"id": "gone", "image": "images/nope.png", "conversations": llava_records()[2]["conversations"]}],
            r"1 of 1 images are missing: .*nope\.png \(record 0 .*id 'gone'",
        ),
        (
            [{"image": ["images/a.png", "images/b.png"], "conversations": [
                {"from": "human", "value": "<image> what?"}, {"from": "gpt", "value": "x"}]}],
            r"record 0 .* has 1 <image> placeholder\(s\) but 2 image\(s\)",
        ),
        (
            [{"conversations": [{"from": "human", "value": "<image> what?"}, {"from": "gpt", "value": "x"}]}],
            r"has 1 <image> placeholder\(s\) but 0 image\(s\)",
        ),
        (
            [{"conversations": [{"from": "robot", "value": "hi"}, {"from": "gpt", "value": "x"}]}],
            r"record 0 .*turn 0: .*'from': 'human' \| 'gpt' \| 'system'",
        ),
        ([{"conversations": [{"from": "human", "value": "hi"}]}], r"record 0 .* has no 'gpt' turn"),
        ([{"conversations": []}], r"'conversations' must be a non-empty list"),
        ({"conversations": []}, r"holds a JSON dict, not a list of records"),
        ([], r"holds no records"),
    ],
)  # fmt: skip
def test_llava_bad_records_name_the_record_and_the_fix(tmp_path, pics, records, match):
    file = write_json(tmp_path / "bad.json", records)
    with pytest.raises(VlkitError, match=match) as info:
        load_data(file)
    assert str(file) in str(info.value)


def test_llava_bad_json_says_where(tmp_path):
    file = tmp_path / "bad.json"
    file.write_text('[\n  {"conversations": []},\n  {"conversations": [}\n]', encoding="utf-8")
    with pytest.raises(VlkitError, match=r"bad\.json is not valid JSON: .* at line 3, column"):
        load_data(file)
    lines = tmp_path / "lines.json"  # JSON lines saved as .json: a common slip
    lines.write_text('{"a": 1}\n{"a": 2}\n', encoding="utf-8")
    with pytest.raises(VlkitError, match=r"line 2.*rename it to \.jsonl"):
        load_data(lines)
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text(json.dumps(llava_records()[2]) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(VlkitError, match=r"bad\.jsonl line 2 is not valid JSON"):
        load_data(jsonl)


def test_missing_files_and_unknown_sources(tmp_path):
    with pytest.raises(VlkitError, match=r"nothere\.json: no such file or folder"):
        load_data(tmp_path / "nothere.json")
    with pytest.raises(VlkitError, match=r"no such file or folder"):
        load_data("./data/not-a-folder")
    with pytest.raises(VlkitError, match=r"mydata: no such file or folder"):
        load_data(tmp_path / "mydata")  # a Path is never taken for a hub name
    (tmp_path / "empty").mkdir()
    with pytest.raises(VlkitError, match=r"holds none of captions\.jsonl"):
        load_data(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(VlkitError, match=r"cannot tell its format"):
        load_data(tmp_path / "notes.txt")
    with pytest.raises(VlkitError, match=r"load_data got a int"):
        load_data(3)
    with pytest.raises(VlkitError, match=r"unknown argument\(s\) caption_col:"):
        load_data(tmp_path, caption_col="text")
    with pytest.raises(VlkitError, match=r"kind='vqa': use one of caption, qa, both"):
        load_data(tmp_path, kind="vqa")


# ---- a folder of captioned images ---------------------------------------------------------------

CAPTION_LINES = [
    {
        "file_name": "images/a.png",
        "caption": "A red square.",
        "qa": [{"q": "What shape?", "a": "A square."}, {"q": "What colour?", "a": "Red."}],
    },
    {
        "image": "images/b.png",
        "caption": "A blue dot.",
        "question": "Is it blue?",
        "answer": "Yes.",
    },
]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_caption_folder_jsonl_caption_qa_and_both(tmp_path, pics):
    write_jsonl(tmp_path / "captions.jsonl", CAPTION_LINES)
    caption = load_data(tmp_path)
    assert caption.name == f"folder:{tmp_path.name}:caption"
    assert [e["conversation"] for e in caption] == [
        [user("<image>\nDescribe the image."), bot("A red square.")],
        [user("<image>\nDescribe the image."), bot("A blue dot.")],
    ]
    assert [e["images"] for e in caption] == [[str(pics[0])], [str(pics[1])]]
    qa = load_data(tmp_path, kind="qa")
    assert [e["conversation"] for e in qa] == [
        [user("<image>\nWhat shape?"), bot("A square."), user("What colour?"), bot("Red.")],
        [user("<image>\nIs it blue?"), bot("Yes.")],
    ]
    both = load_data(tmp_path / "captions.jsonl", kind="both")  # the file itself works too
    assert [e["conversation"] for e in both] == [
        caption[0]["conversation"],
        qa[0]["conversation"],
        caption[1]["conversation"],
        qa[1]["conversation"],
    ]
    assert [e["images"] for e in both] == [[str(pics[0])]] * 2 + [[str(pics[1])]] * 2


@pytest.mark.parametrize(
    "name, image_column", [("captions.csv", "file_name"), ("metadata.csv", "image")]
)
def test_caption_folder_csv(tmp_path, pics, name, image_column):
    (tmp_path / name).write_text(
        f"{image_column},caption,question,answer\n"
        "images/a.png,A red square.,What colour?,Red.\n"
        'images/c.png,"A dot, green.",,\n',
        encoding="utf-8",
    )
    data = load_data(tmp_path, kind="both")
    assert [e["conversation"] for e in data] == [
        [user("<image>\nDescribe the image."), bot("A red square.")],
        [user("<image>\nWhat colour?"), bot("Red.")],
        [user("<image>\nDescribe the image."), bot("A dot, green.")],  # no QA: caption only
    ]
    assert data[2]["images"] == [str(pics[2])]
    with pytest.raises(VlkitError, match=rf"{name} line 3 has no a question and answer for kind='qa': add one, or load with kind='caption'"):  # fmt: skip
        load_data(tmp_path / name, kind="qa")


def test_caption_folder_renamed_columns_and_image_folder(tmp_path, pics):
    folder = tmp_path / "meta"
    folder.mkdir()
    (folder / "captions.csv").write_text("path,text\na.png,A red square.\n", encoding="utf-8")
    data = load_data(
        folder, image_folder=tmp_path / "images", image_column="path", caption_column="text"
    )
    assert data[0] == {
        "conversation": [user("<image>\nDescribe the image."), bot("A red square.")],
        "images": [str(pics[0])],
    }
    with pytest.raises(VlkitError, match=r"image_folder='.*pictures' is not a folder"):
        load_data(folder, image_folder=tmp_path / "pictures", image_column="path")


@pytest.mark.parametrize(
    "lines, kind, match",
    [
        ([{"file_name": "images/a.png", "question": "Q?", "answer": "A."}], "caption",
         r"captions\.jsonl line 1 has no a caption for kind='caption': add one, or load with kind='qa'"),
        ([{"caption": "A red square."}], "caption", r"line 1 names no image: .*'file_name'"),
        ([{"file_name": "images/zz.png", "caption": "x"}], "caption",
         r"1 of 1 images are missing: .*zz\.png \(.*captions\.jsonl line 1\)"),
        ([{"file_name": "images/a.png", "qa": [{"q": "Q?"}]}], "qa", r"line 1: qa item .* needs a question and an answer"),
        ([{"file_name": "images/a.png", "question": "Q?"}], "qa", r"line 1 has a question without the other"),
        ([{"file_name": "images/a.png"}], "both", r"line 1 has neither a caption nor a question"),
    ],
)  # fmt: skip
def test_caption_folder_errors(tmp_path, pics, lines, kind, match):
    write_jsonl(tmp_path / "captions.jsonl", lines)
    with pytest.raises(VlkitError, match=match):
        load_data(tmp_path, kind=kind)


# ---- Hugging Face datasets ---------------------------------------------------------------------


def pil(seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))


def hf_captions():
    features = datasets.Features(
        {
            "picture": datasets.Image(),  # not called "image": found by its type
            "caption": datasets.Value("string"),
            "question": datasets.Value("string"),
            "answer": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict(
        {
            "picture": [pil(0), pil(1)],
            "caption": ["A red square.", "A blue dot."],
            "question": ["What colour?", "Is it round?"],
            "answer": ["Red.", "Yes."],
        },
        features=features,
    )


def assert_pixels(loaded, seed):
    assert np.array_equal(np.asarray(load_image(loaded)), np.asarray(pil(seed)))


def test_hf_dataset_object_by_kind(tmp_path):
    ds = hf_captions()
    caption = load_data(ds)
    assert caption.name == "hf:dataset:caption"
    assert [e["conversation"] for e in caption] == [
        [user("<image>\nDescribe the image."), bot("A red square.")],
        [user("<image>\nDescribe the image."), bot("A blue dot.")],
    ]
    assert all(isinstance(e["images"][0], bytes) for e in caption)  # still encoded: lazy
    assert_pixels(caption[1]["images"][0], 1)
    both = load_data(ds, kind="both")
    assert len(both) == 4
    assert both[1]["conversation"] == [user("<image>\nWhat colour?"), bot("Red.")]
    assert both.rows == [0, 0, 1, 1]
    assert_pixels(both[2]["images"][0], 1)  # example 2 is row 1's caption
    assert_pixels(both[-1]["images"][0], 1)  # negative indices work, and pick the right row


def test_hf_save_to_disk_folder_and_splits(tmp_path):
    hf_captions().save_to_disk(tmp_path / "saved")
    data = load_data(tmp_path / "saved", kind="qa")
    assert data.name == "hf:saved:qa"
    assert [e["conversation"] for e in data] == [
        [user("<image>\nWhat colour?"), bot("Red.")],
        [user("<image>\nIs it round?"), bot("Yes.")],
    ]
    assert_pixels(data[0]["images"][0], 0)
    both = datasets.DatasetDict({"train": hf_captions(), "test": hf_captions().select([1])})
    both.save_to_disk(tmp_path / "splits")
    test = load_data(tmp_path / "splits", split="test")
    assert len(test) == 1 and test[0]["conversation"][1] == bot("A blue dot.")
    assert len(load_data(both, split="train")) == 2
    with pytest.raises(
        VlkitError, match=r"has no split 'validation': use split= one of train, test"
    ):
        load_data(tmp_path / "splits", split="validation")


def test_hf_conversations_column_multi_image_and_text_only():
    features = datasets.Features(
        {
            "images": datasets.List(datasets.Image()),
            "conversations": datasets.List(
                {"from": datasets.Value("string"), "value": datasets.Value("string")}
            ),
        }
    )
    ds = datasets.Dataset.from_dict(
        {
            "images": [[pil(0), pil(1)], [], [pil(2)]],
            "conversations": [
                [{"from": "human", "value": "Same?"}, {"from": "gpt", "value": "No."}],
                [{"from": "human", "value": "Say yes."}, {"from": "gpt", "value": "Yes."}],
                [
                    {"from": "human", "value": "What is it?\n<image>"},
                    {"from": "gpt", "value": "A dot."},
                ],
            ],
        },
        features=features,
    )
    data = load_data(ds)
    assert data.name == "hf:dataset"
    assert data[0]["conversation"] == [user("<image>\n<image>\nSame?"), bot("No.")]
    assert len(data[0]["images"]) == 2
    assert_pixels(data[0]["images"][1], 1)
    assert data[1] == {"conversation": [user("Say yes."), bot("Yes.")], "images": []}
    assert data[2]["conversation"][0] == user("What is it?\n<image>")
    assert_pixels(data[2]["images"][0], 2)


def test_hf_path_column_and_imagefolder(tmp_path, pics):
    ds = datasets.Dataset.from_dict({"image": ["a.png", "c.png"], "caption": ["Red.", "Green."]})
    data = load_data(ds, image_folder=tmp_path / "images")
    assert [e["images"] for e in data] == [[str(pics[0])], [str(pics[2])]]
    missing = datasets.Dataset.from_dict({"image": ["a.png", "zz.png"], "caption": ["x", "y"]})
    with pytest.raises(VlkitError, match=r"1 of 2 images are missing: .*zz\.png \(row 1 of 'dataset'\)"):  # fmt: skip
        load_data(missing, image_folder=tmp_path / "images")
    # the packaged imagefolder builder (no hub needed) keeps the files' paths
    write_jsonl(tmp_path / "images" / "metadata.jsonl", [
        {"file_name": "a.png", "caption": "Red."}, {"file_name": "b.png", "caption": "Blue."}
    ])  # fmt: skip
    folder = datasets.load_dataset(
        "imagefolder",
        data_dir=str(tmp_path / "images"),
        split="train",
        cache_dir=str(tmp_path / "cache"),
    )
    data = load_data(folder)
    assert sorted(e["conversation"][1]["content"] for e in data) == ["Blue.", "Red."]
    for example in data:
        seed = 0 if example["conversation"][1]["content"] == "Red." else 1
        assert_pixels(example["images"][0], seed)


def test_hf_errors(tmp_path, monkeypatch):
    no_images = datasets.Dataset.from_dict({"text": ["a"], "caption": ["b"]})
    with pytest.raises(
        VlkitError, match=r"no image column \(columns: text, caption\): name it with image_column="
    ):
        load_data(no_images)
    with pytest.raises(VlkitError, match=r"column 'text' .* not images or image paths"):
        load_data(datasets.Dataset.from_dict({"text": [1], "caption": ["b"]}), image_column="text")
    with pytest.raises(
        VlkitError, match=r"kind='qa' needs question and answer columns .*question_column="
    ):
        load_data(hf_captions().remove_columns(["question", "answer"]), kind="qa")
    with pytest.raises(VlkitError, match=r"row 1 of 'dataset' has 0 images in 'picture'"):
        load_data(datasets.Dataset.from_dict(
            {"picture": [pil(0), None], "caption": ["a", "b"]},
            features=datasets.Features({"picture": datasets.Image(), "caption": datasets.Value("string")}),
        ))  # fmt: skip
    with pytest.raises(VlkitError, match=r"streaming data sets are not supported"):
        load_data(hf_captions().to_iterable_dataset())


def test_hub_name_that_cannot_be_reached_says_how_to_go_offline(monkeypatch):
    calls = []

    def unreachable(name, split=None, **kwargs):
        calls.append((name, split))
        raise ConnectionError(
            "Couldn't reach 'someone/pictures' on the Hub (LocalEntryNotFoundError)"
        )

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(VlkitError) as info:
        load_data("someone/pictures", split="validation")
    assert calls == [("someone/pictures", "validation")]
    message = str(info.value)
    assert "could not load 'someone/pictures' from the Hugging Face hub" in message
    assert "ConnectionError" in message
    assert "save_to_disk('some_folder')" in message and "load_data('some_folder')" in message
    assert isinstance(info.value.__cause__, ConnectionError)


# ---- preview ----------------------------------------------------------------------------------


def label_runs(labels):
    """Contiguous runs of label ids that are not IGNORE_INDEX."""
    runs, current = [], []
    for label in labels + [IGNORE_INDEX]:
        if label != IGNORE_INDEX:
            current.append(label)
        elif current:
            runs.append(current)
            current = []
    return runs


def qa_example(images):
    # The answers' words also sit in the questions: only the loss mask can tell them apart.
    return {
        "conversation": [
            user("<image>\nis the circle red?"),
            bot("yes, the circle is red."),
            user("how many circles?"),
            bot("two circles"),
        ],
        "images": images,
    }


def test_preview_marks_exactly_the_loss_tokens(tiny, pics):
    example = qa_example([str(pics[0])])
    shown = preview_example(tiny, example)
    batch = tiny.prepare([example["conversation"]], [example["images"]])
    labels = batch["labels"][0].tolist()
    assert [s.is_answer for s in shown.segments] == [label != IGNORE_INDEX for label in labels]
    tokenizer = tiny.lm.tokenizer
    runs = label_runs(labels)
    assert [a.strip() for a in shown.answers] == [tokenizer.decode(r).strip() for r in runs]
    # ...which are the assistant answers plus the end-of-turn marker the model learns to emit
    assert [a.strip() for a in shown.answers] == [
        "yes, the circle is red. <|end|>",
        "two circles <|end|>",
    ]
    assert [tokenizer.decode(r, skip_special_tokens=True).strip() for r in runs] == [
        "yes, the circle is red.",
        "two circles",
    ]
    n_image = sum(s.is_image for s in shown.segments)
    assert shown.image_tokens == batch["image_tokens"][0] == [tiny.image_tokens_per_view]
    assert n_image == tiny.image_tokens_per_view == int(batch["image_mask"].sum())
    assert shown.num_tokens == batch["input_ids"].shape[1]


def test_preview_text_and_html(tiny, pics):
    shown = preview_example(tiny, qa_example([str(pics[0])]))
    text = shown.to_text()
    n = tiny.image_tokens_per_view
    assert text.count(f"<image × {n} tokens>") == 1 and "<image>" not in text
    assert "[[yes, the circle is red. <|end|>]]" in text
    assert "[[two circles <|end|>]]" in text
    assert "is the circle red?" in text and "[[is the circle" not in text
    assert text.count("[[") == 2
    page = shown._repr_html_()
    highlighted = re.findall(rf'style="background:{ANSWER_COLOUR};">([^<]*)</span>', page)
    assert [h.strip() for h in highlighted] == [
        "yes, the circle is red. &lt;|end|&gt;",
        "two circles &lt;|end|&gt;",
    ]
    assert f"image: {n} tokens" in page
    prompt = re.search(r'class="vlkit-prompt"[^>]*style="">([^<]*is the circle red\?[^<]*)<', page)
    assert prompt is not None  # the question is plain, though it holds the answer's words


def test_preview_two_images_and_a_loaded_dataset(tiny, tmp_path, pics):
    example = {
        "conversation": [user("<image><image> same?"), bot("no")],
        "images": [str(pics[0]), pil(1)],
        "details": ["low", "high"],
    }
    shown = preview_example(tiny, example)
    per_view = tiny.image_tokens_per_view
    assert shown.image_tokens[0] == per_view and shown.image_tokens[1] > per_view  # high: tiles
    assert shown.to_text().startswith(
        f"<|user|><image × {per_view} tokens><image × {shown.image_tokens[1]} tokens>"
    )
    assert sum(s.is_image for s in shown.segments) == sum(shown.image_tokens)
    data = load_data(write_json(tmp_path / "llava.json", llava_records()))
    shown = preview(tiny, data, n=5)
    assert len(shown) == 3
    assert [len(p.image_tokens) for p in shown] == [1, 2, 0]
    assert [a.strip() for a in shown[2].answers] == ["yes. <|end|>"]
    assert "--- example 1:" in shown.to_text() and "<b>example 2</b>" in shown._repr_html_()


def test_preview_shows_whitespace_and_keeps_it_outside_the_brackets():
    shown = Preview(
        [
            Segment("Q:", False, False),
            Segment("\n", False, False),
            Segment(" yes", True, False),
            Segment("<end>\n", True, False),
            Segment("\tok", False, False),
        ],
        image_tokens=[],
    )
    assert shown.to_text() == "Q:\n [[yes<end>]]\n\tok"
    assert shown.answers == [" yes<end>\n"]
    page = shown._repr_html_()
    assert page.count("↵") == 2 and "→" in page and "&lt;end&gt;" in page
    assert "3 prompt, 0 image (0 image(s)), 2 answer" in page


def test_vlkit_does_not_import_notebook_packages():
    code = (
        "import sys, vlkit, vlkit.datasets, vlkit.preview; "
        "bad = [m for m in ('IPython', 'ipywidgets', 'datasets') if m in sys.modules]; "
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
