"""An ensemble of problems in one compiled call equals the same problems run one by one."""

import numpy as np
import pytest

from attnflow.derivations import load_kernels
from attnflow.solvers import ScoreSystem, iterate_gd
from attnflow.solvers.ensemble import iterate_gd_ensemble

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
    B = 6
    systems = systems_of(K, B, **prompt)
    etas = [0.5 * s.stable_step(np.zeros((K, K))) for s in systems]
    etas[-1] *= 1e5                                       # one that saturates or diverges
    steps = [400, 300, 500, 200, 400, 300]
    result = iterate_gd_ensemble(systems, np.zeros((K, K)), etas, steps, stop_loss=1e-9)
    for b, system in enumerate(systems):
        alone = iterate_gd(system, np.zeros((K, K)), etas[b], steps[b], stop_loss=1e-9)
        assert result.iterations[b] == int(alone.counters["iterations"]) or alone.status in (
            "non-finite", "score-limit", "saturated")
        assert result.status[b] == alone.status or alone.status in ("max_steps", "not-converging")
        half = alone.crossings["t_half"]
        assert result.iterations_half[b] == (-1 if half is None else round(half / etas[b]))
        for j, e in enumerate((1e-2, 1e-3, 1e-4)):
            t = alone.crossings["t_loss"][e]
            assert result.iterations_loss[b, j] == (-1 if t is None else round(t / etas[b]))
        if alone.status not in ("non-finite", "score-limit", "saturated"):
            np.testing.assert_array_equal(result.final_S[b], alone.S[-1])       # bit for bit
            assert result.final_loss[b] == alone.loss[-1]
        assert result.loss_increases[b] == alone.counters["loss_increases"]
        assert result.attention_oscillations[b] == alone.counters["attention_oscillations"]
    assert result.status[-1] != "finished"


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


def test_the_ensemble_loop_is_cached_on_disk_a_second_process_does_not_compile():
    """The parallel loop is a plain global of the kernel set (no function arguments), so Numba
    caches it: in a second process it loads without a cache miss."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import numpy as np\n"
            "from attnflow.solvers import ScoreSystem, kernels\n"
            "from attnflow.solvers.ensemble import iterate_gd_ensemble\n"
            "s = [ScoreSystem(np.eye(3), np.eye(3), np.full(3, 1 / 3))] * 2\n"
            "iterate_gd_ensemble(s, np.zeros((3, 3)), 1.0, 20)\n"
            "stats = kernels.gd_batch.stats\n"
            "print(sum(stats.cache_misses.values()), sum(stats.cache_hits.values()))\n")
    root = Path(__file__).resolve().parents[1]
    runs = [subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=600)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr
    misses, hits = map(int, runs[1].stdout.split())
    assert misses == 0 and hits == 1, runs[1].stdout
