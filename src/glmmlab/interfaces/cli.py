"""The ``glmmlab`` command line: ``glmmlab fit`` and ``glmmlab serve``.

Bad input or a bad option: one line on stderr that begins ``error: ``, exit status 2, never a traceback.

Start-up: a command imports what it needs when it runs. ``glmmlab --help`` and ``glmmlab serve --help`` load no
numpy; ``glmmlab fit --help`` loads the options table (numpy and scipy.special, for the family and link names);
pandas and the fitting code come with ``fit`` itself, the web app with ``serve``, Dask with ``--engine dask``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, NoReturn

from glmmlab.engine.errors import GlmmInputError


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own errors: one line, exit 2
        command = self.prog.split()[-1] if " " in self.prog else ""
        raise UsageError(f"{message} (see 'glmmlab {command} --help')".replace("  ", " "))


FIT_EPILOG = """examples:
  glmmlab fit sleep.csv --formula "Reaction ~ Days + (Days | Subject)"
  glmmlab fit herds.csv --formula "cbind(incidence, size - incidence) ~ period + (1 | herd)" --family binomial
  glmmlab fit scores.csv --response score --group school --fixed hours female --format json --diagnostics none

Bad input or a bad option exits with status 2 and one 'error: ...' line on stderr."""


def build_parser(fit_options: bool = True) -> argparse.ArgumentParser:
    """The parser of every command. ``fit_options=False`` leaves out the options of ``fit`` (the commands' list
    and ``serve`` need no options table, and so no numpy)."""
    p = _Parser(prog="glmmlab", description="Generalized linear mixed models in lme4's model language.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="{fit,serve}")
    f = sub.add_parser("fit", help="fit a model to a CSV, TSV or Parquet file and print its tables or JSON",
                       description="Fit a generalized linear mixed model to a CSV, TSV or Parquet file.\nGive the "
                                   "model as --formula, or as --response/--group/--fixed (a random intercept).",
                       epilog=FIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    if fit_options:
        _add_fit_options(f)
    s = sub.add_parser("serve", help="start the web workbench", description="Start the web workbench.")
    s.add_argument("--project", default=None, metavar="PATH",
                   help="the project file (.duckdb) to open or create (default: projects/default.duckdb)")
    s.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: %(default)s)")
    s.add_argument("--port", type=int, default=8765, help="the port to listen on (default: %(default)s)")
    return p


def _add_fit_options(f: argparse.ArgumentParser) -> None:
    from glmmlab.engine.options import OPTIONS  # numpy and scipy.special: only when fit's options are needed
    from glmmlab.services import formats  # the one suffix table (no heavy imports)

    f.add_argument("data", metavar="DATA", help=f"a {formats.KNOWN} file (or a Parquet directory; .txt is "
                   "tab-separated); in CSV and TSV the cells NA, NaN, n/a, '.' and empty cells are missing values")
    f.add_argument("--formula", default=None, metavar="FORMULA",
                   help="a model in lme4's language, e.g. 'y ~ x * f + (1 + x | g)' (instead of --response/--group)")
    f.add_argument("--response", default=None, metavar="Y",
                   help="the response column of the random-intercept form Y ~ X1 + X2 + (1 | G)")
    f.add_argument("--group", default=None, metavar="G", help="the grouping column of the random intercept")
    f.add_argument("--fixed", nargs="*", default=[], metavar="X",
                   help="fixed-effect columns (text columns become factors); none: intercept only")
    f.add_argument("--weights", default=None, metavar="COLUMN", help="prior weights (binomial: trials)")
    f.add_argument("--offset", default=None, metavar="COLUMN", help="an offset added to the linear predictor")
    f.add_argument("--no-intercept", action="store_true",
                   help="fit without a fixed intercept (with --response/--group; in a formula write 0 +)")
    kinds: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "choice": str.lower}
    for opt in OPTIONS.values():  # the options' flags, defaults and help come from their one declaration
        extra: dict[str, Any] = {"choices": list(opt.choices)} if opt.kind == "choice" else {}
        default = "" if opt.default is None else f"; default {opt.default}"
        f.add_argument(opt.flag, type=kinds[opt.kind], default=opt.default,
                       help=f"{opt.help} ({opt.rule()}{default})".replace("%", "%%"), **extra)
    f.add_argument("--format", choices=["text", "json"], default="text",
                   help="text: the tables (default); json: the result document")
    f.add_argument("--diagnostics", choices=["full", "none"], default="full", type=str.lower,
                   help="with --format json: full (default) includes the per-row fitted values and residuals; "
                        "none leaves them out (\"diagnostics\": null), which keeps the JSON of large data small")
    f.add_argument("--engine", choices=["memory", "dask"], default="memory",
                   help="fit in memory (default) or on a Dask cluster (Parquet data)")
    f.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler address (a local cluster when omitted)")


MISSING = ["NA", "NaN", "n/a", ".", ""]  # cells read as missing values, as R's read.csv and SPSS/Stata exports


def read_table(path: str):
    """Read DATA by its suffix (the one table of :mod:`glmmlab.services.formats`) or a Parquet directory."""
    import pandas as pd

    from glmmlab.services import formats

    p = Path(path)
    if not p.exists():
        raise UsageError(f"data file '{path}' does not exist")
    fmt = "parquet" if p.is_dir() else formats.format_of_name(p.name)
    if fmt is None:
        raise UsageError(f"data file '{path}' must end in {formats.KNOWN}")
    try:
        if fmt == "parquet":
            return pd.read_parquet(p)
        return pd.read_csv(p, sep="\t" if fmt == "tsv" else ",", na_values=MISSING)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot read '{path}': {first}") from None


class ProgressBar:
    """A one-line progress bar on stderr, shown only on a terminal and only after the first half second."""

    def __init__(self, stream=sys.stderr, delay: float = 0.5):
        self.stream, self.delay = stream, delay
        self.start = time.perf_counter()
        self.shown = False
        self.enabled = hasattr(stream, "isatty") and stream.isatty()

    def __call__(self, stage: str, fraction: float) -> None:
        if not self.enabled or time.perf_counter() - self.start < self.delay:
            return
        width = 30
        filled = int(round(fraction * width))
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:5.1f}% {stage[:60]:<60}")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * 110 + "\r")
            self.stream.flush()


def cmd_fit(args: argparse.Namespace) -> int:
    from glmmlab.interfaces.api import fit_glmm
    from glmmlab.interfaces.text import render

    if args.formula is not None:
        if args.response or args.group or args.fixed or args.no_intercept:
            raise UsageError("give either --formula or --response/--group/--fixed, not both")
    elif not args.response or not args.group:
        raise UsageError("give --formula 'y ~ x + (1 | g)', or --response Y and --group G")
    bar = ProgressBar()
    common = dict(family=args.family, link=args.link, conf_level=args.conf_level, max_iter=args.max_iter,
                  tol=args.tol, nagq=args.nagq, se=args.se, weights=args.weights, offset=args.offset, progress=bar)
    options = dict(common, response=args.response, group=args.group, fixed=args.fixed,
                   intercept=not args.no_intercept)
    try:
        if args.formula is not None:
            from glmmlab.interfaces.api import glmm

            if args.engine == "dask":
                from glmmlab.services.distributed import dask_client
                from glmmlab.services.distributed_general import read_parquet_lazily

                data = read_parquet_lazily(args.data)
                with dask_client(args.scheduler):  # glmm picks the random-intercept or the general Dask path
                    result = glmm(args.formula, data, **common)
            elif args.scheduler:
                raise UsageError("--scheduler needs --engine dask")
            else:
                result = glmm(args.formula, read_table(args.data), **common)
        elif args.engine == "dask":
            if args.weights or args.offset:
                raise UsageError("--weights and --offset run in memory; leave out --engine dask")
            options.pop("weights"), options.pop("offset")
            from glmmlab.services.distributed import fit_parquet_on_dask

            result = fit_parquet_on_dask(args.data, scheduler=args.scheduler, **options)
        else:
            if args.scheduler:
                raise UsageError("--scheduler needs --engine dask")
            data = read_table(args.data)
            result = fit_glmm(data, **options)
    finally:
        bar.close()
    if args.format == "json":
        doc = result.to_dict(diagnostics=args.diagnostics == "full")
        sys.stdout.write(json.dumps(doc, allow_nan=False) + "\n")
    else:
        sys.stdout.write(render(result))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from glmmlab.interfaces.web.server import serve

    serve(args.project, host=args.host, port=args.port)
    return 0


def _command(argv: list[str]) -> str | None:
    """The command word: the first argument that is not an option (the top level has only -h)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser(fit_options=_command(argv) == "fit")
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "fit":
            return cmd_fit(args)
        return cmd_serve(args)
    except (UsageError, GlmmInputError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    except MemoryError:
        sys.stderr.write("error: not enough memory for this data; try --engine dask with Parquet data\n")
        return 2
    except Exception as exc:  # never a traceback: one line that says what failed
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        sys.stderr.write(f"error: the fit failed ({type(exc).__name__}{': ' + first if first else ''}); "
                         "check the data and options\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
