"""One namespace: the layers are ``attnflow.dynamics``, ``attnflow.solvers`` and
``attnflow.derivations``, never top-level modules, and the version is one number."""

import ast
import subprocess
import sys
from pathlib import Path

import attnflow

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("dynamics", "solvers", "derivations")


def _python(code, cwd):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_layers_are_not_top_level_modules(tmp_path):
    """Outside the source tree (as an installed user sees it) only ``attnflow`` is importable."""
    out = _python("import importlib.util as u, attnflow.solvers\n"
                  f"print([u.find_spec(n) for n in {LAYERS!r}])", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[None, None, None]"


def test_version_is_the_same_everywhere(tmp_path):
    cli = subprocess.run([sys.executable, "-m", "attnflow", "--version"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == f"attnflow {attnflow.__version__}"
    assert attnflow.__version__.count(".") == 2


def test_public_names_resolve():
    for name in attnflow.__all__:
        assert getattr(attnflow, name) is not None, name
    assert set(attnflow.__all__) <= set(dir(attnflow))


def _imported_modules(path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", node.level


def test_no_file_imports_a_layer_by_its_bare_name():
    """A bare ``import solvers`` would load a second copy of the module (two AttnflowError classes)."""
    offenders = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        if path.parts[len(ROOT.parts)] in ("attnflow", "build") or ".egg-info" in str(path):
            continue
        for module, level in _imported_modules(path):
            if level == 0 and module.split(".")[0] in LAYERS:
                offenders.append(f"{path.relative_to(ROOT)}: {module}")
    assert not offenders, "\n".join(offenders)


def _layer_of(path):
    """'solvers', 'solvers.references', 'derivations', 'dynamics.problem', … for a source file."""
    parts = path.relative_to(ROOT).parts
    if parts[0] == "dynamics" and len(parts) > 2:
        return f"dynamics.{parts[1]}"
    if parts[:2] == ("solvers", "references"):
        return "solvers.references"
    return parts[0] if len(parts) > 2 or parts[0] != "dynamics" else f"dynamics.{Path(parts[1]).stem}"


def _absolute(path, module, level):
    """The absolute module an import names, relative to the repository root's layer folders."""
    if level == 0:
        return module.removeprefix("attnflow.")
    package = list(path.relative_to(ROOT).parent.parts)
    base = package[:len(package) - (level - 1)]
    return ".".join(base + ([module] if module else []))


# Which layers each layer may import (besides itself): data flow one way.
ALLOWED = {
    "derivations": {"solvers"},
    "solvers": set(),
    "solvers.references": {"solvers"},
    "dynamics.problem": {"solvers", "derivations", "dynamics.errors", "dynamics.files", "dynamics.progress"},
    "dynamics.analysis": {"solvers", "derivations", "dynamics.problem", "dynamics.reporting", "dynamics.errors",
                          "dynamics.files", "dynamics.progress"},
    "dynamics.reporting": {"solvers", "derivations", "dynamics.problem", "dynamics.analysis", "dynamics.errors",
                           "dynamics.files", "dynamics.progress"},
    "dynamics.commands": {"solvers", "derivations", "dynamics.problem", "dynamics.analysis", "dynamics.reporting",
                          "dynamics.errors", "dynamics.files", "dynamics.progress"},
}


def test_imports_point_one_way():
    """cli → commands → analysis, reporting → problem → solvers ← derivations; the references
    (enumeration, full model, sampled training, NumPy twins) are imported by no solver."""
    wrong = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        layer = _layer_of(path)
        if layer not in ALLOWED:
            continue
        for module, level in _imported_modules(path):
            target = _absolute(path, module, level)
            top = target.split(".")[0]
            if top not in LAYERS:
                continue
            target_layer = "solvers.references" if target.startswith("solvers.references") else (
                ".".join(target.split(".")[:2]) if top == "dynamics" else top)
            if target_layer != layer and target_layer not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not wrong, "\n".join(wrong)
