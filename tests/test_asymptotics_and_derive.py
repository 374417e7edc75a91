"""Derived asymptotics against integrated trajectories, and the `derive` command."""

import shutil
import subprocess

import numpy as np
import pytest

from attnflow.derivations import asymptotics
from attnflow.dynamics.cli import main
from attnflow.dynamics.reporting.derivation_report import EXPLICIT_MAX_K, render
from attnflow.solvers import integrate_flow

from .conftest import make_problem


@pytest.mark.parametrize("features,p", [
    ({"kind": "orthonormal", "K": 4}, [0.4, 0.3, 0.2, 0.1]),
    ({"kind": "simplex", "K": 3, "d": 2}, "uniform"),
    ({"kind": "random-unit", "K": 5, "d": 3, "seed": 4}, [0.3, 0.3, 0.2, 0.1, 0.1]),
])
def test_early_phase_rates_are_the_eigenvalues_of_the_numerical_jacobian(features, p):
    problem = make_problem(features=features, task={"kind": "frequency", "L": 2.0}, prompt={"p": p},
                           training={"kernels": "hand-written"})
    system = problem.score_system()
    early = asymptotics.early_phase(system.G, system.F, system.p)
    S0 = np.zeros_like(system.G)
    numeric = np.sort(np.linalg.eigvals(system.jacobian(S0)).real)[::-1]
    np.testing.assert_allclose(early.rates, numeric, rtol=0, atol=1e-10 * np.abs(numeric).max())
    np.testing.assert_allclose(early.velocity, system.rhs(S0), rtol=0, atol=1e-14)


def test_linear_drift_estimates_the_half_time_on_a_symmetric_problem():
    """Scaled orthonormal features (G = 2.25 I): the drift estimate is within 10 % of the true t_half."""
    problem = make_problem(features={"kind": "explicit", "matrix": (1.5 * np.eye(3)).tolist()},
                           task={"kind": "frequency", "L": 2.0})
    system = problem.score_system()
    early = asymptotics.early_phase(system.G, system.F, system.p)
    t_half = integrate_flow(system, problem.S0, 1e3).crossings["t_half"]
    assert early.t_half_drift == pytest.approx(t_half, rel=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("matrix_scale,p", [(1.0, [0.4, 0.3, 0.2, 0.1]), (1.5, "uniform")])
def test_late_phase_law_matches_long_trajectories(matrix_scale, p):
    """G = γI: ℒ ≈ (K−1)/(4γ²t) and max_k(1 − A_kk) ≈ D/√t; log-log slopes −1 and −1/2."""
    K = 4
    problem = make_problem(features={"kind": "explicit", "matrix": (matrix_scale * np.eye(K)).tolist()},
                           task={"kind": "frequency", "L": 2.0}, prompt={"p": p})
    system = problem.score_system()
    late = asymptotics.late_phase(system.G, system.F, system.p)
    assert late.loss_constant == pytest.approx((K - 1) / (4 * matrix_scale**4))
    tr = integrate_flow(system, problem.S0, 1e9, rtol=1e-10, atol=1e-14)
    gap = 1 - tr.target_attention.min(axis=1)
    tail = slice(-40, None)
    slope_loss = np.polyfit(np.log(tr.t[tail]), np.log(tr.loss[tail]), 1)[0]
    slope_gap = np.polyfit(np.log(tr.t[tail]), np.log(gap[tail]), 1)[0]
    assert slope_loss == pytest.approx(late.loss_exponent, abs=2e-3)
    assert slope_gap == pytest.approx(late.gap_exponent, abs=2e-3)
    # At t = 1e9 the next-order corrections are below 1e-4 relative.
    assert tr.t[-1] * tr.loss[-1] == pytest.approx(late.loss_constant, rel=1e-4)
    assert np.sqrt(tr.t[-1]) * gap[-1] == pytest.approx(late.gap_constant, rel=1e-3)


def test_late_phase_of_a_general_gram_matrix_gives_exponents_only():
    problem = make_problem(features={"kind": "random-unit", "K": 3, "d": 3, "seed": 0})
    late = asymptotics.late_phase(problem.features.G, problem.F, problem.p)
    assert (late.loss_exponent, late.gap_exponent, late.loss_constant) == (-1.0, -0.5, None)


def test_late_phase_stage_derives_the_constant():
    import sympy as sp
    stage = asymptotics.late_phase_stage(3)
    K, gamma = sp.symbols("K gamma", positive=True)
    assert sp.simplify(stage.data["loss_constant"] - (K - 1) / (4 * gamma**2)) == 0
    assert len(stage.checks) == 3


def test_positive_scaling_solves_the_self_similar_equation():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((5, 5))
    M = W @ W.T + 0.1 * np.eye(5)
    c = asymptotics.positive_scaling(M, 0.3)
    assert np.all(c > 0)
    np.testing.assert_allclose(c * (M @ c), 0.3, rtol=1e-12)
    assert asymptotics.positive_scaling(-M, 0.3) is None


def test_derive_markdown_for_two_features(tmp_path, capsys):
    cfg = tmp_path / "k2.toml"
    cfg.write_text('[features]\nkind = "orthonormal"\nK = 2\n[task]\nkind = "linear"\n')
    assert main(["derive", str(cfg)]) == 0
    text = capsys.readouterr().out
    for heading in ("The network and its loss", "Differentiating through the softmax", "Gradient in the scores",
                    "Hessian in the scores", "Pull-back", "This configuration", "Early phase", "Late phase",
                    "Generated code"):
        assert f"## {heading}" in text
    assert "SymPy verified" in text and "H_{12}" in text and r"\dot S_{11}" in text
    assert r"\mathcal{L}(t) \approx 0.25/t" in text         # G = I, K = 2: (K − 1)/4


def test_derive_uses_indexed_form_for_large_K(tmp_path, capsys):
    cfg = tmp_path / "k6.toml"
    cfg.write_text('[features]\nkind = "random-unit"\nK = 6\nd = 4\n')
    assert main(["derive", str(cfg)]) == 0
    text = capsys.readouterr().out
    assert r"g_n = a_n (u_n - B)" in text and "H_{12}" not in text
    assert "constants are not derived" in text


@pytest.mark.parametrize("K, kind", [(2, "orthonormal"), (3, "simplex"), (4, "orthonormal"), (5, "orthonormal")])
def test_derive_shows_the_softmax_for_every_feature(K, kind):
    """Every a_1 … a_K: spelled out for K ≤ 3, indexed up to K beyond (K = 4 once stopped at a_3)."""
    text = render(make_problem(features={"kind": kind, "K": K}, task={"kind": "linear"}))
    section = text.split("## The large-prompt limit")[1].split("\n## ")[0]
    if K <= EXPLICIT_MAX_K:
        assert [n for n in range(1, K + 1) if f"a_{{{n}}} = " not in section] == []
    else:
        assert rf"\sum_{{m=1}}^{{{K}}} e^{{l_m + s_m}}" in section and rf"n = 1, \dots, {K}" in section
        assert "a_{1} = " not in section            # no explicit entries that stop short of a_K


def test_derive_shows_the_configured_variants_with_their_checks(tmp_path, capsys):
    cfg = tmp_path / "v.toml"
    cfg.write_text('[features]\nkind = "simplex"\nK = 3\nd = 2\n[prompt]\nN = 6\ninclude_query = true\n'
                   '[model]\nparametrization = "separate"\ninit_scale = 0.3\n')
    assert main(["derive", str(cfg)]) == 0
    text = capsys.readouterr().out
    assert "prompts of length $N = 6$, the query inside the softmax, separate key and query matrices" in text
    sections = ["Prompts of finite length N", "The query inside the softmax", "Separate key and query matrices"]
    assert all(f"## {name}" in text for name in sections) and "## Token noise" not in text
    assert text.count("SymPy verified") >= 10
    (tmp_path / "n.toml").write_text('[task]\nkind = "linear"\n[prompt]\nnoise = 0.1\n')
    assert main(["derive", str(tmp_path / "n.toml")]) == 0
    text = capsys.readouterr().out
    assert "## Token noise" in text and "## Prompts of finite length N" not in text


@pytest.mark.parametrize("variant", ["", '[prompt]\nN = 6\ninclude_query = true\nnoise = 0.0\n'
                                         '[model]\nparametrization = "separate"\ninit_scale = 0.3\n'])
def test_derive_latex_is_a_standalone_document(tmp_path, variant):
    cfg = tmp_path / "k3.toml"
    cfg.write_text('[features]\nkind = "simplex"\nK = 3\nd = 2\n[task]\nkind = "linear"\nsigma = 0.5\n' + variant)
    out = tmp_path / "k3.tex"
    assert main(["derive", str(cfg), "--format", "latex", "--out", str(out)]) == 0
    tex = out.read_text()
    assert tex.startswith("\\documentclass") and tex.rstrip().endswith("\\end{document}")
    assert tex.count("\\[") == tex.count("\\]") > 10
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed: the document was checked for structure only")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", out.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "k3.pdf").stat().st_size > 10_000
