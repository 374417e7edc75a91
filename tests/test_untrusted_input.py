"""Configurations are untrusted input: never code execution, never a traceback.

A property-based test drives 10⁴ generated configurations, valid and invalid,
hostile expression strings among them, through configuration loading and problem
construction: each either builds or raises one :class:`AttnflowError` whose field
names a configuration field.  A sample of valid ones runs end to end through the
command line.  A second test proves, with a sentinel file, that no attack form of
``task.expression`` runs code through any command.
"""

import math
import os
import re
import stat
import tempfile
import warnings
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, assume, event, given, settings

from attnflow.dynamics.problem import config
from attnflow.dynamics.cli import main, parse_override
from attnflow.dynamics.errors import AttnflowError
from attnflow.dynamics.problem import Problem

ATTACKS = [
    "__import__('os').system('touch {s}')",
    "x0 + __import__('os').system('touch {s}')",
    "(lambda: __import__('os').system('touch {s}'))()",
    "getattr(__import__('os'), 'system')('touch {s}')",
    "eval(\"__import__('os').system('touch {s}')\")",
    "exec(\"import os; os.system('touch {s}')\")",
    "open('{s}', 'w').write('x')",
    "sympify(\"__import__('os').system('touch {s}')\")",
    "x0.__class__.__base__.__subclasses__()",
    "[c for c in ().__class__.__base__.__subclasses__()]",
]

SECTIONS = {section: list(keys) for section, keys in config.SCHEMA.items()}

# Plausible values per field, kept small so that every valid problem builds in milliseconds.
VALID = {
    "features.kind": st.sampled_from(["orthonormal", "random-unit", "simplex", "explicit"]),
    "features.K": st.integers(2, 4),
    "features.d": st.integers(1, 5),
    "features.seed": st.integers(0, 3),
    "features.matrix": st.lists(st.lists(st.floats(-2, 2), min_size=2, max_size=2), min_size=2, max_size=4),
    "task.kind": st.sampled_from(["linear", "single-index", "frequency", "expression", "finite", "moments"]),
    "task.sigma": st.floats(0.1, 3),
    "task.L": st.floats(0.1, 10),
    "task.link": st.sampled_from(["sin", "tanh", "relu", "erf", "identity"]),
    "task.expression": st.sampled_from(["w*x0", "sin(w*x0)", "x0 + w", "tanh(w*x0)", "x0**2", "w*x0/0",
                                        "exp(exp(exp(1e15)))", "10**10**10", "x0^2"]
                                       + [a.format(s="/nonexistent/attnflow-sentinel") for a in ATTACKS]),
    "task.parameters": st.dictionaries(st.sampled_from(["w", "b", "lambda", "x0", "y1", "__class__"]),
                                       st.sampled_from(["normal(0, 1)", "uniform(-1, 1)", 0.5, "normal(0, -1)",
                                                        "normal(__import__, 1)", "gamma(1, 2)"]), max_size=2),
    "task.functions": st.lists(st.lists(st.floats(-3, 3), min_size=2, max_size=4), min_size=1, max_size=3),
    "task.weights": st.lists(st.floats(0, 2), min_size=1, max_size=3),
    "task.F": st.lists(st.lists(st.floats(-2, 2), min_size=2, max_size=4), min_size=2, max_size=4),
    "task.moment_method": st.sampled_from(["auto", "exact", "quadrature", "monte-carlo"]),
    "task.mc_samples": st.integers(2, 500),
    "task.seed": st.integers(0, 3),
    "prompt.N": st.one_of(st.just("inf"), st.integers(1, 12)),
    "prompt.p": st.one_of(st.just("uniform"), st.lists(st.floats(0.05, 1), min_size=2, max_size=4)),
    "prompt.include_query": st.booleans(),
    "prompt.noise": st.floats(0, 0.5),
    "prompt.quadrature_step": st.floats(0.05, 0.5),
    "model.parametrization": st.sampled_from(["merged", "separate"]),
    "model.head_dim": st.integers(1, 4),
    "model.init_scale": st.floats(0, 1),
    "model.seed": st.integers(0, 3),
    "model.heads": st.integers(1, 3),
    "training.mode": st.sampled_from(["flow", "gd", "both"]),
    "training.eta": st.one_of(st.just("auto"), st.floats(1e-3, 10)),
    "training.steps": st.integers(1, 50),
    "training.t_end": st.floats(1e-3, 1e3),
    "training.method": st.sampled_from(list(config.METHODS)),
    "training.rtol": st.floats(1e-10, 1e-3),
    "training.atol": st.floats(1e-12, 1e-6),
    "training.eps": st.lists(st.floats(1e-4, 0.5), min_size=1, max_size=3),
    "training.stop_loss": st.floats(0, 1e-3),
    "training.n_out": st.integers(2, 50),
    "training.kernels": st.sampled_from(["generated", "hand-written"]),
    "training.prompts": st.integers(1, 40),
    "training.seed": st.integers(0, 3),
    "regime.threshold": st.floats(0.1, 10),
}

GARBAGE = st.one_of(
    st.text(max_size=30), st.booleans(), st.integers(-10**30, 10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e300, 1e300),
    st.lists(st.one_of(st.integers(-5, 5), st.text(max_size=3), st.floats()), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.lists(st.lists(st.floats(), max_size=3), max_size=3),
)


# The strategies raw_configs draws from, built once: built inside it, Hypothesis constructed and
# validated them again for every example, which was most of the 10⁴-example test's time.
KEY_CHOICES = {section: st.lists(st.sampled_from(keys), unique=True, max_size=4) for section, keys in SECTIONS.items()}
COIN, ONE_IN_10, ONE_IN_20, ONE_IN_30 = st.booleans(), st.integers(0, 9), st.integers(0, 19), st.integers(0, 29)
UNKNOWN_NAME = st.text(min_size=1, max_size=8)


@st.composite
def raw_configs(draw):
    """A config as parsed TOML: mostly plausible fields, some garbage values, unknown keys and sections."""
    raw = {}
    for section in SECTIONS:
        if not draw(COIN):
            continue
        values = {}
        for key in draw(KEY_CHOICES[section]):
            garbage = draw(ONE_IN_10) == 7        # (hypothesis favours the bounds)
            values[key] = draw(GARBAGE if garbage else VALID[f"{section}.{key}"])
        if draw(ONE_IN_20) == 13:
            values[draw(UNKNOWN_NAME)] = 1
        raw[section] = values
    if draw(ONE_IN_30) == 17:
        raw[draw(UNKNOWN_NAME)] = draw(GARBAGE)
    return raw


def _names_a_field(field, raw):
    """The error names a section or ``section.key`` (with a sub-key or an index) of the input."""
    if field in raw:                                     # an unknown section, named as given
        return True
    section, _, rest = field.partition(".")
    if section not in config.SCHEMA:
        return False
    key = re.split(r"[.\[]", rest)[0]
    return key == "" or key in config.SCHEMA[section] or rest in raw.get(section, {})


def _assert_one_clear_line(error, raw):
    assert isinstance(error.field, str) and _names_a_field(error.field, raw), error.field
    line = "error: " + " ".join(str(error).split())
    assert "Traceback" not in line and len(line) < 1000, line


@settings(max_examples=10_000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(raw=raw_configs())
def test_any_config_loads_builds_or_names_one_field(raw, tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("error")                      # a leaked NumPy warning fails too
        try:
            cfg = config.from_dict(raw)
            problem = Problem.from_config(cfg)
            problem.system()
            problem.constants()
        except AttnflowError as e:
            _assert_one_clear_line(e, raw)
            event(f"invalid: {e.field.split('.')[0].split('[')[0]}")
            return
    event("valid")
    # A valid configuration: every field within the documented limits.
    assert cfg.features.K <= config.MAX_K and (cfg.features.d or 0) <= config.MAX_D
    assert math.isfinite(problem.initial_loss())


@settings(max_examples=300, deadline=None, database=None)
@given(text=st.text(max_size=60))
def test_any_override_text_is_parsed_or_named(text):
    try:
        path, value = parse_override(text)
    except AttnflowError as e:
        assert e.field == "--set" and repr(text) in str(e)
        return
    try:
        config.default().with_overrides({path: value})
    except AttnflowError as e:
        assert e.field.startswith(path.split(".")[0]) or e.field == path, (e.field, path)


@settings(max_examples=200, deadline=None, database=None)
@given(data=st.binary(max_size=200))
def test_any_bytes_as_a_config_file_load_or_give_one_line(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("cfg") / "c.toml"
    path.write_bytes(data)
    try:
        config.load(path)
    except AttnflowError as e:
        assert " ".join(str(e).split()).count("\n") == 0 and str(path) in str(e)


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.filter_too_much])
@given(raw=raw_configs())
def test_sampled_configs_run_end_to_end_within_out(raw, tmp_path, capsys, monkeypatch):
    """Through ``attnflow run``: exit 0, or 2 with one line; files only under --out."""
    try:
        cfg = config.from_dict(raw)
        Problem.from_config(cfg)
    except AttnflowError:
        assume(False)                            # the invalid ones are covered above
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    monkeypatch.chdir(work)
    (work / "c.toml").write_text(_toml(cfg.raw))
    capsys.readouterr()
    status = main(["run", "c.toml", "--out", "out", "--quiet", "--no-plots",
                   "--set", "training.steps=30", "--set", "training.t_end=10.0", "--set", "training.n_out=20"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert "Traceback" not in err
    assert status in (0, 2), err
    if status == 2:
        assert len(errors) == 1 and errors[0].startswith("error: ")
    assert sorted(os.listdir(work)) in (["c.toml", "out"], ["c.toml"])


def _toml(raw):
    """Minimal TOML writer for the generated dicts (numbers, strings, booleans, lists, inline tables)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
        if isinstance(v, int):
            return str(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return "{ " + ", ".join(f"{value(k)} = {value(x)}" for k, x in v.items()) + " }"
    lines = []
    for section, values in raw.items():
        lines.append(f"[{value(section)}]")
        lines += [f"{value(k)} = {value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("attack", ATTACKS)
def test_hostile_expressions_run_no_code_in_any_command(attack, tmp_path, capsys):
    sentinel = tmp_path / "sentinel"
    expression = attack.format(s=sentinel)
    toml_expression = '"' + expression.replace("\\", "\\\\").replace('"', '\\"') + '"'
    hostile = tmp_path / "hostile.toml"
    hostile.write_text('[features]\nK = 3\n[task]\nkind = "expression"\n'
                       f"expression = {toml_expression}\n" 'parameters = { w = "normal(0, 1)" }\n')
    plain = tmp_path / "plain.toml"
    plain.write_text('[features]\nK = 3\n[task]\nkind = "expression"\nexpression = "w*x0"\n'
                     'parameters = { w = "normal(0, 1)" }\n')
    commands = [
        ["run", str(hostile), "--quiet", "--no-plots"],
        ["derive", str(hostile)],
        ["check", str(hostile), "--quick", "--claims", "C1", "--quiet"],
        ["sweep", str(hostile), "--param", "task.L=1,2", "--quiet"],
        ["run", str(plain), "--quiet", "--no-plots", "--set", f"task.expression={expression}"],
        ["sweep", str(plain), "--param", f"task.expression={expression}", "--quiet"],
    ]
    for i, argv in enumerate(commands):
        if argv[0] != "derive":
            argv += ["--out", str(tmp_path / f"out{i}")]
        capsys.readouterr()
        status = main(argv)
        err = capsys.readouterr().err
        assert not sentinel.exists(), f"code ran through {argv[0]}"
        if argv[0] == "sweep" and status == 0:
            # A swept expression that splits at ',' is recorded per point as an error, never run.
            continue
        assert status == 2, (argv, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "task.expression" in lines[0], (argv, err)


def _one_error_line(capsys, argv, field):
    capsys.readouterr()
    try:
        status = main(argv)
    except SystemExit as e:                 # argparse's own errors exit from inside the parser
        status = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("error: ") and field in err[0], (argv, err)


def test_inputs_found_by_a_hostile_campaign_give_one_line(tmp_path, capsys, monkeypatch):
    """Each input a bad-input campaign found breaking the one-line rule, now one line and exit 2."""
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "e.toml"
    empty.write_text("")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link.md"
    link.symlink_to(empty)
    deep = tmp_path / "deep.toml"
    deep.write_text("[prompt]\np = " + "[" * 20000 + "]" * 20000 + "\n")
    expression = tmp_path / "x.toml"
    out = str(tmp_path / "out")
    cases = [
        (["run", str(fifo), "--out", out], str(fifo)),                       # used to hang
        (["run", "/dev/zero", "--out", out], "/dev/zero"),                    # used to read until killed
        (["derive", str(empty), "--out", "/dev/null"], "--out"),             # used to replace the device
        (["derive", str(empty), "--out", str(link)], "--out"),               # used to replace the link
        (["run", str(deep), "--out", out], str(deep)),                       # used to be a RecursionError
        (["run", str(empty), "--out", out, "--set", "prompt.p=" + "[" * 5000 + "]" * 5000], "--set"),
        (["sweep", str(empty), "--param", "task.L=1,2", "--param", "task.L=3", "--out", out], "--param"),
        (["check", str(empty), "--set", "features.K=2", "--out", out, "--quick"], "features.K"),
        (["check", str(empty), "--claims", "", "--out", out], "--claims"),
        (["run", str(empty), "--set", "training.rtol=1e-14", "--out", out], "training.rtol"),
        (["run", str(empty), "--set", "features.kind=random-unit", "--set", "features.d=1", "--out", out],
         "features.d"),                                                      # used to blame features.matrix
    ]
    for argv, field in cases:
        _one_error_line(capsys, argv, field)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and link.is_symlink()
    for text, field in [("x0**x0**x0**x0", "task.L"), ("exp(1000000*x0)", "task"), ("x0", "task.parameters.w")]:
        expression.write_text(f'[features]\nK = 3\n[task]\nkind = "expression"\nexpression = "{text}"\n'
                              + ('parameters = { w = "normal(0, 1)" }\n' if text == "x0" else ""))
        _one_error_line(capsys, ["run", str(expression), "--out", out, "--quiet"], field)
    sweep_out = tmp_path / "s"
    sweep_out.mkdir()
    (sweep_out / "sweep.json").write_text("garbage")
    _one_error_line(capsys, ["sweep", str(empty), "--param", "task.L=1,2", "--out", str(sweep_out)], "--out")
    _one_error_line(capsys, ["derive", str(empty), "--format=pdf"], "--format")
