"""The derived score-space system: the arrays every kernel takes at run time."""

import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from . import kernels as hand_written
from .columns import label_gap_stack
from .gd import iterate_gd
from .pullback import flow_sandwich, jacobian_from_hessians, log_loss
from .stability import gram_square_root, largest_flow_eigenvalue


def _as_matrix(name, value, K=None):
    A = np.ascontiguousarray(value, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or (K is not None and A.shape[0] != K):
        want = f"{K}×{K}" if K is not None else "square"
        raise ValueError(f"{name}: expected a {want} matrix, got shape {A.shape}")
    if not np.all(np.isfinite(A)):
        raise ValueError(f"{name}: has non-finite entries")
    return A


@dataclass(frozen=True)
class ScoreSystem:
    """Large-prompt score dynamics ``dS/dt = −G Γ(S) G`` defined by three arrays.

    Parameters
    ----------
    G : (K, K) array_like
        Gram matrix of the features, ``V Vᵀ``.
    F : (K, K) array_like
        Function-class moments ``E_f[f(V) f(V)ᵀ]``.
    p : (K,) array_like
        Feature probabilities (positive, summing to one).
    kernels : module, optional
        The kernel set to run (:mod:`attnflow.solvers.kernels`, the hand-written one, by
        default; :func:`attnflow.derivations.codegen.load_kernels` builds generated ones).
    N : float, optional
        Prompt length (``inf``, the default: the large-prompt limit).  At finite N the
        expectation over prompts is exact (:mod:`attnflow.solvers.finite_prompt`), Jacobian
        included.
    quadrature_step : float, optional
        Step h of the log-time quadrature at finite N, in (0, 0.5].
    include_query : bool, optional
        The query token (value 0) sits in the softmax.  Its share of the attention is
        O(1/N), so at N = ∞ the dynamics are those without it; at finite N the kernels
        take the augmented moment stack.

    Raises
    ------
    ValueError
        If G or F is not a finite square (K×K) matrix, p is not K positive probabilities
        summing to one, N is neither an integer ≥ 1 nor inf, or quadrature_step is outside
        (0, 0.5]; the message starts with the field's name.

    Examples
    --------
    Three orthonormal features, equally likely, with identity moments: at S = 0 every
    query attends uniformly, the loss is 1/3, and GD is stable up to a step of 27.

    >>> import numpy as np
    >>> from attnflow.solvers.system import ScoreSystem
    >>> system = ScoreSystem(np.eye(3), np.eye(3), np.full(3, 1 / 3))
    >>> S = np.zeros((3, 3))
    >>> round(float(system.loss(S)), 12)
    0.333333333333
    >>> round(float(system.stable_step(S)), 9)
    27.0
    >>> system.rhs(S).shape, system.finite
    ((3, 3), False)
    >>> ScoreSystem(np.eye(3), np.eye(3), np.full(3, 0.5))
    Traceback (most recent call last):
    ...
    ValueError: p: expected positive probabilities summing to 1, got [0.5 0.5 0.5]
    """

    G: np.ndarray
    F: np.ndarray
    p: np.ndarray
    kernels: object = None
    N: float = np.inf
    quadrature_step: float = 0.125
    include_query: bool = False

    def __post_init__(self):
        G = _as_matrix("G", self.G)
        K = G.shape[0]
        F = _as_matrix("F", self.F, K)
        p = np.ascontiguousarray(self.p, dtype=np.float64)
        if p.shape != (K,):
            raise ValueError(f"p: expected {K} probabilities, got shape {p.shape}")
        if not np.all(np.isfinite(p)) or np.any(p <= 0) or abs(p.sum() - 1) > 1e-12:
            raise ValueError(f"p: expected positive probabilities summing to 1, got {p}")
        object.__setattr__(self, "G", G)
        object.__setattr__(self, "F", F)
        object.__setattr__(self, "p", p)
        if self.kernels is None:
            object.__setattr__(self, "kernels", hand_written)
        object.__setattr__(self, "Ms", label_gap_stack(F, self.query_in_softmax))
        if not (self.N == np.inf or (float(self.N).is_integer() and self.N >= 1)):
            raise ValueError(f"N: expected a prompt length ≥ 1 or inf, got {self.N}")
        if not 0 < self.quadrature_step <= 0.5:
            raise ValueError(f"quadrature_step: expected 0 < h ≤ 0.5, got {self.quadrature_step}")

    @property
    def K(self):
        """Number of features K."""
        return self.G.shape[0]

    @cached_property   # the system is frozen: computed once
    def logp(self):
        """``log p``, an argument of every kernel."""
        return np.log(self.p)

    @property
    def finite(self):
        """Whether the prompt length N is finite."""
        return self.N != np.inf

    @property
    def query_in_softmax(self):
        """Whether the query changes the dynamics: included, and N finite."""
        return self.include_query and self.finite

    @cached_property
    def prompt(self):
        """``[N, h, q]``: N = 0 stands for the large-prompt limit (the kernels take :attr:`prompt_argument`)."""
        return np.array([self.N if self.finite else 0.0, self.quadrature_step, float(self.query_in_softmax)])

    @cached_property
    def prompt_argument(self):
        """The kernels' prompt argument: :attr:`prompt` at finite N, ``None`` in the large-prompt limit.

        The kernels compiled for ``None`` leave out the finite-prompt code (about 6 s of a
        cold compile, see :mod:`attnflow.solvers.assembly`).
        """
        return self.prompt if self.finite else None

    @cached_property
    def args(self):
        """The runtime arguments of the flow kernels, in their order."""
        return (self.G, self.Ms, self.p, self.logp, self.prompt_argument)

    # The methods compose the kernel set's loss_gradient_gap and score_hessians with the
    # set-independent ends of solvers.pullback from Python, the arithmetic of the kernels
    # loss, flow_rhs, event_values and flow_jacobian without compiling them: Numba would link
    # all of loss_gradient_gap (or score_hessians) into each and optimise it again, one to two
    # seconds apiece of a cold start.  The compiled integrator compiles flow_rhs and
    # event_values when it is used.

    def loss(self, S):
        """``ℒ(S)``, the expected loss at scores S (K, K)."""
        return self.loss_and_gradient(S)[0]

    def gradient(self, S):
        """``Γ = ∂ℒ/∂S``."""
        return self.loss_and_gradient(S)[1]

    def loss_and_gradient(self, S):
        """``(ℒ(S), Γ)``."""
        Gamma = np.empty((self.K, self.K))
        value, _ = self.kernels.loss_gradient_gap(np.ascontiguousarray(S, dtype=np.float64), self.Ms, self.p,
                                                  self.logp, self.prompt_argument, Gamma)
        return value, Gamma

    def rhs(self, S):
        """``dS/dt`` as a K×K matrix."""
        return self.flat_rhs(np.ascontiguousarray(S, dtype=np.float64).ravel()).reshape(self.K, self.K)

    def jacobian(self, S):
        """``∂(dS/dt)/∂S`` on the C-ordered flattened state, (K², K²); analytic at every N."""
        return jacobian_from_hessians(self.G, self.hessians(self.flatten(S).reshape(self.K, self.K)))

    def hessians(self, S):
        """``Hs[k] = ∂Γ[:, k]/∂S[:, k]``, (K, K, K): Γ's columns depend only on their own scores."""
        Hs = np.empty((self.K, self.K, self.K))
        self.kernels.score_hessians(np.ascontiguousarray(S, dtype=np.float64), self.Ms, self.p, self.logp,
                                    self.prompt_argument, Hs)
        return Hs

    # The flat interface the solvers run (shared with SeparateSystem and NoisySystem).
    state_is_scores = True

    def flat_loss(self, y):
        """:meth:`loss` at the flat state y (K²,)."""
        return self.loss(y.reshape(self.K, self.K))

    def flat_losses(self, Y):
        """:meth:`flat_loss` of each state of Y (T, K²): the loss on an output grid.

        One kernel call per row with the arguments made once: a quarter of the cost of
        T calls of :meth:`flat_loss`, which was a third of a whole small-K trajectory.
        """
        Gamma = np.empty((self.K, self.K))
        G, Ms, p, logp, prompt = self.args
        f = self.kernels.loss_gradient_gap
        return np.array([f(S, Ms, p, logp, prompt, Gamma)[0]
                         for S in np.ascontiguousarray(Y, dtype=np.float64).reshape(-1, self.K, self.K)])

    def flat_attention(self, y):
        """:meth:`attention` at the flat state y (K²,)."""
        return self.attention(y.reshape(self.K, self.K))

    def flatten(self, S0):
        """The flow's state vector for initial scores S0 (validated)."""
        S0 = np.ascontiguousarray(S0, dtype=np.float64)
        if S0.shape != (self.K, self.K) or not np.all(np.isfinite(S0)):
            raise ValueError(f"S0: expected a finite {self.K}×{self.K} matrix, got shape {S0.shape}")
        return S0.ravel()

    def flat_rhs(self, y):
        """``dS/dt = −G Γ G`` at the flat state y, flattened (K²,)."""
        Gamma = np.empty((self.K, self.K))
        self.kernels.loss_gradient_gap(y.reshape(self.K, self.K), self.Ms, self.p, self.logp, self.prompt_argument,
                                       Gamma)
        return flow_sandwich(self.G, Gamma)

    def flat_jacobian(self, y):
        """:meth:`jacobian` at the flat state y, (K², K²)."""
        return self.jacobian(y.reshape(self.K, self.K))

    def flat_event_values(self, y):
        """``(max_k log(1 − A_kk), log ℒ)`` at the state y."""
        value, gap = self.kernels.loss_gradient_gap(y.reshape(self.K, self.K), self.Ms, self.p, self.logp,
                                                    self.prompt_argument, np.empty((self.K, self.K)))
        return gap, log_loss(value)

    def callbacks(self):
        """The compiled flow for :mod:`attnflow.solvers.integrator` and :mod:`attnflow.solvers.rosenbrock`.

        Returns
        -------
        tuple
            ``(rhs, events, args, event_args, jac)``: the kernel set's ``flow_rhs``,
            ``event_values`` and ``flow_jacobian`` with their runtime arrays ``args =
            (G, Ms, p, logp, prompt)`` and ``event_args = (Ms, p, logp, prompt)`` (large and
            finite N: one kernel set serves both).  At N = ∞ and K ≤ ``COLUMN_FLOW_MAX_K``
            the first two are ``column_flow_rhs`` and ``column_event_values``: the same
            numbers, without the general path's code to compile.
        """
        args = tuple(None if a is None else np.ascontiguousarray(a, dtype=np.float64) for a in self.args)
        k = self.kernels
        if not self.finite and self.K <= k.COLUMN_FLOW_MAX_K:     # the same numbers, less to compile
            return k.column_flow_rhs, k.column_event_values, args, args[1:], k.flow_jacobian
        return k.flow_rhs, k.event_values, args, args[1:], k.flow_jacobian

    def gd_callback(self):
        """``(step, args, work)`` of the compiled GD loop (:mod:`attnflow.solvers.gd`).

        The kernel set's :func:`attnflow.solvers.assembly.score_gd_step` with ``(G, Ms, p, logp,
        prompt)`` and the number of scratch floats it needs (``score_gd_work(K)``).
        """
        return self.kernels.score_gd_step, self.callbacks()[2], self.kernels.score_gd_work(self.K)

    def scores_of(self, Y):
        """Scores (T, K, K) of states Y (T, K²)."""
        return Y.reshape(-1, self.K, self.K)

    def attention(self, S):
        """``A[n, k]``: total attention of query k on feature n (expected over prompts at finite N)."""
        return self.kernels.attention(np.ascontiguousarray(S, dtype=np.float64), self.logp, self.prompt_argument)

    @cached_property
    def gram_root(self):
        """``G^½``, for the symmetrised flow Jacobian of :mod:`solvers.stability`."""
        return gram_square_root(self.G)

    def largest_rate(self, S):
        """λ_max of ``−J = (G ⊗ G) H`` at S, matrix-free (:mod:`solvers.stability`)."""
        return largest_flow_eigenvalue(self.hessians(S), self.gram_root)

    def stable_step(self, S):
        """Largest GD step size that is linearly stable at S: ``2 / max eig(−J)``.

        ``−J = (G ⊗ G) H`` is similar to a symmetric operator, so its eigenvalues are
        real; the largest comes from Lanczos on that operator, O(K³) work per product
        and no K²×K² matrix.  A non-positive largest eigenvalue means no local limit (inf).
        """
        lam = self.largest_rate(S)
        return 2.0 / lam if lam > 0 else np.inf

    def warm_up(self, gd=True):
        """Compile (or load from the on-disk cache) every kernel; return the seconds it took.

        With ``gd=False`` only the flow's kernels (loss, right-hand side, events, Jacobian,
        attention): a flow-only run does not compile the GD loop and the stable step.

        Numba compiles for the arrays' types, not their sizes, so the kernels run on a K = 2
        twin of this system (same kernel set and prompt model): the same machine code, without
        evaluating a (K², K²) Jacobian, 34 GB at K = 256.
        """
        start = time.perf_counter()
        twin = ScoreSystem(np.eye(2), np.eye(2), np.full(2, 0.5), kernels=self.kernels, N=self.N,
                           quadrature_step=self.quadrature_step, include_query=self.include_query)
        S = np.zeros((2, 2))
        twin.loss(S)
        twin.rhs(S)
        twin.jacobian(S)
        twin.flat_event_values(S.ravel())
        twin.hessians(S)
        twin.attention(S)
        if gd:
            iterate_gd(twin, S, eta=1e-3, steps=1, n_out=2)
            twin.stable_step(S)
        return time.perf_counter() - start
