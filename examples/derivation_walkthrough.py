"""A walk through the derivation for K = 2 and K = 3, one stage at a time.

Run:  python examples/derivation_walkthrough.py [--out DIR]

For each K it calls the SymPy stages of ``derivations.stages`` one by one, prints
what each derived and what SymPy verified, checks the pull-back on the full d×d
model for K = 2, shows the Numba code generated from the derived expressions, and
writes the whole derivation as Markdown, LaTeX and an HTML page for a concrete problem.
"""

import argparse
from pathlib import Path

import sympy as sp

from attnflow.derivations import asymptotics, codegen, stages
from attnflow.derivations.notation import Display
from attnflow.dynamics.problem import config
from attnflow.dynamics.reporting.derivation_report import render
from attnflow.dynamics.files import write_text
from attnflow.dynamics.problem import Problem


def show(stage):
    print(f"\n== {stage.title} ({stage.name})")
    for eq in stage.equations:
        # A Display is an equation typeset by hand (its SymPy parts feed the HTML page); show its LaTeX.
        text = eq.to_latex() if isinstance(eq, Display) else sp.pretty(eq, use_unicode=True)
        print("   ", text.replace("\n", "\n    "))
    for check in stage.checks:
        print("    ✓ SymPy:", check)


def walk(K, out):
    print(f"\n######## K = {K} ########")
    for make in (stages.network, stages.large_prompt_limit, stages.softmax_derivative):
        show(make(K))
    loss = stages.column_loss(K)                 # ℓ = ½ aᵀMa
    gradient = stages.column_gradient(loss)      # g = a ∘ (Ma − aᵀMa)
    hessian = stages.column_hessian(gradient)    # H = DMD + diag(g) − gaᵀ − agᵀ
    for st in (loss, gradient, hessian, stages.pull_back(K), stages.flow_jacobian(K), stages.gd_map(K)):
        show(st)
    print("\n   H_12 factored:", sp.factor(hessian.data["hessian"][0, 1]))
    show(asymptotics.late_phase_stage(K))
    if K == 2:
        print("\n   ∇_Q ℒ − Vᵀ Γ V on the full 2×2 model, simplified:", list(stages.verify_pull_back(2, 2)))
    print("\n   Generated Numba code for the column gradient (the same loops for every K):")
    print("   " + codegen.column_source().split("\n\n\n")[0].replace("\n", "\n   "))

    cfg = config.loads(f'[features]\nkind = "simplex"\nK = {K}\nd = {K - 1}\n[task]\nkind = "linear"\n')
    problem = Problem.from_config(cfg)
    write_text(out / f"derivation_K{K}.md", render(problem, cfg.training, "markdown"))
    write_text(out / f"derivation_K{K}.tex", render(problem, cfg.training, "latex"))
    write_text(out / f"derivation_K{K}.html", render(problem, cfg.training, "html"))
    print(f"\n   wrote {out / f'derivation_K{K}.md'}, .tex and .html (open it in a browser)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="derivation-walkthrough",
                        help="directory for the Markdown, LaTeX and HTML derivations, created if missing (default: %(default)s)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for K in (2, 3):
        walk(K, out)


if __name__ == "__main__":
    main()
