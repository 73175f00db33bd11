"""Metrics against direct definitions: a slow argsort reference, hand cases, mitvis' tests."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import linprog
from scipy.special import rel_entr
from scipy.stats import entropy

from sightline import metrics, registry

PERCENTILES = [0, 10, 50, 60, 70, 75, 80, 85, 90, 95, 99.9]
SET = ("iou", "gtc", "sc")

pytestmark = pytest.mark.filterwarnings("error")  # no RuntimeWarning may leak


def slow_scores(maps, masks, percentiles):
    """Direct definitions, one map and one threshold at a time (independent of the engine)."""
    n_maps = len(maps)
    out = {name: np.full((n_maps, len(percentiles)), np.nan) for name in SET}
    out["coverage"] = np.full(n_maps, np.nan)
    out["pointing_game"] = np.full(n_maps, np.nan)
    for i in range(n_maps):
        values = np.asarray(maps[i], np.float32).ravel()
        truth = np.asarray(masks[i], bool).ravel()
        if not truth.any() or values.max() == 0:
            continue
        order = np.argsort(-values, kind="stable")  # ties: lower index first
        for j, p in enumerate(percentiles):
            k = round(values.size * (100 - p) / 100)  # Python's round: halves to even
            top = np.zeros(values.size, bool)
            top[order[:k]] = True
            both = (top & truth).sum()
            out["iou"][i, j] = both / (top | truth).sum()
            out["gtc"][i, j] = both / truth.sum()
            out["sc"][i, j] = both / k if k else np.nan
        total = values.astype(np.float64).sum()
        out["coverage"][i] = values[truth].astype(np.float64).sum() / total
        out["pointing_game"][i] = float(truth[order[0]])
    return out


def awkward_maps(rng, count, shape):
    """Maps with ties, plateaus, zeros, -0.0, tiny and huge dynamic ranges."""
    maps = (rng.random((count, *shape)) ** 3).astype(np.float32)
    maps[0] = 0  # all zero
    maps[1] = 0.7  # constant
    maps[2, : shape[0] // 2] = 2.0  # plateau at the top
    maps[3] = rng.integers(0, 3, shape)  # three levels, many ties
    maps[4] = np.round(maps[4] * 8) / 8
    maps[5] = 1 + rng.random(shape) * 1e-6  # narrow range
    maps[6] = 10.0 ** rng.uniform(-30, 30, shape)  # huge range
    maps[7] = np.where(rng.random(shape) < 0.6, -0.0, maps[7])  # mostly (negative) zeros
    maps[8, 0, 0] = 1e6  # one spike
    signed_zeros = np.where(rng.random(shape) < 0.5, -0.0, 0.0)
    maps[9] = np.where(rng.random(shape) < 0.5, signed_zeros, 1e-35 * rng.random(shape))  # tiny
    return maps


def box_masks(rng, count, shape, empty=(1,)):
    masks = np.zeros((count, *shape), bool)
    for i in range(count):
        y, x = rng.integers(0, shape[0] - 2), rng.integers(0, shape[1] - 2)
        masks[i, y : y + rng.integers(1, shape[0]), x : x + rng.integers(1, shape[1])] = True
    masks[list(empty)] = False
    return masks


def assert_same(got, want):
    np.testing.assert_array_equal(got, want)  # NaN == NaN here


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_top_k_size_rounds_halves_to_even():
    assert metrics.top_k_size(9, [50]).tolist() == [4]  # 4.5 -> 4
    assert metrics.top_k_size(7, [50]).tolist() == [4]  # 3.5 -> 4
    assert metrics.top_k_size(25, [50, 0, 90]).tolist() == [12, 25, 2]  # 12.5, 25, 2.5
    n = 224 * 224
    ks = metrics.top_k_size(n, PERCENTILES)
    assert ks.tolist() == [round(n * (100 - p) / 100) for p in PERCENTILES]


def test_set_scores_match_direct_definition(rng):
    maps = awkward_maps(rng, 14, (13, 17))
    masks = box_masks(rng, 14, (13, 17))
    want = slow_scores(maps, masks, PERCENTILES)
    got = metrics.shared_interest(maps, masks, PERCENTILES)
    for name in SET:
        assert_same(got[name], want[name])
    assert_same(metrics.iou(maps, masks, PERCENTILES), want["iou"])
    assert_same(metrics.pointing_game(maps, masks), want["pointing_game"])
    np.testing.assert_allclose(metrics.coverage(maps, masks), want["coverage"], rtol=1e-12)


def test_smooth_upsampled_maps_match_direct_definition(rng):
    """The engine's usual input: bilinear maps with border plateaus and near-ties."""
    grid = torch.from_numpy((rng.random((6, 1, 7, 7)) ** 4).astype(np.float32))
    maps = F.interpolate(grid, size=(56, 56), mode="bilinear", align_corners=False)[:, 0].numpy()
    masks = box_masks(rng, 6, (56, 56), empty=())
    want = slow_scores(maps, masks, PERCENTILES)
    got = metrics.shared_interest(maps, masks, PERCENTILES)
    for name in SET:
        assert_same(got[name], want[name])


def test_ties_go_to_the_lower_row_major_index():
    constant = np.ones((1, 2, 3))
    first_row = np.array([[[1, 1, 1], [0, 0, 0]]], bool)
    assert metrics.iou(constant, first_row, [50]).tolist() == [[1.0]]  # k = 3: the first row
    plateau = np.array([[[0, 5, 5], [5, 1, 0]]], np.float32)
    second = np.array([[[0, 1, 0], [0, 0, 0]]], bool)
    # k = 2 keeps the two first 5s (indices 1, 2); the one at index 3 is left out
    np.testing.assert_allclose(metrics.shared_interest(plateau, second, [100 * 4 / 6])["sc"], 0.5)
    assert metrics.pointing_game(plateau, second).tolist() == [1.0]  # first maximum: index 1


def test_undefined_scores_are_nan_and_k_zero_is_handled(rng):
    maps = rng.random((3, 4, 5)).astype(np.float32)
    maps[1] = 0
    masks = np.ones((3, 4, 5), bool)
    masks[2] = False
    si = metrics.shared_interest(maps, masks, [50, 99])  # 20 * 1% = 0.2 -> k = 0
    assert np.isnan(si["iou"][1:]).all() and np.isnan(si["sc"][1:]).all()
    assert si["iou"][0].tolist() == [0.5, 0.0] and si["gtc"][0].tolist() == [0.5, 0.0]
    assert np.isnan(si["sc"][0, 1])  # empty top-k set
    assert np.isnan(metrics.coverage(maps, masks)[1:]).all()
    assert np.isnan(metrics.pointing_game(maps, masks)[1:]).all()
    assert np.isnan(metrics.max_iou(masks, [50])[2]).all()


def test_torch_inputs_give_the_same_numpy_results(rng):
    maps = rng.random((3, 6, 6)).astype(np.float32)
    masks = rng.random((3, 6, 6)) < 0.4
    want = metrics.shared_interest(maps, masks, [50, 90])
    got = metrics.shared_interest(torch.from_numpy(maps), torch.from_numpy(masks), [50, 90])
    for name in SET:
        assert isinstance(got[name], np.ndarray)
        assert_same(got[name], want[name])
    assert_same(metrics.coverage(torch.from_numpy(maps), masks), metrics.coverage(maps, masks))


@pytest.mark.parametrize(
    ("maps", "masks", "percentiles", "message"),
    [
        (np.ones((2, 3, 3)), np.ones((2, 3, 4)), [50], r"maps and masks.*\(2, 3, 3\).*\(2, 3, 4\)"),
        (np.ones((3, 3)), np.ones((3, 3)), [50], r"maps must have 3 dimensions.*\(3, 3\)"),
        (np.ones((1, 3, 3)), np.ones((1, 3, 3)), [100], r"percentiles must lie in \[0, 100\)"),
        (np.ones((1, 3, 3)), np.ones((1, 3, 3)), [-1], "percentiles"),
        (-np.ones((1, 3, 3)), np.ones((1, 3, 3)), [50], "maps must be non-negative.*minimum is -1"),
        (np.full((1, 3, 3), np.nan), np.ones((1, 3, 3)), [50], "maps must be finite: found 9"),
        (np.ones((1, 3, 3)), np.full((1, 3, 3), 0.5), [50], "masks must be binary"),
    ],
)
def test_bad_inputs_name_the_argument_and_shapes(maps, masks, percentiles, message):
    with pytest.raises(ValueError, match=message):
        metrics.iou(maps, masks, percentiles)


def test_max_iou_is_reached_by_the_mask_itself_and_bounds_iou(rng):
    masks = box_masks(rng, 8, (10, 12), empty=(3,))
    best = metrics.max_iou(masks, PERCENTILES)
    area = masks.reshape(8, -1).sum(axis=1)[:, None]
    k = metrics.top_k_size(120, PERCENTILES)
    with np.errstate(invalid="ignore"):
        expected = np.minimum(area, k) / np.maximum(area, k)
    expected[area[:, 0] == 0] = np.nan  # no mask: undefined, even where k > 0
    np.testing.assert_allclose(best, expected)
    reached = metrics.iou(masks.astype(np.float32) + 1e-3, masks, PERCENTILES)
    assert_same(reached, best)
    some = metrics.iou(rng.random((8, 10, 12)), masks, PERCENTILES)
    assert (some[~np.isnan(some)] <= best[~np.isnan(some)]).all()
    reachable = np.nan_to_num(best) > 0
    np.testing.assert_allclose(metrics.relative_iou(reached, best)[reachable], 1.0)
    assert metrics.relative_iou([0.2, 0.1], [0.4, 0.0])[0] == 0.5
    assert np.isnan(metrics.relative_iou([0.2, 0.1], [0.4, 0.0])[1])


def test_coverage_and_pointing_game_by_hand():
    maps = np.array([[[1, 3], [0, 4]]], np.float32)
    masks = np.array([[[0, 1], [0, 1]]], bool)
    assert metrics.coverage(maps, masks).tolist() == [7 / 8]
    assert metrics.pointing_game(maps, masks).tolist() == [1.0]
    assert metrics.pointing_game(maps, ~masks).tolist() == [0.0]


# The five cases of mitvis/shared-interest's tests (shared_interest/test/).
def _mitvis_case():
    shape = (5, 250, 250)
    truth, sal = np.zeros(shape), np.zeros(shape)
    truth[0, 0:100, 0:100] = 1
    truth[1, 100:250, 200:250] = 1
    truth[2, 0:250, 0:250] = 1
    truth[3, 0:1, 0:1] = 1
    truth[4, 50:100, 50:100] = 1
    sal[0, 50:150, 50:150] = 1  # overlapping regions
    sal[1, 50:250, 100:250] = 1  # ground truth inside saliency
    sal[2, 50:100, 50:100] = 1  # saliency inside ground truth
    sal[3, 100:150, 150:250] = 1  # no overlap
    sal[4, 50:100, 50:100] = 1  # identical
    return sal, truth


def test_shared_interest_scores_reproduce_mitvis_unit_tests():
    sal, truth = _mitvis_case()
    got = metrics.shared_interest_scores(sal, truth)
    np.testing.assert_allclose(got["iou"], [0.1428571429, 0.25, 0.04, 0.0, 1.0])
    np.testing.assert_allclose(got["sc"], [0.25, 0.25, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(got["gtc"], [0.25, 1.0, 0.04, 0.0, 1.0])
    continuous = sal * np.array([0.2, 0.5, 0.9, 0.1, 0.6])[:, None, None]
    sc = metrics.shared_interest_scores(-continuous, torch.from_numpy(truth), ["sc"])["sc"]
    np.testing.assert_allclose(sc, [0.25, 0.25, 1.0, 0.0, 1.0])  # abs() first


def test_shared_interest_scores_check_binary_inputs():
    sal, truth = _mitvis_case()
    with pytest.raises(ValueError, match="saliency must be binary for 'iou' and 'gtc'"):
        metrics.shared_interest_scores(sal * 0.5, truth)
    with pytest.raises(ValueError, match="ground_truth must be binary"):
        metrics.shared_interest_scores(sal, truth * 0.5)
    with pytest.raises(ValueError, match="unknown scores"):
        metrics.shared_interest_scores(sal, truth, ["dice"])
    empty = metrics.shared_interest_scores(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)))
    assert np.isnan(empty["iou"]).all() and np.isnan(empty["sc"]).all()


# ---------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------


def _study(rng, n_images, n_kinds, grid, resolution):
    maps = (rng.random((n_images, n_kinds, *grid)) ** 3).astype(np.float32)
    maps[0, 0] = 0
    maps[1, 1] = 0.25
    maps[2, 0, :, : grid[1] // 2] = 1.0
    targets, owner = [], []
    for image in range(n_images):
        boxes = box_masks(rng, int(rng.integers(1, 5)), (resolution, resolution), empty=())
        targets += [boxes.any(axis=0), *boxes]
        owner += [image] * (len(boxes) + 1)
    targets.append(np.zeros((resolution, resolution), bool))  # e.g. a box cropped away
    owner.append(0)
    return maps, np.array(targets), np.array(owner)


@pytest.mark.parametrize(("grid", "resolution"), [((7, 7), 56), ((6, 5), 31), ((20, 20), 20)])
def test_sweep_equals_the_1to1_functions_on_repeated_pairs(rng, grid, resolution):
    maps, targets, owner = _study(rng, 4, 5, grid, resolution)
    got = metrics.sweep(maps, targets, owner, PERCENTILES, resolution)
    up = metrics.upsample(maps, resolution)[owner].reshape(-1, resolution, resolution)
    pairs = np.repeat(targets, maps.shape[1], axis=0)
    si = metrics.shared_interest(up, pairs, PERCENTILES)
    for name in SET:
        assert got[name].shape == (len(targets), 5, len(PERCENTILES))
        assert_same(got[name].reshape(-1, len(PERCENTILES)), si[name])
    assert_same(got["pointing_game"].ravel(), metrics.pointing_game(up, pairs))
    np.testing.assert_allclose(got["coverage"].ravel(), metrics.coverage(up, pairs), rtol=1e-6)
    assert_same(got["max_iou"], metrics.max_iou(targets, PERCENTILES))
    assert got["area"].tolist() == targets.reshape(len(targets), -1).sum(axis=1).tolist()
    want = slow_scores(up, pairs, PERCENTILES)
    assert_same(got["iou"].reshape(-1, len(PERCENTILES)), want["iou"])
    constant = (np.ptp(maps.reshape(*maps.shape[:2], -1), axis=2) == 0)[owner].ravel()
    for metric in registry.METRICS:  # each swept metric's registered function, 1:1
        if metric.swept:
            one = metric(up, pairs, PERCENTILES) if metric.thresholded else metric(up, pairs)
            if metric.name == "nss":  # a constant grid map: NaN, not its rounding noise
                one[constant] = np.nan
            np.testing.assert_allclose(got[metric.name].reshape(one.shape), one, rtol=1e-5,
                                       atol=1e-6, err_msg=metric.name)


@pytest.mark.parametrize("n_targets", [9, 20])  # pixel signatures beyond 8 and 16 targets
def test_sweep_handles_many_overlapping_targets_per_image(rng, n_targets):
    maps = (rng.random((1, 3, 5, 5)) ** 2).astype(np.float32)
    targets = box_masks(rng, n_targets, (20, 20), empty=(2,))
    owner = np.zeros(n_targets, int)
    got = metrics.sweep(maps, targets, owner, [50, 90], 20)
    up = np.repeat(metrics.upsample(maps[0], 20)[None], n_targets, axis=0)
    want = metrics.iou(up.reshape(-1, 20, 20), np.repeat(targets, 3, axis=0), [50, 90])
    assert_same(got["iou"].reshape(-1, 2), want)


def test_sweep_is_independent_of_chunks_threads_and_input_type(rng):
    maps, targets, owner = _study(rng, 3, 6, (7, 7), 28)
    threads = torch.get_num_threads()
    base = metrics.sweep(maps, targets, owner, [50, 90], 28)
    tiny = metrics.sweep(
        torch.from_numpy(maps), targets, owner, [90, 50], 28, chunk_mb=1e-6, workers=1
    )
    for name in (*SET, "coverage", "pointing_game"):
        assert_same(tiny[name][..., ::-1] if name in SET else tiny[name], base[name])
    assert torch.get_num_threads() == threads  # restored


def test_upsample_is_batch_independent_and_plain_bilinear(rng):
    grid = rng.random((5, 3, 7, 9)).astype(np.float32)
    up = metrics.upsample(grid, 32)
    assert up.shape == (5, 3, 32, 32) and up.dtype == np.float32
    alone = metrics.upsample(grid[2, 1], 32)
    assert_same(up[2, 1], alone)
    ref = F.interpolate(torch.from_numpy(grid[2][:, None]), size=(32, 32), mode="bilinear")
    assert_same(up[2], ref[:, 0].numpy())
    assert_same(metrics.upsample(up, 32), up)


def test_sweep_validates_targets_and_owners(rng):
    maps, targets, owner = _study(rng, 3, 2, (7, 7), 28)
    with pytest.raises(ValueError, match=r"targets must be \(T, 30, 30\)"):
        metrics.sweep(maps, targets, owner, [50], 30)
    with pytest.raises(ValueError, match="target_image must be"):
        metrics.sweep(maps, targets, owner[:-1], [50], 28)
    with pytest.raises(ValueError, match="must index the 3 images"):
        metrics.sweep(maps, targets, owner + 1, [50], 28)
    with pytest.raises(ValueError, match="maps must have 4 dimensions"):
        metrics.sweep(maps[0], targets, owner, [50], 28)


# ---------------------------------------------------------------------------------------
# Continuous metrics
# ---------------------------------------------------------------------------------------


def test_soft_target_is_a_peak_one_gaussian_per_box():
    target = metrics.soft_target([[10, 20, 30, 28]], 64, 64)  # 20 x 8 px box
    assert target.shape == (64, 64) and target.max() == 1.0
    assert target[23, 19] == 1.0  # pixel centre (19.5, 23.5) is the box centre (20, 24)...
    sigma_x, sigma_y = 20 / 4, max(8 / 4, 1)
    # ...up to half a pixel: compare against the formula directly
    row = np.exp(-((np.arange(64) + 0.5 - 20) ** 2) / (2 * sigma_x**2))
    np.testing.assert_allclose(target[23] / target[23].max(), row / row.max(), 1e-6, 1e-12)
    col = np.exp(-((np.arange(64) + 0.5 - 24) ** 2) / (2 * sigma_y**2))
    np.testing.assert_allclose(target[:, 19] / target[:, 19].max(), col / col.max(), 1e-6, 1e-12)
    dot = metrics.soft_target([[40, 40, 41, 41]], 64, 64)
    two = metrics.soft_target(np.array([[10, 20, 30, 28], [40, 40, 41, 41]]), 64, 64)
    np.testing.assert_allclose(two, np.maximum(target, dot))
    assert not metrics.soft_target(np.zeros((0, 4)), 8, 8).any()
    with pytest.raises(ValueError, match=r"boxes_xyxy must be \(n, 4\)"):
        metrics.soft_target([[1, 2, 3]], 8, 8)


def test_mse_min_max_normalises_the_map():
    maps = np.array([[[0, 2], [4, 8]], [[3, 3], [3, 3]]], np.float32)
    targets = np.array([[[0, 0], [1, 1]], [[0, 0], [0, 0]]], np.float32)
    got = metrics.mse(maps, targets)
    assert got[0] == pytest.approx(((0 - 0) ** 2 + 0.25**2 + 0.5**2 + 0) / 4)
    assert np.isnan(got[1])


def test_kl_matches_scipy_with_eps_added_after_normalising(rng):
    maps = rng.random((3, 5, 5)).astype(np.float32)
    targets = rng.random((3, 5, 5)).astype(np.float32)
    targets[0, :2] = 0
    got = metrics.kl(maps, targets, eps=1e-8)
    for i in range(3):
        p = targets[i].ravel().astype(np.float64)
        q = maps[i].ravel().astype(np.float64)
        p, q = p / p.sum() + 1e-8, q / q.sum() + 1e-8
        assert got[i] == pytest.approx(entropy(p, q), rel=1e-9)  # entropy renormalises
        p, q = p / p.sum(), q / q.sum()
        assert got[i] == pytest.approx(rel_entr(p, q).sum(), rel=1e-9)
    assert metrics.kl(maps, maps)[0] == pytest.approx(0, abs=1e-12)
    zero = metrics.kl(np.zeros_like(maps), targets)
    assert np.isnan(zero).all()


def test_kl_does_not_depend_on_a_maps_scale(rng):
    """A map times 1e-9 (a ViT Grad-CAM scale) scores as the map, not as a uniform map."""
    targets = np.zeros((1, 16, 16), np.float32)
    targets[0, 4:8, 4:8] = 1
    peaked = np.full((1, 16, 16), 1e-3, np.float32)
    peaked[0, 3:9, 3:9] = 1
    uniform = np.ones((1, 16, 16), np.float32)
    base = metrics.kl(peaked, targets)
    for scale in (1e-9, 1e-6, 1e3):
        np.testing.assert_allclose(metrics.kl(peaked * np.float32(scale), targets), base, rtol=1e-5)
        np.testing.assert_allclose(metrics.kl(peaked, targets * np.float32(scale)), base, rtol=1e-5)
    assert base[0] < metrics.kl(uniform, targets)[0] - 1  # far from uniform, at every scale


def test_emd_moves_mass_one_cell_for_an_eighth():
    a = np.zeros((2, 16, 16), np.float32)
    b = np.zeros((2, 16, 16), np.float32)
    a[0, 0:2, 0:2] = 1  # cell (0, 0)
    b[0, 0:2, 2:4] = 1  # cell (0, 1)
    a[1, 0:2, 0:2] = 1
    b[1, 2:4, 2:4] = 1  # cell (1, 1): the diagonal
    np.testing.assert_allclose(metrics.emd(a, b), [1 / 8, np.sqrt(2) / 8])
    assert metrics.emd(a, a).tolist() == [0.0, 0.0]
    assert np.isnan(metrics.emd(np.zeros_like(a), b)).all()


def test_emd_matches_a_linear_program(rng):
    maps = rng.random((2, 16, 16)).astype(np.float32)
    targets = rng.random((2, 16, 16)).astype(np.float32) ** 4
    got = metrics.emd(maps, targets, grid=4)
    centres = (np.arange(4) + 0.5) / 4
    points = np.stack(np.meshgrid(centres, centres, indexing="ij"), -1).reshape(-1, 2)
    cost = np.linalg.norm(points[:, None] - points[None], axis=-1).ravel()
    for i in range(2):
        a = maps[i].reshape(4, 4, 4, 4).mean(axis=(1, 3)).ravel().astype(np.float64)
        b = targets[i].reshape(4, 4, 4, 4).mean(axis=(1, 3)).ravel().astype(np.float64)
        a, b = a / a.sum(), b / b.sum()
        rows = np.kron(np.eye(16), np.ones(16))  # sum_j plan[i, j] = a_i
        cols = np.kron(np.ones(16), np.eye(16))  # sum_i plan[i, j] = b_j
        lp = linprog(cost, A_eq=np.vstack([rows, cols]), b_eq=np.r_[a, b], bounds=(0, None))
        assert got[i] == pytest.approx(lp.fun, rel=1e-7)


def test_1to1_set_scores_match_direct_definition_on_random_tied_maps():
    """Many small maps of a few levels (ties split by the mask at every threshold)."""
    rng = np.random.default_rng(11)
    for _ in range(200):
        count, (h, w) = rng.integers(1, 6), rng.integers(1, 9, 2)
        maps = rng.integers(0, rng.integers(1, 5) + 1, (count, h, w)).astype(np.float32)
        maps *= rng.choice([1.0, 1e-30, 1e20])
        maps = np.where(rng.random(maps.shape) < 0.2, np.float32(-0.0), maps)
        masks = rng.random(maps.shape) < rng.random()
        want = slow_scores(maps, masks, PERCENTILES)
        got = metrics.shared_interest(maps, masks, PERCENTILES)
        for name in SET:
            assert_same(got[name], want[name])
        assert_same(metrics.pointing_game(maps, masks), want["pointing_game"])


def test_1to1_functions_take_an_empty_batch():
    maps, masks = np.zeros((0, 4, 4)), np.zeros((0, 4, 4), bool)
    assert metrics.iou(maps, masks, [50, 90]).shape == (0, 2)
    assert metrics.coverage(maps, masks).shape == (0,)
    assert metrics.pointing_game(maps, masks).shape == (0,)


# ---------------------------------------------------------------------------------------
# Threshold-free ranking scores: AUC and NSS
# ---------------------------------------------------------------------------------------


def _quantised(rng, count, shape):
    """Maps of a few levels (many ties across the mask edge), with signed zeros."""
    levels = rng.integers(1, 6, count)[:, None, None]
    maps = (rng.integers(0, 6, (count, *shape)) % (levels + 1)).astype(np.float32)
    maps *= rng.choice([1.0, 1e-30, 1e20], (count, 1, 1)).astype(np.float32)
    return np.where(rng.random(maps.shape) < 0.1, np.float32(-0.0), maps)


def _hand_nss(values, truth):
    x = np.asarray(values, np.float64).ravel()
    return ((x - x.mean()) / x.std(ddof=0))[np.asarray(truth).ravel()].mean()


def test_auc_equals_sklearn_on_maps_with_ties(rng):
    from sklearn.metrics import roc_auc_score

    maps = np.concatenate([_quantised(rng, 40, (9, 11)), awkward_maps(rng, 10, (9, 11))[3:]])
    masks = rng.random(maps.shape) < rng.uniform(0.05, 0.9, (len(maps), 1, 1))
    got = metrics.auc(maps, masks)
    for i in range(len(maps)):
        values = maps[i].astype(np.float64).ravel()
        if values.max() == 0:
            assert np.isnan(got[i])
            continue
        assert got[i] == pytest.approx(roc_auc_score(masks[i].ravel(), values), abs=1e-12)
    assert np.isfinite(got[[m.max() > 0 for m in maps]]).all()


def test_auc_is_one_half_for_a_constant_map_and_one_for_a_separating_map():
    mask = np.zeros((1, 4, 4), bool)
    mask[0, :2] = True
    assert metrics.auc(np.full((1, 4, 4), 0.3), mask) == [0.5]
    assert metrics.auc(mask.astype(np.float32) + 1, mask) == [1.0]
    assert metrics.auc(2 - mask.astype(np.float32), mask) == [0.0]


def test_nss_equals_a_hand_z_score_on_maps_with_ties(rng):
    maps = np.concatenate([_quantised(rng, 40, (9, 11)), awkward_maps(rng, 10, (9, 11))])
    masks = rng.random(maps.shape) < rng.uniform(0.05, 0.9, (len(maps), 1, 1))
    got = metrics.nss(maps, masks)
    for i in range(len(maps)):
        values = maps[i].astype(np.float64)
        if values.std() == 0:
            assert np.isnan(got[i])
        else:
            # absolute in z units: a map within 1e-6 of its mean cancels ~7 digits either way
            assert got[i] == pytest.approx(_hand_nss(values, masks[i]), rel=1e-9, abs=1e-9)


def test_auc_and_nss_are_nan_for_empty_and_full_masks_and_blank_maps(rng):
    maps = (rng.random((4, 6, 6)) + 0.1).astype(np.float32)
    maps[3] = 0
    masks = rng.random(maps.shape) < 0.5
    masks[0], masks[1] = False, True
    auc, nss = metrics.auc(maps, masks), metrics.nss(maps, masks)
    assert np.isnan(auc[[0, 1, 3]]).all() and np.isfinite(auc[2])
    assert np.isnan(nss[[0, 1, 3]]).all() and np.isfinite(nss[2])
    constant = np.full((1, 6, 6), 0.4, np.float32)
    assert np.isnan(metrics.nss(constant, masks[2:3])).all()
    assert metrics.auc(np.zeros((0, 3, 3)), np.zeros((0, 3, 3), bool)).shape == (0,)
    assert metrics.nss(torch.from_numpy(maps), torch.from_numpy(masks)).shape == (4,)


@pytest.mark.parametrize(("grid", "resolution"), [((7, 7), 56), ((6, 5), 31), ((20, 20), 20)])
def test_sweep_auc_and_nss_equal_the_1to1_functions(rng, grid, resolution):
    maps, targets, owner = _study(rng, 4, 5, grid, resolution)
    maps[3, 2] = np.round(maps[3, 2] * 3) / 3  # a quantised map: ties across the mask edges
    targets = np.concatenate([targets, np.ones((1, resolution, resolution), bool)])
    owner = np.r_[owner, 1]
    got = metrics.sweep(maps, targets, owner, PERCENTILES, resolution)
    up = metrics.upsample(maps, resolution)[owner].reshape(-1, resolution, resolution)
    pairs = np.repeat(targets, maps.shape[1], axis=0)
    assert got["auc"].shape == got["nss"].shape == (len(targets), 5)
    assert_same(got["auc"].ravel(), metrics.auc(up, pairs))  # the same ranks, exactly
    # a constant grid map upsamples to float32 rounding noise, which 1:1 z-scores; the
    # sweep reads the spread from the grid map and gives NaN there
    constant = (np.ptp(maps.reshape(*maps.shape[:2], -1), axis=2) == 0)[owner].ravel()
    assert np.isnan(got["nss"].ravel()[constant]).all()
    want = np.where(constant, np.nan, metrics.nss(up, pairs))
    assert_same(np.isnan(got["nss"].ravel()), np.isnan(want))
    np.testing.assert_allclose(got["nss"].ravel(), want, rtol=1e-5, atol=1e-6)
    assert np.isnan(got["auc"][-1]).all() and np.isnan(got["nss"][-1]).all()  # the full mask


def test_negative_zeros_score_as_positive_zeros_and_the_input_is_left_alone(rng):
    """The one-pass input check reads -0.0 as a bad value; the full check then lets it pass
    as +0.0 (here on maps with ties at zero, across the mask edges)."""
    maps = np.round(rng.random((6, 8, 8)) * 3).astype(np.float32) / 3
    masks = rng.random(maps.shape) < 0.4
    signed = np.where(maps == 0, np.float32(-0.0), maps)
    before = signed.copy()
    for score in (lambda a, b: metrics.iou(a, b, PERCENTILES), metrics.coverage,
                  metrics.pointing_game, metrics.auc, metrics.nss):
        assert_same(score(signed, masks), score(maps, masks))
    assert_same(signed.view(np.uint32), before.view(np.uint32))
