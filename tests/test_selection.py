"""Cross-fitted selection on planted data: unbiased where in-sample selection is not."""

import warnings

import numpy as np
import pandas as pd
import pytest

from sightline import selection


def long_table(values: np.ndarray, candidate: str = "layer") -> pd.DataFrame:
    """(G, U, C) scores -> rows of model, image_id, candidate, value."""
    g, u, c = np.indices(values.shape).reshape(3, -1)
    return pd.DataFrame({"model": [f"m{i:03d}" for i in g], "image_id": [f"im{i:03d}" for i in u],
                         candidate: c, "value": values.reshape(-1)})


def test_halvings_are_seeded_halves():
    first = selection.halvings(9, n_splits=20, seed=3)
    assert first.shape == (20, 9) and (first.sum(axis=1) == 4).all()
    np.testing.assert_array_equal(first, selection.halvings(9, n_splits=20, seed=3))
    assert len({row.tobytes() for row in first}) > 10


def test_equal_layers_in_sample_best_is_optimistic_cross_fit_is_not():
    """13 layers of equal true mean 0.3: the in-sample best is biased up by about
    E[max of 13 normals] * se = 1.67 * 0.1 / sqrt(60); the cross-fitted best is not."""
    rng = np.random.default_rng(0)
    values = rng.normal(0.3, 0.1, (300, 60, 13))  # 300 replicates as groups
    summary, per_unit = selection.cross_fit(long_table(values), by=["model"],
                                            candidate=["layer"], n_splits=20)
    se = 0.1 / np.sqrt(60)
    assert summary["in_sample"].mean() - 0.3 == pytest.approx(1.67 * se, rel=0.15)
    assert abs(summary["cross_fit"].mean() - 0.3) < 3 * 0.1 / np.sqrt(300 * 60)
    assert (summary["optimism"] > 0).mean() > 0.9
    assert len(per_unit) == 300 * 60 and summary["n"].eq(60).all()


def test_a_planted_best_layer_is_found_and_scored_on_held_out_images():
    rng = np.random.default_rng(1)
    values = rng.normal(0.3, 0.05, (4, 40, 6))
    values[:, :, 4] += 0.2
    values[2, 5, :] = np.nan  # a missing image
    summary, per_unit = selection.cross_fit(long_table(values), by=["model"],
                                            candidate=["layer"], n_splits=10)
    assert summary["layer"].tolist() == [4, 4, 4, 4] and (summary["stability"] == 1).all()
    np.testing.assert_allclose(summary["cross_fit"], np.nanmean(values[:, :, 4], axis=1))
    assert summary["n"].tolist() == [40, 40, 39, 40]


def loop_cross_fit(values, first):
    """One group, split and half at a time (independent of the vectorised code)."""
    g_count, u_count, _ = values.shape
    held = np.full((g_count, len(first), u_count), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        for g in range(g_count):
            for s, half in enumerate(first):
                for choose, score in ((half, ~half), (~half, half)):
                    means = np.nanmean(values[g][choose], axis=0)
                    if not np.isnan(means).all():
                        held[g, s, score] = values[g, score, int(np.nanargmax(means))]
        return np.nanmean(held, axis=1)


def test_vectorised_cross_fit_equals_a_loop_with_ties_and_gaps():
    rng = np.random.default_rng(2)
    values = np.round(rng.random((3, 11, 5)), 1)  # ties between candidates
    values[0, :, 2] = np.nan  # a candidate never scored
    values[1, 3] = np.nan
    first = selection.halvings(11, n_splits=7, seed=4)
    per_unit, chosen = selection.cross_fit_arrays(values, first)
    np.testing.assert_allclose(per_unit, loop_cross_fit(values, first))
    assert chosen.shape == (3, 7, 2)


def test_units_of_one_image_share_a_half_and_bad_tables_are_refused():
    rng = np.random.default_rng(3)
    rows = pd.DataFrame({"model": "m", "image_id": np.repeat([f"i{k}" for k in range(8)], 6),
                         "target": np.tile(np.repeat(["box0", "box1"], 3), 8),
                         "head": np.tile([0, 1, 2], 16), "value": rng.random(48)})
    summary, per_unit = selection.cross_fit(rows, by=["model"], candidate=["head"],
                                            unit=["image_id", "target"], n_splits=5, seed=1)
    # by hand: images halved, both boxes of an image on the same side
    wide = rows.set_index(["image_id", "target", "head"])["value"].unstack("head")
    first = selection.halvings(8, n_splits=5, seed=1)[:, np.repeat(np.arange(8), 2)]
    want = loop_cross_fit(wide.to_numpy()[None], first)[0]
    np.testing.assert_allclose(per_unit["value"], want)
    with pytest.raises(ValueError, match="more than one 'value'"):
        selection.cross_fit(pd.concat([rows, rows]), by=["model"], candidate=["head"],
                            unit=["image_id", "target"])
    with pytest.raises(KeyError, match="layer"):
        selection.cross_fit(rows, by=["model"], candidate=["layer"])


def test_summary_keeps_the_candidate_columns_types():
    rows = long_table(np.random.default_rng(5).random((2, 6, 3)))
    rows["layer"] = rows["layer"].astype(np.int16)
    summary, _ = selection.cross_fit(rows, by=["model"], candidate=["layer"], n_splits=3)
    assert summary["layer"].dtype == np.int16


def test_a_reference_is_read_at_the_treatments_out_of_fold_choices():
    rng = np.random.default_rng(5)
    treated = rng.normal(size=(2, 10, 3))
    treated[0, :, 2] += 5.0  # group 0: layer 2 is clearly best
    reference = rng.normal(size=(2, 10, 3))
    first = selection.halvings(10, n_splits=7, seed=1)
    per_unit, chosen = selection.cross_fit_arrays(treated, first)
    # read at its own choices, the treated array gives back its cross-fitted values
    np.testing.assert_allclose(selection.read_at_choices(treated, chosen, first), per_unit)
    # a loop: each unit, each split, the reference under the layer chosen on the other half
    expected = np.zeros((2, 10))
    for g in range(2):
        for u in range(10):
            expected[g, u] = np.mean([reference[g, u, chosen[g, s, 1 if first[s, u] else 0]]
                                      for s in range(7)])
    np.testing.assert_allclose(selection.read_at_choices(reference, chosen, first), expected)
    assert (chosen[0] == 2).all()
    np.testing.assert_allclose(selection.read_at_choices(reference, chosen, first)[0],
                               reference[0, :, 2])
