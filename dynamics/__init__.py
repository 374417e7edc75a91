"""The science and the user, in layers that import one way.

The layers: cli → commands → analysis, reporting → problem → :mod:`attnflow.solvers`.

* :mod:`.problem` — configuration, features, function classes, moments, constants;
* :mod:`.analysis` — solving a problem, phases, fits, the papers' claims;
* :mod:`.reporting` — summary.json, reports, plots, figures, the derivation document;
* :mod:`.commands` — run, demo, sweep, check;
* :mod:`.cli` — the ``attnflow`` command line;
* :mod:`.errors`, :mod:`.files`, :mod:`.progress` — shared by every layer: the one-line
  input error, atomic output files, progress bars.
"""
