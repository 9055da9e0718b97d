"""k-nearest neighbours: the three distance computations against each other and SciPy, voting and its ties."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from common.classifiers.k_nearest_neighbor import KNearestNeighbor
from common.diagnose import assert_close
from common.experiments.linear_classifiers import cross_validate_k

# Each distance method is an exercise of its own, checked against SciPy by tests of its own (one not written
# yet fails only its own): the helpers take the method's name.
DISTANCE_CASES = [(1, 1, 1), (5, 30, 7), (12, 40, 50)]  # num_test, num_train, D


def _fitted(num_train=30, D=7, num_classes=4, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    knn = KNearestNeighbor()
    knn.train(rng.standard_normal((num_train, D)).astype(dtype), rng.integers(num_classes, size=num_train))
    return knn, rng


def _check_distances_match_scipy(method, num_test, num_train, D):
    knn, rng = _fitted(num_train, D)
    X = rng.standard_normal((num_test, D)) * 10
    dists = getattr(knn, method)(X)
    context = {
        "num_test": num_test,
        "num_train": num_train,
        "axes": ("num_test", "num_train"),
        "suspects": {"the L1 (Manhattan) distance instead of L2": cdist(X, knn.X_train, "cityblock")},
    }
    assert_close(f"{method}: dists", dists, cdist(X, knn.X_train), rtol=1e-10, atol=1e-10, context=context)


def _check_image_like_float32_data(method, rtol):
    """Pixel-sized float32 rows: the distances are computed in float64 (the no-loop expansion
    ||x||^2 + ||t||^2 - 2 x.t loses a few digits to cancellation, hence its looser ``rtol``)."""
    rng = np.random.default_rng(1)
    X_train = rng.uniform(-128, 128, size=(50, 784)).astype(np.float32)
    X_test = rng.uniform(-128, 128, size=(9, 784)).astype(np.float32)
    knn = KNearestNeighbor()
    knn.train(X_train, rng.integers(10, size=50))
    expected = cdist(X_test.astype(np.float64), X_train.astype(np.float64))
    assert_close(f"{method}: dists", getattr(knn, method)(X_test), expected, rtol=rtol)


def _check_self_distance_is_zero_not_nan(method):
    knn, _ = _fitted(20, 30)
    X = knn.X_train[:5] * 1e3 + 1e6  # large coordinates: ||x||^2 + ||t||^2 - 2 x.t cancels to round-off
    knn.train(X, knn.y_train[:5])
    dists = getattr(knn, method)(X)
    assert np.all(np.isfinite(dists)) and np.all(dists >= 0)
    np.testing.assert_allclose(np.diag(dists), 0.0, atol=1e-3 * np.abs(X).max())


@pytest.mark.parametrize("num_test,num_train,D", DISTANCE_CASES)
def test_two_loops_distances_match_scipy(num_test, num_train, D):
    _check_distances_match_scipy("compute_distances_two_loops", num_test, num_train, D)


@pytest.mark.parametrize("num_test,num_train,D", DISTANCE_CASES)
def test_one_loop_distances_match_scipy(num_test, num_train, D):
    _check_distances_match_scipy("compute_distances_one_loop", num_test, num_train, D)


@pytest.mark.parametrize("num_test,num_train,D", DISTANCE_CASES)
def test_no_loops_distances_match_scipy(num_test, num_train, D):
    _check_distances_match_scipy("compute_distances_no_loops", num_test, num_train, D)


def test_two_loops_on_image_like_float32_data():
    _check_image_like_float32_data("compute_distances_two_loops", rtol=1e-12)


def test_one_loop_on_image_like_float32_data():
    _check_image_like_float32_data("compute_distances_one_loop", rtol=1e-12)


def test_no_loops_on_image_like_float32_data():
    _check_image_like_float32_data("compute_distances_no_loops", rtol=1e-9)


def test_two_loops_distance_of_a_training_point_to_itself_is_zero_not_nan():
    _check_self_distance_is_zero_not_nan("compute_distances_two_loops")


def test_one_loop_distance_of_a_training_point_to_itself_is_zero_not_nan():
    _check_self_distance_is_zero_not_nan("compute_distances_one_loop")


def test_no_loops_distance_of_a_training_point_to_itself_is_zero_not_nan():
    _check_self_distance_is_zero_not_nan("compute_distances_no_loops")


def test_k1_predicts_the_label_of_the_nearest_point():
    knn = KNearestNeighbor()
    knn.train(np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]), np.array([2, 0, 1]))
    X = np.array([[1.0, 1.0], [9.0, 1.0], [1.0, 9.0], [-3.0, -3.0]])
    for num_loops in (0, 1, 2):
        np.testing.assert_array_equal(knn.predict(X, k=1, num_loops=num_loops), [2, 0, 1, 2])


def test_majority_vote_of_the_k_nearest():
    knn = KNearestNeighbor()
    knn.train(np.zeros((5, 1)), np.array([3, 1, 1, 3, 3]))
    dists = np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1]])
    np.testing.assert_array_equal(knn.predict_labels(dists, k=3), [1, 3])  # votes: {3, 1, 1} and {3, 3, 1}
    np.testing.assert_array_equal(knn.predict_labels(dists, k=5), [3, 3])


def test_ties_go_to_the_smaller_label():
    knn = KNearestNeighbor()
    knn.train(np.zeros((4, 1)), np.array([7, 2, 5, 2]))
    dists = np.array([[0.1, 0.2, 0.9, 0.8], [0.3, 0.9, 0.1, 0.8], [0.2, 0.9, 0.1, 0.8]])
    # row 0: nearest two are labels 7 and 2 -> 2; rows 1, 2: labels 5 and 7 -> 5
    other_rules = {
        "ties broken for the nearest neighbour's label, not the smaller label": np.array([7, 5, 5]),
        "ties broken for the larger label, not the smaller label": np.array([7, 7, 7]),
    }
    y_pred = knn.predict_labels(dists, k=2)
    assert_close(
        "predict_labels: y_pred (k = 2)", y_pred, np.array([2, 5, 5]), atol=0, context={"suspects": other_rules}
    )
    # four nearest: 7, 2, 5, 2 -> 2 wins outright
    np.testing.assert_array_equal(knn.predict_labels(dists, k=4), [2, 2, 2])


def test_predict_agrees_across_implementations():
    knn, rng = _fitted(60, 5, num_classes=3, seed=3)
    X = rng.standard_normal((15, 5))
    for k in (1, 3, 7):
        preds = [knn.predict(X, k=k, num_loops=n) for n in (0, 1, 2)]
        np.testing.assert_array_equal(preds[0], preds[1])
        np.testing.assert_array_equal(preds[0], preds[2])
        assert preds[0].shape == (15,) and set(preds[0]) <= {0, 1, 2}


def test_bad_input_is_rejected_with_a_clear_error():
    knn = KNearestNeighbor()
    with pytest.raises(RuntimeError, match="train"):
        knn.compute_distances_no_loops(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="flatten"):
        knn.train(np.zeros((4, 2, 2)), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="labels"):
        knn.train(np.zeros((4, 3)), np.zeros(3, dtype=int))
    knn.train(np.zeros((4, 3)), np.arange(4))
    with pytest.raises(ValueError, match=r"\(num_test, 3\)"):
        knn.compute_distances_two_loops(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="num_loops"):
        knn.predict(np.zeros((2, 3)), num_loops=3)
    for k in (0, 5, 1.5):
        with pytest.raises(ValueError, match="k must be"):
            knn.predict_labels(np.zeros((2, 4)), k=k)


def test_cross_validation_of_k_on_separated_clusters():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    X = rng.standard_normal((60, 2)) * 0.3 + np.array([[0, 0], [5, 0], [0, 5]])[y]
    order = rng.permutation(60)
    accuracies = cross_validate_k(X[order], y[order], k_choices=[1, 3, 59 - 12], num_folds=5)
    assert set(accuracies) == {1, 3, 47}
    assert all(a.shape == (5,) for a in accuracies.values())
    assert np.all(accuracies[1] == 1.0) and np.all(accuracies[3] == 1.0)
    assert accuracies[47].mean() < 0.9  # a vote over most of the training set drifts to the majority class
    with pytest.raises(ValueError, match="num_folds"):
        cross_validate_k(X, y, [1], num_folds=1)
