"""AttentionExplorer without a browser: traits set the way the front end sets them (comm messages)."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import traitlets

from vlkit.attention import AttentionCapture, ImageAttention, attention_rollout
from vlkit.widgets.explorer import AttentionExplorer

JS = Path(__file__).parents[1] / "widgets" / "explorer.js"


def front_end_sets(widget, **state):
    """What a browser's model.set(...); model.save_changes() arrives as in the kernel."""
    message = {
        "content": {"data": {"method": "update", "state": state, "buffer_paths": []}},
        "buffers": [],
    }
    widget._handle_msg(message)


def hand_built(n_tokens=3, grid=(2, 3), layers=2, heads=2):
    """Token i attends only to image token (patch) 2*i, in every layer and head."""
    h, w = grid
    attention = torch.zeros(layers, heads, n_tokens, h * w)
    for i in range(n_tokens):
        attention[:, :, i, 2 * i] = 1.0
    image = ImageAttention(
        view=np.zeros((28, 42, 3), dtype=np.float32),
        grid=grid,
        token_patch_map=torch.eye(h * w),  # a linear projector: token t is patch t
        attention=attention,
    )
    return AttentionCapture("Where?", "a b c", ["a", "b", "c"][:n_tokens], [1, 2, 3], [image])


def test_hand_built_maps_and_patch_lookup():
    ex = AttentionExplorer.from_capture(hand_built())
    assert ex.grid == [2, 3] and ex.tokens == ["a", "b", "c"]
    assert [m for m, _ in ex.options["methods"]] == ["attention"]  # nothing else was captured
    maps = np.asarray(ex.maps)
    assert maps.shape == (4, 6)  # the mean over tokens, then one row per token
    for i in range(3):
        assert int(np.argmax(maps[i + 1])) == 2 * i
    np.testing.assert_allclose(maps[0], [1 / 3, 0, 1 / 3, 0, 1 / 3, 0], rtol=1e-4)
    front_end_sets(ex, token=1)
    assert ex.heatmap().shape == (2, 3) and ex.heatmap()[0, 2] == 1.0  # patch 2 = row 0, col 2
    front_end_sets(ex, hovered_patch=4)  # row 1, col 1: only token 2 looked there
    assert ex.patch_tokens[0][:2] == [2, "c"] and ex.patch_tokens[0][2] == pytest.approx(1.0)
    assert all(share == 0 for _, _, share in ex.patch_tokens[1:])
    front_end_sets(ex, hovered_patch=-1)
    assert ex.patch_tokens == []


def test_front_end_choices_recompute_the_maps(tiny, image):
    ex = AttentionExplorer.from_model(tiny, image, "Describe the image.", max_new_tokens=6)
    target = ex.capture.images[0]
    n = len(ex.tokens)
    assert n >= 1 and len(ex.maps) == n + 1 and ex.image_url.startswith("data:image/png;base64,")
    assert {m for m, _ in ex.options["methods"]} == {"attention", "gradient", "rollout", "cls"}

    front_end_sets(ex, layer="1", head="max")  # a <select> sends strings
    assert ex.layer == 1 and ex.head == "max"
    want = target.heatmap(0, 1, "max", "attention").reshape(-1).numpy()
    np.testing.assert_allclose(ex.maps[1], want, rtol=1e-4, atol=1e-7)

    front_end_sets(ex, method="gradient", token=0)
    assert ex.method == "gradient" and ex.token == 0
    want = target.heatmap(0, 1, "max", "gradient").reshape(-1).numpy()
    np.testing.assert_allclose(ex.maps[1], want, rtol=1e-4, atol=1e-7)

    front_end_sets(ex, method="rollout")
    rollout = attention_rollout(
        tuple(a[None] for a in target.encoder_attentions), target.num_prefix_tokens, target.grid
    )[0]
    rows = np.asarray(ex.maps)
    np.testing.assert_allclose(rows[0], rollout.reshape(-1).numpy(), rtol=1e-4, atol=1e-7)
    assert np.allclose(rows, rows[0])  # the encoder's view is the same for every token
    front_end_sets(ex, hovered_patch=3)
    assert ex.hovered_patch == 3 and ex.patch_tokens == []  # no per-token map to rank

    front_end_sets(ex, method="attention", opacity=0.2)
    assert ex.opacity == 0.2
    lo, hi = ex.scales[0]
    assert hi >= lo and hi <= max(ex.maps[0]) + 1e-9


def test_bad_choices_are_refused_and_change_nothing(tiny, image):
    ex = AttentionExplorer.from_model(tiny, image, "Describe the image.", max_new_tokens=4)
    before = (ex.layer, ex.head, ex.method, ex.token, list(ex.maps[0]))
    for bad in ({"layer": 99}, {"layer": "deep"}, {"head": 7}, {"method": "magic"}, {"token": 99}):
        with pytest.raises(traitlets.TraitError):
            ex.set_state(bad)
    assert (ex.layer, ex.head, ex.method, ex.token, list(ex.maps[0])) == before
    front_end_sets(ex, hovered_patch=10_000)  # off the grid counts as "no patch"
    assert ex.hovered_patch == -1
    with pytest.raises(TypeError, match="from_model"):
        AttentionExplorer("not a capture")


def test_several_images_keep_their_own_maps(tiny, image, image2):
    ex = AttentionExplorer.from_model(
        tiny, [image, image2], "Compare the images.", answer="two shapes"
    )
    assert ex.options["images"] == 2
    first_url, first_maps = ex.image_url, ex.maps
    front_end_sets(ex, image_index=1)
    assert ex.image_url != first_url and ex.maps != first_maps
    with pytest.raises(traitlets.TraitError):
        ex.image_index = 2


def test_plot_matches_the_current_choice(tiny, image):
    import matplotlib

    matplotlib.use("Agg")
    ex = AttentionExplorer.from_model(tiny, image, "Describe the image.", max_new_tokens=4)
    ex.token = 0
    ax = ex.plot()
    assert repr(ex.tokens[0].strip()) in ax.get_title()
    overlay = ax.get_images()[1].get_array()
    assert overlay.shape == tuple(ex.grid)


def test_the_front_end_only_uses_traits_the_kernel_has():
    """explorer.js reads and writes traits by name; a renamed trait must not go unnoticed."""
    names = set(re.findall(r"model\.(?:get|set)\(\"(\w+)\"", JS.read_text()))
    names |= set(re.findall(r"setTrait\(\"(\w+)\"", JS.read_text()))
    names |= set(re.findall(r"change:(\w+)", JS.read_text()))
    assert {"token", "maps", "hovered_patch", "opacity"} <= names
    ex = AttentionExplorer.from_capture(hand_built())
    missing = {n for n in names if not ex.has_trait(n)}
    assert not missing, f"explorer.js uses traits the widget lacks: {missing}"
