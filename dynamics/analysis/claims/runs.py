"""Measurements the protocols share: flows run to convergence, L sweeps, phase counts, the context.

All protocols run at N = ∞ with merged parameters (the score system of
:meth:`attnflow.dynamics.problem.Problem.score_system`), the setting the papers
analyse, whatever variant the user's configuration trains.
"""

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ...errors import AttnflowError
from ...problem import Problem, task_overrides
from ...progress import progress_bar
from ...reporting import figures
from ....solvers import integrate_flow
from ....solvers.ensemble import integrate_flow_ensemble, iterate_gd_ensemble
from ....solvers.flow import auto_method
from ....solvers.trajectory import SUCCESSFUL

from ..phases import log_slope


FLOW_T_END = 1e9
FLOW_TOLERANCES = {"rtol": 1e-9, "atol": 1e-12}


def flow_to_convergence(problem, t_end=FLOW_T_END, stop_rel=1e-8, method="auto"):
    """Integrate the score system's flow until the loss is ``stop_rel`` times its initial value (or ``t_end``).

    Parameters
    ----------
    problem : Problem
        Its score system is integrated from S0 (the setting the papers analyse).
    t_end : float
        Last time.
    stop_rel : float
        Stop when the loss falls to this fraction of its initial value.
    method : str
        SciPy's integrator.

    Returns
    -------
    Trajectory
        400 output points, rtol 1e-9, atol 1e-12.
    """
    system = problem.score_system()
    return integrate_flow(system, problem.S0, t_end, method=method, **FLOW_TOLERANCES,
                          stop_loss=stop_rel * system.loss(problem.S0), n_out=400)

def problem_with(cfg, overrides=None, **fields):
    """Return the problem of ``cfg`` with fields overridden.

    ``overrides`` is ``{"task.L": 3.0, …}``; keywords add more, ``task__L=3`` meaning ``task.L = 3``.

    Raises
    ------
    AttnflowError
        When the overridden configuration is invalid.
    """
    return Problem.from_config(cfg.with_overrides({**(overrides or {}),
                                                   **{k.replace("__", "."): v for k, v in fields.items()}}))

def late_slope(t, y, decades=1.5):
    """Fitted log-log slope over the last ``decades`` of time."""
    keep = (t >= t[-1] / 10**decades) & (t > 0) & (y > 0)
    return float(np.polyfit(np.log(t[keep]), np.log(y[keep]), 1)[0])

def fast_phases(t, loss, threshold=-1.25):
    """Number of separate time intervals in which the loss falls faster than ``t^threshold``."""
    _, slope = log_slope(np.asarray(t, float), np.asarray(loss, float))
    fast = slope < threshold
    return int(np.sum(fast[1:] & ~fast[:-1]) + (1 if len(fast) and fast[0] else 0))

def attention_phases(times, gap=2.0):
    """Number of groups of per-query transition times separated by more than a factor ``gap``."""
    ts = sorted(t for t in times if t)
    return 0 if not ts else 1 + sum(b > gap * a for a, b in zip(ts, ts[1:]))

def l_sweep(ctx, kind, link=None):
    """Measure the flow and start-of-training quantities over L spanning ``ctx.decades`` around L*.

    ``L* = c*/(Δδ₀)`` (:func:`threshold_L`).  Memoised on the context: C3 and C4 share
    the single-index sweep.

    Parameters
    ----------
    ctx : Context
    kind : str
        ``task.kind`` of the sweep (``"single-index"`` or ``"frequency"``).
    link : str, optional
        ``task.link`` for a single-index task.

    Returns
    -------
    (float, list of dict)
        L*, and one row per L (``ctx.points`` of them): ``L``, ``L_Delta_delta``,
        ``regime``, ``t_half``, ``grad_norm`` and ``stable_step`` at the start.
    """
    if (kind, link) not in ctx.sweeps:
        ctx.sweeps[kind, link] = _l_sweep(ctx, kind, link)
    return ctx.sweeps[kind, link]

def scaled(L):
    """Overrides that set the task's scale L (clearing σ, which a linear task would take as a second scale)."""
    return {"task.L": L, "task.sigma": None}

def own_features(kind, K, d, **fields):
    """Overrides for a protocol's own feature set: K ``kind`` features in d dimensions.

    p is uniform (a configured p has the configured K's length), the configured matrix is cleared,
    and ``fields`` set further ``features.KEY`` values.
    """
    return {"features.kind": kind, "features.K": K, "features.d": d, "features.matrix": None, "prompt.p": "uniform",
            **{f"features.{key}": value for key, value in fields.items()}}

def _threshold(ctx, c):
    """``c*/(Δδ)`` from constants c; an AttnflowError when Δδ = 0 (a degenerate class has no threshold)."""
    if not c.Delta * c.delta > 0:
        raise AttnflowError("task", f"Δδ = {c.Delta * c.delta:g} (two features share a label, so δ = 0): the regime "
                                    "threshold L* = c*/(Δδ) that this protocol scales L by does not exist")
    return ctx.threshold / (c.Delta * c.delta)

def threshold_L(ctx, overrides):
    """L* = c*/(Δδ₀) of the configuration with ``overrides``, δ₀ its small-L (linear-response) value."""
    return _threshold(ctx, problem_with(ctx.cfg, {**overrides, **scaled(1e-3)}).constants())

def base_threshold_L(ctx):
    """L* = c*/(Δδ) of the base problem, from its own constants."""
    return _threshold(ctx, ctx.base_constants)

def _l_sweep(ctx, kind, link):
    task = task_overrides(kind, **({"link": link} if link else {}))
    L_star = threshold_L(ctx, task)
    Ls = L_star * np.geomspace(10 ** (-ctx.decades / 2), 10 ** (ctx.decades / 2), ctx.points)
    problems = [problem_with(ctx.cfg, {**task, **scaled(float(L))}) for L in Ls]
    t_half = _flows_t_half(problems, ctx.progress, f"L sweep ({kind})")
    rows = []
    for L, pr, t in zip(Ls, problems, t_half):
        s = pr.score_system()
        pc = pr.constants()
        rows.append({"L": float(L), "L_Delta_delta": pc.L_Delta_delta, "regime": pc.regime, "t_half": t,
                     "grad_norm": float(np.abs(s.rhs(pr.S0)).max()), "stable_step": s.stable_step(pr.S0)})
    return L_star, rows


def _flows_t_half(problems, progress, label, stop_rel=1e-4):
    """``t_half`` of :func:`flow_to_convergence` (to ``stop_rel``) of each problem.

    The problems of an L sweep share K, kernels and prompt model, so where their flow is
    the compiled DOP853 (large prompt) they run as one ensemble, in parallel, with the very
    numbers of one run each (:func:`attnflow.solvers.integrate_flow_ensemble`); otherwise
    one by one.
    """
    systems = [pr.score_system() for pr in problems]
    if all(auto_method(s) == "DOP853-compiled" for s in systems):
        S0 = np.stack([pr.S0 for pr in problems])
        stop = [stop_rel * s.loss(x) for s, x in zip(systems, S0)]
        result = integrate_flow_ensemble(systems, S0, FLOW_T_END, **FLOW_TOLERANCES, stop_loss=stop, n_out=2)
        return [None if np.isnan(t) else float(t) for t in result.t_half]
    times = []
    with progress_bar(label, progress) as report:
        for i, pr in enumerate(problems):
            times.append(flow_to_convergence(pr, stop_rel=stop_rel).crossings["t_half"])
            if report:
                report((i + 1) / len(problems))
    return times


def orthonormal_linear(ctx, K=4, p="uniform"):
    """The predecessor paper's setting: orthonormal features, linear task with σ = 1."""
    return problem_with(ctx.cfg, {**own_features("orthonormal", K, K), **task_overrides("linear", sigma=1.0),
                                  "prompt.p": p})

@dataclass
class Context:
    """What every protocol of one ``attnflow check`` shares: the base problem, sizes, cached flows.

    Attributes
    ----------
    cfg : Config
        The user's configuration; the base problem and every variant start from it.
    out : Path
        The output directory; figures go to ``out/figures``.
    quick : bool
        Smaller sweeps and budgets (``--quick``).
    progress : bool
        Whether to show progress bars.
    search : str
        C2's oscillation search: ``"quick"`` (a few seconds) or ``"full"``
        (:data:`attnflow.dynamics.analysis.oscillation.FULL_SPACE`, ``--search full``).
    notes : list of str
        Set from the configuration: what the report and a warning line say about the model
        the protocols run (a stand-in score system; a finite prompt's floor and ceiling).
    """
    cfg: object
    out: Path
    quick: bool = False
    progress: bool = True
    search: str = "quick"

    def __post_init__(self):
        self.base = Problem.from_config(self.cfg)
        self.base_constants = self.base.constants()
        self.notes = [note for note in (self.base.score_system_note(), self._prompt_note()) if note]
        self.threshold = self.cfg.regime.threshold
        self.decades = 3.0 if self.quick else 4.0
        self.points = 9 if self.quick else 21
        self.gd_steps_long = 20000 if self.quick else 200000
        # C5: loss levels in half decades (the smallest within reach of the automatic step), the GD
        # budget, and the L sweep from flat to sharp (multiples of L*; it holds the flat and sharp pair).
        self.c5_levels = tuple(10.0 ** -np.arange(1.0, (4.0 if self.quick else 4.5) + 0.01, 0.5))
        self.c5_steps = 50000 if self.quick else 200000
        self.c5_L_factors = (0.1, 0.3, 0.6, 1.6, 3.0, 10.0) if self.quick else (0.03, 0.1, 0.3, 0.6, 1.6, 3.0, 10.0, 30.0)
        self.K_values = (2, 3, 4, 6, 8) if self.quick else (2, 3, 4, 6, 8, 12, 16)
        self.imbalanced_p = [0.7, 0.1, 0.1, 0.1]
        self.sweeps = {}
        (self.out / "figures").mkdir(parents=True, exist_ok=True)

    def _prompt_note(self):
        """At finite N, what the large-prompt claims meet: a loss floor and an attention ceiling (None at N = ∞)."""
        N = self.cfg.prompt.N
        if np.isinf(N):
            return None
        ceiling = 1 - (1 - float(np.min(self.base.p))) ** N
        return (f"the claims are about the large-prompt limit; at N = {N:g} a prompt can miss features, so the loss "
                f"has a floor and query k's attention a ceiling 1 − (1 − p_k)^N ({ceiling:.3g} for the rarest "
                "feature), and protocols that need the loss or the attention past them read FAIL or INCONCLUSIVE "
                "for that reason")

    # Flows several claims share, integrated once.
    @cached_property
    def base_flow(self):
        """The base problem's flow to convergence (C1, C2 and C7 share it)."""
        return flow_to_convergence(self.base)

    @cached_property
    def balanced_flow(self):
        """The flow of the predecessor paper's setting with uniform p (H1, and H2 compares with it)."""
        return flow_to_convergence(orthonormal_linear(self))

    @cached_property
    def imbalanced_flow(self):
        """The flow of the predecessor paper's setting with ``imbalanced_p`` (H2)."""
        return flow_to_convergence(orthonormal_linear(self, p=self.imbalanced_p))

    # H1 and H2 share one figure; whichever runs first draws it, so a subset links no missing file.
    @cached_property
    def balanced_imbalanced_figure(self):
        """The path of the H1/H2 figure, drawn the first time either claim asks for it."""
        return figures.balanced_imbalanced(self.fig("H1_H2"), self.balanced_flow, self.imbalanced_flow)

    def fig(self, name):
        """Return the path of the figure ``name`` (``out/figures/NAME.png``)."""
        return self.out / "figures" / f"{name}.png"

    def oscillation_map(self, rows, factors=(0.5, 1.0, 4.0, 16.0, 64.0, 256.0, 1024.0)):
        """For each L: the step sizes tried, whether GD converged and how many oscillations it showed."""
        # Every (L, step size) pair is one problem of a GD ensemble (the numbers of iterate_gd on each).
        runs = [(r, f) for r in rows[:: max(1, len(rows) // 5)] for f in factors]
        problems = {r["L"]: problem_with(self.cfg, scaled(r["L"])) for r, _ in runs}
        etas = [f * r["stable_step"] for r, f in runs]
        gd = iterate_gd_ensemble([problems[r["L"]].score_system() for r, _ in runs],
                                 np.stack([problems[r["L"]].S0 for r, _ in runs]), etas, 2000, n_out=20)
        return [{"L": r["L"], "eta": eta,
                 "converged": bool(gd.status[b] in SUCCESSFUL and gd.final_loss[b] < 1e-2 * gd.loss_out[b, 0]),
                 "oscillations": int(gd.max_oscillations_per_feature[b])}
                for b, ((r, _), eta) in enumerate(zip(runs, etas))]
