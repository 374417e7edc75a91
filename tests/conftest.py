"""Shared problem builders for the tests."""

import numpy as np
import pytest

from attnflow.dynamics.problem import config
from attnflow.dynamics.problem import Problem


def make_problem(**sections):
    """A Problem from config sections given as dicts, e.g. ``make_problem(task={"L": 2})``."""
    return Problem.from_config(config.from_dict(sections))


def random_system_arrays(K, d, seed):
    """Random features, a random PSD moment matrix and random probabilities."""
    rng = np.random.default_rng(seed)
    V = rng.standard_normal((K, d))
    W = rng.standard_normal((K, K + 2))
    F = W @ W.T / K
    p = rng.dirichlet(np.ones(K) * 2)
    return V, F, p


@pytest.fixture(scope="session")
def simplex_sharp():
    return make_problem(features={"kind": "simplex", "K": 4, "d": 3}, task={"kind": "single-index", "L": 3.0})


def central_differences(f, y, rel_step=1e-5):
    """``∂f/∂y`` by central differences, step ``rel_step · max(1, |y_i|)``; columns are inputs."""
    J = None
    for i in range(y.size):
        step = rel_step * max(1.0, abs(y[i]))
        up, down = y.copy(), y.copy()
        up[i] += step
        down[i] -= step
        column = (f(up) - f(down)) / (2 * step)
        if J is None:
            J = np.empty((column.size, y.size))
        J[:, i] = column
    return J
