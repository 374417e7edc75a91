"""Verdicts and the thresholds that decide them.

A protocol measures numbers and compares each with an accepted window; every window
names why it is what it is and how it is halved, and the verdict is decided again
with each window halved (alone and all at once) from the same numbers, so a reader
sees how much a verdict hangs on a free choice.
"""

from dataclasses import dataclass, field


PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"


@dataclass
class Verdict:
    """The outcome of one claim's protocol.

    Attributes
    ----------
    claim : str
        Its name, e.g. ``"C3"``.
    statement : str
        The claim, in one sentence.
    verdict : str
        :data:`PASS`, :data:`FAIL` or :data:`INCONCLUSIVE`.
    reason : str
        Why, with the deciding numbers.
    numbers : dict
        Everything measured, with the windows (JSON-ready).
    figure : str or None
        Path of the claim's figure.
    reconstructed : bool
        Whether the claim rests on a reconstructed definition (Δ, δ, c*).
    choices : list of str
        Free choices the paper does not fix, named in the report.
    details : list of str
        Markdown lines shown after the reason (tables).
    """
    claim: str
    statement: str
    verdict: str
    reason: str
    numbers: dict = field(default_factory=dict)
    figure: str = None
    reconstructed: bool = False
    choices: list = field(default_factory=list)   # free choices the paper does not fix, named in the report
    details: list = field(default_factory=list)   # markdown lines shown after the reason (tables)


# Every threshold a verdict hinges on is a window: the accepted range of a measured number, why that
# range, and the range halved (narrowed by a factor 2 around its centre in the natural scale, or for a
# one-sided cutoff moved halfway towards the derived value; each claim says which in one line).  The
# verdict is decided again from the numbers already measured, with each window halved alone and with
# all of them halved at once; no solver runs again.

def deciding_window(name, measured, accepted, halved, why, halving, passes=None, passes_halved=None):
    """One threshold that decides a verdict, as a dict for ``numbers["windows"]``.

    ``accepted`` and ``halved`` are ``(lo, hi)`` bounds (None: unbounded); the check passes when every
    value of ``measured`` (a number, or a dict or list of them) lies inside.  ``passes`` and
    ``passes_halved`` replace that test where the threshold acts through a quantity recomputed with it
    (a phase boundary found with the tolerance halved, say).

    Parameters
    ----------
    name : str
        The window's name, unique within its claim.
    measured : float, list or dict
        The measured number(s).
    accepted, halved : (float or None, float or None)
        The accepted range and the range halved.
    why, halving : str
        Why the range is what it is, and how it is halved.
    passes, passes_halved : bool, optional
        Override the range test (see above).

    Returns
    -------
    dict
        JSON-ready: the arguments and the flags ``passes`` and ``passes_halved``.
    """
    values = list(measured.values()) if isinstance(measured, dict) else (
        list(measured) if isinstance(measured, (list, tuple)) else [measured])

    def inside(window):
        lo, hi = window
        return all(v is not None and (lo is None or v >= lo) and (hi is None or v <= hi) for v in values)

    return {"name": name, "measured": measured, "accepted": list(accepted), "halved": list(halved),
            "why": why, "halving": halving,
            "passes": bool(inside(accepted) if passes is None else passes),
            "passes_halved": bool(inside(halved) if passes_halved is None else passes_halved)}

def decide(windows, rule):
    """The verdict ``rule`` gives on the windows' pass flags, and the verdict with every window halved.

    ``rule`` maps ``{window name: passes}`` to a verdict.  Each window also records the verdict with
    only itself halved (``verdict_with_this_window_halved``).

    Parameters
    ----------
    windows : list of dict
        From :func:`deciding_window`; updated in place.
    rule : callable
        ``{window name: passes}`` → PASS, FAIL or INCONCLUSIVE (e.g. :func:`all_pass`).

    Returns
    -------
    (str, str)
        The verdict, and the verdict with every window halved.
    """
    flags = {w["name"]: w["passes"] for w in windows}
    for w in windows:
        w["verdict_with_this_window_halved"] = rule({**flags, w["name"]: w["passes_halved"]})
    return rule(flags), rule({w["name"]: w["passes_halved"] for w in windows})

def judged(numbers, windows, rule):
    """``decide`` on ``windows``, recorded in ``numbers`` (``windows``, ``verdict_with_window_halved``)."""
    verdict, halved = decide(windows, rule)
    numbers.update(windows=windows, verdict_with_window_halved=halved)
    return verdict

def all_pass(flags):
    """Return PASS when every window passes, FAIL otherwise: the usual ``rule`` of :func:`decide`."""
    return PASS if all(flags.values()) else FAIL

def bounds(window):
    """A window's bounds as text: "≥ lo", "≤ hi" or "lo to hi" (text as it is)."""
    if not isinstance(window, (list, tuple)):
        return str(window)
    lo, hi = window
    return f"≤ {hi:.4g}" if lo is None else (f"≥ {lo:.4g}" if hi is None else f"{lo:.4g} to {hi:.4g}")
