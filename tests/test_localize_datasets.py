import dataclasses

import numpy as np
import pytest

from conftest import shared_path
from sensloc.data.datasets import (ImageRecord, VOC_CLASSES, read_imagenet_xml, read_manifest,
                                   read_voc, read_wnids)

MANIFEST = """file,width,height,wnid,class_index,class_name,boxes,image_id
images/a.JPEG,227,200,n01440764,0,tench,"1.5,2,100,150",img_a
images/b.JPEG,64,64,n01443537,1,goldfish,"0,0,10,10;20,30,64,64",img_b
"""


def write_manifest(folder, text=MANIFEST, encoding="utf-8"):
    """``folder/manifest.csv`` with ``text``, and the (empty) photo files it lists."""
    (folder / "images").mkdir(exist_ok=True)
    for name in ("a.JPEG", "b.JPEG"):
        (folder / "images" / name).touch()
    (folder / "manifest.csv").write_text(text, encoding=encoding)
    return folder


def pascal_xml(filename, width, height, objects):
    """A PASCAL-style annotation; objects are (name, difficult, (xmin, ymin, xmax, ymax))."""
    parts = [f"<annotation><filename>{filename}</filename>"
             f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"]
    for name, difficult, (x0, y0, x1, y1) in objects:
        parts.append(f"<object><name>{name}</name><difficult>{difficult}</difficult>"
                     f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")
    return "".join(parts) + "</annotation>"


def test_read_manifest_from_folder_or_file(tmp_path):
    write_manifest(tmp_path)
    records = read_manifest(tmp_path)
    assert [r.image_id for r in records] == ["img_a", "img_b"]
    first, second = records
    assert first.path == tmp_path / "images" / "a.JPEG"
    assert (first.width, first.height, first.class_index, first.wnid) == (227, 200, 0, "n01440764")
    np.testing.assert_array_equal(first.boxes, [[1.5, 2, 100, 150]])
    np.testing.assert_array_equal(second.boxes, [[0, 0, 10, 10], [20, 30, 64, 64]])
    assert second.boxes.dtype == np.float64
    assert read_manifest(tmp_path / "manifest.csv")[1].image_id == "img_b"


def test_records_are_frozen_and_their_boxes_read_only(tmp_path):
    write_manifest(tmp_path)
    record = read_manifest(tmp_path)[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.width = 5
    with pytest.raises(ValueError, match="read-only"):
        record.boxes[0, 0] = 3.0


@pytest.mark.parametrize("edit, message", [
    (lambda text: text.replace(",boxes,", ",bxs,"), r"lacks the column\(s\) \['boxes'\]"),
    (lambda text: text.replace('"1.5,2,100,150"', '"1.5,2,100"'), "line 2"),
    (lambda text: text.replace('"1.5,2,100,150"', '"1.5,2,300,150"'), "outside the 227x200 image"),
    (lambda text: text.replace('"1.5,2,100,150"', '"50,2,10,150"'), "inverted"),
    (lambda text: text.replace(",227,", ",wide,"), "integers"),
])
def test_read_manifest_names_the_problem(tmp_path, edit, message):
    write_manifest(tmp_path, edit(MANIFEST))
    with pytest.raises(ValueError, match=message):
        read_manifest(tmp_path)


def test_a_manifest_with_a_byte_order_mark_reads_like_one_without(tmp_path):
    write_manifest(tmp_path, encoding="utf-8-sig")
    assert (tmp_path / "manifest.csv").read_bytes()[:3] == b"\xef\xbb\xbf"
    assert [r.image_id for r in read_manifest(tmp_path)] == ["img_a", "img_b"]


def test_duplicate_rows_and_missing_photos_are_refused_naming_the_lines(tmp_path):
    lines = MANIFEST.splitlines()
    write_manifest(tmp_path, "\n".join(lines + [lines[1].replace("a.JPEG", "c.JPEG")]) + "\n")
    with pytest.raises(ValueError, match=r"manifest.csv: lines 2 and 4 both list image 'img_a'"):
        read_manifest(tmp_path)
    write_manifest(tmp_path, MANIFEST.replace("b.JPEG", "gone.JPEG"))
    with pytest.raises(FileNotFoundError, match=r"manifest.csv, line 3: photo 'images/gone.JPEG' "
                                                r"not found"):
        read_manifest(tmp_path)


def test_a_file_that_is_not_a_manifest_is_named_as_such(tmp_path):
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)))
    with pytest.raises(ValueError, match=r"cat.jpg is not a manifest \(not CSV text\)"):
        read_manifest(photo)
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"notes.csv is not a manifest: it lacks the column"):
        read_manifest(tmp_path / "notes.csv")


def test_read_manifest_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.csv"):
        read_manifest(tmp_path)


def make_imagenet_layout(tmp_path):
    images, annotations = tmp_path / "val", tmp_path / "xml"
    images.mkdir()
    annotations.mkdir()
    for stem in ("ILSVRC2012_val_00000001", "ILSVRC2012_val_00000002"):
        (images / f"{stem}.JPEG").write_bytes(b"")
    (annotations / "ILSVRC2012_val_00000001.xml").write_text(pascal_xml(
        "ILSVRC2012_val_00000001", 500, 375, [("n01443537", 0, (1, 1, 1, 1)), ("n01443537", 0, (11, 21, 500, 375))]))
    (annotations / "ILSVRC2012_val_00000002.xml").write_text(pascal_xml(
        "ILSVRC2012_val_00000002", 64, 48, [("n01440764", 0, (5, 6, 60, 40))]))
    (tmp_path / "synsets.txt").write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish\n")
    return images, annotations


def test_read_imagenet_xml_converts_inclusive_one_based_pixels(tmp_path):
    images, annotations = make_imagenet_layout(tmp_path)
    first, second = read_imagenet_xml(images, annotations, tmp_path / "synsets.txt")
    # (1, 1, 1, 1) is the single top-left pixel: [0, 1) x [0, 1). xmax = width is the last column.
    np.testing.assert_array_equal(first.boxes, [[0, 0, 1, 1], [10, 20, 500, 375]])
    assert (first.class_index, first.wnid, first.width, first.height) == (1, "n01443537", 500, 375)
    assert first.path == images / "ILSVRC2012_val_00000001.JPEG"
    np.testing.assert_array_equal(second.boxes, [[4, 5, 60, 40]])
    assert second.class_index == 0 and second.image_id == "ILSVRC2012_val_00000002"


def test_read_imagenet_xml_names_the_problem(tmp_path):
    images, annotations = make_imagenet_layout(tmp_path)
    with pytest.raises(ValueError, match="n01440764"):
        read_imagenet_xml(images, annotations, ["n01443537"])
    (images / "ILSVRC2012_val_00000002.JPEG").unlink()
    with pytest.raises(FileNotFoundError, match="ILSVRC2012_val_00000002"):
        read_imagenet_xml(images, annotations, ["n01440764", "n01443537"])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_imagenet_xml(tmp_path / "nowhere", annotations, ["n01440764"])


def make_voc_layout(tmp_path):
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "ImageSets/Main/val.txt").write_text("000005\n000007\n")
    for stem in ("000005", "000007"):
        (tmp_path / "JPEGImages" / f"{stem}.jpg").write_bytes(b"")
    (tmp_path / "Annotations/000005.xml").write_text(pascal_xml("000005.jpg", 500, 375, [
        ("person", 0, (10, 20, 110, 220)), ("dog", 0, (200, 100, 400, 300)), ("person", 1, (1, 1, 50, 50))]))
    (tmp_path / "Annotations/000007.xml").write_text(pascal_xml("000007.jpg", 300, 200, [("cat", 1, (2, 3, 30, 40))]))


def test_read_voc_gives_one_record_per_image_and_class(tmp_path):
    make_voc_layout(tmp_path)
    records = read_voc(tmp_path, "val")
    assert [(r.image_id, r.class_index) for r in records] == [("000005/dog", 11), ("000005/person", 14)]
    assert VOC_CLASSES[11] == "dog" and records[1].wnid == "person"
    np.testing.assert_array_equal(records[1].boxes, [[9, 19, 110, 220]])  # the difficult person skipped
    with_difficult = read_voc(tmp_path, "val", skip_difficult=False)
    assert [r.image_id for r in with_difficult] == ["000005/dog", "000005/person", "000007/cat"]
    np.testing.assert_array_equal(with_difficult[1].boxes, [[9, 19, 110, 220], [0, 0, 50, 50]])
    assert with_difficult[2].path == tmp_path / "JPEGImages" / "000007.jpg"
    with pytest.raises(FileNotFoundError, match="test.txt"):
        read_voc(tmp_path, "test")


def test_image_record_refuses_boxes_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"\(K, 4\)"):
        ImageRecord("x.jpg", 10, 10, 0, "n0", np.zeros((0, 4)), "x")


@pytest.mark.parametrize("folder, count", [
    ("imagenet-val-227", 649), ("imagenet-val-full", 43), ("tiny-imagenet-val", 5106),
])
def test_real_manifests(folder, count):
    records = read_manifest(shared_path("data", folder))
    wnids = read_wnids(shared_path("data", "synset_words.txt"))
    assert len(records) == count and len(wnids) == 1000
    for record in records:
        assert wnids[record.class_index] == record.wnid
        boxes = record.boxes
        assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, :2] <= boxes[:, 2:])
        assert np.all(boxes[:, 2] <= record.width) and np.all(boxes[:, 3] <= record.height)
        assert record.path.is_file()
