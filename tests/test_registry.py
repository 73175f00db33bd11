"""Adding a method or a metric is one registry entry: a planted method and a planted metric
reach extraction, the scores table, config validation and the explorer's API with no other
file touched (the worked example of docs/extending.md)."""

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient

from sightline import config, data, extract, metrics, models, pipeline, registry, scoring
from sightline.explorer import Study, create_app
from sightline.models.spec import _reference_layout

R = 32


def cls_max_maps(model, attentions, output):
    """Planted method: per layer, the CLS token's attention row, the maximum over heads."""
    start = model.num_prefix_tokens
    return {("cls_max", layer): a[:, :, 0, start:].amax(dim=1)
            .reshape(len(a), 1, *model.grid).float().cpu().numpy()
            for layer, a in enumerate(attentions)}


def peak_share(maps, masks):
    """Planted metric: the map's largest value inside the mask over its largest anywhere;
    NaN for an empty mask or an all-zero map."""
    maps, masks = np.asarray(maps, np.float64), np.asarray(masks, bool)
    inside = np.where(masks, maps, -1.0).max(axis=(1, 2))
    top = maps.max(axis=(1, 2))
    defined = masks.any(axis=(1, 2)) & (top > 0)
    return np.where(defined, inside / np.where(defined, top, 1.0), np.nan)


CLS_MAX = registry.Method("cls_max", "CLS attention, head maximum", frozenset({"cls"}),
                          "attention", cls_max_maps, help="max over heads of the CLS row")
PEAK_SHARE = registry.Metric("peak_share", "peak share", True, False, peak_share,
                             help="largest value inside / largest anywhere")


def test_a_registry_names_what_it_has():
    assert registry.METHODS.names(readout_heads=True) == ("cls", "probe", "legrad")
    assert registry.METRICS.names(target="soft") == ("mse", "kl", "emd")
    with pytest.raises(KeyError, match="unknown metric 'dice'; registered: iou, gtc"):
        registry.METRICS["dice"]
    with pytest.raises(ValueError, match="method 'cls' is already registered"):
        registry.METHODS.register(CLS_MAX.__class__(**{**CLS_MAX.__dict__, "name": "cls"}))
    with registry.METRICS.registered(PEAK_SHARE):
        assert "peak_share" in registry.METRICS
    assert "peak_share" not in registry.METRICS


def test_the_readout_decides_the_methods():
    assert registry.applicable_methods("cls", False) == ("cls", "rollout", "chefer", "attnlrp",
                                                          "legrad", "gradcam")
    assert registry.applicable_methods("probe", False) == ("probe", "mean_received", "chefer",
                                                            "attnlrp", "legrad", "gradcam")
    assert registry.applicable_methods("tokens", True) == ("mean_received", "attnlrp", "legrad",
                                                           "gradcam")
    assert registry.applicable_methods("cnn", False) == ("gradcam",)
    assert registry.applicable_methods("cnn", True) == ("gradcam", "xrai")
    with registry.METHODS.registered(CLS_MAX):
        assert registry.applicable_methods("cls", False)[-1] == "cls_max"


def test_a_registered_method_gets_stores_of_its_own():
    """A cache built before the method was registered holds every image already: the new
    method's maps go to new stores, not to none."""
    before = extract.code_version()
    with registry.METHODS.registered(CLS_MAX):
        assert extract.code_version() != before
    assert extract.code_version() == before


def test_a_planted_classifier_method_passes_config(tmp_path):
    raw = {"profile": "t", "photos": {"methods": ["gradcam", "occlusion"]}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(config.ParamsError, match="'photos.methods.1' is 'occlusion'"):
        config.load_params(path)
    occlusion = registry.Method("occlusion", "occlusion", frozenset({"cnn"}), "own", len,
                                explains_class=True, cost="many")
    with registry.METHODS.registered(occlusion):
        assert config.load_params(path).photos.methods == ("gradcam", "occlusion")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A tiny profile built by hand with the planted method and metric registered: maps of
    one random DINOv2 in the cache, the scores table, the explorer over them."""
    tmp = tmp_path_factory.mktemp("planted")
    raw = {"profile": "planted",
           "dataset": {"kind": "synthetic", "root": str(tmp / "data"), "n_annotated": 4,
                       "n_pool": 0},
           "models": [{"key": "dinov2", "weights": "random", "size": "tiny"}],
           "extraction": {"batch_size": 4, "device": "cpu", "cache_dir": str(tmp / "cache")},
           "metrics": {"resolution": R, "percentiles": [50, 90]}}
    path = tmp / "planted.yaml"
    path.write_text(yaml.safe_dump(raw))
    # a preset's reference layout (its methods) is read once per process: read it again
    # with the planted method, and again after it
    _reference_layout.cache_clear()
    with registry.METHODS.registered(CLS_MAX), registry.METRICS.registered(PEAK_SHARE):
        params = config.load_params(path)
        pipeline.prepare_dataset(params)
        section = params.dataset.model_dump(mode="json")
        samples = data.load_dataset(section).samples
        choice = params.models[0]
        store = extract.store_for(params.extraction.cache_dir, data.dataset_fingerprint(section),
                                  extract.model_name(choice), "frozen")
        extract.extract_model(samples, choice, store, batch_size=4, device="cpu",
                              progress=False, methods=["cls", "cls_max"])
        targets = scoring.build_targets(samples, models.spec_for(choice).geometry, R)
        scores = scoring.score_store(store, targets, model=extract.model_name(choice),
                                     variant="frozen", percentiles=[50, 90], resolution=R,
                                     progress=False)
        tables = tmp / "report" / "planted" / "tables"
        tables.mkdir(parents=True)
        scores.to_parquet(tables / "scores.parquet")
        study = Study(path, root=tmp, report_root=tmp / "report")
        yield store, targets, scores, TestClient(create_app(study))
    _reference_layout.cache_clear()


def test_a_planted_method_is_extracted_and_scored(planted):
    store, targets, scores, _ = planted
    assert {("cls_max", layer) for layer in range(4)} <= set(store.keys())
    for layer in range(4):  # the maximum over the heads the built-in cls method stored
        _, cls = store.read("cls", layer, targets.image_ids)
        _, got = store.read("cls_max", layer, targets.image_ids)
        np.testing.assert_array_equal(got[:, 0], cls[:, :-1].max(axis=1))
    rows = scores[scores["method"] == "cls_max"]
    assert set(rows["metric"]) == set(registry.METRICS.names())
    assert set(rows["head"]) == {-1}


def test_a_planted_metric_is_scored_on_every_target(planted):
    store, targets, scores, _ = planted
    rows = scores[(scores["metric"] == "peak_share")]
    assert rows["threshold"].isna().all() and set(rows["head"]) == {-1}
    assert set(rows["method"]) == {"cls", "cls_max"}
    assert len(rows) == 2 * 4 * len(targets.masks)  # methods x layers x targets
    _, maps = store.read("cls", 2, targets.image_ids)
    for t in (0, 1, len(targets.masks) - 1):
        image = targets.image_index[t]
        up = metrics.upsample(maps[image, -1], R).astype(np.float64)  # the head mean
        mask = targets.masks[t]
        want = up[mask].max() / up.max() if mask.any() else np.nan
        got = rows[(rows["method"] == "cls") & (rows["layer"] == 2)
                   & (rows["image_id"] == targets.image_ids[image])
                   & (rows["target"] == targets.target[t])]["value"].item()
        assert got == pytest.approx(want, rel=1e-6, nan_ok=True)


def test_the_explorer_lists_and_computes_the_planted_ones(planted):
    store, targets, scores, client = planted
    profile = client.get("/profile").json()
    metric = next(m for m in profile["metrics"] if m["name"] == "peak_share")
    assert metric == {"name": "peak_share", "label": "peak share", "thresholded": False,
                      "higher_is_better": True, "help": "largest value inside / largest anywhere"}
    assert "cls_max" in [m["name"] for m in profile["methods"]]
    methods = profile["models"][0]["variants"][0]["methods"]
    assert [(m["method"], m["label"]) for m in methods] == [
        ("cls", "CLS attention"), ("cls_max", "CLS attention, head maximum")]
    image = targets.image_ids[0]
    union = client.get(f"/metrics/{image}", params={"method": "cls_max", "layer": 3}).json()
    table = scores[(scores["method"] == "cls_max") & (scores["layer"] == 3)
                   & (scores["image_id"] == image) & (scores["target"] == "union")
                   & (scores["metric"] == "peak_share")]["value"].item()
    assert union["peak_share"] == pytest.approx(table, rel=1e-6)
    curves = client.get("/layers", params={"metric": "peak_share"}).json()
    assert {(c["method"], c["layer"]) for c in curves} == {(m, layer) for m in ("cls", "cls_max")
                                                          for layer in range(4)}
    assert client.get("/layers", params={"metric": "dice"}).status_code == 422
