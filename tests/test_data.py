"""The WikiChurches reader against a tiny hand-made folder in the real on-disk format."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from sightline.data import (
    MAIN_STYLES,
    DataError,
    Region,
    Sample,
    box_masks,
    church_of,
    dataset_fingerprint,
    load_image,
    load_wikichurches,
    union_mask,
)
from sightline.geometry import Geometry

GOTHIC, ROMANESQUE, RENAISSANCE, BAROQUE = "Q176483", "Q46261", "Q236122", "Q840829"
META = [{"name": n, "parents": []} for n in ("Apse", "Portal", "Round Arch", "Door")]
# The EXIF-rotated image: upright it is 40 x 60 with a bright patch on this relative box.
PATCH = {"left": 0.5, "top": 0.1, "width": 0.25, "height": 0.3}


def _element(left, top, width, height, label=0):
    return {"left": left, "top": top, "width": width, "height": height, "label": label}


def _single(element):
    return {"group_label": element["label"], "elements": [element]}


def _rotated_jpeg(path: Path) -> None:
    """An upright 40 x 60 image with a white patch on PATCH, stored rotated with Orientation=6."""
    upright = np.full((60, 40, 3), 30, np.uint8)
    x0, y0 = int(PATCH["left"] * 40), int(PATCH["top"] * 60)
    x1, y1 = x0 + int(PATCH["width"] * 40), y0 + int(PATCH["height"] * 60)
    upright[y0:y1, x0:x1] = 255
    # Orientation 6 means "rotate 90 degrees clockwise to display": store it counter-clockwise.
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, exif=exif, quality=95)


def write_fixture(root: Path) -> Path:
    """A WikiChurches folder: 6 annotated images in assorted formats, splits in labels/."""
    images = root / "images"
    images.mkdir(parents=True)
    Image.new("RGB", (40, 20), (90, 90, 90)).save(images / "Q1_wd0.jpg")
    _rotated_jpeg(images / "Q2_wd0.jpg")
    palette = Image.new("P", (10, 8))
    palette.putpalette([255, 0, 0] * 256)
    palette.save(images / "Q3_wd0.png")
    Image.new("CMYK", (12, 10), (0, 0, 0, 0)).save(images / "Q4_wd0.jpg")
    Image.fromarray(np.full((6, 9), 65535, np.uint16)).save(images / "Q5_wd0.png")
    Image.new("RGBA", (7, 5), (0, 0, 255, 128)).save(images / "Q6_wd0.tif")
    for name in ("Q1_wd1.jpg", "Q1_wd2.jpg", "Q10_wd0.jpg", "Q11_wd0.jpg", "Q12_wd0.jpg"):
        Image.new("RGB", (8, 8)).save(images / name)

    whole = _element(0.1, 0.1, 0.5, 0.5)
    annotations = {
        "Q1_wd0.jpg": {
            "styles": [ROMANESQUE],
            "bbox_groups": [
                _single(_element(0.25, 0.5, 0.5, 0.25, 0)),
                _single(_element(-0.1, 0.9, 0.3, 0.2, 0)),  # runs past the left and bottom
                {  # a composite portal: an arch and a door
                    "group_label": 1,
                    "elements": [_element(0.4, 0.1, 0.2, 0.2, 2), _element(0.45, 0.3, 0.1, 0.5, 3)],
                },
                _single(_element(1.2, 0.2, 0.1, 0.1, 0)),  # wholly outside: zero area
            ],
        },
        "Q2_wd0.jpg": {"styles": [GOTHIC], "bbox_groups": [_single({**PATCH, "label": 0})]},
        "Q3_wd0.png": {"styles": [GOTHIC, ROMANESQUE], "bbox_groups": [_single(whole)]},
        "Q4_wd0.jpg": {"styles": ["Q9999", BAROQUE], "bbox_groups": [_single(whole)]},
        "Q5_wd0.png": {"styles": ["Q9999"], "bbox_groups": [_single(whole)]},
        "Q6_wd0.tif": {"styles": [RENAISSANCE], "bbox_groups": [_single(whole)]},
    }
    (root / "building_parts.json").write_text(
        json.dumps({"meta": META, "annotations": annotations})
    )
    labels = root / "labels"
    labels.mkdir()
    splits = {
        "train": [f"Q1_wd1.jpg {ROMANESQUE}", f"Q10_wd0.jpg {GOTHIC}", f"Q2_wd0.jpg {GOTHIC}"],
        "val": [f"Q11_wd0.jpg {RENAISSANCE}"],
        "test": [f"Q1_wd2.jpg {ROMANESQUE}", f"Q12_wd0.jpg {BAROQUE}", ""],
    }
    for split, lines in splits.items():
        (labels / f"wc4_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def _edit_annotations(root: Path, edit) -> None:
    path = root / "building_parts.json"
    parts = json.loads(path.read_text())
    edit(parts["annotations"])
    path.write_text(json.dumps(parts))


@pytest.fixture
def wc_root(tmp_path: Path) -> Path:
    return write_fixture(tmp_path / "wikichurches")


def _load(root: Path, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wc = load_wikichurches(root, **kwargs)
    return wc, [str(w.message) for w in caught]


def test_reads_samples_boxes_and_styles(wc_root: Path) -> None:
    wc, _ = _load(wc_root)
    assert [s.image_id for s in wc.samples] == [
        "Q1_wd0.jpg", "Q2_wd0.jpg", "Q3_wd0.png", "Q4_wd0.jpg", "Q5_wd0.png", "Q6_wd0.tif"
    ]  # fmt: skip
    assert wc.features == ["Apse", "Portal", "Round Arch", "Door"]
    first = wc.samples[0]
    assert (church_of(first.image_id), first.width, first.height) == ("Q1", 40, 20)
    assert first.path == wc_root / "images" / "Q1_wd0.jpg"
    assert first.boxes[0] == Region(
        0.25, 0.5, 0.5, 0.25, label=0, group_label=0, group=0, feature="Apse"
    )
    arch, door = first.boxes[2:4]
    assert (arch.feature, arch.group_label, arch.group) == ("Round Arch", 1, 2)
    assert (door.feature, door.group_label, door.group) == ("Door", 1, 2)
    assert first.boxes_ltwh().shape == (4, 4)

    by_id = {s.image_id: s for s in wc.samples}
    assert by_id["Q3_wd0.png"].tags == ("Gothic", "Romanesque")
    assert by_id["Q3_wd0.png"].label == "Gothic"
    assert by_id["Q4_wd0.jpg"].tags == ("Q9999", "Baroque")
    assert by_id["Q4_wd0.jpg"].label == "Baroque"
    assert by_id["Q5_wd0.png"].label == "Other"
    assert wc.label_name == "style" and wc.has_labels and wc.kind == "wikichurches"
    assert set(MAIN_STYLES.values()) == {"Romanesque", "Gothic", "Renaissance", "Baroque"}


def test_boxes_are_clamped_and_zero_area_boxes_skipped_each_with_one_warning(wc_root: Path
                                                                           ) -> None:
    wc, messages = _load(wc_root)
    assert messages[0] == (
        f"1 boxes in {wc_root / 'building_parts.json'} lie partly outside their image and were "
        "clamped to it: image Q1_wd0.jpg, group 1; see report['clamped_boxes'].")
    assert len(messages) == 2 and "1 boxes" in messages[1] and "zero_area_boxes" in messages[1]
    clamped = wc.samples[0].boxes[1]
    assert clamped.left == 0.0 and clamped.top == pytest.approx(0.9)
    assert clamped.width == pytest.approx(0.2) and clamped.height == pytest.approx(0.1)
    assert len(wc.samples[0].boxes) == 4
    assert wc.report["zero_area_boxes"] == [{"image_id": "Q1_wd0.jpg", "group": 3, "label": 0}]
    assert [b["group"] for b in wc.report["clamped_boxes"]] == [1]  # group 3 is dropped
    assert wc.report["clamped_boxes"][0]["clamped"] == pytest.approx([0.0, 0.9, 0.2, 0.1])
    assert wc.report["counts"]["zero_area_boxes"] == 1


def test_exif_orientation_is_applied_and_boxes_refer_to_the_upright_image(wc_root: Path) -> None:
    sample = next(s for s in _load(wc_root)[0].samples if s.image_id == "Q2_wd0.jpg")
    with Image.open(sample.path) as stored:
        assert stored.size == (60, 40)  # stored sideways
    assert (sample.width, sample.height) == (40, 60)  # from the header, upright
    pixels = np.asarray(load_image(sample.path).convert("L"), dtype=float)
    assert pixels.shape == (60, 40)
    (box,) = sample.boxes
    inside = np.zeros(pixels.shape, bool)
    inside[round(box.top * 60) : round((box.top + box.height) * 60),
           round(box.left * 40) : round((box.left + box.width) * 40)] = True  # fmt: skip
    assert pixels[inside].mean() > 200
    assert pixels[~inside].mean() < 60


@pytest.mark.parametrize(
    ("name", "size", "colour"),
    [
        ("Q3_wd0.png", (10, 8), (255, 0, 0)),  # palette
        ("Q4_wd0.jpg", (12, 10), (255, 255, 255)),  # CMYK JPEG
        ("Q5_wd0.png", (9, 6), (255, 255, 255)),  # 16-bit grey, full scale
        ("Q6_wd0.tif", (7, 5), (0, 0, 255)),  # RGBA TIFF
    ],
)
def test_load_image_gives_rgb_for_any_mode(wc_root: Path, name, size, colour) -> None:
    image = load_image(wc_root / "images" / name)
    assert image.mode == "RGB" and image.size == size
    assert np.abs(np.asarray(image, dtype=int) - colour).max() <= 3


@pytest.mark.parametrize("pillow_lenient", [False, True])
def test_truncated_jpeg_reads_its_header_but_fails_to_decode_naming_the_file(
    wc_root: Path, pillow_lenient: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # WeasyPrint sets Pillow's process-wide LOAD_TRUNCATED_IMAGES on import: still an error
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", pillow_lenient)
    path = wc_root / "images" / "Q7_wd0.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:800])
    _edit_annotations(wc_root, lambda a: a.update({"Q7_wd0.jpg": a["Q1_wd0.jpg"]}))
    wc, _ = _load(wc_root)
    assert "Q7_wd0.jpg" in [s.image_id for s in wc.samples]
    with pytest.raises(DataError, match="Q7_wd0.jpg.*truncated"):
        load_image(path)


def test_unparseable_image_header(wc_root: Path) -> None:
    (wc_root / "images" / "Q8_wd0.jpg").write_bytes(b"<html>not an image</html>")
    _edit_annotations(wc_root, lambda a: a.update({"Q8_wd0.jpg": a["Q1_wd0.jpg"]}))
    with pytest.raises(DataError, match="Q8_wd0.jpg.*header"):
        load_wikichurches(wc_root)
    wc, messages = _load(wc_root, strict=False)
    assert wc.report["unreadable_images"] == ["Q8_wd0.jpg"]
    assert "Q8_wd0.jpg" not in [s.image_id for s in wc.samples]
    assert any("could not be read" in m for m in messages)


def test_missing_images_strict_lists_them_and_says_where_to_get_them(wc_root: Path) -> None:
    names = [f"Q{100 + i}_wd0.jpg" for i in range(12)]
    _edit_annotations(wc_root, lambda a: a.update({n: a["Q1_wd0.jpg"] for n in names}))
    with pytest.raises(DataError) as error:
        load_wikichurches(wc_root)
    message = str(error.value)
    assert "12 image files are missing" in message and "and 2 more" in message
    assert names[0] in message and names[-1] not in message
    assert "images.zip" in message and "https://zenodo.org/records/5166987" in message


def test_missing_images_non_strict_are_skipped_with_one_warning(wc_root: Path) -> None:
    _edit_annotations(wc_root, lambda a: a.update({"Q99_wd0.jpg": a["Q1_wd0.jpg"]}))
    (wc_root / "images" / "Q12_wd0.jpg").unlink()  # a pool image goes missing too
    wc, messages = _load(wc_root, strict=False)
    assert [m for m in messages if "image files are missing" in m] == [
        f"dataset.strict: false: 2 image files are missing from {wc_root / 'images'} and were "
        "skipped (e.g. Q12_wd0.jpg); "
        "download images.zip from https://zenodo.org/records/5166987 to get them."
    ]
    assert wc.report["missing_images"] == ["Q12_wd0.jpg", "Q99_wd0.jpg"]
    assert "Q99_wd0.jpg" not in [s.image_id for s in wc.samples]
    assert "Q12_wd0.jpg" not in set(wc.pool["image_id"])


@pytest.mark.parametrize("remove", ["root", "building_parts.json"])
def test_missing_dataset_names_the_files_to_download(tmp_path: Path, remove: str) -> None:
    root = write_fixture(tmp_path / "wc") if remove != "root" else tmp_path / "absent"
    if remove != "root":
        (root / remove).unlink()
    with pytest.raises(DataError) as error:
        load_wikichurches(root)
    message = str(error.value)
    for needed in ("building_parts.json", "churches.json", "images.zip", "labels.zip", "5166987"):
        assert needed in message
    assert f"{root}/images/" in message


def test_unknown_label_names_the_image_and_label(wc_root: Path) -> None:
    def relabel(annotations: dict) -> None:
        annotations["Q6_wd0.tif"]["bbox_groups"][0]["elements"][0]["label"] = 17

    _edit_annotations(wc_root, relabel)
    with pytest.raises(DataError, match="Q6_wd0.tif.*unknown label 17"):
        load_wikichurches(wc_root)


def test_malformed_json_and_split_lines_name_the_file(wc_root: Path) -> None:
    (wc_root / "labels" / "wc4_val.txt").write_text("Q11_wd0.jpg Q42\n")
    with pytest.raises(DataError, match=r"wc4_val.txt, line 1"):
        load_wikichurches(wc_root)
    (wc_root / "labels" / "wc4_val.txt").unlink()
    with pytest.raises(DataError, match="wc4_val.txt missing"):
        load_wikichurches(wc_root)
    (wc_root / "building_parts.json").write_text("{not json")
    with pytest.raises(DataError, match="building_parts.json: not readable JSON"):
        load_wikichurches(wc_root)


def test_pool_from_split_files_keeps_annotated_churches_out_of_training(wc_root: Path) -> None:
    wc, _ = _load(wc_root)
    pool = wc.pool
    assert list(pool.columns) == ["image_id", "church_id", "path", "style", "split"]
    assert dict(zip(pool["image_id"], pool["split"], strict=True)) == {
        "Q10_wd0.jpg": "train",
        "Q11_wd0.jpg": "val",
        "Q12_wd0.jpg": "test",
        "Q1_wd2.jpg": "test",  # a sibling of an annotated image, already in test: kept
        "Q2_wd0.jpg": "test",  # annotated, listed in train: moved to test
    }
    assert wc.report["dropped_for_leakage"] == ["Q1_wd1.jpg"]
    assert wc.report["annotated_moved_to_test"] == ["Q2_wd0.jpg"]
    assert wc.report["pool_splits"] == {"train": 1, "val": 1, "test": 3}
    assert pool.set_index("image_id").loc["Q12_wd0.jpg", "style"] == "Baroque"
    assert pool.set_index("image_id").loc["Q12_wd0.jpg", "path"] == wc_root / "images/Q12_wd0.jpg"
    annotated_churches = {church_of(s.image_id) for s in wc.samples}
    training = pool[pool["split"].isin(["train", "val"])]
    assert not set(training["church_id"]) & annotated_churches


def test_split_files_are_also_found_in_the_root(wc_root: Path) -> None:
    for split in ("train", "val", "test"):
        (wc_root / "labels" / f"wc4_{split}.txt").rename(wc_root / f"wc4_{split}.txt")
    wc, _ = _load(wc_root)
    assert wc.report["pool_source"] == f"split files in {wc_root}"
    assert len(wc.pool) == 5


def test_pool_derived_from_churches_json_without_split_files(wc_root: Path) -> None:
    for split in ("train", "val", "test"):
        (wc_root / "labels" / f"wc4_{split}.txt").unlink()
    wc, _ = _load(wc_root)
    assert wc.report["pool_source"] == "none" and wc.pool.empty

    churches = {
        "Q1": {"id": "Q1", "name": "A", "built_year": 1150, "styles": [ROMANESQUE]},
        "Q10": {"id": "Q10", "name": "B", "built_year": [1200, 1250], "styles": [GOTHIC]},
        "Q11": {"id": "Q11", "name": "C", "built_year": None, "styles": [RENAISSANCE, BAROQUE]},
        "Q12": {"id": "Q12", "name": "D", "built_year": None, "styles": ["Q9999", BAROQUE]},
    }
    (wc_root / "churches.json").write_text(json.dumps(churches))
    wc, _ = _load(wc_root)
    pool = wc.pool.set_index("image_id")
    assert wc.report["pool_source"] == "derived from churches.json"
    assert "Q11_wd0.jpg" not in pool.index  # two main styles: no single label
    assert pool.loc["Q12_wd0.jpg", "style"] == "Baroque"
    assert pool.loc["Q1_wd0.jpg", "split"] == "test"  # annotated
    assert not (pool["church_id"].eq("Q1") & pool["split"].isin(["train", "val"])).any()
    assert set(pool["split"]) <= {"train", "val", "test"}
    again, _ = _load(wc_root)
    assert again.pool.equals(wc.pool)


def test_box_masks_squash_geometry() -> None:
    sample = _sample(Region(0.25, 0.5, 0.5, 0.25, 0, 0, 0, "Apse"), width=400, height=200)
    masks = box_masks(sample, Geometry(size=224), 16)
    expected = np.zeros((16, 16), bool)
    expected[8:12, 4:12] = True
    assert masks.shape == (1, 16, 16) and masks.dtype == bool
    np.testing.assert_array_equal(masks[0], expected)


def test_box_masks_crop_geometry_by_hand() -> None:
    # 400 x 200 -> Resize(256) gives 512 x 256; CenterCrop(224) keeps x 144..368, y 16..240.
    inside = Region(
        0.5, 0.25, 0.125, 0.25, 0, 0, 0, "Apse"
    )  # x 256..320, y 64..128 -> 112..176, 48..112
    partial = Region(0.2, 0.0, 0.2, 0.5, 0, 0, 1, "Apse")  # x 102.4..204.8 -> 0..60.8, y 0..112
    outside = Region(0.0, 0.0, 0.2, 1.0, 0, 0, 2, "Apse")  # x 0..102.4: left of the crop
    masks = box_masks(_sample(inside, partial, outside, width=400, height=200),
                      Geometry(size=224, resize=256), 224)  # fmt: skip
    expected = np.zeros((3, 224, 224), bool)
    expected[0, 48:112, 112:176] = True
    expected[1, 0:112, 0:61] = True
    np.testing.assert_array_equal(masks, expected)
    np.testing.assert_array_equal(union_mask(masks), expected[0] | expected[1])


def test_union_mask_of_no_boxes_is_empty() -> None:
    sample = _sample(width=10, height=10)
    assert sample.boxes_ltwh().shape == (0, 4)
    assert not union_mask(box_masks(sample, Geometry(size=32), 8)).any()
    assert union_mask(box_masks(sample, Geometry(size=32), 8)).shape == (8, 8)


def test_dataset_fingerprint_follows_what_the_reader_reads(wc_root: Path) -> None:
    first = dataset_fingerprint(wc_root)
    assert first == dataset_fingerprint(wc_root)
    (wc_root / "style_names.txt").write_text("Q46261 Romanesque\n")  # not read: no change
    assert dataset_fingerprint(wc_root) == first
    Image.new("RGB", (4, 4)).save(wc_root / "images" / "Q13_wd0.jpg")
    second = dataset_fingerprint(wc_root)
    assert second != first
    _edit_annotations(wc_root, lambda a: a.pop("Q6_wd0.tif"))
    assert dataset_fingerprint(wc_root) != second


def _sample(*boxes: Region, width: int, height: int) -> Sample:
    return Sample("Q0_wd0.jpg", Path("Q0_wd0.jpg"), boxes, width, height, label="Gothic")
