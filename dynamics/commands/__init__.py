"""The commands a user runs, from Python or from the command line: run, demo, sweep, check.

Each writes its outputs atomically into a directory it checks before any work.
"""
