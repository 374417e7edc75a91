"""``attnflow check``: run the claims' protocols on a base problem and write the report."""

import math
from pathlib import Path

from ..analysis.claims import CLAIMS, INCONCLUSIVE, Context, Verdict
from ..analysis.claims.verdicts import bounds
from ..errors import AttnflowError
from ..files import prepare_out_dir
from ..problem.config import MAX_DENSE_JACOBIAN
from ..progress import progress_bar
from ..reporting.claims_report import write_report


def check(cfg, out_dir, quick=False, claims=None, progress=True, warn=None, search="quick"):
    """Run the protocols; write ``report.md``, ``report.json`` and figures; return the verdicts.

    The protocols run the configured problem's score system
    (:meth:`~attnflow.dynamics.problem.Problem.score_system`).  When the configuration
    trains something else (separate ``W_K``, ``W_Q`` or token noise), or the prompt is finite
    (the claims are about the large-prompt limit), ``warn`` (optional) is called with one
    line saying so, and the report says it too.

    Parameters
    ----------
    cfg : Config
        The validated configuration; its problem is the base of every protocol.
    out_dir : str or Path
        Output directory, created if missing; checked before any work.
    quick : bool
        Smaller sweeps and budgets (``--quick``).
    claims : list of str, optional
        Names in :data:`~attnflow.dynamics.analysis.claims.CLAIMS` to run; all when None.
    progress : bool
        Whether to show a progress bar on stderr.
    warn : callable, optional
        Called with one line when the score system stands in for the configured model.
    search : {"quick", "full"}
        C2's search for an oscillating irrelevant attention (``--search``,
        :mod:`attnflow.dynamics.analysis.oscillation`).

    Returns
    -------
    list of Verdict
        In the order run.

    Raises
    ------
    AttnflowError
        ``features.K`` when K < 3 (nothing to measure), or the field at fault in the
        configuration or ``--out``.
    """
    K = len(cfg.features.matrix) if cfg.features.matrix else cfg.features.K
    if K < 3:
        # At K = 2 from S = 0 the target attention starts at 1/2: t_half is 0 and the phase
        # and regime protocols (C1, C3, H1–H3 …) have nothing to measure.
        raise AttnflowError("features.K", "check needs K ≥ 3: at K = 2 the target attention starts at 1/2, "
                                          "so the transition times it measures are all 0")
    if K * K > MAX_DENSE_JACOBIAN and math.isfinite(cfg.prompt.N) and not cfg.prompt.include_query:
        # Its reference flows run "auto", which is Rodas4P2 here: the dense K²×K² Jacobian, factorised.
        raise AttnflowError("features.K", f"check's reference flows at finite N without the query run Rodas4P2, "
                                          f"which needs the dense K²×K² Jacobian ({K ** 4 * 8 / 1e9:.3g} GB at "
                                          f"K = {K}); at most K = {math.isqrt(MAX_DENSE_JACOBIAN)} there")
    out = prepare_out_dir(out_dir)              # a bad --out fails before any work
    ctx = Context(cfg, out, quick, progress, search)
    for note in ctx.notes if warn else ():
        warn(f"check: {note}")
    verdicts = []
    names = claims or list(CLAIMS)
    with progress_bar("claims", progress) as report:
        for i, name in enumerate(names):
            try:
                v = CLAIMS[name](ctx)
            except AttnflowError as e:
                # A protocol this configuration gives nothing to measure (no regime threshold when δ = 0,
                # say) is inconclusive, and says why; the other claims still run.
                statement = CLAIMS[name].__doc__.splitlines()[0].removeprefix(f"Test {name}: ")
                statement = statement[:1].upper() + statement[1:]
                v = Verdict(name, statement, INCONCLUSIVE, f"the protocol cannot run on this configuration: {e}")
            # Every threshold that decides the verdict is a free choice too: named with its window and why.
            v.choices = v.choices + [f"{w['name']}: {bounds(w['accepted'])}; why: {w['why']}" for w in v.numbers.get("windows", [])]
            if v.figure is not None:
                v.figure = str(Path(v.figure).name)
            verdicts.append(v)
            if report:
                report((i + 1) / len(names))
    write_report(out, cfg, ctx, verdicts)
    return verdicts
