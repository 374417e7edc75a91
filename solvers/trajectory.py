"""The result of integrating the flow or iterating the GD map."""

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


STATUSES = {
    "finished": "reached t_end or the step budget near convergence",
    "stop_loss": "the loss reached training.stop_loss",
    "t_end": "the flow reached t_end far from convergence (see far_from_convergence)",
    "max_steps": "GD used its step budget far from convergence (see far_from_convergence)",
    "saturated": "GD froze: the step saturated the float64 softmax (not a converged solution)",
    "not-converging": "GD ended with a loss above the initial one",
    "score-limit": "GD drove a score past the limit (the softmax is one-hot there)",
    "non-finite": "GD produced non-finite values",
    "failed": "the ODE solver failed",
}
DIVERGED = ("saturated", "not-converging", "score-limit", "non-finite")
# The statuses of a run that gives a result to use (Trajectory.success).
SUCCESSFUL = ("finished", "stop_loss")

def far_from_convergence(t, loss, target, eps):
    """None if a run that used all its time ended near convergence, else how far it is.

    Far: the final loss is above ``ε = max(eps)`` times the initial loss or above ε itself
    (the largest level of ``t_loss``, so no loss level was reached), and either the
    target attention ``min_k A_kk``
    is below 1/2 (the fast phase not done) or the loss is still falling at the end
    (log-log slope of the last two output points below −1/2: more time would lower it,
    unlike a floor such as a finite prompt's or a degenerate class's).

    Parameters
    ----------
    t, loss : array_like, shape (T,)
        The output grid (or GD iterations) and the loss on it.
    target : float
        Final target attention ``min_k A_kk``.
    eps : sequence of float
        The requested levels ε.

    Returns
    -------
    str or None
        None if the run ended near convergence, else a sentence saying how far it is.

    Examples
    --------
    >>> t = np.array([0.0, 1.0, 10.0, 100.0])
    >>> far_from_convergence(t, np.array([1.0, 0.5, 1e-2, 1e-4]), 0.99, [1e-3]) is None
    True
    >>> far_from_convergence(t, np.array([1.0, 0.9, 0.8, 0.7]), 0.2, [1e-3])
    'the final loss 0.7 is above 0.001× the initial 1, the target attention min_k A_kk is 0.2, and the target attention is below 1/2'
    """
    if not (len(eps) and loss[-1] > max(eps) * min(loss[0], 1.0)):
        return None
    keep = (np.asarray(t) > 0) & (np.asarray(loss) > 0)
    tt, ll = np.asarray(t, dtype=float)[keep], np.asarray(loss)[keep]
    slope = (math.log(ll[-1] / ll[-2]) / math.log(tt[-1] / tt[-2])
             if len(tt) >= 2 and tt[-1] > tt[-2] else 0.0)
    if target >= 0.5 and not slope < -0.5:
        return None
    why = "the target attention is below 1/2" if target < 0.5 else f"the loss still falls like t^{slope:.2g}"
    above = (f"above {max(eps):g}× the initial {loss[0]:.3g}" if loss[-1] > max(eps) * loss[0]
             else f"above ε = {max(eps):g} ({loss[-1] / loss[0]:.3g} of the initial {loss[0]:.3g})")
    return f"the final loss {loss[-1]:.3g} is {above}, the target attention min_k A_kk is {target:.4g}, and {why}"


@dataclass
class Trajectory:
    """Scores on an output grid, with what the solver did to get them.

    Attributes
    ----------
    kind : str
        ``"flow"`` or ``"gd"``.
    t : ndarray, shape (T,)
        Times; for GD ``t = η · iteration``.
    S : ndarray, shape (T, K, K)
        Scores ``S[n, k] = v_nᵀ Q v_k``.
    loss : ndarray, shape (T,)
        Population loss.
    attention_of : callable
        ``y ↦ A`` of the system that produced the trajectory, applied to the
        rows of ``state`` or, when there is none, of S (``flat_attention``, which knows
        the prompt model).
    iteration : ndarray, shape (T,) or None
        GD iteration numbers (None for the flow).
    oscillations : ndarray, shape (K, K) or None
        GD: reversals of each irrelevant attention's log-odds.
    crossings : dict
        First times the target attention ``min_k A_kk`` reaches 1/2 (``"t_half"``),
        1 − ε (``"t_attention"`` → {ε: t}) and the loss falls to ε
        (``"t_loss"`` → {ε: t}); None where never reached.  Flow crossing times
        come from root finding on the solver's interpolant; GD ones are exact
        iteration counts times η.
    status : str
        See :data:`STATUSES`.
    message : str
        A sentence describing the status.
    counters : dict
        Solver counters (nfev, njev, nlu, nsteps for the flow; iterations,
        loss_increases for GD).
    wall_time : float
        Seconds the run took.
    state : ndarray, shape (T, n) or None
        The trained parameters when they are not the scores themselves
        (the flattened factors ``(B, C)`` of the separate parametrisation, the noisy
        model's Q), else None.
    population_loss : ndarray, shape (T,) or None
        With a finite training set (:mod:`attnflow.solvers.training_set`), where ``loss``
        is the training loss ℒ̂: the population loss ℒ(S) of the same scores; its
        crossings are ``crossings["t_population_loss"]`` (→ {ε: t}).  Else None.
    """

    kind: str
    t: np.ndarray
    S: np.ndarray
    loss: np.ndarray
    attention_of: object
    iteration: np.ndarray = None
    oscillations: np.ndarray = None   # GD: (K, K) reversals of each irrelevant attention's log-odds
    crossings: dict = field(default_factory=dict)
    status: str = "finished"
    message: str = ""
    counters: dict = field(default_factory=dict)
    wall_time: float = 0.0
    state: np.ndarray = None
    population_loss: np.ndarray = None

    @property
    def success(self):
        """The run ended near convergence (or at the requested loss): a result to use."""
        return self.status in SUCCESSFUL

    @property
    def diverged(self):
        """The step size broke the run (GD): its result is not a solution, and a smaller η is needed."""
        return self.status in DIVERGED

    @cached_property
    def attention(self):
        """(T, K, K) total attention ``A[t, n, k]`` of query k on feature n (computed once)."""
        rows = self.S.reshape(len(self.S), -1) if self.state is None else self.state
        return np.stack([self.attention_of(y) for y in rows])

    @property
    def target_attention(self):
        """(T, K) attention of each query on its own feature."""
        return np.diagonal(self.attention, axis1=1, axis2=2)

    @property
    def irrelevant_attention(self):
        """(T,) the largest attention any query puts on a feature other than its own."""
        A = self.attention.copy()
        K = A.shape[1]
        A[:, np.arange(K), np.arange(K)] = 0.0
        return A.max(axis=(1, 2))

    @property
    def final_attention(self):
        """Attention matrix A (K×K) at the last output point."""
        return self.attention[-1]
