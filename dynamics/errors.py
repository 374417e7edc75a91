"""The one exception type users see: a problem with their input, named by field."""


class AttnflowError(Exception):
    """Invalid input or an unusable result, reported as one line naming the problem.

    ``field`` is the configuration path (``"features.K"``) or argument it concerns.
    The command line prints ``error: <field>: <message>`` and exits with status 2.
    """

    def __init__(self, field, message):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class Interrupted(Exception):
    """Work stopped by the user (Ctrl-C) after saving what was finished; the message says what.

    The command line prints the message as one line and exits with status 130.
    """
