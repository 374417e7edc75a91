"""Independent routes that check the solvers: never imported by them.

* :mod:`.enumeration` — finite-N prompts by enumerating every composition of N (double
  precision and mpmath) and by sampling prompts;
* :mod:`.full_model` — the loss and flow in the full d×d parameter space at N = ∞;
* :mod:`.sampled` — training the real network by gradient descent on sampled prompts;
* :mod:`.numpy_twins` — whole-matrix NumPy versions of the kernels (the benchmarks'
  baseline).

Each is written from the model, not from the kernels, so an error in a derivation or
a kernel cannot be repeated here.
"""
