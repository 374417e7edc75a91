"""Configuration: TOML → validated, frozen sections; every field has a default.

The schema below is the whole public surface of a config file (documented key by
key in ``docs/configuration.md``).  Unknown sections and keys, values of the wrong
type and values out of range all raise :class:`~attnflow.dynamics.errors.AttnflowError`
naming the field.

Examples
--------
>>> cfg = loads('''
... [task]
... L = 3.0
... ''')
>>> cfg.task.L, cfg.features.K, cfg.training.mode
(3.0, 4, 'flow')
>>> from_dict({"task": {"L": -1}})
Traceback (most recent call last):
    ...
attnflow.dynamics.errors.AttnflowError: task.L: expected a number > 0, got -1
"""

import copy
import math
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import AttnflowError
from . import features as _features
from . import function_classes as _classes


# "auto": the compiled DOP853, or the compiled Rodas4P2 where the flow becomes stiff (finite N
# without the query in the softmax); solvers.flow.auto_method decides, solvers.flow.METHODS is
# the same list.
METHODS = ("auto", "LSODA", "Radau", "BDF", "RK45", "DOP853", "DOP853-compiled", "Rodas4P2-compiled")


# --- value parsers: each takes (field, value) and returns the parsed value -------------

# --- limits: every size and magnitude is bounded here, before anything is allocated -------

MAX_K = 256                  # features: K³ arrays (moments, column Hessians: 134 MB each at 256), O(K³) steps
MAX_DENSE_JACOBIAN = 8192    # side of a dense Jacobian (537 MB): the implicit solvers, the separate factors' step
MAX_D = 4096                 # feature dimension
MAX_KD = 1_000_000           # K·d entries of the feature matrix
MAX_N = 10**9                # finite prompt length (use "inf" beyond)
MAX_STEPS = 10**8            # gradient-descent iterations
MAX_OUT = 100_000            # recorded points of a trajectory
MAX_MAGNITUDE = 1e6          # |L|, |sigma|, matrix entries, weights, thresholds
MAX_T_END = 1e15             # flow horizon
MIN_T_END = 1e-12
MAX_MC = 10**8               # Monte Carlo functions
MAX_SEED = 2**63 - 1
MAX_TEXT = 2000              # characters of a string value
MAX_CONFIG_BYTES = 10**7     # a config file (a 256×4096 matrix in TOML fits)
MAX_PARAMETERS = 16          # random parameters of an expression task
MAX_HEAD_DIM = 64            # separate W_K, W_Q: the factors' Jacobian has (2·h·K)² entries (MAX_DENSE_JACOBIAN)
MAX_NOISY_D = 64             # token noise trains the d×d matrix Q: its Jacobian has d⁴ entries
MAX_HEADS = 64               # attention heads (solvers.multihead.MAX_HEADS)
MAX_COMPOSITION_ENTRIES = 10**6   # K·C(N+K−1, K−1) count-vector entries of several heads at finite N (solvers.multihead)
MAX_RECORDED_HEADS = 2.5e8   # H·K²·n_out recorded head scores (2 GB), checked before a run allocates them
MAX_PROMPTS = 10**6          # prompts of a finite training set (training.prompts)
MAX_TRAINING_SET_BYTES = 2 * 10**9   # an evaluation on M prompts holds about 10 arrays of M×(K+1) floats


def _describe(value):
    return repr(value) if isinstance(value, str) else str(value)


def _short(value, width=80):
    text = _describe(value)
    return text if len(text) <= width else text[:width] + "…"


def integer(lo=None, hi=None):
    """Return a parser of an integer in ``[lo, hi]`` (either bound optional).

    Every parser here is called ``parse(name, value)``, returns the validated value and
    raises :class:`AttnflowError` naming the field ``name`` when the value does not fit.
    """
    def parse(name, v):
        if isinstance(v, bool) or not isinstance(v, int):
            raise AttnflowError(name, f"expected an integer, got {_short(v)}")
        if lo is not None and v < lo:
            raise AttnflowError(name, f"expected an integer ≥ {lo}, got {v}")
        if hi is not None and v > hi:
            raise AttnflowError(name, f"expected an integer ≤ {hi:,}, got {v:,}")
        return v
    return parse


def real(lo=None, strict=True, hi=None, at_most=None):
    """Return a parser of a finite number.

    Parameters
    ----------
    lo : float, optional
        Lower bound, excluded when ``strict``, included otherwise.
    strict : bool
        Whether ``lo`` itself is refused.
    hi : float, optional
        Upper bound, excluded.
    at_most : float, optional
        Largest magnitude allowed, included.
    """
    def parse(name, v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise AttnflowError(name, f"expected a number, got {_short(v)}")
        v = float(v)
        if not math.isfinite(v):
            raise AttnflowError(name, f"expected a finite number, got {v}")
        if lo is not None and (v <= lo if strict else v < lo):
            raise AttnflowError(name, f"expected a number {'>' if strict else '≥'} {lo:g}, got {v:g}")
        if hi is not None and v >= hi:
            raise AttnflowError(name, f"expected a number < {hi:g}, got {v:g}")
        if at_most is not None and abs(v) > at_most:
            raise AttnflowError(name, f"expected a number of magnitude ≤ {at_most:g}, got {v:g}")
        return v
    return parse


def choice(options):
    """Return a parser that accepts exactly one of ``options``."""
    def parse(name, v):
        if v not in options:
            raise AttnflowError(name, f"expected one of {', '.join(map(repr, options))}, got {_short(v)}")
        return v
    return parse


def boolean(name, v):
    """Parse ``true`` or ``false`` (not a number standing for one)."""
    if not isinstance(v, bool):
        raise AttnflowError(name, f"expected true or false, got {_short(v)}")
    return v


def string(name, v):
    """Parse a string of at most ``MAX_TEXT`` characters."""
    if not isinstance(v, str):
        raise AttnflowError(name, f"expected a string, got {_short(v)}")
    if len(v) > MAX_TEXT:
        raise AttnflowError(name, f"is {len(v)} characters long; at most {MAX_TEXT} are allowed")
    return v


def table(name, v):
    """Parse a table of at most ``MAX_PARAMETERS`` entries, each a number or a law such as ``"normal(0, 1)"``."""
    if not isinstance(v, dict):
        raise AttnflowError(name, f"expected a table such as {{ w = \"normal(0, 1)\" }}, got {_short(v)}")
    if len(v) > MAX_PARAMETERS:
        raise AttnflowError(name, f"has {len(v)} entries; at most {MAX_PARAMETERS} are supported")
    for key, value in v.items():
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise AttnflowError(f"{name}.{key}", f"expected a number or a law such as \"normal(0, 1)\", "
                                                 f"got {_short(value)}")
        if isinstance(value, str):
            string(f"{name}.{key}", value)
    return dict(v)


def optional(parse):
    """Return a parser that accepts None (the field left unset) or what ``parse`` accepts."""
    return lambda name, v: None if v is None else parse(name, v)


def real_list(lo=None, strict=True, hi=None, min_len=1, max_len=MAX_K, at_most=MAX_MAGNITUDE):
    """Return a parser of a list of ``min_len`` to ``max_len`` numbers, each checked as :func:`real` does."""
    item = real(lo, strict, hi, at_most)

    def parse(name, v):
        if not isinstance(v, list) or not min_len <= len(v) <= max_len:
            raise AttnflowError(name, f"expected a list of {min_len} to {max_len} numbers, got {_short(v)}")
        return tuple(item(f"{name}[{i}]", x) for i, x in enumerate(v))
    return parse


def matrix(name, v):
    """Parse a rectangular list of lists of finite numbers of magnitude ≤ MAX_MAGNITUDE, at most MAX_K rows."""
    if not isinstance(v, list) or not v or not all(isinstance(r, list) for r in v):
        raise AttnflowError(name, f"expected a list of rows (a matrix), got {_short(v)}")
    if len(v) > MAX_K or len(v[0]) > MAX_D:
        raise AttnflowError(name, f"has {len(v)} rows of {len(v[0])} entries; at most {MAX_K} rows of "
                                  f"{MAX_D} entries are supported")
    width = len(v[0])
    item = real(at_most=MAX_MAGNITUDE)
    rows = []
    for i, r in enumerate(v):
        if len(r) != width:
            raise AttnflowError(name, f"row {i} has {len(r)} entries, row 0 has {width}")
        rows.append(tuple(item(f"{name}[{i}][{j}]", x) for j, x in enumerate(r)))
    return tuple(rows)


def prompt_length(name, v):
    """Parse a prompt length N: an integer in ``[1, MAX_N]``, or ``"inf"`` for the large-prompt limit."""
    if v == "inf" or v == math.inf:
        return math.inf
    return integer(1, MAX_N)(name, v)


def probabilities(name, v):
    """Parse feature probabilities: ``"uniform"`` or a list of positive numbers (their sum is checked later)."""
    if v == "uniform":
        return "uniform"
    p = real_list(0.0, strict=True, min_len=2)(name, v)
    return p


def prompt_count(name, v):
    """Parse a number of training prompts M: an integer in ``[1, MAX_PROMPTS]``.

    A float within 1e-9 (relative) of an integer counts as that integer, so a sweep's
    log-spaced grid (``training.prompts=100:1600:log:5``) gives prompt counts.
    """
    if isinstance(v, float) and math.isfinite(v) and abs(v - round(v)) <= 1e-9 * max(1.0, abs(v)):
        if v > MAX_PROMPTS:           # said as given: 1e300 as an integer is a 301-digit line
            raise AttnflowError(name, f"expected an integer ≤ {MAX_PROMPTS:,}, got {v:g}")
        v = int(round(v))
    return integer(1, MAX_PROMPTS)(name, v)


def step_size(name, v):
    """Parse a GD step size: a positive number, or ``"auto"``."""
    return "auto" if v == "auto" else real(0.0, at_most=MAX_MAGNITUDE)(name, v)


# --- the schema: section → key → (parser, default) ----------------------------------------

SCHEMA = {
    "features": {
        "kind": (choice(_features.KINDS), "orthonormal"),
        "K": (integer(2, MAX_K), 4),
        "d": (optional(integer(1, MAX_D)), None),
        "seed": (integer(0, MAX_SEED), 0),
        "matrix": (optional(matrix), None),
    },
    "task": {
        "kind": (choice(_classes.KINDS), "single-index"),
        "sigma": (optional(real(0.0, at_most=MAX_MAGNITUDE)), None),
        "L": (optional(real(0.0, at_most=MAX_MAGNITUDE)), None),
        "link": (choice(_classes.LINKS), "sin"),
        "expression": (optional(string), None),
        "parameters": (optional(table), None),
        "functions": (optional(matrix), None),
        "weights": (optional(real_list(0.0, strict=False)), None),
        "F": (optional(matrix), None),
        "moment_method": (choice(_classes.METHODS), "auto"),
        "mc_samples": (integer(2, MAX_MC), 200_000),
        "seed": (integer(0, MAX_SEED), 0),
    },
    "prompt": {
        "N": (prompt_length, math.inf),
        "p": (probabilities, "uniform"),
        "include_query": (boolean, False),
        "noise": (real(0.0, strict=False, at_most=100.0), 0.0),
        "quadrature_step": (real(0.0, hi=0.5000001), 0.125),
    },
    "model": {
        "parametrization": (choice(("merged", "separate")), "merged"),
        "head_dim": (optional(integer(1, MAX_HEAD_DIM)), None),
        "init_scale": (real(0.0, strict=False, at_most=1e3), 0.0),
        "seed": (integer(0, MAX_SEED), 0),
        "heads": (integer(1, MAX_HEADS), 1),
    },
    "training": {
        "mode": (choice(("flow", "gd", "both")), "flow"),
        "eta": (step_size, "auto"),
        "steps": (integer(1, MAX_STEPS), 10_000),
        "t_end": (real(MIN_T_END, strict=False, at_most=MAX_T_END), 1e6),
        "method": (choice(METHODS), "auto"),
        "rtol": (real(1e-13, strict=False, hi=1.0), 1e-8),      # below ~100 ε the solvers cannot meet it
        "atol": (real(1e-30, strict=False, at_most=1.0), 1e-10),
        "eps": (real_list(0.0, hi=1.0, max_len=16), (1e-2, 1e-3, 1e-4)),
        "stop_loss": (real(0.0, strict=False, at_most=MAX_MAGNITUDE**2), 0.0),
        "n_out": (integer(2, MAX_OUT), 400),
        "kernels": (choice(("generated", "hand-written")), "generated"),
        "prompts": (optional(prompt_count), None),
        "seed": (integer(0, MAX_SEED), 0),
    },
    "regime": {
        "threshold": (real(0.0, at_most=MAX_MAGNITUDE), 1.0),
    },
}


@dataclass(frozen=True)
class Section:
    """One validated section; fields are attributes (``section.K``).

    Attributes
    ----------
    name : str
        The section's name, e.g. ``"task"``.
    values : dict
        Every field of the section, after defaults.
    """

    name: str
    values: dict

    def __getattr__(self, key):
        try:
            return self.__dict__["values"][key]
        except KeyError:
            raise AttributeError(key) from None


@dataclass(frozen=True)
class Config:
    """A validated configuration; sections are attributes: ``cfg.task.L``, ``cfg.training.method``.

    Attributes
    ----------
    raw : dict
        What the user wrote (after overrides), echoed in the summary.
    sections : dict
        Section name → :class:`Section`.
    """

    raw: dict          # what the user wrote (after overrides), for the summary's echo
    sections: dict

    def __getattr__(self, key):
        try:
            return self.__dict__["sections"][key]
        except KeyError:
            raise AttributeError(key) from None

    def resolved(self):
        """Return every field with its value after defaults, as plain TOML-like data."""
        def plain(v):
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            if isinstance(v, float) and math.isinf(v):
                return "inf"
            return v
        return {s: {k: plain(v) for k, v in sec.values.items()} for s, sec in self.sections.items()}

    def with_overrides(self, overrides):
        """Return a new config with overrides applied to the raw input.

        Parameters
        ----------
        overrides : dict
            ``{"SECTION.KEY": value, …}``, e.g. ``{"task.L": 3.0}``.

        Returns
        -------
        Config

        Raises
        ------
        AttnflowError
            When a path is not ``SECTION.KEY`` or the new configuration is invalid.
        """
        raw = copy.deepcopy(self.raw)
        for path, value in overrides.items():
            section, _, key = path.partition(".")
            if not key:
                raise AttnflowError(path, "expected SECTION.KEY, e.g. task.L")
            raw.setdefault(section, {})[key] = value
        return from_dict(raw)


def from_dict(raw):
    """Validate a dict (as parsed from TOML) into a :class:`Config`.

    Parameters
    ----------
    raw : dict
        Section name → table of fields; a missing section or field takes its default.

    Returns
    -------
    Config

    Raises
    ------
    AttnflowError
        Naming the first unknown section or key, the first invalid value, or a
        combination this version cannot solve.
    """
    if not isinstance(raw, dict):
        raise AttnflowError("config", "expected a table of sections")
    for section in raw:
        if section not in SCHEMA:
            raise AttnflowError(section, f"unknown section (known: {', '.join(SCHEMA)})")
    sections = {}
    for section, spec in SCHEMA.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise AttnflowError(section, f"expected a [{section}] table, got {_describe(given)}")
        for key in given:
            if key not in spec:
                raise AttnflowError(f"{section}.{key}", f"unknown key (known in [{section}]: {', '.join(spec)})")
        values = {}
        for key, (parse, default) in spec.items():
            values[key] = parse(f"{section}.{key}", given[key]) if key in given else default
        sections[section] = Section(section, values)
    cfg = Config(copy.deepcopy(raw), sections)
    _check_supported(cfg)
    return cfg


def _given(cfg, path):
    section, key = path.split(".")
    return key in cfg.raw.get(section, {})


def _check_supported(cfg):
    """Reject combinations this version cannot solve, naming the field."""
    features = cfg.features
    if features.matrix is not None:
        rows, cols = len(features.matrix), len(features.matrix[0])
        if _given(cfg, "features.K") and features.K != rows:
            raise AttnflowError("features.K", f"is {features.K} but features.matrix has {rows} rows")
    else:
        rows, cols = features.K, features.d or features.K
    if rows * cols > MAX_KD:
        raise AttnflowError("features.d", f"K·d = {rows}·{cols} exceeds the supported {MAX_KD:,} entries")
    if cfg.prompt.noise > 0 and cols > MAX_NOISY_D:
        raise AttnflowError("features.d", f"token noise trains the d×d matrix Q: d ≤ {MAX_NOISY_D} is supported, "
                                          f"got {cols}")
    _check_dense_jacobians(cfg, rows, cols)
    if cfg.model.heads > 1:
        _check_heads(cfg, rows)
    if cfg.training.prompts is not None:
        _check_training_set(cfg, rows)
    if cfg.prompt.noise > 0:
        # The noisy model integrates the context tokens' noise in closed form, which needs
        # a linear class and the large-prompt limit (solvers/noisy.py).
        needs = [(cfg.task.kind != "linear", "task.kind = \"linear\""),
                 (cfg.prompt.N != math.inf, "prompt.N = \"inf\""),
                 (cfg.prompt.include_query, "prompt.include_query = false"),
                 (cfg.model.parametrization != "merged", "model.parametrization = \"merged\"")]
        missing = [what for bad, what in needs if bad]
        if missing:
            raise AttnflowError("prompt.noise", "token noise is supported with " + ", ".join(missing)
                                + " only in this version")


def _check_heads(cfg, K):
    """Refuse several heads where they are not modelled (solvers/multihead.py), or that would not fit in memory."""
    from ...solvers.multihead import composition_excess   # the solver's own bound, one definition
    model, training, H = cfg.model, cfg.training, cfg.model.heads
    needs = [(model.parametrization != "merged", "model.parametrization = \"merged\""),
             (cfg.prompt.noise > 0, "prompt.noise = 0")]
    missing = [what for bad, what in needs if bad]
    if missing:
        raise AttnflowError("model.heads", f"{H} heads are supported with " + ", ".join(missing) + " only in this version")
    if cfg.prompt.N != math.inf:
        too_many = composition_excess(cfg.prompt.N, K)
        if too_many:
            raise AttnflowError("prompt.N", too_many)
    if model.init_scale == 0:
        raise AttnflowError("model.init_scale", f"{H} heads need a random start (> 0): heads started equal get equal "
                                                "gradients and stay identical, one head's dynamics")
    if H * K * K * training.n_out > MAX_RECORDED_HEADS:
        raise AttnflowError("model.heads", f"{H} heads of K² = {K * K} scores at {training.n_out} output points are "
                                           f"{H * K * K * training.n_out:,} numbers; at most {MAX_RECORDED_HEADS:,.0f} "
                                           "are supported (fewer heads or training.n_out)")
    # Implicit flows form the (H·K²)² Jacobian; GD's step size needs the K·(HK)² column Hessians.
    # "auto" is Rodas4P2 at finite N without the query in the softmax (solvers.flow.auto_method judges
    # the heads by their score system).
    stiff_auto = training.method == "auto" and cfg.prompt.N != math.inf and not cfg.prompt.include_query
    implicit = training.mode != "gd" and (training.method in ("LSODA", "Radau", "BDF", "Rodas4P2-compiled")
                                          or stiff_auto)
    if implicit and H * K * K > MAX_DENSE_JACOBIAN:
        which, instead = (("auto (Rodas4P2 at finite N without the query)", "\"DOP853-compiled\"") if stiff_auto else
                          (training.method, "\"auto\""))
        raise AttnflowError("model.heads", f"{which} needs the dense (H·K²)² Jacobian, {_gigabytes(H * K * K)} "
                                           f"at H = {H}, K = {K}; use {instead} or H·K² ≤ {MAX_DENSE_JACOBIAN}")
    if training.mode != "flow" and H * H * K**3 > MAX_K**3:
        raise AttnflowError("model.heads", f"GD's step size needs the column Hessians of {H} heads, H²K³ = "
                                           f"{H * H * K**3:,} numbers; at most {MAX_K**3:,} are supported")
def _check_training_set(cfg, K):
    """Refuse a finite training set this version cannot train on, or one too large to hold."""
    M = cfg.training.prompts
    if cfg.prompt.noise > 0:
        raise AttnflowError("training.prompts", "a finite training set with token noise (prompt.noise > 0) is not "
                                                "supported yet; leave out one of them")
    if cfg.model.parametrization != "merged":
        raise AttnflowError("training.prompts", "a finite training set is supported with model.parametrization = "
                                                "\"merged\" only in this version")
    if cfg.model.heads > 1:
        raise AttnflowError("training.prompts", "a finite training set is supported with one head (model.heads = 1) "
                                                "only in this version")
    need = 10 * M * (K + 1) * 8
    if need > MAX_TRAINING_SET_BYTES:
        raise AttnflowError("training.prompts", f"M = {M:,} prompts of K = {K} features need about "
                                                f"{need / 1e9:.3g} GB per evaluation (10 arrays of M×(K+1) floats); "
                                                f"at most {MAX_TRAINING_SET_BYTES / 1e9:g} GB: give M ≤ "
                                                f"{MAX_TRAINING_SET_BYTES // (80 * (K + 1)):,}")


def _gigabytes(side):
    return f"{side * side * 8 / 1e9:.3g} GB"


def _check_dense_jacobians(cfg, K, d):
    """Refuse, before anything is allocated, a run that would form a Jacobian with more than
    MAX_DENSE_JACOBIAN² entries: the implicit solvers (LSODA, Radau, BDF, Rodas4P2, which also factorise
    it) on the K² scores or the 2hK separate factors, and the separate factors' stable step
    (the eigenvalues of theirs; every GD run computes it).  The scores' own stable step is
    matrix-free (:mod:`solvers.stability`); the noisy model's d² state is bounded by MAX_NOISY_D."""
    training = cfg.training
    # "auto" runs Rodas4P2 (dense Jacobian, LU) for a finite prompt without the query in the
    # softmax (solvers.flow.auto_method), and the Radau fallback for separate factors there.
    stiff_auto = (training.method == "auto" and math.isfinite(cfg.prompt.N) and not cfg.prompt.include_query)
    implicit_flow = training.mode != "gd" and (
        training.method in ("LSODA", "Radau", "BDF", "Rodas4P2-compiled") or stiff_auto)
    if cfg.prompt.noise > 0:
        return
    if cfg.model.parametrization == "separate":
        h = cfg.model.head_dim or d
        side = 2 * h * K
        if side > MAX_DENSE_JACOBIAN and (implicit_flow or training.mode != "flow"):
            user = "GD's step size (its stability limit)" if training.mode != "flow" else training.method
            largest = min(MAX_HEAD_DIM, MAX_DENSE_JACOBIAN // (2 * K))
            raise AttnflowError("model.head_dim", f"{user} needs the dense Jacobian of the separate factors, "
                                                  f"(2·h·K)² = {side}² entries ({_gigabytes(side)}) at h = {h}, "
                                                  f"K = {K}; give model.head_dim ≤ {largest}")
    elif implicit_flow and K * K > MAX_DENSE_JACOBIAN:
        which = "auto (Rodas4P2 at finite N without the query)" if stiff_auto else training.method
        raise AttnflowError("training.method", f"{which} needs the dense K²×K² Jacobian "
                                               f"({_gigabytes(K * K)} at K = {K}); use \"DOP853-compiled\" "
                                               f"or K ≤ {math.isqrt(MAX_DENSE_JACOBIAN)}")


# (field, applies(cfg) → bool, why it has no effect otherwise): settings a user may give that the
# chosen mode or model never reads.  They are accepted, and the run says so (summary and stderr).
_EFFECTIVE_ONLY_IF = [
    ("model.head_dim", lambda c: c.model.parametrization == "separate", "unless model.parametrization = \"separate\""),
    ("prompt.quadrature_step", lambda c: c.prompt.N != math.inf and c.model.heads == 1,
     "at N = inf or with several heads (it is the step of the one-head finite-N quadrature; several heads sum "
     "over the prompt's count vectors exactly)"),
    ("prompt.include_query", lambda c: c.prompt.N != math.inf,
     "at N = inf: the query's share of the softmax is O(1/N); give a finite N to see it"),
    ("features.seed", lambda c: c.features.kind == "random-unit", "unless features.kind = \"random-unit\""),
    ("task.link", lambda c: c.task.kind == "single-index", "unless task.kind = \"single-index\""),
    ("task.mc_samples", lambda c: c.task.moment_method == "monte-carlo", "unless task.moment_method = \"monte-carlo\""),
    ("model.seed", lambda c: c.model.init_scale > 0, "without a random start (model.init_scale > 0)"),
    ("training.seed", lambda c: c.training.prompts is not None, "without training.prompts (it draws the training set)"),
]
_EFFECTIVE_ONLY_IF += [(f"training.{key}", lambda c: c.training.mode != "gd", "when training.mode = \"gd\"")
                       for key in ("t_end", "method", "rtol", "atol")]
_EFFECTIVE_ONLY_IF += [(f"training.{key}", lambda c: c.training.mode != "flow", "when training.mode = \"flow\"")
                       for key in ("eta", "steps")]


def inert_settings(cfg):
    """Return notes on the settings given explicitly that this configuration never reads.

    Returns
    -------
    list of str
        One sentence per inert setting, e.g. ``"model.head_dim has no effect unless …"``.
    """
    return [f"{path} has no effect {why}" for path, applies, why in _EFFECTIVE_ONLY_IF if _given(cfg, path) and not applies(cfg)]


def load(path, overrides=None):
    """Read a TOML file (an empty file is valid) and validate it.

    Parameters
    ----------
    path : str or Path
        The configuration file (at most ``MAX_CONFIG_BYTES``, UTF-8).
    overrides : dict, optional
        ``{"SECTION.KEY": value}`` applied after reading (``--set``).

    Returns
    -------
    Config

    Raises
    ------
    AttnflowError
        Naming the file when it cannot be read or is not TOML, else the field at fault.
    """
    path = Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise AttnflowError(str(path), "is not a regular file (a directory, a device or a pipe); "
                                           "a config file is TOML text")
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)          # never more, whatever the file claims
        if len(data) > MAX_CONFIG_BYTES:
            raise AttnflowError(str(path), f"is larger than {MAX_CONFIG_BYTES:,} bytes, the most a config file may be")
        text = data.decode("utf-8")
    except OSError as e:
        raise AttnflowError(str(path), f"cannot read the config file ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise AttnflowError(str(path), f"is not UTF-8 text (byte {e.start}); a config file is TOML in UTF-8") from None
    cfg = loads(text, source=str(path))
    return cfg.with_overrides(overrides) if overrides else cfg


def loads(text, source="config"):
    """Validate a configuration given as TOML text.

    Parameters
    ----------
    text : str
        TOML.
    source : str
        Name given in the error when the text is not TOML.

    Returns
    -------
    Config
    """
    try:
        raw = tomllib.loads(text)
        return from_dict(raw)
    except tomllib.TOMLDecodeError as e:
        raise AttnflowError(source, f"not valid TOML ({e})") from None
    except RecursionError:
        raise AttnflowError(source, "nests arrays or tables too deeply") from None


def default():
    """Return the configuration of every default value."""
    return from_dict({})
