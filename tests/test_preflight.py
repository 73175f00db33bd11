"""The preflight: checkpoints looked up in planted local caches (never downloaded), notebook
requirements against planted data and models, and a build that stops or skips before any work."""

import json
from collections import Counter
from pathlib import Path

import huggingface_hub
import pytest
import yaml
from PIL import Image

from sightline import cli, config, data, preflight

ROOT = Path(__file__).resolve().parents[1]
TIMM_REPO = "timm/resnet18.a1_in1k"
TV_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Empty Hugging Face and torch hub caches, and no network."""
    hub = tmp_path / "hf"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub


def _plant_hub(hub: Path, repo: str, *files: str) -> None:
    """A Hugging Face cache entry as `hf download` leaves it: refs/main -> a snapshot."""
    entry = hub / f"models--{repo.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True, exist_ok=True)
    (entry / "refs" / "main").write_text("abc123")
    for name in files:
        (entry / "snapshots" / "abc123").mkdir(parents=True, exist_ok=True)
        (entry / "snapshots" / "abc123" / name).write_bytes(b"weights")


def _params(models, **sections) -> config.Params:
    return config.Params.model_validate(
        {"profile": "p", "dataset": {"kind": "coco", "root": "x"}, "models": models, **sections})


def _problems(params: config.Params) -> list[str]:
    try:
        preflight.check_checkpoints(params)
    except preflight.PreflightError as error:
        return str(error).splitlines()
    return []


def test_an_uncached_timm_checkpoint_offline_is_one_line_with_the_download(offline):
    params = _params([{"key": "net", "source": "timm", "name": "resnet18.a1_in1k"}])
    assert _problems(params) == [
        f"models[0] (key net): checkpoint {TIMM_REPO} is not in the Hugging Face cache ({offline}) "
        f"and cannot be downloaded here; on a machine with network run `hf download {TIMM_REPO}`, "
        "copy the cache here (or set HF_HUB_CACHE), or set weights: random"]
    _plant_hub(offline, TIMM_REPO, "model.safetensors")
    assert _problems(params) == []


def test_a_checkpoint_is_fetched_when_the_host_answers(offline, monkeypatch):
    params = _params([{"key": "net", "source": "timm", "name": "resnet18.a1_in1k"}])
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    hosts = []

    def connect(address, timeout):
        hosts.append(address)
        raise OSError("no route")

    monkeypatch.setattr(preflight.socket, "create_connection", connect)
    assert len(_problems(params)) == 1 and hosts == [("huggingface.co", 443)]
    monkeypatch.setattr(preflight.socket, "create_connection",
                        lambda address, timeout: open(__file__))  # anything with close()
    assert _problems(params) == []


def test_hf_presets_need_config_and_weights_and_torchvision_its_file(offline, tmp_path):
    params = _params([{"key": "dinov2"},
                      {"key": "tv", "source": "torchvision", "name": "resnet18"},
                      {"key": "clip", "weights": "random"},  # random weights need nothing
                      {"key": "mae", "size": "tiny", "weights": "random"}])
    torch_file = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert _problems(params) == [
        "models[0] (key dinov2): checkpoint facebook/dinov2-base is not in the Hugging Face cache "
        f"({offline}) and cannot be downloaded here; on a machine with network run "
        "`hf download facebook/dinov2-base`, copy the cache here (or set HF_HUB_CACHE), or set "
        "weights: random",
        f"models[1] (key tv): weights {TV_URL} are not in the torch hub cache and cannot be "
        f"downloaded here; on a machine with network download them to {torch_file} (or set "
        "TORCH_HOME), or set models[1].checkpoint to the file"]
    _plant_hub(offline, "facebook/dinov2-base", "config.json")
    torch_file.parent.mkdir(parents=True)
    torch_file.write_bytes(b"weights")
    assert [p.split(":")[0] for p in _problems(params)] == ["models[0] (key dinov2)"]
    gated = _problems(_params([{"key": "dinov3"}]))
    assert "`hf download facebook/dinov3-vitb16-pretrain-lvd1689m` (gated: accept its licence" \
        in gated[0]
    _plant_hub(offline, "facebook/dinov2-base", "model.safetensors")
    assert _problems(params) == []


def test_packaged_weights_and_local_files_need_no_hub_and_shared_interest_models_do(offline,
                                                                                     tmp_path):
    params = _params(
        [{"key": "lite0", "source": "python", "factory": "sightline.models:packaged_efficientnet_lite0"},
         {"key": "mine", "source": "timm", "name": "resnet18", "checkpoint": str(tmp_path / "w.pth")}],
        shared_interest={"dataset": {"kind": "synthetic_human_attention"},
                         "models": [{"key": "resnet101"}]})
    assert [p.split(" is not")[0] for p in _problems(params)] == [
        "shared_interest.models[0] (key resnet101): checkpoint timm/resnet101.tv_in1k"]


def _offer(**kwargs) -> preflight.Offer:
    return preflight.Offer(**{"has_labels": True, "has_pool": True, "head_models": ("vit",),
                              "feature_boxes": Counter(cat=2, dog=1), **kwargs})


def test_q3_needs_heads_and_a_feature_type_with_min_boxes():
    three = _params([{"key": "dinov2"}])
    assert preflight.unmet(["attention_heads"], three, _offer()) == [
        "no feature type has heads.min_boxes: 3 boxes to rank heads on (most: 2, 'cat'); set "
        "heads.min_boxes: 2 to rank them on fewer"]
    two = _params([{"key": "dinov2"}], heads={"min_boxes": 2})
    assert preflight.unmet(["attention_heads"], two, _offer()) == []
    assert preflight.unmet(["attention_heads"], two, _offer(head_models=())) == [
        "no model has per-head attention maps (CLS or pooling-probe attention)"]


def test_q2_needs_labels_and_a_training_pool():
    params = _params([{"key": "dinov2"}])
    assert preflight.unmet(["training_pool"], params, _offer()) == []
    assert preflight.unmet(["training_pool"], params, _offer(has_labels=False, has_pool=False)) == [
        "the dataset has no image labels (nothing to fine-tune on or to be right about)"]
    assert preflight.unmet(["training_pool"], params, _offer(has_pool=False)) == [
        "the dataset has no labelled training pool (nothing to fine-tune on)"]


def test_a_model_with_no_class_to_explain_is_said_once():
    dinov2 = {"key": "dinov2", "weights": "random", "size": "tiny"}
    cnn = {"key": "resnet50", "weights": "random", "size": "tiny"}  # an ImageNet classifier
    assert preflight.class_target_notes(_params([dinov2, cnn]), _offer()) == [
        "models[0] (key dinov2) is no classifier and has no linear probe (set "
        "finetune.strategies.dinov2: [linear_probe], on a dataset with a labelled training "
        "pool): chefer, attnlrp, legrad, gradcam do not run for it; it keeps cls, rollout"]
    probed = _params([dinov2, cnn], finetune={"strategies": {"dinov2": ["linear_probe"]}})
    assert preflight.class_target_notes(probed, _offer()) == []
    assert len(preflight.class_target_notes(probed, _offer(has_pool=False))) == 1


def _coco(root: Path, boxes: dict[str, int]) -> Path:
    """A COCO folder of one 32-px image with ``boxes[name]`` boxes of each category."""
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (32, 32), (90, 120, 60)).save(root / "images" / "a.png")
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(boxes)]
    annotations = [{"id": len(categories) * 10 + k, "image_id": 1, "category_id": c["id"],
                    "bbox": [k, k, 8, 8]} for c in categories for k in range(boxes[c["name"]])]
    (root / "annotations.json").write_text(json.dumps(
        {"images": [{"id": 1, "file_name": "a.png"}], "annotations": annotations,
         "categories": categories}))
    return root


def test_the_offer_is_read_off_the_data_and_the_models(tmp_path):
    dataset = data.load_coco(_coco(tmp_path / "coco", {"cat": 2, "dog": 1}))
    vit = _params([{"key": "dinov2", "weights": "random", "size": "tiny"},
                   {"key": "resnet50", "weights": "random", "size": "tiny"}])
    assert preflight.offer(vit, dataset) == preflight.Offer(
        has_labels=False, has_pool=False, feature_boxes=Counter(cat=2, dog=1),
        head_models=("dinov2",))
    cnn = _params([{"key": "resnet50", "weights": "random", "size": "tiny"}])
    assert preflight.offer(cnn, dataset).head_models == ()


NOTEBOOK = '''# ---
# jupyter:
#   sightline:
#     requires: [REQUIRES]
# ---

# %% [markdown]
# # NAME

# %% tags=["parameters"]
dataset = {}
tables_dir = "."

# %%
import pathlib
pathlib.Path(tables_dir, "NAME.txt").write_text("ran")
'''


def _project(tmp_path: Path, models: list[dict], boxes: dict[str, int]) -> tuple[Path, Path]:
    root = tmp_path / "proj"
    (root / "notebooks").mkdir(parents=True)
    (root / "lib").mkdir()
    (root / "lib" / "sightline").symlink_to(ROOT / "lib" / "sightline")
    (root / "notebooks" / "heads.py").write_text(
        NOTEBOOK.replace("REQUIRES", "attention_heads").replace("NAME", "heads"))
    (root / "notebooks" / "pool.py").write_text(
        NOTEBOOK.replace("REQUIRES", "").replace("NAME", "pool"))
    path = root / "p.yaml"
    path.write_text(yaml.safe_dump({
        "profile": "p", "dataset": {"kind": "coco", "root": str(_coco(tmp_path / "coco", boxes))},
        "models": models}))
    return root, path


def test_a_notebook_whose_requirement_fails_is_skipped_with_one_line(tmp_path, capsys):
    root, path = _project(tmp_path, [{"key": "dinov2", "weights": "random", "size": "tiny"}],
                          {"cat": 2, "dog": 1})
    assert cli.main(["--params", str(path)], root=root) == 0
    out = capsys.readouterr().out
    assert ("[build] heads: skipped (in this profile no feature type has heads.min_boxes: 3 "
            "boxes to rank heads on (most: 2, 'cat'); set heads.min_boxes: 2 to rank them on "
            "fewer)") in out
    tables = root / "report" / "p" / "tables"
    assert not (tables / "heads.txt").exists() and (tables / "pool.txt").read_text() == "ran"


def test_an_uncached_checkpoint_stops_the_build_before_any_notebook(tmp_path, offline, capsys):
    root, path = _project(tmp_path, [{"key": "net", "source": "timm", "name": "resnet18.a1_in1k"}],
                          {"cat": 3})
    assert cli.main(["--params", str(path)], root=root) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: models[0] (key net): checkpoint timm/resnet18.a1_in1k")
    assert "`hf download timm/resnet18.a1_in1k`" in captured.err
    assert "[build]" not in captured.out and not (root / "report").exists()


@pytest.mark.parametrize("kind", ["coco", "masks"])
def test_a_missing_dataset_folder_is_said_as_a_missing_folder(tmp_path, kind):
    with pytest.raises(data.DataError, match=f"the dataset folder {tmp_path / 'nowhere'} does "
                                             "not exist; set dataset.root"):
        data.load_dataset({"kind": kind, "root": str(tmp_path / "nowhere")})


def test_q4_needs_a_model_to_randomise():
    assert preflight.unmet(["randomisation"], _params([{"key": "dinov2"}]), _offer()) == [
        "`sanity.models` lists no model to randomise"]
    listed = _params([{"key": "dinov2"}], sanity={"models": [{"key": "dinov2"}]})
    assert preflight.unmet(["randomisation"], listed, _offer()) == []
