"""Shared fixtures: one tiny model per test session (building it is the slow part), seeded."""

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(scope="session")
def tiny():
    from vlkit import VisionLanguageModel

    torch.manual_seed(0)
    return VisionLanguageModel.from_preset("tiny").eval()


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))


@pytest.fixture
def image2():
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared CPU the extra threads
    spin-wait against other processes (10x slower under load): use one, then restore."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
