"""The ``attnflow`` command line.

Every bad input ends with one line ``error: FIELD: what was expected``, exit
status 2 and no traceback.
"""

import argparse
import sys
import tomllib

from .errors import AttnflowError


def parse_override(text):
    """``section.key=value`` with a TOML value (``task.L=3``, ``prompt.p=[0.7,0.3]``) or a bare string."""
    path, sep, value = text.partition("=")
    if not sep or "." not in path:
        raise AttnflowError("--set", f"expected SECTION.KEY=VALUE, got {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return path.strip(), parsed


def build_parser():
    parser = argparse.ArgumentParser(
        prog="attnflow",
        description="Training dynamics of softmax attention learning in-context regression.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    derive = sub.add_parser("derive", help="the derivation, step by step, as Markdown or LaTeX")
    derive.add_argument("config", help="TOML configuration")
    derive.add_argument("--format", choices=("markdown", "latex"), default="markdown",
                        help="Markdown with $…$ math, or a standalone LaTeX document (default: %(default)s)")
    derive.add_argument("--out", help="write to this file instead of standard output")
    derive.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a configuration field (repeatable)")
    sweep = sub.add_parser("sweep", help="a grid of problems in parallel: table.csv + provenance.json")
    sweep.add_argument("config", help="TOML configuration (the base of every grid point)")
    sweep.add_argument("--param", action="append", required=True, metavar="FIELD=LO:HI:log:N",
                       help="a swept field: LO:HI:log:N, LO:HI:lin:N or v1,v2,... (repeatable: Cartesian product)")
    sweep.add_argument("--out", required=True, help="output directory (rerun to resume)")
    sweep.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    sweep.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a configuration field (repeatable)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    check = sub.add_parser("check", help="the papers' claims as numerical protocols: report.md, report.json, figures")
    check.add_argument("config", help="TOML configuration of the base problem")
    check.add_argument("--out", required=True, help="output directory")
    check.add_argument("--quick", action="store_true", help="small grids, seconds (the full grids take about half a minute)")
    check.add_argument("--claims", help="comma-separated subset, e.g. C1,C3,H2")
    check.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a configuration field of the base problem (repeatable)")
    check.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import demo
            print(demo(args.out, progress=not args.quiet))
        elif args.command == "run":
            from . import config
            from .report import run_report
            from .run import run
            cfg = config.load(args.config, dict(parse_override(s) for s in args.set))
            problem, result, summary = run(cfg, args.out, progress=not args.quiet, plots=not args.no_plots)
            print(run_report(summary))
        elif args.command == "sweep":
            from . import config
            from .sweep import parse_param, sweep
            cfg = config.load(args.config, dict(parse_override(s) for s in args.set))
            params = [parse_param(p) for p in args.param]
            for field, values in params:                 # validate every value before running anything
                for v in values:
                    cfg.with_overrides({field: v})
            rows = sweep(cfg, params, args.out, args.jobs, progress=not args.quiet)
            failed = sum(r["status"] != "ok" for r in rows)
            print(f"{len(rows)} points ({failed} not ok) → {args.out}/table.csv, {args.out}/provenance.json")
        elif args.command == "check":
            from . import config
            from .claims import CLAIMS, check
            cfg = config.load(args.config, dict(parse_override(s) for s in args.set))
            names = None
            if args.claims:
                names = [c.strip().upper() for c in args.claims.split(",")]
                unknown = [c for c in names if c not in CLAIMS]
                if unknown:
                    raise AttnflowError("--claims", f"unknown claim(s) {', '.join(unknown)}; known: {', '.join(CLAIMS)}")
            verdicts = check(cfg, args.out, quick=args.quick, claims=names, progress=not args.quiet)
            width = max(len(v.claim) for v in verdicts)
            for v in verdicts:
                print(f"{v.claim:<{width}}  {v.verdict:<12}  {v.statement}")
            print(f"report: {args.out}/report.md, {args.out}/report.json, figures in {args.out}/figures")
        elif args.command == "derive":
            from pathlib import Path

            from . import config
            from .derivation_report import render
            from .problem import Problem
            cfg = config.load(args.config, dict(parse_override(s) for s in args.set))
            text = render(Problem.from_config(cfg), cfg.training, args.format)
            if args.out:
                Path(args.out).write_text(text)
                print(f"wrote {args.out}")
            else:
                print(text, end="")
    except AttnflowError as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)   # always one line
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
