"""Drawing a finite training set of M prompts (``[training] prompts``), once and seeded.

Prompt m is a query feature ``k_m ~ p``, at finite N the counts ``c_m ~ Multinomial(N, p)``
of its N context tokens, and one function ``f_m`` of the task's class, kept as its values
``f_m(v_n)`` on every feature (:meth:`FunctionClass.sample_labels
<attnflow.dynamics.problem.function_classes.FunctionClass.sample_labels>`).  In the
large-prompt limit (N = ∞) the context's empirical frequencies are p itself (law of large
numbers), so a prompt is ``(k_m, f_m)``.
"""

import numpy as np

# Labels are drawn for this many (prompt, feature, coordinate) entries at a time, so a
# large training set never builds an M×K×d token array.
LABEL_CHUNK_ENTRIES = 2_000_000


def draw_training_set(V, function_class, p, N, M, seed):
    """Draw M prompts; return ``(query, log_weights, labels)``.

    Parameters
    ----------
    V : ndarray, shape (K, d)
        Features.
    function_class : FunctionClass
        The task's class (its ``sample_labels`` draws one function per prompt).
    p : ndarray, shape (K,)
        Feature probabilities.
    N : float
        Prompt length, ``inf`` for the large-prompt limit.
    M : int
        Number of prompts.
    seed : int
        Seed of the generator (``training.seed``).

    Returns
    -------
    query : ndarray of int, shape (M,)
        ``k_m``.
    log_weights : ndarray, shape (M, K)
        ``log c_m`` (−inf for a feature absent from the prompt) at finite N, ``log p`` at N = ∞.
    labels : ndarray, shape (M, K)
        ``f_m(v_n)``.

    Examples
    --------
    >>> import numpy as np
    >>> from attnflow.dynamics.problem import function_classes as fc
    >>> q, b, y = draw_training_set(np.eye(3), fc.Linear(1.0), np.full(3, 1 / 3), 5, 4, seed=0)
    >>> q.shape, b.shape, y.shape
    ((4,), (4, 3), (4, 3))
    >>> bool(np.all(np.round(np.exp(b)).sum(axis=1) == 5))     # the counts of 5 context tokens
    True
    """
    K, d = V.shape
    rng = np.random.default_rng(seed)
    query = rng.choice(K, size=M, p=p)
    if np.isfinite(N):
        with np.errstate(divide="ignore"):
            log_weights = np.log(rng.multinomial(int(N), p, size=M).astype(np.float64))
    else:
        log_weights = np.tile(np.log(p), (M, 1))
    labels = np.empty((M, K))
    chunk = max(1, LABEL_CHUNK_ENTRIES // (K * d))
    idx = np.arange(K)
    for lo in range(0, M, chunk):
        B = min(chunk, M - lo)
        labels[lo:lo + B] = function_class.sample_labels(rng, np.broadcast_to(V, (B, K, d)),
                                                         np.broadcast_to(idx, (B, K)))
    return query, log_weights, labels
