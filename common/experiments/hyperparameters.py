"""Hyperparameter search for FullyConnectedNets: random search and Bayesian optimisation (a Gaussian process
with expected improvement) over a box of log-uniform hyperparameters, on the same budget of trials."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from tqdm.auto import tqdm

__all__ = ["SearchResult", "to_params", "random_search", "expected_improvement", "fit_gp", "bayesian_optimization"]

#: An objective maps hyperparameters to a score to MAXIMISE (e.g. validation accuracy).
Objective = Callable[[dict], float]


@dataclass
class SearchResult:
    """The trials of one search, in the order they were run."""

    method: str
    params: list[dict] = field(default_factory=list)  # hyperparameters of each trial
    values: list[float] = field(default_factory=list)  # the objective of each trial
    units: list[np.ndarray] = field(default_factory=list)  # each trial's point in the unit cube (d,)

    @property
    def best_so_far(self) -> np.ndarray:
        """(num_trials,) the best value found after each trial."""
        return np.maximum.accumulate(np.asarray(self.values, dtype=float))

    @property
    def best_index(self) -> int:
        return int(np.argmax(self.values))

    @property
    def best_params(self) -> dict:
        return self.params[self.best_index]

    @property
    def best_value(self) -> float:
        return float(self.values[self.best_index])


def _check_space(space: dict) -> None:
    """``space`` maps each name to ``(low, high)`` with ``0 < low < high`` (values drawn log-uniformly)."""
    if not isinstance(space, dict) or not space:
        raise ValueError(f"space must be a non-empty dict name -> (low, high), got {space!r}")
    for name, bounds in space.items():
        if np.shape(bounds) != (2,) or not 0 < bounds[0] < bounds[1]:
            raise ValueError(
                f"space[{name!r}] must be (low, high) with 0 < low < high (searched log-uniformly), got {bounds!r}"
            )


def _check_budget(num_trials: int, num_initial: int = 1) -> None:
    for name, value in (("num_trials", num_trials), ("num_initial", num_initial)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def to_params(u: np.ndarray, space: dict) -> dict:
    """The hyperparameters at point ``u`` (d,) of the unit cube: coordinate i is the position of the i-th
    name between log10(low) and log10(high)."""
    out = {}
    for ui, (name, (low, high)) in zip(u, space.items()):
        lo, hi = np.log10(low), np.log10(high)
        out[name] = float(10 ** (lo + float(ui) * (hi - lo)))
    return out


def _run(result: SearchResult, objective: Objective, u: np.ndarray, space: dict, bar) -> None:
    params = to_params(u, space)
    result.units.append(np.asarray(u, dtype=float))
    result.params.append(params)
    result.values.append(float(objective(params)))
    bar.set_postfix(best=f"{max(result.values):.3f}")


def random_search(objective: Objective, space: dict, num_trials: int, seed=0, progress=True) -> SearchResult:
    """``num_trials`` points drawn log-uniformly from ``space`` with a generator seeded by ``seed``.

    Its first trials are the initial points of ``bayesian_optimization`` with the same seed.
    """
    _check_space(space)
    _check_budget(num_trials)
    rng = np.random.default_rng(seed)
    units = rng.random((num_trials, len(space)))  # row-major draws: the first rows do not depend on num_trials
    result = SearchResult("random search")
    with tqdm(units, desc="random search", disable=not progress) as bar:
        for u in bar:
            _run(result, objective, u, space, bar)
    return result


def expected_improvement(mu, sigma, best, xi=0.0):
    """Expected improvement over ``best + xi`` of a Gaussian ``N(mu, sigma^2)`` belief (maximisation).

    ``EI = (mu - best - xi) * Phi(z) + sigma * phi(z)`` with ``z = (mu - best - xi) / sigma``; where
    ``sigma`` is 0 the belief is certain and EI is ``max(mu - best - xi, 0)``.
    """
    mu, sigma = np.asarray(mu, dtype=float), np.asarray(sigma, dtype=float)
    gain = mu - best - xi
    safe = np.where(sigma > 0, sigma, 1.0)
    z = gain / safe
    ei = gain * norm.cdf(z) + safe * norm.pdf(z)
    return np.where(sigma > 0, ei, np.maximum(gain, 0.0))


def fit_gp(units: np.ndarray, values: np.ndarray, seed=0) -> GaussianProcessRegressor:
    """A Gaussian process fitted to ``values`` (n,) at ``units`` (n, d) in the unit cube.

    Kernel: constant * Matern(5/2, one length scale per dimension) + white noise (trials are noisy); the
    targets are standardised, and the kernel's hyperparameters are fitted by maximum likelihood.
    """
    d = units.shape[1]
    kernel = ConstantKernel(1.0, (1e-2, 1e2)) * Matern(
        length_scale=np.full(d, 0.3), length_scale_bounds=(0.02, 5.0), nu=2.5
    ) + WhiteKernel(1e-2, (1e-6, 1.0))
    gp = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=3, random_state=seed)
    with warnings.catch_warnings():  # a length scale at its bound is expected with a handful of points
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(units, values)
    return gp


def bayesian_optimization(
    objective: Objective,
    space: dict,
    num_trials: int,
    num_initial=3,
    num_candidates=2000,
    xi=0.01,
    seed=0,
    progress=True,
) -> SearchResult:
    """Maximise ``objective`` over ``space`` in ``num_trials`` trials.

    The first ``num_initial`` points are random (the same as ``random_search`` with this seed). Then, at every
    trial, a Gaussian process (``fit_gp``) is fitted to all the results so far, ``num_candidates`` random
    points of the unit cube are scored by their expected improvement over the best value (``xi``: the
    margin that counts as an improvement, in the objective's units), and the best candidate is run.
    """
    _check_space(space)
    _check_budget(num_trials, num_initial)
    rng = np.random.default_rng(seed)
    d = len(space)
    initial = rng.random((min(num_initial, num_trials), d))
    result = SearchResult("Bayesian optimisation")
    with tqdm(range(num_trials), desc="Bayesian optimisation", disable=not progress) as bar:
        for trial in bar:
            if trial < len(initial):
                u = initial[trial]
            else:
                gp = fit_gp(np.array(result.units), np.array(result.values), seed=seed + trial)
                candidates = rng.random((num_candidates, d))
                mu, sigma = gp.predict(candidates, return_std=True)
                u = candidates[np.argmax(expected_improvement(mu, sigma, max(result.values), xi))]
            _run(result, objective, u, space, bar)
    return result
