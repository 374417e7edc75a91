"""Every option of every ``attnflow`` subcommand says what it does."""

import argparse

from attnflow.dynamics.cli import build_parser


def _subcommands(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_every_option_of_every_subcommand_has_help():
    commands = _subcommands(build_parser())
    assert set(commands) == {"demo", "run", "derive", "sweep", "phase-diagram", "check"}
    missing = [f"{name} {action.option_strings[0] if action.option_strings else action.dest}"
               for name, sub in commands.items() for action in sub._actions
               if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()]
    assert missing == []


def test_check_quick_help_promises_seconds_not_minutes():
    check = _subcommands(build_parser())["check"]
    quick = next(a for a in check._actions if "--quick" in a.option_strings)
    assert "seconds" in quick.help and "minutes" not in quick.help
