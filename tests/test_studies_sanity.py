"""Q4's tables and sentences (studies.sanity) on planted sanity tables."""

import pandas as pd

from sightline import sanity
from sightline.config import ModelChoice
from sightline.studies import sanity as q4

UNITS = ["original", "head", "block1", "stem"]


def planted_summary(curve, *, abs_offset=0.0):
    """One model (vit, frozen), method cls at layers 1 and 2: layer 2 follows ``curve``
    (Spearman per cascade depth 0..3), layer 1 drops to 0 after the first step."""
    rows = []
    for depth, unit in enumerate(UNITS):
        for layer, mean in ((1, 1.0 if depth == 0 else 0.0), (2, curve[depth])):
            for metric, value in (("spearman", mean), ("spearman_abs", mean + abs_offset)):
                rows.append({"model": "vit", "variant": "frozen", "mode": "cascade",
                             "depth": depth, "unit": unit, "method": "cls", "layer": layer,
                             "metric": metric, "mean": value, "ci_low": value, "ci_high": value,
                             "n": 4})
    return pd.DataFrame(rows)


def test_a_rebound_is_found_and_named_and_a_monotone_fall_is_not():
    summary = planted_summary([1.0, 0.2, 0.3, 0.8])
    flags = sanity.sensitivity_flags(summary, threshold=0.5)
    assert flags[["layer", "mean"]].values.tolist() == [[2, 0.8]]
    assert flags["not_model_sensitive"].tolist() == [True]
    found = q4.rebounds(summary, flags, threshold=0.5)
    assert found == ["vit frozen · cls (layer 2) falls to 0.20 after head and climbs back to "
                     "0.80 after stem"]
    assert q4.rebounds_sentence(found).startswith("The flag reads only the last step; on the "
                                                  "way there, vit frozen · cls (layer 2) falls")
    falling = planted_summary([1.0, 0.6, 0.3, 0.1])
    assert q4.rebounds(falling, sanity.sensitivity_flags(falling), threshold=0.5) == []
    assert q4.rebounds_sentence([]) is None


def test_flag_verdicts_and_their_sentence():
    summary = planted_summary([1.0, 0.9, 0.8, 0.7])
    verdicts = q4.verdicts(sanity.sensitivity_flags(summary, threshold=0.5))
    assert verdicts["verdict"].tolist() == ["not model-sensitive"]
    assert q4.flagged_sentence(verdicts, 0.5) == (
        "Threshold 0.5: **vit · cls** (Spearman 0.70 at layer 2) stay similar to the original "
        "maps: they are flagged not model-sensitive.")
    passed = q4.verdicts(sanity.sensitivity_flags(summary, threshold=0.75))
    assert passed["verdict"].tolist() == ["model-sensitive"]
    assert q4.flagged_sentence(passed, 0.75) == (
        "Threshold 0.75: every method's maps change when the network is re-initialised.")


def test_after_full_randomisation_reads_the_deepest_step_of_every_layer():
    table = q4.after_full_randomisation(planted_summary([1.0, 0.9, 0.8, 0.7]))
    assert table.loc[("vit", "cls")].to_dict() == {1: 0.0, 2: 0.7}


def test_absolute_gap_is_zero_on_non_negative_maps_and_measured_otherwise():
    assert "coincide on every map" in q4.absolute_gap_sentence(planted_summary([1, .5, .4, .3]))
    assert q4.absolute_gap_sentence(planted_summary([1, .5, .4, .3], abs_offset=0.25)).endswith(
        "differ by up to 0.25.")


def test_runs_order_and_weights_sentences():
    steps = pd.DataFrame({
        "model": "vit", "variant": ["frozen"] * 3 + ["full.s0"] * 2, "key": "dinov2",
        "mode": ["original", "cascade", "cascade", "original", "cascade"],
        "depth": [0, 2, 1, 0, 1], "unit": ["original", "block1", "head", "original", "head"],
        "seed": 7, "images": 4, "extracted": [4, 4, 0, 0, 0]})
    runs = q4.runs(steps)
    assert runs[["variant", "mode", "steps", "extracted_now"]].values.tolist() == [
        ["frozen", "cascade", 2, 4], ["frozen", "original", 1, 4], ["full.s0", "cascade", 1, 0],
        ["full.s0", "original", 1, 0]]
    assert q4.cascade_sentence(steps) == ("Cascade order: **vit** (frozen): head → block1; "
                                          "**vit** (full.s0): head")
    choice = ModelChoice(key="dinov2", weights="random", size="tiny")
    assert q4.weights_sentence(runs, {"dinov2": "vit"}, [choice]) == (
        "Weights tested: **vit** frozen (random weights); **vit** full.s0: Q2's fine-tuning "
        "run, started from random weights and trained on this profile's data. The verdicts "
        "below are about these weights.")
