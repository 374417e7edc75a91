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
# # A small phase diagram
#
# How long does attention take to find the right feature, as the label size $L$ and the
# number of features $K$ change? `attnflow phase-diagram` answers on large grids in
# parallel; here a small grid, solved one problem at a time with the public API, is
# enough to see the regime boundary $L\Delta\delta = c^*$.

# %%
import matplotlib.pyplot as plt
import numpy as np

import attnflow

BASE = """
[features]
kind = "orthonormal"
K = 2

[task]
kind = "linear"

[training]
mode = "flow"
t_end = 1e7
stop_loss = 1e-4
"""
L_values = np.logspace(-1, 1, 7)
K_values = [3, 4, 6]                          # at K = 2 the attention starts at 1/2

# %%
t_half = np.full((len(K_values), len(L_values)), np.nan)
L_Delta_delta = np.full_like(t_half, np.nan)
threshold = None
for i, K in enumerate(K_values):
    for j, L in enumerate(L_values):
        cfg = attnflow.config_from_text(BASE).with_overrides({"features.K": K, "task.L": float(L)})
        problem = attnflow.Problem.from_config(cfg)
        constants = problem.constants()
        L_Delta_delta[i, j], threshold = constants.L_Delta_delta, constants.threshold
        flow = attnflow.solve(problem, cfg.training, progress=False).trajectories["flow"]
        t_half[i, j] = flow.crossings["t_half"]
np.round(t_half, 1)

# %% [markdown]
# ## The diagram
#
# Colour: $\log_{10}$ of the time at which the attention on the right feature passes
# 1/2. Line: the regime boundary $L\Delta\delta = c^*$.

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
image = ax.pcolormesh(L_values, K_values, np.log10(t_half), shading="nearest", cmap="viridis")
fig.colorbar(image, ax=ax, label="log10 t_half")
ax.contour(L_values, K_values, L_Delta_delta, levels=[threshold], colors="white", linewidths=2)
ax.set(xscale="log", xlabel="L", ylabel="K", yticks=K_values, title="time to attention 1/2 (gradient flow)")
fig.tight_layout()
plt.show()

# %% [markdown]
# For the linear class the moments scale as $L^2$, so the crossing time falls like
# $L^{-2}$: the slope of $\log t_{1/2}$ against $\log L$ is $-2$ on every row.

# %%
slopes = [np.polyfit(np.log(L_values), np.log(row), 1)[0] for row in t_half]
np.round(slopes, 3)
