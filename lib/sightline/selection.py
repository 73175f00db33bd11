"""Honest selection: score the best of many candidates (layers, heads) on images it was not
chosen on.

Picking the best layer by its mean over some images and reporting that mean on the same
images is optimistic: with many candidates of equal true quality, the largest sample mean
is above all of their true means. ``cross_fit`` removes that bias by two-fold
cross-fitting, repeated over seeded random halvings of the images: the best candidate is
chosen on one half and scored on the other, and the other way round. Each image thus gets
a held-out score per split (from a candidate chosen without it); its cross-fitted value is
the mean over splits, and the honest estimate is the mean of those over images. The same
halvings serve every group, so groups (models, variants, methods) stay paired by image.

Everything is vectorised over groups, splits, units and candidates; any columns can play
each part, e.g. ``by=["model", "variant", "method"]`` and ``candidate=["layer"]`` (the best
layer), ``candidate=["method", "layer"]`` (a model's headline map), ``candidate=["layer",
"head"]`` (Q3's best head) or ``candidate=["threshold"]`` (a best threshold).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

N_SPLITS = 100


def halvings(units: int, n_splits: int = N_SPLITS, seed: int = 0) -> np.ndarray:
    """``(n_splits, units)`` bool: True = the first half of each seeded random halving."""
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((n_splits, units)), axis=1)
    first = np.zeros((n_splits, units), bool)
    np.put_along_axis(first, order[:, : units // 2], True, axis=1)
    return first


def _nan_argmax(means: np.ndarray) -> np.ndarray:
    """Index of the largest mean along the last axis (first on ties), -1 where all are NaN."""
    filled = np.where(np.isnan(means), -np.inf, means)
    best = filled.argmax(axis=-1)
    return np.where(np.isnan(means).all(axis=-1), -1, best)


def _pick(values: np.ndarray, best: np.ndarray) -> np.ndarray:
    """``values[g, u, best[g, s]]`` as ``(G, S, U)``; NaN where ``best`` is -1."""
    index = np.maximum(best, 0)[:, :, None, None]  # (G, S, 1, 1)
    picked = np.take_along_axis(values[:, None], index, axis=3)[..., 0]
    return np.where(best[:, :, None] >= 0, picked, np.nan)


def cross_fit_arrays(values: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fit ``(G, U, C)`` scores (units x candidates per group; NaN = missing) over the
    ``(S, U)`` halvings ``first``.

    Returns per group and unit the cross-fitted value ``(G, U)`` (mean over splits of the
    unit's score under the candidate chosen on the other half), and per group and split the
    candidates chosen on each half ``(G, S, 2)`` (first half, second half; -1: none).
    """
    valid = ~np.isnan(values)
    filled = np.where(valid, values, 0.0)
    halves = np.stack([first, ~first]).astype(np.float64)  # (2, S, U)
    sums = np.einsum("hsu,guc->hgsc", halves, filled)
    counts = np.einsum("hsu,guc->hgsc", halves, valid.astype(np.float64))
    means = np.divide(sums, counts, out=np.full(sums.shape, np.nan), where=counts > 0)
    chosen = np.moveaxis(_nan_argmax(means), 0, -1)  # (G, S, 2)
    return read_at_choices(values, chosen, first), chosen


def read_at_choices(values: np.ndarray, chosen: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Another ``(G, U, C)`` array read at the candidates `cross_fit_arrays` chose (its
    ``(G, S, 2)``) on the same halvings ``first``: per group and unit, the mean over splits
    of the unit's value under the candidate chosen on the other half, ``(G, U)``. E.g. the
    reference of a paired test read at the layer picked, out of fold, for the treatment."""
    # a unit of the first half is scored with the candidate chosen on the second, and back
    held_out = np.where(first[None], _pick(values, chosen[..., 1]), _pick(values, chosen[..., 0]))
    return _nanmean(held_out, axis=1)


def cross_fit(rows: pd.DataFrame, *, by: Sequence[str], candidate: Sequence[str],
              unit: Sequence[str] = ("image_id",), split_by: str = "image_id", value: str = "value",
              n_splits: int = N_SPLITS, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Best candidate per group, in-sample and cross-fitted (see the module docstring).

    ``rows`` holds one ``value`` per group (``by``), ``unit`` and ``candidate``. Units are
    halved by ``split_by`` (units of one image stay together; the halvings depend only on
    ``seed`` and the sorted ``split_by`` values, so every group sees the same ones).

    Returns ``(summary, per_unit)``. ``summary``, one row per group: the in-sample best
    candidate (its columns) and ``in_sample`` mean, the ``cross_fit`` estimate, ``optimism``
    = in_sample - cross_fit, ``stability`` = share of the 2 x n_splits halves that chose
    the in-sample best, ``n`` units with a cross-fitted value. ``per_unit``: ``by`` +
    ``unit`` + ``value``, each unit's cross-fitted value (for CIs and paired tests).
    """
    by, candidate, unit = list(by), list(candidate), list(unit)
    missing = [c for c in {*by, *candidate, *unit, split_by, value} if c not in rows.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the table; it has {list(rows.columns)}")
    if split_by not in unit:
        raise ValueError(f"split_by={split_by!r} must be one of the unit columns {unit}")
    if rows.duplicated(by + unit + candidate).any():
        first_dup = rows[rows.duplicated(by + unit + candidate)].iloc[0][by + unit + candidate]
        raise ValueError(f"more than one {value!r} per group, unit and candidate, e.g. "
                         f"{first_dup.to_dict()}: select one metric, threshold and target first")
    table = rows.set_index(by + unit + candidate)[value].astype(np.float64)
    wide = table.unstack(candidate)  # (groups x units) x candidates
    groups = wide.index.droplevel(unit).unique()
    units = wide.index.droplevel(by).unique()
    full = wide.reindex(pd.MultiIndex.from_tuples(
        [(*_tuple(g), *_tuple(u)) for g in groups for u in units], names=by + unit))
    values = full.to_numpy().reshape(len(groups), len(units), wide.shape[1])

    images = units.get_level_values(split_by) if len(unit) > 1 else units
    image_ids, image_of_unit = np.unique(np.asarray(images), return_inverse=True)
    first = halvings(len(image_ids), n_splits, seed)[:, image_of_unit]
    per_unit, chosen = cross_fit_arrays(values, first)

    means = _nanmean(values, axis=1)  # (G, C) in-sample means
    best = _nan_argmax(means)
    found = best >= 0
    summary = pd.DataFrame(list(map(_tuple, groups)), columns=by)
    columns = wide.columns.to_frame(index=False)
    for name in candidate:  # the in-sample best; None where a group has no scores
        chosen_values = columns[name].iloc[np.maximum(best, 0)].reset_index(drop=True)
        summary[name] = chosen_values if found.all() else chosen_values.where(found, None)
    summary["in_sample"] = np.where(found, means[np.arange(len(best)), np.maximum(best, 0)],
                                    np.nan)
    summary["cross_fit"] = _nanmean(per_unit, axis=1)
    summary["optimism"] = summary["in_sample"] - summary["cross_fit"]
    summary["stability"] = (chosen == best[:, None, None]).mean(axis=(1, 2))
    summary["n"] = (~np.isnan(per_unit)).sum(axis=1)
    long = pd.DataFrame([(*_tuple(g), *_tuple(u)) for g in groups for u in units],
                        columns=by + unit).assign(**{value: per_unit.reshape(-1)})
    return summary, long.dropna(subset=[value]).reset_index(drop=True)


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    """Mean over ``axis`` ignoring NaN; NaN (no warning) where nothing is left."""
    n = (~np.isnan(x)).sum(axis)
    total = np.where(np.isnan(x), 0.0, x).sum(axis)
    return np.divide(total, n, out=np.full(n.shape, np.nan), where=n > 0)


def _tuple(key) -> tuple:
    return key if isinstance(key, tuple) else (key,)
