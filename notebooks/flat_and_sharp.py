# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Flat and sharp: two regimes of the same task
#
# This is what `attnflow demo` shows. Four features on a regular simplex in
# $\mathbb{R}^3$, and the task $f(x) = L \sin(w^\top x)$. The label size $L$ decides the
# regime: $L\Delta\delta$ below the threshold $c^*$ is *flat*, above it *sharp*.
#
# In the gradient flow, multiplying the labels by $\lambda$ only rescales time
# ($S(t) \to S(\lambda^2 t)$). The regimes differ for gradient descent: trained alike, with
# one step size $\eta$ (the one picked for the sharp problem), GD follows the flow in the
# flat regime and departs from it in the sharp one.

# %%
import matplotlib.pyplot as plt
import numpy as np

import attnflow

CONFIG = """
[features]
kind = "simplex"
K = 4
d = 3

[task]
kind = "single-index"
link = "sin"
L = {L}

[training]
mode = "both"
eta = {eta}
steps = 1000000
t_end = 1e8
stop_loss = 1e-7
"""
REGIMES = {"flat": 0.3, "sharp": 3.0}

# %% [markdown]
# ## One step size for both
#
# `eta = "auto"` takes half the largest stable step at the start; we take the sharp
# problem's and give it to both.

# %%
sharp = attnflow.Problem.from_config(attnflow.config_from_text(CONFIG.format(L=REGIMES["sharp"], eta='"auto"')))
eta = 0.5 * sharp.score_system().stable_step(sharp.S0)
print(f"shared step size eta = {eta:.4g}")

# %% [markdown]
# ## Train both, by gradient flow and by gradient descent

# %%
runs = {}
for name, L in REGIMES.items():
    cfg = attnflow.config_from_text(CONFIG.format(L=L, eta=repr(float(eta))))
    problem = attnflow.Problem.from_config(cfg)
    c = problem.constants()
    runs[name] = attnflow.solve(problem, cfg.training, progress=False).trajectories
    flow, gd = runs[name]["flow"], runs[name]["gd"]
    print(f"{name:5s} L = {L:<4g} L·Δ·δ = {c.L_Delta_delta:.3g} (c* = {c.threshold:g}, {c.regime}): "
          f"loss {flow.loss[0]:.3g} → {flow.loss[-1]:.3g}; attention 1/2 at t = {flow.crossings['t_half']:.4g} "
          f"(flow), {gd.crossings['t_half']:.4g} (GD)")

# %% [markdown]
# ## Loss and attention
#
# Time is $\eta \times$ iteration for GD. The attention is the mean weight each query
# puts on its own feature: the diagonal of `trajectory.attention[i]`, whose entry
# $(n, k)$ is query $k$'s attention on feature $n$.

# %%
fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex="col")
for column, (name, trajectories) in enumerate(runs.items()):
    for method, style in (("flow", "-"), ("gd", "--")):
        tr = trajectories[method]
        own = np.diagonal(tr.attention, axis1=1, axis2=2).mean(axis=1)
        axes[0, column].loglog(tr.t[1:], tr.loss[1:], style, label=method)
        axes[1, column].semilogx(tr.t[1:], own[1:], style, label=method)
    axes[0, column].set(title=f"{name} (L = {REGIMES[name]:g})", ylabel="loss")
    axes[1, column].set(xlabel="t", ylabel="attention on own feature")
    axes[0, column].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# How far GD's crossing time is from the flow's, relative to the flow's: small in the
# flat regime, large in the sharp one. And the loss fell in every run.

# %%
departure = {name: abs(tr["gd"].crossings["t_half"] / tr["flow"].crossings["t_half"] - 1) for name, tr in runs.items()}
loss_fell = {f"{name} {method}": bool(t.loss[-1] < 1e-3 * t.loss[0])
             for name, tr in runs.items() for method, t in tr.items()}
print("GD departs from the flow by", {name: f"{d:.0%}" for name, d in departure.items()})
print("loss fell:", loss_fell)
