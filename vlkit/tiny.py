"""The `tiny` preset's parts, built locally with no files: a word-level tokenizer and two small configs.

The tokenizer knows a few hundred lower-case words (enough for the shapes world's captions and
questions and short everyday answers), digits and punctuation, plus the chat-template markers.
Unknown words become <unk>. It is a real `PreTrainedTokenizerFast`, so it saves as tokenizer.json
and offers offsets and a chat template like any Hugging Face tokenizer.
"""

from __future__ import annotations

SPECIAL_TOKENS = [
    "<pad>",
    "<unk>",
    "<s>",
    "</s>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)

_WORDS = """
a an the this that these those there here it its is are was were be been being has have had do does
did not no yes and or but if then than so as of in on at to from by with without for about into onto
over under above below between beside behind near next far left right top bottom middle center centre
upper lower corner side edge front back up down inside outside around across along
one two three four five six seven eight nine ten zero none single pair several many few more most
less least all each every other another some any only both either neither same different
red green blue yellow orange purple pink brown black white gray grey cyan magenta gold silver dark light
bright pale colour color colours colors colored coloured
circle circles square squares triangle triangles star stars diamond diamonds cross crosses hexagon
hexagons ellipse ellipses rectangle rectangles heart hearts ring rings shape shapes object objects
thing things dot dots spot spots line lines
small smaller smallest large larger largest big bigger biggest medium tiny huge size sizes tall short
long wide narrow round flat
what which who where when why how many much count number kind type
image images picture pictures photo photos photograph scene view background foreground frame
shows show showing shown contains contain containing see seen look looks looking appears appear
describe description caption answer question briefly detail details word words
person people man woman child face faces cat dog animal animals bird flower flowers tree trees plant
grass sky cloud clouds sun moon water sea river road street car building house church castle tower
city room table cup coffee food plate astronaut rocket space helmet flag suit camera clock coin coins
text page letter letters logo brick wall gravel ground stone field
medical scan x ray xray ct mri ultrasound fundus retina eye eyes blood vessel vessels lesion lesions
cell cells tissue stain slide microscope pathology organ brain chest lung lungs bone bones body
image's model vision language token tokens patch patches
i you he she we they me him her us them my your his our their
can could will would should may might must
very quite also just too almost about
""".split()

_SYMBOLS = list("0123456789.,;:!?'\"()-/%+")


def tiny_vocab() -> list[str]:
    """Special tokens first (so their ids are stable), then symbols, then words, deduplicated."""
    seen: dict[str, None] = {}
    for token in SPECIAL_TOKENS + _SYMBOLS + _WORDS:
        seen.setdefault(token, None)
    return list(seen)


def build_word_tokenizer():
    """A word-level `PreTrainedTokenizerFast` with vlkit's tiny vocabulary and chat template."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(tiny_vocab())}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    # Split on whitespace, and keep each punctuation mark as its own token.
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    core.decoder = decoders.WordPiece(
        prefix="##", cleanup=True
    )  # joins words with spaces, tidies punctuation
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="<|end|>",
        additional_special_tokens=["</s>", "<|system|>", "<|user|>", "<|assistant|>"],
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_encoder_config() -> dict:
    """A 2-layer DINOv2-style ViT on 64x64 images with 8x8 patches: an 8x8 grid of 64 patches."""
    return {
        "model_type": "dinov2",
        "hidden_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 96,
        "patch_size": 8,
        "image_size": 64,
        "layerscale_value": 1.0,
    }


def tiny_lm_config(vocab_size: int) -> dict:
    """A 2-layer Llama-style LM with hidden size 64 over the tiny vocabulary."""
    return {
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "tie_word_embeddings": True,
        # Tied embeddings of std 0.02 would cap a logit at about |h| * |e| = 8 * 0.16, i.e. near
        # uniform over the vocabulary, so a random tiny LM could never reach a low loss.
        "initializer_range": 0.2,
        "pad_token_id": 0,
        "bos_token_id": 2,
        "eos_token_id": SPECIAL_TOKENS.index("<|end|>"),
    }
