"""``glmmlab fit --simulated-residuals N``: simulation-based scaled residuals of the fit (R's DHARMa) and their tests,
in the JSON under ``"simulated_residuals"`` or as a table after the text; with ``--residual-plots PREFIX`` the two
plots as PNG files. A flag of ``fit`` rather than a command of its own: the residuals are of the fit just made, with
every option of ``fit``, so a separate command would have to repeat them all and fit again.

Bad options raise :class:`GlmmInputError` (the command line's ``error:`` line and exit status 2).
"""

from __future__ import annotations

import argparse

from glmmlab.engine.errors import GlmmInputError


def add_options(f: argparse.ArgumentParser) -> None:
    f.add_argument("--simulated-residuals", type=int, default=None, metavar="N",
                   help="also simulate N responses from the fit and test its simulation-based scaled residuals as R's "
                        "DHARMa does (uniformity, dispersion, zero-inflation, outliers; 250 is DHARMa's usual N); "
                        "seeded by --seed (default 123, DHARMa's). JSON: the key \"simulated_residuals\"; text: a "
                        "table of the tests")
    f.add_argument("--unconditional-residuals", action="store_true",
                   help="with --simulated-residuals: draw the random effects afresh from their estimated covariance "
                        "(default: hold them at their fitted modes, DHARMa's default since 0.5.0)")
    f.add_argument("--residual-plots", default=None, metavar="PREFIX",
                   help="with --simulated-residuals: write the uniform Q-Q plot and the residual-vs-predicted plot "
                        "as PREFIX-qq.png and PREFIX-predicted.png")


def check(args: argparse.Namespace) -> None:
    """The --simulated-residuals options' rules, before the fit runs."""
    from glmmlab.services.modeling.simulated_residuals import MAX_SIMULATIONS

    n = args.simulated_residuals
    if n is None:
        if args.unconditional_residuals or args.residual_plots:
            raise GlmmInputError("--unconditional-residuals and --residual-plots need --simulated-residuals N")
    elif not 2 <= n <= MAX_SIMULATIONS:
        raise GlmmInputError(f"--simulated-residuals must be a whole number from 2 to {MAX_SIMULATIONS:,} (got {n}); "
                         "DHARMa uses 250")
    elif args.engine == "dask":
        raise GlmmInputError("--simulated-residuals simulates from the model's data and runs in memory; leave out "
                         "--engine dask")


def run(result, args: argparse.Namespace) -> dict | None:
    """--simulated-residuals N: the settings and tests of the fit's DHARMa residuals (and the plots' files)."""
    if args.simulated_residuals is None:
        return None
    if result.model_frame() is None:
        raise GlmmInputError("--simulated-residuals simulates from the model's data and runs in memory; leave out "
                         "--engine dask")
    from glmmlab.services.modeling.simulated_residuals import DEFAULT_SEED

    sr = result.simulate_residuals(args.simulated_residuals, seed=DEFAULT_SEED if args.seed is None else args.seed,
                                   conditional=not args.unconditional_residuals)
    doc = sr.to_dict()
    if args.residual_plots:
        files = {"qq": f"{args.residual_plots}-qq.png", "predicted": f"{args.residual_plots}-predicted.png"}
        try:
            sr.plot_qq().savefig(files["qq"])
            sr.plot_vs_predicted().savefig(files["predicted"])
        except OSError as exc:
            raise GlmmInputError(f"cannot write the residual plots ({exc.strerror or exc}): check --residual-plots "
                             f"{args.residual_plots!r}") from None
        doc["plots"] = files
    return doc


def text(doc: dict) -> str:
    """The tests of --simulated-residuals as a plain-text table."""
    from glmmlab.services.views.numbers import format_number

    head = (f"Simulated residuals (DHARMa): {doc['n_sim']} simulations, seed {doc['seed']}, random effects "
            f"{'held at their modes' if doc['conditional'] else 'drawn afresh'}")
    names = {"uniformity": "Uniformity (KS)", "dispersion": "Dispersion", "zero_inflation": "Zero-inflation",
             "outliers": "Outliers"}
    rows = [f"{'Test':<17}{'Statistic':>12}  {'p-value':>9}"]
    for key, label in names.items():
        t = doc["tests"][key]
        rows.append(f"{label:<17}{format_number(t['statistic']):>12}  {format_number(t['p_value'], 'p'):>9}")
    plots = doc.get("plots")
    tail = f"\nPlots: {plots['qq']}, {plots['predicted']}\n" if plots else ""
    return f"\n{head}\n" + "\n".join(rows) + "\n" + tail
