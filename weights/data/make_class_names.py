"""Generate ``imagenet_classes.txt`` (shipped with the package) from ``synset_words.txt``.

``synset_words.txt`` is the list of the 1000 ILSVRC2012 classes distributed with Caffe: one line
per class, ``wnid name, name, ...``, in class-index order, which is the sorted order of the
WordNet ids (the order Keras, torchvision and Caffe all use). The output keeps the same facts
with a tab after the wnid, so that names containing spaces parse without ambiguity::

    n01440764<TAB>tench, Tinca tinca

How the shipped file was made (from the repository root)::

    python weights/data/make_class_names.py ../shared/data/synset_words.txt

The input is checked: exactly 1000 lines, well-formed wnids (``n`` and 8 digits), unique and
sorted, a non-empty name on every line.
"""
import re
import sys
from pathlib import Path

CLASS_COUNT = 1000
OUTPUT = Path(__file__).with_name("imagenet_classes.txt")


def read_synset_words(path):
    """Return ``[(wnid, names), ...]`` from a ``synset_words.txt`` file, checked (see above)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    classes = []
    for number, line in enumerate(lines, start=1):
        wnid, _, names = line.strip().partition(" ")
        if not re.fullmatch(r"n\d{8}", wnid) or not names.strip():
            raise ValueError(f"{path}, line {number}: expected 'wnid names', got {line!r}")
        classes.append((wnid, names.strip()))
    wnids = [wnid for wnid, _ in classes]
    if len(classes) != CLASS_COUNT:
        raise ValueError(f"{path}: expected {CLASS_COUNT} classes, found {len(classes)}")
    if wnids != sorted(set(wnids)):
        raise ValueError(f"{path}: wnids are not unique and sorted, so not in class-index order")
    return classes


def write_class_names(classes, path=OUTPUT):
    """Write ``wnid<TAB>names`` lines, in class-index order, UTF-8, newline-terminated."""
    Path(path).write_text("".join(f"{wnid}\t{names}\n" for wnid, names in classes),
                          encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: make_class_names.py SYNSET_WORDS_TXT [OUTPUT_TXT]")
    write_class_names(read_synset_words(sys.argv[1]), *sys.argv[2:])
