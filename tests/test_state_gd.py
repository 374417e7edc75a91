"""The one compiled GD loop (:func:`attnflow.solvers.gd.iterate_gd`) on every system: against a
plain-Python loop of the NumPy flow, oscillation counts recounted in Python, statuses, no recompilation."""

import numpy as np
import pytest

from attnflow.solvers import ScoreSystem, gd, iterate_gd
from attnflow.solvers.noisy import NoisySystem
from attnflow.solvers.separate import SeparateSystem, random_factors

from .conftest import random_system_arrays


def _separate(N=np.inf, h=3):
    V, F, p = random_system_arrays(3, 4, seed=7)
    system = SeparateSystem(ScoreSystem(V @ V.T, F, p, N=N), h)
    return system, tuple(W @ V.T for W in random_factors(h, 4, 1.2, seed=4))


def _noisy(d=2):
    rng = np.random.default_rng(d)
    V = rng.standard_normal((3, d))
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    return NoisySystem(V, np.array([0.5, 0.3, 0.2]), sigma=1.1, noise=0.3, nodes=5), 0.5 * rng.standard_normal((d, d))


def _scores(K=5, N=np.inf):
    V, F, p = random_system_arrays(K, K, seed=K)
    return ScoreSystem(V @ V.T, F, p, N=N), np.zeros((K, K))


@pytest.mark.parametrize("make", [_separate, lambda: _separate(N=9, h=2), _noisy, lambda: _noisy(3), _scores,
                                  lambda: _scores(N=6), lambda: _scores(K=16)],
                         ids=["separate", "separate-finite-N", "noisy-d2", "noisy-d3", "scores", "scores-finite-N",
                              "scores-product-form"])
def test_compiled_gd_equals_the_python_loop_of_the_numpy_flow(make):
    """100 iterations of ``y ← y + η·flat_rhs(y)`` in Python (NumPy right-hand side): every state and
    loss to 1e-12 relative, and the crossings from the same iterations."""
    system, start = make()
    eta, steps = 0.3 * system.stable_step(start), 100
    tr = iterate_gd(system, start, eta, steps, n_out=steps + 1, eps=(0.1,))
    recorded = tr.S.reshape(len(tr.S), -1) if system.state_is_scores else tr.state
    assert tr.status in ("finished", "max_steps") and recorded.shape == (steps + 1, system.flatten(start).size)
    y = system.flatten(start).copy()
    states, losses = [y.copy()], [system.flat_loss(y)]
    for _ in range(steps):
        y = y + eta * system.flat_rhs(y)
        states.append(y)
        losses.append(system.flat_loss(y))
    states = np.array(states)
    assert np.abs(recorded - states).max() <= 1e-12 * np.abs(states).max()
    np.testing.assert_allclose(tr.loss, losses, rtol=1e-12)
    np.testing.assert_allclose(tr.S, system.scores_of(states), rtol=0, atol=1e-12 * np.abs(tr.S).max())
    for key, level, which in (("t_half", 0.5, 0), ("t_loss", 0.1, 1)):
        values = [system.flat_event_values(s)[which] for s in states]
        first = next((i for i, v in enumerate(values) if v <= np.log(level)), None)
        got = tr.crossings[key] if key == "t_half" else tr.crossings[key][level]
        assert got == (None if first is None else eta * first)


def test_oscillation_counts_are_the_reversals_of_the_recorded_log_odds():
    """At a step size that makes irrelevant attentions oscillate: ``flips[n, k]`` is the number of
    reversals of the direction of ``S_nk − S_kk`` (zero changes skipped), recounted in Python from
    every recorded iterate, and the counters are its sum and maximum."""
    system, S0 = _scores()
    eta = 1.5 * system.stable_step(S0)
    steps = 2000
    tr = iterate_gd(system, S0, eta, steps, n_out=steps + 1)
    assert tr.state is None and len(tr.S) == steps + 1
    step = np.diff(tr.S, axis=0)
    change = step - np.diagonal(step, axis1=1, axis2=2)[:, None, :]        # ΔS_nk − ΔS_kk
    expected = np.zeros((5, 5), dtype=np.int64)
    for n in range(5):
        for k in range(5):
            signs = np.sign(change[:, n, k])
            signs = signs[signs != 0]
            expected[n, k] = np.count_nonzero(signs[1:] != signs[:-1]) if n != k else 0
    assert expected.sum() > 0
    np.testing.assert_array_equal(tr.oscillations, expected)
    assert tr.counters["attention_oscillations"] == expected.sum()
    assert tr.counters["max_oscillations_per_feature"] == expected.max()


@pytest.mark.parametrize("make", [_separate, _noisy], ids=["separate", "noisy"])
def test_a_diverging_step_ends_with_the_state_that_broke_the_run(make):
    """At 10⁴× the stable step: score-limit or non-finite, early, the last state kept, its scores the last S."""
    system, start = make()
    tr = iterate_gd(system, start, 1e4 * system.stable_step(start), 100)
    assert tr.status in ("score-limit", "non-finite", "saturated") and not tr.success
    assert tr.counters["iterations"] < 100 and len(tr.state) == len(tr.S) == len(tr.loss)
    if np.all(np.isfinite(tr.state[-1])):
        np.testing.assert_allclose(system.scores_of(tr.state[-1])[0], tr.S[-1])


@pytest.mark.parametrize("make", [_scores, _separate], ids=["scores", "separate"])
def test_stop_loss_ends_the_trajectory_at_the_iteration_that_stopped_it(make):
    """A stop between two points of the log grid: the trajectory's last point is the stopping iteration,
    its loss the first at or below the level (so the final loss is the one that stopped the run), and
    its state that of a run of exactly that many steps, bit for bit."""
    system, start = make()
    eta = 0.5 * system.stable_step(start)
    full = iterate_gd(system, start, eta, 2000, n_out=2001, eps=(0.1,))
    level = 0.5 * (full.loss[0] + full.loss[-1])
    stop = int(np.argmax(full.loss <= level))
    tr = iterate_gd(system, start, eta, 2000, n_out=5, stop_loss=level)
    assert tr.status == "stop_loss" and tr.counters["iterations"] == stop
    assert stop not in tr.iteration[:-1] and tr.iteration[-1] == stop and tr.t[-1] == eta * stop
    assert tr.loss[-1] <= level < full.loss[stop - 1] and tr.loss[-1] == full.loss[stop]
    exact = iterate_gd(system, start, eta, stop, n_out=2)
    np.testing.assert_array_equal(tr.S[-1], exact.S[-1])
    if tr.state is not None:
        np.testing.assert_array_equal(tr.state[-1], exact.state[-1])
        assert len(tr.state) == len(tr.S) == len(tr.loss)


def test_one_loop_per_argument_types():
    """The separate factors share the scores' argument types: after score runs at N = ∞ and at a
    finite N (the two prompt models' argument types) they add no GD loop, nor do another K or N;
    the noisy model's arguments add one, and its second run none."""
    system, start = _separate()
    iterate_gd(system.scores, np.zeros((3, 3)), 0.1, 5)
    iterate_gd(_separate(N=5)[0].scores, np.zeros((3, 3)), 0.1, 5)
    before = gd.dispatchers()
    iterate_gd(system, start, 0.1, 5)
    iterate_gd(*_separate(N=9, h=2), 0.1, 5)
    V, F, p = random_system_arrays(6, 3, seed=1)
    iterate_gd(ScoreSystem(V @ V.T, F, p), np.zeros((6, 6)), 0.1, 5)
    assert gd.dispatchers() == before and all(len(d.signatures) == 1 for d in before)
    iterate_gd(*_noisy(), 0.1, 5)
    noisy = gd.dispatchers()
    # The noisy model's argument types add one loop (none if an earlier test compiled it already).
    assert set(before) <= set(noisy) and len(noisy) - len(before) <= 1
    iterate_gd(*_noisy(3), 0.1, 5)
    assert gd.dispatchers() == noisy
