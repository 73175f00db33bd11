"""The masks reader: binary and soft masks, per-feature folders, labels and bad input."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sightline import config, data
from sightline.data import DataError, DataWarning, load_masks
from sightline.geometry import Geometry

SIZE = 32


def _image(root: Path, name: str, size=(SIZE, SIZE)) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (100, 90, 80)).save(root / "images" / name)


def _mask(path: Path, grey: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grey.astype(np.uint8), "L").save(path)


def _soft() -> np.ndarray:
    """Grey levels: a faint wide blob (60), a brighter core (180) and a peak (255)."""
    grey = np.zeros((SIZE, SIZE), np.uint8)
    grey[4:28, 4:28] = 60
    grey[10:20, 8:22] = 180
    grey[13:16, 12:15] = 255
    return grey


def test_binary_masks_one_region_per_image(tmp_path):
    binary = np.zeros((SIZE, SIZE), np.uint8)
    binary[5:12, 3:30] = 255
    binary[20, 7] = 255
    for name in ("a.png", "b.jpg"):
        _image(tmp_path, name)
    _mask(tmp_path / "masks" / "a.png", binary)
    ds = data.load_dataset({"kind": "masks", "root": str(tmp_path)})
    assert ds.kind == "masks" and ds.features == ["mask"] and not ds.has_labels
    assert [s.image_id for s in ds.samples] == ["a.png"]
    assert ds.report["images_without_masks"] == ["b.jpg"]
    (region,) = ds.samples[0].boxes
    assert region.is_mask and region.feature == "mask"
    assert (region.left, region.top, region.width, region.height) == (3 / SIZE, 5 / SIZE,
                                                                      27 / SIZE, 16 / SIZE)
    np.testing.assert_array_equal(region.mask(), binary > 0)
    frame = data.box_masks(ds.samples[0], Geometry(size=SIZE), SIZE)
    np.testing.assert_array_equal(frame[0], binary > 0)
    # half the resolution: each frame pixel samples the image pixel under its centre
    np.testing.assert_array_equal(data.box_masks(ds.samples[0], Geometry(size=SIZE), 16)[0],
                                  (binary > 0)[1::2, 1::2])


@pytest.mark.parametrize("rule", ["std", "percentile"])
def test_soft_masks_are_binarised_by_the_shared_interest_rules(tmp_path, rule):
    _image(tmp_path, "a.png")
    grey = _soft()
    _mask(tmp_path / "masks" / "a.png", grey)
    x = (grey - grey.min()) / (grey.max() - grey.min())  # per-mask min-max, by hand
    if rule == "std":
        expected = x >= x.mean() + 1.5 * x.std()
    else:
        expected = x >= np.percentile(x, 90)
    ds = load_masks(tmp_path, rule=rule, num_std=1.5, percentile=90)
    np.testing.assert_array_equal(ds.samples[0].boxes[0].mask(), expected)
    assert 0 < expected.sum() < (grey > 0).sum()  # a real threshold, not "any grey"


def test_per_feature_folders_and_labels(tmp_path):
    for name in ("a.png", "b.png"):
        _image(tmp_path, name)
    left, right = np.zeros((SIZE, SIZE), np.uint8), np.zeros((SIZE, SIZE), np.uint8)
    left[:, :10], right[:, 20:] = 255, 255
    _mask(tmp_path / "masks" / "head" / "a.png", left)
    _mask(tmp_path / "masks" / "tail" / "a.png", right)
    _mask(tmp_path / "masks" / "tail" / "b.png", left)
    (tmp_path / "labels.csv").write_text("image,label\na.png,dog\nb.png,cat\n")
    ds = load_masks(tmp_path, labels="labels.csv")
    assert ds.features == ["head", "tail"] and ds.labels == ["cat", "dog"]
    a, b = ds.samples
    assert [r.feature for r in a.boxes] == ["head", "tail"] and [r.label for r in a.boxes] == [0, 1]
    assert [r.feature for r in b.boxes] == ["tail"] and b.label == "cat"
    masks = data.box_masks(a, Geometry(size=SIZE), SIZE)
    np.testing.assert_array_equal(masks, np.stack([left > 0, right > 0]))
    first = data.dataset_fingerprint({"kind": "masks", "root": str(tmp_path)})
    _mask(tmp_path / "masks" / "tail" / "b.png", right)
    assert data.dataset_fingerprint({"kind": "masks", "root": str(tmp_path)}) != first


def test_a_mask_of_another_size_is_an_error_naming_mask_and_image(tmp_path):
    _image(tmp_path, "a.png")
    _image(tmp_path, "b.png")
    _mask(tmp_path / "masks" / "a.png", np.full((SIZE, SIZE + 8), 255))
    _mask(tmp_path / "masks" / "b.png", np.full((SIZE, SIZE), 255))
    with pytest.raises(DataError, match=r"masks/a.png: mask is 40x32 but its image .*images/a.png "
                                        r"is 32x32 \(or set dataset.strict: false"):
        load_masks(tmp_path)
    with pytest.warns(DataWarning, match=r"skipped 1 files .*bad_masks 1"):
        ds = load_masks(tmp_path, strict=False)
    assert [s.image_id for s in ds.samples] == ["b.png"] and ds.report["skipped"] == {"bad_masks": 1}


def test_other_bad_input(tmp_path):
    _image(tmp_path, "a.png")
    with pytest.raises(DataError, match=r"masks: no such folder; set dataset.masks"):
        load_masks(tmp_path)
    _mask(tmp_path / "masks" / "zebra.png", np.full((SIZE, SIZE), 255))
    with pytest.raises(DataError, match=r"masks/zebra.png: no image zebra.\* in .*images"):
        load_masks(tmp_path)
    with pytest.raises(DataError, match="no image of .* has a usable mask; the dataset is empty"):
        load_masks(tmp_path, strict=False)
    _mask(tmp_path / "masks" / "head" / "a.png", np.full((SIZE, SIZE), 255))
    with pytest.raises(DataError, match="holds both mask files .* and feature folders"):
        load_masks(tmp_path)


def test_an_empty_mask_is_dropped_with_a_warning(tmp_path):
    _image(tmp_path, "a.png")
    _image(tmp_path, "b.png")
    _mask(tmp_path / "masks" / "a.png", np.zeros((SIZE, SIZE)))
    _mask(tmp_path / "masks" / "b.png", np.full((SIZE, SIZE), 255))
    with pytest.warns(DataWarning, match="1 masks under .* keep no pixel"):
        ds = load_masks(tmp_path)
    assert [s.image_id for s in ds.samples] == ["b.png"]


def test_masks_params_section():
    section = config.MasksDataset(kind="masks", root=Path("d"), binarize={"rule": "percentile"})
    assert (section.images, section.masks, section.binarize.rule, section.binarize.percentile) == (
        Path("images"), Path("masks"), "percentile", 90)
    with pytest.raises(ValueError, match="rule"):
        config.MasksDataset(kind="masks", root=Path("d"), binarize={"rule": "otsu"})


def test_a_mask_too_thin_for_any_pixel_centre_keeps_one_pixel_unless_cropped_away():
    line = np.zeros((64, 64), bool)
    line[:, 1] = True  # at 16 px the frame samples image columns 2, 6, ...: never column 1
    squash = Geometry(size=64).mask_to_frame(line, 16)
    expected = np.zeros((16, 16), bool)
    expected[8, 0] = True  # the frame pixel of the line's middle pixel (row 32, column 1)
    np.testing.assert_array_equal(squash, expected)
    wide = np.zeros((64, 128), bool)  # 128 x 64 -> Resize(64) -> CenterCrop(64): x 32..96
    wide[:, 5] = True
    assert not Geometry(size=64, resize=64).mask_to_frame(wide, 16).any()
