"""The ``glmmlab`` command line: ``glmmlab fit``, ``glmmlab compare`` and ``glmmlab serve``.

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
from typing import Any, Callable, Iterable, NoReturn

from glmmlab.engine.errors import GlmmInputError
from glmmlab.interfaces import cli_residuals


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
    from glmmlab import __version__

    p = _Parser(prog="glmmlab", description="Generalized linear mixed models in lme4's model language.")
    p.add_argument("--version", action="version", version=f"glmmlab {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="{fit,compare,serve}")
    f = sub.add_parser("fit", help="fit a model to a CSV, TSV or Parquet file and print its tables or JSON",
                       description="Fit a generalized linear mixed model to a CSV, TSV or Parquet file.\nGive the "
                                   "model as --formula, or as --response/--group/--fixed (a random intercept).",
                       epilog=FIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    if fit_options:
        _add_fit_options(f)
    c = sub.add_parser("compare", help="compare nested models by likelihood-ratio tests (lme4's anova)",
                       description="Fit two or more models to one data file and compare them as lme4's anova() "
                                   "does:\nnpar, AIC, BIC, logLik, deviance, Chisq, Df and Pr(>Chisq), in order of "
                                   "npar, each row\ntested against the row before it. Gaussian + identity (REML) "
                                   "fits are refitted by\nmaximum likelihood first.",
                       epilog=COMPARE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    if fit_options:
        _add_compare_options(c)
    s = sub.add_parser("serve", help="start the web workbench", description="Start the web workbench.")
    s.add_argument("--project", default=None, metavar="PATH",
                   help="the project file (.duckdb) to open or create (default: projects/default.duckdb)")
    s.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: %(default)s)")
    s.add_argument("--port", type=int, default=8765, help="the port to listen on (default: %(default)s)")
    return p


def _add_fit_options(f: argparse.ArgumentParser) -> None:
    from glmmlab.engine.model.options import (  # numpy, scipy.special: when fit's options are needed
        INTERVAL_OPTIONS,
        OPTIONS,
    )
    from glmmlab.services.project import formats  # the one suffix table (no heavy imports)

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
    f.add_argument("--reference", action="append", default=[], metavar="COLUMN=LEVEL",
                   help="the reference level of a factor, e.g. --reference f=b (R's relevel(f, \"b\"): "
                        "coefficients fa, fc); repeat for several factors")
    f.add_argument("--zi", default=None, metavar="FORMULA",
                   help="with --formula: a zero-inflation model of the probability of a structural zero, e.g. "
                        "'~ mined' (for a hurdle family, truncated_poisson, truncated_nbinom2, truncated_nbinom1 or "
                        "ziGamma: the model of P(y = 0)), as glmmTMB's ziformula")
    f.add_argument("--disp", default=None, metavar="FORMULA",
                   help="with --formula: a model of the family's dispersion on its log scale, e.g. '~ x' (the "
                        "Gaussian's log variance, the Gamma's log shape, the negative binomial's log theta), as "
                        "glmmTMB's dispformula")
    f.add_argument("--levels", nargs="+", default=None, metavar="LEVEL",
                   help="--family ordinal with --formula: the response's categories in order, lowest first "
                        "(default: a categorical's order, else the values sorted)")
    f.add_argument("--no-intercept", action="store_true",
                   help="fit without a fixed intercept (with --response/--group; in a formula write 0 +)")
    _add_option_flags(f, OPTIONS.values())
    _add_option_flags(f, INTERVAL_OPTIONS.values(), unset={
        "ci": "without it the Fixed Effects table has the Wald intervals and no table is added"})
    f.add_argument("--format", choices=["text", "json"], default="text",
                   help="text: the tables (default); json: the result document")
    f.add_argument("--diagnostics", choices=["full", "none"], default="full", type=str.lower,
                   help="with --format json: full (default) includes the per-row fitted values and residuals; "
                        "none leaves them out (\"diagnostics\": null), which keeps the JSON of large data small")
    f.add_argument("--blups", default="10", metavar="all|none|N",
                   help="with --format text: the BLUP rows shown per grouping factor: the first N (default 10, with "
                        "a line saying how many are left out), all, or none (the JSON always has every BLUP)")
    cli_residuals.add_options(f)
    f.add_argument("--engine", choices=["memory", "dask"], default="memory",
                   help="fit in memory (default) or on a Dask cluster (Parquet data)")
    f.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler address (a local cluster when omitted)")


def _true_or_false(word: str) -> bool:
    key = word.strip().lower()
    if key not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"must be true or false; got {word!r}")
    return key == "true"


def _add_option_flags(parser: argparse.ArgumentParser, options: Iterable[Any],
                      unset: dict[str, str] | None = None) -> None:
    """The flags of ``options`` (declared once in :mod:`glmmlab.engine.model.options`): flags, defaults and help come
    from their declaration. ``unset`` names options whose flag defaults to None (not given), with what the help
    says of that case (``--ci``: without it no interval table is added)."""
    kinds: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "choice": str.lower,
                                              "bool": _true_or_false}
    for opt in options:
        extra: dict[str, Any] = {"choices": list(opt.choices) + list(opt.aliases)} if opt.kind == "choice" else {}
        if unset and opt.name in unset:
            value, default = None, f"; {unset[opt.name]}"
        else:
            value, default = opt.default, "" if opt.default is None else f"; default {str(opt.default).lower()}"
        parser.add_argument(opt.flag, type=kinds[opt.kind], default=value, metavar=opt.name.upper()
                            if opt.kind == "bool" else None,
                            help=f"{opt.help} ({opt.rule()}{default})".replace("%", "%%"), **extra)


COMPARE_EPILOG = """examples:
  glmmlab compare sleep.csv --formula "Reaction ~ Days + (1 | Subject)" --formula "Reaction ~ Days + (Days | Subject)"
  glmmlab compare herds.csv --family binomial --format json \\
      --formula "cbind(incidence, size - incidence) ~ 1 + (1 | herd)" \\
      --formula "cbind(incidence, size - incidence) ~ period + (1 | herd)"

Models are named m1, m2, ... in the order of --formula. Bad input or a bad option exits with status 2 and one
'error: ...' line on stderr."""


def _add_compare_options(c: argparse.ArgumentParser) -> None:
    from glmmlab.engine.model.options import OPTIONS

    c.add_argument("data", metavar="DATA", help="a .csv, .tsv or .parquet file; in CSV and TSV the cells NA, NaN, "
                   "n/a, '.' and empty cells are missing values")
    c.add_argument("--formula", action="append", default=[], metavar="FORMULA", required=True,
                   help="a model in lme4's language; give --formula once per model (two or more)")
    c.add_argument("--weights", default=None, metavar="COLUMN", help="prior weights (binomial: trials)")
    c.add_argument("--offset", default=None, metavar="COLUMN", help="an offset added to the linear predictor")
    _add_option_flags(c, [OPTIONS[n] for n in ("family", "link", "max_iter", "tol", "nagq")])
    c.add_argument("--format", choices=["text", "json"], default="text",
                   help="text: lme4's printed table (default); json: {\"rows\": [...], \"notes\": [...], "
                        "\"reading\": ...}")


MISSING = ["NA", "NaN", "n/a", ".", ""]  # cells read as missing values, as R's read.csv and SPSS/Stata exports


def read_table(path: str):
    """Read DATA by its suffix (the one table of :mod:`glmmlab.services.project.formats`) or a Parquet directory."""
    import pandas as pd

    from glmmlab.services.project import formats

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


def reference_levels(pairs: list[str]) -> dict[str, str] | None:
    """``--reference f=b`` (repeatable) as ``{"f": "b"}``; the column is the text before the first '='."""
    out: dict[str, str] = {}
    for pair in pairs:
        col, sep, level = pair.partition("=")
        if not sep or not col.strip() or not level:
            raise UsageError(f"--reference must be COLUMN=LEVEL, e.g. --reference f=b; got {pair!r}")
        if col.strip() in out:
            raise UsageError(f"--reference names {col.strip()!r} twice; give one reference level per factor")
        out[col.strip()] = level
    return out or None


def blup_rows(value: str) -> int | None:
    """``--blups``: None for all, 0 for none, else the number of rows per BLUP table."""
    text = str(value).strip().lower()
    if text == "all":
        return None
    if text == "none":
        return 0
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise UsageError(f"--blups must be all, none or a whole number of rows (e.g. --blups 20); got {value!r}")
    return n


def cmd_fit(args: argparse.Namespace) -> int:
    from glmmlab.interfaces.api import fit_glmm
    from glmmlab.services.views.text import render

    if args.formula is not None:
        if args.response or args.group or args.fixed or args.no_intercept:
            raise UsageError("give either --formula or --response/--group/--fixed, not both")
    elif not args.response or not args.group:
        raise UsageError("give --formula 'y ~ x + (1 | g)', or --response Y and --group G")
    elif getattr(args, "zi", None) is not None or getattr(args, "disp", None) is not None:
        raise UsageError("--zi and --disp go with --formula (write the model as a formula)")
    elif args.levels is not None:
        raise UsageError("--levels orders an ordinal response in a --formula model; write the model with --formula")
    references = reference_levels(args.reference)
    blup_rows(args.blups)  # checked before the fit runs
    cli_residuals.check(args)
    spec = None
    if args.formula is not None:  # the formula's limits (length, nesting, terms) before the data are read
        from glmmlab.engine.model.spec import ModelSpec

        spec = ModelSpec(args.formula, family=args.family, link=args.link, conf_level=args.conf_level,
                         max_iter=args.max_iter, tol=args.tol, nagq=args.nagq, se=args.se, weights=args.weights,
                         offset=args.offset, reference_levels=references, reml=args.reml, ddf=args.ddf,
                         dispersion=args.dispersion, tweedie_power=args.tweedie_power,
                         zi=getattr(args, "zi", None), disp=getattr(args, "disp", None), levels=args.levels)
        spec.parsed  # noqa: B018  (parsed here, once: the fit uses this parse)
    if args.ci is not None:  # the interval options' rules, before the fit runs
        from glmmlab.engine.model.options import INTERVAL_OPTIONS

        INTERVAL_OPTIONS["nsim"].check(args.nsim)
        if args.seed is not None:
            INTERVAL_OPTIONS["seed"].check(args.seed)
    bar = ProgressBar()
    common = dict(family=args.family, link=args.link, conf_level=args.conf_level, max_iter=args.max_iter,
                  tol=args.tol, nagq=args.nagq, se=args.se, weights=args.weights, offset=args.offset,
                  reference_levels=references, progress=bar, reml=args.reml, ddf=args.ddf,
                  dispersion=args.dispersion, tweedie_power=args.tweedie_power)
    options = dict(common, response=args.response, group=args.group, fixed=args.fixed,
                   intercept=not args.no_intercept)
    try:
        if spec is not None:
            from glmmlab.interfaces.api import fit

            if args.engine == "dask":
                from glmmlab.services.distributed.cluster import dask_client
                from glmmlab.services.distributed.dask_fit import read_parquet_lazily

                data = read_parquet_lazily(args.data)
                with dask_client(args.scheduler):  # the formula is fitted on this cluster
                    result = fit(spec, data, progress=bar)
            elif args.scheduler:
                raise UsageError("--scheduler needs --engine dask")
            else:
                result = fit(spec, read_table(args.data), progress=bar)
        elif args.engine == "dask":
            if args.weights or args.offset or references:
                raise UsageError("--weights, --offset and --reference run in memory; leave out --engine dask")
            options.pop("weights"), options.pop("offset"), options.pop("reference_levels")
            if options.pop("reml") is not True or options.pop("ddf") not in ("none", "auto"):
                raise UsageError("--reml false and --ddf satterthwaite run in memory; leave out --engine dask")
            if options.pop("tweedie_power") is not None:
                raise UsageError("--tweedie-power runs in memory (the tweedie family); leave out --engine dask")
            from glmmlab.services.distributed.fitting import fit_parquet_on_dask

            result = fit_parquet_on_dask(args.data, scheduler=args.scheduler, **options)
        else:
            if args.scheduler:
                raise UsageError("--scheduler needs --engine dask")
            data = read_table(args.data)
            result = fit_glmm(data, **options)
    finally:
        bar.close()
    intervals = _intervals(result, args) if args.ci is not None else None
    residuals = cli_residuals.run(result, args)
    if args.format == "json":
        doc = result.to_dict(diagnostics=args.diagnostics == "full")
        if intervals is not None:
            doc["intervals"] = intervals
        if residuals is not None:
            doc["simulated_residuals"] = residuals
        sys.stdout.write(json.dumps(doc, allow_nan=False) + "\n")
    else:
        sys.stdout.write(render(result, blups=blup_rows(args.blups)))
        if intervals is not None:
            from glmmlab.services.views.result_view import intervals_table
            from glmmlab.services.views.text import render_table

            t = intervals_table(intervals, result.family)
            sys.stdout.write(f"\n{t['title']}\n{render_table(t)}\n{t['note']}\n")
        if residuals is not None:
            sys.stdout.write(cli_residuals.text(residuals))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from glmmlab.interfaces.api import fit
    from glmmlab.services.workbench import comparison

    if len(args.formula) < 2:
        raise UsageError("give two or more models, each as --formula 'y ~ x + (1 | g)'")
    from glmmlab.engine.model.spec import ModelSpec

    specs = [ModelSpec(formula, family=args.family, link=args.link, weights=args.weights, offset=args.offset,
                       max_iter=args.max_iter, tol=args.tol, nagq=args.nagq, ddf="none")  # LR tests need no df
             for formula in args.formula]
    for spec in specs:  # every formula's limits before the data are read (parsed once: the fits use this parse)
        spec.parsed  # noqa: B018
    data = read_table(args.data)
    bar = ProgressBar()
    fits = []
    try:
        for i, spec in enumerate(specs):
            fits.append((f"m{i + 1}", fit(spec, data, progress=bar)))
        table = comparison.compare(fits)
    finally:
        bar.close()
    if args.format == "json":
        doc = {"data": args.data, "family": table.attrs["family"], "n_obs": table.attrs["n_obs"],
               "rows": comparison.rows(table), "notes": list(table.attrs["notes"]),
               "reading": comparison.reading(table)}
        sys.stdout.write(json.dumps(doc, allow_nan=False) + "\n")
    else:
        sys.stdout.write(comparison.text(table, data=Path(args.data).name))
    return 0


def _intervals(result, args: argparse.Namespace) -> dict:
    """--ci profile|boot|wald: the interval document of the fit (result.conf_int at --conf-level)."""
    from glmmlab.services.views.result_view import intervals_document

    if args.ci != "wald" and result.model_frame() is None:
        raise UsageError(f"--ci {args.ci} refits the model's data and runs in memory; leave out --engine dask")
    bar = ProgressBar()
    try:
        ci = result.conf_int(level=args.conf_level, method=args.ci, nsim=args.nsim, seed=args.seed, progress=bar)
    finally:
        bar.close()
    return intervals_document(ci)


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
        parser = build_parser(fit_options=_command(argv) in ("fit", "compare"))
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "fit":
            return cmd_fit(args)
        if args.command == "compare":
            return cmd_compare(args)
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
