"""Configuration: TOML → validated, frozen sections; every field has a default.

The schema below is the whole public surface of a config file
(see ``../shared/design/contract.md``).  Unknown sections and keys, values of the
wrong type and values out of range all raise :class:`AttnflowError` naming the
field, e.g. ``task.L: expected a number > 0, got -1``.
"""

import copy
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from . import features as _features
from . import function_classes as _classes
from .errors import AttnflowError

METHODS = ("LSODA", "Radau", "BDF", "RK45", "DOP853")


# --- value parsers: each takes (field, value) and returns the parsed value -------------

def _describe(value):
    return repr(value) if isinstance(value, str) else str(value)


def integer(lo=None):
    def parse(name, v):
        if isinstance(v, bool) or not isinstance(v, int):
            raise AttnflowError(name, f"expected an integer, got {_describe(v)}")
        if lo is not None and v < lo:
            raise AttnflowError(name, f"expected an integer ≥ {lo}, got {v}")
        return v
    return parse


def real(lo=None, strict=True, hi=None):
    def parse(name, v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise AttnflowError(name, f"expected a number, got {_describe(v)}")
        v = float(v)
        if not math.isfinite(v):
            raise AttnflowError(name, f"expected a finite number, got {v}")
        if lo is not None and (v <= lo if strict else v < lo):
            raise AttnflowError(name, f"expected a number {'>' if strict else '≥'} {lo:g}, got {v:g}")
        if hi is not None and v >= hi:
            raise AttnflowError(name, f"expected a number < {hi:g}, got {v:g}")
        return v
    return parse


def choice(options):
    def parse(name, v):
        if v not in options:
            raise AttnflowError(name, f"expected one of {', '.join(map(repr, options))}, got {_describe(v)}")
        return v
    return parse


def boolean(name, v):
    if not isinstance(v, bool):
        raise AttnflowError(name, f"expected true or false, got {_describe(v)}")
    return v


def string(name, v):
    if not isinstance(v, str):
        raise AttnflowError(name, f"expected a string, got {_describe(v)}")
    return v


def table(name, v):
    if not isinstance(v, dict):
        raise AttnflowError(name, f"expected a table such as {{ w = \"normal(0, 1)\" }}, got {_describe(v)}")
    return dict(v)


def optional(parse):
    return lambda name, v: None if v is None else parse(name, v)


def real_list(lo=None, strict=True, hi=None, min_len=1):
    item = real(lo, strict, hi)

    def parse(name, v):
        if not isinstance(v, list) or len(v) < min_len:
            raise AttnflowError(name, f"expected a list of at least {min_len} number(s), got {_describe(v)}")
        return tuple(item(f"{name}[{i}]", x) for i, x in enumerate(v))
    return parse


def matrix(name, v):
    """A rectangular list of lists of finite numbers."""
    if not isinstance(v, list) or not v or not all(isinstance(r, list) for r in v):
        raise AttnflowError(name, f"expected a list of rows (a matrix), got {_describe(v)}")
    width = len(v[0])
    item = real()
    rows = []
    for i, r in enumerate(v):
        if len(r) != width:
            raise AttnflowError(name, f"row {i} has {len(r)} entries, row 0 has {width}")
        rows.append(tuple(item(f"{name}[{i}][{j}]", x) for j, x in enumerate(r)))
    return tuple(rows)


def prompt_length(name, v):
    if v == "inf" or v == math.inf:
        return math.inf
    return integer(1)(name, v)


def probabilities(name, v):
    if v == "uniform":
        return "uniform"
    p = real_list(0.0, strict=True, min_len=2)(name, v)
    return p


def step_size(name, v):
    return "auto" if v == "auto" else real(0.0)(name, v)


# --- the schema: section → key → (parser, default) ----------------------------------------

SCHEMA = {
    "features": {
        "kind": (choice(_features.KINDS), "orthonormal"),
        "K": (integer(2), 4),
        "d": (optional(integer(1)), None),
        "seed": (integer(0), 0),
        "matrix": (optional(matrix), None),
    },
    "task": {
        "kind": (choice(_classes.KINDS), "single-index"),
        "sigma": (optional(real(0.0)), None),
        "L": (optional(real(0.0)), None),
        "link": (choice(_classes.LINKS), "sin"),
        "expression": (optional(string), None),
        "parameters": (optional(table), None),
        "functions": (optional(matrix), None),
        "weights": (optional(real_list(0.0, strict=False)), None),
        "F": (optional(matrix), None),
        "moment_method": (choice(_classes.METHODS), "auto"),
        "mc_samples": (integer(2), 200_000),
        "seed": (integer(0), 0),
    },
    "prompt": {
        "N": (prompt_length, math.inf),
        "p": (probabilities, "uniform"),
        "include_query": (boolean, False),
        "noise": (real(0.0, strict=False), 0.0),
        "quadrature_step": (real(0.0, hi=0.5000001), 0.125),
    },
    "model": {
        "parametrization": (choice(("merged", "separate")), "merged"),
        "head_dim": (optional(integer(1)), None),
        "init_scale": (real(0.0, strict=False), 0.0),
        "seed": (integer(0), 0),
    },
    "training": {
        "mode": (choice(("flow", "gd", "both")), "flow"),
        "eta": (step_size, "auto"),
        "steps": (integer(1), 10_000),
        "t_end": (real(0.0), 1e6),
        "method": (choice(METHODS), "LSODA"),
        "rtol": (real(0.0, hi=1.0), 1e-8),
        "atol": (real(0.0), 1e-10),
        "eps": (real_list(0.0, hi=1.0), (1e-2, 1e-3, 1e-4)),
        "stop_loss": (real(0.0, strict=False), 0.0),
        "n_out": (integer(2), 400),
        "kernels": (choice(("generated", "hand-written")), "generated"),
    },
    "regime": {
        "threshold": (real(0.0), 1.0),
    },
}


@dataclass(frozen=True)
class Section:
    """One validated section; fields are attributes."""

    name: str
    values: dict

    def __getattr__(self, key):
        try:
            return self.__dict__["values"][key]
        except KeyError:
            raise AttributeError(key) from None


@dataclass(frozen=True)
class Config:
    """A validated configuration: ``cfg.task.L``, ``cfg.training.method`` …"""

    raw: dict          # what the user wrote (after overrides), for the summary's echo
    sections: dict

    def __getattr__(self, key):
        try:
            return self.__dict__["sections"][key]
        except KeyError:
            raise AttributeError(key) from None

    def resolved(self):
        """Every field with its value after defaults, as plain TOML-like data."""
        def plain(v):
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            if isinstance(v, float) and math.isinf(v):
                return "inf"
            return v
        return {s: {k: plain(v) for k, v in sec.values.items()} for s, sec in self.sections.items()}

    def with_overrides(self, overrides):
        """A new config with ``{"task.L": 3.0, …}`` applied to the raw input."""
        raw = copy.deepcopy(self.raw)
        for path, value in overrides.items():
            section, _, key = path.partition(".")
            if not key:
                raise AttnflowError(path, "expected SECTION.KEY, e.g. task.L")
            raw.setdefault(section, {})[key] = value
        return from_dict(raw)


def from_dict(raw):
    """Validate a dict (as parsed from TOML) into a :class:`Config`."""
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


def _check_supported(cfg):
    """Reject combinations this version cannot solve, naming the field."""
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


def load(path, overrides=None):
    """Read a TOML file (an empty file is valid) and validate it."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise AttnflowError(str(path), f"cannot read the config file ({e.strerror})") from None
    cfg = loads(text, source=str(path))
    return cfg.with_overrides(overrides) if overrides else cfg


def loads(text, source="config"):
    """Validate a configuration given as TOML text."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise AttnflowError(source, f"not valid TOML ({e})") from None
    return from_dict(raw)


def default():
    return from_dict({})
