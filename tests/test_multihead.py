"""Several attention heads (model.heads): the H-head score system against one head, finite
differences, the SymPy stage, the real H-head network on sampled prompts, and bad inputs."""

import json
import math

import numpy as np
import pytest
import sympy as sp
from scipy.special import log_softmax

from attnflow.derivations import load_kernels
from attnflow.dynamics.cli import main
from attnflow.dynamics.problem import config
from attnflow.solvers import ScoreSystem, integrate_flow, iterate_gd
from attnflow.solvers import kernels as hand_written
from attnflow.solvers import multihead
from attnflow.solvers.columns import label_gap_stack
from attnflow.solvers.multihead import (MultiHeadSystem, composition_limit, effective_scores, prompt_counts,
                                        specialisation_index)
from attnflow.solvers.references import numpy_twins
from attnflow.solvers.references.enumeration import compositions
from attnflow.solvers.references.sampled import train_sampled

from .conftest import central_differences, make_problem, random_system_arrays


def _system(K=3, d=4, H=2, seed=1, N=np.inf, include_query=False):
    V, F, p = random_system_arrays(K, d, seed=seed)
    return MultiHeadSystem(ScoreSystem(V @ V.T, F, p, kernels=hand_written, N=N, include_query=include_query), H), F


def test_one_head_is_the_single_head_score_system():
    """Loss, gradient, Jacobian at random scores, and GD and flow trajectories, to 1e-14 of their size."""
    system, _ = _system(H=1)
    single = system.scores
    S = np.random.default_rng(0).standard_normal((1, 3, 3))
    value, Gamma = system.loss_and_gradient(S)
    assert abs(value - single.loss(S[0])) <= 1e-14 * value
    assert np.abs(Gamma[0] - single.gradient(S[0])).max() <= 1e-14 * np.abs(Gamma).max()
    J = system.flat_jacobian(S.ravel())
    assert np.abs(J - single.jacobian(S[0])).max() <= 1e-14 * np.abs(J).max()
    gd_heads = iterate_gd(system, S, 0.5, 300, n_out=50)
    gd_single = iterate_gd(single, S[0], 0.5, 300, n_out=50)
    assert np.abs(gd_heads.state[-1] - gd_single.S[-1].ravel()).max() <= 1e-14 * np.abs(gd_single.S[-1]).max()
    flow_heads = integrate_flow(system, S, 1e3, method="DOP853", n_out=20)
    flow_single = integrate_flow(single, S[0], 1e3, method="DOP853", n_out=20)
    assert np.abs(flow_heads.state[-1] - flow_single.S[-1].ravel()).max() <= 1e-14 * np.abs(flow_single.S[-1]).max()
    # One head's effective scores are its scores: the reports' S is the trained S.
    assert np.abs(flow_heads.S - flow_single.S).max() <= 1e-14 * np.abs(flow_single.S).max()


def test_identical_heads_stay_identical_and_are_one_head_slowed_down_by_h():
    """H equal heads get Γ/H each: H-head GD with step η is one-head GD with step η/H (1e-12),
    and the H-head flow at time t is the one-head flow at t/H (to the integrator's tolerance)."""
    H = 3
    system, _ = _system(H=H)
    S0 = np.random.default_rng(2).standard_normal((3, 3))
    start = np.stack([S0] * H)
    gd = iterate_gd(system, start, 0.6, 400, n_out=30)
    one = iterate_gd(system.scores, S0, 0.6 / H, 400, n_out=30)
    heads = gd.state.reshape(len(gd.state), H, 3, 3)
    assert np.array_equal(heads[:, 0], heads[:, 1]) and np.array_equal(heads[:, 0], heads[:, 2])
    assert np.abs(heads[:, 0] - one.S).max() <= 1e-12 * np.abs(one.S).max()
    assert specialisation_index(system.head_attention(gd.state[-1])) == 0.0
    flow = integrate_flow(system, start, 3e3, method="DOP853", rtol=1e-12, atol=1e-14, n_out=10)
    reference = integrate_flow(system.scores, S0, 1e3, method="DOP853", rtol=1e-12, atol=1e-14, n_out=10)
    assert np.abs(flow.state[-1].reshape(H, 3, 3) - reference.S[-1]).max() <= 1e-8 * np.abs(reference.S[-1]).max()
    assert flow.crossings["t_half"] == pytest.approx(H * reference.crossings["t_half"], rel=1e-8)


def test_gradient_and_jacobian_equal_finite_differences_and_the_numpy_twin():
    system, F = _system(K=3, d=4, H=3, seed=4)
    S = 1.5 * np.random.default_rng(5).standard_normal((3, 3, 3))
    y = S.ravel()
    value, Gamma = system.loss_and_gradient(S)
    twin_value, twin_Gamma = numpy_twins.multihead_loss_and_gradient(S, F, system.scores.p, system.scores.logp)
    assert abs(value - twin_value) <= 1e-14 * value and np.abs(Gamma - twin_Gamma).max() <= 1e-14 * np.abs(Gamma).max()
    fd = central_differences(lambda x: np.array([system.flat_loss(x)]), y, rel_step=1e-6)[0]
    assert np.abs(fd - Gamma.ravel()).max() <= 1e-7 * np.abs(Gamma).max()
    J = system.flat_jacobian(y)
    ref = central_differences(system.flat_rhs, y, rel_step=1e-6)
    assert np.abs(J - ref).max() <= 1e-7 * np.abs(ref).max()
    # The Lanczos rate is the largest eigenvalue of the dense −J, which is real.
    dense = np.linalg.eigvals(-J)
    assert np.abs(dense.imag).max() < 1e-12 and system.largest_rate(S) == pytest.approx(dense.real.max(), rel=1e-10)


@pytest.mark.slow
def test_gradient_equals_the_sympy_stage():
    """The SymPy-derived Γ^h (checked there against differentiating the explicit loss, K = H = 2) at numbers."""
    from attnflow.derivations import variants
    stage = variants.multi_head(K=2, H=2)
    data = stage.data
    # The stage (what `attnflow derive` shows for several heads) lists the checks of the indexed form
    # the kernels are printed from, the unrolled comparisons among them.
    indexed_checks = [c for c in stage.checks if c.startswith("indexed form (the printed kernels): ")]
    assert len(indexed_checks) == 5 and "$K = 3$, $H = 2$ equal the unrolled derivation" in " ".join(indexed_checks)
    system, F = _system(K=2, d=3, H=2, seed=6)
    S = np.random.default_rng(7).standard_normal((2, 2, 2))
    values = {sym: S[h, n, k] for h in range(2) for n in range(2) for k in range(2)
              for sym in [data["scores"][h][n, k]]}
    values.update({data["F"][i, j]: F[i, j] for i in range(2) for j in range(2)})
    values.update({sym: system.scores.p[k] for k, sym in enumerate(data["p"])})
    symbolic = np.array([[[float(sp.N(data["gradient"][h][n, k].subs(values), 30)) for k in range(2)]
                          for n in range(2)] for h in range(2)])
    value, Gamma = system.loss_and_gradient(S)
    assert abs(float(sp.N(data["loss"].subs(values), 30)) - value) <= 1e-14 * value
    assert np.abs(Gamma - symbolic).max() <= 1e-14 * np.abs(Gamma).max()


def test_mean_attention_is_what_the_reports_and_events_see():
    system, _ = _system(H=4)
    y = 2.0 * np.random.default_rng(8).standard_normal(4 * 9)
    A = system.head_attention(y)
    abar = system.flat_attention(y)
    S_eff = system.scores_of(y)[0]
    assert np.abs(abar - A.mean(axis=0)).max() < 1e-15
    assert np.abs(system.scores.attention(S_eff) - abar).max() < 1e-14
    # The single-head loss at the effective scores is the H-head loss: it sees the prediction only.
    assert system.scores.loss(S_eff) == pytest.approx(system.flat_loss(y), rel=1e-13)
    gap, _ = system.flat_event_values(y)
    assert gap == pytest.approx(np.log(np.max(1 - np.diagonal(abar))), rel=1e-13)
    assert 0 < specialisation_index(A) < 1


@pytest.mark.slow
def test_sampled_training_of_two_heads_tracks_the_head_score_gd():
    """The real two-head network (output the heads' mean) trained on sampled prompts in the full d×d
    space, N = 1024, 40 prompts a step, 120 steps, 16 seeds: each head's scores V Q_h Vᵀ are within 4
    standard errors of the two-head score GD at every checkpoint (measured: at most 2.8 SE), while one
    head from the same mean attention is more than 10 standard errors away (measured: 42)."""
    problem = make_problem(features={"kind": "random-unit", "K": 3, "d": 3, "seed": 5}, task={"kind": "linear"},
                           model={"heads": 2, "init_scale": 1.0, "seed": 3})
    system = problem.system()
    eta, steps, checkpoints, seeds = 1.0, 120, [40, 80, 120], 16
    expected = iterate_gd(system, problem.start, eta, steps, n_out=steps + 1).state[checkpoints]
    expected = expected.reshape(len(checkpoints), 2, 3, 3)
    V = problem.features.V
    Vinv = np.linalg.inv(V)                                  # K = d: the heads' Q_h(0) from their scores
    Qs = Vinv @ problem.head_scores @ Vinv.T
    runs = np.array([train_sampled(V, problem.p, 1024, problem.function_class.sample_labels, Qs, eta, steps,
                                   batch=40, seed=seed, record_at=checkpoints)["S"] for seed in range(seeds)])
    mean, se = runs.mean(axis=0), runs.std(axis=0, ddof=1) / np.sqrt(seeds)
    assert np.all(np.abs(mean - expected) <= 4 * se)
    one_head = iterate_gd(problem.score_system(), problem.S0, eta, steps, n_out=steps + 1).S[checkpoints]
    effective = effective_scores(runs, problem.score_system().logp)
    se_effective = effective.std(axis=0, ddof=1) / np.sqrt(seeds)
    assert np.abs(one_head - effective_scores(expected, problem.score_system().logp)).max() > 10 * se_effective.max()


def test_problem_builds_the_heads_from_the_seeded_random_start():
    problem = make_problem(features={"K": 3}, model={"heads": 2, "init_scale": 0.5, "seed": 4})
    assert problem.heads == 2 and problem.start.shape == (2, 3, 3)
    assert isinstance(problem.system(), MultiHeadSystem)
    assert np.abs(problem.start[0] - problem.start[1]).max() > 0.1
    # The first head is the single-head random start of the same seed.
    one = make_problem(features={"K": 3}, model={"init_scale": 0.5, "seed": 4})
    assert np.array_equal(problem.start[0], one.S0) and one.heads == 1
    assert "2 heads" in problem.score_system_note()
    # The heads run the score system's kernel set: the generated one unless told otherwise.
    assert problem.system().kernels is problem.score_system().kernels is load_kernels(heads=True)
    hand = make_problem(features={"K": 3}, model={"heads": 2, "init_scale": 0.5}, training={"kernels": "hand-written"})
    assert hand.system().kernels is hand_written


@pytest.mark.parametrize("model, message", [
    ("heads = 0", "model.heads: expected an integer ≥ 1, got 0"),
    ("heads = 1e9", "model.heads: expected an integer, got 1000000000.0"),
    ("heads = 1000000000", "model.heads: expected an integer ≤ 64, got 1,000,000,000"),
    ('heads = "x"', "model.heads: expected an integer, got 'x'"),
    ("heads = 2", "model.init_scale: 2 heads need a random start (> 0): heads started equal get equal gradients "
                  "and stay identical"),
    ('heads = 2\ninit_scale = 0.1\nparametrization = "separate"', "model.heads: 2 heads are supported with "
                                                                  "model.parametrization = \"merged\" only"),
])
def test_bad_heads_give_one_line_and_status_2(tmp_path, capsys, model, message):
    path = tmp_path / "c.toml"
    path.write_text(f"[model]\n{model}\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err
    assert not (tmp_path / "out").exists()


def test_too_many_heads_for_memory_are_refused_before_allocation(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[model]\nheads = 64\ninit_scale = 0.1\n[features]\nK = 256\n[training]\nn_out = 400\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.heads: 64 heads of K² = 65536 scores" in err


def test_run_writes_the_heads_scores_and_their_specialisation(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[features]\nK = 3\n[model]\nheads = 2\ninit_scale = 0.5\n[training]\nt_end = 1e4\nn_out = 50\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet", "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "2 heads, outputs averaged" in out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    # The heads trained on the kernels printed from the indexed derivation, and the report says so.
    assert summary["kernels"]["set"] == "generated"
    assert summary["kernels"]["module"] == str(load_kernels(heads=True).path)
    assert "- kernels: generated" in out
    heads = summary["heads"]["flow"]
    assert summary["problem"]["heads"] == 2 and np.array(heads["final_head_attention"]).shape == (2, 3, 3)
    assert heads["specialisation_at_end"] < 0.05 * heads["specialisation_at_start"]     # measured: 0.011×
    with np.load(tmp_path / "out" / "trajectory.npz") as z:
        assert z["head_scores"].shape == (50, 18) and z["S"].shape == (50, 3, 3)
        np.testing.assert_allclose(np.array(summary["flow"]["final_attention"]),
                                   np.array(heads["final_head_attention"]).mean(axis=0), rtol=0, atol=1e-15)


def test_the_implicit_solvers_run_on_the_analytic_jacobian():
    """Radau with the heads' analytic Jacobian and DOP853 agree on the phase times (rtol 1e-10 runs, 1e-6)."""
    system, _ = _system(H=3, seed=9)
    start = 0.5 * np.random.default_rng(10).standard_normal((3, 3, 3))
    radau = integrate_flow(system, start, 1e4, method="Radau", rtol=1e-10, atol=1e-12, n_out=10)
    dop = integrate_flow(system, start, 1e4, method="DOP853", rtol=1e-10, atol=1e-12, n_out=10)
    assert radau.counters["njev"] > 0 and radau.status == dop.status == "finished"
    assert radau.crossings["t_half"] == pytest.approx(dop.crossings["t_half"], rel=1e-6)
    assert radau.crossings["t_loss"][1e-2] == pytest.approx(dop.crossings["t_loss"][1e-2], rel=1e-6)


# ---- finite prompts: the exact sum over the prompt's count vectors


def test_the_count_vectors_are_every_composition_with_its_multinomial_probability():
    p = np.array([0.5, 0.3, 0.2])
    weights, log_counts = prompt_counts(7, p)
    counts = np.exp(log_counts).round().astype(int)
    assert len(weights) == math.comb(9, 2) == len({tuple(c) for c in counts})
    assert sorted(map(tuple, counts)) == sorted(map(tuple, compositions(7, 3)))
    exact = [math.factorial(7) / math.prod(math.factorial(x) for x in c) * math.prod(p**c) for c in counts]
    # log-gammas: a relative error of a few 1e-16·N log N (measured: 1.8e-15)
    assert np.all(np.abs(weights - exact) <= 1e-14 * np.array(exact)) and abs(weights.sum() - 1) <= 1e-14
    assert np.all(np.isneginf(log_counts[counts == 0]))


@pytest.mark.parametrize("N", [1, 5, 16])
def test_one_head_at_finite_n_is_the_single_head_finite_prompt_model(N):
    """H = 1 summed over the count vectors against the single-head quadrature (solvers/finite_prompt.py):
    loss, gradient, Jacobian and expected attention to 1e-12 of their size (measured: at most 6e-15)."""
    system, _ = _system(K=4, d=5, H=1, seed=11, N=N)
    single = system.scores
    S = 1.5 * np.random.default_rng(12).standard_normal((1, 4, 4))
    value, Gamma = system.loss_and_gradient(S)
    assert abs(value - single.loss(S[0])) <= 1e-12 * value
    reference = single.gradient(S[0])
    scale = np.abs(reference).max() if N > 1 else 1.0          # one token: the gradient is zero
    assert np.abs(Gamma[0] - reference).max() <= 1e-12 * scale
    J, reference = system.flat_jacobian(S.ravel()), single.jacobian(S[0])
    assert np.abs(J - reference).max() <= 1e-12 * max(np.abs(reference).max(), 1.0 if N == 1 else 0.0)
    assert np.abs(system.flat_attention(S.ravel()) - single.attention(S[0])).max() <= 1e-12


def test_finite_n_gradient_and_jacobian_equal_finite_differences():
    system, _ = _system(K=3, d=4, H=3, seed=4, N=6)
    S = 1.5 * np.random.default_rng(5).standard_normal((3, 3, 3))
    y = S.ravel()
    Gamma = system.gradient(S)
    fd = central_differences(lambda x: np.array([system.flat_loss(x)]), y, rel_step=1e-6)[0]
    assert np.abs(fd - Gamma.ravel()).max() <= 1e-7 * np.abs(Gamma).max()
    J = system.flat_jacobian(y)
    ref = central_differences(system.flat_rhs, y, rel_step=1e-6)
    assert np.abs(J - ref).max() <= 1e-7 * np.abs(ref).max()
    dense = np.linalg.eigvals(-J)
    assert np.abs(dense.imag).max() < 1e-12 and system.largest_rate(S) == pytest.approx(dense.real.max(), rel=1e-10)
    # The compiled callbacks are the same sums.
    rhs, events, args, event_args, jac = system.callbacks()
    assert np.array_equal(rhs(y, *args), system.flat_rhs(y))
    assert np.array_equal(jac(y, *args), J)
    assert events(y, *event_args) == system.flat_event_values(y)


def _sampled_prompts(system, S, N, samples, seed, include_query=False):
    """Brute force: per sampled prompt (query k ~ p, counts c ~ Multinomial(N, p)) the H-head loss
    ½ (ā − e_k)ᵀ F (ā − e_k) through M⁽ᵏ⁾ and its gradient in each head's column k, as (samples, …) arrays.

    With include_query the query token (logit S^h[k, k], value 0) is a (K+1)-th entry of every head's
    softmax, M⁽ᵏ⁾ the (K+1)×(K+1) matrix, and its gradient entry is added to S^h[k, k]'s directly."""
    rng = np.random.default_rng(seed)
    H, K = S.shape[:2]
    p = system.scores.p
    rows = np.arange(samples)
    query = rng.choice(K, size=samples, p=p)
    counts = rng.multinomial(N, p, size=samples)
    with np.errstate(divide="ignore"):
        logits = np.log(counts)[:, None, :] + S[:, :, query].transpose(2, 0, 1)     # (samples, H, K)
    if include_query:
        own = S[:, query, query].T                                                  # (samples, H): S^h[k, k]
        logits = np.concatenate([logits, own[:, :, None]], axis=2)
    a = np.exp(log_softmax(logits, axis=2))
    abar = a.mean(axis=1)
    Ms = label_gap_stack(system.scores.F, include_query)
    u = np.einsum("snm,sm->sn", Ms[query], abar)
    losses = 0.5 * np.einsum("sn,sn->s", abar, u)
    g = a * (u[:, None, :] - np.einsum("shn,sn->sh", a, u)[:, :, None]) / H
    if include_query:
        g[rows, :, query] += g[:, :, K]
        g = g[:, :, :K]
    gradients = np.zeros((samples, H, K, K))
    gradients[rows, :, :, query] = g
    return losses, gradients


def test_the_sum_over_count_vectors_equals_sampled_prompts():
    """Loss and every gradient entry within 4 standard errors of 400 000 sampled prompts (measured: 0.4 and at
    most 2.4), while the N = ∞ loss is more than 10 away (measured: 129)."""
    system, _ = _system(K=3, d=4, H=2, seed=13, N=5)
    S = 1.5 * np.random.default_rng(14).standard_normal((2, 3, 3))
    value, Gamma = system.loss_and_gradient(S)
    losses, gradients = _sampled_prompts(system, S, 5, 400_000, seed=15)
    n = len(losses)
    assert abs(losses.mean() - value) <= 4 * losses.std(ddof=1) / np.sqrt(n)
    se = gradients.std(axis=0, ddof=1) / np.sqrt(n)
    assert np.all(np.abs(gradients.mean(axis=0) - Gamma) <= 4 * se)
    # The large-prompt model is far: the finite N is what the samples see.
    far = MultiHeadSystem(ScoreSystem(system.scores.G, system.scores.F, system.scores.p), 2)
    assert abs(losses.mean() - far.loss(S)) > 10 * losses.std(ddof=1) / np.sqrt(n)


@pytest.mark.slow
@pytest.mark.parametrize("include_query", [False, True])
def test_sampled_training_of_two_heads_at_finite_n_tracks_the_head_score_gd(include_query):
    """The real two-head network trained on sampled prompts of N = 8 tokens (with include_query the query token,
    value 0, in both heads' softmaxes), 40 prompts a step, 120 steps, 32 seeds: each head's scores within 4
    standard errors of the two-head finite-N score GD at every checkpoint (measured: at most 1.2 SE without the
    query, 1.2 with it), while the single-head finite-N GD from the same mean attention is more than 10
    standard errors away (measured: 40; with the query 57) and so is the two-head GD of the other
    model: N = ∞ without the query (measured: 46), the same N without the query with it (measured: 44)."""
    sections = dict(features={"kind": "random-unit", "K": 3, "d": 3, "seed": 5}, task={"kind": "linear"},
                    model={"heads": 2, "init_scale": 1.0, "seed": 3}, training={"kernels": "hand-written"})
    problem = make_problem(prompt={"N": 8, "include_query": include_query}, **sections)
    eta, steps, checkpoints, seeds = 1.0, 120, [40, 80, 120], 32
    expected = iterate_gd(problem.system(), problem.start, eta, steps, n_out=steps + 1).state[checkpoints]
    expected = expected.reshape(len(checkpoints), 2, 3, 3)
    V = problem.features.V
    Vinv = np.linalg.inv(V)                                  # K = d: the heads' Q_h(0) from their scores
    Qs = Vinv @ problem.head_scores @ Vinv.T
    runs = np.array([train_sampled(V, problem.p, 8, problem.function_class.sample_labels, Qs, eta, steps,
                                   batch=40, seed=seed, record_at=checkpoints, include_query=include_query)["S"]
                     for seed in range(seeds)])
    mean, se = runs.mean(axis=0), runs.std(axis=0, ddof=1) / np.sqrt(seeds)
    assert np.all(np.abs(mean - expected) <= 4 * se)
    other = make_problem(prompt={"N": 8}, **sections) if include_query else make_problem(**sections)
    expected_other = iterate_gd(other.system(), other.start, eta, steps, n_out=steps + 1).state[checkpoints]
    assert np.abs(mean - expected_other.reshape(expected.shape)).max() > 10 * se.max()
    logp = problem.score_system().logp
    one_head = iterate_gd(problem.score_system(), problem.S0, eta, steps, n_out=steps + 1).S[checkpoints]
    se_effective = effective_scores(runs, logp).std(axis=0, ddof=1) / np.sqrt(seeds)
    assert np.abs(one_head - effective_scores(expected, logp)).max() > 10 * se_effective.max()


def test_run_of_two_heads_at_finite_n_writes_its_summary(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[features]\nK = 3\n[model]\nheads = 2\ninit_scale = 0.5\n[prompt]\nN = 16\n"
                    "[training]\nn_out = 50\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet", "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "2 heads, outputs averaged" in out and "exact sum over 153 count vectors" in out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["problem"]["heads"] == 2 and summary["problem"]["N"] == 16
    prompt = summary["finite_prompt"]
    assert prompt["count_vectors"] == 153 and prompt["quadrature_error_at_end"] == 0.0     # C(18, 2): no quadrature
    approach = prompt["approach_to_large_prompt_limit"]["at_end"]
    assert approach["N"] == [16, 32, 64, 128] and approach["loss_gap"][-1] < approach["loss_gap"][0]
    assert summary["flow"]["status"] == "finished" and summary["flow"]["counters"]["njev"] > 0     # auto: Rodas4P2
    problem = make_problem(features={"K": 3}, model={"heads": 2, "init_scale": 0.5}, prompt={"N": 16})
    with np.load(tmp_path / "out" / "trajectory.npz") as z:
        states, loss = z["head_scores"], z["loss"]
    assert loss[-1] == problem.system().flat_loss(states[-1]) and loss[-1] < 0.01 * loss[0]
    np.testing.assert_allclose(np.array(summary["flow"]["final_attention"]),
                               np.array(summary["heads"]["flow"]["final_head_attention"]).mean(axis=0), atol=1e-15)


def test_too_many_count_vectors_are_refused_with_one_line(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[features]\nK = 4\n[model]\nheads = 2\ninit_scale = 0.5\n[prompt]\nN = 200\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()
    assert err.startswith("error: prompt.N: ") and "C(N+K−1, K−1) = 1,373,701" in err and "at most 250,000" in err
    path.write_text("[features]\nK = 256\n[model]\nheads = 2\ninit_scale = 0.5\n[prompt]\nN = 1000000000\n"
                    "[training]\nmode = \"gd\"\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "C(N+K−1, K−1) = about 10^" in err
    V, F, p = random_system_arrays(4, 4, seed=0)
    with pytest.raises(ValueError, match="^N: .* at most 250,000"):
        MultiHeadSystem(ScoreSystem(V @ V.T, F, p, N=200), 2)
    assert composition_limit(4) == 250_000 and math.comb(200 + 3, 3) > composition_limit(4) > math.comb(112 + 3, 3)
    assert config.MAX_COMPOSITION_ENTRIES == multihead.MAX_COMPOSITION_ENTRIES     # the documented bound is the solver's


def test_the_quadrature_step_is_inert_for_several_heads_at_finite_n():
    """Several heads sum over the count vectors exactly: prompt.quadrature_step is accepted and said to do nothing."""
    def notes(heads):
        return config.inert_settings(config.from_dict({"model": {"heads": heads, "init_scale": 0.5},
                                                       "prompt": {"N": 8, "quadrature_step": 0.1}}))
    assert any(note.startswith("prompt.quadrature_step has no effect at N = inf or with several heads") for note in notes(2))
    assert not notes(1)


def test_two_heads_reach_a_lower_loss_floor_than_one_at_finite_n():
    """K = 3, N = 4 (docs/findings.md): the flow's floor is 0.0420796 with two heads against 0.0437628 with one,
    from either seed, and the heads end specialised (index 0.173): when the query's feature is absent each head
    commits to a different other feature, so their mean weighs the features present equally."""
    finals = {}
    for heads, seed in [(1, 0), (2, 0), (2, 1)]:
        problem = make_problem(features={"K": 3}, prompt={"N": 4}, training={"kernels": "hand-written"},
                               model={"heads": heads, "init_scale": 0.5, "seed": seed})
        flow = integrate_flow(problem.system(), problem.start, 1e8, n_out=5)
        assert flow.status == "finished"
        finals[heads, seed] = flow.loss[-1]
        if heads > 1:
            assert specialisation_index(problem.system().head_attention(flow.state[-1])) == pytest.approx(0.1728, abs=1e-3)
    assert finals[1, 0] == pytest.approx(0.0437628, rel=1e-5)
    assert finals[2, 0] == pytest.approx(0.0420796, rel=1e-5) == finals[2, 1]


# ---- the generated kernel set: the multi-head columns printed from the indexed derivation


# A prompt length per K within the enumeration cap (C(N+K−1, K−1)·K ≤ 10⁶ and cheap).
FINITE_N = {2: 7, 4: 5, 8: 3, 16: 2, 32: 2}


@pytest.mark.parametrize("K", [2, 4, 8, 16, 32])
@pytest.mark.parametrize("H", [2, 3])
def test_generated_multihead_kernels_equal_the_hand_written_ones(K, H):
    """The generated set against the hand-written one at N = ∞ and a finite N, scores up to near one-hot
    attention: loss, Γ^h, Hessian blocks, rhs, Jacobian, events, attention and the four column functions
    themselves, each within 1e-12 of its size."""
    generated = load_kernels(K, heads=True)
    V, F, p = random_system_arrays(K, min(K, 4), seed=K + H)
    rng = np.random.default_rng(100 * K + H)
    for N in (np.inf, FINITE_N[K]):
        gen = MultiHeadSystem(ScoreSystem(V @ V.T, F, p, kernels=generated, N=N), H, kernels=generated)
        hand = MultiHeadSystem(ScoreSystem(V @ V.T, F, p, kernels=hand_written, N=N), H)
        for scale in (0.3, 3.0, 15.0):
            S = scale * rng.standard_normal((H, K, K))
            y = S.ravel()
            (value, Gamma), (ref_value, ref_Gamma) = gen.loss_and_gradient(S), hand.loss_and_gradient(S)
            assert value == pytest.approx(ref_value, rel=1e-12)
            pairs = {"gradient": (Gamma, ref_Gamma), "hessians": (gen.hessians(S), hand.hessians(S)),
                     "attention": (gen.head_attention(y), hand.head_attention(y))}
            (rhs, events, args, event_args, jac), reference = gen.callbacks(), hand.callbacks()
            pairs["rhs"] = rhs(y, *args), reference[0](y, *reference[2])
            if K <= 16 or H == 2:                 # the dense Jacobian has (HK²)² entries
                pairs["jacobian"] = jac(y, *args), reference[4](y, *reference[2])
            for name, (x, ref) in pairs.items():
                assert np.abs(x - ref).max() <= 1e-12 * np.abs(ref).max(), (name, N, scale)
            gap, log_loss = events(y, *event_args)
            ref_gap, ref_log_loss = reference[1](y, *reference[3])
            assert gap == pytest.approx(ref_gap, rel=1e-12, abs=1e-14) and log_loss == pytest.approx(ref_log_loss, rel=1e-12)
            assert gen.kernels is generated and hand.kernels is hand_written
    # The column functions at moderate scores (saturated ones: the next test), the last head's
    # attention of the first query and ā of all heads.
    S = 0.3 * rng.standard_normal((H, K, K))
    A = np.empty((H, K))
    for h in range(H):
        hand_written.column_attention(S[h, :, 0].copy(), np.log(p), A[h])
    abar, M = A.mean(axis=0), gen.scores.Ms[0]
    u, ref_u = np.empty(K), np.empty(K)
    work = np.empty((2, K))
    assert generated.mean_column_loss(abar, M, u, work) == pytest.approx(
        hand_written.mean_column_loss(abar, M, ref_u, work), rel=1e-12)
    outputs = {}
    for kernel_set in (generated, hand_written):
        g, B, C = np.empty(K), np.empty((K, K)), np.empty((K, K))
        kernel_set.head_column_gradient(A[-1], ref_u, H, g)
        kernel_set.head_column_cross_hessian(A[-1], A[0], M, H, B, work)
        kernel_set.head_column_hessian_correction(A[-1], ref_u, H, C)
        outputs[kernel_set] = (g, B, C)
    assert np.abs(u - ref_u).max() <= 1e-12 * np.abs(ref_u).max()
    for x, ref in zip(outputs[generated], outputs[hand_written]):
        assert np.abs(x - ref).max() <= 1e-12 * np.abs(ref).max()


@pytest.mark.parametrize("K, H", [(4, 2), (8, 3)])
def test_the_generated_cross_block_is_as_accurate_as_the_hand_written_one(K, H):
    """D^a M D^b / H² at attention from uniform to saturated (scores up to 40), against a 50-digit evaluation:
    both sets within 1e-15·max|M| absolute, and the generated error at most 8× the hand-written one plus
    1e-15 of the block (measured: at most 2.6×).  The printed grouping (M_ij − (aᵀM)_j) −
    Σ_m (M_im − (aᵀM)_m) b_m is the hand-written one's; the expanded M_ij − (aᵀM)_j − (Mb)_i + aᵀMb
    fails here (errors 40× to 10²² the reference's at saturated attention)."""
    import mpmath

    generated = load_kernels(K, heads=True)
    V, F, p = random_system_arrays(K, 4, seed=K + H)
    Ms = ScoreSystem(V @ V.T, F, p).Ms
    rng = np.random.default_rng(K * H)
    with mpmath.workdps(50):
        for scale in (0.3, 3.0, 15.0, 40.0):
            for q in (0, K - 1):
                A = np.empty((2, K))
                for h in range(2):
                    hand_written.column_attention(scale * rng.standard_normal(K), np.log(p), A[h])
                a, b = ([mpmath.mpf(x) for x in row] for row in A)
                Da = [[(a[i] if i == j else 0) - a[i] * a[j] for j in range(K)] for i in range(K)]
                Db = [[(b[i] if i == j else 0) - b[i] * b[j] for j in range(K)] for i in range(K)]
                Mq = [[mpmath.mpf(x) for x in row] for row in Ms[q]]
                exact = np.array([[float(mpmath.fsum(Da[i][n] * Mq[n][m] * Db[m][j] for n in range(K) for m in range(K))
                                         / H**2) for j in range(K)] for i in range(K)])
                errors = []
                for kernel_set in (generated, hand_written):
                    B = np.empty((K, K))
                    kernel_set.head_column_cross_hessian(A[0], A[1], Ms[q], H, B, np.empty((2, K)))
                    errors.append(np.abs(B - exact).max())
                    assert errors[-1] <= 1e-15 * np.abs(Ms[q]).max(), (kernel_set.NAME, scale, q)
                assert errors[0] <= 8 * errors[1] + 1e-15 * np.abs(exact).max(), (scale, q, errors)


def test_the_generated_set_trains_two_heads_like_the_hand_written_one():
    """GD and the stiff flow (analytic Jacobian) of two heads on either set: the same trajectories to 1e-10."""
    generated = load_kernels(3, heads=True)
    V, F, p = random_system_arrays(3, 4, seed=21)
    gen = MultiHeadSystem(ScoreSystem(V @ V.T, F, p, kernels=generated), 2, kernels=generated)
    hand = MultiHeadSystem(ScoreSystem(V @ V.T, F, p), 2)
    start = 0.5 * np.random.default_rng(22).standard_normal((2, 3, 3))
    a, b = (iterate_gd(system, start, 0.5, 200, n_out=20) for system in (gen, hand))
    assert np.abs(a.state - b.state).max() <= 1e-10 * np.abs(b.state).max()
    a, b = (integrate_flow(system, start, 1e3, method="Radau", rtol=1e-10, atol=1e-12, n_out=10) for system in (gen, hand))
    assert a.counters["njev"] > 0 and np.abs(a.state - b.state).max() <= 1e-8 * np.abs(b.state).max()


# ---- the query token in every head's softmax at finite N


@pytest.mark.parametrize("N", [1, 3, 6])
def test_one_head_with_the_query_is_the_single_head_query_model(N):
    """H = 1 with the query token in the softmax, summed over the count vectors, against the single-head
    quadrature with the query (ScoreSystem(..., include_query=True)): loss, gradient, Jacobian, attention
    on the features and the events' gap to 1e-12 of their size."""
    system, _ = _system(K=4, d=5, H=1, seed=31, N=N, include_query=True)
    single = system.scores
    assert single.query_in_softmax and single.Ms.shape == (4, 5, 5)
    S = 1.5 * np.random.default_rng(32).standard_normal((1, 4, 4))
    y = S.ravel()
    value, Gamma = system.loss_and_gradient(S)
    assert abs(value - single.loss(S[0])) <= 1e-12 * value
    reference = single.gradient(S[0])
    assert np.abs(Gamma[0] - reference).max() <= 1e-12 * np.abs(reference).max()
    J, reference = system.flat_jacobian(y), single.jacobian(S[0])
    assert np.abs(J - reference).max() <= 1e-12 * np.abs(reference).max()
    A = system.flat_attention(y)
    assert np.abs(A - single.attention(S[0])).max() <= 1e-12
    assert np.all(A.sum(axis=0) < 1 - 0.01)              # the query token's own share is left out
    (gap, log_loss), (ref_gap, ref_log_loss) = system.flat_event_values(y), single.flat_event_values(y)
    assert gap == pytest.approx(ref_gap, rel=1e-12) and log_loss == pytest.approx(ref_log_loss, rel=1e-12)
    # Without the query the model is another one.
    without, _ = _system(K=4, d=5, H=1, seed=31, N=N)
    assert abs(without.loss(S) - value) > 1e-3 * value


def test_gradient_and_hessian_blocks_with_the_query_equal_finite_differences():
    """Central differences of the loss give Γ^h, and of Γ^h the Hessian blocks (zero across queries), to 1e-7;
    the compiled callbacks are the same sums and the Lanczos rate is the dense −J's largest eigenvalue."""
    H, K = 3, 3
    system, _ = _system(K=K, d=4, H=H, seed=33, N=4, include_query=True)
    S = 1.5 * np.random.default_rng(34).standard_normal((H, K, K))
    y = S.ravel()
    Gamma = system.gradient(S)
    fd = central_differences(lambda x: np.array([system.flat_loss(x)]), y, rel_step=1e-6)[0]
    assert np.abs(fd - Gamma.ravel()).max() <= 1e-7 * np.abs(Gamma).max()
    # d Γ^h[n, k] / d S^{h'}[m, j]: the column Hessians for j = k, zero otherwise
    dGamma = central_differences(lambda x: system.gradient(x.reshape(H, K, K)).ravel(), y, rel_step=1e-6)
    dGamma = dGamma.reshape(H, K, K, H, K, K)
    Hs = system.hessians(S)
    expected = np.zeros_like(dGamma)
    for k in range(K):
        expected[:, :, k, :, :, k] = Hs[k]
    assert np.abs(dGamma - expected).max() <= 1e-7 * np.abs(Hs).max()
    assert np.abs(Hs - Hs.transpose(0, 3, 4, 1, 2)).max() <= 1e-15 * np.abs(Hs).max()
    J = system.flat_jacobian(y)
    dense = np.linalg.eigvals(-J)
    assert np.abs(dense.imag).max() < 1e-12 and system.largest_rate(S) == pytest.approx(dense.real.max(), rel=1e-10)
    rhs, events, args, event_args, jac = system.callbacks()
    assert np.array_equal(rhs(y, *args), system.flat_rhs(y))
    assert np.array_equal(jac(y, *args), J)
    assert events(y, *event_args) == system.flat_event_values(y)


@pytest.mark.parametrize("include_query, N, seed", [(False, 8, 16), (True, 6, 35)], ids=["N8", "N6-query"])
def test_identical_heads_at_finite_n_are_one_head_slowed_down_by_h(include_query, N, seed):
    """H equal heads at a finite N, with and without the query in the softmax: H-head GD with step η is
    the single-head finite-prompt GD (quadrature) with step η/H to 1e-12 of the scores (measured: 3e-16
    without the query), and the H-head flow at t is the one-head flow at t/H (rtol 1e-10 runs: states to
    1e-10, measured 3e-13; half-attention times to 1e-9, measured 5e-12)."""
    H = 3
    system, _ = _system(K=3, d=4, H=H, seed=seed, N=N, include_query=include_query)
    S0 = np.random.default_rng(seed + 1).standard_normal((3, 3))
    gd = iterate_gd(system, np.stack([S0] * H), 0.6, 300, n_out=30)
    one = iterate_gd(system.scores, S0, 0.6 / H, 300, n_out=30)
    heads = gd.state.reshape(len(gd.state), H, 3, 3)
    assert np.array_equal(heads[:, 0], heads[:, 1]) and np.array_equal(heads[:, 0], heads[:, 2])
    assert np.abs(heads[:, 0] - one.S).max() <= 1e-12 * np.abs(one.S).max()
    flow = integrate_flow(system, np.stack([S0] * H), 3e3, method="DOP853-compiled", rtol=1e-10, atol=1e-12, n_out=10)
    reference = integrate_flow(system.scores, S0, 1e3, method="DOP853-compiled", rtol=1e-10, atol=1e-12, n_out=10)
    assert np.abs(flow.state[-1].reshape(H, 3, 3) - reference.S[-1]).max() <= 1e-10 * np.abs(reference.S[-1]).max()
    if include_query:
        # the query token's share keeps min_k A_kk below 1/2: no crossing time to compare
        assert flow.crossings["t_half"] is None is reference.crossings["t_half"]
    else:
        assert flow.crossings["t_half"] == pytest.approx(H * reference.crossings["t_half"], rel=1e-9)


def test_the_sum_over_count_vectors_with_the_query_equals_sampled_prompts():
    """Loss and every gradient entry within 4 standard errors of 400 000 sampled prompts with the query token in
    both heads' softmaxes (measured: 0.5 and at most 2.3), while the gradient of the two heads without the
    query is more than 10 away (measured: 229; its loss 7)."""
    system, _ = _system(K=3, d=4, H=2, seed=13, N=5, include_query=True)
    S = 1.5 * np.random.default_rng(14).standard_normal((2, 3, 3))
    value, Gamma = system.loss_and_gradient(S)
    losses, gradients = _sampled_prompts(system, S, 5, 400_000, seed=15, include_query=True)
    n = len(losses)
    se_loss = losses.std(ddof=1) / np.sqrt(n)
    assert abs(losses.mean() - value) <= 4 * se_loss
    se = gradients.std(axis=0, ddof=1) / np.sqrt(n)
    assert np.all(np.abs(gradients.mean(axis=0) - Gamma) <= 4 * se)
    without, _ = _system(K=3, d=4, H=2, seed=13, N=5)
    assert np.abs(gradients.mean(axis=0) - without.gradient(S)).max() > 10 * se.max()


@pytest.mark.parametrize("K", [2, 4])
@pytest.mark.parametrize("H", [2, 3])
def test_generated_multihead_kernels_with_the_query_equal_the_hand_written_ones(K, H):
    """The query token in the softmax at a finite N, scores up to near one-hot attention: the generated set's
    loss, Γ^h, Hessian blocks, attention, rhs, Jacobian and events within 1e-12 of the hand-written set's."""
    generated = load_kernels(K, heads=True)
    V, F, p = random_system_arrays(K, min(K, 4), seed=K + H + 40)
    rng = np.random.default_rng(100 * K + H + 40)
    N = FINITE_N[K]
    gen = MultiHeadSystem(ScoreSystem(V @ V.T, F, p, kernels=generated, N=N, include_query=True), H, kernels=generated)
    hand = MultiHeadSystem(ScoreSystem(V @ V.T, F, p, kernels=hand_written, N=N, include_query=True), H)
    for scale in (0.3, 3.0, 15.0):
        S = scale * rng.standard_normal((H, K, K))
        y = S.ravel()
        (value, Gamma), (ref_value, ref_Gamma) = gen.loss_and_gradient(S), hand.loss_and_gradient(S)
        assert value == pytest.approx(ref_value, rel=1e-12)
        (rhs, events, args, event_args, jac), reference = gen.callbacks(), hand.callbacks()
        pairs = {"gradient": (Gamma, ref_Gamma), "hessians": (gen.hessians(S), hand.hessians(S)),
                 "attention": (gen.head_attention(y), hand.head_attention(y)),
                 "rhs": (rhs(y, *args), reference[0](y, *reference[2])),
                 "jacobian": (jac(y, *args), reference[4](y, *reference[2]))}
        for name, (x, ref) in pairs.items():
            assert np.abs(x - ref).max() <= 1e-12 * np.abs(ref).max(), (name, scale)
        gap, log_loss = events(y, *event_args)
        ref_gap, ref_log_loss = reference[1](y, *reference[3])
        assert gap == pytest.approx(ref_gap, rel=1e-12, abs=1e-14) and log_loss == pytest.approx(ref_log_loss, rel=1e-12)


def test_run_of_two_heads_with_the_query_writes_its_summary(tmp_path, capsys):
    """The config takes several heads with the query in the softmax, and `attnflow run` trains them end to end."""
    path = tmp_path / "c.toml"
    path.write_text("[features]\nK = 3\n[model]\nheads = 2\ninit_scale = 0.5\n[prompt]\nN = 6\ninclude_query = true\n"
                    "[training]\nn_out = 40\nt_end = 1e4\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet", "--no-plots"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["problem"]["heads"] == 2 and summary["problem"]["include_query"] is True
    assert summary["problem"]["query_in_softmax"] is True and summary["finite_prompt"]["count_vectors"] == 28
    assert summary["flow"]["status"] == "finished"
    problem = make_problem(features={"K": 3}, model={"heads": 2, "init_scale": 0.5},
                           prompt={"N": 6, "include_query": True})
    system = problem.system()
    assert system.scores.query_in_softmax
    with np.load(tmp_path / "out" / "trajectory.npz") as z:
        states, loss = z["head_scores"], z["loss"]
    assert loss[-1] == system.flat_loss(states[-1]) and loss[-1] < 0.5 * loss[0]
    final = np.array(summary["flow"]["final_attention"])
    np.testing.assert_allclose(final, np.array(summary["heads"]["flow"]["final_head_attention"]).mean(axis=0),
                               atol=1e-15)
    assert np.all(final.sum(axis=0) < 1)                 # the query token keeps a share of every softmax
    # the query changes the dynamics: the two heads without it end elsewhere
    without = make_problem(features={"K": 3}, model={"heads": 2, "init_scale": 0.5}, prompt={"N": 6}).system()
    assert abs(without.flat_loss(states[-1]) - loss[-1]) > 1e-3 * loss[-1]


def test_too_many_count_vectors_with_the_query_are_refused_with_one_line(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[features]\nK = 4\n[model]\nheads = 2\ninit_scale = 0.5\n[prompt]\nN = 200\ninclude_query = true\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()
    assert err.startswith("error: prompt.N: ") and "C(N+K−1, K−1) = 1,373,701" in err
