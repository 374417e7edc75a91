"""Does an irrelevant attention oscillate?  A bounded, seeded search over what can cause it (claim C2).

What counts.  For an irrelevant pair (feature n, query k, n ≠ k) the log-odds of the
score against the target, ``X_nk = S_nk − S_kk`` (``log(A_nk/A_kk)`` up to the constant
``log(p_n/p_k)`` at N = ∞, the quantity the solver's GD loop counts), is followed
along consecutive GD iterates (every iteration recorded) or along the flow's dense
output.  A step counts as a direction when ``|ΔX|`` exceeds both :data:`REL_TOL` times
the largest ``|ΔX|`` of that pair in the run and ``1e-12·(1 + |X|)`` (round-off); a
*reversal* is a counted direction opposite to the previous counted one.  One reversal
is a transient (a rise then a fall, which even the flow can show); an *oscillation*
is at least two reversals of one pair in a GD run that converges (its loss reaches
:data:`CONVERGED` times its initial loss within the step budget, and the run stops
there, or a finite prompt's run ends at its loss floor, :func:`converged`) and more reversals of that pair than the flow of the same problem shows, so
they come from the discrete step, not from a wobble GD merely follows.

Several heads and training sets.  The series followed is always the recorded scores'
``S_nk − S_kk`` (:attr:`Trajectory.S`).  With several heads those are the effective scores
whose softmax is the heads' *mean* attention ā (:meth:`MultiHeadSystem.scores_of`), what the
prediction uses and every report shows: X is ``log(ā_nk/ā_kk)`` up to ``log(p_n/p_k)``, and
"the irrelevant attention oscillates" means the mean attention does (a single head may swing
while the mean does not; that is not counted).  On a finite training set the scores are the
state: prompt m asking k has the log-odds ``X_nk + b_mn − b_mk``, X shifted by a constant, so
X reverses exactly when every prompt's own log-odds does.

The space.  Every point is a configuration built from the user's by overriding the
axes of :class:`SearchSpace` (features, p, prompt, parametrisation, start, training set,
heads, step), so the example found is a configuration ``attnflow run`` takes as it is.
Combinations the model does not have (several heads with separate factors or from S = 0; a
training set with separate factors or several heads; separate factors from zero) are skipped
and counted by reason (``skipped_by_reason``), and so are several heads at finite N: the model
has them, exactly, but each of their gradients sums over the prompt's count vectors, so the
search leaves them out to stay within minutes.
The search goes through K in increasing order and stops at the first K with an
oscillation; the example is the oscillating run there with the fewest iterations (to
convergence).

Examples
--------
>>> import numpy as np
>>> S = np.zeros((5, 2, 2))
>>> S[:, 1, 0] = [0.0, -1.0, -0.5, -2.0, -3.0]      # X_10 falls, rises, falls: two reversals
>>> count_reversals(S)[0].tolist()
[[0, 0], [2, 0]]
>>> equicorrelated_features(2, 0.5).round(6).tolist()   # Gram off-diagonal 0.5
[[0.965926, 0.258819], [0.258819, 0.965926]]
"""

import math
from dataclasses import dataclass

import numpy as np

from ..errors import AttnflowError
from ..problem import Problem, task_overrides
from ..problem.config import SCHEMA
from ...solvers import integrate_flow, iterate_gd


REL_TOL = 1e-6            # a step smaller than this fraction of the pair's largest step has no direction
ROUND_OFF = 1e-12         # ... or smaller than this times 1 + |X|: GD's round-off
FLOW_NOISE = 1e-6         # the flow's floor instead: rtol 1e-10 accumulated over up to ~10⁴ steps near a fixed point
CONVERGED = 1e-2          # a converging run reaches this fraction of its initial loss
OSCILLATES, NOT_FOUND = "oscillates", "not found"
_KINDS_KEPT = ("linear", "single-index", "frequency")     # tasks defined for every K and d


@dataclass(frozen=True)
class SearchSpace:
    """The axes searched; every tuple is one axis, the space is their product.

    Attributes
    ----------
    K : tuple of int
        Numbers of features, searched in this order.
    gram : tuple of float or "simplex"
        Off-diagonal c of an equicorrelated Gram matrix ``(1 − c) I + c 11ᵀ``
        (:func:`equicorrelated_features`): 0 is orthonormal, ``"simplex"`` is
        ``c = −1/(K − 1)``, c → 1 near-degenerate.
    p : tuple of str
        ``"uniform"``, or ``"dominant"``: feature 0 has probability 0.8, the others share 0.2.
    prompt : tuple of (float, bool)
        ``(prompt.N, prompt.include_query)``.
    parametrization : tuple of str
        ``"merged"`` or ``"separate"`` (W_K, W_Q trained apart, head dimension K).
    init_scale : tuple of float
        ``model.init_scale`` of a seeded random start (0: S = 0; the separate factors
        and several heads need a positive one, so 0 is skipped for them).
    prompts : tuple of int or None
        ``training.prompts``: None is the population loss, M a finite training set of M
        prompts drawn with ``training.seed = seed`` (merged Q, one head only).
    heads : tuple of int
        ``model.heads``: H > 1 heads start at random (``init_scale > 0``), merged, N = ∞
        without the query; the oscillation is the mean attention's (module docstring).
    eta_factors : tuple of float
        Step sizes as multiples of the linearly stable step at the start.
    edge : bool
        Also bisect (in log, :data:`EDGE_BISECTIONS` times) between the largest
        converging factor and the next, and run the largest converging step found:
        GD at the edge of convergence.
    steps : int
        Iteration budget of a run (:data:`FULL_SPACE`: 1000, so the search takes minutes).
    seed : int
        ``model.seed`` of the random starts.
    flows : str
        ``"candidates"``: the flow runs only where GD showed two or more reversals;
        ``"all"``: for every setting (the flow searched the same way).
    """
    K: tuple = (2, 3, 4)
    gram: tuple = ("simplex", 0.0, 0.5, 0.9, 0.99)
    p: tuple = ("uniform", "dominant")
    prompt: tuple = ((math.inf, False), (16, False), (16, True))
    parametrization: tuple = ("merged", "separate")
    init_scale: tuple = (0.0, 0.1, 1.0)
    prompts: tuple = (None, 1, 4, 32)
    heads: tuple = (1, 2)
    eta_factors: tuple = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
    edge: bool = True
    steps: int = 2000
    seed: int = 0
    flows: str = "all"

    def _combinations(self, K):
        """``(overrides, why_skipped)`` for every point of the axes but the step at K; why_skipped
        is None for a setting the model has, else the first reason it has not."""
        for c, p, (N, query), param, scale, M, H in _product(self.gram, self.p, self.prompt, self.parametrization,
                                                              self.init_scale, self.prompts, self.heads):
            c_value = -1.0 / (K - 1) if c == "simplex" else float(c)
            overrides = {"features.kind": "explicit", "features.K": K, "features.d": K,
                         "features.matrix": equicorrelated_features(K, c_value).tolist(),
                         "prompt.p": "uniform" if p == "uniform" else [0.8] + [0.2 / (K - 1)] * (K - 1),
                         "prompt.N": "inf" if N == math.inf else int(N), "prompt.include_query": bool(query),
                         "prompt.noise": 0.0, "model.parametrization": param,
                         "model.head_dim": K if param == "separate" else None,
                         "model.init_scale": float(scale), "model.seed": self.seed, "model.heads": int(H),
                         "training.prompts": None if M is None else int(M), "training.seed": self.seed}
            reasons = [(param == "separate" and scale == 0, "separate factors need a random start (init_scale > 0)"),
                       (H > 1 and N != math.inf, "several heads are searched at N = inf only (at finite N each gradient sums "
                                                   "over the prompt's count vectors)"),
                       (H > 1 and param != "merged", "several heads take merged Q only"),
                       (H > 1 and scale == 0, "several heads need a random start (init_scale > 0): equal heads stay equal"),
                       (M is not None and param != "merged", "a training set takes merged Q only"),
                       (M is not None and H > 1, "a training set takes one head only")]
            yield overrides, next((why for bad, why in reasons if bad), None)

    def settings(self, K):
        """Every setting (one point of all axes but the step) at K, as config overrides.

        Parameters
        ----------
        K : int
            Number of features.

        Returns
        -------
        list of dict
            ``{"SECTION.KEY": value}`` overrides, in the axes' order; combinations the model
            has not are left out (:meth:`skipped`).
        """
        return [overrides for overrides, why in self._combinations(K) if why is None]

    def skipped(self, K):
        """The combinations of the axes at K that :meth:`settings` leaves out, counted by reason.

        Parameters
        ----------
        K : int
            Number of features.

        Returns
        -------
        dict
            ``{reason: count}``, the first reason of each combination.
        """
        out = {}
        for _, why in self._combinations(K):
            if why is not None:
                out[why] = out.get(why, 0) + 1
        return out

    def describe(self):
        """The axes as a JSON-ready dict."""
        return {"K": list(self.K), "gram_off_diagonal": list(self.gram), "p": list(self.p),
                "prompt_N_include_query": [[("inf" if N == math.inf else N), q] for N, q in self.prompt],
                "parametrization": list(self.parametrization), "init_scale": list(self.init_scale),
                "training_prompts": list(self.prompts), "heads": list(self.heads),
                "eta_factors_of_stable_step": list(self.eta_factors), "edge_bisection": self.edge,
                "steps": self.steps, "seed": self.seed, "flows": self.flows}


# What `attnflow check` searches: a few seconds.  K = 2 is the smallest K there is.
QUICK_SPACE = SearchSpace(K=(2,), gram=(0.0, 0.5, 0.9), p=("uniform", "dominant"), prompt=((math.inf, False),),
                          parametrization=("merged",), init_scale=(0.0,), prompts=(None,), heads=(1,),
                          eta_factors=(0.5, 1.0, 2.0, 4.0), edge=False, steps=2000, flows="candidates")
FULL_SPACE = SearchSpace(steps=1000)
EDGE_BISECTIONS = 4


def _product(*axes):
    combos = [()]
    for axis in axes:
        combos = [c + (v,) for c in combos for v in axis]
    return combos


def equicorrelated_features(K, c):
    """Features (rows) whose Gram matrix is ``(1 − c) I + c 11ᵀ``: unit norm, pairwise cosine c.

    Parameters
    ----------
    K : int
        Number of features (≥ 2).
    c : float
        The cosine, in ``[−1/(K − 1), 1)``; the lower end is the regular simplex.

    Returns
    -------
    ndarray, shape (K, K)
        The symmetric square root of the Gram matrix (rows are the features).

    Raises
    ------
    ValueError
        If c is outside ``[−1/(K − 1), 1)``.
    """
    if not -1.0 / (K - 1) - 1e-12 <= c < 1.0:
        raise ValueError(f"c: expected a cosine in [−1/(K−1), 1), got {c}")
    G = (1.0 - c) * np.eye(K) + c * np.ones((K, K))
    w, U = np.linalg.eigh(G)
    return (U * np.sqrt(np.clip(w, 0.0, None))) @ U.T


def reversal_steps(x, rel_tol=REL_TOL, noise=ROUND_OFF):
    """The steps of the series ``x`` whose direction reverses the previous counted direction.

    Parameters
    ----------
    x : array_like, shape (T,)
        Consecutive values (one irrelevant log-odds).
    rel_tol : float, optional
        A change smaller than this fraction of the largest change has no direction.
    noise : float, optional
        Nor has a change smaller than ``noise·(1 + |x|)``: :data:`ROUND_OFF` for GD,
        :data:`FLOW_NOISE` for an integrated flow.

    Returns
    -------
    ndarray of int
        Indices j of the reversing steps (from ``x[j]`` to ``x[j + 1]``).

    Examples
    --------
    >>> reversal_steps([0.0, -1.0, -0.5, -2.0, -2.0 + 1e-15]).tolist()
    [1, 2]
    """
    x = np.asarray(x, dtype=np.float64)
    d = np.diff(x)
    if len(d) == 0:
        return np.zeros(0, dtype=np.int64)
    keep = np.flatnonzero((np.abs(d) > rel_tol * np.abs(d).max()) & (np.abs(d) > noise * (1.0 + np.abs(x[1:]))))
    signs = np.sign(d[keep])
    return keep[1:][signs[1:] != signs[:-1]]


def count_reversals(S, rel_tol=REL_TOL, noise=ROUND_OFF):
    """Count the reversals (:func:`reversal_steps`) of each irrelevant log-odds ``S_nk − S_kk``.

    Parameters
    ----------
    S : array_like, shape (T, K, K)
        Consecutive scores (every GD iteration, or the flow's dense output).
    rel_tol, noise : float, optional
        As in :func:`reversal_steps`.

    Returns
    -------
    counts : ndarray of int, shape (K, K)
        Reversals of each irrelevant pair (0 on the diagonal).
    second : ndarray of int, shape (K, K)
        Index of the record that ends the step completing the second reversal, −1 if fewer.
    """
    S = np.asarray(S, dtype=np.float64)
    K = S.shape[1]
    counts = np.zeros((K, K), dtype=np.int64)
    second = np.full((K, K), -1, dtype=np.int64)
    for n in range(K):
        for k in range(K):
            if n != k:
                flips = reversal_steps(S[:, n, k] - S[:, k, k], rel_tol, noise)
                counts[n, k] = len(flips)
                if len(flips) >= 2:
                    second[n, k] = flips[1] + 1
    return counts, second


def trajectory_reversals(tr):
    """:func:`count_reversals` of a trajectory's recorded scores (every record consecutive).

    A flow's changes below :data:`FLOW_NOISE` (relative) have no direction: near a fixed
    point (a finite prompt's floor) the integrator's error makes its own wiggles.
    """
    return count_reversals(tr.S, noise=FLOW_NOISE if tr.kind == "flow" else ROUND_OFF)


@dataclass
class OscillationResult:
    """The outcome of :func:`search_oscillation`.

    Attributes
    ----------
    verdict : str
        :data:`OSCILLATES` or :data:`NOT_FOUND`.
    example : dict or None
        The smallest example as a configuration dict (``attnflow run`` takes it as TOML).
    evidence : dict
        The example's numbers: K, the pair, its reversals under GD and under the flow, the
        iterations, the step (absolute and as a multiple of the stable step), the losses,
        whether it is period-2 (two reversals in consecutive steps).
    space : dict
        The axes searched (:meth:`SearchSpace.describe`) and the counts: settings, runs,
        converging runs, runs with one reversal (transient) and with two or more, flows
        run and how many showed one or two or more reversals, the K values searched, and
        ``by_axis``: for every value of every axis, its runs, converging and oscillating ones;
        ``nonmonotone_flows``: the settings whose flow showed a reversal, with the count;
        ``skipped_settings`` and ``skipped_by_reason``: the combinations of the axes the model
        has not (:meth:`SearchSpace.skipped`), never run.
    runs : list of dict
        Every GD run: K, setting index, step factor, converged, iterations, worst reversals.
    trajectory : Trajectory or None
        The example's GD run (every iteration recorded).
    flow : Trajectory or None
        The flow of the example's problem.
    """
    verdict: str
    example: dict
    evidence: dict
    space: dict
    runs: list
    trajectory: object = None
    flow: object = None

    def summary(self):
        """One sentence: the example found, or the space searched without one."""
        s = self.space
        counts = (f"{s['runs']} GD runs ({s['converging_runs']} converging) over {s['settings']} settings, "
                  f"K = {', '.join(map(str, s['K_searched']))}")
        if s["skipped_settings"]:
            counts += f" ({s['skipped_settings']} combinations the model has not skipped)"
        if self.verdict == OSCILLATES:
            e = self.evidence
            n, k = e["pair"]
            return (f"GD oscillates: K = {e['K']}, {e['setting']}, η = {e['eta_factor']:.4g}× the stable step: the "
                    f"log-odds of query {k}'s attention to feature {n} reverses {e['reversals']} times "
                    f"({'period-2' if e['period_two'] else 'not period-2'}; the flow {e['flow_reversals']} times) "
                    f"in {e['iterations']} iterations to {e['converged_to']}; searched {counts}")
        return (f"no converging GD run showed two or more reversals beyond the flow's: {counts}; "
                f"{s['transient_runs']} runs showed one (a transient)")


def describe_setting(o):
    """One line naming a setting's Gram off-diagonal, p, prompt, parametrisation and start.

    Parameters
    ----------
    o : dict
        The setting's overrides (:meth:`SearchSpace.settings`).

    Returns
    -------
    str
    """
    G = np.array(o["features.matrix"]) @ np.array(o["features.matrix"]).T
    c = float(G[0, 1])
    M, H = o.get("training.prompts"), o.get("model.heads", 1)
    return (f"Gram off-diagonal {c:.3g}, p {'uniform' if o['prompt.p'] == 'uniform' else 'dominant 0.8'}, "
            f"N = {o['prompt.N']}{' with the query' if o['prompt.include_query'] else ''}, "
            f"{o['model.parametrization']}, init_scale {o['model.init_scale']:g}"
            + (f", {M} training prompts" if M is not None else "") + (f", {H} heads" if H > 1 else ""))


def base_overrides(cfg):
    """The task overrides the search applies to the user's configuration.

    A task defined for every K (linear, single-index, frequency) is kept; any other
    (finite, moments, expression: tied to the user's K or d) is replaced by the linear
    task with σ = 1.

    Parameters
    ----------
    cfg : Config
        The user's configuration.

    Returns
    -------
    dict
        ``{"SECTION.KEY": value}``.
    """
    if cfg.task.kind in _KINDS_KEPT:
        return {}
    return task_overrides("linear", sigma=1.0)


def run_gd(problem, eta, steps):
    """GD on the configured system from its start, every iteration recorded, stopped at convergence.

    Parameters
    ----------
    problem : Problem
        Any system (:func:`attnflow.solvers.iterate_gd`): the merged scores of the population
        loss, separate factors, several heads, a training set.
    eta : float
        Step size.
    steps : int
        Iteration budget.

    Returns
    -------
    Trajectory
        Stopped once the loss reaches :data:`CONVERGED` times its initial value.
    """
    return iterate_gd(problem.system(), problem.start, eta, steps, stop_loss=CONVERGED * problem.initial_loss(), n_out=steps + 1)


def run_flow(problem, t_end=1e8, n_out=2000):
    """The flow of the configured system to :data:`CONVERGED` times its initial loss, densely recorded.

    Parameters
    ----------
    problem : Problem
        The problem (any system: its compiled flow).
    t_end : float, optional
        Last time, if the loss level is not reached first (a finite prompt's floor).
    n_out : int, optional
        Output points (log-spaced in t).

    Returns
    -------
    Trajectory
    """
    return integrate_flow(problem.system(), problem.start, t_end, rtol=1e-10, atol=1e-12,
                          stop_loss=CONVERGED * problem.initial_loss(), n_out=n_out)


def converged(tr):
    """Whether a GD run converged: to :data:`CONVERGED` times its initial loss, or to a loss floor.

    A run converges when it reaches that level, or when it used its whole budget and
    ended at a floor below its initial loss.  The second case is a finite prompt's: prompts missing a feature set a loss floor,
    reached at finite scores, often above 1 % of the initial loss.  The status
    ``"finished"`` says the run is not diverged and not still falling far from
    convergence (:func:`attnflow.solvers.trajectory.far_from_convergence`).
    """
    return bool(tr.status == "stop_loss" or (tr.status == "finished" and tr.loss[-1] < tr.loss[0]))


def search_oscillation(cfg, space=QUICK_SPACE, progress=None):
    """Search ``space`` for a converging GD run in which an irrelevant attention oscillates.

    K goes in increasing order; at the first K with an oscillating run the search
    stops and the example is the one with the fewest iterations to convergence.

    Parameters
    ----------
    cfg : Config
        The user's configuration: every setting overrides its features, prompt, model
        and training fields (and the task, see :func:`base_overrides`).
    space : SearchSpace, optional
        :data:`QUICK_SPACE` (what ``attnflow check`` runs) or :data:`FULL_SPACE`.
    progress : callable, optional
        Called with the fraction of settings done at each K.

    Returns
    -------
    OscillationResult
    """
    runs, flows, stats = [], {}, {"settings": 0, "invalid_settings": 0, "flows": 0, "flow_transient": 0,
                                   "flow_oscillating": 0}
    task = base_overrides(cfg)
    searched, best, skipped = [], None, {}
    for K in space.K:
        searched.append(K)
        settings = space.settings(K)
        for why, count in space.skipped(K).items():
            skipped[why] = skipped.get(why, 0) + count
        for i, overrides in enumerate(settings):
            try:
                problem = Problem.from_config(cfg.with_overrides({**task, **overrides}))
            except AttnflowError:
                stats["invalid_settings"] += 1     # e.g. a dense Jacobian too large: named in the space
                continue
            stats["settings"] += 1
            setting = len(stats.setdefault("overrides", []))
            stats["overrides"].append(overrides)
            stable = problem.system().stable_step(problem.start)
            done = []
            for factor, tr in _step_runs(problem, stable, space):
                counts, second = trajectory_reversals(tr)
                done.append((factor, tr, converged(tr), counts, second))
            candidates = [tr.t[-1] for _, tr, ok, counts, _ in done if ok and counts.max() >= 2]
            if space.flows == "all" or candidates:
                flows[setting] = _flow_counts(problem, stats, overrides, _flow_horizon(done, candidates))
            for factor, tr, ok, counts, second in done:
                row = {"K": K, "setting": setting, "eta_factor": float(factor), "eta": float(factor * stable),
                       "converged": ok, "iterations": int(tr.iteration[-1]), "status": tr.status,
                       "reversals": int(counts.max())}
                runs.append(row)
                if not ok or counts.max() < 2:
                    continue
                flow_counts = flows[setting][0]
                beyond = (counts >= 2) & (counts > flow_counts)
                if not beyond.any():
                    continue
                row["oscillates"] = True
                if best is None or row["iterations"] < best[0]["iterations"]:
                    n, k = np.unravel_index(np.argmax(np.where(beyond, counts, -1)), counts.shape)
                    best = (row, problem, tr, (int(n), int(k)), counts, second, flows[setting])
            if progress is not None:
                progress((i + 1) / len(settings))
        if best is not None:
            break
    space_report = {**space.describe(), "K_searched": searched, "settings": stats["settings"],
                    "invalid_settings": stats["invalid_settings"], "skipped_settings": sum(skipped.values()),
                    "skipped_by_reason": skipped, "runs": len(runs),
                    "converging_runs": sum(r["converged"] for r in runs),
                    "transient_runs": sum(r["converged"] and r["reversals"] == 1 for r in runs),
                    "runs_with_two_or_more_reversals": sum(r["converged"] and r["reversals"] >= 2 for r in runs),
                    "oscillating_runs": sum(bool(r.get("oscillates")) for r in runs),
                    "by_axis": _by_axis(runs, stats.get("overrides", [])),
                    "flows_run": stats["flows"], "flows_with_one_reversal": stats["flow_transient"],
                    "flows_with_two_or_more_reversals": stats["flow_oscillating"],
                    "nonmonotone_flows": stats.get("nonmonotone_flows", [])}
    if best is None:
        return OscillationResult(NOT_FOUND, None, {}, space_report, runs)
    row, problem, tr, (n, k), counts, second, (flow_counts, flow) = best
    overrides = stats["overrides"][row["setting"]]
    iterations = row["iterations"]
    example = _example_config(cfg, {**task, **overrides}, row["eta"], iterations, problem.initial_loss())
    X = tr.S[:, n, k] - tr.S[:, k, k]
    flips = reversal_steps(X)
    evidence = {"K": problem.K, "setting": describe_setting(overrides), "pair": [n, k],
                "reversals": int(counts[n, k]), "flow_reversals": int(flow_counts[n, k]),
                "second_reversal_at_iteration": int(tr.iteration[second[n, k]]),
                "iterations": iterations,
                "converged_to": (f"{CONVERGED:g}·ℒ0" if tr.status == "stop_loss" else "its loss floor"),
                "eta": row["eta"], "eta_factor": row["eta_factor"],
                "stable_step": row["eta"] / row["eta_factor"],
                "initial_loss": float(tr.loss[0]), "final_loss": float(tr.loss[-1]),
                "period_two": bool(np.any(np.diff(flips) == 1)),
                "largest_step_of_log_odds": float(np.abs(np.diff(X)).max())}
    return OscillationResult(OSCILLATES, example, evidence, space_report, runs, tr, flow)


def _axis_values(o):
    """The axis values of a setting's overrides, for the per-axis counts."""
    V = np.array(o["features.matrix"])
    return {"gram_off_diagonal": round(float((V @ V.T)[0, 1]), 6),
            "p": "uniform" if o["prompt.p"] == "uniform" else "dominant",
            "prompt": f"N = {o['prompt.N']}" + (" with the query" if o["prompt.include_query"] else ""),
            "parametrization": o["model.parametrization"], "init_scale": o["model.init_scale"],
            "training_prompts": "population" if o.get("training.prompts") is None else o["training.prompts"],
            "heads": o.get("model.heads", 1)}


def _by_axis(runs, overrides):
    """``{axis: {value: {"runs", "converging", "oscillating"}}}`` over the GD runs (step factors rounded)."""
    out = {}
    for r in runs:
        values = {**_axis_values(overrides[r["setting"]]), "K": r["K"],
                  "eta_factor": float(f"{r['eta_factor']:.3g}")}
        for axis, value in values.items():
            c = out.setdefault(axis, {}).setdefault(str(value), {"runs": 0, "converging": 0, "oscillating": 0})
            c["runs"] += 1
            c["converging"] += int(r["converged"])
            c["oscillating"] += int(bool(r.get("oscillates")))
    return out


def _flow_horizon(done, candidates):
    """How long the flow of a setting is followed: as long as the GD runs it is compared with.

    The longest candidate (a converging run with two or more reversals) in time; without
    one, the converging run with the smallest step, the closest to the flow; else the
    smallest step's run.  Reversals of the flow after that time cannot explain GD's, and a
    finite prompt's plateau is slow to integrate; counting the flow over a longer time
    than a run's only raises the bar the run must clear.
    """
    if candidates:
        return max(candidates)
    converging = [tr for _, tr, ok, _, _ in done if ok]
    return max((converging or [tr for _, tr, *_ in done])[0].t[-1], 1e-300)


def _flow_counts(problem, stats, overrides, horizon):
    flow = run_flow(problem, horizon)
    counts, _ = trajectory_reversals(flow)
    stats["flows"] += 1
    if counts.max() > 0:
        stats.setdefault("nonmonotone_flows", []).append(
            {"K": problem.K, "setting": describe_setting(overrides), "reversals": int(counts.max())})
    stats["flow_transient"] += int(counts.max() == 1)
    stats["flow_oscillating"] += int(counts.max() >= 2)
    return counts, flow


def _step_runs(problem, stable, space):
    """(factor, trajectory) for the grid of step factors and, with ``space.edge``, the bisected edge."""
    last_ok, first_bad = None, None
    for factor in space.eta_factors:
        tr = run_gd(problem, factor * stable, space.steps)
        yield factor, tr
        if converged(tr):
            last_ok = factor
        elif last_ok is not None and first_bad is None:
            first_bad = factor
    if not space.edge or last_ok is None or first_bad is None or first_bad < last_ok:
        return
    lo, hi = last_ok, first_bad
    for _ in range(EDGE_BISECTIONS):
        mid = math.sqrt(lo * hi)
        tr = run_gd(problem, mid * stable, space.steps)
        yield mid, tr
        lo, hi = (mid, hi) if converged(tr) else (lo, mid)


def _example_config(cfg, overrides, eta, steps, initial_loss):
    """The user's configuration with ``overrides`` and the GD run, as a plain dict.

    Fields at their default value are left out (the same configuration, without the
    warnings ``attnflow run`` gives for, say, ``include_query`` at N = ∞).
    """
    full = cfg.with_overrides({**overrides, "training.mode": "gd", "training.eta": float(eta),
                               "training.steps": int(steps), "training.n_out": int(steps) + 1,
                               "training.stop_loss": CONVERGED * float(initial_loss)})
    example = {}
    for section, values in full.raw.items():
        kept = {k: v for k, v in values.items()
                if v is not None and not _is_default(getattr(full, section).values[k], SCHEMA[section][k][1])}
        if kept:
            example[section] = kept
    return example


def _is_default(value, default):
    if isinstance(value, (list, tuple)) or isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)) and list(value) == list(default)
    return value == default


def example_toml(example):
    """The example configuration as TOML text (``attnflow run`` reads it).

    Parameters
    ----------
    example : dict
        ``{section: {key: value}}`` with numbers, strings, booleans and (nested) lists.

    Returns
    -------
    str

    Examples
    --------
    >>> print(example_toml({"features": {"K": 2, "matrix": [[1.0, 0.0], [0.5, 0.75]]}, "prompt": {"N": "inf"}}))
    [features]
    K = 2
    matrix = [[1.0, 0.0], [0.5, 0.75]]
    <BLANKLINE>
    [prompt]
    N = "inf"
    <BLANKLINE>
    """
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{key} = {value(x)}" for key, x in v.items()) + " }"
        return repr(float(v)) if isinstance(v, float) else str(int(v))

    blocks = []
    for section, values in example.items():
        lines = [f"[{section}]"] + [f"{key} = {value(v)}" for key, v in values.items()]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)
