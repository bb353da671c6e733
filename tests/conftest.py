import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def device() -> str:
    # Tests run on the CPU unless SR_TEST_DEVICE says otherwise (e.g. cuda on a GPU box).
    return os.environ.get("SR_TEST_DEVICE", "cpu")
