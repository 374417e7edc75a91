"""Training on a finite set of M prompts: the empirical loss and its score dynamics.

A prompt m is its query feature ``k_m``, the values ``y_m = f_m(V)`` (K,) of its function
on the features, and the log-weights ``b_m`` (K,) its context puts on each feature: the
log counts ``log c_m`` at finite N (−inf for a feature absent from the prompt), ``log p``
in the large-prompt limit.  The network's prediction and the empirical loss are

    w_m = softmax(S[:, k_m] + b_m  [, S[k_m, k_m]]),   ŷ_m = Σ_n w_{m,n} y_{m,n},
    ℒ̂(S) = (1/M) Σ_m ½ (ŷ_m − y_{m,k_m})²,

the bracketed entry being the query token (value 0) when it sits in the softmax.  The loss
depends on Q only through the scores ``S = V Q Vᵀ``, so the flow is ``dS/dt = −G Γ̂ G`` with
``Γ̂ = ∂ℒ̂/∂S``, whose column k collects the prompts with query k.  Per prompt, with
``u = w ∘ (y − ŷ)`` (the query token's value is 0) and ``e = ŷ − y_k``,

    ∂ℓ/∂a = e u,     ∂²ℓ/∂a² = u uᵀ + e (diag u − u wᵀ − w uᵀ)

in the logits a; the query token's logit is the score ``S[k, k]``, so its entries fold into
row and column k.  The prompts are grouped by query; the loss, gradient and attention gap
(every right-hand side and event) come from one compiled pass, O(M K)
(:func:`loss_gradient_gap`), the column Hessians of the stiff integrator's Jacobian from
another, O(M K²) (:func:`training_set_hessians`).  Both take the score flow's argument types
(:attr:`TrainingSetSystem.packed`), so the compiled DOP853, Rodas4P2 and GD loops built for
the scores run a training set without compiling a loop of their own.  The flat methods'
attention and Hessians are vectorised NumPy (the Hessians by matrix products per group, no
M×K×K array): the reference the compiled kernels are tested against.  See docs/model.md §13.
"""

import math
import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numba import njit

from .pullback import flow_sandwich, jacobian_from_hessians, log_loss
from .stability import gram_square_root, largest_flow_eigenvalue
from .system import ScoreSystem


# The compiled kernels take a finite prompt's score flow argument types ``(G, Ms, p, logp, prompt)``
# = (2-D, 3-D, 1-D, 1-D, 1-D float64), packed as ``(G, prompts, queries, starts, query_offset)``
# (:meth:`TrainingSetSystem.packed`): the integrators' and the GD loop's machine code compiled
# for the scores at finite N then runs the training set (at any N), no new loop is compiled.


@njit(cache=True)
def _block_softmax(S, b, y, m, k, query_offset, w):
    """Prompt m's attention into ``w`` (K+1,), the query token's last; returns ``(ŷ, rest)``,
    rest the share off feature k (the query token's included).  The maximum is subtracted."""
    K = b.shape[1]
    top = S[k, k] + query_offset
    for n in range(K):
        w[n] = S[n, k] + b[m, n]
        top = max(top, w[n])
    w[K] = S[k, k] + query_offset
    Z = 0.0
    for n in range(K + 1):
        w[n] = math.exp(w[n] - top)
        Z += w[n]
    yhat, rest = 0.0, 0.0
    for n in range(K + 1):
        w[n] /= Z
        if n < K:
            yhat += w[n] * y[m, n]
        if n != k:
            rest += w[n]
    return yhat, rest


@njit(cache=True)
def _block(queries, starts, block, M):
    """``(lo, hi, k)``: the prompts ``lo:hi`` of the block-th query asked, and that query."""
    lo = int(starts[block])
    hi = int(starts[block + 1]) if block + 1 < starts.shape[0] else M
    return lo, hi, int(queries[lo])


@njit(cache=True)
def loss_gradient_gap(S, prompts, queries, starts, query_offset, Gamma):
    """Empirical loss ℒ̂(S) and ``max_k log(1 − Â_kk)``; writes ``Γ̂ = ∂ℒ̂/∂S`` into ``Gamma``.

    One pass over the prompts, sorted by query.  Per prompt the softmax is taken with its
    maximum subtracted; sums over a block, and the loss's over all prompts, are
    accumulated as differences from the block's (the set's) first prompt, so copies of one
    prompt give it exactly.

    Parameters
    ----------
    S : (K, K) ndarray
        Scores.
    prompts : (2, M, K) ndarray
        The log-weights ``b`` and the labels ``y`` of the prompts, sorted by query.
    queries : (M,) ndarray
        Their queries (whole numbers, as float64).
    starts : (B,) ndarray
        First prompt of each query's block (whole numbers, as float64).
    query_offset : float
        0 when the query token (value 0) is in the softmax, −inf otherwise.
    Gamma : (K, K) ndarray
        Output.

    Returns
    -------
    loss, gap : float
    """
    b, y = prompts[0], prompts[1]
    M, K = b.shape
    a = np.empty(K + 1)
    g = np.empty(K + 1)
    g0 = np.empty(K + 1)
    acc = np.empty(K + 1)
    Gamma[:, :] = 0.0
    loss0, loss_acc, gap = 0.0, 0.0, -np.inf
    for block in range(starts.shape[0]):
        lo, hi, k = _block(queries, starts, block, M)
        rest0, rest_acc = 0.0, 0.0
        acc[:] = 0.0
        for m in range(lo, hi):
            yhat, rest = _block_softmax(S, b, y, m, k, query_offset, a)
            e = yhat - y[m, k]
            for n in range(K):
                g[n] = e * a[n] * (y[m, n] - yhat)
            g[K] = -e * a[K] * yhat
            if m == lo:
                g0[:] = g
                rest0 = rest
            else:
                for n in range(K + 1):
                    acc[n] += g[n] - g0[n]
                rest_acc += rest - rest0
            if m == 0:
                loss0 = e * e
            else:
                loss_acc += e * e - loss0
        count = hi - lo
        share = count / M
        for n in range(K + 1):
            mean = (g0[n] + acc[n] / count) * share
            Gamma[k if n == K else n, k] += mean          # the query token's logit is S[k, k]
        rest_mean = rest0 + rest_acc / count
        if rest_mean > 0:
            gap = max(gap, math.log(rest_mean))
    return 0.5 * (loss0 + loss_acc / M), gap


@njit(cache=True)
def training_set_hessians(S, prompts, queries, starts, query_offset, Hs):
    """Write the column Hessians ``Hs[k] = ∂Γ̂[:, k]/∂S[:, k]`` (K, K, K) into Hs; zero for a query no prompt asks.

    Per prompt, in the logits (the query token's last), ``u uᵀ + e (diag u − u wᵀ − w uᵀ)``
    with ``u = w ∘ (y − ŷ)``; summed over the query's block, the query token's row and
    column folded into k's (its logit is ``S[k, k]``), divided by M.  Arguments as
    :func:`loss_gradient_gap`.
    """
    b, y = prompts[0], prompts[1]
    M, K = b.shape
    w = np.empty(K + 1)
    u = np.empty(K + 1)
    H = np.empty((K + 1, K + 1))
    Hs[:, :, :] = 0.0
    for block in range(starts.shape[0]):
        lo, hi, k = _block(queries, starts, block, M)
        H[:, :] = 0.0
        for m in range(lo, hi):
            yhat, _ = _block_softmax(S, b, y, m, k, query_offset, w)
            e = yhat - y[m, k]
            for n in range(K):
                u[n] = w[n] * (y[m, n] - yhat)
            u[K] = -w[K] * yhat
            for i in range(K + 1):
                for j in range(K + 1):
                    H[i, j] += u[i] * u[j] - e * (u[i] * w[j] + w[i] * u[j])
                H[i, i] += e * u[i]
        for i in range(K + 1):             # the query token's logit is S[k, k]: column, then row
            H[i, k] += H[i, K]
        for j in range(K + 1):
            H[k, j] += H[K, j]
        for i in range(K):
            for j in range(K):
                Hs[k, i, j] = H[i, j] / M


@njit(cache=True)
def _gradient(y, prompts, queries, starts, query_offset):
    """``(ℒ̂, gap, Γ̂)`` at the flat scores y (K²,)."""
    K = prompts.shape[2]
    Gamma = np.empty((K, K))
    value, gap = loss_gradient_gap(y.reshape((K, K)), prompts, queries, starts, query_offset[0], Gamma)
    return value, gap, Gamma


@njit(cache=True)
def training_set_rhs(y, G, prompts, queries, starts, query_offset):
    """``dS/dt = −G Γ̂ G`` at the flat scores y: the integrators' ``rhs`` (arguments: :meth:`TrainingSetSystem.packed`)."""
    return flow_sandwich(G, _gradient(y, prompts, queries, starts, query_offset)[2])


@njit(cache=True)
def training_set_event_values(y, prompts, queries, starts, query_offset):
    """``(max_k log(1 − Â_kk), log ℒ̂)`` at the flat scores y: the integrators' ``events``."""
    value, gap, _ = _gradient(y, prompts, queries, starts, query_offset)
    return gap, log_loss(value)


@njit(cache=True)
def training_set_jacobian(y, G, prompts, queries, starts, query_offset):
    """``J[(i,l), (m,k)] = −(G Hs[k])_im G_kl`` at the flat scores y: the stiff integrator's ``jac``."""
    K = G.shape[0]
    Hs = np.empty((K, K, K))
    training_set_hessians(y.reshape((K, K)), prompts, queries, starts, query_offset[0], Hs)
    return jacobian_from_hessians(G, Hs)


@njit(cache=True)
def training_set_gd_step(y, G, prompts, queries, starts, query_offset, dy, S, work):
    """The compiled GD loop's ``step``: ``dy = −(G Γ̂ G).ravel()``, ``S = y`` as K×K; returns ``(ℒ̂, gap)``.

    ``work`` (the loop's scratch) is not used.
    """
    K = G.shape[0]
    for n in range(K):
        for m in range(K):
            S[n, m] = y[n * K + m]
    value, gap, Gamma = _gradient(y, prompts, queries, starts, query_offset)
    step = flow_sandwich(G, Gamma)
    for i in range(K * K):
        dy[i] = step[i]
    return value, gap


@dataclass(frozen=True, eq=False)
class TrainingSetSystem:
    """Gradient flow ``dS/dt = −G Γ̂(S) G`` of the empirical loss on M prompts.

    Parameters
    ----------
    population : ScoreSystem
        The population system of the same features, moments, p and prompt model: its G
        drives the flow, its loss is the population loss of the same scores, and the
        attention of a query no prompt asks is its expected attention.
    query : (M,) array_like of int
        Query feature of each prompt.
    log_weights : (M, K) array_like
        ``log c_m`` (finite N; −inf where a feature is absent) or ``log p`` (N = ∞) per prompt.
    labels : (M, K) array_like
        ``f_m(v_n)``: prompt m's function on every feature.

    Raises
    ------
    ValueError
        If the arrays' shapes do not match, a query is not a feature index, a label is not
        finite, or a prompt has no context token (every log-weight −inf); the message
        starts with the field's name.

    Notes
    -----
    The query token is in the softmax exactly when ``population.query_in_softmax``
    (``include_query`` at finite N).  The state is the flat scores, as for
    :class:`ScoreSystem`; :func:`attnflow.solvers.integrate_flow` runs :meth:`callbacks` (the
    compiled methods) or the flat interface (solve_ivp's, the analytic Jacobian for the implicit
    ones), :func:`attnflow.solvers.gd.iterate_gd` runs :meth:`gd_callback`.

    Examples
    --------
    Two orthonormal features, one prompt asking feature 0 of a large prompt, labels
    ``(1, −1)``: at S = 0 the prediction is 0 and the loss ½.

    >>> import numpy as np
    >>> population = ScoreSystem(np.eye(2), np.eye(2), np.full(2, 0.5))
    >>> system = TrainingSetSystem(population, [0], np.log([[0.5, 0.5]]), [[1.0, -1.0]])
    >>> float(system.loss(np.zeros((2, 2))))
    0.5
    >>> system.gradient(np.zeros((2, 2)))        # e = −1, u = ½ (y − 0): raise S[0, 0], lower S[1, 0]
    array([[-0.5,  0. ],
           [ 0.5,  0. ]])
    """

    population: ScoreSystem
    query: np.ndarray
    log_weights: np.ndarray
    labels: np.ndarray

    state_is_scores = True

    def __post_init__(self):
        K = self.population.K
        query = np.asarray(self.query)
        log_weights = np.asarray(self.log_weights, dtype=np.float64)
        labels = np.asarray(self.labels, dtype=np.float64)
        M = len(query)
        if query.ndim != 1 or M < 1 or not np.issubdtype(query.dtype, np.integer):
            raise ValueError(f"query: expected M ≥ 1 feature indices, got shape {query.shape}")
        if query.min() < 0 or query.max() >= K:
            raise ValueError(f"query: feature indices must lie in [0, {K}), got {query.min()}…{query.max()}")
        if log_weights.shape != (M, K) or labels.shape != (M, K):
            raise ValueError(f"log_weights: expected ({M}, {K}) arrays of log-weights and labels, got "
                             f"{log_weights.shape} and {labels.shape}")
        if not np.all(np.isfinite(labels)):
            raise ValueError("labels: has non-finite entries")
        if np.any(np.isnan(log_weights)) or np.any(log_weights == np.inf) or not np.all(
                np.isfinite(log_weights).any(axis=1)):
            raise ValueError("log_weights: every prompt needs a finite log-weight (a context token) and no NaN or +inf")
        # Prompts sorted by query (stably): each query's prompts are one contiguous block.
        order = np.argsort(query, kind="stable")
        q = query[order].astype(np.int64)
        object.__setattr__(self, "query", query.astype(np.int64))
        object.__setattr__(self, "log_weights", log_weights)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "_q", q)
        object.__setattr__(self, "_b", np.ascontiguousarray(log_weights[order]))
        object.__setattr__(self, "_y", np.ascontiguousarray(labels[order]))
        object.__setattr__(self, "_rows", np.arange(M))
        present, starts = np.unique(q, return_index=True)
        object.__setattr__(self, "_present", present)
        object.__setattr__(self, "_starts", starts)
        object.__setattr__(self, "_ends", np.append(starts[1:], M))
        object.__setattr__(self, "_counts", np.diff(np.append(starts, M)))
        object.__setattr__(self, "_group_first", np.repeat(starts, np.diff(np.append(starts, M))))
        # The query token: its logit is S[k, k] + 0 when it is in the softmax, −inf (weight 0) otherwise.
        object.__setattr__(self, "_query_offset", 0.0 if self.population.query_in_softmax else -np.inf)
        object.__setattr__(self, "_packed", (np.ascontiguousarray(self.population.G, dtype=np.float64),
                                             np.ascontiguousarray(np.stack([self._b, self._y])),
                                             q.astype(np.float64), starts.astype(np.float64),
                                             np.array([self._query_offset])))

    @property
    def K(self):
        """Number of features K."""
        return self.population.K

    @property
    def M(self):
        """Number of prompts M."""
        return len(self._q)

    @property
    def G(self):
        """Gram matrix of the features (the population system's)."""
        return self.population.G

    @property
    def queries_asked(self):
        """The features that are the query of at least one prompt, sorted."""
        return self._present

    # --- evaluation ---------------------------------------------------------------------

    def _forward(self, S):
        """Per prompt (sorted by query): attention w (M, K+1), the last column the query token's,
        values (M, K+1) and the error e = ŷ − y_k (M,)."""
        S = np.asarray(S, dtype=np.float64)
        q = self._q
        logits = np.empty((self.M, self.K + 1))
        logits[:, :-1] = S.T[q] + self._b
        logits[:, -1] = S[q, q] + self._query_offset
        logits -= logits.max(axis=1, keepdims=True)
        w = np.exp(logits)
        w /= w.sum(axis=1, keepdims=True)
        values = np.zeros((self.M, self.K + 1))
        values[:, :-1] = self._y
        yhat = np.einsum("mn,mn->m", w, values)
        return w, values, yhat, yhat - self._y[self._rows, q]

    def _group_means(self, X):
        """Per query asked, the mean of the rows of X (M, …) over its prompts.

        Summed as differences from the group's first row (an assumed mean): copies of one
        prompt then give that prompt's values exactly, whatever their number.
        """
        first = X[self._starts]
        return first + np.add.reduceat(X - X[self._group_first], self._starts, axis=0) / (
            self._counts.reshape((-1,) + (1,) * (X.ndim - 1)))

    def loss(self, S):
        """``ℒ̂(S)``, the empirical loss at scores S (K, K)."""
        return self._compiled(S)[0]

    def loss_and_gradient(self, S):
        """``(ℒ̂(S), Γ̂)`` with ``Γ̂ = ∂ℒ̂/∂S`` (K, K)."""
        return self._compiled(S)[:2]

    def _compiled(self, S):
        """``(ℒ̂, Γ̂, max_k log(1 − Â_kk))`` from the compiled :func:`loss_gradient_gap`."""
        Gamma = np.empty((self.K, self.K))
        _, prompts, queries, starts, _ = self._packed
        loss, gap = loss_gradient_gap(np.ascontiguousarray(S, dtype=np.float64), prompts, queries, starts,
                                      self._query_offset, Gamma)
        return loss, Gamma, gap

    @property
    def packed(self):
        """The compiled kernels' arguments ``(G, prompts, queries, starts, query_offset)``.

        A finite prompt's score flow argument types ``(G, Ms, p, logp, prompt)`` (2-D, 3-D, 1-D,
        1-D, 1-D float64), so the loops compiled for those scores run the training set: ``prompts``
        (2, M, K) stacks the log-weights and the labels sorted by query, ``queries`` (M,) and
        ``starts`` (one per query asked: its block's first prompt) are whole numbers as float64,
        ``query_offset`` is ``[0]`` with the query token in the softmax, ``[−inf]`` without.
        """
        return self._packed

    def gradient(self, S):
        """``Γ̂ = ∂ℒ̂/∂S``."""
        return self.loss_and_gradient(S)[1]

    def hessians(self, S):
        """``Hs[k] = ∂Γ̂[:, k]/∂S[:, k]`` (K, K, K); zero for a query no prompt asks."""
        w, values, yhat, e = self._forward(S)
        u = w * (values - yhat[:, None])
        eu = e[:, None] * u
        Hs = np.zeros((self.K, self.K, self.K))
        for k, lo, hi in zip(self._present, self._starts, self._ends):
            U, W, EU = u[lo:hi], w[lo:hi], eu[lo:hi]
            cross = EU.T @ W
            H = U.T @ U + np.diag(EU.sum(axis=0)) - cross - cross.T                # (K+1, K+1), summed over the block
            H[:, k] += H[:, -1]                       # the query token's logit is S[k, k]
            H[k, :] += H[-1, :]
            Hs[k] = H[:-1, :-1] / self.M
        return Hs

    def attention(self, S):
        """``A[n, k]``: mean attention of query k on feature n over the prompts asking k.

        A query no prompt asks has its population (expected) attention.  With the query
        token in the softmax its share is in no entry (columns then sum to less than 1).
        """
        means = self._group_means(self._forward(S)[0])
        A = self.population.attention(S) if len(self._present) < self.K else np.empty((self.K, self.K))
        A[:, self._present] = means[:, :-1].T
        return A

    # --- the flat interface the solvers run -----------------------------------------------

    def flatten(self, S0):
        """The flow's state vector for initial scores S0 (validated)."""
        return self.population.flatten(S0)

    def scores_of(self, Y):
        """Scores (T, K, K) of states Y (T, K²)."""
        return np.asarray(Y).reshape(-1, self.K, self.K)

    def flat_loss(self, y):
        """:meth:`loss` at the flat state y (K²,)."""
        return self.loss(y.reshape(self.K, self.K))

    def flat_attention(self, y):
        """:meth:`attention` at the flat state y (K²,)."""
        return self.attention(y.reshape(self.K, self.K))

    def flat_rhs(self, y):
        """``dS/dt = −G Γ̂ G`` at the flat state y, flattened (K²,)."""
        G = self.G
        return -(G @ self.gradient(y.reshape(self.K, self.K)) @ G).ravel()

    def flat_jacobian(self, y):
        """``∂(dS/dt)/∂S`` on the C-ordered flat state, (K², K²), from the column Hessians."""
        return jacobian_from_hessians(self.G, self.hessians(y.reshape(self.K, self.K)))

    def flat_event_values(self, y):
        """``(max_k log(1 − Â_kk), log ℒ̂)`` at the state y."""
        loss, _, gap = self._compiled(y.reshape(self.K, self.K))
        return gap, math.log(max(loss, 1e-300))

    def flat_losses(self, Y):
        """:meth:`flat_loss` of each state of Y (T, K²)."""
        return np.array([self.flat_loss(y) for y in np.asarray(Y, dtype=np.float64)])

    def callbacks(self):
        """``(rhs, events, args, event_args, jac)`` of the compiled integrators.

        :func:`training_set_rhs`, :func:`training_set_event_values` and
        :func:`training_set_jacobian` with :attr:`packed`, the score flow's argument types:
        the DOP853 and Rodas4P2 loops compiled for the scores run them.
        """
        args = self._packed
        return training_set_rhs, training_set_event_values, args, args[1:], training_set_jacobian

    def gd_callback(self):
        """``(step, args, 0)`` of the compiled GD loop: :func:`training_set_gd_step` with :attr:`packed`, no scratch."""
        return training_set_gd_step, self._packed, 0

    @cached_property
    def gram_root(self):
        """``G^½``, for the symmetrised flow Jacobian of :mod:`solvers.stability`."""
        return gram_square_root(self.G)

    def stable_step(self, S):
        """Largest linearly stable GD step at S, ``2 / λ_max(−J)`` (inf if none is positive), matrix-free."""
        lam = largest_flow_eigenvalue(self.hessians(S), self.gram_root)
        return 2.0 / lam if lam > 0 else np.inf

    def warm_up(self, gd=True):
        """Compile (or load) the training set's callbacks, GD step (if gd) and population kernels; return the seconds."""
        start = time.perf_counter()
        y = np.zeros(self.K * self.K)
        rhs, events, args, event_args, jac = self.callbacks()
        rhs(y, *args), events(y, *event_args), jac(y, *args)
        if gd:
            step, args, work = self.gd_callback()
            step(y, *args, np.empty_like(y), np.empty((self.K, self.K)), np.empty(work))
        self.population.warm_up(gd)
        return time.perf_counter() - start


def population_crossings(t, loss, eps):
    """First times the loss falls to each ε, located on an output grid.

    Between the last point above ε and the first at or below it the crossing is
    interpolated linearly in ``(log t, log ℒ)`` (in t when the earlier point is t = 0).

    Parameters
    ----------
    t, loss : array_like, shape (T,)
        The output grid and a loss on it.
    eps : sequence of float
        The levels.

    Returns
    -------
    dict
        ε → time (0 if the loss starts at or below ε, None if it never gets there).

    Examples
    --------
    >>> c = population_crossings([0.0, 1.0, 100.0], [1.0, 0.1, 0.001], [0.01, 1e-4])
    >>> round(c[0.01], 12), c[1e-4]
    (10.0, None)
    """
    t, loss = np.asarray(t, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    out = {}
    for e in eps:
        below = np.nonzero(loss <= e)[0]
        if len(below) == 0:
            out[e] = None
        elif below[0] == 0:
            out[e] = 0.0
        else:
            i = below[0]
            x0, x1 = (t[i - 1], t[i]) if t[i - 1] == 0 else (math.log(t[i - 1]), math.log(t[i]))
            f = (math.log(loss[i - 1]) - math.log(e)) / (math.log(loss[i - 1]) - math.log(loss[i]))
            x = x0 + f * (x1 - x0)
            out[e] = float(x if t[i - 1] == 0 else math.exp(x))
    return out


def attach_population_loss(trajectory, population, eps):
    """Record on a training-set trajectory the population loss of its scores and its crossings.

    Sets ``trajectory.population_loss`` (T,), ``ℒ(S)`` of :class:`ScoreSystem` at each
    output point (``trajectory.loss`` is the training loss ℒ̂), and
    ``trajectory.crossings["t_population_loss"]`` (:func:`population_crossings`: on the
    output grid, not by the solver's event location).

    Parameters
    ----------
    trajectory : Trajectory
        A flow or GD run of a :class:`TrainingSetSystem`.
    population : ScoreSystem
        The population system.
    eps : sequence of float
        The loss levels.

    Returns
    -------
    Trajectory
        The same trajectory.
    """
    trajectory.population_loss = np.array([population.loss(S) for S in trajectory.S])
    trajectory.crossings["t_population_loss"] = population_crossings(trajectory.t, trajectory.population_loss, eps)
    return trajectory
