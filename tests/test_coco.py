"""The COCO reader: boxes, polygons and RLE against pycocotools, labels, categories, bad input."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from sightline import config, data
from sightline.data import DataError, DataWarning, load_coco
from sightline.geometry import Geometry
from sightline.studies import dataset as data_study

# pycocotools 2.0.11's decode under NumPy 2 (the reader silences it too)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
SIZE = 48  # square images, so the squash frame at resolution SIZE is the image's own grid
CATEGORIES = [{"id": 3, "name": "head", "imagenet": [285, 281]}, {"id": 5, "name": "body"}]
POLYGON = [4.0, 6.5, 30.2, 9.0, 22.7, 40.1, 6.0, 33.3]  # a quadrilateral, non-integer corners


def _write(root: Path, annotations, images=None, categories=None, sizes=None) -> Path:
    """A COCO folder: ``images`` records (default: a.png, b.png) and their files."""
    images = images or [{"id": 1, "file_name": "a.png", "width": SIZE, "height": SIZE},
                        {"id": 2, "file_name": "b.png", "width": SIZE, "height": SIZE}]
    (root / "images").mkdir(parents=True, exist_ok=True)
    for record in images:
        size = (sizes or {}).get(record["file_name"], (SIZE, SIZE))
        Image.new("RGB", size, (90, 120, 60)).save(root / "images" / record["file_name"])
    coco = {"images": images, "annotations": annotations,
            "categories": CATEGORIES if categories is None else categories}
    (root / "annotations.json").write_text(json.dumps(coco))
    return root


def _box(id_, image_id, bbox, category=3):
    return {"id": id_, "image_id": image_id, "category_id": category, "bbox": bbox}


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, starting with 0s."""
    flat = mask.flatten(order="F").astype(np.uint8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.r_[0, edges, flat.size])
    counts = ([0] if flat[0] else []) + runs.tolist()
    return {"size": list(mask.shape), "counts": counts}


def _pycoco_mask(segmentation, height=SIZE, width=SIZE) -> np.ndarray:
    rles = mask_utils.frPyObjects(segmentation, height, width)
    return mask_utils.decode(mask_utils.merge(rles) if isinstance(rles, list) else rles).astype(bool)


def test_boxes_follow_the_pixel_centre_rule(tmp_path):
    root = _write(tmp_path, [_box(1, 1, [5.0, 7.0, 20.0, 11.0]), _box(2, 1, [10.3, 2.6, 7.5, 30.2])])
    sample = load_coco(root).samples[0]
    first, second = sample.boxes
    assert (first.left, first.top, first.width, first.height) == (5 / SIZE, 7 / SIZE, 20 / SIZE,
                                                                  11 / SIZE)
    assert not first.is_mask and first.feature == "head" and first.record == "annotation 1"
    masks = data.box_masks(sample, Geometry(size=SIZE), SIZE)
    centres = np.arange(SIZE) + 0.5
    for mask, (x, y, w, h) in zip(masks, ([5.0, 7.0, 20.0, 11.0], [10.3, 2.6, 7.5, 30.2]),
                                  strict=True):
        by_hand = ((centres >= y) & (centres < y + h))[:, None] & ((centres >= x) & (centres < x + w))
        np.testing.assert_array_equal(mask, by_hand)
    # integer boxes: the very pixels pycocotools draws for the box
    drawn = mask_utils.decode(mask_utils.frPyObjects(np.array([[5.0, 7.0, 20.0, 11.0]]), SIZE, SIZE))
    np.testing.assert_array_equal(masks[0], drawn[..., 0].astype(bool))


def test_polygons_and_rle_become_the_masks_pycocotools_draws(tmp_path):
    rng = np.random.default_rng(0)
    blob = rng.random((SIZE, SIZE)) < 0.2
    blob[10:20, 5:40] = True
    compressed = mask_utils.encode(np.asfortranarray(blob.astype(np.uint8)))
    compressed["counts"] = compressed["counts"].decode()  # as JSON holds it
    two_polygons = [POLYGON, [35.0, 35.0, 45.0, 36.0, 40.0, 46.0]]
    annotations = [
        {**_box(1, 1, [0, 0, 1, 1]), "segmentation": [POLYGON]},
        {**_box(2, 1, [0, 0, 1, 1], category=5), "segmentation": two_polygons},
        {**_box(3, 2, [0, 0, 1, 1]), "segmentation": compressed, "iscrowd": 1},
        {**_box(4, 2, [0, 0, 1, 1], category=5), "segmentation": _uncompressed_rle(blob)},
    ]
    ds = load_coco(_write(tmp_path, annotations))
    a, b = ds.samples
    assert [r.is_mask for s in ds.samples for r in s.boxes] == [True] * 4
    expected_a = [_pycoco_mask([POLYGON]), _pycoco_mask(two_polygons)]
    for sample, expected in ((a, expected_a), (b, [blob, blob])):
        masks = data.box_masks(sample, Geometry(size=SIZE), SIZE)
        for got, want, region in zip(masks, expected, sample.boxes, strict=True):
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(region.mask(), want)  # at the image's own size
            rows, cols = np.nonzero(want)  # the region box: the mask's bounding box
            assert region.left == cols.min() / SIZE and region.top == rows.min() / SIZE
            assert region.width == (cols.max() + 1 - cols.min()) / SIZE
            assert region.height == (rows.max() + 1 - rows.min()) / SIZE
    np.testing.assert_array_equal(data.union_mask(data.box_masks(a, Geometry(size=SIZE), SIZE)),
                                  expected_a[0] | expected_a[1])


def test_a_rectangle_as_mask_or_as_box_gives_the_same_frame_mask_when_cropped(tmp_path):
    # 400 x 200 -> Resize(256) -> 512 x 256 -> CenterCrop(224): no pixel centre lands on an
    # image pixel edge, so the box rule and the mask's nearest sampling must agree exactly.
    x, y, w, h = 150, 30, 120, 90
    rectangle = [x, y, x + w, y, x + w, y + h, x, y + h]
    images = [{"id": 1, "file_name": "wide.png", "width": 400, "height": 200}]
    root = _write(tmp_path, [_box(1, 1, [x, y, w, h]), {**_box(2, 1, [x, y, w, h]),
                                                        "segmentation": [rectangle]}],
                  images=images, sizes={"wide.png": (400, 200)})
    sample = load_coco(root).samples[0]
    box, mask = sample.boxes
    assert mask.is_mask and (box.left, box.top, box.width, box.height) == pytest.approx(
        (mask.left, mask.top, mask.width, mask.height))
    for geometry, resolution in ((Geometry(size=224, resize=256), 224), (Geometry(size=224), 56)):
        as_box, as_mask = data.box_masks(sample, geometry, resolution)
        assert as_box.any()
        np.testing.assert_array_equal(as_mask, as_box)


def test_categories_keep_their_fields_and_labels_come_from_images_or_csv(tmp_path):
    images = [{"id": 1, "file_name": "a.png", "label": "cat"}, {"id": 2, "file_name": "b.png"}]
    root = _write(tmp_path, [_box(1, 1, [1, 1, 9, 9]), _box(2, 2, [2, 2, 9, 9], category=5)],
                  images=images)
    ds = data.load_dataset({"kind": "coco", "root": str(root)})
    assert ds.kind == "coco" and ds.features == ["head", "body"]
    assert ds.categories == CATEGORIES and ds.categories[0]["imagenet"] == [285, 281]
    assert [s.label for s in ds.samples] == ["cat", None] and ds.labels == ["cat"]
    assert ds.has_labels and not ds.has_pool and ds.pool.empty
    (root / "labels.csv").write_text("image,label\nb.png,dog\n")
    ds = data.load_dataset({"kind": "coco", "root": str(root), "labels": "labels.csv"})
    assert [s.label for s in ds.samples] == ["cat", "dog"]
    (root / "labels.csv").write_text("image,label\na.png,dog\n")
    with pytest.raises(DataError, match=r"a.png: label 'cat' in .*annotations.json but 'dog'"):
        load_coco(root, labels="labels.csv")
    (root / "labels.csv").write_text("image,label\nzebra.png,dog\n")
    with pytest.raises(DataError, match=r"labels.csv: labels for images not in annotations.json: "
                                        "zebra.png"):
        load_coco(root, labels="labels.csv")


def test_a_box_partly_outside_is_clamped_and_a_zero_area_box_dropped_each_with_one_warning(
        tmp_path):
    root = _write(tmp_path, [_box(1, 1, [40, -4, 20, 10]), _box(2, 1, [3, 3, 0, 5]),
                             _box(3, 1, [3, 3, 5, 0]), _box(4, 2, [1, 1, 5, 5])])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_coco(root)
    assert [str(w.message) for w in caught if w.category is DataWarning] == [
        f"1 boxes in {root / 'annotations.json'} lie partly outside their image and were "
        "clamped to it: annotation 1 (image a.png); see report['clamped_boxes'].",
        f"2 boxes in {root / 'annotations.json'} have zero width or height and were skipped; "
        "see report['zero_area_boxes'].",
    ]
    clamped = ds.samples[0].boxes
    assert len(clamped) == 1
    assert (clamped[0].left, clamped[0].top, clamped[0].width, clamped[0].height) == pytest.approx(
        (40 / SIZE, 0.0, 8 / SIZE, 6 / SIZE))
    # 00_data's table names it: x 40..60 and y -4..6 on a 48-px image keep x 40..48, y 0..6
    assert ds.report["clamped_boxes"] == [{"image_id": "a.png", "record": "annotation 1",
                                           "given": [40, -4, 20, 10], "clamped": [40, 0, 8, 6]}]
    assert data_study.clamped_boxes(ds).to_dict("records") == [
        {"annotation": "annotation 1", "image": "a.png", "box as given": "40, -4, 20, 10",
         "box clamped": "40, 0, 8, 6"}]
    assert ds.report["counts"]["zero_area_boxes"] == 2


BAD = {
    "outside": ([_box(7, 1, [60, 5, 10, 10])],
                r"annotation 7 \(image a.png\): bbox \[60, 5, 10, 10\] lies entirely outside the "
                "48x48 image"),
    "polygon": ([{**_box(8, 1, [0, 0, 1, 1]), "segmentation": [[1, 1, 9, 9]]}],
                r"annotation 8 \(image a.png\): polygon 0 has 2 points; a polygon needs at least "
                "three"),
    "image": ([_box(9, 42, [1, 1, 5, 5])], "annotation 9 names image id 42, which is not in 'images'"),
    "category": ([_box(10, 1, [1, 1, 5, 5], category=99)],
                 r"annotation 10 \(image a.png\) names category id 99, which is not in 'categories'"),
    "rle size": ([{**_box(11, 1, [0, 0, 1, 1]),
                   "segmentation": _uncompressed_rle(np.ones((SIZE, SIZE + 2), bool))}],
                 r"annotation 11 \(image a.png\): its RLE mask is 50x48 but the image is 48x48"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_annotation_is_an_error_naming_file_and_record_or_a_counted_skip(tmp_path, case):
    bad, message = BAD[case]
    root = _write(tmp_path, [_box(1, 1, [1, 1, 9, 9]), _box(2, 2, [1, 1, 9, 9]), *bad])
    with pytest.raises(DataError, match=r"annotations\.json: " + message) as error:
        load_coco(root)
    assert "dataset.strict: false" in str(error.value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_coco(root, strict=False)
    assert sum(ds.report["skipped"].values()) == 1 and len(ds.report["skipped_records"]) == 1
    assert [len(s.boxes) for s in ds.samples] == [1, 1]
    assert any("skipped 1 records" in str(w.message) for w in caught)


def test_an_image_listed_but_missing_or_of_another_size(tmp_path):
    root = _write(tmp_path, [_box(1, 1, [1, 1, 9, 9]), _box(2, 2, [1, 1, 9, 9])])
    (root / "images" / "b.png").unlink()
    with pytest.raises(DataError, match=r"annotations.json: image b.png \(id 2\) is listed but "
                                        r".*images/b.png does not exist"):
        load_coco(root)
    with pytest.warns(DataWarning, match="skipped 2 records"):
        ds = load_coco(root, strict=False)
    assert [s.image_id for s in ds.samples] == ["a.png"]
    assert ds.report["skipped"] == {"missing_images": 1, "annotations_of_skipped_images": 1}
    Image.new("RGB", (30, SIZE)).save(root / "images" / "b.png")
    with pytest.raises(DataError, match=r"image b.png \(id 2\) is 48x48 in the file but "
                                        r".*b.png is 30x48"):
        load_coco(root)


def test_empty_and_malformed_files_say_what_is_wrong(tmp_path):
    with pytest.raises(DataError, match="no COCO annotation file there"):
        load_coco(tmp_path)
    root = _write(tmp_path, [])
    with pytest.raises(DataError, match=r"annotations.json: no image with a usable annotation "
                                        r"\(2 images, 0 annotations listed\)"):
        load_coco(root)
    _write(tmp_path, [_box(1, 1, [1, 1, 5, 5])], categories=[])
    with pytest.raises(DataError, match="'categories' is empty"):
        load_coco(root)
    _write(tmp_path, [_box(1, 1, [1, 1, 5, 5])],
           images=[{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "a.png"}])
    with pytest.raises(DataError, match=r"images\[1\]: a.png is listed twice \(ids 1 and 2\)"):
        load_coco(root)
    (root / "annotations.json").write_text('{"images": []')
    with pytest.raises(DataError, match="annotations.json: not readable JSON"):
        load_coco(root)


def test_coco_params_section_and_fingerprint(tmp_path):
    root = _write(tmp_path / "ds", [_box(1, 1, [1, 1, 9, 9])])
    section = config.CocoDataset(kind="coco", root=root, labels=Path("labels.csv"))
    assert (section.annotations, section.images, section.strict) == (
        Path("annotations.json"), Path("images"), True)
    path = tmp_path / "p.yaml"
    path.write_text(f"profile: x\ndataset: {{kind: coco, root: {root}, annotation: a.json}}\n"
                    "models: [{key: dinov2}]\n")
    with pytest.raises(config.ParamsError, match="unknown key 'dataset.annotation'. Did you mean "
                                                 "'annotations'"):
        config.load_params(path)
    first = data.dataset_fingerprint({"kind": "coco", "root": str(root)})
    assert first == data.dataset_fingerprint({"kind": "coco", "root": str(root)})
    _write(tmp_path / "ds", [_box(1, 1, [1, 1, 9, 8])])
    assert data.dataset_fingerprint({"kind": "coco", "root": str(root)}) != first


def _scene(root: Path, n: int = 4) -> list[dict]:
    """``n`` generated photos (80 x 64): a dark disc (its "head" polygon) on a lighter
    rectangle ("body" box), each image labelled; annotations as boxes, polygons and RLE."""
    rng = np.random.default_rng(5)
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    for i in range(n):
        array = rng.integers(0, 60, (64, 80, 3)).astype(np.uint8)
        x, y = int(rng.integers(4, 36)), int(rng.integers(4, 24))
        array[y:y + 30, x:x + 40] = (200, 180, 120)
        disc = (np.arange(80)[None] - (x + 30)) ** 2 + (np.arange(64)[:, None] - (y + 10)) ** 2 < 36
        array[disc] = (30, 30, 160)
        name = f"photo{i}.png"
        Image.fromarray(array).save(root / "images" / name)
        images.append({"id": i, "file_name": name, "width": 80, "height": 64,
                       "label": "cat" if i % 2 else "dog"})
        annotations.append(_box(10 * i, i, [x, y, 40, 30], category=5))
        head = [x + 24, y + 4, x + 36, y + 4, x + 36, y + 16, x + 24, y + 16]
        if i % 2:
            rle = mask_utils.encode(np.asfortranarray(disc.astype(np.uint8)))
            annotations.append({**_box(10 * i + 1, i, [0, 0, 1, 1]),
                                "segmentation": {**rle, "counts": rle["counts"].decode()}})
        else:
            annotations.append({**_box(10 * i + 1, i, [0, 0, 1, 1]), "segmentation": [head]})
    (root / "annotations.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return annotations


@pytest.mark.slow
def test_a_coco_dataset_builds_q1_and_q3_and_skips_q2_saying_why(tmp_path, demo_params, capsys):
    import pandas as pd
    import yaml

    from sightline import pipeline

    _scene(tmp_path / "coco")
    params = demo_params(["dinov2"], probes={"dinov2": ["linear_probe"]})
    params.pop("shared_interest")
    params.update(
        profile="coco", dataset={"kind": "coco", "root": str(tmp_path / "coco")},
        extraction={"batch_size": 4, "device": "cpu", "cache_dir": str(tmp_path / "cache")},
        stats={"n_boot": 100}, heads={"min_boxes": 1, "n_permutations": 20},
        report={"gallery_size": 1, "examples": 4},
    )
    params["metrics"].update(percentiles=[50, 90], resolution=32)
    params["finetune"]["checkpoint_dir"] = str(tmp_path / "checkpoints")
    path = tmp_path / "coco.yaml"
    path.write_text(yaml.safe_dump(params))
    root = Path(__file__).resolve().parents[1]
    result = pipeline.build(path, root=root, report_root=tmp_path / "report",
                            only=["00_data", "q1_alignment", "q2_finetuning", "q3_heads"])
    assert result.executed == ["00_data", "q1_alignment", "q3_heads"]
    assert ("[build] q2_finetuning: skipped (in this profile the dataset has no labelled "
            "training pool (nothing to fine-tune on))") in capsys.readouterr().out
    tables = result.profile_dir / "tables"
    boxes = pd.read_csv(tables / "boxes.csv")
    assert len(boxes) == 8 and sorted(boxes["kind"].value_counts().items()) == [("box", 4),
                                                                               ("mask", 4)]
    scores = pd.read_parquet(tables / "scores.parquet")
    frozen = scores[(scores["model"] == "dinov2-tiny-random") & (scores["metric"] == "iou")]
    assert set(frozen["target"]) == {"union", "box0", "box1"}
    assert set(frozen["feature"]) == {"union", "head", "body"}
    assert frozen["image_id"].nunique() == 4 and frozen["value"].dropna().between(0, 1).all()
    assert (tables / "heads.parquet").is_file()
    notebooks = result.profile_dir / "notebooks"
    assert "this coco dataset has no labelled training pool" in (
        notebooks / "q1_alignment.ipynb").read_text()
