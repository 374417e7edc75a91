"""The SymPy verification checks' failure: an exception, so the checks also run under ``python -O``."""


class DerivationCheckFailed(Exception):
    """A symbolic check of a derivation stage did not hold."""


def require(condition, what):
    """Raise :class:`DerivationCheckFailed` naming the check ``what`` unless ``condition`` holds."""
    if not condition:
        raise DerivationCheckFailed(f"derivation check failed: {what}")
