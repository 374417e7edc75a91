"""The example scripts run as a user runs them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")


@pytest.mark.slow
def test_figures_example_writes_six_figures(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "figures.py"), "--out", str(tmp_path), "--quick"],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    names = {"flat_and_sharp", "many_L", "phase_diagram", "step_size", "degenerate", "balanced_imbalanced"}
    assert {p.stem for p in tmp_path.glob("*.png")} == names
    assert all(p.stat().st_size > 10_000 for p in tmp_path.glob("*.png"))


@pytest.mark.slow
def test_quickstart_and_walkthrough(tmp_path):
    quick = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], env=ENV, cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
    assert quick.returncode == 0, quick.stderr
    assert "flat regime" in quick.stdout and "GD: finished" in quick.stdout
    walk = subprocess.run([sys.executable, str(ROOT / "examples" / "derivation_walkthrough.py"), "--out", str(tmp_path)],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert walk.returncode == 0, walk.stderr
    assert "✓ SymPy" in walk.stdout and (tmp_path / "derivation_K3.tex").exists()
    assert (tmp_path / "derivation_K3.html").read_text(encoding="utf-8").count("<math display=\"block\">") > 20


@pytest.mark.slow
def test_variants_example_draws_every_variant_into_out(tmp_path):
    out = tmp_path / "new" / "dir"                  # --out creates it (a path argument once gave a TypeError)
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "variants.py"), "--out", str(out)], env=ENV,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("finished") == 5 and (out / "variants.png").stat().st_size > 20_000
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["variants.png"]


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "examples").glob("*.py")))
def test_example_help_prints_usage_and_runs_nothing(tmp_path, script):
    """--help used to run variants.py in full before failing on the argument."""
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--help"], env=ENV, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:") and proc.stderr == ""
    assert list(tmp_path.iterdir()) == []           # nothing computed, nothing written
    if script != "quickstart.py":                   # the quickstart takes no options
        assert "--out" in proc.stdout
