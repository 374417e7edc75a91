"""Expression tasks: SymPy moments (exact, quadrature, Monte Carlo), Lipschitz constants, errors."""

import json

import numpy as np
import pytest

from attnflow.dynamics.problem import features as feat
from attnflow.dynamics.cli import main
from attnflow.dynamics.errors import AttnflowError

from .conftest import make_problem

GAUSS3 = {"w0": "normal(0, 1)", "w1": "normal(0, 1)", "w2": "normal(0, 1)"}
FEATURES = {"kind": "random-unit", "K": 5, "d": 3, "seed": 0}


def _expression(expr, params, **task):
    return make_problem(features=FEATURES, task={"kind": "expression", "expression": expr, "parameters": params, **task})


def test_linear_expression_equals_the_linear_class():
    expr = _expression("w0*x0 + w1*x1 + w2*x2", GAUSS3)
    lin = make_problem(features=FEATURES, task={"kind": "linear", "sigma": 1.0})
    assert expr.moments.method == "exact"
    np.testing.assert_allclose(expr.F, lin.F, rtol=0, atol=1e-14)
    # L: RMS of the gradient norm ‖w‖ is √d; estimated from 2000 draws (relative SE ≈ 1 %).
    assert expr.constants().L == pytest.approx(np.sqrt(3), rel=0.05)
    assert "L" in expr.constants().as_dict()["reconstructed"]


def test_single_index_sin_expression_matches_the_built_in_class_by_quadrature():
    """sin(wᵀx) with w uniform on the sphere is not expressible here, but Gaussian w has the closed form
    E sin(wᵀa) sin(wᵀb) = ½(e^{−|a−b|²/2} − e^{−|a+b|²/2}), which the exact route must reproduce."""
    expr = _expression("sin(w0*x0 + w1*x1 + w2*x2)", GAUSS3)
    V = expr.features.V
    diff = V[:, None] - V[None]
    summ = V[:, None] + V[None]
    expected = 0.5 * (np.exp(-0.5 * (diff**2).sum(-1)) - np.exp(-0.5 * (summ**2).sum(-1)))
    assert expr.moments.method == "exact"
    np.testing.assert_allclose(expr.F, expected, rtol=0, atol=1e-14)


CASES = [
    ("sin(w0*x0 + w1*x1 + b)", {"w0": "normal(0, 2)", "w1": "normal(0.5, 1)", "b": "uniform(0, 6.283185307179586)"}),
    ("cos(w*(x0 - x1)) + c*x2**2", {"w": "uniform(-1, 2)", "c": "normal(1, 0.5)"}),
    ("u*x0**2 + sin(u*x1) + 0.3", {"u": "uniform(0, 1)"}),
    ("exp(w) * cosh(w*x2) + 2*x0", {"w": "normal(0, 1)"}),
]


@pytest.mark.parametrize("expr,params", CASES)
def test_exact_moments_match_quadrature_and_monte_carlo(expr, params):
    problem = _expression(expr, params)
    cls, V = problem.function_class, problem.features.V
    exact = cls.moments(V, "exact")
    quad = cls.moments(V, "quadrature")
    mc = cls.moments(V, "monte-carlo", mc_samples=50_000, seed=3)
    scale = np.abs(exact.F).max()
    assert np.abs(quad.F - exact.F).max() <= max(10 * quad.error, 1e-12 * scale)
    assert np.abs(quad.F - exact.F).max() <= 1e-9 * scale
    assert np.abs(mc.F - exact.F).max() <= 5 * mc.error


def test_parameters_inside_nonlinear_exponents_have_no_closed_form():
    """exp(−w²) is Gaussian in w, not linear: the exact route refuses and auto falls back to quadrature."""
    problem = _expression("exp(-w**2) * sinh(w*x2) + 2*x0", {"w": "normal(0, 1)"})
    assert problem.moments.method == "quadrature" and problem.moments.error < 1e-9


def test_expressions_without_closed_form_use_quadrature():
    problem = _expression("tanh(w0*x0 + w1*x1)", {"w0": "normal(0, 1)", "w1": "normal(0, 1)"})
    assert problem.moments.method == "quadrature" and problem.moments.error < 1e-9
    mc = problem.function_class.moments(problem.features.V, "monte-carlo", mc_samples=50_000, seed=4)
    assert np.abs(mc.F - problem.F).max() <= 5 * mc.error
    with pytest.raises(AttnflowError, match="no closed form"):
        _expression("tanh(w0*x0 + w1*x1)", {"w0": "normal(0, 1)", "w1": "normal(0, 1)"}, moment_method="exact")


def test_stated_lipschitz_bound_is_used():
    problem = _expression("w0*x0 + w1*x1 + w2*x2", GAUSS3, L=2.5)
    c = problem.constants()
    assert c.L == 2.5 and c.L_source == "stated bound (task.L)"


def test_expression_sampled_labels_have_the_moments():
    """Labels drawn for training (one parameter draw per prompt) have second moments F, the exact route's,
    within 4 standard errors of the Monte Carlo mean."""
    problem = _expression(*CASES[1])
    assert problem.moments.method == "exact"
    V = problem.features.V
    draws = 100_000
    y = problem.function_class.sample_labels(np.random.default_rng(0), np.broadcast_to(V, (draws, *V.shape)), None)
    assert y.shape == (draws, len(V)) and np.all(np.isfinite(y))
    products = y[:, :, None] * y[:, None, :]
    se = products.std(axis=0) / np.sqrt(draws)
    assert np.all(np.abs(products.mean(axis=0) - problem.F) <= 4 * se)
    assert np.abs(products.mean(axis=0) - problem.F).max() > 0          # sampled, not copied


@pytest.mark.parametrize("task,message", [
    ({"expression": "w*x0 + z"}, "task.expression: unknown symbol(s) z"),
    ({"expression": "w*x7"}, "task.expression: unknown symbol(s) x7"),
    ({"expression": "w + 1"}, "does not depend on x0..x2"),
    ({"expression": "w*x0", "parameters": {"w": "normal(0, -1)"}}, "task.parameters.w: normal needs a positive"),
    ({"expression": "w*x0", "parameters": {"w": "gamma(1, 2)"}}, "task.parameters.w: expected a number"),
    ({"expression": "w*(x0"}, "task.expression: cannot parse"),
    ({}, "task.expression: required"),
])
def test_bad_expression_tasks(tmp_path, capsys, task, message):
    params = task.get("parameters", {"w": "normal(0, 1)"})
    lines = ['[features]', 'kind = "random-unit"', 'K = 3', 'd = 3', '[task]', 'kind = "expression"']
    if "expression" in task:
        lines.append(f'expression = "{task["expression"]}"')
    lines.append("parameters = { " + ", ".join(f'{k} = "{v}"' for k, v in params.items()) + " }")
    cfg = tmp_path / "c.toml"
    cfg.write_text("\n".join(lines) + "\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err


def test_expression_run_end_to_end(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[features]\nkind = "simplex"\nK = 3\nd = 2\n[task]\nkind = "expression"\n'
                   'expression = "sin(w0*x0 + w1*x1 + b)"\n'
                   'parameters = { w0 = "normal(0, 2)", w1 = "normal(0, 2)", b = "uniform(0, 6.283185307179586)" }\n'
                   '[training]\nt_end = 1e5\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet", "--no-plots"]) == 0
    assert "expression sin(w0*x0 + w1*x1 + b)" in capsys.readouterr().out
    # The run used the simplex and this expression's moments: with b uniform on a period,
    # E sin(wᵀa + b) sin(wᵀc + b) = ½ E cos(wᵀ(a − c)) = ½ exp(−2|a − c|²) for w ~ N(0, 4 I).
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())["problem"]
    V = feat.simplex(3, 2).V
    expected = 0.5 * np.exp(-2 * ((V[:, None] - V[None]) ** 2).sum(-1))
    assert summary["F_method"] == "exact"
    np.testing.assert_allclose(summary["F"], expected, rtol=1e-12, atol=0)
