"""The positive control's gate, endpoints, Holm and verdicts (studies.positive_control) on
planted score tables whose outcome is known by hand."""

import re

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps

from sightline import extract, pipeline, scoring
from sightline.studies import Study
from sightline.studies import positive_control as pc

IMAGES = [f"img{i:02d}" for i in range(20)]
SESOI = {"coverage": 0.05, "iou": 0.05}
TWIN = "full.s0 (parts removed)"


def planted_scores(moves: dict[tuple[str, str], float], seed: int = 0) -> pd.DataFrame:
    """Union rows of two models (vit: own map cls; cnn: own map gradcam) at layers 1 and 2,
    coverage and IoU@90, plus the centre baseline. ``moves[(model, variant)]``: the shift
    planted at layer 2 only (both metrics); layer 1 stays as the untrained model's."""
    rng = np.random.default_rng(seed)
    rows = []

    def add(model, variant, method, layer, metric, values):
        rows.extend({"image_id": image, "model": model, "variant": variant, "method": method,
                     "layer": layer, "head": -1, "target": "union", "feature": "union",
                     "metric": metric, "threshold": 90.0 if metric == "iou" else np.nan,
                     "value": v} for image, v in zip(IMAGES, values, strict=True))

    for metric in ("coverage", "iou"):
        add("baseline", "baseline", "centre_gaussian", 0, metric, np.full(len(IMAGES), 0.2))
        for model, method in (("vit", "cls"), ("cnn", "gradcam")):
            frozen = {layer: rng.uniform(0.2, 0.4, len(IMAGES)) for layer in (1, 2)}
            for layer, values in frozen.items():
                add(model, "frozen", method, layer, metric, values)
            for (m, variant), move in moves.items():
                if m != model:
                    continue
                noise = rng.normal(0, 0.005, len(IMAGES))
                add(model, variant, method, 1, metric, frozen[1])
                add(model, variant, method, 2, metric, frozen[2] + move + noise)
    return pd.DataFrame(rows)


def gate(runs: list[tuple[str, str, int]], n: int = 40) -> pd.DataFrame:
    """The gate of planted held-out evaluations: ``(model, variant, correct of n)``."""
    return pc.gate_table([
        (variant, {"model": {"name": model}, "val_accuracy": 0.5},
         {"correct": correct, "n": n, "accuracy": correct / n, "macro_f1": 0.5})
        for model, variant, correct in runs], TWIN, alpha=0.05)


def control(moves, runs):
    scores = planted_scores(moves)
    table = pc.endpoint_table(scores, gate(runs), {"vit": "cls", "cnn": "gradcam"}, IMAGES,
                              percentile=90, sesoi=SESOI, n_boot=200, seed=0, alpha=0.05)
    return pc.PositiveControl(gate(runs), pc.judge(table, 0.05), scores, IMAGES, 1, 0.05, {})


def test_the_gate_is_a_one_sided_binomial_test_against_chance():
    table = gate([("vit", "full.s0", 30), ("vit", "lora.s0", 12), ("vit", TWIN, 10)])
    assert table[pc.GATE_P].tolist() == pytest.approx(
        [sps.binomtest(k, 40, 0.25, alternative="greater").pvalue for k in (30, 12, 10)])
    assert table["learned (gate)"].tolist() == [True, False, False]
    assert table["images"].tolist() == ["with the parts", "with the parts", "parts removed"]
    assert table["test accuracy"].tolist() == [0.75, 0.3, 0.25]


def test_a_control_that_passes():
    """Both learners move onto the boxes (enhanced); the null control stays (equivalent)."""
    result = control({("vit", "full.s0"): 0.2, ("cnn", "full.s0"): 0.15, ("vit", "lora.s0"): 0.0},
                     [("vit", "full.s0", 30), ("cnn", "full.s0", 28), ("vit", "lora.s0", 10)])
    ends = result.endpoints.set_index(["model", "variant"])
    assert ends["role"].to_dict() == {("vit", "full.s0"): "primary",
                                      ("cnn", "full.s0"): "primary",
                                      ("vit", "lora.s0"): "null control"}
    assert ends["method"].tolist() == ["cls", "gradcam", "cls"]  # each run's own map
    assert (ends["metric"] == "coverage").all() and (ends["against"] == "untrained").all()
    # the shift is planted at layer 2 only: every halving chooses it for the learners
    assert ends["layer"].tolist()[:2] == [2, 2] and ends["layer_stability"].tolist()[:2] == [1, 1]
    scores = planted_scores({("vit", "full.s0"): 0.2, ("cnn", "full.s0"): 0.15,
                             ("vit", "lora.s0"): 0.0})
    vit = scores[(scores["model"] == "vit") & (scores["layer"] == 2)
                 & (scores["metric"] == "coverage")].pivot(index="image_id", columns="variant",
                                                           values="value")
    assert ends.loc[("vit", "full.s0"), "delta"] == pytest.approx(
        (vit["full.s0"] - vit["frozen"]).mean())
    # Holm over the two primaries only: the smaller p doubled, the larger kept (or raised)
    p = ends.loc[[("vit", "full.s0"), ("cnn", "full.s0")], "p_wilcoxon"].to_numpy()
    small, large = np.argsort(p)
    holm = ends.loc[[("vit", "full.s0"), ("cnn", "full.s0")], "p_holm"].to_numpy()
    assert holm[small] == pytest.approx(min(1, 2 * p[small]))
    assert holm[large] == pytest.approx(max(holm[small], p[large]))
    assert np.isnan(ends.loc[("vit", "lora.s0"), "p_holm"])
    assert ends["outcome"].tolist() == ["enhanced", "enhanced", "equivalent"]
    assert (result.secondary["outcome"] == "").all() and result.secondary["p_holm"].isna().all()
    assert len(result.table) == 3 * 2 * 2  # runs x metrics x (untrained, centre baseline)
    summary = result.summary()
    assert summary.startswith("**The positive control** (2 primary tests, Holm at α = 0.05; "
                              "1 null control):\n- vit **full.s0** (primary; test accuracy 0.75")
    assert summary.endswith(
        "**Overall (20 annotated images, 1 seed per run): 2 of 2 runs that learned moved their "
        "maps onto the boxes (*enhanced*); 1 of 1 null control shown *equivalent* (no "
        "movement): the control passes.**")


def test_a_run_that_fails_the_gate_is_a_null_control_and_its_movement_fails_the_control():
    """The twin did not learn (gate) yet its map moved: a null control that is not
    equivalent, so the control passes only in part, with the caveat naming its IoU."""
    result = control({("vit", "full.s0"): 0.2, ("vit", TWIN): 0.2},
                     [("vit", "full.s0", 30), ("vit", TWIN, 9)])
    ends = result.endpoints.set_index("variant")
    assert ends["role"].to_dict() == {"full.s0": "primary", TWIN: "null control"}
    # one primary: Holm leaves its p as it is; the null control reads its raw p
    assert ends.loc["full.s0", "p_holm"] == ends.loc["full.s0", "p_wilcoxon"]
    assert ends["outcome"].tolist() == ["enhanced", "enhanced"]
    summary = result.summary()
    assert ("1 of 1 runs that learned moved their maps onto the boxes (*enhanced*); 0 of 1 "
            "null control shown *equivalent* (no movement): the control passes only in "
            "part.**") in summary
    assert "\n\nBut 1 secondary comparison of the null control moved onto the boxes" in summary
    assert re.search(re.escape(f"{TWIN} cls iou@90 at layer 2 Δ = ") + r"\+0\.(19|20)\d \[", summary)


def test_a_learner_that_did_not_move_is_not_enhanced():
    result = control({("vit", "full.s0"): 0.0}, [("vit", "full.s0", 30)])
    row = result.endpoints.iloc[0]
    assert (row["role"], row["outcome"]) == ("primary", "equivalent")
    assert "0 of 1 runs that learned moved" in result.summary()
    assert "passes only in part" in result.summary()


def test_chosen_layers_and_signed_differences():
    result = control({("vit", "full.s0"): 0.2}, [("vit", "full.s0", 30)])
    assert result.chosen_layers("iou@90") == {("vit", "full.s0", "cls"): 2}
    assert (pc.signed(0.01234), pc.signed(-0.0001234), pc.signed(0.0)) == (
        "+0.012", "-1.2e-04", "+0.0e+00")


@pytest.mark.slow
def test_the_whole_control_runs_on_a_tiny_study(tmp_path, demo_params):
    """Twin data set, training, extraction, scoring, gate and verdicts on 8 images: the
    twin is the full run's null control, every table and line is there."""
    params = demo_params(["resnet50"], probes={"resnet50": ["linear_probe", "full"]})
    params["dataset"].update(root=str(tmp_path / "data" / "synthetic"), n_annotated=8, n_pool=24)
    params["extraction"].update(batch_size=4, cache_dir=str(tmp_path / "cache"))
    params["finetune"]["checkpoint_dir"] = str(tmp_path / "checkpoints")
    params["metrics"]["percentiles"] = [50, 90]
    params["stats"] = {"n_boot": 100}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(params))
    study = Study.open(path, root=tmp_path, tables=tmp_path / "tables")
    pipeline.prepare_dataset(study.params)
    extract.extract_models(study.samples, list(study.jobs.values()), batch_size=4, device="cpu",
                           seed=0, progress=False)
    extract.extract_baselines(study.samples, ["centre_gaussian"], study.baseline_store, seed=0)
    scores = pd.concat([scoring.score_store(
        store, scoring.build_targets(study.samples, extract.BASELINE_GEOMETRY if name == "baseline"
                                     else study.geometries[name], 224),
        model=name, variant=variant, percentiles=[50, 90], resolution=224, progress=False)
        for (name, variant), store in [*study.stores.items(),
                                       (("baseline", "baseline"), study.baseline_store)]])
    result = pc.run(study, scores)
    assert result.accuracy["variant"].tolist() == ["full.s0", "full.s0 (parts removed)"]
    assert result.accuracy["images"].tolist() == ["with the parts", "parts removed"]
    assert "full.s0 (parts removed)" in set(result.scores["variant"])
    ends = result.endpoints
    assert ends["variant"].tolist() == ["full.s0", "full.s0 (parts removed)"]
    assert ends["method"].tolist() == ["gradcam", "gradcam"]
    assert (ends["role"] == ends["variant"].map(result.accuracy.set_index("variant")[
        "learned (gate)"]).map({True: "primary", False: "null control"})).all()
    assert result.summary().startswith("**The positive control**")
    assert "(8 annotated images, 1 seed per run)" in result.summary()


def test_where_the_control_did_not_run_one_line_says_why(tmp_path):
    models = [{"key": "dinov2", "weights": "random", "size": "tiny"}]
    real = Study.from_sections(tmp_path, models=models, dataset={"kind": "wikichurches",
                                                                 "root": str(tmp_path)})
    assert pc.absence(real) == ("Not run: the control needs the project's synthetic data, whose "
                                "boxes carry the label.")
    demo = Study.from_sections(tmp_path, models=models, dataset={"kind": "synthetic",
                                                                 "root": str(tmp_path)})
    assert pc.absence(demo) == "Not run: no LoRA or full fine-tuning run to test."
