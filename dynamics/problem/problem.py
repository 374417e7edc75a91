"""A problem: features, function class and prompt model, resolved from a configuration.

This is the first stage of the pipeline a user can call on its own::

    problem = Problem.from_config(config.load("my.toml"))
    system = problem.system()          # what is trained: the score system, or a variant on top of it
    problem.start                      # its initial state: scores S₀, factors (B₀, C₀), or Q₀
    scores = problem.score_system()    # the merged, noise-free score system (arrays G, F, p), from S0
    problem.constants()                # L, Δ, δ, LΔδ, regime (reconstructed, labelled)
"""

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from ...derivations import load_kernels
from ...solvers import ScoreSystem
from ...solvers import kernels as hand_written
# The separate factors, several heads, token noise and a training set are imported where they
# are used (Problem.from_config, Problem._system): a default problem needs none of them, and their
# modules and Numba dispatchers cost about 30 ms of every start.

from ..errors import AttnflowError
from . import features as feat
from . import function_classes as fc
from .regimes import Constants, constants
from .training_set import draw_training_set


MAX_MOMENT = 1e12       # |F| beyond it (|f| ≳ 10⁶ on the features) is an overflow, not a task


def build_features(section):
    """Build the feature set the ``[features]`` section asks for.

    Parameters
    ----------
    section : Section
        The validated ``[features]`` section.

    Returns
    -------
    FeatureSet

    Raises
    ------
    AttnflowError
        ``features.matrix`` or ``features.d`` when the matrix is missing, unused or
        inconsistent with d, or the features cannot be drawn in dimension d.
    """
    kind, K, d = section.kind, section.K, section.d
    if kind == "explicit":
        if section.matrix is None:
            raise AttnflowError("features.matrix", "required when features.kind = \"explicit\"")
        fs = feat.explicit(section.matrix)
        if d is not None and d != fs.d:
            raise AttnflowError("features.d", f"is {d} but features.matrix has {fs.d} columns")
        return fs
    if section.matrix is not None:
        raise AttnflowError("features.matrix", f"only used with kind = \"explicit\", not \"{kind}\"")
    return _generated_features(kind, K, d, section.seed if kind == "random-unit" else 0)


@lru_cache(maxsize=32)
def _generated_features(kind, K, d, seed):
    """Orthonormal, random-unit or simplex features, built once per process for each
    (kind, K, d, seed): they are a function of these alone (random-unit is seeded) and a
    FeatureSet is immutable (its V read-only), so the points of a sweep share one."""
    if kind == "orthonormal":
        return feat.orthonormal(K, d)
    try:
        return feat.random_unit(K, d, seed) if kind == "random-unit" else feat.simplex(K, d)
    except AttnflowError as e:
        if e.field != "features.matrix":
            raise
        # The user gave no matrix: what went wrong is the dimension the vectors were drawn in.
        raise AttnflowError("features.d", f"{K} {kind} features in d = {d or K}: {e.message}") from None


# The task keys only some kinds of task read; one that the configured kind does not read is an error.
KIND_SPECIFIC_TASK_KEYS = ("sigma", "L", "functions", "weights", "F", "expression", "parameters")


def task_overrides(kind, **fields):
    """Overrides ``{"task.KEY": value}`` that replace the configured task by one of ``kind`` with ``fields``.

    For protocols that run a task of their own on the user's configuration: the configured
    task's kind-specific keys are cleared, since kept they would contradict the new task
    (``task.sigma`` is not read by a frequency task; ``task.L`` beside ``task.sigma`` gives the
    scale twice).

    Examples
    --------
    >>> task_overrides("linear", sigma=0.5)["task.sigma"], task_overrides("linear", sigma=0.5)["task.L"]
    (0.5, None)
    """
    return {"task.kind": kind, **{f"task.{key}": None for key in KIND_SPECIFIC_TASK_KEYS},
            **{f"task.{key}": value for key, value in fields.items()}}


def _unused(section, allowed, kind):
    for key in KIND_SPECIFIC_TASK_KEYS:
        if key not in allowed and section.values.get(key) is not None:
            raise AttnflowError(f"task.{key}", f"is not used by task.kind = \"{kind}\"")


def build_function_class(section, fs):
    """Build the function class the ``[task]`` section asks for.

    Parameters
    ----------
    section : Section
        The validated ``[task]`` section.
    fs : FeatureSet
        The features (their K and d fix the sizes the section must match).

    Returns
    -------
    FunctionClass

    Raises
    ------
    AttnflowError
        ``task.FIELD`` when a field the kind needs is missing, one it does not use is
        given, or a value does not fit K or d.
    """
    kind = section.kind
    if kind == "linear":
        _unused(section, ("sigma", "L"), kind)
        if section.sigma is not None and section.L is not None:
            raise AttnflowError("task.L", "give sigma or L for a linear task, not both (L = sigma·√d)")
        sigma = section.L / np.sqrt(fs.d) if section.L is not None else (section.sigma or 1.0)
        return fc.Linear(sigma)
    if kind in ("single-index", "frequency"):
        _unused(section, ("L",), kind)
        L = 1.0 if section.L is None else section.L
        return fc.SingleIndex(L, section.link) if kind == "single-index" else fc.Frequency(L)
    if kind == "finite":
        _unused(section, ("functions", "weights"), kind)
        if section.functions is None:
            raise AttnflowError("task.functions", "required when task.kind = \"finite\": a list of "
                                                  "functions, each the K values [f(v_1), …, f(v_K)]")
        values = np.array(section.functions)
        if values.shape[1] != fs.K:
            raise AttnflowError("task.functions", f"each function needs K = {fs.K} values, got {values.shape[1]}")
        weights = np.ones(len(values)) if section.weights is None else np.array(section.weights)
        if weights.shape != (len(values),):
            raise AttnflowError("task.weights", f"expected {len(values)} weights (one per function), got {len(weights)}")
        if weights.sum() <= 0:
            raise AttnflowError("task.weights", "need at least one positive weight")
        return fc.Finite(values, weights / weights.sum())
    if kind == "expression":
        _unused(section, ("expression", "parameters", "L"), kind)
        if section.expression is None:
            raise AttnflowError("task.expression", "required when task.kind = \"expression\": a SymPy expression "
                                                   f"in x0..x{fs.d - 1} and the random parameters")
        return fc.Expression.parse(section.expression, section.parameters, fs.d, section.L)
    if kind == "moments":
        _unused(section, ("F", "L"), kind)
        if section.F is None:
            raise AttnflowError("task.F", "required when task.kind = \"moments\": the K×K matrix E[f(V)f(V)ᵀ]")
        return fc.GivenMoments(fc.check_moment_matrix(section.F, fs.K), section.L)
    raise AttnflowError("task.kind", f"\"{kind}\" is not supported in this version")


def build_probabilities(section, K):
    """Return the feature probabilities p of the ``[prompt]`` section, shape (K,).

    Parameters
    ----------
    section : Section
        The validated ``[prompt]`` section (``p`` is ``"uniform"`` or K numbers).
    K : int
        Number of features.

    Returns
    -------
    array, shape (K,)
        p, renormalised to sum to one exactly.

    Raises
    ------
    AttnflowError
        ``prompt.p`` when there are not K numbers or they do not sum to 1 (to 1e-9).
    """
    if section.p == "uniform":
        return np.full(K, 1.0 / K)
    p = np.array(section.p)
    if p.shape != (K,):
        raise AttnflowError("prompt.p", f"expected K = {K} probabilities, got {len(p)}")
    if abs(p.sum() - 1.0) > 1e-9:
        raise AttnflowError("prompt.p", f"probabilities must sum to 1, they sum to {p.sum():.12g}")
    return p / p.sum()


@dataclass(frozen=True)
class Problem:
    """Everything the dynamics depend on, before any solver is chosen.

    Attributes
    ----------
    features : :class:`attnflow.dynamics.problem.features.FeatureSet`
        The features V.
    function_class : :class:`attnflow.dynamics.problem.function_classes.FunctionClass`
        The random function class 𝓕.
    moments : :class:`attnflow.dynamics.problem.function_classes.Moments`
        F with its method and error.
    p : array, shape (K,)
        Feature probabilities.
    S0 : array, shape (K, K)
        Initial scores ``V Q₀ Vᵀ``; with several heads, the effective scores of their mean
        attention (:func:`attnflow.solvers.multihead.effective_scores`).
    threshold : float
        The regime constant c*.
    kernels : {"generated", "hand-written"}
        Which kernels the score system runs (see :meth:`score_system`).
    N : float
        Prompt length (``inf``: the large-prompt limit).
    quadrature_step : float
        Step of the quadrature over prompt counts at finite N.
    include_query : bool
        Whether the query token enters the softmax.
    factors : tuple of arrays or None
        ``(W_K, W_Q)`` (h×d each) for the separate parametrisation, else None.
    noise : float
        Token noise scale ν (0: noise-free, the score reduction is exact).
    Q0 : array, shape (d, d)
        The initial d×d matrix (what the noisy model trains; the first head's with several heads).
    head_scores : array, shape (H, K, K) or None
        The heads' initial scores ``V Q_h(0) Vᵀ`` with ``model.heads`` = H > 1, else None.
    training_set : tuple of arrays or None
        ``(query, log_weights, labels)`` of the M training prompts
        (:func:`attnflow.dynamics.problem.training_set.draw_training_set`), or None: the
        population loss is trained.

    Examples
    --------
    >>> import attnflow
    >>> cfg = attnflow.config_from_dict({"features": {"K": 3}, "task": {"L": 0.5}})
    >>> problem = attnflow.Problem.from_config(cfg)
    >>> problem.K, problem.constants().regime
    (3, 'flat')
    >>> problem.system() is problem.score_system()    # merged and noise-free: one system
    True
    >>> float(problem.initial_loss()) > 0
    True
    """

    features: feat.FeatureSet
    function_class: fc.FunctionClass
    moments: fc.Moments
    p: np.ndarray
    S0: np.ndarray
    threshold: float = 1.0
    kernels: str = "generated"
    N: float = np.inf
    quadrature_step: float = 0.125
    include_query: bool = False
    factors: tuple = None
    noise: float = 0.0
    Q0: np.ndarray = None
    head_scores: np.ndarray = None
    training_set: tuple = None

    @classmethod
    def from_config(cls, cfg):
        """Resolve a validated configuration into a problem.

        Parameters
        ----------
        cfg : Config
            A configuration from :mod:`attnflow.dynamics.problem.config`.

        Returns
        -------
        Problem

        Raises
        ------
        AttnflowError
            Naming the field at fault: features, function class or probabilities that
            do not fit together, moments that overflow, or a separate parametrisation
            started at zero.
        """
        fs = build_features(cfg.features)
        fclass = build_function_class(cfg.task, fs)
        with np.errstate(all="ignore"):               # overflow is reported below, not as NumPy warnings
            moments = fclass.moments(fs.V, cfg.task.moment_method, cfg.task.mc_samples, cfg.task.seed)
        if not np.all(np.isfinite(moments.F)) or np.abs(moments.F).max() > MAX_MOMENT:
            raise AttnflowError("task", f"the class's moments F = E[f(V) f(V)ᵀ] overflow ({fclass.describe()} reaches "
                                        f"|F| > {MAX_MOMENT:g} or a non-finite value on the features); rescale it")
        p = build_probabilities(cfg.prompt, fs.K)
        model = cfg.model
        factors = None
        Q0 = np.zeros((fs.d, fs.d))
        if model.parametrization == "separate":
            if model.init_scale <= 0:
                raise AttnflowError("model.init_scale", "the separate parametrization needs a random start "
                                                        "(> 0): W_K = W_Q = 0 is a stationary point")
            from ...solvers.separate import random_factors

            factors = random_factors(model.head_dim or fs.d, fs.d, model.init_scale, model.seed)
            Q0 = factors[0].T @ factors[1]
        elif model.init_scale > 0:
            from ...solvers.multihead import random_heads

            # One head's draw is the single-head random start's (random_heads says so).
            Qs = random_heads(model.heads, fs.d, model.init_scale, model.seed)
            Q0 = Qs[0]
        S0 = fs.V @ Q0 @ fs.V.T
        head_scores = None
        if model.heads > 1:      # config refused several heads without a random start
            from ...solvers.multihead import effective_scores

            head_scores = fs.V @ Qs @ fs.V.T
            S0 = effective_scores(head_scores, np.log(p))
        training_set = None
        if cfg.training.prompts is not None:
            training_set = draw_training_set(fs.V, fclass, p, cfg.prompt.N, cfg.training.prompts, cfg.training.seed)
        return cls(fs, fclass, moments, p, S0, cfg.regime.threshold, cfg.training.kernels,
                   cfg.prompt.N, cfg.prompt.quadrature_step, cfg.prompt.include_query, factors,
                   cfg.prompt.noise, Q0, head_scores, training_set)

    @property
    def K(self):
        """Number of features."""
        return self.features.K

    @property
    def F(self):
        """The moment matrix ``E_f[f(V) f(V)ᵀ]``, shape (K, K)."""
        return self.moments.F

    @property
    def heads(self):
        """Number of attention heads H."""
        return 1 if self.head_scores is None else len(self.head_scores)

    @property
    def separate(self):
        """Whether ``W_K`` and ``W_Q`` are trained as separate factors."""
        return self.factors is not None

    def system(self):
        """Return the system that is trained, as configured, built once: its state starts at :attr:`start`.

        The score system (:meth:`score_system`) for merged, noise-free parameters; the
        factors' system on top of it for separate ``W_K``, ``W_Q``; the heads' system on top
        of it for several heads; the full d×d model with token noise.
        """
        return self._system

    @cached_property
    def _system(self):
        # Imported per branch (see the module's imports): the score system needs none of them.
        if self.noise > 0:
            from ...solvers.noisy import NoisySystem

            return NoisySystem(self.features.V, self.p, self.function_class.sigma, self.noise)
        if self.separate:
            from ...solvers.separate import SeparateSystem

            return SeparateSystem(self.score_system(), self.factors[0].shape[0])
        if self.heads > 1:
            from ...solvers.multihead import MultiHeadSystem

            # the heads run the score system's kernel set: generated from the indexed derivation by default
            return MultiHeadSystem(self.score_system(), self.heads, kernels=self.score_system().kernels)
        if self.training_set is not None:
            from ...solvers.training_set import TrainingSetSystem

            return TrainingSetSystem(self.score_system(), *self.training_set)
        return self.score_system()

    @property
    def start(self):
        """The trained system's initial state: the scores S₀, the factors ``(W_K Vᵀ, W_Q Vᵀ)``, the heads' scores, or Q₀ with noise."""
        if self.noise > 0:
            return self.Q0
        if self.separate:
            return tuple(W @ self.features.V.T for W in self.factors)
        if self.heads > 1:
            return self.head_scores
        return self.S0

    def score_system(self):
        """Return the score-space system of the merged, noise-free model, started at :attr:`S0`.

        It is the trained :meth:`system` when the parameters are merged and there is no
        token noise; otherwise it is the named second system that reports and ``check``
        compare with (the setting the papers analyse), never trained in the system's
        place without saying so.  ``"generated"`` kernels (the default) are derived by
        SymPy (:func:`attnflow.derivations.load_kernels`, one cached module for every
        K); ``"hand-written"`` runs :mod:`attnflow.solvers.kernels`, the test reference.
        """
        return self._score_system

    @cached_property
    def _score_system(self):
        kernels = load_kernels(self.K, heads=self.heads > 1) if self.kernels == "generated" else hand_written
        return ScoreSystem(self.features.G, self.F, self.p, kernels=kernels, N=self.N,
                           quadrature_step=self.quadrature_step, include_query=self.include_query)

    def score_system_note(self):
        """Return one line saying what of the configured model the score system leaves out (None: nothing)."""
        left_out = [name for name, present in (("separate W_K, W_Q", self.separate),
                                               (f"token noise {self.noise:g}", self.noise > 0),
                                               (f"{self.heads} heads (it starts from their mean attention)",
                                                self.heads > 1)) if present]
        if self.training_set is not None:
            left_out.append(f"the finite training set of {len(self.training_set[0])} prompts "
                            "(the score system is the population loss)")
        if not left_out:
            return None
        return ("the score system (merged parameters, no noise) stands in for the configured model; "
                f"not modelled: {', '.join(left_out)}")

    def initial_loss(self):
        """Return the loss at the start of training (of the noisy model, with token noise)."""
        system = self.system()
        return system.flat_loss(system.flatten(self.start))

    def constants(self) -> Constants:
        """Return L, Δ, δ, LΔδ and the regime; computed once (an expression class estimates L by sampling)."""
        return self._constants

    @cached_property
    def _constants(self):
        return constants(self.features, self.F, self.function_class.lipschitz(self.features.V), self.threshold)
