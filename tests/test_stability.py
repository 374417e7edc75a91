"""The matrix-free stable step (solvers/stability.py) against the dense Jacobian's eigenvalues, and at K = 256."""

import json
import subprocess
import sys

import numpy as np
import pytest

from attnflow.solvers import kernels as hand_written
from attnflow.solvers import system as system_module
from attnflow.solvers import stability
from attnflow.solvers.stability import gram_square_root
from attnflow.solvers.system import ScoreSystem

PROMPTS = {"large N": {}, "finite N": {"N": 7}, "query in softmax": {"N": 5, "include_query": True}}


def random_problem(K, seed, **prompt):
    """Unit features in d = K + 1 (G of full rank, not I) with random F, p and scores S."""
    rng = np.random.default_rng(seed)
    V = rng.standard_normal((K, K + 1))
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    A = rng.standard_normal((K, K))
    p = rng.random(K) + 0.2
    return ScoreSystem(V @ V.T, A @ A.T / K + 0.1 * np.eye(K), p / p.sum(), **prompt), 2 * rng.standard_normal((K, K))


@pytest.mark.parametrize("prompt", PROMPTS)
def test_lanczos_matches_the_dense_eigenvalues(prompt):
    """K = 2 … 16, two random problems each: 2/λ_max agrees with eig(−J) of the dense Jacobian to 1e-10."""
    for K in range(2, 17):
        for seed in range(2):
            system, S = random_problem(K, 100 * K + seed, **PROMPTS[prompt])
            dense = np.linalg.eigvals(-system.jacobian(S)).real.max()
            assert dense > 0
            assert system.stable_step(S) == pytest.approx(2.0 / dense, rel=1e-10, abs=0), (K, seed)


def test_singular_gram_and_identity_gram_match_the_dense_eigenvalues():
    """Simplex-like features (G of rank K − 1) and orthonormal ones (the products with R skipped)."""
    for K in (3, 6, 11):
        rng = np.random.default_rng(K)
        V = rng.standard_normal((K, K - 1))
        for G in (V @ V.T, np.eye(K)):
            A = rng.standard_normal((K, K))
            system = ScoreSystem(G, A @ A.T, np.full(K, 1.0 / K))
            S = rng.standard_normal((K, K))
            dense = np.linalg.eigvals(-system.jacobian(S)).real.max()
            assert system.stable_step(S) == pytest.approx(2.0 / dense, rel=1e-10, abs=0), K


@pytest.mark.parametrize("prompt", PROMPTS)
def test_assembled_operator_and_lanczos_agree_where_both_run(prompt):
    """K = 2 … DENSE_MAX_K (where the assembled operator is used): Lanczos on the same symmetrised
    blocks gives λ_max to 1e-13, with G full rank and G = I."""
    for K in range(2, stability.DENSE_MAX_K + 1):
        system, S = random_problem(K, 7 * K, **PROMPTS[prompt])
        Hs = system.hessians(S)
        Hs = 0.5 * (Hs + Hs.transpose(0, 2, 1))
        for R in (system.gram_root, np.eye(K)):
            identity = R is not system.gram_root
            assembled = stability._assembled(np.ascontiguousarray(Hs), R, identity)
            assert assembled == pytest.approx(stability._lanczos(np.ascontiguousarray(Hs), R, identity),
                                              rel=1e-13, abs=0), (K, identity)
            assert stability.largest_flow_eigenvalue(Hs, R) == assembled


def test_no_curvature_gives_an_infinite_step_and_a_non_gram_matrix_is_refused():
    assert ScoreSystem(np.eye(3), np.zeros((3, 3)), np.full(3, 1 / 3)).stable_step(np.zeros((3, 3))) == np.inf
    with pytest.raises(ValueError, match="G: expected a positive semi-definite"):
        gram_square_root(np.diag([1.0, -1.0]))


def test_warm_up_builds_no_dense_jacobian_at_large_k(monkeypatch):
    """warm_up compiles the Jacobian on a K = 2 twin: a K = 96 system never builds a K²×K² matrix."""
    shapes = []
    build = system_module.jacobian_from_hessians

    def recording(G, Hs):
        J = build(G, Hs)
        shapes.append(J.shape)
        return J
    monkeypatch.setattr(system_module, "jacobian_from_hessians", recording)
    K = 96
    ScoreSystem(np.eye(K), np.eye(K) + 0.5, np.full(K, 1 / K), kernels=hand_written).warm_up()
    assert shapes == [(4, 4)]


K256 = """
import json, resource, time
import numpy as np
from attnflow.solvers.system import ScoreSystem
K = 256
rng = np.random.default_rng(1)
V = rng.standard_normal((K, 300)); V /= np.linalg.norm(V, axis=1, keepdims=True)
A = rng.standard_normal((K, K))
system = ScoreSystem(V @ V.T, A @ A.T / K, np.full(K, 1 / K))
start = time.perf_counter()
step = system.stable_step(rng.standard_normal((K, K)))
print(json.dumps({"step": step, "seconds": time.perf_counter() - start,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def test_k256_stable_step_is_finite_in_bounded_time_and_memory():
    """K = 256: the dense Jacobian would be 65536² doubles (34 GB); the matrix-free step takes < 2 GB and < 60 s."""
    out = subprocess.run([sys.executable, "-c", K256], capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(out.stdout)
    assert 0 < result["step"] < np.inf
    assert result["seconds"] < 60 and result["peak_mb"] < 2000, result
