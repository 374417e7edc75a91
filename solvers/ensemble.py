"""Ensembles: many problems of one K iterated in one compiled call, in parallel over problems.

A sweep over parameters (L, p, the features, η, …) is a batch of score systems that
share K.  :func:`iterate_gd_ensemble` stacks their arrays and runs the exact GD map of
every problem in one Numba call, parallel over problems (``prange``), and returns
numbers only — status, iterations, crossing iterations, final loss and attention —
without building a Python object per problem.  Each problem runs the very loop that
:func:`attnflow.solvers.gd.iterate_gd` runs (:func:`attnflow.solvers.assembly.gd_batch` calls
``gd_iterate`` of the problems' own kernel set, and is cached on disk with it), so an
ensemble equals the same problems run one by one.

Examples
--------
>>> import numpy as np
>>> from attnflow.solvers import ScoreSystem
>>> systems = [ScoreSystem(np.eye(3), L**2 * np.eye(3), np.full(3, 1 / 3)) for L in (0.5, 1.0, 2.0)]
>>> result = iterate_gd_ensemble(systems, np.zeros((3, 3, 3)), eta=[2.0, 1.0, 0.25], steps=2000)
>>> [str(s) for s in result.status]
['finished', 'finished', 'finished']
"""

from dataclasses import dataclass

import numpy as np

from .gd import _STATUS, _validate


@dataclass(frozen=True)
class EnsembleResult:
    """Per-problem numbers of an ensemble run (arrays of length B, or (B, ·)).

    status : status strings as :func:`attnflow.solvers.gd.iterate_gd` names the loop's stops
        (``finished``, ``stop_loss``, ``non-finite``, ``score-limit``, ``saturated``).
    iterations : the iteration each problem stopped at.
    iterations_half : first iteration with target attention ``min_k A_kk ≥ 1/2`` (−1: never).
    iterations_attention, iterations_loss : (B, len(eps)) first iterations with attention
        ``≥ 1 − ε`` and loss ``≤ ε`` (−1: never).
    final_loss : (B,) loss at the final scores; final_S : (B, K, K) the final scores.
    loss_increases, attention_oscillations : counters as in :func:`attnflow.solvers.gd.iterate_gd`.
    """

    status: np.ndarray
    iterations: np.ndarray
    iterations_half: np.ndarray
    iterations_attention: np.ndarray
    iterations_loss: np.ndarray
    final_loss: np.ndarray
    final_S: np.ndarray
    loss_increases: np.ndarray
    attention_oscillations: np.ndarray


def iterate_gd_ensemble(systems, S0, eta, steps, eps=(1e-2, 1e-3, 1e-4), stop_loss=0.0, score_limit=700.0):
    """Gradient descent on B problems of one K at once, in parallel over problems.

    Parameters
    ----------
    systems : B :class:`attnflow.solvers.system.ScoreSystem` of one K and one prompt model, with
        one kernel set (their arrays are stacked; only the arrays differ).
    S0 : (B, K, K) or (K, K) initial scores.
    eta : step size, one or one per problem.
    steps : iterations, one or one per problem.
    eps, stop_loss, score_limit : as in :func:`attnflow.solvers.gd.iterate_gd`.

    Returns
    -------
    :class:`EnsembleResult`.  Its numbers equal those of :func:`attnflow.solvers.gd.iterate_gd` on
    each problem alone (the same compiled loop runs; tested to the bit).
    """
    systems = list(systems)
    if not systems:
        raise ValueError("systems: expected at least one problem")
    first = systems[0]
    K = first.K
    for s in systems:
        if s.K != K or s.kernels is not first.kernels or s.N != first.N or s.query_in_softmax != first.query_in_softmax:
            raise ValueError("systems: an ensemble needs one K, one prompt model and one kernel set")
    B = len(systems)
    eta = np.broadcast_to(np.asarray(eta, dtype=np.float64), (B,)).copy()
    steps = np.broadcast_to(np.asarray(steps, dtype=np.int64), (B,)).copy()
    for e, n in zip(eta, steps):
        _validate(e, n)
    S = np.array(np.broadcast_to(S0, (B, K, K)), dtype=np.float64, order="C")
    if not np.all(np.isfinite(S)):
        raise ValueError("S0: expected finite scores")
    G = np.stack([s.G for s in systems])
    Ms = np.stack([s.Ms for s in systems])
    p = np.stack([s.p for s in systems])
    logp = np.stack([s.logp for s in systems])
    prompt = first.args[4]
    attn_levels = np.log(np.array([0.5, *eps]))
    loss_levels = np.array(eps, dtype=np.float64)
    status = np.empty(B, dtype=np.int64)
    last_it = np.empty(B, dtype=np.int64)
    final_loss = np.empty(B)
    attn_hits = np.full((B, len(attn_levels)), -1, dtype=np.int64)
    loss_hits = np.full((B, len(loss_levels)), -1, dtype=np.int64)
    increases = np.empty(B, dtype=np.int64)
    flips = np.empty(B, dtype=np.int64)
    first.kernels.gd_batch(S, G, Ms, p, logp, prompt, eta, steps, attn_levels, loss_levels, float(score_limit),
                           float(stop_loss), status, last_it, final_loss, attn_hits, loss_hits, increases, flips)
    return EnsembleResult(np.array([_STATUS[int(c)] for c in status]), last_it, attn_hits[:, 0],
                          attn_hits[:, 1:], loss_hits, final_loss, S, increases, flips)
