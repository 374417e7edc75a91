"""The analysis layer: solving a problem, its phases, fits and the papers' claims.

:mod:`.solve` runs the flow and GD a configuration asks for; :mod:`.phases` and
:mod:`.fits` measure crossing times, phase boundaries and power laws;
:mod:`.claims` turns each claim into a protocol with a verdict.
"""
