"""Progress bars for long work (tqdm on standard error), as ``fraction → None`` callbacks."""

from contextlib import contextmanager

_TOTAL = 1000


@contextmanager
def progress_bar(description, enabled=True):
    """Yield a callback ``report(fraction)``; the bar closes when the block ends.

    Parameters
    ----------
    description : str
        Shown left of the bar (on stderr).
    enabled : bool
        When False, yield None and draw nothing (callers then skip reporting).
    """
    if not enabled:
        yield None
        return
    # Imported here, not at the top: tqdm costs about 10 ms of import, and a quiet run draws no bar.
    from tqdm import tqdm

    # miniters=1: tqdm's adaptive default learns from a fast start (a flow's first decades of
    # log time pass in milliseconds) to skip redraws, and the bar then stalls for seconds.
    bar = tqdm(total=_TOTAL, desc=description, unit="‰", leave=False, miniters=1,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}")

    def report(fraction):
        target = int(round(fraction * _TOTAL))
        if target > bar.n:
            bar.update(target - bar.n)

    try:
        yield report
    finally:
        bar.close()
