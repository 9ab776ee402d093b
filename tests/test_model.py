"""The composed model on the tiny preset: loss mask, parity with the HF LM, generation, images."""

import pytest
import torch
import torch.nn.functional as F

from vlkit import VisionLanguageModel
from vlkit.errors import MessageError, VlkitError
from vlkit.images import image_to_data_url
from vlkit.llms import IGNORE_INDEX

# A 2-layer vision tower on 32-px images with 8-px patches: a 4x4 grid, for any ViT family.
TINY_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": 32,
    "patch_size": 8,
}

QA = [
    {"role": "user", "content": "<image>\nwhat colour is the circle ?"},
    {"role": "assistant", "content": "the circle is red ."},
]


def test_loss_is_on_answer_tokens_only(tiny, image):
    batch = tiny.prepare([QA], [[image]])
    labels = batch["labels"][0]
    kept = labels[labels != IGNORE_INDEX].tolist()
    assert tiny.lm.tokenizer.decode(kept, skip_special_tokens=False) == "the circle is red. <|end|>"
    # the image and the question are never targets
    assert bool((labels[batch["image_mask"][0]] == IGNORE_INDEX).all())
    out = tiny(**batch)
    logits = out.logits[0, :-1]
    target = labels[1:]
    keep = target != IGNORE_INDEX
    manual = F.cross_entropy(logits[keep], target[keep])
    assert torch.allclose(out.loss, manual, atol=1e-6)


def test_every_assistant_turn_is_labelled(tiny, image):
    chat = QA + [
        {"role": "user", "content": "is there a square ?"},
        {"role": "assistant", "content": "no ."},
    ]
    labels = tiny.prepare([chat], [[image]])["labels"][0]
    kept = labels[labels != IGNORE_INDEX].tolist()
    assert (
        tiny.lm.tokenizer.decode(kept, skip_special_tokens=False)
        == "the circle is red. <|end|> no. <|end|>"
    )


def test_text_only_logits_equal_the_hf_lm(tiny):
    batch = tiny.prepare([[{"role": "user", "content": "is there a red circle ?"}]])
    ours = tiny(**batch).logits
    theirs = tiny.lm.base_model()(input_ids=batch["input_ids"]).logits
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_image_logits_equal_the_hf_lm_given_the_same_embeddings(tiny, image, image2):
    """Build the soft prompt by hand from the HF encoder and compare with the composed forward."""
    chat = [{"role": "user", "content": "<image>\n<image>\nwhich is larger ?"}]
    batch = tiny.prepare([chat], [[image, image2]])
    with torch.no_grad():
        patches = tiny.encoder.model(pixel_values=batch["pixel_values"]).last_hidden_state[
            :, 1:
        ]  # drop CLS
        soft = tiny.projector(patches, tiny.encoder.grid).reshape(-1, tiny.lm.hidden_size)
        embeds = tiny.lm.base_model().get_input_embeddings()(batch["input_ids"]).clone()
        embeds[batch["image_mask"]] = soft  # image 1's tokens, then image 2's, in prompt order
        theirs = tiny.lm.base_model()(inputs_embeds=embeds).logits
        ours = tiny(**batch).logits
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert batch["image_tokens"] == [[64, 64]]


def test_greedy_is_identical_with_and_without_kv_cache(tiny, image, image2):
    for img, prompt in [(image, "describe the image ."), (image2, "how many shapes are there ?")]:
        cached = tiny.describe(img, prompt, max_new_tokens=24)
        plain = tiny.describe(img, prompt, max_new_tokens=24, use_cache=False)
        assert cached.token_ids == plain.token_ids
        assert len(cached.token_ids) >= 5  # a real sequence, not an immediate stop


def test_left_padded_batch_matches_single_prompts(tiny, image, image2):
    chats = [
        [{"role": "user", "content": "<image>\ndescribe ."}],
        [
            {
                "role": "user",
                "content": "<image>\nwhat colour is the big square in the left corner ?",
            }
        ],
    ]
    batch = tiny.prepare(
        chats, [[image], [image2]], add_generation_prompt=True, padding_side="left"
    )
    together = torch.stack(list(tiny.iter_token_ids(batch, max_new_tokens=8)), dim=1)
    for i, chat in enumerate(chats):
        single = tiny.prepare(
            [chat], [[(image, image2)[i]]], add_generation_prompt=True, padding_side="left"
        )
        alone = torch.stack(list(tiny.iter_token_ids(single, max_new_tokens=8)), dim=1)[0]
        assert together[i, : len(alone)].tolist() == alone.tolist()


def test_sampling_is_seeded(tiny, image):
    a = tiny.describe(image, max_new_tokens=12, temperature=1.5, seed=7)
    b = tiny.describe(image, max_new_tokens=12, temperature=1.5, seed=7)
    c = tiny.describe(image, max_new_tokens=12, temperature=1.5, seed=8)
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids
    with pytest.raises(VlkitError, match="top_p"):
        tiny.describe(image, temperature=1.0, top_p=0.0)


def test_stream_pieces_add_up_to_the_answer(tiny, image):
    # sampling from the random tiny LM gives ordinary words (greedy repeats one special token)
    kwargs = {"max_new_tokens": 16, "temperature": 1.0, "seed": 0}
    pieces = list(tiny.stream("describe the image .", [image], **kwargs))
    whole = tiny.describe(image, "describe the image .", **kwargs)
    assert len(pieces) > 1
    assert "".join(pieces).strip() == whole.text


def test_chat_takes_api_shaped_messages(tiny, image, image2):
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "compare these two images ."},
                {
                    "type": "image_url",
                    "image_url": {"url": image_to_data_url(image), "detail": "low"},
                },
                {
                    "type": "image_url",
                    "image_url": {"url": image_to_data_url(image2), "detail": "high"},
                },
            ],
        }
    ]
    out = tiny.chat(messages, max_new_tokens=4)
    per_view = tiny.image_tokens_per_view
    assert out.image_tokens[0] == per_view
    assert (
        out.image_tokens[1] > per_view and out.image_tokens[1] % per_view == 0
    )  # global view + tiles
    assert out.details == ["low", "high"]
    assert out.prompt_tokens > sum(out.image_tokens)
    with pytest.raises(MessageError, match="detail"):
        tiny.chat(
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "x", "detail": "max"}}],
                }
            ]
        )
    with pytest.raises(MessageError, match="role"):
        tiny.chat([{"role": "robot", "content": "hi"}])


def test_placeholder_count_must_match_images(tiny, image):
    with pytest.raises(VlkitError, match="placeholder"):
        tiny.prepare([[{"role": "user", "content": "no image here"}]], [[image]])


def test_only_the_projector_trains_by_default(tiny, image):
    batch = tiny.prepare([QA], [[image]])
    tiny.zero_grad()
    tiny(**batch).loss.backward()
    assert all(p.grad is not None for p in tiny.projector.parameters())
    assert all(p.grad is None for p in tiny.encoder.parameters())
    assert all(p.grad is None for p in tiny.lm.parameters())
    tiny.zero_grad()


@pytest.mark.parametrize(
    "model_type,prefix", [("clip_vision_model", 1), ("siglip_vision_model", 0), ("vit", 1)]
)
def test_other_vision_towers_work(model_type, prefix, image):
    from vlkit.config import EncoderConfig
    from vlkit.encoders import VisionEncoder

    hf = {"model_type": model_type, **TINY_VISION}
    enc = VisionEncoder(EncoderConfig(source="", hf_config=hf, image_size=32, resize=32))
    out = enc(enc.preprocess(image)[None], output_attentions=True)
    assert out.features.shape == (1, 16, 32)
    assert out.grid == (4, 4)
    assert out.num_prefix_tokens == prefix
    assert out.attentions[0].shape == (1, 4, 16 + prefix, 16 + prefix)


def test_projector_swap_changes_token_count():
    model = VisionLanguageModel.from_preset("tiny", projector="pixel_shuffle")
    assert model.image_tokens_per_view == 16


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_hub_style_checkpoints_load_through_the_same_path(family, tmp_path, image):
    """Hub presets name full CLIP/SigLIP checkpoints (text + vision) and any causal LM folder:
    saved locally from tiny configs, they go through exactly the from_pretrained path a hub id does."""
    import transformers

    from vlkit.config import EncoderConfig, LMConfig, VLMConfig
    from vlkit.tiny import build_word_tokenizer, tiny_vocab

    vision = TINY_VISION
    text = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "vocab_size": 99,
    }
    if family == "clip":
        full = transformers.CLIPModel(
            transformers.CLIPConfig(vision_config=vision, text_config=text)
        )
    else:
        full = transformers.SiglipModel(
            transformers.SiglipConfig(vision_config=vision, text_config=text)
        )
    full.save_pretrained(tmp_path / "encoder")
    lm = transformers.Qwen2ForCausalLM(
        transformers.Qwen2Config(
            vocab_size=len(tiny_vocab()),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )
    lm.save_pretrained(tmp_path / "lm")
    build_word_tokenizer().save_pretrained(tmp_path / "lm")

    config = VLMConfig(
        encoder=EncoderConfig(
            source=str(tmp_path / "encoder"), image_size=32, resize=32, feature_layer=-2
        ),
        lm=LMConfig(source=str(tmp_path / "lm")),
    )
    model = VisionLanguageModel.from_config(config)
    assert type(model.encoder.model).__name__ == (
        "CLIPVisionModel" if family == "clip" else "SiglipVisionModel"
    )
    assert model.encoder.grid == (4, 4)
    out = model.describe(image, max_new_tokens=3)
    assert out.image_tokens == [16]
