"""Progress bars keep moving when the work slows down after a fast start."""

import re
import time

from attnflow.dynamics.progress import progress_bar


def test_bar_redraws_after_a_fast_start(capsys):
    """A flow passes its first decades of log time in milliseconds; tqdm's adaptive redraw
    interval learned from that burst and then froze the bar for seconds."""
    with progress_bar("flow") as report:
        time.sleep(0.12)
        report(0.5)
        for i in range(1, 9):
            time.sleep(0.12)
            report(0.5 + 0.02 * i)
    shown = {int(p) for p in re.findall(r"(\d+)%", capsys.readouterr().err)}
    assert {50, 52, 54, 56, 58, 60, 62, 64, 66}.issubset(shown), sorted(shown)


def test_disabled_bar_gives_no_callback():
    with progress_bar("flow", enabled=False) as report:
        assert report is None
