"""The model variants side by side: one figure, loss and target attention against time.

- merged Q at N = ∞ (the reference);
- a finite prompt (N = 8), with the query outside and inside the softmax;
- separate W_K, W_Q from a small random start (head dimension 2);
- token noise ν = 0.2 (full d×d model).

What to look for: at N = 8 the attention on the query's own feature levels off at
P(feature present) = 1 − (1 − p_k)^N, and with the query inside the softmax lower
still, at E[c_k/(c_k + 1)] (its score S_kk is tied to its own feature's tokens);
separate matrices start on a plateau (the saddle at W = 0) and then drop sharply;
noise leaves a loss floor.

Run:  python examples/variants.py [--out DIR]      (writes DIR/variants.png, a few seconds)
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from attnflow.dynamics.problem import config  # noqa: E402
from attnflow.dynamics.files import write_png  # noqa: E402
from attnflow.dynamics.reporting.plots import positive_times  # noqa: E402
from attnflow.dynamics.problem import Problem  # noqa: E402
from attnflow.solvers import integrate_flow  # noqa: E402

BASE = """
[features]
kind = "simplex"
K = 3
d = 2
[task]
kind = "linear"
"""

VARIANTS = {
    "merged, N = ∞": {},
    "N = 8": {"prompt": {"N": 8}},
    "N = 8, query in softmax": {"prompt": {"N": 8, "include_query": True}},
    "separate W_K, W_Q (h = 2, scale 0.1)": {"model": {"parametrization": "separate", "head_dim": 2,
                                                      "init_scale": 0.1}},
    "token noise ν = 0.2": {"prompt": {"noise": 0.2}},
}


def problem_for(changes):
    raw = config.loads(BASE).raw
    for section, values in changes.items():
        raw.setdefault(section, {}).update(values)
    return Problem.from_config(config.from_dict(raw))


def draw(out_dir="."):
    """Integrate every variant's flow and write ``out_dir/variants.png``; return its path."""
    fig, (ax_loss, ax_attn) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, changes in VARIANTS.items():
        problem = problem_for(changes)
        tr = integrate_flow(problem.system(), problem.start, t_end=1e4, n_out=200)
        t, loss = positive_times(tr.t, tr.loss)
        ax_loss.loglog(t, loss, label=label)
        t, attn = positive_times(tr.t, tr.target_attention.min(axis=1))
        ax_attn.semilogx(t, attn, label=label)
        print(f"{label:40s} {tr.status:9s} final loss {tr.loss[-1]:.3e}, "
              f"min target attention {np.diagonal(tr.final_attention).min():.4f}")
    ax_loss.set(xlabel="t", ylabel="population loss", title="loss")
    ax_attn.set(xlabel="t", ylabel="min_k A_kk", title="attention of each query on its own feature (worst)")
    ax_attn.legend(fontsize=8)
    fig.tight_layout()
    path = Path(out_dir) / "variants.png"
    write_png(path, fig, dpi=120)
    print("wrote", path)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="directory for variants.png, created if missing (default: %(default)s)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return draw(out)


if __name__ == "__main__":
    main()
