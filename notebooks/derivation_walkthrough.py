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
# # The derivation, one stage at a time
#
# attnflow derives the training dynamics of one-layer softmax attention with SymPy, in
# stages that you call one after the other, each taking the previous one's output (as
# in JiTCODE, where the user builds the equations and the library turns them into
# compiled code). Every stage returns a `Stage`: a title, an explanation, its
# equations as SymPy objects, and the checks SymPy made on the way.
#
# We use $K = 2$ features so that every expression is short enough to read.

# %%
import sympy as sp

import attnflow
from attnflow.derivations import stages

K = 2

# %% [markdown]
# ## 1. The loss of one query, in its attention
#
# With large prompts, query $k$ attends to feature $n$ with weight $a_n$ and its loss is
# $\ell = \tfrac12 a^\top M a$, where $M$ holds the label-gap moments of the task.

# %%
loss = stages.column_loss(K)
print(loss.title)
loss.equations[0]

# %% [markdown]
# ## 2. The gradient in the scores
#
# The scores enter through the softmax. The stage differentiates through it and checks
# its closed form $g_i = a_i (u_i - B)$ against the chain rule, symbolically.

# %%
gradient = stages.column_gradient(loss)
for check in gradient.checks:
    print("SymPy verified:", check)
gradient.equations

# %% [markdown]
# The gradient entries of one query sum to zero: adding a constant to all its scores
# changes nothing.

# %%
g = gradient.data["gradient"]
a = gradient.data["a"]
on_simplex = {a[1]: 1 - a[0]}                     # the attention sums to one
sp.simplify(sum(g).subs(on_simplex))

# %% [markdown]
# ## 3. The Hessian
#
# The next stage takes the gradient stage and differentiates again; for $K = 2$ its
# entry $H_{12}$ factors nicely.

# %%
hessian = stages.column_hessian(gradient)
sp.factor(hessian.data["hessian"][0, 1])

# %% [markdown]
# ## 4. The whole chain
#
# `attnflow.derive(K)` runs every stage in order, including the pull-back from the
# key-query matrix $Q$ to the scores $S = VQV^\top$, which gives the flow
# $\dot S = -G\,\Gamma(S)\,G$.

# %%
derivation = attnflow.derive(K)
for stage in derivation.stages:
    print(f"{stage.title:55s} {len(stage.equations)} equations, {len(stage.checks)} SymPy checks")

# %% [markdown]
# ## 5. The same derivation as a page for a browser
#
# `attnflow derive CONFIG --format html --out derivation.html` writes this derivation,
# with a configuration's numbers, as one HTML page whose equations are MathML printed by
# SymPy; it opens in any browser, offline.

# %%
from attnflow.derivations.html import equation_mathml

print(equation_mathml(gradient.equations[-1]))
