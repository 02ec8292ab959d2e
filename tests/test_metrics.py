"""musicdet.metrics against sklearn.metrics on random and adversarial inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as sk

from musicdet import metrics
from musicdet.metrics import MetricsError

TOL = 1e-9


def _random_case(seed: int, n: int, distinct: int | None, prevalence: float = 0.5):
    """Labels 0/1 and scores correlated with them; ``distinct`` rounds scores to force ties."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < prevalence).astype(np.float32)
    labels[:2] = [0, 1]
    scores = labels + rng.normal(0.0, 1.0, n)
    if distinct is not None:
        scores = np.round(scores * distinct / 8.0)
    return labels, scores


RANDOM = [
    _random_case(seed, n, distinct)
    for seed, n, distinct in [
        (0, 50, None),
        (1, 1000, None),
        (2, 1000, 4),
        (3, 5000, 1),
        (4, 300, 40),
    ]
]
ADVERSARIAL = {
    "all_equal": (np.array([0, 1, 0, 1, 1]), np.full(5, 0.3)),
    "perfect": (np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])),
    "inverted": (np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.8, 0.9])),
    "one_positive": (np.r_[np.zeros(999), 1], np.linspace(0, 1, 1000)[::-1]),
    "one_negative": (np.r_[np.ones(999), 0], np.arange(1000.0)),
    "ulp_apart": (np.array([0, 1, 0, 1]), 1.0 + np.arange(4) * np.finfo(float).eps),
    "huge_logits": (np.array([0, 1, 1, 0, 1, 0]), np.array([-1e300, 1e300, 3, 3, -2, 1e-300])),
    "two_values": (np.tile([0, 1, 1, 0, 1], 40), np.tile([0.0, 1.0, 0.0, 1.0, 1.0], 40)),
}
CASES = RANDOM + list(ADVERSARIAL.values())
IDS = [f"random{i}" for i in range(len(RANDOM))] + list(ADVERSARIAL)


def _sklearn_eer(labels, scores) -> float:
    """FPR where FPR = FNR, walking the polyline of sklearn's ROC (gap strictly increases)."""
    fpr, tpr, _ = sk.roc_curve(labels, scores)
    position = np.interp(0.0, fpr + tpr - 1.0, np.arange(fpr.size))
    return float(np.interp(position, np.arange(fpr.size), fpr))


def _sklearn_raw_pauc(labels, scores, beta: float) -> float:
    """Undo McClish: sklearn gives 0.5 (1 + (A - β²/2) / (β - β²/2))."""
    if beta == 1.0:
        return sk.roc_auc_score(labels, scores)
    standardised = sk.roc_auc_score(labels, scores, max_fpr=beta)
    low, high = beta**2 / 2, beta
    return low + (2 * standardised - 1) * (high - low)


def _sklearn_operating_point(labels, scores, target: float):
    """Brute force over precision_recall_curve: max recall, then max precision."""
    precision, recall, thresholds = sk.precision_recall_curve(labels, scores)
    candidates = [
        (r, p, t)
        for p, r, t in zip(precision[:-1], recall[:-1], thresholds, strict=True)
        if p >= target
    ]
    return max(candidates) if candidates else None


@pytest.mark.parametrize(("labels", "scores"), CASES, ids=IDS)
def test_roc_points_equal_sklearn_roc_curve(labels, scores):
    fpr, tpr, thresholds = metrics.roc_points(labels, scores)
    ref_fpr, ref_tpr, ref_thresholds = sk.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr, rtol=0, atol=TOL)
    np.testing.assert_allclose(tpr, ref_tpr, rtol=0, atol=TOL)
    np.testing.assert_array_equal(thresholds, ref_thresholds)


@pytest.mark.parametrize(("labels", "scores"), CASES, ids=IDS)
def test_auc_equals_roc_auc_score(labels, scores):
    assert metrics.auc(labels, scores) == pytest.approx(sk.roc_auc_score(labels, scores), abs=TOL)


@pytest.mark.parametrize(("labels", "scores"), CASES, ids=IDS)
@pytest.mark.parametrize(("alpha", "beta"), [(0.0, 0.1), (0.0, 0.5), (0.25, 0.75), (0.3, 1.0)])
def test_partial_auc_is_the_raw_area_sklearn_standardises(labels, scores, alpha, beta):
    reference = _sklearn_raw_pauc(labels, scores, beta)
    if alpha > 0:
        reference -= _sklearn_raw_pauc(labels, scores, alpha)
    assert metrics.partial_auc(labels, scores, (alpha, beta)) == pytest.approx(reference, abs=TOL)


@pytest.mark.parametrize(("labels", "scores"), CASES, ids=IDS)
def test_eer_is_interpolated_crossing_of_fpr_and_fnr(labels, scores):
    assert metrics.eer(labels, scores) == pytest.approx(_sklearn_eer(labels, scores), abs=TOL)


@pytest.mark.parametrize(("labels", "scores"), CASES, ids=IDS)
@pytest.mark.parametrize("target", [0.5, 0.9, 1.0])
def test_operating_point_matches_precision_recall_curve(labels, scores, target):
    point = metrics.operating_point(labels, scores, target_precision=target)
    reference = _sklearn_operating_point(labels, scores, target)
    assert point["target_reached"] is (reference is not None)
    if reference is not None:
        recall, precision, threshold = reference
        assert point["recall"] == pytest.approx(recall, abs=TOL)
        assert point["precision"] == pytest.approx(precision, abs=TOL)
        assert point["threshold"] == threshold
        predicted = scores >= threshold
        assert point["f1"] == pytest.approx(sk.f1_score(labels, predicted), abs=TOL)
        assert point["accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted), abs=TOL)


@pytest.mark.parametrize(("labels", "scores"), CASES, ids=IDS)
def test_threshold_metrics_match_sklearn(labels, scores):
    threshold = float(np.median(scores))
    result = metrics.threshold_metrics(labels, scores, threshold)
    predicted = scores >= threshold
    assert result["accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted), abs=TOL)
    assert result["precision"] == pytest.approx(sk.precision_score(labels, predicted), abs=TOL)
    assert result["recall"] == pytest.approx(sk.recall_score(labels, predicted), abs=TOL)
    assert result["f1"] == pytest.approx(sk.f1_score(labels, predicted), abs=TOL)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(-3, 3)), min_size=2, max_size=40))
def test_property_heavy_ties_match_sklearn(pairs):
    labels = np.array([p[0] for p in pairs], dtype=int)
    scores = np.array([p[1] for p in pairs], dtype=float) / 3.0
    if labels.min() == labels.max():
        with pytest.raises(MetricsError, match="only class"):
            metrics.evaluate(labels, scores)
        return
    result = metrics.evaluate(labels, scores, fpr_range=(0.0, 0.5))
    assert result["auc"] == pytest.approx(sk.roc_auc_score(labels, scores), abs=TOL)
    assert result["eer"] == pytest.approx(_sklearn_eer(labels, scores), abs=TOL)
    assert result["pauc"] == pytest.approx(_sklearn_raw_pauc(labels, scores, 0.5), abs=TOL)
    reference = _sklearn_operating_point(labels, scores, 0.9)
    assert result["recall"] == (None if reference is None else pytest.approx(reference[0]))


def test_documented_values_for_known_curves():
    labels, scores = ADVERSARIAL["all_equal"]
    assert (metrics.auc(labels, scores), metrics.eer(labels, scores)) == (0.5, 0.5)
    labels, scores = ADVERSARIAL["perfect"]
    assert (metrics.auc(labels, scores), metrics.eer(labels, scores)) == (1.0, 0.0)
    labels, scores = ADVERSARIAL["inverted"]
    assert (metrics.auc(labels, scores), metrics.eer(labels, scores)) == (0.0, 1.0)
    # ROC (0,0) (0,½) (½,1) (1,1), the tie gives the diagonal segment: FPR = FNR at (¼, ¾)
    assert metrics.eer([1, 0, 1, 0], [2, 1, 1, 0]) == pytest.approx(0.25)
    assert metrics.partial_auc([1, 0, 1, 0], [2, 1, 1, 0], (0.0, 0.5)) == pytest.approx(0.375)


def test_evaluate_is_json_and_has_the_contract_keys():
    labels, scores = RANDOM[1]
    result = metrics.evaluate(labels, scores)
    assert {"auc", "eer", "recall", "f1", "precision", "threshold"} <= result.keys()
    assert json.loads(json.dumps(result)) == result
    assert "pauc" not in result
    assert metrics.evaluate(labels, scores, fpr_range=(0, 1))["pauc"] == pytest.approx(
        result["auc"], abs=TOL
    )


def test_unreachable_precision_gives_none_and_a_flag():
    result = metrics.evaluate([1, 0, 1, 0], [0.1, 0.9, 0.2, 0.8])
    assert result["target_reached"] is False
    assert result["recall"] is result["f1"] is result["threshold"] is None
    assert result["auc"] == 0.0


def test_only_order_matters_except_the_threshold():
    labels, logits = RANDOM[1]
    probabilities = 1.0 / (1.0 + np.exp(-logits))
    from_logits = metrics.evaluate(labels, logits)
    from_probabilities = metrics.evaluate(labels, probabilities)
    for key in ("auc", "eer", "recall", "precision", "f1"):
        assert from_logits[key] == pytest.approx(from_probabilities[key], abs=TOL)
    assert from_probabilities["threshold"] == pytest.approx(
        1.0 / (1.0 + np.exp(-from_logits["threshold"]))
    )


def test_mask_selects_frames_and_2d_inputs_flatten():
    labels, scores = RANDOM[1]
    mask = np.random.default_rng(9).random(labels.size) < 0.6
    masked = metrics.evaluate(labels, scores, mask)
    assert masked == metrics.evaluate(labels[mask], scores[mask])
    batched = metrics.evaluate(
        labels.reshape(10, 100), scores.reshape(10, 100), mask.reshape(10, 100)
    )
    assert batched == masked
    labels_with_nan = np.where(mask, labels, np.nan)  # unlabelled frames may hold anything
    assert metrics.evaluate(labels_with_nan, scores, mask) == masked


def test_validate_false_gives_the_same_result():
    labels, scores = RANDOM[2]
    assert metrics.evaluate(labels, scores, validate=False) == metrics.evaluate(labels, scores)


@pytest.mark.parametrize(
    ("labels", "scores", "mask", "message"),
    [
        ([0, 1, 2, 1], [0.1, 0.2, 0.3, 0.4], None, r"got values \{0, 1, 2\} — did you pass class"),
        ([0.2, 0.7, 0.4], [0, 1, 1], None, "did you swap labels and scores"),
        ([0, 1, np.nan], [0.1, 0.2, 0.3], None, "mask="),
        ([1, 1, 1], [0.1, 0.2, 0.3], None, r"only class 1 \(music\) in 3 frames"),
        ([0, 1, 0], [0.1, 0.2, 0.3], [True, False, True], r"only class 0 \(no music\)"),
        ([0, 1, 0], [0.1, np.nan, 0.3], None, "finite; got 1 NaN/inf of 3 .*kept frame 1"),
        ([0, 1, 0], [0.1, 0.2], None, r"same shape; got \(3,\) and \(2,\)"),
        ([0, 1, 0], [[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], None, "music column"),
        ([0, 1, 0], [[0.1], [0.2], [0.3]], None, "squeeze"),
        ([0, 1, 0], [0.1, 0.2, 0.3], [0, 2, 1], "frame indices instead of a mask"),
        ([0, 1, 0], [0.1, 0.2, 0.3], [False] * 3, "the mask keeps no frame"),
        ([0, 1, 0], ["a", "b", "c"], None, "scores must be numeric"),
    ],
)
def test_bad_inputs_raise_one_clear_error(labels, scores, mask, message):
    with pytest.raises(MetricsError, match=message):
        metrics.evaluate(np.array(labels), np.array(scores), mask)


def test_bad_parameters_name_the_rule():
    with pytest.raises(MetricsError, match="0 < target_precision <= 1"):
        metrics.evaluate([0, 1], [0.1, 0.2], target_precision=1.5)
    with pytest.raises(MetricsError, match=r"alpha=0.5, beta=0.2"):
        metrics.partial_auc([0, 1], [0.1, 0.2], (0.5, 0.2))


def test_threshold_metrics_need_no_second_class_and_report_none():
    result = metrics.threshold_metrics([1, 1, 1], [0.1, 0.2, 0.3], threshold=0.5)
    assert result == {
        "threshold": 0.5,
        "accuracy": 0.0,
        "precision": None,
        "recall": 0.0,
        "f1": 0.0,
    }


def test_bootstrap_resamples_whole_groups():
    """Repeating each frame 7 times inside its own group leaves every replicate's ROC as is."""
    labels, scores = _random_case(5, 60, None)
    single = metrics.bootstrap_ci(labels, scores, groups=np.arange(60), n=200, seed=3)
    repeated = metrics.bootstrap_ci(
        np.repeat(labels, 7),
        np.repeat(scores, 7),
        groups=np.repeat(np.arange(60), 7),
        n=200,
        seed=3,
    )
    assert repeated == pytest.approx(single, abs=TOL)
    by_frame = metrics.bootstrap_ci(
        np.repeat(labels, 7), np.repeat(scores, 7), groups=1, n=200, seed=3
    )
    width = single["auc_high"] - single["auc_low"]
    assert by_frame["auc_high"] - by_frame["auc_low"] < 0.6 * width  # frames look too certain
    assert metrics.bootstrap_ci(
        np.repeat(labels, 7), np.repeat(scores, 7), groups=7, n=200, seed=3
    ) == pytest.approx(single, abs=TOL)


def test_bootstrap_interval_covers_the_estimate_and_is_seeded():
    labels, scores = _random_case(6, 4000, None)
    result = metrics.bootstrap_ci(labels, scores, groups=100, n=300, seed=1, level=0.9)
    assert result["replicates"] == 300
    assert result["auc_low"] < metrics.auc(labels, scores) < result["auc_high"]
    assert result["eer_low"] < metrics.eer(labels, scores) < result["eer_high"]
    assert result == metrics.bootstrap_ci(labels, scores, groups=100, n=300, seed=1, level=0.9)
    assert result != metrics.bootstrap_ci(labels, scores, groups=100, n=300, seed=2, level=0.9)


def test_bootstrap_drops_replicates_without_both_classes():
    labels = np.repeat([0, 1, 0, 1], 10)
    scores = np.repeat([0.1, 0.9, 0.4, 0.6], 10)
    result = metrics.bootstrap_ci(labels, scores, groups=10, n=200, seed=0, metrics=("auc",))
    rng = np.random.default_rng(0)  # the same draws: 4 of the 4 groups per replicate
    classes = [{i % 2 for i in rng.integers(0, 4, 4)} for _ in range(200)]
    mixed = sum(len(found) == 2 for found in classes)
    assert 150 < mixed < 200  # about 7/8 of the replicates hold both classes
    assert result == {"replicates": mixed, "auc_low": 1.0, "auc_high": 1.0}  # all pairs ordered


@pytest.mark.parametrize(
    ("groups", "kwargs", "message"),
    [
        (40, {}, "at least 2 groups"),
        (np.zeros(5), {}, r"one id per frame, shape \(40,\)"),
        (0, {}, "block length must be >= 1"),
        (10, {"metrics": ("f1",)}, "subset of"),
        (10, {"level": 1.0}, "0 < level < 1"),
    ],
)
def test_bootstrap_bad_arguments(groups, kwargs, message):
    labels, scores = _random_case(7, 40, None)
    with pytest.raises(MetricsError, match=message):
        metrics.bootstrap_ci(labels, scores, groups, **kwargs)


def _paired_reference(labels, a, b, groups, mask, n, seed, level):
    """Brute force: each replicate gathers the drawn groups' frames and calls `auc` on them
    (lists of arrays: the mean AUC), with the draws `bootstrap_ci` documents."""
    keep = np.ones(len(labels), bool) if mask is None else mask
    labels, groups = labels[keep], groups[keep]
    a, b = ([s[keep] for s in arrays] for arrays in (a, b))
    ids = np.unique(groups, return_inverse=True)[1]
    n_groups = ids.max() + 1
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n):
        frames = np.concatenate([np.flatnonzero(ids == g) for g in rng.integers(0, n_groups,
                                                                                 n_groups)])
        drawn = labels[frames]
        if drawn.all() or not drawn.any():
            continue
        samples.append(np.mean([metrics.auc(drawn, s[frames]) for s in a])
                       - np.mean([metrics.auc(drawn, s[frames]) for s in b]))
    return np.quantile(samples, [(1 - level) / 2, (1 + level) / 2]), len(samples)


@pytest.mark.parametrize(("seed", "distinct", "use_mask", "seeds"), [
    (0, None, False, (1, 1)), (1, 3, False, (1, 1)), (2, 4, True, (1, 1)), (3, None, True, (2, 3)),
])
def test_paired_bootstrap_diff_equals_a_brute_force_resample(seed, distinct, use_mask, seeds):
    """Uneven groups, ties, a mask, several score arrays per side: the same interval as
    rebuilding every replicate's frames."""
    rng = np.random.default_rng(seed)
    labels, first = _random_case(seed, 300, distinct, prevalence=0.3)
    groups = np.sort(rng.integers(0, 9, 300))
    mask = rng.random(300) < 0.8 if use_mask else None

    def arrays(count, shift):
        noisy = [first + shift + rng.normal(0, 0.8, 300) for _ in range(count)]
        return [np.round(s * distinct) if distinct else s for s in noisy]

    a, b = arrays(seeds[0], 0.0), arrays(seeds[1], 0.0)
    result = metrics.paired_bootstrap_diff(labels, a if seeds[0] > 1 else a[0],
                                           b if seeds[1] > 1 else b[0], groups, mask,
                                           n=200, seed=5, level=0.9)
    (low, high), used = _paired_reference(labels, a, b, groups, mask, 200, 5, 0.9)
    assert result["replicates"] == used
    assert result["low"] == pytest.approx(low, abs=1e-12)
    assert result["high"] == pytest.approx(high, abs=1e-12)
    auc_a = np.mean([metrics.auc(labels, s, mask) for s in a])
    auc_b = np.mean([metrics.auc(labels, s, mask) for s in b])
    assert result["auc_a"] == pytest.approx(auc_a, abs=1e-12)
    assert result["auc_b"] == pytest.approx(auc_b, abs=1e-12)
    assert result["difference"] == pytest.approx(auc_a - auc_b, abs=1e-12)


def test_paired_bootstrap_diff_of_identical_scores_is_zero_and_of_better_ones_positive():
    labels, scores = _random_case(8, 2000, None)
    groups = np.arange(2000) // 100
    same = metrics.paired_bootstrap_diff(labels, scores, scores.copy(), groups, n=300)
    assert (same["difference"], same["low"], same["high"]) == (0.0, 0.0, 0.0)
    worse = scores + np.random.default_rng(1).normal(0, 2.0, 2000)
    better = metrics.paired_bootstrap_diff(labels, scores, worse, groups, n=300)
    assert 0 < better["low"] < better["difference"] < better["high"]


def test_paired_bootstrap_diff_shares_the_draws_of_bootstrap_ci():
    """The same seed and groups draw the same replicates: replicates lacking a class match."""
    labels = np.repeat([0, 1, 0, 1], 10)
    scores = np.repeat([0.1, 0.9, 0.4, 0.6], 10)
    single = metrics.bootstrap_ci(labels, scores, groups=10, n=200, metrics=("auc",))
    paired = metrics.paired_bootstrap_diff(labels, scores, scores, np.arange(40) // 10, n=200)
    assert paired["replicates"] == single["replicates"] < 200


def test_paired_bootstrap_diff_needs_two_groups():
    labels, scores = _random_case(9, 40, None)
    with pytest.raises(MetricsError, match="at least 2 groups"):
        metrics.paired_bootstrap_diff(labels, scores, scores, np.zeros(40))
