"""The search for an oscillating irrelevant attention (claim C2): its example, re-run and counted independently."""

import math

import numpy as np
import pytest

from attnflow.dynamics.analysis import oscillation as osc
from attnflow.dynamics.cli import main
from attnflow.dynamics.problem import Problem, config
from attnflow.solvers import integrate_flow, iterate_gd


@pytest.fixture(scope="module")
def found():
    return osc.search_oscillation(config.default(), osc.QUICK_SPACE)


def _sign_changes(x, floor=1e-9):
    """Reversals of x's direction, written apart from the module's: steps below ``floor`` are skipped."""
    d = np.diff(np.asarray(x, float))
    s = np.sign(d[np.abs(d) > floor])
    return int(np.sum(s[1:] != s[:-1]))


def test_quick_search_finds_an_oscillation_at_the_smallest_K(found):
    assert found.verdict == osc.OSCILLATES
    e = found.evidence
    assert e["K"] == min(osc.QUICK_SPACE.K) == 2
    assert e["reversals"] >= 2 and e["reversals"] > e["flow_reversals"]
    assert e["period_two"]                       # reversals in consecutive steps: overshoot, not a slow wobble
    assert e["second_reversal_at_iteration"] <= e["iterations"]
    assert e["final_loss"] <= osc.CONVERGED * e["initial_loss"]
    assert "GD oscillates" in found.summary() and f"K = {e['K']}" in found.summary()


def test_the_example_config_reproduces_the_oscillation(found):
    # Re-run the example from its configuration dict alone and count reversals from the recorded attention.
    cfg = config.from_dict(found.example)
    problem = Problem.from_config(cfg)
    assert cfg.training.mode == "gd" and cfg.training.n_out > cfg.training.steps      # every iteration recorded
    gd = iterate_gd(problem.system(), problem.start, cfg.training.eta, cfg.training.steps,
                    stop_loss=cfg.training.stop_loss, n_out=cfg.training.n_out)
    n, k = found.evidence["pair"]
    log_odds = np.log(gd.attention[:, n, k]) - np.log(gd.attention[:, k, k])
    reversals = _sign_changes(log_odds)
    assert reversals == found.evidence["reversals"] >= 2
    assert gd.counters["max_oscillations_per_feature"] >= 2                   # the solver's own count agrees
    assert gd.status == "stop_loss" and gd.loss[-1] <= 1e-2 * gd.loss[0]      # it converges
    assert len(gd.iteration) == found.evidence["iterations"] + 1
    # The flow of the same problem is monotone in that log-odds: the reversals come from the step.
    flow = integrate_flow(problem.system(), problem.start, 1e6, rtol=1e-10, atol=1e-12,
                          stop_loss=cfg.training.stop_loss, n_out=1500)
    flow_odds = np.log(flow.attention[:, n, k]) - np.log(flow.attention[:, k, k])
    assert _sign_changes(flow_odds) == found.evidence["flow_reversals"] < reversals


def test_the_example_is_minimal_in_the_searched_order(found):
    e = found.evidence
    oscillating = [r for r in found.runs if r.get("oscillates")]
    assert oscillating and all(r["K"] >= e["K"] for r in oscillating)
    assert min(r["iterations"] for r in oscillating if r["K"] == e["K"]) == e["iterations"]
    # Every run of the smallest K was made (the search stops after that K, not before).
    s = found.space
    assert s["K_searched"] == [2]
    assert s["runs"] == len(found.runs) == s["settings"] * len(osc.QUICK_SPACE.eta_factors)
    assert s["oscillating_runs"] == len(oscillating) <= s["runs_with_two_or_more_reversals"] <= s["converging_runs"]
    # The per-axis counts partition the runs; orthonormal features never oscillate (one log-odds per query at K = 2).
    for axis, values in s["by_axis"].items():
        assert sum(v["runs"] for v in values.values()) == s["runs"], axis
        assert sum(v["oscillating"] for v in values.values()) == s["oscillating_runs"], axis
    assert s["by_axis"]["gram_off_diagonal"]["0.0"]["oscillating"] == 0


def test_a_space_without_oscillation_reports_what_it_searched():
    # Orthonormal K = 2, uniform p: each query's log-odds is one variable on a loss decreasing in it, so GD moves
    # it one way at every step whatever η; the large factor fails, so the edge is bisected too.
    space = osc.SearchSpace(K=(2,), gram=(0.0,), p=("uniform",), prompt=((math.inf, False),),
                            parametrization=("merged",), init_scale=(0.0,), prompts=(None,), heads=(1,),
                            eta_factors=(0.5, 4.0, 1e4), steps=400, flows="all")
    result = osc.search_oscillation(config.default(), space)
    assert result.verdict == osc.NOT_FOUND and result.example is None and result.trajectory is None
    s = result.space
    assert s["settings"] == 1 and s["flows_run"] == 1 and s["flows_with_two_or_more_reversals"] == 0
    assert s["runs"] == 3 + osc.EDGE_BISECTIONS
    assert 2 <= s["converging_runs"] < s["runs"] and s["oscillating_runs"] == 0
    assert all(r["reversals"] == 0 for r in result.runs if r["converged"])
    assert s["gram_off_diagonal"] == [0.0] and s["training_prompts"] == [None] and s["heads"] == [1]
    assert s["skipped_settings"] == 0 and s["skipped_by_reason"] == {}
    assert result.summary().startswith("no converging GD run")


def test_separate_factors_are_searched_from_their_recorded_states():
    space = osc.SearchSpace(K=(2,), gram=(0.9,), p=("dominant",), prompt=((math.inf, False),),
                            parametrization=("separate",), init_scale=(0.0, 0.5), prompts=(None,), heads=(1,),
                            eta_factors=(1.0,), edge=False, steps=300, flows="candidates")
    result = osc.search_oscillation(config.default(), space)
    assert result.space["settings"] == 1                    # the zero start is no start for separate factors
    assert result.space["skipped_by_reason"] == {"separate factors need a random start (init_scale > 0)": 1}
    (row,) = result.runs
    cfg = config.default().with_overrides({**osc.base_overrides(config.default()),
                                           **space.settings(2)[0]})
    problem = Problem.from_config(cfg)
    tr = osc.run_gd(problem, row["eta"], space.steps)
    assert tr.state is not None                              # the factors' loop ran
    assert osc.count_reversals(tr.S)[0].max() == row["reversals"]
    if result.verdict == osc.OSCILLATES:
        assert result.example["model"]["parametrization"] == "separate"


def test_training_sets_and_heads_are_searched_and_impossible_combinations_are_skipped_by_reason():
    """A small space with both new axes: 16 combinations, 7 the model has not (named and counted),
    9 settings run; the training-set and two-head settings were run, and a two-head run's reversals are
    those of the heads' mean attention ā, recounted here from the recorded ā itself."""
    space = osc.SearchSpace(K=(2,), gram=(0.5,), p=("dominant",), prompt=((math.inf, False), (16, False)),
                            parametrization=("merged",), init_scale=(0.0, 0.5), prompts=(None, 4), heads=(1, 2),
                            eta_factors=(1.0, 2.0), edge=False, steps=300, flows="candidates")
    result = osc.search_oscillation(config.default(), space)
    s = result.space
    assert s["skipped_by_reason"] == {("several heads are searched at N = inf only (at finite N each gradient sums over "
                                       "the prompt's count vectors)"): 4,
                                      "several heads need a random start (init_scale > 0): equal heads stay equal": 2,
                                      "a training set takes one head only": 1}
    assert s["skipped_settings"] == 7 and s["settings"] == 9 and s["invalid_settings"] == 0
    assert s["runs"] == 9 * 2 and "7 combinations the model has not skipped" in result.summary()
    assert s["training_prompts"] == [None, 4] and s["heads"] == [1, 2]
    by_prompts, by_heads = s["by_axis"]["training_prompts"], s["by_axis"]["heads"]
    assert by_prompts["4"]["runs"] == 8 and by_prompts["4"]["converging"] >= 1          # 4 settings × 2 steps
    assert by_heads["2"]["runs"] == 2 and by_heads["2"]["converging"] >= 1              # N = ∞, init 0.5, population
    # The population setting of the quick space's example (cosine 0.5, dominant p, S = 0, 2×) is in the space.
    assert result.verdict == osc.OSCILLATES and result.evidence["reversals"] >= 2
    assert result.evidence["reversals"] > result.evidence["flow_reversals"]
    settings = space.settings(2)
    (two_heads,) = [i for i, o in enumerate(settings) if o["model.heads"] == 2]
    for row in (r for r in result.runs if r["setting"] == two_heads):
        problem = Problem.from_config(config.default().with_overrides(settings[two_heads]))
        tr = osc.run_gd(problem, row["eta"], space.steps)
        assert tr.state.shape[1] == 2 * 4                                  # the two heads' scores were the state
        worst = 0
        for n, k in ((0, 1), (1, 0)):
            abar = tr.attention                                              # the heads' mean attention
            worst = max(worst, _sign_changes(np.log(abar[:, n, k]) - np.log(abar[:, k, k])))
        assert worst == row["reversals"]
    training = [i for i, o in enumerate(settings) if o["training.prompts"] == 4]
    assert len(training) == 4 and all(settings[i]["training.seed"] == space.seed for i in training)
    example = next(r for r in result.runs if r["setting"] == training[0])
    problem = Problem.from_config(config.default().with_overrides(settings[training[0]]))
    assert problem.system().M == 4
    tr = osc.run_gd(problem, example["eta"], space.steps)
    assert tr.loss[0] == problem.initial_loss() == problem.system().loss(problem.start)     # the training loss
    assert osc.count_reversals(tr.S)[0].max() == example["reversals"]


def test_a_finite_prompt_run_at_its_loss_floor_counts_as_converged():
    # At N = 16 the prompts missing the rare feature (p = 0.2) set a floor above 1 % of the initial loss: a run
    # that settles there converges, one that blows up does not.
    space = osc.SearchSpace(K=(2,), gram=(0.5,), p=("dominant",), prompt=((16, False),), parametrization=("merged",),
                            init_scale=(0.0,))
    problem = Problem.from_config(config.default().with_overrides(space.settings(2)[0]))
    stable = problem.system().stable_step(problem.start)
    tr = osc.run_gd(problem, 2 * stable, 300)
    assert tr.status == "finished" and osc.CONVERGED * tr.loss[0] < tr.loss[-1] < 0.1 * tr.loss[0]
    assert osc.converged(tr)
    assert not osc.converged(osc.run_gd(problem, 1e5 * stable, 50))


def test_count_reversals_ignores_round_off_and_counts_period_two():
    T = 40
    S = np.zeros((T, 3, 3))
    S[:, 1, 0] = -np.linspace(0, 5, T) + 1e-15 * (-1) ** np.arange(T)      # monotone up to round-off
    S[:, 2, 1] = -np.linspace(0, 5, T) + 0.3 * (-1) ** np.arange(T)        # period-2 around a falling line
    counts, second = osc.count_reversals(S)
    assert counts[1, 0] == 0 and counts[2, 1] == T - 2 and second[2, 1] == 3
    assert np.all(np.diag(counts) == 0) and second[1, 0] == -1
    # A flow settled at a fixed point wiggles by the integrator's error (1e-8 at |X| = 3.7 seen at N = 16):
    # GD's round-off floor counts those, the flow's floor does not.
    settled = -3.7 - np.r_[np.linspace(0, 0.005, 20), 0.005 + 1e-8 * (-1) ** np.arange(20)]
    assert len(osc.reversal_steps(settled)) > 10 and len(osc.reversal_steps(settled, noise=osc.FLOW_NOISE)) == 0


def test_equicorrelated_features_have_the_asked_gram():
    for K, c in ((2, 0.5), (3, 0.99), (4, -1 / 3)):
        V = osc.equicorrelated_features(K, c)
        assert np.allclose(V @ V.T, (1 - c) * np.eye(K) + c, atol=1e-12)
    with pytest.raises(ValueError):
        osc.equicorrelated_features(3, -0.6)


def test_check_rejects_an_unknown_search(capsys, tmp_path):
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    with pytest.raises(SystemExit) as exit_:
        main(["check", str(empty), "--out", str(tmp_path / "o"), "--search", "everything"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--search" in err[0]


def test_the_example_figure_is_written(found, tmp_path):
    from attnflow.dynamics.reporting import figures
    path = figures.oscillating_attention(tmp_path / "oscillation.png", found.trajectory, found.evidence["pair"],
                                         found.flow, found.evidence["setting"])
    assert path.stat().st_size > 10_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
