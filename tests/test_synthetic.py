"""The demo generator writes WikiChurches' format, deterministically, with boxes on its parts."""

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from sightline.data import MAIN_STYLES, MANIFEST, DataError, church_of, load_image, load_wikichurches
from sightline.synthetic import FEATURES, STYLE_PARTS, make_synthetic

SMALL = {"n_annotated": 10, "n_pool": 14, "image_size": (96, 80)}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def loaded(demo: Path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_wikichurches(demo)
    # the demo data load with one warning: the boxes it plants past the image edge, named
    assert [str(w.message).split(": image ")[0] for w in caught] == [
        f"{loaded.report['counts']['clamped_boxes']} boxes in {demo / 'building_parts.json'} lie "
        "partly outside their image and were clamped to it"]
    return loaded


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_round_trips_through_the_reader(demo: Path, loaded) -> None:
    assert len(loaded.samples) == 24
    assert len(loaded.pool) == 96
    assert loaded.features == FEATURES
    assert loaded.report["pool_source"] == f"split files in {demo}"
    assert loaded.report["counts"]["dropped_for_leakage"] == 0
    assert all(1 <= len(s.boxes) <= 8 for s in loaded.samples)
    assert {s.label for s in loaded.samples} == set(MAIN_STYLES.values())
    assert any(len(s.tags) == 2 for s in loaded.samples)
    assert len({church_of(s.image_id) for s in loaded.samples}) < len(loaded.samples)  # _wd0, _wd1, ...
    # a few boxes run past the image edge, as in the real file
    assert loaded.report["counts"]["clamped_boxes"] >= 1
    assert (demo / "style_names.txt").read_text().splitlines()[0] == "Q46261 Romanesque"


def test_composite_portal_groups(loaded) -> None:
    portals = [
        [b.feature for b in s.boxes if b.group_label == FEATURES.index("Portal")]
        for s in loaded.samples
    ]
    composite = [p for p in portals if p]
    assert composite, "no image has a Portal group"
    assert all(
        len(p) == 2 and p[1] == "Door" and p[0] in ("Round Arch", "Pointed Arch") for p in composite
    )


def test_each_style_draws_only_its_own_diagnostic_parts(loaded) -> None:
    portal_parts = {"Round Arch": "Round Arch Portal", "Pointed Arch": "Pointed Arch Portal"}
    names = {name: qid for qid, name in MAIN_STYLES.items()}
    for sample in loaded.samples:
        allowed = {part for style in sample.tags for part in STYLE_PARTS[names[style]]}
        for box in sample.boxes:
            if box.feature != "Door":
                assert portal_parts.get(box.feature, box.feature) in allowed, (sample, box)


def test_boxes_lie_on_the_drawn_parts(loaded) -> None:
    """Parts are drawn with outlines and detail: edges are much denser inside the boxes."""
    inside, outside = [], []
    for sample in loaded.samples:
        grey = np.asarray(load_image(sample.path).convert("L"), dtype=float)
        edges = np.abs(np.diff(grey, axis=0))[:, :-1] + np.abs(np.diff(grey, axis=1))[:-1, :]
        h, w = edges.shape
        boxed = np.zeros(edges.shape, bool)
        for box in sample.boxes:
            rows = slice(int(box.top * h), int(np.ceil((box.top + box.height) * h)))
            cols = slice(int(box.left * w), int(np.ceil((box.left + box.width) * w)))
            boxed[rows, cols] = True
            if box.feature != "Door":  # a plain door leaf is flat by design
                inside.append(edges[rows, cols].mean())
        outside.append(edges[~boxed].mean())
    assert np.mean(inside) > 2 * np.mean(outside)
    assert np.mean(np.array(inside) > np.mean(outside)) > 0.9


def test_pool_splits_are_church_disjoint_and_in_the_real_format(demo: Path, loaded) -> None:
    pool = loaded.pool
    assert pool.groupby("church_id")["split"].nunique().max() == 1
    assert not set(pool["church_id"]) & {church_of(s.image_id) for s in loaded.samples}
    assert set(pool["split"]) == {"train", "val", "test"}
    line = (demo / "wc4_train.txt").read_text().splitlines()[0].split()
    assert len(line) == 2 and line[0].endswith(".jpg") and line[1] in MAIN_STYLES
    churches = json.loads((demo / "churches.json").read_text())
    assert set(pool["church_id"]) | {church_of(s.image_id) for s in loaded.samples} == set(churches)
    assert all(len(churches[c]["styles"]) == 1 for c in pool["church_id"])  # unambiguous labels
    church = next(iter(churches.values()))
    assert set(church) == {"id", "name", "built_year", "styles", "country", "location"}
    assert set(church["country"]) == {"id", "name"} and set(church["location"]) == {"lat", "lon"}


def test_deterministic_by_seed(tmp_path: Path) -> None:
    a = _hashes(make_synthetic(tmp_path / "a", **SMALL))
    b = _hashes(make_synthetic(tmp_path / "b", **SMALL))
    c = _hashes(make_synthetic(tmp_path / "c", **SMALL, seed=1))
    assert a == b
    assert len(a) == 10 + 14 + 7  # images, 2 JSON files, style names, 3 splits, manifest
    assert a["building_parts.json"] != c["building_parts.json"]


def test_idempotent_and_regenerates_on_new_arguments(tmp_path: Path) -> None:
    root = make_synthetic(tmp_path / "demo", **SMALL)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    make_synthetic(root, **SMALL)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == stamps

    fresh = _hashes(make_synthetic(tmp_path / "fresh", **SMALL))
    (root / "images" / sorted(p.name for p in (root / "images").iterdir())[0]).unlink()
    make_synthetic(root, **SMALL)  # a file is missing: rewritten
    assert _hashes(root) == fresh

    manifest = json.loads((root / MANIFEST).read_text())
    (root / MANIFEST).write_text(json.dumps({**manifest, "complete": False}))  # interrupted
    (root / "churches.json").unlink()
    make_synthetic(root, **SMALL)
    assert _hashes(root) == fresh

    make_synthetic(root, **{**SMALL, "n_annotated": 4, "n_pool": 5})
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["args"]["n_annotated"] == 4
    assert len(list((root / "images").iterdir())) == 9  # the old images are gone
    wc = load_wikichurches(root)
    assert (len(wc.samples), len(wc.pool)) == (4, 5)


def test_refuses_to_overwrite_a_real_dataset(tmp_path: Path) -> None:
    (tmp_path / "building_parts.json").write_text("{}")
    with pytest.raises(DataError, match="not made by make_synthetic"):
        make_synthetic(tmp_path)
