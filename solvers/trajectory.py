"""The result of integrating the flow or iterating the GD map."""

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


@dataclass
class Trajectory:
    """Scores on an output grid, with what the solver did to get them.

    Attributes
    ----------
    kind : "flow" or "gd".
    t : (T,) times; for GD ``t = η · iteration``.
    S : (T, K, K) scores ``S[n, k] = v_nᵀ Q v_k``.
    loss : (T,) population loss.
    attention_of : ``y ↦ A`` of the system that produced the trajectory, applied to the
        rows of ``state`` or, when there is none, of S (``flat_attention``, which knows
        the prompt model).
    iteration : (T,) GD iteration numbers (None for the flow).
    crossings : first times the worst query's attention reaches 1/2 (``"t_half"``),
        1 − ε (``"t_attention"`` → {ε: t}) and the loss falls to ε
        (``"t_loss"`` → {ε: t}); None where never reached.  Flow crossing times
        come from root finding on the solver's interpolant; GD ones are exact
        iteration counts times η.
    status : "finished", "stop_loss", "failed", "non-finite", "score-limit", "not-converging".
    message : a sentence describing the status.
    counters : solver counters (nfev, njev, nlu, nsteps for the flow; iterations,
        loss_increases for GD).
    state : (T, n) the trained parameters when they are not the scores themselves
        (the flattened factors ``(B, C)`` of the separate parametrisation, the noisy
        model's Q), else None.
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

    @property
    def success(self):
        return self.status in ("finished", "stop_loss")

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
        return self.attention[-1]
