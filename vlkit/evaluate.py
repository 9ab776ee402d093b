"""Held-out evaluation: what a checkpoint gets right, as figures a JSON file can hold.

- `evaluate_shapes`: generated captions of shapes-world test scenes are read back with
  `parse_caption` and scored per attribute (colour, shape, size, position, count) against the
  exact scene; every question of the scene's question set is asked on its own and scored by
  exact match (case, surrounding punctuation and a leading article ignored).
- `evaluate_photos`: captions of the held-out captioned photos against the written caption,
  scored with corpus BLEU-4 and CIDEr-D (both implemented here from their papers' definitions).
- `evaluate_lesions`: simulated screening (spots painted on a real fundus photograph, not
  clinical findings): spot count, quadrant and presence, and the modality of real medical
  images, each beside its majority-class chance.

Everything runs greedy, so the same checkpoint always gives the same figures. `vlkit eval` is the
command-line face of this module.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from itertools import permutations

from .config import DEFAULT_PROMPT
from .data.shapes import ShapesConfig, make_split, parse_caption
from .errors import VlkitError

CAPTION_PROMPT = DEFAULT_PROMPT
ATTRIBUTES = ("colour", "shape", "size", "position")
TASKS = ("shapes", "photos", "pointing", "lesions", "spot-attention")
POINTING_METHODS = {  # name -> heatmap arguments
    "last_layer": {"method": "attention", "layer": -1},
    "mean_layers": {"method": "attention", "layer": "mean"},
    "gradient": {"method": "gradient", "layer": "mean"},
    "rollout": {"method": "rollout"},
}


# ---- batched answers ---------------------------------------------------------------------------
def _answers(model, prompts, images, max_new_tokens, batch_size, progress, desc) -> list[str]:
    """Greedy answers to single-turn prompts, one image each, in batches."""
    from tqdm.auto import tqdm

    out: list[str] = []
    bar = tqdm(total=len(prompts), desc=desc, unit="prompt", disable=not progress)
    for start in range(0, len(prompts), batch_size):
        chats = [
            [{"role": "user", "content": f"{model.config.image_token}\n{p}"}]
            for p in prompts[start : start + batch_size]
        ]
        imgs = [[img] for img in images[start : start + batch_size]]
        out += model.generate_batch(chats, imgs, max_new_tokens)
        bar.update(len(chats))
    bar.close()
    return out


def normalise_answer(text: str) -> str:
    """Lower case, no surrounding punctuation or spaces, no leading a/an/the, single spaces."""
    words = re.findall(r"[a-z0-9]+(?:[-'][a-z0-9]+)*", text.lower())
    if words and words[0] in ("a", "an", "the") and len(words) > 1:
        words = words[1:]
    return " ".join(words)


# ---- shapes ------------------------------------------------------------------------------------
def score_caption(text: str, scene, config: ShapesConfig | None = None) -> dict:
    """Score one generated caption against its scene.

    The objects the caption names are matched one-to-one to the scene's objects so that the most
    attributes agree (every assignment is tried; scenes hold at most a few objects). Returns, per
    attribute, how many of the scene's objects got it right (an object the caption misses gets
    nothing), the number of objects, and whether the caption names exactly as many objects as
    the scene holds.
    """
    said = parse_caption(text, config)[:9]  # a runaway caption cannot make matching explode
    truth = [{a: getattr(o, a) for a in ATTRIBUTES} for o in scene.objects]

    def agree(t, s):
        return sum(t[a] == s[a] for a in ATTRIBUTES)

    best: tuple = ()
    best_score = -1
    k = min(len(truth), len(said))
    for chosen in permutations(range(len(said)), k):
        for truth_ids in permutations(range(len(truth)), k) if len(truth) > k else [range(k)]:
            score = sum(agree(truth[t], said[s]) for t, s in zip(truth_ids, chosen, strict=True))
            if score > best_score:
                best_score, best = score, tuple(zip(truth_ids, chosen, strict=True))
    correct = dict.fromkeys(ATTRIBUTES, 0)
    for t, s in best:
        for a in ATTRIBUTES:
            correct[a] += truth[t][a] == said[s][a]
    return {
        "correct": correct,
        "objects": len(truth),
        "objects_said": len(said),
        "count_correct": len(said) == len(truth),
    }


def _question_type(question: str) -> str:
    for prefix, name in (
        ("How many", "count"),
        ("What colour", "colour"),
        ("Where is", "position"),
        ("Is there", "exists"),
        ("Which is larger", "larger"),
    ):
        if question.startswith(prefix):
            return name
    return "other"


def evaluate_shapes(
    model,
    split: str = "test",
    limit: int = 200,
    batch_size: int = 8,
    max_new_tokens: int = 80,
    progress: bool = True,
    examples: int = 5,
) -> dict:
    """Caption attribute accuracy and question exact match on `limit` scenes of `split`."""
    config = ShapesConfig(image_size=max(64, model.config.encoder.image_size))
    scenes = make_split(split, limit, config)
    images = [s.image for s in scenes]
    captions = _answers(
        model, [CAPTION_PROMPT] * len(scenes), images, max_new_tokens, batch_size, progress,
        "shapes captions",
    )  # fmt: skip
    totals = dict.fromkeys(ATTRIBUTES, 0)
    n_objects = count_ok = 0
    for caption, scene in zip(captions, scenes, strict=True):
        score = score_caption(caption, scene, config)
        for a in ATTRIBUTES:
            totals[a] += score["correct"][a]
        n_objects += score["objects"]
        count_ok += score["count_correct"]

    questions = [(qa, scene) for scene in scenes for qa in scene.qas]
    answers = _answers(
        model, [qa.question for qa, _ in questions], [s.image for _, s in questions], 12,
        batch_size, progress, "shapes questions",
    )  # fmt: skip
    by_type: dict[str, list[int]] = {}
    for (qa, _), answer in zip(questions, answers, strict=True):
        right = normalise_answer(answer) == normalise_answer(qa.answer)
        by_type.setdefault(_question_type(qa.question), []).append(int(right))
    all_right = [r for rs in by_type.values() for r in rs]
    return {
        "task": "shapes",
        "split": split,
        "scenes": len(scenes),
        "objects": n_objects,
        "questions": len(questions),
        "caption": {
            **{a: totals[a] / n_objects for a in ATTRIBUTES},
            "count": count_ok / len(scenes),
        },
        "qa_exact_match": sum(all_right) / max(1, len(all_right)),
        "qa_by_type": {
            t: {"accuracy": sum(rs) / len(rs), "n": len(rs)} for t, rs in sorted(by_type.items())
        },
        "examples": [
            {"seed": s.seed, "truth": s.caption, "generated": c}
            for s, c in zip(scenes[:examples], captions[:examples], strict=True)
        ],
    }


# ---- photos: BLEU-4 and CIDEr-D ----------------------------------------------------------------
def caption_tokens(text: str) -> list[str]:
    """Lower-cased words and numbers; punctuation dropped (as caption metrics usually do)."""
    return re.findall(r"[a-z0-9]+", text.lower())


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def bleu(candidates: list[str], references: list[list[str]], max_n: int = 4) -> float:
    """Corpus BLEU (Papineni et al. 2002): clipped n-gram precisions for n = 1..max_n pooled
    over the corpus, their geometric mean, times the brevity penalty (closest reference length)."""
    if len(candidates) != len(references) or not candidates:
        raise VlkitError("bleu needs one list of references per candidate, and at least one")
    matched, total = [0] * max_n, [0] * max_n
    cand_len = ref_len = 0
    for cand, refs in zip(candidates, references, strict=True):
        c = caption_tokens(cand)
        rs = [caption_tokens(r) for r in refs]
        cand_len += len(c)
        ref_len += min((abs(len(r) - len(c)), len(r)) for r in rs)[1]
        for n in range(1, max_n + 1):
            counts = _ngrams(c, n)
            most = Counter()
            for r in rs:
                most |= _ngrams(r, n)
            matched[n - 1] += sum(min(k, most[g]) for g, k in counts.items())
            total[n - 1] += max(len(c) - n + 1, 0)
    if min(matched) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matched, total, strict=True)) / max_n
    brevity = 1.0 if cand_len > ref_len else math.exp(1 - ref_len / max(cand_len, 1))
    return brevity * math.exp(log_precision)


def cider_d(
    candidates: list[str], references: list[list[str]], sigma: float = 6.0, max_n: int = 4
) -> float:
    """CIDEr-D (Vedantam et al. 2015): per n, cosine of TF-IDF n-gram vectors with the
    candidate's counts clipped to the reference's and a Gaussian penalty on the length
    difference; the mean over n = 1..4 and references, times 10, averaged over the images.
    Document frequencies come from the references of the evaluated set, as in the paper."""
    if len(candidates) != len(references) or not candidates:
        raise VlkitError("cider_d needs one list of references per candidate, and at least one")
    refs_tok = [[caption_tokens(r) for r in refs] for refs in references]
    df: list[Counter] = [Counter() for _ in range(max_n)]
    for refs in refs_tok:
        for n in range(1, max_n + 1):
            seen = set()
            for r in refs:
                seen |= set(_ngrams(r, n))
            df[n - 1].update(seen)
    log_docs = math.log(len(candidates))

    def vector(words, n):
        # raw counts, so that clipping compares how often an n-gram occurs in each
        return {
            g: k * (log_docs - math.log(max(1.0, df[n - 1][g])))
            for g, k in _ngrams(words, n).items()
        }

    def norm(v):
        return math.sqrt(sum(x * x for x in v.values()))

    scores = []
    for cand, refs in zip(candidates, refs_tok, strict=True):
        c = caption_tokens(cand)
        per_n = []
        for n in range(1, max_n + 1):
            vc = vector(c, n)
            sims = []
            for r in refs:
                vr = vector(r, n)
                dot = sum(min(vc[g], vr[g]) * vr[g] for g in vc if g in vr)  # clipped: the "D"
                denom = norm(vc) * norm(vr)
                sim = dot / denom if denom else 0.0
                sims.append(sim * math.exp(-((len(c) - len(r)) ** 2) / (2 * sigma**2)))
            per_n.append(sum(sims) / len(sims))
        scores.append(10.0 * sum(per_n) / max_n)
    return sum(scores) / len(scores)


def evaluate_photos(
    model,
    split: str = "test",
    limit: int | None = None,
    batch_size: int = 4,
    max_new_tokens: int = 80,
    progress: bool = True,
    examples: int = 5,
) -> dict:
    """BLEU-4 and CIDEr-D of generated captions on the captioned photos' `split`."""
    from .photos import load_photo, load_photo_records

    records = load_photo_records("test" if split in ("test", "val") else split)[:limit]
    images = [load_photo(r) for r in records]
    captions = _answers(
        model, [CAPTION_PROMPT] * len(records), images, max_new_tokens, batch_size, progress,
        "photo captions",
    )  # fmt: skip
    refs = [[r["caption"]] for r in records]
    return {
        "task": "photos",
        "split": split,
        "images": len(records),
        "bleu4": bleu(captions, refs),
        "cider_d": cider_d(captions, refs),
        "examples": [
            {"id": r["id"], "truth": r["caption"], "generated": c}
            for r, c in zip(records[:examples], captions[:examples], strict=True)
        ],
    }


# ---- simulated screening (lesions) -------------------------------------------------------------
LESION_TYPES = ("count", "quadrant", "presence", "modality")
LESION_CHANCE = (
    "majority class: the share of the evaluated questions whose true answer is the most common "
    "one, i.e. what always giving that answer would score"
)
_NUMBERS = {
    "zero": 0, "none": 0, "no": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9,
}  # fmt: skip
_MODALITY_WORDS = {  # any of these words (or word pairs) names the modality
    "ct": ("ct", "computed tomography", "cat scan"),
    "mri": ("mri", "mr", "magnetic resonance"),
    "ultrasound": ("ultrasound", "sonogram", "sonography", "echo", "echocardiogram", "doppler"),
    "fundus": ("fundus", "retina", "retinal", "fundoscopy", "ophthalmoscopy"),
    "pathology": (
        "pathology", "histology", "histopathology", "microscopy", "microscope", "slide",
        "immunohistochemistry",
    ),
}  # fmt: skip


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def read_count(text: str) -> int | None:
    """The first number in an answer, as digits or a word ("two", "2"); failing that, "none" or
    "no" is 0 (so "No, there are two." reads 2 and "There are no spots." reads 0)."""
    words = _words(text)
    for word in words:
        if word.isdigit():
            return int(word)
        if word in _NUMBERS and word not in ("no", "none"):
            return _NUMBERS[word]
    return 0 if any(w in ("no", "none") for w in words) else None


def read_quadrant(text: str) -> str | None:
    """ "upper left" etc. from an answer; "top"/"bottom" count as "upper"/"lower", any order."""
    words = _words(text)
    vertical = next((w for w in words if w in ("upper", "top", "lower", "bottom")), None)
    horizontal = next((w for w in words if w in ("left", "right")), None)
    if vertical is None or horizontal is None:
        return None
    return f"{'upper' if vertical in ('upper', 'top') else 'lower'} {horizontal}"


def read_yes_no(text: str) -> str | None:
    """The first "yes" or "no" in an answer."""
    return next((w for w in _words(text) if w in ("yes", "no")), None)


def read_modality(text: str) -> str | None:
    """The one modality an answer names (a key of `vlkit.data.lesions.MODALITIES`), or None when
    it names none or several."""
    padded = f" {' '.join(_words(text))} "
    named = [m for m, names in _MODALITY_WORDS.items() if any(f" {n} " in padded for n in names)]
    return named[0] if len(named) == 1 else None


_READERS = {
    "count": read_count,
    "quadrant": read_quadrant,
    "presence": read_yes_no,
    "modality": read_modality,
}


def score_lesion_answer(question_type: str, answer: str, truth) -> bool:
    """Whether a generated answer is right: the count (word or digit), the quadrant, yes/no, or
    the modality (any of its names, and no other modality's) read out of it equals `truth`."""
    if question_type not in _READERS:
        raise VlkitError(f"question_type={question_type!r}: use one of {', '.join(LESION_TYPES)}")
    return _READERS[question_type](answer) == truth


def lesion_questions(split: str = "test", limit: int = 200, config=None) -> list[dict]:
    """The questions `evaluate_lesions` asks: `limit` images of `split`, a quarter of them
    modality images (at least one when limit >= 2), the rest lesion scenes. Each item holds
    type, question, answer (the written truth), truth (what `score_lesion_answer` compares
    with), image and seed."""
    from .data.lesions import (
        COUNT_Q,
        MODALITY_Q,
        PRESENCE_Q,
        QUADRANT_Q,
        make_modality_split,
    )
    from .data.lesions import make_split as make_lesion_split

    n_modality = limit // 4 if limit >= 4 else int(limit >= 2)
    n_scenes = limit - n_modality
    items = []
    for scene in make_lesion_split(split, n_scenes, config):
        truths = {COUNT_Q: ("count", len(scene.spots)), PRESENCE_Q: ("presence", None)}
        truths[QUADRANT_Q] = ("quadrant", None)
        for qa in scene.qas:
            kind, truth = truths[qa.question]
            items.append(
                {"type": kind, "question": qa.question, "answer": qa.answer,
                 "truth": qa.answer if truth is None else truth, "image": scene.image,
                 "seed": scene.seed}
            )  # fmt: skip
    for record in make_modality_split(split, n_modality, config, offset=n_scenes):
        qa = next(q for q in record.qas if q.question == MODALITY_Q)
        items.append(
            {"type": "modality", "question": qa.question, "answer": qa.answer,
             "truth": record.modality, "image": record.image, "seed": record.seed}
        )  # fmt: skip
    return items


def score_lesions(items: list[dict], answers: list[str], examples: int = 5) -> dict:
    """Per question type: accuracy, n, and chance (see LESION_CHANCE) with its majority answer;
    a type with no questions gets accuracy None. Plus up to `examples` examples, types in turn."""
    if len(items) != len(answers):
        raise VlkitError(
            f"{len(items)} questions but {len(answers)} answers: give one per question"
        )
    result: dict = {}
    for kind in LESION_TYPES:
        pairs = [(i, a) for i, a in zip(items, answers, strict=True) if i["type"] == kind]
        truths = Counter(i["answer"] for i, _ in pairs)
        majority, top = truths.most_common(1)[0] if pairs else (None, 0)
        right = sum(score_lesion_answer(kind, a, i["truth"]) for i, a in pairs)
        result[kind] = {
            "accuracy": right / len(pairs) if pairs else None,
            "n": len(pairs),
            "chance": top / len(pairs) if pairs else None,
            "majority": majority,
        }
    seen: Counter = Counter()
    keyed = []  # (rank within its type, type, index): the first of each type, then the second...
    for j, item in enumerate(items):
        keyed.append((seen[item["type"]], LESION_TYPES.index(item["type"]), j))
        seen[item["type"]] += 1
    chosen = [j for *_, j in sorted(keyed)][:examples]
    result["examples"] = [
        {"type": items[j]["type"], "seed": items[j]["seed"], "question": items[j]["question"],
         "truth": items[j]["answer"], "generated": answers[j],
         "right": score_lesion_answer(items[j]["type"], answers[j], items[j]["truth"])}
        for j in chosen
    ]  # fmt: skip
    return result


def evaluate_lesions(
    model,
    split: str = "test",
    limit: int = 200,
    batch_size: int = 8,
    max_new_tokens: int = 12,
    progress: bool = True,
    examples: int = 5,
) -> dict:
    """Simulated screening (SIMULATED lesions painted on a real fundus photograph; see
    `vlkit.data.lesions`): count, quadrant and presence of the spots on the lesion scenes, and
    the imaging modality of real CT / MRI / ultrasound / pathology / fundus images, each question
    asked on its own and read leniently (`score_lesion_answer`). `limit` counts images."""
    from .data.lesions import LesionsConfig

    config = LesionsConfig(image_size=max(64, model.config.encoder.image_size))
    items = lesion_questions(split, limit, config)
    answers = _answers(
        model, [i["question"] for i in items], [i["image"] for i in items], max_new_tokens,
        batch_size, progress, "lesion questions",
    )  # fmt: skip
    scored = score_lesions(items, answers, examples)
    return {
        "task": "lesions",
        "split": split,
        "images": len({(i["type"] == "modality", i["seed"]) for i in items}),
        "questions": len(items),
        **{k: scored[k] for k in LESION_TYPES},
        "chance_rule": LESION_CHANCE,
        "simulated": "the spots are painted, not clinical findings",
        "examples": scored["examples"],
    }


# ---- pointing game -----------------------------------------------------------------------------
def _token_spans(tokenizer, ids: list[int]) -> list[tuple[int, int]]:
    """Character span of each token in the decoded text (by decoding growing prefixes)."""
    spans, previous = [], 0
    for i in range(len(ids)):
        end = len(tokenizer.decode(ids[: i + 1]))
        spans.append((previous, end))
        previous = end
    return spans


def pointing_targets(tokenizer, token_ids: list[int], scene, config: ShapesConfig) -> list[tuple]:
    """(answer-token index, object index, word) for each colour or shape word of a scene caption.

    The caption names the objects in order, each with exactly one colour and one shape word, so
    the k-th colour word (and the k-th shape word) is about object k. A word split into several
    tokens is pointed to by its first token (the step that commits to the word)."""
    text = tokenizer.decode(token_ids)
    spans = _token_spans(tokenizer, token_ids)
    targets = []
    for vocabulary in (set(config.colours), set(config.shapes)):
        k = 0
        for m in re.finditer(r"[a-z]+", text.lower()):
            if m.group() not in vocabulary:
                continue
            token = next(
                (i for i, (a, b) in enumerate(spans) if b > m.start() and a < m.end()), None
            )
            if token is not None and k < len(scene.objects):
                targets.append((token, k, m.group()))
            k += 1
    return sorted(targets)


def patch_hits(mask, grid: tuple[int, int]):
    """(h, w) bool: which patches have their centre pixel inside `mask` (S, S)."""
    import numpy as np

    h, w = grid
    size_y, size_x = mask.shape
    ys = ((np.arange(h) + 0.5) * size_y / h).astype(int)
    xs = ((np.arange(w) + 0.5) * size_x / w).astype(int)
    return mask[np.ix_(ys, xs)]


def _whole_view_size(model, what: str) -> int:
    """The encoder's image size, after checking that it sees a square scene of that size whole
    (no resize, no crop), so that a scene's pixel masks line up with the patch grid."""
    enc = model.config.encoder
    if enc.image_size < 64 or enc.resize != enc.image_size:
        raise VlkitError(
            f"{what} needs the encoder to see the whole scene unscaled and uncropped: encoder "
            f"image_size={enc.image_size}, resize={enc.resize}; use a model whose resize equals "
            "image_size (>= 64)"
        )
    return enc.image_size


def evaluate_pointing(
    model,
    split: str = "test",
    limit: int = 50,
    progress: bool = True,
    methods: dict | None = None,
) -> dict:
    """The pointing game on shapes scenes: for each colour or shape word of the (teacher-forced)
    true caption, does the heatmap's peak patch lie on the object the word names?

    A patch counts as on the object if its centre pixel is inside the object's mask; chance is the
    share of patches that count, i.e. what a peak drawn uniformly at random would score. Reported
    per method (see POINTING_METHODS) beside chance, over all pointed words."""
    import torch
    from tqdm.auto import tqdm

    from .attention import capture_attention

    methods = methods or POINTING_METHODS
    config = ShapesConfig(image_size=_whole_view_size(model, "the pointing game"))
    hits = dict.fromkeys(methods, 0)
    chance = 0.0
    n = 0
    by_word = {"colour": 0, "shape": 0}
    for scene in tqdm(make_split(split, limit, config), desc="pointing game", disable=not progress):

        def pointed(token_ids, scene=scene):  # backward passes only for the words we score
            targets = pointing_targets(model.lm.tokenizer, token_ids, scene, config)
            return sorted({t for t, _, _ in targets})

        capture = capture_attention(
            model, scene.image, CAPTION_PROMPT, answer=scene.caption,
            gradient=any(spec["method"] == "gradient" for spec in methods.values()),
            gradient_tokens=pointed,
        )  # fmt: skip
        targets = pointing_targets(model.lm.tokenizer, capture.token_ids, scene, config)
        image = capture.images[0]
        for token, obj, word in targets:
            on_object = torch.from_numpy(patch_hits(scene.objects[obj].mask, image.grid))
            chance += float(on_object.float().mean())
            n += 1
            by_word["colour" if word in config.colours else "shape"] += 1
            for name, spec in methods.items():
                heat = image.heatmap(token=token, **spec)  # (h, w)
                peak = int(torch.argmax(heat))
                hits[name] += bool(on_object.flatten()[peak])
    if n == 0:
        raise VlkitError("no colour or shape word was found in the captions: nothing to point at")
    return {
        "task": "pointing",
        "split": split,
        "scenes": limit,
        "words": n,
        "words_by_kind": by_word,
        "accuracy": {name: hits[name] / n for name in methods},
        "chance": chance / n,
    }


def patch_overlap(mask, grid: tuple[int, int]):
    """(h, w) bool: which patches contain at least one pixel of `mask` (S, S)."""
    import numpy as np

    h, w = grid
    size_y, size_x = mask.shape
    ys = np.linspace(0, size_y, h + 1).round().astype(int)
    xs = np.linspace(0, size_x, w + 1).round().astype(int)
    return np.array(
        [[mask[ys[i] : ys[i + 1], xs[j] : xs[j + 1]].any() for j in range(w)] for i in range(h)]
    )


def evaluate_spot_attention(
    model,
    split: str = "test",
    limit: int = 40,
    progress: bool = True,
    methods: dict | None = None,
) -> dict:
    """How much of the answer's attention falls on the painted spot (simulated screening set).

    On held-out lesion scenes with exactly one spot, the true answer to "In which quadrant is the
    spot?" is teacher-forced and each method's map is averaged over the answer's tokens. Reported
    per method: the mean share of the map's weight on the patches that touch the spot
    (`on_spot`), beside the mean share of the image those patches cover (`area`, what a flat map
    would put there), and their ratio (`ratio`: 1 = no preference for the spot). This is the
    energy-based form of the pointing game; it suits the spots, which are smaller than one
    image token, better than asking where a map's single peak lies. `limit` counts scenes."""
    import torch
    from tqdm.auto import tqdm

    from .attention import capture_attention
    from .data.lesions import QUADRANT_Q, LesionsConfig, make_scene, split_seeds

    if not isinstance(limit, int) or limit < 1:
        raise VlkitError(f"limit={limit!r}: ask for at least one scene, e.g. limit=40")
    methods = methods or POINTING_METHODS
    config = LesionsConfig(image_size=_whole_view_size(model, "spot attention"))
    mass = dict.fromkeys(methods, 0.0)
    area = 0.0
    n = 0
    bar = tqdm(total=limit, desc="spot attention", disable=not progress)
    for seed in split_seeds(split, 8 * limit + 20):  # about 30% of scenes have exactly one spot
        if n == limit:
            break
        scene = make_scene(seed, config)
        if len(scene.spots) != 1:
            continue
        spot = scene.spots[0]
        capture = capture_attention(
            model, scene.image, QUADRANT_Q, answer=spot.quadrant,
            gradient=any(spec["method"] == "gradient" for spec in methods.values()),
        )  # fmt: skip
        image = capture.images[0]
        on_spot = torch.from_numpy(patch_overlap(spot.mask, image.grid))
        area += float(on_spot.float().mean())
        for name, spec in methods.items():
            heat = image.heatmap(**spec).clamp(min=0)  # mean over the answer's tokens
            mass[name] += float(heat[on_spot].sum() / heat.sum().clamp(min=1e-12))
        n += 1
        bar.update(1)
    bar.close()
    if n == 0:
        raise VlkitError(f"no one-spot scene found in the first seeds of split {split!r}")
    return {
        "task": "spot-attention",
        "split": split,
        "scenes": n,
        "on_spot": {name: mass[name] / n for name in methods},
        "area": area / n,
        "ratio": {name: mass[name] / area for name in methods},
        "simulated": "the spots are painted, not clinical findings",
    }


def evaluate(model, task: str, **kwargs) -> dict:
    """Run one task by name: shapes, photos, pointing, lesions or spot-attention."""
    if task == "shapes":
        return evaluate_shapes(model, **kwargs)
    if task == "photos":
        return evaluate_photos(model, **kwargs)
    if task == "pointing":
        return evaluate_pointing(model, **kwargs)
    if task == "lesions":
        return evaluate_lesions(model, **kwargs)
    if task == "spot-attention":
        return evaluate_spot_attention(model, **kwargs)
    raise VlkitError(f"unknown task {task!r}: use one of {', '.join(TASKS)}")
