"""Least-squares power laws with confidence intervals, for scaling claims."""

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class PowerLaw:
    """A power law ``y ≈ c · x^exponent`` fitted on log-log axes.

    Attributes
    ----------
    exponent : float
    ci95 : (float, float)
        95 % confidence interval of the exponent.
    prefactor : float
        c.
    r2 : float
        Coefficient of determination on log-log axes.
    n : int
        Points used.
    """

    exponent: float
    ci95: tuple          # 95 % confidence interval of the exponent
    prefactor: float
    r2: float
    n: int

    def describe(self):
        """Return the exponent with its interval, R² and n, as one phrase."""
        lo, hi = self.ci95
        return f"exponent {self.exponent:.3f} (95 % CI {lo:.3f} to {hi:.3f}, R² = {self.r2:.4f}, n = {self.n})"


def power_law(x, y):
    """Fit ``log y = a + b log x`` by least squares.

    Parameters
    ----------
    x, y : array_like
        Only the finite, positive pairs are used.

    Returns
    -------
    PowerLaw
        The confidence interval uses Student's t with n − 2 degrees of freedom.

    Raises
    ------
    ValueError
        When fewer than 3 positive points remain (a programming error, not an input).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    lx, ly = np.log(x[keep]), np.log(y[keep])
    n = len(lx)
    if n < 3:
        raise ValueError(f"need at least 3 positive points for a power law, got {n}")
    res = stats.linregress(lx, ly)
    half = stats.t.ppf(0.975, n - 2) * res.stderr
    return PowerLaw(float(res.slope), (float(res.slope - half), float(res.slope + half)),
                    float(np.exp(res.intercept)), float(res.rvalue**2), n)
