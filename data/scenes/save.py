"""Saving scenes as PNG files with a ``manifest.csv`` that :func:`sensloc.data.datasets.read_manifest` reads."""
import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image

from sensloc.data.scenes.generate import Scenes

#: The columns of the project's manifest format (``sensloc.data.datasets.MANIFEST_COLUMNS``, plus
#: the optional ``image_id``); repeated here because ``scenes`` must not import ``localize``.
MANIFEST_COLUMNS = ("file", "width", "height", "wnid", "class_index", "boxes", "image_id")


def manifest_text(batch):
    """The manifest of a batch as CSV text: one row per scene, in batch order.

    ``file`` is ``scene_<seed>_<k>.png`` (``k`` the scene number, 7 digits), ``wnid`` the class
    name, ``boxes`` the one box ``xmin,ymin,xmax,ymax`` (whole pixels, as boxes of masks are).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    height, width = batch.images.shape[1:3]
    for k, label, box in zip(batch.indices, batch.labels, batch.boxes):
        image_id = f"scene_{batch.seed}_{k:07d}"
        writer.writerow([f"{image_id}.png", width, height, batch.class_names[label], int(label),
                         ",".join(f"{value:g}" for value in box), image_id])
    return buffer.getvalue()


def save_scenes(folder, batch):
    """Write every scene of ``batch`` as a PNG file and a ``manifest.csv`` describing them.

    ``sensloc evaluate folder`` then works on the scenes (class indices are into
    ``batch.class_names``, so the network must have been trained on these classes). Each file is
    written atomically (a temporary file renamed into place), and the manifest last, so a
    manifest never names a missing or half-written image.

    Parameters
    ----------
    folder : str or Path
        Created if missing.
    batch : Scenes

    Returns
    -------
    Path
        The manifest file.

    Raises
    ------
    TypeError
        If ``batch`` is not a :class:`Scenes`.
    FileExistsError
        If ``folder/manifest.csv`` exists with a different content (saving the same batch again
        is allowed and rewrites the same files).
    """
    # Imported here, not at the top: importing the ``weights`` package loads ``nets``, Numba and
    # h5py (~0.2 s), which generating scenes (e.g. in data-loader workers) never needs.
    from sensloc._files import atomic_write

    if not isinstance(batch, Scenes):
        raise TypeError(f"batch must be scenes.Scenes (from sensloc.data.scenes.generate); got {type(batch).__name__}")
    folder = Path(folder)
    manifest = folder / "manifest.csv"
    text = manifest_text(batch)
    # Check before writing any image, so that a refused call leaves the folder untouched.
    if manifest.exists() and manifest.read_text(encoding="utf-8") != text:
        raise FileExistsError(
            f"{manifest} already exists and describes other scenes; refusing to overwrite it "
            "(choose another folder or delete it)")
    for k, image in zip(batch.indices, batch.images):
        with atomic_write(folder / f"scene_{batch.seed}_{k:07d}.png") as temporary:
            Image.fromarray(np.ascontiguousarray(image)).save(temporary, format="PNG")
    with atomic_write(manifest) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return manifest
