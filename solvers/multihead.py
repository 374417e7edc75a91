"""Multi-head attention: H merged key-query matrices, the network's output the heads' mean.

The network is ``ŷ = (1/H) Σ_h Σ_i y_i softmax_i(x_iᵀ Q_h x_q)``.  Each head has its
scores ``S^h = V Q_h Vᵀ``; the loss depends on the Q_h only through them, so the state
is the H score matrices (H·K² numbers) and ``dS^h/dt = −G Γ^h G`` with ``Γ^h = ∂ℒ/∂S^h``.
In the large-prompt limit, for query k, with ``a^h = softmax(S^h[:, k] + log p)`` and the
mean attention ``ā = (1/H) Σ_h a^h`` (what the prediction uses):

    ℓ_k = ½ (ā − e_k)ᵀ F (ā − e_k) = ½ āᵀ M⁽ᵏ⁾ ā,      ℒ = Σ_k p_k ℓ_k,
    Γ^h[:, k] = p_k g^h,   g^h = (1/H) D^h u = (1/H) a^h ∘ (u − a^hᵀ u),   u = M⁽ᵏ⁾ ā,

with ``D^h = diag(a^h) − a^h a^hᵀ``.  The heads are coupled through ā alone.  The column
Hessian is an H×H array of K×K blocks,

    ∂g^h/∂s^{h'} = D^h M D^{h'} / H² + δ_{hh'} (diag(g^h) − g^h a^hᵀ − a^h g^hᵀ),

and the flow's Jacobian is ``J[(h,i,l), (h',m,k)] = −p_k (G ∂g^h/∂s^{h'})_im G_kl``.
:func:`attnflow.derivations.variants.multi_head` derives Γ^h and the Hessian blocks with SymPy
and checks them against differentiating the explicit loss.

**Kernels.**  The compiled functions (:mod:`attnflow.solvers.multihead_assembly`) assemble
the loss, Γ^h, the Hessian blocks, the flow's right-hand side and Jacobian and the GD step
from four column functions: ``mean_column_loss`` (ℓ and ``u = M ā``), ``head_column_gradient``
(``g^h``), ``head_column_cross_hessian`` (``D^h M D^{h'}/H²``) and
``head_column_hessian_correction`` (the diagonal block's ``diag(g^h) − g^h a^hᵀ − a^h g^hᵀ``).
Like the single head's, they come in two kernel sets that share the assembly verbatim: the
hand-written reference (:mod:`attnflow.solvers.columns`, :mod:`attnflow.solvers.kernels`), and
the generated one (``load_kernels(heads=True)`` of :mod:`attnflow.derivations.codegen`, what ``attnflow run``
uses), printed as loops from the indexed derivation of
:mod:`attnflow.derivations.indexed_heads`: ℓ = ½ āᵀ M ā with ``ā = (a + b + c)/H`` (head h, a
second head h', the other heads summed; K and H symbols) differentiated through the softmaxes,
checked in normal form against the formulas above for symbolic K and H and entry by entry
against the unrolled derivation in K·H attention symbols (K ≤ 3).  ``MultiHeadSystem(...,
kernels=...)`` picks the set; the tests hold the two to 1e-12.

H identical heads stay identical (their gradients are equal): then ``ā = a`` and
``Γ^h = Γ/H``, so each head follows the one-head flow slowed down by H, ``S^h(t) = S(t/H)``
(GD with step η is one-head GD with step η/H).  ``H = 1`` is the one-head model exactly,
and H > 1 needs distinct heads: a random start.

**Finite prompts.**  At prompt length N the counts ``c ~ Multinomial(N, p)`` are random and
every head's attention is ``a^h = softmax(S^h[:, k] + log c)`` over the same counts, so the
loss has products of two heads' random softmax denominators.  Each formula above holds per
count vector with ``log p`` replaced by ``log c`` (−inf where a feature is absent), and the
expectation is the sum over all ``C(N+K−1, K−1)`` count vectors with their multinomial
probabilities (:func:`prompt_counts`): exact to rounding, loss, Γ^h, Hessian blocks and
Jacobian alike.  N = ∞ is the one "count vector" ``log p`` of weight 1, so one set of
kernels serves both.  The cost is C·H·K² exponentials per gradient, so C·K is capped
(:data:`MAX_COMPOSITION_ENTRIES`; :func:`composition_excess` says why a prompt is too long).

**The query token in the softmax** (``include_query`` at finite N).  For count vector c and
query k every head's softmax has K + 1 entries, the logits ``S^h[:, k] + log c`` of the K
features' tokens and the query token's ``S^h[k, k]`` (its feature is k, its count 1, its value
0), as for one head (:mod:`attnflow.solvers.finite_prompt`).  So ``a^h`` and ā have K + 1
entries, M is the (K+1)×(K+1) moment matrix of the one-head query model (last row and column
the query's gap ``−f_k``), and the formulas above hold on the (K+1)-vectors; ``S^h[k, k]``
moves two logits, so Γ^h's entry k and the Hessian blocks' row and column k come from shift
invariance (every block's rows and columns sum to zero), which keeps the small late-training
values the two shares would cancel to.  The attention on the features (what the reports see)
leaves out the query token's own share, as for one head; the events' ``1 − ā_kk`` includes it.
At N = ∞ the query's share is O(1/N) and the dynamics are those without it.

"Attention" of a multi-head state, in reports, events and crossings, is the mean
attention ā (expected over prompts at finite N); :meth:`MultiHeadSystem.scores_of`
returns scores whose large-prompt softmax is the mean of the heads' large-prompt
softmaxes (:func:`effective_scores`; one head's are its scores), so every score-space
analysis sees what the prediction uses.  :meth:`MultiHeadSystem.head_attention` keeps
each head's attention for :func:`specialisation_index`.
"""

import math
import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numba import njit

from . import kernels as hand_written
from .gd import iterate_gd
from .multihead_assembly import _effective_scores, _head_velocity
from .system import ScoreSystem

MAX_HEADS = 64   # dynamics.problem.config documents the same bound
MAX_COMPOSITION_ENTRIES = 10**6   # K·C(N+K−1, K−1) log counts at finite N: the cost of a gradient is C·H·K² exps


def effective_scores(S, logp):
    """Scores whose attention is the heads' mean attention ā, column by column.

    ``S_eff[n, k] = log((1/H) Σ_h exp(S^h_nk − Z^h_k)) + (1/H) Σ_h Z^h_k`` with
    ``Z^h_k = log Σ_n exp(S^h_nk + log p_n)``, by log-sum-exp: ``softmax(S_eff[:, k] + log p) = ā_k``.
    One head gives its scores back exactly; identical heads to rounding (an absolute
    1e-16 of the column's largest ``|S^h_nk − Z^h_k|``).

    Parameters
    ----------
    S : ndarray, shape (..., H, K, K)
        The heads' scores.
    logp : ndarray, shape (K,)

    Returns
    -------
    ndarray, shape (..., K, K)

    Examples
    --------
    >>> S = np.array([[[2.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [1.0, 3.0]]])
    >>> logp = np.log([0.5, 0.5])
    >>> A = np.exp(effective_scores(S, logp) + logp[:, None])
    >>> (A / A.sum(axis=0)).round(6).tolist()          # the mean of the heads' softmaxes
    [[0.574869, 0.158184], [0.425131, 0.841816]]
    >>> bool(np.array_equal(effective_scores(S[:1], logp), S[0]))
    True
    """
    S = np.asarray(S, dtype=np.float64)
    H, K = S.shape[-3], S.shape[-1]
    if H == 1:
        return S[..., 0, :, :].copy()
    stack = np.ascontiguousarray(S.reshape(-1, H, K, K))
    out = np.empty((len(stack), K, K))
    logp = np.ascontiguousarray(logp, dtype=np.float64)
    for i in range(len(stack)):            # a compiled loop: SciPy's logsumexp took 2 ms a state, GD calls it each step
        _effective_scores(stack[i], logp, out[i])
    return out.reshape(S.shape[:-3] + (K, K))


# ---- the prompts' count vectors: the expectation over prompts of length N is a sum over them


def composition_count(N, K):
    """Number of count vectors of a prompt of N tokens over K features, ``C(N + K − 1, K − 1)``.

    Examples
    --------
    >>> composition_count(32, 4), composition_count(1, 5)
    (6545, 5)
    """
    return math.comb(int(N) + int(K) - 1, int(K) - 1)


def composition_limit(K):
    """The largest number of count vectors enumerated at K features: ``MAX_COMPOSITION_ENTRIES // K``.

    Examples
    --------
    >>> composition_limit(4)
    250000
    """
    return MAX_COMPOSITION_ENTRIES // int(K)


@njit(cache=True)
def _fill_compositions(N, logp, weights, logc):
    """Every count vector c of N tokens (an odometer over c_0 … c_{K−2}, c_{K−1} the rest): its
    multinomial probability into ``weights`` and ``log c`` (−inf for 0) into the rows of ``logc``."""
    C, K = logc.shape
    c = np.zeros(K, np.int64)
    c[K - 1] = N
    log_factorial_N = math.lgamma(N + 1.0)
    for row in range(C):
        log_weight = log_factorial_N
        for n in range(K):
            log_weight += c[n] * logp[n] - math.lgamma(c[n] + 1.0)
            logc[row, n] = math.log(c[n]) if c[n] > 0 else -np.inf
        weights[row] = math.exp(log_weight)
        i = K - 2
        while i >= 0:             # the next vector: raise c_i if tokens are left, else return c_i's and carry
            if c[K - 1] > 0:
                c[i] += 1
                c[K - 1] -= 1
                break
            c[K - 1] += c[i]
            c[i] = 0
            i -= 1


def prompt_counts(N, p):
    """The count vectors of a prompt of length N with their probabilities: ``(weights, log_counts)``.

    ``c ~ Multinomial(N, p)``: row r of ``log_counts`` (C, K) is ``log c`` (−inf where a
    feature is absent) and ``weights[r]`` its probability ``N!/∏c_n! ∏p_n^{c_n}``, from
    log-gammas (a relative error of about 1e-16·N log N).  At ``N = inf`` one row, ``log p``
    with weight 1: the large-prompt limit, where the attention is ``softmax(s + log p)``.

    Parameters
    ----------
    N : int or float
        Prompt length, or ``inf``.
    p : array_like, shape (K,)
        Feature probabilities.

    Returns
    -------
    weights : ndarray, shape (C,)
    log_counts : ndarray, shape (C, K)

    Raises
    ------
    ValueError
        If there are more than :func:`composition_limit` count vectors (checked before
        anything is allocated).

    Examples
    --------
    >>> weights, log_counts = prompt_counts(2, [0.5, 0.5])
    >>> weights.round(15).tolist(), np.exp(log_counts).tolist()
    ([0.25, 0.5, 0.25], [[0.0, 2.0], [1.0, 1.0], [2.0, 0.0]])
    """
    p = np.ascontiguousarray(p, dtype=np.float64)
    K = len(p)
    if N == np.inf:
        return np.ones(1), np.log(p)[None, :].copy()
    too_many = composition_excess(N, K)
    if too_many:
        raise ValueError(f"N: {too_many}")
    count = composition_count(N, K)
    weights, log_counts = np.empty(count), np.empty((count, K))
    _fill_compositions(int(N), np.log(p), weights, log_counts)
    return weights, log_counts


def composition_excess(N, K):
    """Why N is too long to enumerate its count vectors at K features, or None when it is not.

    Examples
    --------
    >>> composition_excess(32, 4) is None
    True
    >>> composition_excess(200, 4)
    'the heads at finite N sum over every count vector of a prompt: N = 200 tokens over K = 4 features have C(N+K−1, K−1) = 1,373,701; at most 250,000 are supported at K = 4 (a smaller N, or "inf")'
    """
    count, limit = composition_count(N, K), composition_limit(K)
    if count <= limit:
        return None
    words = f"{count:,}" if count < 10**15 else f"about 10^{len(str(count)) - 1}"
    return (f"the heads at finite N sum over every count vector of a prompt: N = {int(N)} tokens over "
            f"K = {int(K)} features have C(N+K−1, K−1) = {words}; at most {limit:,} are supported at "
            f"K = {int(K)} (a smaller N, or \"inf\")")


def specialisation_index(A):
    """How differently the heads attend: the mean over queries of the mean total-variation distance between heads.

    ``(1/K) Σ_k (2/(H(H−1))) Σ_{h<h'} ½ Σ_n |A[h, n, k] − A[h', n, k]|``, in [0, 1]:
    0 when every head attends alike, 1 when each query's heads attend to disjoint features.

    Parameters
    ----------
    A : ndarray, shape (H, K, K)
        Every head's attention (:meth:`MultiHeadSystem.head_attention`).

    Returns
    -------
    float
        0 for one head.

    Examples
    --------
    >>> A = np.array([np.eye(2), np.full((2, 2), 0.5)])
    >>> specialisation_index(A)
    0.5
    """
    A = np.asarray(A, dtype=np.float64)
    H = A.shape[0]
    if H < 2:
        return 0.0
    total = 0.0
    for h in range(H):
        for hh in range(h + 1, H):
            total += 0.5 * np.abs(A[h] - A[hh]).sum(axis=0).mean()
    return float(total / (H * (H - 1) / 2))


def random_heads(H, d, scale, seed=0):
    """H random d×d key-query matrices ``Q_h(0)``, i.i.d. N(0, scale²/d) entries.

    The draws are the ones the single-head random start makes for H = 1 (one
    ``standard_normal((d, d))`` call per head from one generator).

    Parameters
    ----------
    H, d : int
        Number of heads and token dimension.
    scale : float
        Scale of the entries (``model.init_scale``).
    seed : int, optional
        Seed of the generator (``model.seed``).

    Returns
    -------
    ndarray, shape (H, d, d)
    """
    rng = np.random.default_rng(seed)
    return np.stack([scale * rng.standard_normal((d, d)) / math.sqrt(d) for _ in range(H)])


@dataclass(frozen=True)
class MultiHeadSystem:
    """The flow and GD map of H attention heads on top of a :class:`ScoreSystem`.

    Parameters
    ----------
    scores : ScoreSystem
        The single-head score system (G, F, p and the prompt length N, finite or ∞).
    H : int
        Number of heads, 1 ≤ H ≤ ``MAX_HEADS``.
    kernels : module, optional
        The kernel set whose multi-head functions run (:mod:`attnflow.solvers.kernels`, the
        hand-written reference, by default; the module of
        ``attnflow.derivations.codegen.load_kernels(heads=True)`` runs the columns printed from
        the indexed derivation).  Usually the score system's set.

    Raises
    ------
    ValueError
        If H is not an integer in [1, MAX_HEADS], or a finite N has more count vectors than
        :func:`composition_limit` (before allocating them).

    The state is ``y = [S^1.ravel(), …, S^H.ravel()]`` (H·K²); the flat interface is the one
    :func:`attnflow.solvers.integrate_flow` and :func:`attnflow.solvers.gd.iterate_gd` run.
    At finite N every expectation over prompts is the exact sum over the prompt's count
    vectors (:func:`prompt_counts`), so the loss, Γ^h, the Hessian blocks, the Jacobian and
    the compiled callbacks are those of N = ∞ with ``log p`` replaced by ``log c`` and
    averaged; the attention is the expected mean attention ``E[ā]``, and :meth:`scores_of`
    keeps the N = ∞ effective scores (one head's: its scores).  With the score system's
    ``include_query`` at finite N the query token sits in every head's softmax (its moment
    stack ``Ms`` is then (K, K+1, K+1)).

    Examples
    --------
    >>> from attnflow.solvers.system import ScoreSystem
    >>> system = MultiHeadSystem(ScoreSystem(np.eye(3), np.eye(3), np.full(3, 1 / 3)), 2)
    >>> S = np.zeros((2, 3, 3))
    >>> round(float(system.loss(S)), 12), system.flatten(S).shape
    (0.333333333333, (18,))
    """

    scores: ScoreSystem
    H: int
    kernels: object = hand_written

    state_is_scores = False

    def __post_init__(self):
        if isinstance(self.H, bool) or int(self.H) != self.H or not 1 <= self.H <= MAX_HEADS:
            raise ValueError(f"H: expected a number of heads from 1 to {MAX_HEADS}, got {self.H}")
        object.__setattr__(self, "H", int(self.H))
        if self.scores.finite:
            too_many = composition_excess(self.scores.N, self.K)
            if too_many:
                raise ValueError(f"N: {too_many}")

    @cached_property
    def counts(self):
        """``(weights, log_counts)`` of the prompt's count vectors (:func:`prompt_counts`): one row ``log p`` at N = ∞."""
        return prompt_counts(self.scores.N, self.scores.p)

    @cached_property
    def args(self):
        """The compiled kernels' arguments ``(G, Ms, p, weights, log_counts.ravel())``: the score flow's types."""
        weights, log_counts = self.counts
        sc = self.scores
        return tuple(np.ascontiguousarray(a, dtype=np.float64) for a in (sc.G, sc.Ms, sc.p, weights,
                                                                           log_counts.ravel()))

    @property
    def K(self):
        """Number of features."""
        return self.scores.K

    def heads(self, y):
        """The heads' scores (H, K, K) of the flat state y (a view)."""
        return np.ascontiguousarray(y, dtype=np.float64).reshape(self.H, self.K, self.K)

    def flatten(self, start):
        """The state for the heads' initial scores ``start`` (H, K, K) (validated).

        Raises
        ------
        ValueError
            If start is not a finite (H, K, K) array.
        """
        S0 = np.ascontiguousarray(start, dtype=np.float64)
        if S0.shape != (self.H, self.K, self.K) or not np.all(np.isfinite(S0)):
            raise ValueError(f"S0: expected the finite scores of {self.H} heads, shape ({self.H}, {self.K}, "
                             f"{self.K}), got shape {S0.shape}")
        return S0.ravel().copy()

    def loss_and_gradient(self, S):
        """``(ℒ, Γ)`` at the heads' scores S (H, K, K); Γ (H, K, K) holds ``∂ℒ/∂S^h``."""
        S = np.ascontiguousarray(S, dtype=np.float64)
        Gamma = np.empty_like(S)
        value, _ = self.kernels.multihead_loss_gradient_gap(S, self.scores.Ms, self.scores.p, *self.counts, Gamma)
        return value, Gamma

    def loss(self, S):
        """Population loss at the heads' scores S (H, K, K)."""
        return self.loss_and_gradient(S)[0]

    def gradient(self, S):
        """``Γ^h = ∂ℒ/∂S^h``, (H, K, K)."""
        return self.loss_and_gradient(S)[1]

    def hessians(self, S):
        """Column Hessians ``Hs[k, h, n, h', m] = ∂Γ^h[n, k]/∂S^{h'}[m, k]``, (K, H, K, H, K)."""
        K, H = self.K, self.H
        Hs = np.empty((K, H, K, H, K))
        self.kernels.multihead_hessians(np.ascontiguousarray(S, dtype=np.float64), self.scores.Ms, self.scores.p,
                                        *self.counts, Hs)
        return Hs

    def head_attention(self, y):
        """Every head's attention ``A[h, n, k]`` (H, K, K) at the flat state y (expected over prompts at finite N).

        With the query token in the softmax: the attention on the features' tokens, without the
        query token's own share (as one head's).
        """
        A = np.empty((self.H, self.K, self.K))
        self.kernels.multihead_attention(self.heads(y), self.scores.Ms, *self.counts, A)
        return A

    def flat_attention(self, y):
        """The mean attention ā (K, K), what the prediction uses, at the flat state y (``E[ā]`` at finite N)."""
        return self.head_attention(y).mean(axis=0)

    def flat_loss(self, y):
        """Population loss at the flat state y."""
        return self.loss(self.heads(y))

    def flat_losses(self, Y):
        """Population loss at each state of Y (T, H·K²)."""
        Gamma = np.empty((self.H, self.K, self.K))
        Ms, p, counts, kernel = self.scores.Ms, self.scores.p, self.counts, self.kernels.multihead_loss_gradient_gap
        return np.array([kernel(S, Ms, p, *counts, Gamma)[0]
                         for S in np.ascontiguousarray(Y, dtype=np.float64).reshape(-1, self.H, self.K, self.K)])

    def _rhs(self, Gamma):
        # The single head's sandwich (solvers.pullback), head by head: one head is ScoreSystem to the bit.
        dy = np.empty(Gamma.size)
        _head_velocity(self.scores.G, Gamma, dy)
        return dy

    def flat_rhs(self, y):
        """``dS^h/dt = −G Γ^h G`` for every head, flattened (H·K²,)."""
        return self._rhs(self.gradient(self.heads(y)))

    def flat_event_values(self, y):
        """``(max_k log(1 − ā_kk), log ℒ)`` at the state y: the events see the mean attention."""
        value, gap = self.kernels.multihead_loss_gradient_gap(self.heads(y), self.scores.Ms, self.scores.p, *self.counts,
                                                 np.empty((self.H, self.K, self.K)))
        return gap, math.log(max(value, 1e-300))

    def callbacks(self):
        """``(rhs, events, args, event_args, jac)`` of the compiled integrators.

        The kernel set's ``multihead_rhs``, ``multihead_event_values`` and ``multihead_jacobian``
        (:mod:`attnflow.solvers.multihead_assembly`) take :attr:`args`, of the score system's
        argument types, so the loops compiled for the scores run them, at N = ∞ and at finite N alike.
        """
        k = self.kernels
        return k.multihead_rhs, k.multihead_event_values, self.args, self.args[1:], k.multihead_jacobian

    def gd_callback(self):
        """``(step, args, 0)`` of the compiled GD loop: the kernel set's ``multihead_gd_step`` with :attr:`args`, no scratch."""
        return self.kernels.multihead_gd_step, self.args, 0

    def flat_jacobian(self, y):
        """Analytic Jacobian of :meth:`flat_rhs`, (H·K², H·K²): ``J[(h,i,l), (h',m,k)] = −(G Hs[k]^{hh'})_im G_kl``."""
        G, n = self.scores.G, self.H * self.K * self.K
        Hs = self.hessians(self.heads(y))
        GH = np.einsum("in,kanbm->kaibm", G, Hs)
        return -np.einsum("kaibm,kl->ailbmk", GH, G).reshape(n, n)

    def scores_of(self, Y):
        """Effective scores (T, K, K) of states Y (T, H·K²): softmax gives the mean attention ā."""
        Y = np.atleast_2d(Y)
        return effective_scores(Y.reshape(-1, self.H, self.K, self.K), self.scores.logp)

    def largest_rate(self, start):
        """λ_max of ``−J`` at the heads' scores ``start``, matrix-free (Lanczos).

        ``−J = (I_H ⊗ G ⊗ G) Hbig`` with Hbig symmetric shares its nonzero eigenvalues with
        ``X ↦ R Hcol(R X R) R`` per head (``R = G^½``), as :mod:`attnflow.solvers.stability`
        has it for one head; each product costs O(H²K³).
        """
        # Imported here, not at the top: scipy.sparse.linalg costs about 0.1–0.4 s of import and
        # only a GD step from the stability bound needs it, not every run.
        from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

        H, K = self.H, self.K
        Hs = self.hessians(np.asarray(start, dtype=np.float64).reshape(H, K, K))
        Hs = 0.5 * (Hs + Hs.transpose(0, 3, 4, 1, 2))
        if not np.any(Hs):
            return 0.0
        R = self.scores.gram_root

        def product(x):
            Y = R @ x.reshape(H, K, K) @ R
            Z = np.einsum("kanbm,bmk->ank", Hs, Y)
            return (R @ Z @ R).ravel()
        n = H * K * K
        operator = LinearOperator((n, n), matvec=product, dtype=np.float64)
        start_vector = np.random.default_rng(0).standard_normal(n)
        ncv = min(n, 20)
        for _ in range(3):
            try:
                return float(eigsh(operator, k=1, which="LA", v0=start_vector, ncv=ncv, tol=1e-14,
                                   maxiter=100 * n, return_eigenvectors=False)[0])
            except ArpackNoConvergence:
                ncv = min(n, 2 * ncv)
        raise ArpackNoConvergence("Lanczos did not converge to the largest eigenvalue of the flow Jacobian", [], [])

    def stable_step(self, start):
        """Largest linearly stable GD step ``2 / λ_max(−J)`` at the heads' scores ``start`` (inf without curvature)."""
        lam = self.largest_rate(start)
        return 2.0 / lam if lam > 0 else np.inf

    @cached_property
    def _twin(self):
        return MultiHeadSystem(ScoreSystem(np.eye(2), np.eye(2), np.full(2, 0.5), kernels=self.kernels), 2,
                               kernels=self.kernels)

    def warm_up(self, gd=True):
        """Compile (or load from the on-disk cache) the multi-head kernels (and the GD loop if gd); return the seconds."""
        start = time.perf_counter()
        twin = self._twin
        y = np.zeros(8)
        rhs, events, args, event_args, jac = twin.callbacks()
        rhs(y, *args), events(y, *event_args), jac(y, *args)
        if gd:
            iterate_gd(twin, y.reshape(2, 2, 2), eta=1e-3, steps=1, n_out=2)
        prompt_counts(2, twin.scores.p)
        twin.flat_jacobian(y)
        twin.flat_attention(y)
        twin.scores_of(y)
        return time.perf_counter() - start
