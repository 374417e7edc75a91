"""Constants of a problem and its regime (docs/model.md §3; Δ and δ are reconstructed, §11).

``Δ = min_{n≠k} ‖v_n − v_k‖``; ``δ = min_k min_{n≠k} √M⁽ᵏ⁾_nn / (L ‖v_n − v_k‖)``, the
share of its Lipschitz budget the class realises between two features, so that
``LΔδ`` is at most the smallest RMS label gap between distinct features.  The
regime is flat when ``LΔδ < c*`` and sharp otherwise.
"""

from dataclasses import dataclass

import numpy as np

from ...solvers.columns import label_gap_stack


RECONSTRUCTED = ("Delta", "delta", "regime")


@dataclass(frozen=True)
class Constants:
    """The constants of a problem that decide its regime.

    Attributes
    ----------
    L : float
        Lipschitz constant of the function class.
    L_source : str
        Where L comes from (stated, closed form, estimate).
    L_reconstructed : bool
        Whether L is a reconstructed rather than a stated constant.
    Delta : float
        Separation of the features.
    delta : float
        Share of the Lipschitz budget the class realises between two features.
    threshold : float
        c*: the regime is flat when ``LΔδ < c*``.
    min_offtarget_eigenvalue : float
        Smallest eigenvalue of ``M⁽ᵏ⁾`` restricted to ``n, m ≠ k``, over k.
    """

    L: float
    L_source: str
    L_reconstructed: bool
    Delta: float
    delta: float
    threshold: float
    min_offtarget_eigenvalue: float  # smallest eigenvalue of M⁽ᵏ⁾ restricted to n, m ≠ k

    @property
    def L_Delta_delta(self):
        """The product ``LΔδ`` compared with the threshold."""
        return self.L * self.Delta * self.delta

    @property
    def regime(self):
        """``"flat"`` when ``LΔδ < c*``, ``"sharp"`` otherwise."""
        return "flat" if self.L_Delta_delta < self.threshold else "sharp"

    @property
    def nondegenerate(self):
        """Whether δ > 0 and every off-target block ``M⁽ᵏ⁾`` is positive definite."""
        return self.delta > 0 and self.min_offtarget_eigenvalue > 0

    def as_dict(self):
        """Return the constants, the derived ones and the list of reconstructed names, for summary.json."""
        return {
            "L": self.L, "L_source": self.L_source, "Delta": self.Delta, "delta": self.delta,
            "L_Delta_delta": self.L_Delta_delta, "threshold": self.threshold, "regime": self.regime,
            "min_offtarget_eigenvalue": self.min_offtarget_eigenvalue, "nondegenerate": self.nondegenerate,
            "reconstructed": list(RECONSTRUCTED) + (["L"] if self.L_reconstructed else []),
        }


def constants(features, F, lipschitz, threshold):
    """Compute Δ, δ and the smallest off-target eigenvalue of a problem.

    Parameters
    ----------
    features : FeatureSet
        The features (gives Δ and the distances).
    F : array, shape (K, K)
        Moment matrix of the function class.
    lipschitz : Lipschitz
        The class's Lipschitz constant and its source.
    threshold : float
        c*, the boundary between the flat and the sharp regime.

    Returns
    -------
    Constants
    """
    K = features.K
    Ms = label_gap_stack(F)        # M⁽ᵏ⁾_nm = E[(f(v_n) − f(v_k))(f(v_m) − f(v_k))]
    # off[k]: the features other than k; every query at once (a sweep asks this of every point).
    off = np.array([np.delete(np.arange(K), k) for k in range(K)])
    queries = np.arange(K)[:, None]
    gap = np.sqrt(np.maximum(Ms[queries, off, off], 0.0))         # (K, K − 1): √M⁽ᵏ⁾_nn, n ≠ k
    budget = lipschitz.L * features.distances[off, queries]
    # A class constant on the features (L = 0) has no gap to realise: δ = 0 there, not 0/0.
    ratio = np.divide(gap, budget, out=np.zeros_like(gap), where=budget > 0)
    blocks = Ms[queries[:, :, None], off[:, :, None], off[:, None, :]]     # (K, K − 1, K − 1) off-target blocks
    return Constants(lipschitz.L, lipschitz.source, lipschitz.reconstructed, features.Delta,
                     float(ratio.min()), threshold, float(np.linalg.eigvalsh(blocks).min()))
