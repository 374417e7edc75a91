"""What a run reports: ``summary.json``, the trajectory files and the plots.

``summarize(cfg, problem, result)`` gathers the constants, the problem, the
kernels' provenance and every trajectory's status, crossings and counters;
``write_outputs`` writes them (atomically) with the trajectories and figures.
"""

import math
import platform
from dataclasses import replace
from importlib import metadata

import numpy as np

from ..analysis.solve import main_trajectory
from ..files import dump_json, prepare_out_dir, remove_stale_temps, write_npz
from ..problem.config import inert_settings


def versions():
    """Return the versions of Python, attnflow and its dependencies (None: not installed)."""
    out = {"python": platform.python_version()}
    for name in ("attnflow", "numpy", "scipy", "numba", "sympy", "matplotlib"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out

def _keyed(mapping):
    return {f"{k:g}": v for k, v in mapping.items()}

def trajectory_summary(tr, eta=None):
    """Return what ``summary.json`` says about one trajectory.

    Parameters
    ----------
    tr : Trajectory
        A solved flow or GD trajectory.
    eta : float, optional
        GD's step size: the crossing times are then also given in iterations ``t/η``.

    Returns
    -------
    dict
        Status, message, counters, final loss and attention, and the crossing times
        (``t_half``, ``t_attention_eps``, ``t_loss_eps``, keyed by ε).
    """
    c = tr.crossings
    out = {
        "status": tr.status, "message": tr.message, "counters": tr.counters,
        "wall_time_s": tr.wall_time, "t_final": float(tr.t[-1]), "final_loss": float(tr.loss[-1]),
        "final_attention": tr.final_attention.tolist(),
        "t_half": c["t_half"], "t_attention_eps": _keyed(c["t_attention"]), "t_loss_eps": _keyed(c["t_loss"]),
    }
    if eta is not None:
        it = lambda t: None if t is None else int(round(t / eta))  # noqa: E731
        out["iterations_half"] = it(c["t_half"])
        out["iterations_attention_eps"] = {k: it(v) for k, v in out["t_attention_eps"].items()}
        out["iterations_loss_eps"] = {k: it(v) for k, v in out["t_loss_eps"].items()}
    return out

def large_prompt_convergence(system, S, multiples=(1, 2, 4, 8)):
    """Measure how the loss at scores S approaches the large-prompt limit.

    Parameters
    ----------
    system : ScoreSystem
        A system at finite N.
    S : array, shape (K, K)
        The scores.
    multiples : tuple of int
        Prompt lengths tried, as multiples of the system's N.

    Returns
    -------
    dict
        ``N``: the prompt lengths; ``loss_gap``: ``|ℒ_{mN}(S) − ℒ_∞(S)|`` at each;
        ``exponent``: the fitted exponent of N (−1 for the 1/N law; None when a gap is
        exactly 0).
    """
    limit = replace(system, N=np.inf).loss(S)
    Ns = [int(m * system.N) for m in multiples]
    gaps = [abs(replace(system, N=N).loss(S) - limit) for N in Ns]
    exponent = float(np.polyfit(np.log(Ns), np.log(gaps), 1)[0]) if min(gaps) > 0 else None
    return {"N": Ns, "loss_gap": gaps, "exponent": exponent}

def heads_finite_prompt_summary(problem, result):
    """Return what ``summary.json`` says about the prompt of several heads at finite N.

    Their expectation over prompts is the exact sum over the prompt's count vectors
    (:mod:`attnflow.solvers.multihead`), so there is no quadrature error; the approach to the
    large-prompt limit is the heads' loss at their final scores for the multiples of N whose
    count vectors are within the solver's bound.

    Parameters
    ----------
    problem : Problem
        A problem with ``heads > 1`` and finite N.
    result : RunResult
        The solved run.

    Returns
    -------
    dict
        ``N``, ``count_vectors``, ``missing_query_probability``, ``quadrature_error_at_end`` (0:
        an exact sum) and ``approach_to_large_prompt_limit.at_end`` as :func:`large_prompt_convergence`.
    """
    from ...solvers.finite_prompt import missing_query_probability
    from ...solvers.multihead import composition_count, composition_excess
    system, N, K = problem.system(), int(problem.N), problem.K
    heads = main_trajectory(result).state[-1].reshape(problem.heads, K, K)

    def loss_at(length):
        return replace(system, scores=replace(system.scores, N=length)).loss(heads)
    limit = loss_at(np.inf)
    Ns = [m * N for m in (1, 2, 4, 8) if composition_excess(m * N, K) is None]
    gaps = [abs(loss_at(n) - limit) for n in Ns]
    exponent = float(np.polyfit(np.log(Ns), np.log(gaps), 1)[0]) if len(Ns) > 1 and min(gaps) > 0 else None
    return {"N": N, "count_vectors": composition_count(N, K),
            "missing_query_probability": missing_query_probability(problem.p, N).tolist(),
            "quadrature_error_at_end": 0.0,
            "approach_to_large_prompt_limit": {"at_end": {"N": Ns, "loss_gap": gaps, "exponent": exponent}}}


def heads_summary(problem, result):
    """Return what ``summary.json`` says about several heads: how far they specialise.

    The reports' attention is the heads' mean ā (what the prediction uses); here each head's
    own attention at the start and the end, and the specialisation index (the mean over
    queries of the mean total-variation distance between two heads' attention,
    :func:`attnflow.solvers.multihead.specialisation_index`).

    Parameters
    ----------
    problem : Problem
        A problem with ``heads > 1``.
    result : RunResult
        Its solved run.

    Returns
    -------
    dict
        ``H``, the note on what "attention" means, and per trajectory the index at the
        start and the end with the heads' final attention.
    """
    from ...solvers.multihead import specialisation_index
    system = problem.system()
    out = {"H": problem.heads,
           "attention_note": "attention elsewhere in this summary is the heads' mean attention (the prediction's)"}
    for kind, tr in result.trajectories.items():
        start, end = system.head_attention(tr.state[0]), system.head_attention(tr.state[-1])
        out[kind] = {"specialisation_at_start": specialisation_index(start),
                     "specialisation_at_end": specialisation_index(end),
                     "final_head_attention": end.tolist()}
    return out


def training_set_summary(problem, result):
    """Return what ``summary.json`` says about a run on a finite training set.

    Parameters
    ----------
    problem : Problem
        A problem with a training set (``training.prompts``).
    result : RunResult
        Its solved trajectories (their ``loss`` is the training loss).

    Returns
    -------
    dict
        ``prompts`` M, ``queries_asked`` (the features that are some prompt's query), and per
        trajectory the final training and population losses, the generalisation gap
        ``ℒ(S) − ℒ̂(S)`` at the end and both losses' crossing times (keyed by ε; the
        population's located on the output grid).
    """
    system = problem.system()
    out = {"prompts": system.M, "queries_asked": system.queries_asked.tolist(),
           "note": ("the trajectories' loss is the training loss on these prompts; the population loss is "
                    "the score system's at the same scores")}
    for kind, tr in result.trajectories.items():
        out[kind] = {"final_training_loss": float(tr.loss[-1]), "final_population_loss": float(tr.population_loss[-1]),
                     "generalization_gap": float(tr.population_loss[-1] - tr.loss[-1]),
                     "t_training_loss_eps": _keyed(tr.crossings["t_loss"]),
                     "t_population_loss_eps": _keyed(tr.crossings["t_population_loss"])}
    return out


def summarize(cfg, problem, result):
    """Return the content of ``summary.json`` for a solved run.

    Parameters
    ----------
    cfg : Config
        The configuration (echoed as given and resolved).
    problem : Problem
        The problem (its description and constants).
    result : RunResult
        The solved trajectories.

    Returns
    -------
    dict
        JSON-ready: config, problem, constants and regime, one entry per trajectory,
        kernels, versions and timings.
    """
    const = problem.constants()
    cd = const.as_dict()
    summary = {
        "versions": versions(),
        "config": cfg.raw,
        "resolved_config": cfg.resolved(),
        "L": cd["L"], "Delta": cd["Delta"], "delta": cd["delta"],
        "L_Delta_delta": cd["L_Delta_delta"], "regime": cd["regime"],
        "constants": cd,
        "reconstructed_note": ("Delta, delta and the regime threshold are this project's reconstruction "
                               "(the paper's definitions are not public); see docs/model.md §3 and §11."),
        "problem": {
            "K": problem.K, "d": problem.features.d, "features": problem.features.kind,
            "task": problem.function_class.describe(), "p": problem.p.tolist(),
            "F": problem.F.tolist(), "F_method": problem.moments.method,
            "F_error": problem.moments.error, "F_detail": problem.moments.detail,
            "initial_loss": problem.initial_loss(),
            "N": problem.N,
            "include_query": problem.include_query,
            "parametrization": "separate" if problem.separate else "merged",
            "head_dim": problem.factors[0].shape[0] if problem.separate else None,
            "heads": problem.heads,
            "noise": problem.noise,
            "query_in_softmax": problem.score_system().query_in_softmax,
        },
        "kernels": result.kernels,
        "compile_time_s": result.compile_time,
        "wall_time_s": result.wall_time,
    }
    notes = inert_settings(cfg)
    if notes:
        summary["notes"] = notes
    if problem.noise > 0:
        system = problem.system()
        main = main_trajectory(result)
        summary["noise"] = {
            "scale": problem.noise, "query_noise_rule": system.rule[2],
            "quadrature_error_at_end": system.quadrature_error(main.state[-1].reshape(system.d, system.d)),
            "note": ("full d×d model, large-prompt limit, linear class; the context tokens' noise is "
                     "integrated exactly, the query's by the rule named"),
            "noise_free_reduced": {kind: {
                "final_loss": float(free.loss[-1]), "t_half": free.crossings["t_half"],
                "max_score_difference_at_end": float(np.abs(free.S[-1] - result.trajectories[kind].S[-1]).max()),
                "max_attention_difference_at_end": float(np.abs(free.final_attention
                                                                - result.trajectories[kind].final_attention).max()),
            } for kind, free in result.noise_free.items()},
        }
    if problem.heads > 1:
        summary["heads"] = heads_summary(problem, result)
    if math.isfinite(problem.N) and problem.heads > 1:
        summary["finite_prompt"] = heads_finite_prompt_summary(problem, result)
    elif math.isfinite(problem.N):
        from ...solvers import finite_prompt
        summary["finite_prompt"] = {
            "N": int(problem.N), "quadrature_step": problem.quadrature_step,
            "missing_query_probability": finite_prompt.missing_query_probability(problem.p, problem.N).tolist(),
            "quadrature_error_at_end": max(
                finite_prompt.loss_and_gradient(tr.S[-1], problem.F, problem.p, problem.N, problem.quadrature_step,
                                                problem.include_query)[2]
                for tr in result.trajectories.values()),
            "approach_to_large_prompt_limit": {
                "at_start": large_prompt_convergence(problem.score_system(), problem.S0),
                "at_end": large_prompt_convergence(problem.score_system(), main_trajectory(result).S[-1])},
        }
    if problem.training_set is not None:
        summary["training_set"] = training_set_summary(problem, result)
    if "flow" in result.trajectories:
        summary["flow"] = trajectory_summary(result.trajectories["flow"])
    if "gd" in result.trajectories:
        summary["gd"] = trajectory_summary(result.trajectories["gd"], result.eta)
        summary["gd"].update(eta=result.eta, eta_source=result.eta_source,
                             stable_step_at_start=result.stable_step_at_start)
    return summary

def save_trajectory(path, tr, state_name="state"):
    """Write a trajectory's arrays (t, S, attention, loss, and iteration, state and population_loss when present).

    Parameters
    ----------
    path : Path
        The ``.npz`` file, written atomically.
    tr : Trajectory
    state_name : str
        Name of the trained state's array when it is not S (``"factors"`` or ``"Q"``).
    """
    arrays = {"t": tr.t, "S": tr.S, "attention": tr.attention, "loss": tr.loss}
    if tr.iteration is not None:
        arrays["iteration"] = tr.iteration
    if tr.state is not None:
        arrays[state_name] = tr.state
    if tr.population_loss is not None:
        arrays["population_loss"] = tr.population_loss
    write_npz(path, **arrays)

OUTPUT_NAMES = ("trajectory.npz", "trajectory_gd.npz", "summary.json", "loss.png", "attention.png")

def write_outputs(out_dir, cfg, problem, result, plots=True):
    """Write trajectory.npz (flow, or GD alone), trajectory_gd.npz (mode "both"), summary.json, plots.

    Parameters
    ----------
    out_dir : str or Path
        The output directory (created if missing).
    cfg, problem, result
        The configuration, the problem and the solved run.
    plots : bool
        Whether to draw ``loss.png`` and ``attention.png``.

    Returns
    -------
    dict
        The summary written to ``summary.json``.

    Raises
    ------
    AttnflowError
        When ``out_dir`` cannot be created or written.
    """
    out = prepare_out_dir(out_dir)
    remove_stale_temps(out, OUTPUT_NAMES)        # left by a run killed while writing
    trs = result.trajectories
    main = main_trajectory(result)
    # The trained state when it is not S: factors [W_K Vᵀ, W_Q Vᵀ] (separate), Q (token noise), the heads' scores.
    state_name = "Q" if problem.noise > 0 else "head_scores" if problem.heads > 1 else "factors"
    save_trajectory(out / "trajectory.npz", main, state_name)
    if "flow" in trs and "gd" in trs:
        save_trajectory(out / "trajectory_gd.npz", trs["gd"], state_name)
    summary = summarize(cfg, problem, result)
    dump_json(out / "summary.json", summary)
    if plots:
        from .plots import plot_run
        plot_run(out, trs, title=f"{problem.function_class.describe()}, "
                                 f"LΔδ = {summary['L_Delta_delta']:.3g} ({summary['regime']})")
    return summary
