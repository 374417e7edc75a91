"""The teaching notebooks (jupytext percent scripts in notebooks/) run in a Jupyter kernel without errors."""

import json
import re
import sys
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CELL_TIMEOUT = 180          # seconds per cell; each notebook takes ~20 s warm, Numba may compile on first use


def _execute(name, monkeypatch):
    """Run one notebook in a python3 kernel from the repository root; return the notebook and its outputs' text."""
    # The kernel is a subprocess: it imports this checkout's attnflow (not an installed copy) from
    # its working directory, and draws with the inline backend.
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nb = jupytext.read(NOTEBOOKS / f"{name}.py")
    nb.cells.append(nbformat.v4.new_code_cell("import sys, attnflow\n"
                                              "print('attnflow from', attnflow.__file__, 'in', sys.executable)"))
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, startup_timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    texts, images = [], 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", "\n".join(output.get("traceback", []))
            if output["output_type"] == "stream":
                texts.append(output["text"])
            data = output.get("data", {})
            images += "image/png" in data
            texts.append(data.get("text/plain", "") + data.get("text/html", ""))
    text = "\n".join(texts)
    assert f"attnflow from {ROOT / 'attnflow' / '__init__.py'} in {sys.executable}" in text    # this venv's python
    return nb, text, images


@pytest.mark.slow
def test_derivation_walkthrough(monkeypatch):
    _, text, _ = _execute("derivation_walkthrough", monkeypatch)
    assert "SymPy verified" in text and "Hessian in the scores" in text
    assert '<math display="block">' in text
    assert "Eq(g_2, a_2*(-B + u_2))" in text            # the stage's equation, as SymPy returned it


@pytest.mark.slow
def test_flat_and_sharp(monkeypatch):
    _, text, images = _execute("flat_and_sharp", monkeypatch)
    assert images >= 1
    fell = re.search(r"loss fell: (\{.*\})", text).group(1)
    assert json.loads(fell.replace("'", '"').replace("True", "true").replace("False", "false")) == {
        "flat flow": True, "flat gd": True, "sharp flow": True, "sharp gd": True}
    departure = re.search(r"GD departs from the flow by \{'flat': '(\d+)%', 'sharp': '(\d+)%'\}", text)
    assert int(departure.group(1)) < 5 < 30 < int(departure.group(2))


@pytest.mark.slow
def test_phase_diagram(monkeypatch):
    nb, _, images = _execute("phase_diagram", monkeypatch)
    assert images >= 1
    slopes = nb.cells[-2]["outputs"][0]["data"]["text/plain"]       # the last cell of the notebook itself
    values = [float(x) for x in re.findall(r"-?\d+\.\d*", slopes)]
    assert len(values) == 3 and all(abs(v + 2) < 1e-3 for v in values), slopes
