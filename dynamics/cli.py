"""The ``attnflow`` command line.

Every bad input ends with one line ``error: FIELD: what was expected``, exit
status 2 and no traceback.
"""

import argparse
import sys
import tomllib

import numpy as np

from .. import __version__
from .errors import AttnflowError, Interrupted


def parse_override(text):
    """Parse one ``--set SECTION.KEY=VALUE``: the value is TOML, or a bare string when it is not.

    Parameters
    ----------
    text : str
        E.g. ``task.L=3``, ``prompt.p=[0.7,0.3]``, ``task.link=relu``.

    Returns
    -------
    (str, object)
        The path ``SECTION.KEY`` and the value.

    Raises
    ------
    AttnflowError
        ``--set`` when there is no ``=`` or no section, or the value nests too deeply.

    Examples
    --------
    >>> parse_override("task.L=3")
    ('task.L', 3)
    >>> parse_override("prompt.p=[0.7, 0.3]")
    ('prompt.p', [0.7, 0.3])
    >>> parse_override("task.link=relu")
    ('task.link', 'relu')
    """
    path, sep, value = text.partition("=")
    if not sep or "." not in path:
        raise AttnflowError("--set", f"expected SECTION.KEY=VALUE, got {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    except RecursionError:
        raise AttnflowError("--set", f"the value of {path.strip()} nests arrays or tables too deeply") from None
    return path.strip(), parsed


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one line, ``error: attnflow run: …``, and exit status 2."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser():
    """Return the ``attnflow`` argument parser with its subcommands (demo, run, derive, sweep, check).

    Its usage errors are one line, ``error: attnflow run: …``, with exit status 2, like every bad input.
    """
    parser = _Parser(
        prog="attnflow",
        description="Training dynamics of softmax attention learning in-context regression.")
    parser.add_argument("--version", action="version", version=f"attnflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    demo = sub.add_parser("demo", help="flat vs sharp regime side by side: plots and a short report")
    demo.add_argument("--out", default="attnflow-demo", help="output directory (default: %(default)s)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")

    run = sub.add_parser("run", help="one problem: trajectory.npz, summary.json, plots")
    run.add_argument("config", help="TOML configuration (an empty file runs the defaults)")
    run.add_argument("--out", required=True, help="output directory")
    run.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override a configuration field (repeatable)")
    run.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    derive = sub.add_parser("derive", help="the derivation, step by step, as Markdown, LaTeX or an HTML page")
    derive.add_argument("config", help="TOML configuration")
    derive.add_argument("--format", choices=("markdown", "latex", "html"), default="markdown",
                        help="Markdown with $…$ math, a standalone LaTeX document, or one self-contained HTML "
                             "page with MathML equations that any browser opens offline (default: %(default)s)")
    derive.add_argument("--out", help="write to this file instead of standard output")
    derive.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a configuration field (repeatable)")
    sweep = sub.add_parser("sweep", help="a grid of problems in parallel: table.csv + provenance.json")
    sweep.add_argument("config", help="TOML configuration (the base of every grid point)")
    sweep.add_argument("--param", action="append", required=True, metavar="FIELD=LO:HI:log:N",
                       help="a swept field: LO:HI:log:N, LO:HI:lin:N or v1,v2,... (repeatable: Cartesian product)")
    sweep.add_argument("--out", required=True, help="output directory (rerun to resume)")
    sweep.add_argument("--jobs", type=int, default=None,
                       help="worker processes (default: all cores; with --scheduler, the cluster's threads)")
    sweep.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on a dask.distributed cluster, e.g. tcp://host:8786 (pip install \"attnflow[dask]\")")
    sweep.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a configuration field (repeatable)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    diagram = sub.add_parser("phase-diagram", help="a two-parameter sweep drawn as a heatmap with the regime boundary")
    diagram.add_argument("config", nargs="?", help="TOML configuration (the base of every grid point); omit with --from")
    diagram.add_argument("--x", required=True, metavar="FIELD=SPEC",
                         help="the horizontal axis, as sweep's --param (FIELD alone with --from)")
    diagram.add_argument("--y", required=True, metavar="FIELD=SPEC", help="the vertical axis, likewise")
    diagram.add_argument("--z", required=True, metavar="COLUMN",
                         help="the colour: a column of the sweep table, e.g. t_half, t_loss_0.001, final_loss")
    diagram.add_argument("--out", help="the sweep directory (rerun to resume); with --from, where to draw")
    diagram.add_argument("--from", dest="from_sweep", metavar="SWEEP_DIR",
                         help="draw from a finished sweep instead of running one")
    diagram.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    diagram.add_argument("--scheduler", metavar="ADDRESS", help="run the sweep on a dask.distributed cluster")
    diagram.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                         help="override a configuration field (repeatable)")
    diagram.add_argument("--quiet", action="store_true", help="no progress bar")
    check = sub.add_parser("check", help="the papers' claims as numerical protocols: report.md, report.json, figures")
    check.add_argument("config", help="TOML configuration of the base problem")
    check.add_argument("--out", required=True, help="output directory")
    check.add_argument("--quick", action="store_true", help="small grids, seconds (the full grids take about half a minute)")
    check.add_argument("--claims", help="comma-separated subset, e.g. C1,C3,H2")
    check.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a configuration field of the base problem (repeatable)")
    check.add_argument("--search", choices=("quick", "full"), default="quick",
                       help="C2's search for an oscillating irrelevant attention: quick (seconds, the default) or "
                            "full (every axis of docs/findings.md, minutes)")
    check.add_argument("--quiet", action="store_true", help="no progress bars")
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true",
                             help="show the traceback of an internal error instead of one line")
    return parser


def _load_config(args):
    from .problem import config
    return config.load(args.config, dict(parse_override(s) for s in args.set))


def _warn(note):
    print(f"warning: {note}", file=sys.stderr)


def _dispatch(args):
    if args.command == "demo":
        from .commands.demo import demo
        print(demo(args.out, progress=not args.quiet))
    elif args.command == "run":
        from .reporting.report import run_report
        from .commands.run import run
        cfg = _load_config(args)
        problem, result, summary = run(cfg, args.out, progress=not args.quiet, plots=not args.no_plots, warn=_warn)
        print(run_report(summary))
    elif args.command == "sweep":
        from .commands.sweep import sweep, validated_params
        cfg = _load_config(args)
        params = validated_params(cfg, args.param)
        from .problem.config import inert_settings
        for note in inert_settings(cfg.with_overrides({field: values[0] for field, values in params})):
            _warn(note)
        rows = sweep(cfg, params, args.out, args.jobs, progress=not args.quiet, scheduler=args.scheduler)
        failed = sum(r["status"] != "ok" for r in rows)
        print(f"{len(rows)} points ({failed} not ok) → {args.out}/table.csv, {args.out}/provenance.json")
    elif args.command == "phase-diagram":
        from .commands.phase_diagram import phase_diagram, phase_diagram_from_table
        if args.from_sweep is not None:
            if args.config is not None or args.set:
                raise AttnflowError("--from", "draws a finished sweep: give no CONFIG and no --set with it")
            grid = phase_diagram_from_table(args.from_sweep, args.x.partition("=")[0], args.y.partition("=")[0],
                                            args.z, args.out)
            out = args.out or args.from_sweep
        else:
            if args.config is None or args.out is None:
                raise AttnflowError("phase-diagram", "needs CONFIG and --out (or --from SWEEP_DIR)")
            from .commands.sweep import validated_params
            cfg = _load_config(args)
            x, y = validated_params(cfg, [args.x, args.y], ["--x", "--y"])
            grid = phase_diagram(cfg, x, y, args.z, args.out, args.jobs, progress=not args.quiet,
                                 scheduler=args.scheduler)
            out = args.out
        finite = np.isfinite(grid.z)
        print(f"{grid.z_column} on {len(grid.y)} × {len(grid.x)} points ({int(finite.sum())} with a value) → "
              f"{out}/phase_diagram.png, {out}/phase_diagram.json")
    elif args.command == "check":
        from .analysis.claims import CLAIMS
        from .commands.check import check
        cfg = _load_config(args)
        names = None
        if args.claims is not None:
            names = list(dict.fromkeys(c.strip().upper() for c in args.claims.split(",") if c.strip()))
            if not names:
                raise AttnflowError("--claims", f"expected claim names such as C1,C3,H2, got {args.claims!r}")
            unknown = [c for c in names if c not in CLAIMS]
            if unknown:
                raise AttnflowError("--claims", f"unknown claim(s) {', '.join(unknown)}; known: {', '.join(CLAIMS)}")
        verdicts = check(cfg, args.out, quick=args.quick, claims=names, progress=not args.quiet, warn=_warn,
                         search=args.search)
        width = max(len(v.claim) for v in verdicts)
        for v in verdicts:
            print(f"{v.claim:<{width}}  {v.verdict:<12}  {v.statement}")
        print(f"report: {args.out}/report.md, {args.out}/report.json, figures in {args.out}/figures")
    elif args.command == "derive":
        from .reporting.derivation_report import render
        from .files import prepare_out_file, write_text
        from .problem import Problem
        if args.out is not None:
            prepare_out_file(args.out)
        cfg = _load_config(args)
        text = render(Problem.from_config(cfg), cfg.training, args.format)
        if args.out is not None:
            write_text(args.out, text)
            print(f"wrote {args.out}")
        else:
            print(text, end="")
    return 0


def _one_line(text):
    return " ".join(str(text).split())


def main(argv=None):
    """Run the command line; return the exit status.

    0: done.  1: the run itself failed (out of memory, an internal error).  2: bad input,
    named in one line.  130: interrupted (Ctrl-C).  ``--debug`` shows the traceback of an
    internal error instead of the one line.
    """
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except AttnflowError as e:
        print("error: " + _one_line(e), file=sys.stderr)   # always one line
        return 2
    except Interrupted as e:
        print(e, file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory; reduce the problem's size (features.K, training.n_out, task.mc_samples)",
              file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 — every unexpected failure is still one line
        if args.debug:
            raise
        print(f"error: internal error ({type(e).__name__}: {_one_line(e)[:300]}); rerun with --debug for the "
              "traceback and please report it", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
