"""The per-image results file of an evaluation: written one complete line at a time, resumed
only by a run of the same inputs.

A results file is a CSV whose first line records what produced its rows (library version,
network, weight SHA-256, a digest of the records evaluated, folds, seed, batch size and each
configuration's parameters). :class:`ResultsFile` refuses a file of another run, naming the
difference, and never writes to a file that does not start with that record.
"""
import csv
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from sensloc._files import atomic_write, sha256_file

RESULT_COLUMNS = ("config", "image_id", "true_class", "predicted_class", "xmin", "ymin", "xmax",
                  "ymax", "iou", "hit", "hit_top1")

# A results file is a CSV whose first line records what produced its rows:
#
#     # sensloc results v1 {"library": "0.2.0", "network": "vgg11", "weights_sha256": ..., ...}
#     config,image_id,true_class,...
#
# A run resumes a file only if that record equals its own (a changed manifest box, seed, fold
# count, weight file or preset would otherwise be reported with the old rows' numbers), and a
# file that does not start with the record is never written to, not even to cut a torn line.

RESULTS_MAGIC = "# sensloc results v1 "
#: Rows written between two syncs of the results file to the disk.
FSYNC_ROWS = 256


def digest(value):
    """SHA-256 (hex) of a JSON-able value (NumPy arrays and numbers allowed), keys sorted:
    a fingerprint of parameters."""
    def plain(v):
        return v.tolist() if isinstance(v, (np.ndarray, np.generic)) else str(v)
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=plain).encode()).hexdigest()


def dataset_digest(dataset):
    """SHA-256 of the records evaluated, in order: each image's id, the SHA-256 of its
    photo's bytes (the photo itself, wherever it lies), its size, class and boxes."""
    return digest([[r.image_id, d, int(r.width), int(r.height), int(r.class_index),
                     np.asarray(r.boxes).tolist()] for r, d in zip(dataset.records, dataset.digests)])


def results_identity(weight_path, net, dataset, configs, k, seed, batch_size):
    """What produced a results file's rows, as recorded in its first line (a dict, JSON-able).

    ``configs`` maps each configuration's name to the SHA-256 of its parameters
    (:meth:`sensloc.evaluation.runner.Config.identity`); everything else is one value per run.
    """
    import sensloc
    return {"library": sensloc.__version__, "network": net.name,
            "weights_sha256": sha256_file(weight_path), "dataset_sha256": dataset_digest(dataset),
            "images": len(dataset.records), "folds": k, "seed": seed, "batch_size": batch_size,
            "configs": {c.name: c.identity() for c in configs}}


def _results_text(path):
    """The text of an existing results file, checked to be one (its record, its columns).

    Returns ``(identity, text)``; ``identity`` is None for an empty file. Reads only.
    """
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            text = stream.read()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a sensloc results file (not UTF-8 text); "
                         "it was left unchanged") from None
    if not text:
        return None, text
    first, _, rest = text.partition("\n")
    columns = rest.partition("\n")[0]
    if not first.startswith(RESULTS_MAGIC) or tuple(columns.split(",")) != RESULT_COLUMNS:
        if tuple(first.split(",")) == RESULT_COLUMNS:
            raise ValueError(f"{path} was written by an older sensloc that did not record what "
                             "produced it; remove it or give --results another file")
        raise ValueError(f"{path} is not a sensloc results file; it was left unchanged "
                         "(give --results another file)")
    try:
        identity = json.loads(first[len(RESULTS_MAGIC):])
    except json.JSONDecodeError:
        raise ValueError(f"{path}: its first line, the record of what produced it, is damaged; "
                         "remove it or give --results another file") from None
    return identity, text


def iter_results(path):
    """The rows (dicts by :data:`RESULT_COLUMNS`) of a results file one at a time, without a
    last line cut short by an interruption. Reads only; an absent file has no rows."""
    if not os.path.exists(path):
        return
    _, text = _results_text(path)
    text = text[:text.rfind("\n") + 1]  # a torn last line is not a row
    yield from csv.DictReader(io.StringIO(text.partition("\n")[2]))


def read_results(path):
    """The rows of a results file as a list (:func:`iter_results`)."""
    return list(iter_results(path))


#: The words for each entry of a results file's record, in the message naming a difference.
_IDENTITY_WORDS = {"library": "sensloc version", "network": "network",
                   "weights_sha256": "weight file SHA-256",
                   "dataset_sha256": "digest of the images, classes and boxes",
                   "images": "number of images", "folds": "folds", "seed": "seed",
                   "batch_size": "batch size"}


def _differences(found, wanted):
    """What differs between two identities, in words (empty when none)."""
    changes = []
    for key, value in wanted.items():
        if key == "configs":
            continue
        if found.get(key) != value:
            shown = [str(v)[:12] + ("..." if len(str(v)) > 12 else "") for v in (found.get(key), value)]
            changes.append(f"{_IDENTITY_WORDS.get(key, key)} {shown[0]} there, {shown[1]} now")
    old = found.get("configs", {})
    changes += [f"configuration {name!r} has other parameters"
                for name, value in wanted["configs"].items() if name in old and old[name] != value]
    return changes


class ResultsFile:
    """Append-only per-image results of one run, identified by :func:`results_identity`.

    The constructor only checks: the file is absent (its folder must exist), or empty, or a
    results file whose record agrees with ``identity`` (same network, weights, records, folds,
    seed, library; a configuration both know has the same parameters). Otherwise it raises
    ValueError naming the file and the first difference, before anything is written. Nothing
    is created or modified until the first :meth:`add`; then the header is written atomically
    (a new file, or the old one with the new configurations added) and rows are appended one
    complete line at a time, flushed to disk, so a run killed at any moment resumes exactly.
    """

    def __init__(self, path, identity):
        self.path, self.identity, self.stream = Path(path), identity, None
        self.done = set()
        self.existing = os.path.exists(path)
        if self.existing:
            if not os.path.isfile(path):
                raise ValueError(f"--results {path} is not a file")
            found, _ = _results_text(path)
            if found is not None:
                changes = _differences(found, identity)
                if changes:
                    raise ValueError(f"{path} holds results of another run ({changes[0]}); remove "
                                     "it or give --results another file")
                self.identity = {**identity, "configs": {**found["configs"], **identity["configs"]}}
                self.done = {(r["config"], r["image_id"]) for r in iter_results(path)}
        elif not self.path.parent.resolve().is_dir():
            raise ValueError(f"--results {path}: the folder {self.path.parent} does not exist")
        if not os.access(self.path.parent.resolve(), os.W_OK):
            raise ValueError(f"--results {path}: the folder {self.path.parent} is not writable")

    def _open(self):
        """Write the header (atomically) and keep the file open for appending."""
        header = RESULTS_MAGIC + json.dumps(self.identity, sort_keys=True) + "\n"
        text, body = "", ",".join(RESULT_COLUMNS) + "\n"
        if self.existing:
            _, text = _results_text(self.path)
            if text:
                body = text.partition("\n")[2]
                body = body[:body.rfind("\n") + 1]  # cut a line torn by an interruption
        if header + body != text:
            with atomic_write(self.path) as temporary:
                temporary.write_text(header + body, encoding="utf-8")
        self.stream = open(self.path, "a", newline="", encoding="utf-8")
        self.unsynced = 0

    def _write(self, values):
        line = io.StringIO()
        csv.writer(line, lineterminator="\n").writerow(values)
        self.stream.write(line.getvalue())
        # Flushed at once (a killed process loses no finished row: the kernel has it); synced
        # to the disk every FSYNC_ROWS rows and at close (a row a sync costs 4 ms: minutes
        # for an ImageNet run), so a machine that goes down loses at most those rows, and a
        # torn last line is cut when the run resumes.
        self.stream.flush()
        self.unsynced += 1
        if self.unsynced >= FSYNC_ROWS:
            os.fsync(self.stream.fileno())
            self.unsynced = 0

    def add(self, config, record, predicted_class, box, overlap, hit):
        if (config, record.image_id) in self.done:
            return
        if self.stream is None:
            self._open()
        self._write([config, record.image_id, record.class_index, predicted_class,
                     *(f"{v:.2f}" for v in box), f"{overlap:.6f}", int(hit),
                     int(hit and predicted_class == record.class_index)])
        self.done.add((config, record.image_id))

    def close(self):
        if self.stream is not None and not self.stream.closed:
            self.stream.flush()
            os.fsync(self.stream.fileno())
            self.stream.close()


# --------------------------------------------------------------------------- evaluation
