"""Shared test fixtures.

Real data and weights live in ``../shared`` beside the checkout (override with the
``SENSLOC_SHARED`` environment variable). Tests that need them skip with a clear reason
when they are absent; nothing from there is ever copied into the repository.
"""
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_path(*parts):
    """Path inside the shared folder, or skip the calling test if it is absent."""
    root = Path(os.environ.get("SENSLOC_SHARED", REPO.parent / "shared"))
    path = root.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (set SENSLOC_SHARED to the shared data folder)")
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)
