"""``attnflow derive --format html``: one self-contained page, its equations MathML printed from SymPy."""

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest

from attnflow.derivations import export, html, stages
from attnflow.derivations.notation import Display
from attnflow.dynamics.cli import main
from attnflow.dynamics.problem import Problem, config
from attnflow.dynamics.reporting.derivation_report import derivation_blocks

MATHML = {"math", "mi", "mn", "mo", "mrow", "msub", "msup", "msubsup", "mfrac", "msqrt", "mover", "munderover",
          "mtable", "mtr", "mtd", "mspace", "mtext"}
VARIANTS = ('[features]\nkind = "simplex"\nK = 3\nd = 2\n[task]\nkind = "linear"\nsigma = 0.5\n'
            '[prompt]\nN = 6\ninclude_query = true\n[model]\nparametrization = "separate"\ninit_scale = 0.3\n')
LARGE_K_NOISE = '[features]\nkind = "random-unit"\nK = 5\nd = 4\n[task]\nkind = "linear"\n[prompt]\nnoise = 0.1\n'


class _Elements(HTMLParser):
    """Every start tag with its attributes, in order, and the text inside <math> elements."""

    def __init__(self):
        super().__init__()
        self.tags, self.math_text, self.depth = [], [], 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.depth += tag == "math"

    def handle_endtag(self, tag):
        self.depth -= tag == "math"

    def handle_data(self, data):
        if self.depth:
            self.math_text.append(data)


@pytest.fixture(scope="module", params=[VARIANTS, LARGE_K_NOISE], ids=["K3-variants", "K5-noise-indexed"])
def rendered(request):
    """(problem, blocks, Markdown, HTML) of one configuration; the blocks are built once for both formats."""
    cfg = config.loads(request.param)
    problem = Problem.from_config(cfg)
    blocks = derivation_blocks(problem, cfg.training)
    title = f"attnflow: score dynamics for K = {problem.K}"
    return problem, blocks, export.to_markdown(blocks), html.to_html(blocks, title=title)


def test_one_block_math_element_per_displayed_equation(rendered):
    problem, blocks, markdown, page = rendered
    displayed_in_markdown = len(re.findall(r"^\$\$\n.*?\n\$\$$", markdown, flags=re.S | re.M))
    assert displayed_in_markdown == sum(kind == "eq" for kind, _ in blocks) > 10
    parser = _Elements()
    parser.feed(page)
    block_math = [a for tag, a in parser.tags if tag == "math" and a.get("display") == "block"]
    assert len(block_math) == displayed_in_markdown
    inline_math = [a for tag, a in parser.tags if tag == "math" and "display" not in a]
    assert len(inline_math) > 20                         # the texts' $…$ math is MathML too


def test_every_equation_is_printed_from_a_sympy_expression(rendered):
    _, blocks, _, _ = rendered
    equations = [content for kind, content in blocks if kind == "eq"]
    assert [e for e in equations if isinstance(e, str)] == []
    assert all(isinstance(e, Display) or hasattr(e, "free_symbols") for e in equations)
    with pytest.raises(TypeError, match="SymPy expression"):
        html.equation_mathml(r"\dot S = -G \Gamma G")


def test_page_is_self_contained_and_well_formed(rendered):
    problem, _, _, page = rendered
    assert page.startswith("<!DOCTYPE html>\n<html lang=\"en\">")
    assert '<meta charset="utf-8"/>' in page and f"<title>attnflow: score dynamics for K = {problem.K}</title>" in page
    assert "<script" not in page.lower() and "http" not in page.lower() and "@import" not in page
    assert not re.search(r"\b(src|href)\s*=", page)
    page.encode("utf-8")
    root = ET.fromstring(page.split("\n", 1)[1])          # well-formed XML as well as HTML
    maths = root.findall(".//math")
    assert maths and all(len(m) > 0 and {child.tag for child in m.iter()} <= MATHML for m in maths)


def test_math_holds_no_latex_left_untranslated(rendered):
    _, _, _, page = rendered
    parser = _Elements()
    parser.feed(page)
    text = "".join(parser.math_text)
    assert "\\" not in text and "$" not in text, re.findall(r"\\\w+", text)[:10]
    assert "&" not in re.sub(r"&(lt|gt|amp);", "", page)  # characters, not named entities


def test_page_names_K_and_every_stage(rendered):
    problem, _, _, page = rendered
    assert f"K = {problem.K}" in page
    titles = [stage.title for stage in stages.derive(2).stages]
    assert [t for t in titles if f"<h2>{t}</h2>" not in page] == []
    variant_titles = ["Prompts of finite length N", "The query inside the softmax", "Separate key and query matrices"]
    if problem.noise > 0:
        variant_titles = ["Token noise"]
    assert all(f"<h2>{title}</h2>" in page for title in variant_titles)


def test_sympy_mathml_of_the_notation():
    import sympy as sp
    assert html.expression_mathml(sp.Symbol(r"\Gamma_{12}")) == "<msub><mi>Γ</mi><mn>12</mn></msub>"
    assert html.expression_mathml(sp.Symbol("Sdot_il")) == (
        '<msub><mover accent="true"><mi>S</mi><mo>⋅</mo></mover><mrow><mi>i</mi><mi>l</mi></mrow></msub>')
    G, Gamma = sp.MatrixSymbol("G", 3, 3), sp.MatrixSymbol("Gamma", 3, 3)
    assert html.expression_mathml(-G * Gamma * G.T).startswith("<mrow><mo>−</mo>")
    assert "<mo>⊤</mo>" in html.expression_mathml(G.T)
    assert html.tex_to_mathml(r"\max_k (1 - A_{kk})").startswith(
        '<math><msub><mi>max</mi><mi>k</mi></msub><mspace width="0.17em"/>')


def test_cli_writes_the_page(tmp_path, capsys):
    cfg = tmp_path / "k2.toml"
    cfg.write_text('[features]\nkind = "orthonormal"\nK = 2\n[task]\nkind = "linear"\n')
    out = tmp_path / "derivation.html"
    assert main(["derive", str(cfg), "--format", "html", "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert page.count('<math display="block">') > 20 and "Score dynamics of softmax attention, K = 2" in page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["derivation.html", "k2.toml"]   # no temporary left
    capsys.readouterr()

    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed: the page was checked for structure only")
    png = tmp_path / "derive.png"
    proc = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={png}",
                           "--window-size=1000,1400", out.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and png.exists(), proc.stderr[-2000:]
    import matplotlib.image
    pixels = matplotlib.image.imread(png)[..., :3]
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 10                             # text and equations drawn, not a blank page
    dark = (pixels.mean(axis=2) < 0.5).mean()
    assert 0.005 < dark < 0.5                            # ink on a white page
