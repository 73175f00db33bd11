"""The ML Interpretability Benchmark reader, its synthetic stand-in and the SI params."""

import numpy as np
import pytest
from PIL import Image

from sightline import config, data, pipeline, synthetic
from sightline.data import human_attention
from sightline.geometry import Geometry


def _write(root, images="original_images", masks="human_attention_mask", names=("dog1", "car2"),
           size=(60, 40), mask_mode="L"):
    base = root / "Image" / "ImageNet"
    (base / images).mkdir(parents=True)
    (base / masks).mkdir(parents=True)
    for name in names:
        Image.new("RGB", size, (120, 60, 30)).save(base / images / f"{name}.jpg")
        mask = np.zeros(size[::-1], np.uint8)
        mask[: size[1] // 2, : size[0] // 2] = 255  # top-left quarter marked
        Image.fromarray(mask).convert(mask_mode).save(base / masks / f"{name}.jpg", quality=95)
    return base


@pytest.mark.parametrize("spelling", human_attention.HUMAN_ATTENTION_FOLDERS)
def test_reads_both_folder_spellings(tmp_path, spelling):
    _write(tmp_path, *spelling)
    found = data.load_human_attention(tmp_path)
    assert [(s.image_id, s.subject, s.width, s.height) for s in found.samples] == [
        ("car2", "car", 60, 40),
        ("dog1", "dog", 60, 40),
    ]
    assert all(s.mask_path.parent.name == spelling[1] for s in found.samples)


def test_root_may_be_the_imagenet_folder_itself(tmp_path):
    base = _write(tmp_path)
    assert len(data.load_human_attention(base).samples) == 2


def test_missing_mask_is_an_error_or_a_counted_skip(tmp_path):
    base = _write(tmp_path)
    (base / "human_attention_mask" / "car2.jpg").unlink()
    with pytest.raises(data.DataError, match=r"car2\.jpg.*strict=False"):
        data.load_human_attention(tmp_path)
    found = data.load_human_attention(tmp_path, strict=False)
    assert [s.image_id for s in found.samples] == ["dog1"]
    assert found.report["missing_masks"] == ["car2"]


def test_size_mismatch_names_both_files(tmp_path):
    base = _write(tmp_path)
    Image.new("L", (30, 40)).save(base / "human_attention_mask" / "dog1.jpg")
    with pytest.raises(data.DataError, match=r"dog1\.jpg: mask is 30x40 but its image .* is 60x40"):
        data.load_human_attention(tmp_path)
    found = data.load_human_attention(tmp_path, strict=False)
    assert found.report["size_mismatches"] == ["dog1"]
    assert found.report["counts"]["samples"] == 1


def test_unreadable_mask_is_counted_apart_from_missing_and_mismatched(tmp_path):
    base = _write(tmp_path)
    (base / "human_attention_mask" / "car2.jpg").write_bytes(b"<html>not an image</html>")
    with pytest.raises(data.DataError, match=r"car2\.jpg: cannot read the image header"):
        data.load_human_attention(tmp_path)
    report = data.load_human_attention(tmp_path, strict=False).report
    assert (report["unreadable"], report["missing_masks"], report["size_mismatches"]) == (["car2"], [], [])


def test_unknown_subject_and_missing_folder(tmp_path):
    with pytest.raises(data.DataError, match="git clone https://github.com/SinaMohseni"):
        data.load_human_attention(tmp_path / "absent")
    _write(tmp_path, names=("dog1", "unicorn3"))
    with pytest.raises(data.DataError, match="unicorn3.jpg: not named <subject><k>"):
        data.load_human_attention(tmp_path)
    assert data.load_human_attention(tmp_path, strict=False).report["unknown_subjects"]


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_grayscale_and_rgb_masks_read_alike_in_the_model_frame(tmp_path, mode):
    _write(tmp_path, names=("dog1",), size=(80, 40), mask_mode=mode)
    sample = data.load_human_attention(tmp_path).samples[0]
    squash = data.human_mask(sample, Geometry(size=32), 16)
    assert squash.shape == (16, 16) and squash.dtype == np.float32
    assert squash[:6, :6].min() > 0.9 and squash[10:, 10:].max() < 0.1  # quarter kept
    # centre crop of a 2:1 image: the crop spans x in [20, 60) of 80 -> the marked x < 40
    # fills the left half of the frame, the top half in y
    crop = data.human_mask(sample, Geometry(size=32, resize=32), 16)
    assert crop[:6, :6].min() > 0.9 and crop[:6, 10:].max() < 0.1 and crop[10:].max() < 0.1


def test_subject_mapping_covers_the_twenty_subjects():
    mapping = human_attention.imagenet_subjects()
    assert sorted(mapping) == sorted(config.SI_SUBJECTS)
    assert mapping["dog"] == tuple(range(151, 269))  # the 118 dog breeds
    assert mapping["zebra"] == (340,) and mapping["ant"] == (310,)
    assert 705 not in mapping["car"]  # a railway passenger car
    assert mapping["tree"] == ()


def test_subject_mapping_rejects_bad_classes(tmp_path):
    csv = tmp_path / "subjects.csv"
    csv.write_text("subject,imagenet_classes,note\ndog,990-1005,\n")
    with pytest.raises(data.DataError, match="outside 0..999"):
        human_attention.imagenet_subjects(csv)


def test_synthetic_stand_in_is_the_benchmark_layout(tmp_path):
    root = synthetic.make_human_attention(tmp_path / "si", subjects=("dog", "car"), per_subject=2)
    found = data.load_human_attention(root)
    assert [s.image_id for s in found.samples] == ["car1", "car2", "dog1", "dog2"]
    mask = np.asarray(human_attention.load_attention_mask(found.samples[0].mask_path), float) / 255
    assert mask.max() > 0.8 and (mask > 0.5).mean() < 0.3  # soft blobs on the parts
    again = synthetic.make_human_attention(tmp_path / "si", subjects=("dog", "car"), per_subject=2)
    assert again == root
    synthetic.make_human_attention(tmp_path / "si", subjects=("dog",), per_subject=1)
    assert [s.image_id for s in data.load_human_attention(root).samples] == ["dog1"]


def test_the_stand_in_is_made_again_when_damaged_and_never_over_other_files(tmp_path):
    root = synthetic.make_human_attention(tmp_path / "si", subjects=("dog",), per_subject=2)
    assert data.verify_generated(root) is None
    mask = root / "Image" / "ImageNet" / "human_attention_mask" / "dog2.jpg"
    whole = mask.read_bytes()
    mask.write_bytes(whole[:100])  # truncated, as a broken copy leaves it
    assert data.verify_generated(root) == f"{mask.relative_to(root)} does not match the hash in " \
        f"{data.MANIFEST}"
    synthetic.make_human_attention(root, subjects=("dog",), per_subject=2)
    assert mask.read_bytes() == whole and data.verify_generated(root) is None
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a folder of my own")
    with pytest.raises(data.DataError, match="not made by make_human_attention"):
        synthetic.make_human_attention(tmp_path / "mine")


def test_params_profiles_and_errors(tmp_path):
    demo = config.load_params("params/demo.yaml")
    assert demo.shared_interest.dataset.kind == "synthetic_human_attention"
    real = config.load_params("params/shared_interest.yaml")
    assert real.dataset is None and real.shared_interest.xrai.steps == 100
    bad = tmp_path / "p.yaml"
    bad.write_text("profile: x\nshared_interest:\n  dataset: {kind: human_attention, root: d}\n"
                   "  models: [{key: dinov2}]\n")
    with pytest.raises(pipeline.UsageError, match="'shared_interest.models.0.key' is 'dinov2'; "
                                                  "allowed: swin_t, cait_s, resnet101"):
        pipeline.check_models(config.load_params(bad))
    bad.write_text("profile: x\n")
    with pytest.raises(config.ParamsError, match="'shared_interest' and / or 'photos'"):
        config.load_params(bad)
    bad.write_text("profile: x\nshared_interest:\n  dataset: {kind: human_attention, root: d}\n"
                   "  models: [{key: swin_t}]\n  xrai: {algoritm: fast}\n")
    with pytest.raises(config.ParamsError, match="Did you mean 'algorithm'"):
        config.load_params(bad)
