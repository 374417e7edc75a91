"""The SymPy derivation and the kernels generated from it."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from attnflow.derivations import codegen, indexed, indexed_heads, load_kernels, stages
from attnflow.derivations.checks import DerivationCheckFailed
from attnflow.solvers import ScoreSystem, integrate_flow, iterate_gd

from .conftest import make_problem, random_system_arrays

ROOT = Path(__file__).resolve().parents[1]


def test_full_model_gradient_pulls_back_exactly():
    """SymPy's gradient of the d×d model (K = 2, d = 2, every entry a symbol) minus VᵀΓV simplifies to 0."""
    assert stages.verify_pull_back(2, 2) == sp.zeros(2, 2)


@pytest.mark.parametrize("K", [2, 3])
def test_stages_verify_their_steps_symbolically(K):
    d = stages.derive(K)
    names = [s.name for s in d.stages]
    assert names[:6] == ["network", "large_prompt_limit", "softmax_derivative", "column_loss",
                         "column_gradient", "column_hessian"]
    # Each of these stages ran its symbolic checks (they assert inside).
    for name, count in (("network", 2), ("softmax_derivative", 1), ("column_gradient", 2), ("column_hessian", 2)):
        assert len(d.stage(name).checks) == count


def test_column_gradient_is_the_textbook_formula():
    """g = a ∘ (Ma − aᵀMa) at random rational points, exactly."""
    col = stages.derive(4).columns
    rng = np.random.default_rng(0)
    a = rng.dirichlet(np.ones(4))
    W = rng.standard_normal((4, 4))
    M = W @ W.T
    subs = dict(zip(col["a"], a))
    subs.update({col["M"][i, j]: M[i, j] for i in range(4) for j in range(4)})
    g = np.array([float(e.subs(subs)) for e in col["gradient"]])
    np.testing.assert_allclose(g, a * (M @ a - a @ M @ a), rtol=1e-13)


CASES = [
    (2, {"kind": "orthonormal", "K": 2}, {"kind": "linear"}, "uniform"),
    (3, {"kind": "simplex", "K": 3, "d": 2}, {"kind": "single-index", "link": "tanh", "L": 2.0}, [0.5, 0.3, 0.2]),
    (5, {"kind": "random-unit", "K": 5, "d": 3, "seed": 1}, {"kind": "frequency", "L": 3.0}, "uniform"),
    (8, {"kind": "random-unit", "K": 8, "d": 8, "seed": 2}, {"kind": "single-index", "link": "relu"}, "uniform"),
]


@pytest.mark.parametrize("K,features,task,p", CASES)
def test_generated_kernels_equal_hand_written(K, features, task, p):
    problem = make_problem(features=features, task=task, prompt={"p": p})
    gen = problem.score_system()
    hand = make_problem(features=features, task=task, prompt={"p": p},
                        training={"kernels": "hand-written"}).score_system()
    assert gen.kernels.NAME == "generated" and hand.kernels.NAME == "hand-written"
    rng = np.random.default_rng(K)
    for scale in (0.1, 2.0, 20.0):
        S = rng.standard_normal((K, K)) * scale
        assert gen.loss(S) == pytest.approx(hand.loss(S), rel=1e-12)
        for fn in ("gradient", "rhs", "jacobian"):
            x, y = getattr(gen, fn)(S), getattr(hand, fn)(S)
            assert np.abs(x - y).max() <= 1e-12 * np.abs(y).max(), fn
    a = iterate_gd(gen, problem.S0, 0.5, 300)
    b = iterate_gd(hand, problem.S0, 0.5, 300)
    np.testing.assert_allclose(a.S, b.S, rtol=1e-10, atol=1e-12)


def test_generated_kernels_take_parameters_at_run_time():
    """One generated module serves every G, F, p of the same K: nothing is baked in but K."""
    kernels = load_kernels(4)
    for seed in range(3):
        V, F, p = random_system_arrays(4, 3, seed)
        gen = ScoreSystem(V @ V.T, F, p, kernels=kernels)
        hand = ScoreSystem(V @ V.T, F, p)
        S = np.random.default_rng(seed).standard_normal((4, 4))
        np.testing.assert_allclose(gen.jacobian(S), hand.jacobian(S), rtol=0, atol=1e-12 * np.abs(hand.jacobian(S)).max())
    assert load_kernels(4) is kernels
    text = kernels.path.read_text()
    assert "np.exp" not in text.split(codegen.ASSEMBLY_MARKER)[0]      # softmax comes from column_attention


def test_flow_with_generated_kernels_matches_hand_written(simplex_sharp):
    hand = ScoreSystem(simplex_sharp.features.G, simplex_sharp.F, simplex_sharp.p)
    a = integrate_flow(simplex_sharp.score_system(), simplex_sharp.S0, 1e4, method="BDF")
    b = integrate_flow(hand, simplex_sharp.S0, 1e4, method="BDF")
    np.testing.assert_allclose(a.S, b.S, rtol=1e-9, atol=1e-9)


def test_one_module_and_key_for_every_K():
    """Neither the key nor the module's path depends on K: load_kernels returns the same module for all K."""
    key = codegen.kernel_key()
    assert codegen.module_path().name == f"attnflow_kernels_{key[:16]}.py"
    module = load_kernels(2)
    assert all(load_kernels(K) is module for K in (3, 16, 64, 256))
    assert module.path == codegen.module_path() and module.KEY == key
    # The heads' kernels (about 10 s more SymPy to derive) live in a module of their own.
    assert not hasattr(module, "multihead_rhs")
    assert codegen.module_path(heads=True).name == f"attnflow_heads_kernels_{key[:16]}.py"
    with pytest.raises(ValueError, match="K: expected an integer"):
        load_kernels(1)


def test_indexed_column_equals_the_unrolled_stages():
    """The derived indexed column passes every check; at K = 2, 3 it equals the unrolled stages entry by entry."""
    _, stage = indexed.column()          # raises DerivationCheckFailed if a check does not hold
    assert len(stage.checks) == 2 + len(indexed.UNROLLED_CHECK_KS)
    assert all(f"K = {k}$ equal the unrolled" in " ".join(stage.checks) for k in (2, 3))
    derived = stage.data["derived"]
    # Evaluated at K = 3 (a[0] = a_1, …) the indexed Hessian is the unrolled H_12 symbol for symbol.
    unrolled = stages.column_hessian(stages.column_gradient(stages.column_loss(3))).data
    at = indexed.to_unrolled(derived.hessian, 3, {indexed.I: 0, indexed.J: 1})
    assert sp.expand(at - unrolled["hessian"][0, 1]) == 0


@pytest.mark.parametrize("part", ["loss", "gradient", "hessian"])
def test_indexed_checks_fail_on_a_wrong_expression(part):
    """A column with one wrong term is refused, both against the unrolled stages and in indexed form."""
    _, stage = indexed.column()
    derived = stage.data["derived"]
    a, M, I, J, n = indexed.a, indexed.M, indexed.I, indexed.J, indexed.index("n")
    wrong_term = {"loss": indexed.total(a[n] ** 2, n), "gradient": a[I] ** 2, "hessian": a[I] * a[J] * M[I, J]}[part]
    wrong = indexed.IndexedColumn(**{**vars(derived), part: getattr(derived, part) + wrong_term})
    with pytest.raises(DerivationCheckFailed):
        indexed.verify_against_unrolled(wrong, 2)
    with pytest.raises(DerivationCheckFailed):
        indexed.check_column(wrong, stage.data["textbook"])


def test_indexed_heads_equal_the_unrolled_derivation():
    """The multi-head column derived in indexed form (symbolic K and H) passes every check, the unrolled
    comparisons among them (K = 2, 3 at H = 2, K = 2 at H = 3), and one entry is recomputed here."""
    _, stage = indexed_heads.heads_column()          # raises DerivationCheckFailed if a check does not hold
    assert stage.name == "indexed_heads" and len(stage.checks) == 2 + len(indexed_heads.UNROLLED_HEAD_CHECKS)
    text = " ".join(stage.checks)
    assert all(f"$K = {k}$, $H = {h}$ equal the unrolled" in text for k, h in [(2, 2), (3, 2), (2, 3)])
    derived = stage.data["derived"]
    # ∂g^1_1/∂s^2_3 at K = 3, H = 2 (a = head 1, b = head 2, no other heads): the unrolled derivation's entry.
    unrolled = indexed_heads.unrolled_heads(3, 2)
    A = unrolled["attention"]
    entry = indexed_heads._unroll(derived.cross_block, 3, {indexed.a: A[0], indexed_heads.b: A[1],
                                                           indexed_heads.c: [0, 0, 0], indexed.M: unrolled["M"]},
                                  {indexed.I: 0, indexed.J: 2}).subs(indexed_heads.H, 2)
    assert sp.expand(entry - unrolled["blocks"][0][1][0][2]) == 0
    # … which is (D^1 M D^2)_13 / 4 written out.
    a1, a2, M = sp.Matrix(A[0]), sp.Matrix(A[1]), unrolled["M"]
    D1, D2 = sp.diag(*a1) - a1 * a1.T, sp.diag(*a2) - a2 * a2.T
    assert sp.expand(entry - (D1 * M * D2)[0, 2] / 4) == 0


@pytest.mark.parametrize("part", ["loss", "gradient", "own_block", "cross_block"])
def test_indexed_head_checks_fail_on_a_wrong_expression(part):
    """A head column with one wrong term is refused, both against the unrolled derivation and in indexed form."""
    kernels, stage = indexed_heads.heads_column()
    derived = stage.data["derived"]
    a, b, M, I, J, n = indexed.a, indexed_heads.b, indexed.M, indexed.I, indexed.J, indexed.index("n")
    wrong_term = {"loss": indexed.total(a[n] * b[n], n), "gradient": a[I] * b[I] / indexed_heads.H,
                  "own_block": a[I] * a[J] * M[I, J], "cross_block": a[I] * b[J] * M[I, J]}[part]
    wrong = indexed_heads.IndexedHeads(**{**vars(derived), part: getattr(derived, part) + wrong_term})
    with pytest.raises(DerivationCheckFailed):
        indexed_heads.verify_heads_against_unrolled(wrong, 2, 2)
    with pytest.raises(DerivationCheckFailed):
        indexed_heads.check_heads(wrong, kernels)


def test_generated_source_does_not_grow_with_K():
    """The printed kernels are loops over K read from the arrays: no feature number is spelled out."""
    source = codegen.column_source()
    assert source.count("def ") == 2 and "K = a.shape[0]" in source
    assert "a[1]" not in source and "M[0" not in source and len(source) < 4000
    heads = codegen.heads_source()
    assert heads.count("def ") == 4 and "K = abar.shape[0]" in heads and "K = a.shape[0]" in heads
    assert "a[1]" not in heads and "b[0" not in heads and "M[0" not in heads and len(heads) < 5000
    module = codegen.module_source("0" * 64)
    assert heads not in module and codegen.MULTIHEAD_ASSEMBLY_MARKER not in module   # heads: a module of their own
    with_heads = codegen.module_source("0" * 64, heads=True)
    assert with_heads.startswith(module) and heads in with_heads and codegen.MULTIHEAD_ASSEMBLY_MARKER in with_heads


def test_key_is_stable_across_processes():
    """The key names the cached module, so another process must compute the same one (no hash salting)."""
    script = "from attnflow.derivations import codegen; print(codegen.kernel_key())"
    out = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == codegen.kernel_key()


def test_key_changes_when_a_derivation_source_changes(tmp_path, monkeypatch):
    """An edit to any source the generated module depends on gives a new key: a stale module is never reused."""
    original = codegen.kernel_key()
    copies = []
    for i, source in enumerate(codegen._SOURCES):
        copy = tmp_path / f"{i}_{source.name}"
        copy.write_bytes(source.read_bytes())
        copies.append(copy)
    monkeypatch.setattr(codegen, "_SOURCES", tuple(copies))
    assert codegen.kernel_key() == original                # the copies stand for the sources
    for copy in copies:
        text = copy.read_text()
        copy.write_text(text + "\n# an edit\n")
        assert codegen.kernel_key() != original, copy.name
        copy.write_text(text)
    assert codegen.kernel_key() == original


@pytest.mark.slow
def test_hot_cache_neither_regenerates_nor_recompiles(tmp_path):
    """Two processes with one cache directory, K = 3 then K = 5: the second finds the module and the machine code."""
    script = textwrap.dedent("""
        import json, sys
        import numpy as np
        from attnflow.derivations import load_kernels
        from attnflow.derivations.codegen import dispatchers
        from attnflow.solvers import ScoreSystem
        K = int(sys.argv[1])
        kernels = load_kernels(K)
        mtime = kernels.path.stat().st_mtime_ns
        system = ScoreSystem(np.eye(K), np.eye(K), np.full(K, 1 / K), kernels=kernels)
        system.warm_up()
        stats = [d.stats for d in dispatchers(kernels).values()]
        print(json.dumps({"generated_now": kernels.generated_now, "mtime": mtime,
                          "misses": sum(sum(s.cache_misses.values()) for s in stats),
                          "hits": sum(sum(s.cache_hits.values()) for s in stats)}))
    """)
    env = dict(os.environ, ATTNFLOW_CACHE_DIR=str(tmp_path), PYTHONPATH=str(ROOT))

    def run(K):
        out = subprocess.run([sys.executable, "-c", script, str(K)], env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        import json
        return json.loads(out.stdout.strip().splitlines()[-1])

    first, second = run(3), run(5)
    assert first["generated_now"] and first["misses"] > 0
    assert not second["generated_now"] and second["mtime"] == first["mtime"]
    assert second["misses"] == 0 and second["hits"] > 0
    assert len(list(tmp_path.glob("attnflow_kernels_*.py"))) == 1


def test_derivation_checks_run_under_python_O():
    """A check fed a wrong identity (``_is_zero`` patched to say no) raises DerivationCheckFailed even with -O."""
    code = textwrap.dedent("""
        import sys
        from attnflow.derivations import variants
        from attnflow.derivations.checks import DerivationCheckFailed
        variants._is_zero = lambda expr: False
        try:
            variants.query_in_softmax(K=2)
        except DerivationCheckFailed as e:
            print("raised", sys.flags.optimize, e)
        else:
            print("passed", sys.flags.optimize)
    """)
    out = subprocess.run([sys.executable, "-O", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("raised 1 derivation check failed: error with the query's share"), out.stdout


def test_derivations_have_no_bare_assert():
    """Every check is a require(...) (asserts vanish under -O and derive would report them verified)."""
    import ast
    offenders = [f"{path.name}:{node.lineno}" for path in sorted((ROOT / "derivations").glob("*.py"))
                 for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Assert)]
    assert offenders == []
