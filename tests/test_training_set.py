"""Finite training sets (``training.prompts``): the empirical loss, its derivatives and dynamics."""

import numpy as np
import pytest

from attnflow.dynamics.cli import main
from attnflow.dynamics.commands.sweep import read_table
from attnflow.dynamics.problem import config
from attnflow.dynamics.problem import function_classes as fc
from attnflow.dynamics.problem.training_set import draw_training_set
from attnflow.solvers import ScoreSystem, integrate_flow, kernels as hand_written
from attnflow.solvers.gd import iterate_gd
from attnflow.solvers.references.sampled import batch_loss_and_gradient
from attnflow.solvers.training_set import TrainingSetSystem, population_crossings

from .conftest import central_differences, make_problem

# p with small denominators: at N = ∞ a prompt's context is then 4 tokens in these
# proportions, so the token-level network can be built with whole tokens.
P_QUARTERS = np.array([0.5, 0.25, 0.25])
COPIES = np.array([2, 1, 1])

CASES = {"large prompt": (np.inf, False), "N = 5": (5, False), "N = 5 with the query": (5, True)}


def _system(N, include_query, M, seed, K=3, d=4, p=P_QUARTERS):
    """A training-set system on random non-orthonormal features and Gaussian labels (given moments)."""
    rng = np.random.default_rng(100 + seed)
    V = rng.standard_normal((K, d))
    W = rng.standard_normal((K, K + 1))
    F = W @ W.T / K
    population = ScoreSystem(V @ V.T, F, p, kernels=hand_written, N=N, include_query=include_query)
    query, log_weights, labels = draw_training_set(V, fc.GivenMoments(F), p, N, M, seed)
    return V, TrainingSetSystem(population, query, log_weights, labels)


def _token_level(V, system, Q):
    """Loss and ∇_Q of the network itself on the same prompts: tokens x_i = v_{n_i} in d dimensions."""
    K = system.K
    N = system.population.N
    X, y, xq, yq = [], [], [], []
    for k, b, f in zip(system.query, system.log_weights, system.labels):
        counts = COPIES if np.isinf(N) else np.round(np.exp(b)).astype(int)     # exp(−inf) = 0
        features = np.repeat(np.arange(K), counts)
        tokens, values = list(V[features]), list(f[features])
        if system.population.query_in_softmax:
            tokens.append(V[k])                        # the query token, value 0
            values.append(0.0)
        X.append(tokens), y.append(values), xq.append(V[k]), yq.append(f[k])
    return batch_loss_and_gradient(Q, np.array(X), np.array(y), np.array(xq), np.array(yq))


@pytest.mark.parametrize("case", CASES)
def test_loss_and_gradient_equal_the_token_level_network(case):
    N, include_query = CASES[case]
    V, system = _system(N, include_query, M=40, seed=1)
    rng = np.random.default_rng(7)
    Q = rng.standard_normal((4, 4))
    S = V @ Q @ V.T
    loss, Gamma = system.loss_and_gradient(S)
    token_loss, token_grad = _token_level(V, system, Q)
    assert abs(loss - token_loss) <= 1e-12 * token_loss
    assert np.abs(V.T @ Gamma @ V - token_grad).max() <= 1e-12 * np.abs(token_grad).max()
    # The compiled pass's attention gap is the NumPy attention's: 1 − A_kk is the rest of column k
    # (with the query token in the softmax, its share included).
    gap, log_loss = system.flat_event_values(S.ravel())
    rest = 1 - np.diag(system.attention(S))
    assert abs(np.exp(gap) - rest.max()) <= 1e-13 and abs(np.exp(log_loss) / loss - 1) <= 1e-14


@pytest.mark.parametrize("case", CASES)
def test_gradient_hessians_and_jacobian_equal_central_differences(case):
    N, include_query = CASES[case]
    V, system = _system(N, include_query, M=30, seed=2)
    K = system.K
    y = np.random.default_rng(3).standard_normal(K * K)
    # Gradient: central differences of the loss (error O(h²) ≈ 1e-10).
    fd_grad = central_differences(lambda z: np.array([system.flat_loss(z)]), y)[0]
    assert np.abs(system.gradient(y.reshape(K, K)).ravel() - fd_grad).max() <= 1e-8
    # Column Hessians: central differences of Γ's columns in their own scores.
    Hs = system.hessians(y.reshape(K, K))
    fd = central_differences(lambda z: system.gradient(z.reshape(K, K)).ravel(), y)
    for k in range(K):
        cols = [n * K + k for n in range(K)]
        assert np.abs(Hs[k] - fd[np.ix_(cols, cols)]).max() <= 1e-8
    # Γ's column k depends on no other column: the rest of the finite-difference matrix is zero.
    mask = np.ones((K * K, K * K), dtype=bool)
    for k in range(K):
        cols = [n * K + k for n in range(K)]
        mask[np.ix_(cols, cols)] = False
    assert np.abs(fd[mask]).max() <= 1e-9
    J = system.flat_jacobian(y)
    assert np.abs(J - central_differences(system.flat_rhs, y)).max() <= 1e-8 * max(1.0, np.abs(J).max())


@pytest.mark.parametrize("case", CASES)
def test_compiled_callbacks_equal_the_numpy_flat_methods_and_central_differences(case):
    """The integrators' rhs, events and Jacobian (compiled, on the packed arrays) against the flat
    NumPy methods, and the compiled Jacobian against central differences of the compiled rhs."""
    N, include_query = CASES[case]
    V, system = _system(N, include_query, M=40, seed=8)
    rhs, events, args, event_args, jac = system.callbacks()
    for y in np.random.default_rng(9).standard_normal((3, 9)) * [[0.3], [1.0], [4.0]]:
        dy = system.flat_rhs(y)
        assert np.abs(rhs(y, *args) - dy).max() <= 1e-12 * np.abs(dy).max()
        assert np.allclose(events(y, *event_args), system.flat_event_values(y), rtol=1e-12, atol=0)
        J = jac(y, *args)
        assert np.abs(J - system.flat_jacobian(y)).max() <= 1e-12 * np.abs(J).max()
        fd = central_differences(lambda z: rhs(z, *args), y)
        assert np.abs(J - fd).max() <= 1e-7 * max(1.0, np.abs(J).max())
    step, gd_args, _ = system.gd_callback()
    assert gd_args is args                                  # GD takes the same packed arrays


@pytest.mark.parametrize("N", [np.inf, 4])
def test_compiled_flows_equal_radau_on_the_whole_grid_and_run_in_the_score_loops(N):
    """DOP853-compiled and Rodas4P2-compiled on a training set against solve_ivp's Radau (analytic
    Jacobian, rtol 1e-12) at every output point, crossing times to 1e-8; after a score run at a finite
    prompt with each method neither compiles a loop of its own (the packed arrays have the types of a
    finite prompt's score flow, whatever the training set's N), nor GD."""
    from scipy.integrate import solve_ivp

    from attnflow.solvers import gd, integrator, rosenbrock
    from attnflow.solvers.flow import auto_method

    V, system = _system(N, False, M=50, seed=5)
    assert auto_method(system) == ("DOP853-compiled" if np.isinf(N) else "Rodas4P2-compiled")
    S0, t_end = np.zeros((3, 3)), 200.0
    radau = integrate_flow(system, S0, t_end, "Radau", rtol=1e-12, atol=1e-14, n_out=30)
    pop = system.population
    finite_scores = ScoreSystem(pop.G, pop.F, pop.p, kernels=pop.kernels, N=4)
    iterate_gd(finite_scores, S0, 0.1, 3)
    gd_before = gd.dispatchers()
    for method, loops in (("DOP853-compiled", integrator.dispatchers), ("Rodas4P2-compiled", rosenbrock.dispatchers)):
        integrate_flow(finite_scores, S0, 10.0, method=method, n_out=5)
        before = loops()
        tr = integrate_flow(system, S0, t_end, method, rtol=1e-12, atol=1e-14, n_out=30)
        assert loops() == before
        assert tr.status in ("finished", "t_end") and tr.message.startswith("reached t_end")
        reference = solve_ivp(lambda t, y: system.flat_rhs(y), (0.0, t_end), S0.ravel(), method="Radau",
                              t_eval=tr.t, rtol=1e-12, atol=1e-14, jac=lambda t, y: system.flat_jacobian(y))
        S_ref = reference.y.T.reshape(-1, 3, 3)
        assert np.abs(tr.S - S_ref).max() <= 1e-8 * max(1.0, np.abs(S_ref).max()), method
        assert np.abs(tr.loss / [system.loss(S) for S in S_ref] - 1).max() <= 1e-8
        assert tr.crossings["t_half"] is not None
        pairs = [(tr.crossings["t_half"], radau.crossings["t_half"])]
        pairs += [(tr.crossings[k][e], radau.crossings[k][e]) for k in ("t_attention", "t_loss")
                  for e in radau.crossings[k]]
        for got, want in pairs:
            assert (got is None) == (want is None) and (got is None or abs(got / want - 1) <= 1e-8), (method, pairs)
    iterate_gd(system, S0, 0.1, 3)
    assert gd.dispatchers() == gd_before


def test_training_flow_approaches_the_population_flow_at_the_monte_carlo_rate():
    """‖S_M(t) − S(t)‖ at t = 20, averaged over 32 seeds: log-log slope in M within 0.15 of −1/2.

    (6 seeds gave slopes from −0.55 to −0.70 by the seeds chosen: the mean of a few
    distances is too noisy for the rate.)"""
    K, t = 3, 20.0
    V = np.eye(K)
    klass = fc.SingleIndex(2.0, "sin")
    p = np.full(K, 1 / K)
    population = ScoreSystem(V @ V.T, klass.moments(V, "auto", 1000, 0).F, p, kernels=hand_written)
    exact = integrate_flow(population, np.zeros((K, K)), t, "DOP853", rtol=1e-10, atol=1e-12, n_out=2).S[-1]
    Ms = [100, 400, 1600]
    distance = []
    for M in Ms:
        runs = []
        for seed in range(32):
            system = TrainingSetSystem(population, *draw_training_set(V, klass, p, np.inf, M, seed))
            S = integrate_flow(system, np.zeros((K, K)), t, "DOP853", rtol=1e-10, atol=1e-12, n_out=2).S[-1]
            runs.append(np.linalg.norm(S - exact))
        distance.append(np.mean(runs))
    slope = np.polyfit(np.log(Ms), np.log(distance), 1)[0]
    assert abs(slope + 0.5) <= 0.15, (slope, distance)


@pytest.mark.parametrize("case", CASES)
def test_copies_of_one_prompt_give_the_one_prompt_trajectory(case):
    N, include_query = CASES[case]
    V, one = _system(N, include_query, M=1, seed=4)
    copies = TrainingSetSystem(one.population, np.repeat(one.query, 8), np.repeat(one.log_weights, 8, axis=0),
                               np.repeat(one.labels, 8, axis=0))
    S0 = np.zeros((3, 3))
    a = integrate_flow(one, S0, 50.0, "DOP853", rtol=1e-10, atol=1e-12, n_out=20)
    b = integrate_flow(copies, S0, 50.0, "DOP853", rtol=1e-10, atol=1e-12, n_out=20)
    assert np.array_equal(a.t, b.t)
    assert np.abs(a.S - b.S).max() <= 1e-14 * max(1.0, np.abs(a.S).max())
    assert np.abs(a.loss - b.loss).max() <= 1e-14
    gd_a = iterate_gd(one, S0, 0.5, 200, n_out=10)
    gd_b = iterate_gd(copies, S0, 0.5, 200, n_out=10)
    assert np.abs(gd_a.S - gd_b.S).max() <= 1e-14 * max(1.0, np.abs(gd_a.S).max())


@pytest.mark.parametrize("N", [np.inf, 4])
def test_flow_on_the_training_set_matches_radau(N):
    V, system = _system(N, False, M=50, seed=5)
    S0 = np.zeros((3, 3))
    dop = integrate_flow(system, S0, 200.0, "DOP853", rtol=1e-12, atol=1e-14, n_out=30)
    radau = integrate_flow(system, S0, 200.0, "Radau", rtol=1e-12, atol=1e-14, n_out=30)
    assert radau.counters["njev"] > 0                      # the analytic Jacobian was used
    assert np.abs(dop.S[-1] - radau.S[-1]).max() <= 1e-8 * max(1.0, np.abs(dop.S[-1]).max())
    assert abs(dop.crossings["t_half"] / radau.crossings["t_half"] - 1) <= 1e-8
    assert abs(dop.loss[-1] / radau.loss[-1] - 1) <= 1e-8


def test_gd_on_the_training_set_is_the_score_map_and_its_stable_step_is_two_over_the_largest_rate():
    """One GD step is S − η G Γ̂ G; the matrix-free stable step is 2/λ_max of the dense −J."""
    V, system = _system(np.inf, False, M=60, seed=6)
    S0 = np.zeros((3, 3))
    G = V @ V.T
    step = iterate_gd(system, S0, 0.3, 1, n_out=2)
    assert np.allclose(step.S[-1], S0 - 0.3 * G @ system.gradient(S0) @ G, rtol=0, atol=1e-15)
    # Along the flow, where the curvature is no longer that of S = 0.
    S_star = integrate_flow(system, S0, 1e3, "Radau", rtol=1e-10, atol=1e-12, n_out=2).S[-1]
    eta = system.stable_step(S_star)
    lam = np.linalg.eigvals(-system.flat_jacobian(S_star.ravel())).real.max()
    assert abs(eta - 2 / lam) <= 1e-8 * eta


def test_population_crossings_interpolate_on_the_grid():
    t = np.array([0.0, 1.0, 10.0, 100.0])
    loss = np.array([1.0, 0.5, 0.05, 0.005])
    c = population_crossings(t, loss, [0.1, 0.01, 1e-3, 2.0])
    assert c[2.0] == 0.0 and c[1e-3] is None
    assert abs(c[0.1] - 10 ** (np.log(5) / np.log(10))) < 1e-12        # log-linear between (1, 0.5) and (10, 0.05)
    assert abs(c[0.01] - 10 ** (1 + np.log(5) / np.log(10))) < 1e-9


def test_problem_trains_on_the_drawn_prompts_and_records_the_population_loss():
    from attnflow.dynamics.analysis.solve import solve
    cfg = config.from_dict({"features": {"K": 3}, "task": {"L": 2.0},
                            "training": {"mode": "both", "t_end": 1e3, "steps": 300, "prompts": 30, "seed": 4}})
    problem = make_problem(**cfg.raw)
    system = problem.system()
    assert isinstance(system, TrainingSetSystem) and system.M == 30
    again = make_problem(**cfg.raw).system()
    assert np.array_equal(system.labels, again.labels) and np.array_equal(system.query, again.query)
    result = solve(problem, cfg.training, progress=False)
    for tr in result.trajectories.values():
        assert np.allclose(tr.loss, [system.loss(S) for S in tr.S], rtol=1e-13, atol=0)
        assert np.allclose(tr.population_loss, [problem.score_system().loss(S) for S in tr.S], rtol=1e-13, atol=0)
        assert tr.population_loss[-1] > tr.loss[-1]          # 30 prompts: the training loss is the lower
        assert tr.state is None                               # the state is S itself
    other = make_problem(**config.from_dict({**cfg.raw, "training": {**cfg.raw["training"], "seed": 5}}).raw).system()
    assert not np.array_equal(other.labels, system.labels)


BAD = [("0", "training.prompts: expected an integer ≥ 1, got 0"),
       ("-1", "training.prompts: expected an integer ≥ 1, got -1"),
       ("1e300", "training.prompts: expected an integer ≤ 1,000,000, got 1e+300"),
       ('"100"', "training.prompts: expected an integer, got '100'"),
       ("2.5", "training.prompts: expected an integer, got 2.5"),
       ("1000000\n[features]\nK = 256", "training.prompts: M = 1,000,000 prompts of K = 256 features need about"),
       ("100\n[prompt]\nnoise = 0.1\n[task]\nkind = \"linear\"", "training.prompts: a finite training set with "
                                                                "token noise (prompt.noise > 0) is not supported yet")]


@pytest.mark.parametrize("value,message", BAD)
def test_bad_prompt_counts_give_one_line_and_status_2(tmp_path, capsys, value, message):
    path = tmp_path / "bad.toml"
    path.write_text(f"[training]\nprompts = {value}\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and message in err, err


def test_sweep_over_prompts_writes_the_gap_and_it_closes(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[features]\nK = 3\n[task]\nL = 2.0\n[training]\nt_end = 1e4\nn_out = 40\n')
    assert main(["sweep", str(cfg), "--param", "training.prompts=20:2000:log:3", "--out", str(tmp_path / "o"),
                 "--quiet", "--jobs", "1"]) == 0
    rows = read_table(tmp_path / "o" / "table.csv")
    assert np.allclose([r["param:training.prompts"] for r in rows], [20, 200, 2000], rtol=1e-12)
    assert [r["status"] for r in rows] == ["ok"] * 3
    gaps = [abs(r["flow:generalization_gap"]) for r in rows]
    assert gaps[2] < gaps[0] / 3, gaps                       # ~1/√M: a factor 10 over 20 → 2000
    for r in rows:
        assert r["flow:final_population_loss"] > 0 and "flow:t_population_loss_0.01" in r


def test_derivation_stage_checks_the_pull_back_on_two_prompts():
    from attnflow.derivations import variants
    stage = variants.training_set()
    assert stage.name == "training_set" and len(stage.checks) == 2


@pytest.mark.parametrize("task", [{"kind": "linear"}, {"kind": "finite", "functions": [[1, 2, 3], [0, 1, 0]],
                                                       "weights": [1, 3]},
                                  {"kind": "expression", "expression": "sin(w*x0)", "parameters": {"w": "normal(0, 1)"}}])
def test_drawn_prompts_have_the_class_moments_and_the_prompt_law(task):
    """Label second moments → F, query frequencies → p, counts → N p: each within 5 standard errors."""
    M = 20_000
    problem = make_problem(features={"K": 3}, task=task, prompt={"N": 6, "p": [0.5, 0.3, 0.2]},
                           training={"prompts": M, "seed": 3})
    system = problem.system()
    products = system.labels[:, :, None] * system.labels[:, None, :]
    se = products.std(axis=0) / np.sqrt(M) + 1e-15
    assert np.all(np.abs(products.mean(axis=0) - problem.F) <= 5 * se)
    share = np.bincount(system.query, minlength=3) / M
    assert np.all(np.abs(share - problem.p) <= 5 * np.sqrt(problem.p * (1 - problem.p) / M))
    counts = np.round(np.exp(system.log_weights))
    assert np.all(counts.sum(axis=1) == 6)
    assert np.all(np.abs(counts.mean(axis=0) - 6 * problem.p) <= 5 * counts.std(axis=0) / np.sqrt(M))
