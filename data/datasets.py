"""Dataset readers: images with their class and ground-truth boxes, as :class:`ImageRecord` lists.

Three layouts are read:

- the project's manifest CSV (:func:`read_manifest`),
- ILSVRC2012 validation, one PASCAL-style XML file per image (:func:`read_imagenet_xml`),
- Pascal VOC (:func:`read_voc`).

Every box is converted to the convention of :mod:`sensloc.localize.boxes`: ``(xmin, ymin, xmax, ymax)``
float64 in continuous pixel coordinates of the stored image file, pixel ``(i, j)`` covering
``[j, j + 1) x [i, i + 1)``.
"""
import csv
import io
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MANIFEST_COLUMNS = ("file", "width", "height", "wnid", "class_index", "boxes")
IMAGE_EXTENSIONS = (".JPEG", ".jpeg", ".jpg", ".JPG", ".png", ".PNG")
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)


@dataclass(frozen=True, eq=False)
class ImageRecord:
    """One image, its class and its ground-truth boxes.

    Attributes
    ----------
    path : Path
        The image file.
    width, height : int
        Size of the stored image file, in pixels.
    class_index : int
        0-999 in the sorted-wnid ImageNet order, or 0-19 into :data:`VOC_CLASSES`.
    wnid : str
        WordNet id of the class (the class name for Pascal VOC, which has no wnid).
    boxes : (K, 4) float64 array, read-only
        Ground-truth boxes of the class, in pixels of the stored file, K >= 1.
    image_id : str

    Equality is identity (``eq=False``): comparing two records field by field would compare
    arrays, which has no single truth value.
    """

    path: Path
    width: int
    height: int
    class_index: int
    wnid: str
    boxes: np.ndarray
    image_id: str

    def __post_init__(self):
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"{self.image_id}: image size must be positive; got {self.width}x{self.height}")
        boxes = np.array(self.boxes, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) == 0:
            raise ValueError(f"{self.image_id}: boxes must have shape (K, 4) with K >= 1; got {boxes.shape}")
        if not np.all(np.isfinite(boxes)):
            raise ValueError(f"{self.image_id}: boxes contain NaN or infinite coordinates")
        inside = (
            (boxes[:, 0] >= 0) & (boxes[:, 0] <= boxes[:, 2]) & (boxes[:, 2] <= self.width)
            & (boxes[:, 1] >= 0) & (boxes[:, 1] <= boxes[:, 3]) & (boxes[:, 3] <= self.height)
        )
        if not np.all(inside):
            bad = boxes[np.flatnonzero(~inside)[0]].tolist()
            raise ValueError(
                f"{self.image_id}: box {bad} is inverted or outside the {self.width}x{self.height} image"
            )
        boxes.flags.writeable = False  # the record is frozen; so are its boxes
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "path", Path(self.path))


def _parse_boxes(text, where):
    """``"x0,y0,x1,y1;x0,y0,x1,y1"`` -> (K, 4) float64."""
    try:
        boxes = [[float(value) for value in box.split(",")] for box in text.split(";") if box.strip()]
    except ValueError as error:
        raise ValueError(f"{where}: boxes {text!r} are not numbers ({error})") from None
    if not boxes or any(len(box) != 4 for box in boxes):
        raise ValueError(f"{where}: boxes must be 'xmin,ymin,xmax,ymax' separated by ';'; got {text!r}")
    return np.array(boxes)


def read_manifest(folder_or_csv):
    """Read a manifest CSV (the format of the shared ``data/*/manifest.csv``).

    Required columns: ``file`` (relative to the CSV's folder), ``width``, ``height`` (of the
    stored file), ``wnid``, ``class_index``, ``boxes`` (``xmin,ymin,xmax,ymax`` in pixels of the
    stored file, several separated by ``;``). ``image_id`` is optional (default: the file
    name without extension); other columns are ignored. Manifest boxes are already in the
    continuous convention and are taken as they are. A UTF-8 byte-order mark (as spreadsheets
    save CSV) is accepted. Refused, naming the manifest line: a photo that does not exist, and
    two lines of the same ``image_id``.

    Parameters
    ----------
    folder_or_csv : str or Path
        The CSV file, or a folder holding ``manifest.csv``.

    Returns
    -------
    list of ImageRecord, in file order
    """
    path = Path(folder_or_csv)
    if path.is_dir():
        path = path / "manifest.csv"
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    try:
        # utf-8-sig: the same as utf-8, and drops a byte-order mark in front of "file".
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a manifest (not CSV text); a dataset is a folder with "
                         "manifest.csv, a manifest CSV, a VOC folder or an ImageNet XML "
                         "folder") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [column for column in MANIFEST_COLUMNS if column not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{path} is not a manifest: it lacks the column(s) {missing}; "
                         f"it has {reader.fieldnames}")
    records, line_of = [], {}
    for row in reader:
        line_number = reader.line_num  # the physical line (quoted fields may span lines)
        where = f"{path}, line {line_number}"
        try:
            width, height = int(row["width"]), int(row["height"])
            class_index = int(row["class_index"])
        except (TypeError, ValueError):
            raise ValueError(f"{where}: width, height and class_index must be integers") from None
        file = row["file"]
        image_id = row.get("image_id") or Path(file).stem
        if image_id in line_of:
            raise ValueError(f"{path}: lines {line_of[image_id]} and {line_number} both list "
                             f"image {image_id!r}; remove one")
        line_of[image_id] = line_number
        if not (path.parent / file).is_file():
            raise FileNotFoundError(f"{where}: photo {file!r} not found "
                                    f"({path.parent / file})")
        try:
            records.append(ImageRecord(
                path=path.parent / file, width=width, height=height, class_index=class_index,
                wnid=row["wnid"], boxes=_parse_boxes(row["boxes"], where), image_id=image_id,
            ))
        except ValueError as error:
            message = str(error)
            raise ValueError(message if message.startswith(where) else f"{where}: {message}") from None
    return records


def read_wnids(path):
    """WordNet ids in class-index order from a file whose lines start with one (``synset_words.txt``).

    Returns
    -------
    list of str
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"wnid list not found: {path}")
    return [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _text(element, tag, where):
    found = element.find(tag)
    if found is None or found.text is None:
        raise ValueError(f"{where}: missing <{tag}>")
    return found.text.strip()


def _read_pascal_xml(xml_path):
    """Size and objects of one PASCAL-style annotation file (ImageNet and VOC share it).

    Returns ``(filename or None, width, height, [(name, difficult, (K=1, 4) box), ...])`` with
    boxes converted from 1-based inclusive pixel indices ``(x0, y0, x1, y1)`` to the continuous
    ``(x0 - 1, y0 - 1, x1, y1)`` and clipped to the image, as a few official annotations reach
    one pixel past the border.
    """
    where = str(xml_path)
    try:
        root = ElementTree.parse(xml_path).getroot()
    except ElementTree.ParseError as error:
        raise ValueError(f"{where}: not valid XML ({error})") from None
    width = int(float(_text(root, "size/width", where)))
    height = int(float(_text(root, "size/height", where)))
    objects = []
    for element in root.iter("object"):
        corners = [float(_text(element, f"bndbox/{tag}", where)) for tag in ("xmin", "ymin", "xmax", "ymax")]
        box = np.array(corners) - np.array([1.0, 1.0, 0.0, 0.0])
        box = np.clip(box, 0, [width, height, width, height])
        difficult_element = element.find("difficult")
        difficult = difficult_element is not None and (difficult_element.text or "0").strip() == "1"
        objects.append((_text(element, "name", where), difficult, box))
    filename_element = root.find("filename")
    filename = filename_element.text.strip() if filename_element is not None and filename_element.text else None
    return filename, width, height, objects


def _find_image(images_dir, name):
    """``images_dir / name``, trying the usual extensions when ``name`` has none that exists."""
    candidates = [images_dir / name] + [images_dir / (name + extension) for extension in IMAGE_EXTENSIONS]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"image {name!r} not found in {images_dir}")


def read_imagenet_xml(images_dir, annotations_dir, wnids):
    """Read the ILSVRC2012 validation layout: one XML annotation file per image.

    Each XML gives ``size/width``, ``size/height`` and objects with ``name`` (the wnid) and
    ``bndbox`` ``xmin, ymin, xmax, ymax``. These are 1-based *inclusive* pixel indices: a box
    over the first pixel column reads ``xmin = xmax = 1``. In continuous coordinates (pixel
    ``j`` covers ``[j, j + 1)``, counted from 0) that is ``(xmin - 1, ymin - 1, xmax, ymax)``.
    In ILSVRC2012 val every object of an image carries the image's label.

    Parameters
    ----------
    images_dir, annotations_dir : str or Path
        Images are found as ``<filename from the XML, else the XML's stem>`` plus the usual
        extensions (``.JPEG``, ``.jpg``, ...).
    wnids : sequence of str, or path to a ``synset_words.txt``-like file
        The wnid of each class index (1000 for ILSVRC2012, in sorted order).

    Returns
    -------
    list of ImageRecord, sorted by annotation file name
    """
    images_dir, annotations_dir = Path(images_dir), Path(annotations_dir)
    for folder in (images_dir, annotations_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"folder not found: {folder}")
    if isinstance(wnids, (str, Path)):
        wnids = read_wnids(wnids)
    class_of_wnid = {wnid: index for index, wnid in enumerate(wnids)}
    xml_paths = sorted(annotations_dir.glob("*.xml"))
    if not xml_paths:
        raise FileNotFoundError(f"no .xml annotation files in {annotations_dir}")
    records = []
    for xml_path in xml_paths:
        filename, width, height, objects = _read_pascal_xml(xml_path)
        if not objects:
            raise ValueError(f"{xml_path}: no <object>, so no class and no box")
        names = {name for name, _, _ in objects}
        if len(names) != 1:
            raise ValueError(f"{xml_path}: objects of several classes {sorted(names)}; expected one label")
        wnid = names.pop()
        if wnid not in class_of_wnid:
            raise ValueError(f"{xml_path}: wnid {wnid!r} is not in the given wnid list")
        records.append(ImageRecord(
            path=_find_image(images_dir, filename or xml_path.stem), width=width, height=height,
            class_index=class_of_wnid[wnid], wnid=wnid,
            boxes=np.stack([box for _, _, box in objects]), image_id=xml_path.stem,
        ))
    return records


def read_voc(root, split, skip_difficult=True):
    """Read Pascal VOC: one record per (image, class present in it).

    CorLoc on VOC (Deselaers et al.) scores every image once per class it contains, against the
    boxes of that class, so an image with a dog and two people gives two records: the dog's
    box, and both people's boxes. VOC coordinates are 1-based inclusive like ImageNet's and are
    converted the same way, ``(xmin - 1, ymin - 1, xmax, ymax)``.

    Parameters
    ----------
    root : str or Path
        Folder with ``JPEGImages/``, ``Annotations/`` and ``ImageSets/Main/<split>.txt``
        (e.g. ``VOCdevkit/VOC2007``).
    split : str
        ``"train"``, ``"val"``, ``"trainval"`` or ``"test"``.
    skip_difficult : bool
        Drop objects marked ``difficult``; a class whose every box is difficult then gives no
        record for that image.

    Returns
    -------
    list of ImageRecord with ``class_index`` into :data:`VOC_CLASSES`, ``wnid`` the class name
    and ``image_id`` ``"<image id>/<class name>"``; in split-file order, then class order.
    """
    root = Path(root)
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        raise FileNotFoundError(f"VOC split file not found: {split_file}")
    image_ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
    records = []
    for image_id in image_ids:
        xml_path = root / "Annotations" / f"{image_id}.xml"
        if not xml_path.is_file():
            raise FileNotFoundError(f"VOC annotation not found: {xml_path}")
        filename, width, height, objects = _read_pascal_xml(xml_path)
        image_path = _find_image(root / "JPEGImages", filename or image_id)
        boxes_of_class = {}
        for name, difficult, box in objects:
            if name not in VOC_CLASSES:
                raise ValueError(f"{xml_path}: {name!r} is not one of the 20 VOC classes")
            if not (difficult and skip_difficult):
                boxes_of_class.setdefault(name, []).append(box)
        for name in sorted(boxes_of_class, key=VOC_CLASSES.index):
            records.append(ImageRecord(
                path=image_path, width=width, height=height, class_index=VOC_CLASSES.index(name),
                wnid=name, boxes=np.stack(boxes_of_class[name]), image_id=f"{image_id}/{name}",
            ))
    return records
