"""The explorer on a small built profile: every endpoint and error code, per-box metrics
against the scores table and an independent computation, the command line, and a real
headless Chromium driving the page."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from fastapi.testclient import TestClient
from sklearn.metrics import roc_auc_score

from sightline import cli, data, extract, pipeline
from sightline import models as registry
from sightline.explorer import Study, create_app

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SET_METRICS = ("iou", "iou_rel", "gtc", "sc", "pointing_game")


@pytest.fixture(scope="module")
def built(tmp_path_factory, demo_params):
    """A minimal profile (two models and the baselines on 6 images), built once."""
    tmp = tmp_path_factory.mktemp("explorer")
    params = demo_params(["dinov2", "siglip"], probes={"dinov2": ["linear_probe"]})
    params["finetune"]["checkpoint_dir"] = str(tmp / "checkpoints")
    params.update(
        profile="explore",
        dataset={"kind": "synthetic", "root": str(tmp / "data"), "n_annotated": 6, "n_pool": 24},
        extraction={"batch_size": 6, "device": "cpu", "cache_dir": str(tmp / "cache")},
        stats={"n_boot": 100}, heads={"min_boxes": 2, "n_permutations": 20},
        report={"gallery_size": 1, "examples": 2, "split_by_correct": True},
    )
    params["metrics"].update(percentiles=[50, 90], baselines=["centre_gaussian", "sobel"])
    path = tmp / "explore.yaml"
    path.write_text(yaml.safe_dump(params))
    pipeline.build(path, root=ROOT, report_root=tmp / "report", only=["q1_alignment"])
    return path, tmp / "report"


@pytest.fixture(scope="module")
def study(built):
    path, report = built
    return Study(path, root=ROOT, report_root=report)


@pytest.fixture(scope="module")
def client(study):
    return TestClient(create_app(study))


@pytest.fixture(scope="module")
def scores(study):
    return pd.read_parquet(study.tables_dir / "scores.parquet")


def table_value(scores, image_id, model, method, layer, head, target, metric, threshold=None,
                variant=None):
    variants = ["frozen", "baseline"] if variant is None else [variant]
    rows = scores[(scores["image_id"] == image_id) & (scores["model"] == model)
                  & scores["variant"].isin(variants)
                  & (scores["method"] == method) & (scores["layer"] == layer)
                  & (scores["head"] == head) & (scores["target"] == target)
                  & (scores["metric"] == metric)]
    if threshold is not None:
        rows = rows[np.isclose(rows["threshold"], threshold)]
    assert len(rows) == 1, (image_id, model, method, layer, head, target, metric, threshold)
    return rows["value"].iloc[0]


def independent_scores(study, sel, image_id, bbox_index, percentile):
    """IoU / GTC / SC / coverage / pointing of one box, straight from the HDF5 file in NumPy."""
    store = study.store(sel["model"], sel["variant"])
    with h5py.File(store.path, "r") as h5:
        ids = [i.decode() for i in h5["image_ids"][()]]
        grid = h5[f"maps/{sel['method']}/{sel['layer']}"][ids.index(image_id)][sel["head"]]
    r = study.resolution
    up = F.interpolate(torch.from_numpy(grid)[None, None], size=(r, r), mode="bilinear",
                       align_corners=False)[0, 0].numpy().ravel()
    sample = study.samples[image_id]
    geometry = (extract.BASELINE_GEOMETRY if sel["model"] == "baseline"
                else registry.REGISTRY[sel["model"].split("-")[0]].geometry)
    mask = data.box_masks(sample, geometry, r)[bbox_index].ravel()
    k = int(np.round(up.size * (100 - percentile) / 100))
    top = np.zeros(up.size, bool)
    top[np.argsort(-up, kind="stable")[:k]] = True
    inter, area = (top & mask).sum(), mask.sum()
    if area == 0:  # a box the model's crop cut away: nothing to find
        return dict.fromkeys(("iou", "gtc", "sc", "coverage", "pointing_game", "iou_rel", "auc",
                              "nss"), np.nan)
    values = up.astype(np.float64)
    return {"iou": inter / (top | mask).sum(), "gtc": inter / mask.sum(), "sc": inter / k,
            "coverage": up[mask].sum() / up.sum(), "pointing_game": float(mask[up.argmax()]),
            "iou_rel": (inter / (top | mask).sum()) / (min(mask.sum(), k) / max(mask.sum(), k)),
            "auc": roc_auc_score(mask, values) if area < mask.size else np.nan,
            "nss": ((values - values.mean()) / values.std())[mask].mean()
            if area < mask.size else np.nan}


def num(value):
    """The API's JSON null for an undefined score, as NaN."""
    return np.nan if value is None else value


def test_profile_lists_models_with_defaults_from_the_leaderboard(client, study):
    profile = client.get("/profile").json()
    names = [m["model"] for m in profile["models"]]
    assert names == ["dinov2-tiny-random", "siglip-tiny-random", "baseline"]
    assert profile["percentiles"] == [50.0, 90.0] and profile["headline_percentile"] == 90.0
    leaderboard = pd.read_csv(study.tables_dir / "leaderboard.csv")
    best = next(c for c in leaderboard.columns if c.startswith("best layer"))  # the in-sample one
    for entry in profile["models"]:
        default = entry["default"]
        assert default["head"] == -1 and default["percentile"] == 90.0
        for method in entry["variants"][0]["methods"]:
            row = leaderboard[(leaderboard["model"] == entry["model"])
                              & (leaderboard["method"] == method["method"])]
            assert method["best_layer"] == row[best].item()
    dinov2 = profile["models"][0]
    assert dinov2["default"]["variant"] == "frozen"
    assert dinov2["variants"][0]["methods"][0]["heads"] == {"0": 4, "1": 4, "2": 4, "3": 4}
    assert "python build.py explore --params" in (study.profile_dir / "index.html").read_text()


def test_images_boxes_file_and_map(client, study):
    images = client.get("/images").json()
    assert [i["image_id"] for i in images] == study.image_ids
    first = images[0]
    sample = study.samples[first["image_id"]]
    assert len(first["boxes"]) == len(sample.boxes) and first["label"] == sample.label
    assert set(first["scores"]) == {"dinov2-tiny-random", "siglip-tiny-random", "baseline"}
    assert client.get(f"/images/{first['image_id']}/boxes").json() == first["boxes"]

    image = client.get(f"/images/{first['image_id']}/file?max_side=64")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content[:2] == b"\xff\xd8"

    grid = client.get(f"/maps/{first['image_id']}?method=cls&layer=1&head=2").json()
    _, stored = study.store("dinov2-tiny-random", "frozen").read("cls", 1, [first["image_id"]])
    np.testing.assert_array_equal(np.asarray(grid["grid"], np.float32), stored[0, 2])
    geometry = registry.REGISTRY["dinov2"].geometry
    assert grid["frame"] == list(geometry.frame_in_image(sample.width, sample.height))


@pytest.mark.parametrize("model, method, layer, head", [
    ("dinov2-tiny-random", "cls", 1, 2),      # one head, centre-crop frame
    ("dinov2-tiny-random", "rollout", 3, -1),
    ("siglip-tiny-random", "probe", None, -1),  # squash frame; default (best) layer
    ("baseline", "sobel", 0, -1),
])
def test_box_metrics_equal_the_table_and_an_independent_computation(
        client, study, scores, model, method, layer, head):
    for image_id in study.image_ids[:3]:
        for index in range(len(study.samples[image_id].boxes)):
            for p in (50, 90):
                query = {"model": model, "method": method, "head": head, "percentile": p}
                if layer is not None:
                    query["layer"] = layer
                got = client.get(f"/metrics/{image_id}/bbox/{index}", params=query).json()
                assert got["bbox_index"] == index and got["percentile"] == p
                assert got["feature"] == study.samples[image_id].boxes[index].feature
                where = (image_id, model, method, got["layer"], head, f"box{index}")
                for metric in SET_METRICS:
                    expected = table_value(scores, *where, metric, p if metric != "pointing_game"
                                           else None)
                    np.testing.assert_allclose(num(got[metric]), expected, rtol=1e-12,
                                               err_msg=metric)
                np.testing.assert_allclose(num(got["coverage"]),
                                           table_value(scores, *where, "coverage"), rtol=1e-5)
                np.testing.assert_allclose(num(got["auc"]), table_value(scores, *where, "auc"),
                                           rtol=1e-12)  # the same ranks of the same values
                # NSS in z units: the float32 rounding of the upsampled map (6e-8 of its
                # mean) grows by mean / std, ~50 for a random model's near-uniform rollout
                np.testing.assert_allclose(num(got["nss"]), table_value(scores, *where, "nss"),
                                           rtol=1e-5, atol=1e-4)
                own = independent_scores(study, got, image_id, index, p)
                for metric, value in own.items():
                    np.testing.assert_allclose(num(got[metric]), value, rtol=1e-5, err_msg=metric)


def test_any_percentile_and_union_metrics(client, study, scores):
    image_id = study.image_ids[1]
    got = client.get(f"/metrics/{image_id}/bbox/0", params={"percentile": 73.5}).json()
    own = independent_scores(study, got, image_id, 0, 73.5)
    for metric, value in own.items():
        np.testing.assert_allclose(num(got[metric]), value, rtol=1e-5, err_msg=metric)
    union = client.get(f"/metrics/{image_id}").json()
    assert union["bbox_index"] is None and union["feature"] == "union"
    default = study.default("dinov2-tiny-random")
    assert (union["method"], union["layer"]) == (default.method, default.layer)
    expected = table_value(scores, image_id, "dinov2-tiny-random", default.method,
                           union["layer"], -1, "union", "iou", 90)
    assert union["iou"] == pytest.approx(expected, rel=1e-12)


def test_layers_heads_and_tables(client, study, scores):
    curves = client.get("/layers", params={"metric": "iou", "percentile": 90}).json()
    row = next(c for c in curves if c["model"] == "dinov2-tiny-random" and c["method"] == "cls"
               and c["layer"] == 2)
    union = scores[(scores["model"] == "dinov2-tiny-random") & (scores["method"] == "cls")
                   & (scores["layer"] == 2) & (scores["head"] == -1) & (scores["target"] == "union")
                   & (scores["metric"] == "iou") & np.isclose(scores["threshold"], 90)]
    assert row["value"] == pytest.approx(union["value"].mean())
    heads = client.get("/heads", params={"metric": "coverage"}).json()
    assert heads["layers"] == [0, 1, 2, 3] and heads["heads"] == [0, 1, 2, 3]
    one = client.get("/layers", params={"metric": "coverage",
                                        "image_id": study.image_ids[0]}).json()
    assert {r["model"] for r in one} == {"dinov2-tiny-random", "siglip-tiny-random"}
    assert "leaderboard" in client.get("/tables").json()
    board = client.get("/tables/leaderboard").json()
    assert board["columns"][:2] == ["model", "method"] and board["rows"]


@pytest.mark.parametrize("url, names", [
    ("/metrics/nope.jpg/bbox/0", "image 'nope.jpg'"),
    ("/metrics/{image}/bbox/99", "box 99"),
    ("/metrics/{image}/bbox/-1", "box -1"),
    ("/metrics/{image}/bbox/0?model=vit", "model 'vit'"),
    ("/metrics/{image}/bbox/0?variant=lora", "variant 'lora'"),
    ("/metrics/{image}/bbox/0?method=xrai", "method 'xrai'"),
    ("/metrics/{image}/bbox/0?layer=9", "layer 9"),
    ("/metrics/{image}/bbox/0?head=4", "head 4"),
    ("/metrics/{image}/bbox/0?method=rollout&head=0", "head 0"),
    ("/maps/{image}?model=baseline&method=sobel&layer=1", "layer 1"),
    ("/images/nope.jpg/file", "image 'nope.jpg'"),
    ("/images/nope.jpg/boxes", "image 'nope.jpg'"),
    ("/tables/nope", "table 'nope'"),
    ("/layers?percentile=70", "percentile 70"),
    ("/heads?model=baseline", "no per-head maps"),
])
def test_unknown_things_are_404_naming_them(client, study, url, names):
    response = client.get(url.format(image=study.image_ids[0]))
    assert response.status_code == 404
    assert names in response.json()["detail"]


@pytest.mark.parametrize("url", [
    "/metrics/{image}/bbox/first", "/metrics/{image}/bbox/0?layer=last",
    "/metrics/{image}/bbox/0?head=1.5", "/metrics/{image}/bbox/0?percentile=100",
    "/metrics/{image}/bbox/0?percentile=-1", "/metrics/{image}/bbox/0?percentile=abc",
    "/images/{image}/file?max_side=0", "/layers?metric=accuracy", "/images?correct=yes",
    "/layers?correct=true",
])
def test_malformed_parameters_are_422(client, study, url):
    assert client.get(url.format(image=study.image_ids[0])).status_code == 422


def test_a_bad_parameter_gets_one_readable_sentence(client, study):
    response = client.get(f"/metrics/{study.image_ids[0]}/bbox/0?percentile=150")
    assert response.status_code == 422
    body = response.json()
    assert body["detail"] == "percentile: input should be less than 100 (got 150)"
    assert body["fields"] == ["percentile"] and body["errors"][0]["loc"][-1] == "percentile"


def test_images_and_layers_filter_on_right_and_wrong_predictions(client, study, scores):
    probed, unprobed = "dinov2-tiny-random", "siglip-tiny-random"
    union = scores[(scores["target"] == "union") & (scores["head"] == -1)
                   & (scores["metric"] == "iou") & np.isclose(scores["threshold"], 90)]
    marks = union[(union["model"] == probed) & (union["variant"] == "frozen")].drop_duplicates(
        "image_id").set_index("image_id")["correct"]
    assert marks.notna().all()  # the probe's prediction on every image
    assert union[union["model"].isin([unprobed, "baseline"])]["correct"].isna().all()
    everything = client.get("/images").json()
    assert {i["image_id"]: i["correct"][probed] for i in everything} == marks.to_dict()
    assert all(i["correct"][unprobed] is None for i in everything)
    for side, wanted in (("right", True), ("wrong", False)):
        ids = [i["image_id"] for i in client.get(
            "/images", params={"correct": side, "model": probed}).json()]
        assert ids == sorted(marks.index[marks == wanted])
        curves = client.get("/layers", params={"metric": "iou", "correct": side}).json()
        assert {c["model"] for c in curves} <= {probed}  # no classifier, no side
        rows = union[(union["model"] == probed) & (union["variant"] == "frozen")
                     & (union["correct"] == wanted) & (union["method"] == "cls")
                     & (union["layer"] == 2)]
        got = [c["value"] for c in curves if c["method"] == "cls" and c["layer"] == 2]
        assert got == ([pytest.approx(rows["value"].mean())] if len(rows) else [])
    response = client.get("/images", params={"correct": "right", "model": unprobed})
    assert response.status_code == 404 and "no prediction to be right or wrong" in \
        response.json()["detail"]
    bad = client.get("/images", params={"correct": "yes"}).json()
    assert bad["detail"] == "correct: input should be 'all', 'right' or 'wrong' (got yes)"
    split = pd.read_csv(study.tables_dir / "leaderboard_by_correct.csv")
    assert set(split["model"]) == {probed}
    assert (split["n_right"] + split["n_wrong"] <= 6).all() and split["p_mwu"].isna().all()
    assert split["note"].str.startswith("not tested").all()  # 6 images: under 10 a side


def test_headline_maps_are_the_leaderboards(client, study, scores):
    """Per model the gallery's scores and the default map are the Q1 leaderboard's headline:
    the method with the highest cross-fitted IoU@90, at its in-sample best layer."""
    board = pd.read_csv(study.tables_dir / "leaderboard.csv")
    top = board.sort_values("IoU@90 cross-fitted", ascending=False, kind="stable")
    top = top.drop_duplicates("model").set_index("model")
    profile = client.get("/profile").json()
    images = client.get("/images").json()
    for entry in profile["models"]:
        model, default = entry["model"], entry["default"]
        assert entry["headline"]
        assert (default["method"], default["layer"]) == (
            top.loc[model, "method"], top.loc[model, "best layer (in-sample)"])
        for image in images[:3]:
            expected = table_value(scores, image["image_id"], model, default["method"],
                                   default["layer"], -1, "union", "iou", 90)
            assert num(image["scores"][model]) == pytest.approx(expected, nan_ok=True)
    assert {"auc", "nss"} <= {m["name"] for m in profile["metrics"]}


@pytest.mark.parametrize("url", [
    "/static/../app.py", "/static/%2e%2e/app.py", "/static/%2e%2e%2fapp.py",
    "/static/..%2f..%2fcache.py", "/static//etc/passwd", "/static/%2fetc%2fpasswd",
    "/images/..%2f..%2fetc%2fpasswd/file", "/images/%2e%2e%2f%2e%2e%2fetc%2fpasswd/file",
    "/images//etc/passwd/file", "/images/%2fetc%2fpasswd/file",
    "/tables/..%2fscores", "/tables/%2e%2e%2f%2e%2e%2fstamps", "/tables/%2fetc%2fpasswd",
])
def test_no_path_reaches_a_file_outside(client, url):
    response = client.get(url)
    assert response.status_code == 404
    assert b"root:" not in response.content and b"import" not in response.content


def test_static_page_and_openapi(client):
    page = client.get("/")
    assert page.status_code == 200 and 'src="/static/app.js"' in page.text
    assert client.get("/static/app.js").status_code == 200
    assert "/metrics/{image_id}/bbox/{bbox_index}" in client.get("/openapi.json").json()["paths"]
    static = Path(create_app.__code__.co_filename).parent / "static"
    for file in static.rglob("*.*"):  # nothing from a CDN: the page works offline
        assert not re.findall(r"https?://(?!www\.w3\.org/2000/svg)", file.read_text()), file


def test_requests_never_write_to_the_cache_or_tables(client, study, built):
    _, report = built
    watched = [*study.cache_dir.rglob("*"), *study.tables_dir.rglob("*")]
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in watched}
    image = study.image_ids[2]
    for url in ["/profile", "/images", f"/maps/{image}", f"/metrics/{image}",
                f"/metrics/{image}/bbox/0?model=baseline&method=sobel", "/layers", "/heads",
                "/tables/leaderboard", f"/images/{image}/file"]:
        assert client.get(url).status_code == 200
    after = {p: (p.stat().st_mtime_ns, p.stat().st_size)
             for p in [*study.cache_dir.rglob("*"), *study.tables_dir.rglob("*")]}
    assert after == before


def test_explore_on_an_unbuilt_profile_names_the_build_command(tmp_path, capsys):
    params = yaml.safe_load((ROOT / "params" / "demo.yaml").read_text())
    params.update(profile="never", dataset={"kind": "synthetic", "root": str(tmp_path / "d"),
                                            "n_annotated": 4, "n_pool": 0})
    path = tmp_path / "never.yaml"
    path.write_text(yaml.safe_dump(params))
    from sightline import synthetic

    synthetic.make_synthetic(tmp_path / "d", n_annotated=4, n_pool=0, seed=0)
    code = cli.main(["explore", "--params", str(path), "--report-dir", str(tmp_path / "r"),
                     "--no-browser"], root=ROOT)
    assert code == 2
    assert f"python build.py --params {path}" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_explore_serves_and_stops_cleanly_on_ctrl_c(built):
    path, report = built
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "build.py"), "explore", "--params", str(path), "--report-dir",
         str(report), "--port", str(port), "--no-browser"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while line is not None and "http://" not in line:
            line = process.stdout.readline() or None
        assert line and f"http://127.0.0.1:{port}/" in line
        import httpx2

        for _ in range(100):
            try:
                assert httpx2.get(f"http://127.0.0.1:{port}/profile").status_code == 200
                break
            except httpx2.ConnectError:
                time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err


def test_non_loopback_host_warns_about_no_authentication(built, capsys):
    path, report = built
    # 192.0.2.1 (TEST-NET-1) is not this machine's: the warning comes, then the bind fails.
    code = cli.main(["explore", "--params", str(path), "--report-dir", str(report),
                     "--host", "192.0.2.1", "--port", str(_free_port()), "--no-browser"], root=ROOT)
    err = capsys.readouterr().err
    assert "no authentication" in err and code != 0
    assert cli._loopback("127.0.0.1") and cli._loopback("::1") and cli._loopback("localhost")
    assert not cli._loopback("0.0.0.0")


# -- a real browser ---------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        reason = ("no Chromium: install Debian's chromium and chromium-driver "
                  "(apt-get install -y chromium chromium-driver)")
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"sightline-chromium-{os.getpid()}"
    for argument in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1280,760",
                     f"--user-data-dir={profile_dir}"]:
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()
    shutil.rmtree(profile_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def server(study):
    import uvicorn

    port = _free_port()
    instance = uvicorn.Server(uvicorn.Config(create_app(study), host="127.0.0.1", port=port,
                                             log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    while not instance.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


def test_browser_detail_view_box_selection_and_percentile(browser, server, client, study,
                                                          tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(f"{server}/#/gallery")
    cards = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".card"))
    assert len(cards) == len(study.image_ids)
    image_id = cards[0].get_attribute("data-image")
    cards[0].click()
    wait.until(lambda d: d.find_element(By.ID, "view").get_attribute("data-ready"))

    Select(browser.find_element(By.ID, "sel-model")).select_by_value("dinov2-tiny-random")
    Select(browser.find_element(By.ID, "sel-method")).select_by_value("cls")
    Select(browser.find_element(By.ID, "sel-layer")).select_by_value("1")
    wait.until(lambda d: "layer=1" in (d.find_element(By.ID, "view").get_attribute("data-ready")))
    query = {"model": "dinov2-tiny-random", "variant": "frozen", "method": "cls", "layer": 1,
             "head": -1, "percentile": 90}

    def shown():
        value = browser.find_element(By.ID, "metric-iou").get_attribute("data-value")
        return float(value) if value else None

    union = client.get(f"/metrics/{image_id}", params=query).json()
    wait.until(lambda d: shown() == union["iou"])

    boxes = study.samples[image_id].boxes
    index = _box_clear_of_others(boxes)
    rect = browser.find_element(By.CSS_SELECTOR, f".stage svg rect[data-index='{index}']")
    rect.click()
    target = browser.find_element(By.ID, "metrics-target")
    wait.until(lambda d: target.get_attribute("data-target") == str(index))
    box = client.get(f"/metrics/{image_id}/bbox/{index}", params=query).json()
    wait.until(lambda d: shown() == box["iou"])
    assert "selected" in rect.get_attribute("class")
    assert browser.find_element(By.ID, "metric-iou").text == f"{box['iou']:.4f}"
    screenshot = tmp_path / "explorer.png"
    browser.save_screenshot(str(screenshot))

    requests = browser.execute_script("return window.sightlineRequests")
    rect.click()  # deselect: the union values come back without a request
    wait.until(lambda d: target.get_attribute("data-target") == "union")
    assert shown() == union["iou"]
    assert browser.execute_script("return window.sightlineRequests") == requests

    outline = browser.find_element(By.CSS_SELECTOR, ".stage canvas.outline")
    before = browser.execute_script("return arguments[0].toDataURL()", outline)
    info = browser.find_element(By.ID, "topk-info")
    assert info.get_attribute("data-k") == str(round(study.resolution ** 2 * 0.10))
    slider = browser.find_element(By.ID, "sel-percentile")
    for _ in range(5):
        slider.send_keys(Keys.ARROW_LEFT)  # 90 -> 85
    wait.until(lambda d: info.get_attribute("data-k") == str(round(study.resolution ** 2 * 0.15)))
    assert browser.execute_script("return arguments[0].toDataURL()", outline) != before
    at85 = client.get(f"/metrics/{image_id}", params={**query, "percentile": 85}).json()
    wait.until(lambda d: shown() == at85["iou"])

    browser.find_element(By.TAG_NAME, "h3").click()
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
    wait.until(lambda d: image_id not in d.current_url)
    assert "layer=1" in browser.current_url

    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"
                and "favicon" not in e["message"]]
    keep = os.environ.get("SIGHTLINE_SCREENSHOT")
    if keep:  # refresh the README's screenshot: a small palette PNG
        from PIL import Image

        Image.open(screenshot).convert("RGB").quantize(96).save(keep, optimize=True)


def _box_clear_of_others(boxes) -> int:
    """A box whose centre no later-drawn box covers, so a click there lands on it."""
    for i, b in enumerate(boxes):
        cx, cy = b.left + b.width / 2, b.top + b.height / 2
        if not any(o.left <= cx <= o.left + o.width and o.top <= cy <= o.top + o.height
                   for o in boxes[i + 1:]):
            return i
    raise AssertionError("every box is covered")


def test_a_probed_variant_reads_the_store_the_build_recorded(client, study, scores):
    """Stores of probed / fine-tuned variants are keyed by their run: the explorer takes
    them from tables/stores.csv, and its numbers are the table's."""
    listed = pd.read_csv(study.tables_dir / "stores.csv")
    assert {"frozen", "linear_probe.s0"} <= set(listed.loc[listed["model"] ==
                                                           "dinov2-tiny-random", "variant"])
    image = study.image_ids[0]
    for variant in ("frozen", "linear_probe.s0"):
        path = study.store("dinov2-tiny-random", variant).path
        assert path.name in set(listed["store"].map(lambda p: Path(p).name))
        got = client.get(f"/metrics/{image}/bbox/0", params={
            "model": "dinov2-tiny-random", "variant": variant, "method": "gradcam",
            "layer": 3, "percentile": 90}).json()
        expected = table_value(scores, image, "dinov2-tiny-random", "gradcam", 3, -1, "box0",
                               "iou", 90, variant=variant)
        assert num(got["iou"]) == pytest.approx(expected, nan_ok=True)


def test_browser_says_what_it_shows_instead_of_a_selection_not_there(browser, server, client,
                                                                       study):
    """A URL's percentile, layer or variant that the profile lacks: the page shows the API's
    message, and its controls hold (and its map is) what is shown instead."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    image = study.image_ids[0]

    def text(element_id):
        try:
            found = browser.find_elements(By.ID, element_id)
            return found[0].text if found else ""
        except StaleElementReferenceException:
            return ""

    best = study.best_layer("dinov2-tiny-random", "frozen", "cls")
    cases = [
        ("percentile=150", "sel-percentile", "90", {"percentile": 150}),
        ("model=dinov2-tiny-random&method=cls&layer=99", "sel-layer", str(best),
         {"model": "dinov2-tiny-random", "method": "cls", "layer": 99}),
        ("model=siglip-tiny-random&variant=linear_probe.s0", "sel-variant", "frozen",
         {"model": "siglip-tiny-random", "variant": "linear_probe.s0"}),
    ]
    for query, control, shown, params in cases:
        message = client.get(f"/metrics/{image}", params=params).json()["detail"]
        assert isinstance(message, str) and message
        browser.get(f"{server}/#/gallery")
        browser.get(f"{server}/#/image/{image}?{query}")
        wait.until(lambda d, message=message: text("selection-notice").startswith(message))
        assert "instead" in text("selection-notice")
        wait.until(lambda d, control=control, shown=shown: d.find_element(By.ID, control)
                   .get_attribute("value") == shown)
        ready = wait.until(lambda d: d.find_element(By.ID, "view").get_attribute("data-ready"))
        field = control.removeprefix("sel-")
        assert f"{field}={shown}" in ready  # the map and metrics loaded are the control's

    browser.get(f"{server}/#/layers?variant=linear_probe.s0&model=siglip-tiny-random")
    wait.until(lambda d: "has no 'linear_probe.s0' variant" in text("variant-notice"))
    points = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#layer-chart .point"))
    assert {p.get_attribute("data-model") for p in points} == {"dinov2-tiny-random"}


def test_browser_gallery_filters_on_right_and_wrong_predictions(browser, server, client):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 30)
    probed = "dinov2-tiny-random"
    browser.get(f"{server}/#/gallery?sort={probed}")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".card"))
    for side in ("wrong", "right"):
        expected = {i["image_id"] for i in client.get(
            "/images", params={"correct": side, "model": probed}).json()}
        Select(browser.find_element(By.ID, "gallery-correct")).select_by_value(side)
        wait.until(lambda d, side=side: d.find_element(By.ID, "view").get_attribute(
            "data-ready") == f"gallery|{side}")
        shown = {c.get_attribute("data-image")
                 for c in browser.find_elements(By.CSS_SELECTOR, ".card")}
        assert shown == expected and f"correct={side}" in browser.current_url
        marks = {c.text for c in browser.find_elements(By.CSS_SELECTOR, ".card .correct")}
        assert marks <= {"✓" if side == "right" else "✗"}
    Select(browser.find_element(By.ID, "gallery-sort")).select_by_value("siglip-tiny-random")
    note = wait.until(lambda d: d.find_element(By.ID, "correct-note").text)
    assert "no prediction to be right or wrong" in note


def test_browser_names_boxes_by_feature_offers_heads_only_where_there_are_and_a_way_back(
        browser, server, study):
    """The box list numbers boxes from 1 and names them by feature (no 0-based label index);
    the head selector is there for a map with heads and gone for one without (a baseline,
    like a CNN); an unknown image is an error with links back."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 30)
    image = study.image_ids[0]
    boxes = study.samples[image].boxes
    browser.get(f"{server}/#/gallery")
    browser.get(f"{server}/#/image/{image}?model=dinov2-tiny-random&method=cls&layer=1")
    wait.until(lambda d: d.find_element(By.ID, "view").get_attribute("data-ready"))
    assert [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#box-list th")] == [
        "#", "feature", "area"]
    rows = [[td.text for td in row.find_elements(By.TAG_NAME, "td")]
            for row in browser.find_elements(By.CSS_SELECTOR, "#box-list tr[data-index]")]
    assert [row[:2] for row in rows] == [
        [str(i + 1), f"{b.feature} (mask)" if b.is_mask else b.feature] for i, b in enumerate(boxes)]
    heads = [o.text for o in Select(browser.find_element(By.ID, "sel-head")).options]
    assert heads == ["mean of heads", "0", "1", "2", "3"]

    Select(browser.find_element(By.ID, "sel-model")).select_by_value("baseline")
    wait.until(lambda d: "model=baseline" in d.find_element(By.ID, "view").get_attribute(
        "data-ready"))
    assert not browser.find_elements(By.ID, "sel-head")

    browser.get(f"{server}/#/image/no-such-image.jpg")
    error = wait.until(lambda d: d.find_elements(By.ID, "view-error"))[0]
    assert "no-such-image.jpg" in error.text
    browser.find_element(By.ID, "back-gallery").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".card"))
