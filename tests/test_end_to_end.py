"""The real notebooks, built end to end on a minimal offline profile in a temp dir."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from sightline import pipeline, stats

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_minimal_profile_builds_report_notebooks_and_tables(tmp_path):
    params = yaml.safe_load((ROOT / "params" / "demo.yaml").read_text())
    params.update(
        profile="e2e",
        dataset={"kind": "synthetic", "root": str(tmp_path / "data"), "n_annotated": 8,
                 "n_pool": 40},
        models=[{"key": "dinov2", "weights": "random", "size": "tiny"},
                {"key": "siglip", "weights": "random", "size": "tiny"},
                {"key": "resnet50", "weights": "random", "size": "tiny"}],
        extraction={"batch_size": 4, "device": "cpu", "cache_dir": str(tmp_path / "cache")},
        stats={"n_boot": 200}, heads={"min_boxes": 2, "n_permutations": 50},
        report={"gallery_size": 1, "examples": 4, "split_by_correct": True},
        finetune={"strategies": {"dinov2": ["linear_probe", "lora"], "siglip": ["linear_probe"],
                                 "resnet50": ["linear_probe", "full"]},
                  "epochs": 1, "batch_size": 8, "val_fraction": 0.25, "device": "cpu",
                  "checkpoint_dir": str(tmp_path / "checkpoints")},
    )
    params["metrics"]["percentiles"] = [50, 90]
    params["sanity"].update(models=[{"key": "resnet50", "variant": "full"},
                                    {"key": "resnet50", "variant": "frozen"}], depths=[1],
                            max_images=4)
    params.pop("photos")  # built on its own in tests/test_photos.py
    params["shared_interest"].update(
        dataset={"kind": "synthetic_human_attention", "root": str(tmp_path / "si"),
                 "subjects": ["dog", "car"], "per_subject": 2},
        models=[{"key": "resnet101", "weights": "random", "size": "tiny"},
                {"key": "swin_t", "weights": "random", "size": "tiny"}],
        xrai={"steps": 2, "batch_size": 4, "algorithm": "fast"}, gallery_size=1,
    )
    path = tmp_path / "e2e.yaml"
    path.write_text(yaml.safe_dump(params))

    result = pipeline.build(path, root=ROOT, report_root=tmp_path / "report")
    out = result.profile_dir
    _readme_snippet_reads_the_build(path, out / "tables")
    assert result.executed == ["00_data", "q1_alignment", "q2_finetuning", "q3_heads",
                               "q4_sanity", "si_shared_interest"]
    for name in result.executed:
        assert (out / "notebooks" / f"{name}.ipynb").exists()
    html = (out / "index.html").read_text()
    for title in ("The data", "Q1: do the models look where the experts look?",
                  "Q2: does fine-tuning move attention onto the expert features?",
                  "Q3: do single attention heads specialise?",
                  "Q4: is the map about the model? The randomisation sanity check",
                  "Run summary"):
        assert title in html
    assert "data:image/png;base64," in html  # figures embedded
    assert (out / "report.pdf").stat().st_size > 10_000

    boxes = pd.read_csv(out / "tables" / "boxes.csv")
    assert list(boxes.columns[:9]) == ["image_id", "box_index", "group_label", "label", "feature",
                                       "left", "top", "width", "height"]
    assert boxes[["left", "top", "width", "height"]].stack().between(0, 1).all()

    scores = pd.read_parquet(out / "tables" / "scores.parquet")
    assert list(scores.columns) == ["image_id", "model", "variant", "method", "layer", "head",
                                    "target", "feature", "metric", "threshold", "value",
                                    "correct"]
    assert set(scores["model"]) == {"dinov2-tiny-random", "siglip-tiny-random",
                                    "resnet50-tiny-random", "baseline"}
    assert {"cls", "rollout", "probe", "gradcam", "sobel"} <= set(scores["method"])
    assert scores["image_id"].nunique() == 8
    assert scores.loc[scores["metric"] == "iou", "value"].dropna().between(0, 1).all()

    assert {"frozen", "linear_probe.s0", "lora.s0", "full.s0", "baseline"} == set(scores["variant"])
    # correct: every model's maps have a style head here (the frozen ones' linear probe), read
    # from the map stores (no predictions file beside them); the baselines have none
    is_baseline = scores["model"] == "baseline"
    assert scores.loc[~is_baseline, "correct"].notna().all()
    assert scores.loc[is_baseline, "correct"].isna().all()
    assert not list((tmp_path / "cache").rglob("*.predictions.csv"))
    for name in ("leaderboard_by_correct", "q2_deltas_by_correct", "si_table1_by_correct"):
        split = pd.read_csv(out / "tables" / f"{name}.csv")
        assert len(split) and (split["n_right"] + split["n_wrong"]).between(1, 8).all()
        # at most 8 images: no side reaches 10, so each row is reported, not tested
        assert split["p_mwu"].isna().all()
        assert split["note"].str.startswith("not tested: fewer than 10 images").all()
    runs = pd.read_csv(out / "tables" / "finetune_runs.csv")
    assert len(runs) == 5 and runs["val_accuracy"].between(0, 1).all()
    deltas = pd.read_csv(out / "tables" / "q2_deltas.csv")
    assert {"lora", "full", "linear_probe"} == set(deltas["strategy"])
    assert set(deltas["verdict"]) <= set(stats.VERDICTS)
    probe = deltas[(deltas["strategy"] == "linear_probe") & (deltas["method"] != "gradcam")]
    assert len(probe) and (probe["delta"] == 0).all()
    assert (out / "tables" / "q2_positive_control.csv").exists()

    leaderboard = pd.read_csv(out / "tables" / "leaderboard.csv")
    assert "baseline" in set(leaderboard["model"])
    # the leaderboard scores the frozen maps: only the frozen weights' check is on its rows
    flagged = leaderboard.dropna(subset=["not_model_sensitive"])
    assert set(zip(flagged["model"], flagged["method"], strict=True)) == {
        ("resnet50-tiny-random", "gradcam")}
    frozen = pd.read_csv(out / "tables" / "sanity_flags.csv").query("variant == 'frozen'")
    assert flagged["Spearman after full randomisation"].tolist() == frozen["mean"].tolist()
    sanity = pd.read_csv(out / "tables" / "sanity.csv")
    assert sorted(sanity.query("mode == 'cascade'")["depth"].unique()) == [0, 1, 6]
    assert set(sanity["n"]) <= {0, 1, 2, 3, 4}
    heads = pd.read_parquet(out / "tables" / "heads.parquet")
    assert {"union"} < set(heads["feature"])

    si_scores = pd.read_parquet(out / "tables" / "si_scores.parquet")
    assert list(si_scores.columns) == list(scores.columns)
    assert set(si_scores["method"]) == {"gradcam", "xrai"}
    assert si_scores["image_id"].nunique() == 4
    table1 = pd.read_csv(out / "tables" / "si_table1.csv")
    assert len(table1) == 4 and table1["iou_paper"].notna().all()
    assert {"paired t", "Welch t", "one-way ANOVA", "Tukey HSD", "two-way ANOVA"} <= set(
        pd.read_csv(out / "tables" / "si_tests.csv")["test"])
    assert "Shared Interest replication" in html

    again = pipeline.build(path, root=ROOT, report_root=tmp_path / "report")
    assert again.executed == []


def _readme_snippet_reads_the_build(params: Path, tables: Path) -> None:
    """The README's "own notebook" code, as written but for this build's params and tables,
    gives the leaderboard the build wrote and a figure."""
    import matplotlib

    readme = (ROOT / "README.md").read_text()
    code = readme.split("## Use it from your own notebook", 1)[1].split("```python\n", 1)[1]
    code = code.split("```", 1)[0]
    opened = 'Study.open("params/demo.yaml")'
    assert code.count(opened) == 1
    code = code.replace(opened, f"Study.open({str(params)!r}, tables={str(tables)!r})")
    namespace: dict = {}
    matplotlib.use("Agg")
    exec(compile(code.replace("print(board.table)", "board.table"), "README.md", "exec"),
         namespace)
    ci = ["CI low", "CI high"]  # the README's n_boot is not this build's
    built = pd.read_csv(tables / "leaderboard.csv").drop(columns=ci)
    pd.testing.assert_frame_equal(namespace["board"].table.drop(columns=ci), built,
                                  check_dtype=False, check_exact=False)

