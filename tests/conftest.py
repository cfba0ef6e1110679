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


@pytest.fixture(scope="session")
def squeezenet_file(tmp_path_factory):
    """The real SqueezeNet 1.0 weights from ../shared, converted into a temporary file."""
    from sensloc import weights
    source = shared_path("weights", "squeezenet-1.0-dc", "compressed_SqueezeNet.net")
    return weights.convert(source, out=tmp_path_factory.mktemp("weights") / "squeezenet1_0.h5")


@pytest.fixture(scope="session")
def squeezenet(squeezenet_file):
    """A loaded SqueezeNet 1.0 with the real weights (do not modify; load your own to change it)."""
    from sensloc import weights
    return weights.load(squeezenet_file)


@pytest.fixture(scope="session")
def photo_files(tmp_path_factory):
    """scikit-image's chelsea (a cat) and coffee (an espresso) as PNG/JPEG files."""
    from PIL import Image
    from skimage import data
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.chelsea()).save(folder / "chelsea.png")
    Image.fromarray(data.coffee()).save(folder / "coffee.jpg", quality=95)
    return {"chelsea": folder / "chelsea.png", "coffee": folder / "coffee.jpg"}
