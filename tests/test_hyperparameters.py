"""Random search and Bayesian optimisation (common.experiments.hyperparameters) on cheap objectives."""

import numpy as np
import pytest
from scipy.stats import norm

from common.experiments.hyperparameters import (
    bayesian_optimization,
    expected_improvement,
    fit_gp,
    random_search,
    to_params,
)

SPACE = {"learning_rate": (1e-4, 1e-1), "weight_scale": (1e-3, 1.0)}


def _bowl(params):
    """Maximum 0 at learning_rate 10**-2.5, weight_scale 10**-1.5: minus the squared distance in log10 units."""
    return -((np.log10(params["learning_rate"]) + 2.5) ** 2 + (np.log10(params["weight_scale"]) + 1.5) ** 2)


def test_to_params_is_log_uniform_and_in_bounds():
    assert to_params(np.array([0.0, 1.0]), SPACE) == pytest.approx({"learning_rate": 1e-4, "weight_scale": 1.0})
    assert to_params(np.array([0.5, 0.5]), SPACE)["learning_rate"] == pytest.approx(10**-2.5)
    result = random_search(_bowl, SPACE, 200, seed=0, progress=False)
    lr = np.log10([p["learning_rate"] for p in result.params])
    assert lr.min() >= -4 and lr.max() <= -1
    assert abs(np.mean(lr) + 2.5) < 0.15  # uniform in log10: mean at the middle of [-4, -1]


def test_bayes_starts_where_random_search_starts_and_is_reproducible():
    r = random_search(_bowl, SPACE, 6, seed=3, progress=False)
    b = bayesian_optimization(_bowl, SPACE, 6, num_initial=3, seed=3, progress=False)
    assert r.params[:3] == b.params[:3]  # the same initial design: the two curves part only after it
    assert r.params[3:] != b.params[3:]
    again = bayesian_optimization(_bowl, SPACE, 6, num_initial=3, seed=3, progress=False)
    assert again.params == b.params and again.values == b.values
    assert len(b.values) == 6 and np.all(np.diff(b.best_so_far) >= 0)
    assert b.best_value == max(b.values) and b.best_params == b.params[int(np.argmax(b.values))]


def test_searches_leave_the_global_rng_alone():
    state = np.random.get_state()[1].copy()
    bayesian_optimization(_bowl, SPACE, 5, num_initial=2, seed=0, progress=False)
    assert np.array_equal(state, np.random.get_state()[1])


def test_expected_improvement_formula_and_limits():
    mu, sigma, best = np.array([0.2, 0.5, 0.9]), np.array([0.1, 0.3, 0.05]), 0.6
    # Monte Carlo estimate of E[max(f - best, 0)], f ~ N(mu, sigma^2)
    f = mu + sigma * np.random.default_rng(0).standard_normal((400_000, 3))
    assert np.allclose(expected_improvement(mu, sigma, best), np.maximum(f - best, 0).mean(axis=0), atol=2e-3)
    z = (0.5 - 0.6) / 0.3
    assert expected_improvement(0.5, 0.3, 0.6) == pytest.approx(-0.1 * norm.cdf(z) + 0.3 * norm.pdf(z))
    assert np.allclose(expected_improvement([0.7, 0.5], [0.0, 0.0], 0.6), [0.1, 0.0])  # certain beliefs
    # more uncertainty below the best is worth more; a higher mean is worth more
    assert expected_improvement(0.5, 0.3, 0.6) > expected_improvement(0.5, 0.1, 0.6)
    assert expected_improvement(0.7, 0.1, 0.6) > expected_improvement(0.5, 0.1, 0.6)
    assert expected_improvement(0.7, 0.1, 0.6, xi=0.05) < expected_improvement(0.7, 0.1, 0.6)


def test_fit_gp_interpolates_a_smooth_function():
    rng = np.random.default_rng(1)
    units = rng.random((25, 2))
    values = np.sin(3 * units[:, 0]) + units[:, 1] ** 2
    gp = fit_gp(units, values, seed=0)
    test = rng.random((50, 2))
    mu, sigma = gp.predict(test, return_std=True)
    assert np.max(np.abs(mu - (np.sin(3 * test[:, 0]) + test[:, 1] ** 2))) < 0.1
    assert np.all(sigma >= 0)


def test_bayes_finds_the_optimum_faster_than_random_on_average():
    regret_random, regret_bayes = [], []
    for seed in range(8):
        regret_random.append(-random_search(_bowl, SPACE, 12, seed=seed, progress=False).best_value)
        regret_bayes.append(
            -bayesian_optimization(_bowl, SPACE, 12, num_initial=3, seed=seed, progress=False).best_value
        )
    regret_random, regret_bayes = np.array(regret_random), np.array(regret_bayes)
    # an order of magnitude closer to the optimum on average, and closer on most seeds; a loop whose
    # acquisition is wrong (e.g. the sign of the improvement flipped) does no better than random
    assert regret_bayes.mean() < 0.1 * regret_random.mean(), (regret_bayes, regret_random)
    assert np.sum(regret_bayes < regret_random) >= 7


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="space"):
        random_search(_bowl, {"learning_rate": (1e-2, 1e-3)}, 3, progress=False)
    with pytest.raises(ValueError, match="space"):
        random_search(_bowl, {"learning_rate": (0.0, 1e-3)}, 3, progress=False)
    with pytest.raises(ValueError, match="num_trials"):
        bayesian_optimization(_bowl, SPACE, 0, progress=False)
    with pytest.raises(ValueError, match="num_initial"):
        bayesian_optimization(_bowl, SPACE, 4, num_initial=0, progress=False)
