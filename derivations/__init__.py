"""SymPy derivations of the score-space dynamics (the symbolic side of attnflow)."""
