"""``attnflow check``: the papers' claims as numerical protocols with verdicts.

Every claim of the papers (``docs/model.md`` §10; C1–C8 from Li, Duan, Liang 2025; H1–H3 from
Huang, Cheng, Liang 2023) becomes a protocol: runs or sweeps, measured numbers,
scaling exponents with confidence intervals, orderings, and a verdict PASS, FAIL
or INCONCLUSIVE with the reason written beside it.  A claim that fails
numerically is a finding, reported plainly with its evidence.  Claims that rest on
a reconstructed definition (Δ, δ, the threshold c*) say so.

All protocols run at N = ∞ with merged parameters (the score system), the setting
the papers analyse, whatever variant the user's configuration trains; the report says so.

One module per protocol (``c1`` … ``c8`` from Li, Duan, Liang 2025; ``h1`` … ``h3``
from Huang, Cheng, Liang 2023), each a function ``claim_xx(ctx) -> Verdict`` with its
thresholds named beside it; :data:`CLAIMS` is the registry, in report order.
Shared measurements live in :mod:`.runs`, verdicts and windows in :mod:`.verdicts`.
"""

from .c1 import claim_c1
from .c2 import claim_c2
from .c3 import claim_c3
from .c4 import claim_c4
from .c5 import C5_SETTING, claim_c5, gd_converges
from .c6 import claim_c6
from .c7 import claim_c7
from .c8 import claim_c8
from .h1 import claim_h1
from .h2 import claim_h2
from .h3 import claim_h3
from .runs import Context, attention_phases, fast_phases, flow_to_convergence, l_sweep, orthonormal_linear, problem_with
from .verdicts import FAIL, INCONCLUSIVE, PASS, Verdict, decide, deciding_window

CLAIMS = {"C1": claim_c1, "C2": claim_c2, "C3": claim_c3, "C4": claim_c4, "C5": claim_c5, "C6": claim_c6,
          "C7": claim_c7, "C8": claim_c8, "H1": claim_h1, "H2": claim_h2, "H3": claim_h3}

__all__ = ["CLAIMS", "C5_SETTING", "Context", "FAIL", "INCONCLUSIVE", "PASS", "Verdict", "attention_phases", "decide",
           "deciding_window", "fast_phases", "flow_to_convergence", "gd_converges", "l_sweep", "orthonormal_linear",
           "problem_with"]
