"""An ensemble of problems in one compiled call equals the same problems run one by one."""

import numpy as np
import pytest

from attnflow.derivations import load_kernels
from attnflow.solvers import ScoreSystem, gd, integrate_flow, iterate_gd
from attnflow.solvers.ensemble import integrate_flow_ensemble, iterate_gd_ensemble

from .conftest import random_system_arrays


def systems_of(K, B, kernels=None, seed=0, **prompt):
    out = []
    for b in range(B):
        V, F, p = random_system_arrays(K, K, seed + b)
        V /= np.linalg.norm(V, axis=1, keepdims=True)
        out.append(ScoreSystem(V @ V.T, F, p, kernels=kernels, **prompt))
    return out


@pytest.mark.parametrize("K, prompt", [(3, {}), (5, {"N": 6}), (16, {})])
def test_ensemble_equals_one_by_one_to_the_bit(K, prompt):
    """Mixed ends in one batch — runs stopped by stop_loss between recorded iterations, runs out of
    steps, one step size far too large — and each problem's numbers are iterate_gd's on it alone:
    status, counters, crossings, the recorded losses and the final scores, loss and attention."""
    B = 6
    systems = systems_of(K, B, **prompt)
    etas = [0.5 * s.stable_step(np.zeros((K, K))) for s in systems]
    etas[-1] *= 1e5                                       # one that saturates or diverges
    steps = [400, 300, 500, 200, 400, 300]
    # Stops at 3/5 of the steps, between the recorded iterations, for problems 0, 2 and 4.
    every = iterate_gd_ensemble(systems, np.zeros((K, K)), etas, steps, n_out=max(steps) + 1)
    stop = [every.loss_out[b, 3 * steps[b] // 5] if b in (0, 2, 4) else 0.0 for b in range(B)]
    result = iterate_gd_ensemble(systems, np.zeros((K, K)), etas, steps, stop_loss=stop, n_out=30)
    for b, system in enumerate(systems):
        alone = iterate_gd(system, np.zeros((K, K)), etas[b], steps[b], stop_loss=stop[b], n_out=30)
        assert result.status[b] == alone.status
        assert result.counters(b) == alone.counters
        for j, key in enumerate(("t_half", *[("t_attention", e) for e in (1e-2, 1e-3, 1e-4)])):
            t = alone.crossings[key] if j == 0 else alone.crossings[key[0]][key[1]]
            hit = result.iterations_half[b] if j == 0 else result.iterations_attention[b, j - 1]
            assert hit == (-1 if t is None else round(t / etas[b]))
        for j, e in enumerate((1e-2, 1e-3, 1e-4)):
            t = alone.crossings["t_loss"][e]
            assert result.iterations_loss[b, j] == (-1 if t is None else round(t / etas[b]))
        m = result.n_recorded[b]
        np.testing.assert_array_equal(result.iteration_out[b, :m], alone.iteration)
        np.testing.assert_array_equal(result.loss_out[b, :m], alone.loss)          # bit for bit, NaN included
        assert (result.iteration_out[b, m:] == -1).all() and np.isnan(result.loss_out[b, m:]).all()
        np.testing.assert_array_equal(result.final_S[b], alone.S[-1])
        np.testing.assert_array_equal(result.final_loss[b], alone.loss[-1])
        np.testing.assert_array_equal(result.final_min_target_attention[b], np.diagonal(alone.final_attention).min())
    assert [result.status[b] for b in (0, 2, 4)] == ["stop_loss"] * 3
    assert all(result.iterations[b] not in gd.log_iterations(steps[b], 30) for b in (0, 2, 4))
    assert {result.status[1], result.status[3]} <= {"finished", "max_steps"}
    assert result.status[-1] in ("non-finite", "score-limit", "saturated")


def test_ensemble_runs_generated_kernels_and_rejects_mixed_batches():
    K = 4
    generated = systems_of(K, 3, kernels=load_kernels(K))
    result = iterate_gd_ensemble(generated, np.zeros((K, K)), 1.0, 100)
    hand = iterate_gd_ensemble(systems_of(K, 3), np.zeros((K, K)), 1.0, 100)
    np.testing.assert_allclose(result.final_S, hand.final_S, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="one K"):
        iterate_gd_ensemble(systems_of(3, 1) + systems_of(4, 1), np.zeros((3, 3)), 1.0, 10)
    with pytest.raises(ValueError, match="one K"):
        iterate_gd_ensemble(generated[:1] + systems_of(K, 1), np.zeros((K, K)), 1.0, 10)


# --- the flow: the compiled DOP853 on every problem ----------------------------------------------

def _assert_same_as_alone(result, b, alone, eps):
    """Problem b of a flow ensemble against integrate_flow on it alone: every number, to the bit."""
    never = lambda t: None if np.isnan(t) else float(t)  # noqa: E731
    assert result.status[b] == alone.status
    assert result.t_final[b] == alone.t[-1]
    assert never(result.t_half[b]) == alone.crossings["t_half"]
    assert [never(t) for t in result.t_attention[b]] == [alone.crossings["t_attention"][e] for e in eps]
    assert [never(t) for t in result.t_loss[b]] == [alone.crossings["t_loss"][e] for e in eps]
    assert result.final_loss[b] == alone.loss[-1]
    assert result.final_min_target_attention[b] == np.diagonal(alone.final_attention).min()
    np.testing.assert_array_equal(result.final_S[b], alone.S[-1])
    assert result.counters(b) == alone.counters
    m = result.n_recorded[b]
    np.testing.assert_array_equal(result.t_out[b, :m], alone.t)
    np.testing.assert_array_equal(result.loss_out[b, :m], alone.loss)
    assert np.isnan(result.loss_out[b, m:]).all()


@pytest.mark.parametrize("K, kernels, prompt", [(3, None, {}), (4, None, {"N": 6, "include_query": True}),
                                                (8, "generated", {})])
def test_flow_ensemble_equals_integrate_flow_one_by_one_to_the_bit(K, kernels, prompt):
    """Mixed statuses in one batch (runs stopped by stop_loss, runs that reach t_end); each
    problem's numbers equal integrate_flow's on it alone."""
    kernels = load_kernels(K) if kernels == "generated" else None
    systems = systems_of(K, 5, kernels=kernels, **prompt)
    # Scale the moments: the time scale goes like 1/|F|, so some runs stop, some do not.
    systems = [ScoreSystem(s.G, s.F * scale, s.p, kernels=s.kernels, N=s.N, include_query=s.include_query)
               for s, scale in zip(systems, (30.0, 1.0, 0.1, 0.01, 10.0))]
    S0 = np.stack([0.1 * np.eye(K) * b for b in range(5)])
    eps, t_end = (1e-2, 1e-3), 300.0
    # A stop_loss between the final losses without one: some runs stop there, the others reach t_end.
    final = np.sort(integrate_flow_ensemble(systems, S0, t_end, rtol=1e-9, atol=1e-11, eps=eps,
                                            n_out=50).final_loss)
    stop_loss = float(np.sqrt(final[1] * final[2]))
    result = integrate_flow_ensemble(systems, S0, t_end, rtol=1e-9, atol=1e-11, eps=eps, stop_loss=stop_loss,
                                     n_out=50)
    serial = integrate_flow_ensemble(systems, S0, t_end, rtol=1e-9, atol=1e-11, eps=eps, stop_loss=stop_loss,
                                     n_out=50, parallel=False)
    for b, system in enumerate(systems):
        alone = integrate_flow(system, S0[b], t_end, method="DOP853-compiled", rtol=1e-9, atol=1e-11, eps=eps,
                               stop_loss=stop_loss, n_out=50)
        _assert_same_as_alone(result, b, alone, eps)
        _assert_same_as_alone(serial, b, alone, eps)
    if not prompt:       # (at finite N the loss event watches another quantity: no stop here)
        assert "stop_loss" in result.status and {"t_end", "finished"} & set(result.status), result.status


def test_flow_ensemble_stops_each_problem_at_its_own_loss():
    """stop_loss per problem (a fraction of each initial loss, as check's L sweep asks):
    every run stops at its own level, and its numbers equal integrate_flow's with that level."""
    systems = [ScoreSystem(s.G, s.F * scale, s.p) for s, scale in zip(systems_of(3, 4), (0.3, 1.0, 3.0, 10.0))]
    S0 = np.zeros((3, 3))
    stop = np.array([1e-2, 3e-2, 0.0, 1e-4]) * [s.loss(S0) for s in systems]
    eps, t_end = (1e-2, 1e-3), 1e5
    result = integrate_flow_ensemble(systems, S0, t_end, rtol=1e-9, atol=1e-11, eps=eps, stop_loss=stop, n_out=50)
    assert result.status.tolist() == ["stop_loss", "stop_loss", "finished", "stop_loss"]
    for b, system in enumerate(systems):
        alone = integrate_flow(system, S0, t_end, method="DOP853-compiled", rtol=1e-9, atol=1e-11, eps=eps,
                               stop_loss=float(stop[b]), n_out=50)
        _assert_same_as_alone(result, b, alone, eps)
    with pytest.raises(ValueError, match="^stop_loss: expected"):
        integrate_flow_ensemble(systems, S0, t_end, stop_loss=[1e-3, np.nan, 0.0, 0.0])


def test_flow_ensemble_rejects_mixed_or_empty_batches():
    three, four = systems_of(3, 2), systems_of(4, 1)
    with pytest.raises(ValueError, match="^systems: expected at least one problem$"):
        integrate_flow_ensemble([], np.zeros((3, 3)), 10.0)
    with pytest.raises(ValueError, match="one K"):
        integrate_flow_ensemble(three + four, np.zeros((3, 3)), 10.0)
    with pytest.raises(ValueError, match="one K, one prompt model"):
        integrate_flow_ensemble(three + systems_of(3, 1, N=8), np.zeros((3, 3)), 10.0)
    with pytest.raises(ValueError, match="one kernel set"):
        integrate_flow_ensemble(three + systems_of(3, 1, kernels=load_kernels(3)), np.zeros((3, 3)), 10.0)
    with pytest.raises(ValueError, match="^S0: expected"):
        integrate_flow_ensemble(three, np.zeros((3, 3, 3)), 10.0)
    with pytest.raises(ValueError, match="^t_end: expected"):
        integrate_flow_ensemble(three, np.zeros((3, 3)), np.inf)
    with pytest.raises(ValueError, match="^systems: expected ScoreSystems"):
        integrate_flow_ensemble([object()], np.zeros((3, 3)), 10.0)


def test_a_second_process_runs_the_ensembles_without_compiling():
    """The ensembles run the loops of iterate_gd and integrate_flow, with the kernels as function
    pointers, and one small compiled function of their own: all cached on disk, so a new process
    (a sweep's worker) runs GD and flow ensembles, on threads and on its own thread, without
    compiling anything."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import numpy as np\n"
            "from numba.core import event\n"
            "from attnflow.solvers import ScoreSystem\n"
            "from attnflow.solvers import ensemble\n"
            "compiled = []\n"
            "class Recorder(event.Listener):\n"
            "    def on_start(self, e):\n"
            "        compiled.append(e.data['dispatcher'].py_func.__qualname__)\n"
            "    def on_end(self, e):\n"
            "        pass\n"
            "s = [ScoreSystem(np.eye(3), np.eye(3), np.full(3, 1 / 3))] * 2\n"
            "with event.install_listener('numba:compile', Recorder()):\n"
            "    for parallel in (True, False):\n"
            "        ensemble.integrate_flow_ensemble(s, np.zeros((3, 3)), 10.0, stop_loss=1e-3, parallel=parallel)\n"
            "        ensemble.iterate_gd_ensemble(s, np.zeros((3, 3)), 1.0, 20, parallel=parallel)\n"
            "print(len(compiled), compiled)\n")
    root = Path(__file__).resolve().parents[1]
    runs = [subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=600)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr
    assert runs[1].stdout.split()[0] == "0", runs[1].stdout


def test_two_output_points_are_the_start_and_the_end():
    """n_out = 2 keeps t = 0 and the final time, alone and in an ensemble (a log grid of one
    point used to be the first step, and a run stopped early overflowed the ensemble's rows)."""
    systems = systems_of(3, 2)
    S0 = np.zeros((3, 3))
    alone = integrate_flow(systems[1], S0, 1e3, method="DOP853-compiled", n_out=2)
    assert alone.t.tolist() == [0.0, 1e3]
    stop = 0.5 * systems[0].loss(S0)
    stopped = integrate_flow(systems[0], S0, 1e3, method="DOP853-compiled", n_out=2, stop_loss=stop)
    result = integrate_flow_ensemble(systems, S0, 1e3, n_out=2, stop_loss=[stop, 0.0])
    assert stopped.status == "stop_loss" and result.status[0] == "stop_loss" and result.status[1] != "stop_loss"
    np.testing.assert_array_equal(result.t_out[0], stopped.t)
    np.testing.assert_array_equal(result.t_out[1], alone.t)
