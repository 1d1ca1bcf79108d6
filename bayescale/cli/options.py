"""The option groups the commands share (cloup option groups, so ``--help`` shows them as sections).

Every command that fits takes the same sampling options; every command that prints results takes
``--json``; the commands that fit many models take the same fan-out options.
"""

from __future__ import annotations

import click
import cloup

from bayescale import defaults

LIKELIHOODS = ("studentt", "normal", "laplace")
SAMPLERS = ("nutpie", "pymc", "numpyro")


def file_argument(name: str = "runs"):
    """A runs table (CSV or Parquet) or a saved fit (.nc)."""
    return cloup.argument(name, type=click.Path(dir_okay=False))


def fits_argument():
    """One or more saved fits (.nc)."""
    return cloup.argument("fit_paths", nargs=-1, required=True, type=click.Path(dir_okay=False))


def columns_option(example: str = "N='Model Size',C='Training FLOP'"):
    return cloup.option(
        "--columns",
        multiple=True,
        metavar="NAME=COLUMN",
        help=f"Map canonical names to your columns: {example} (repeatable).",
    )


def where_option():
    return cloup.option(
        "--where",
        default=None,
        metavar="FILTER",
        help="Use only the rows this filter keeps: \"data == 'rpj'\", \"N >= 1e9 and data != 'c4'\", "
        '"data in [\'rpj\', \'c4\']", "not (N < 1e8)", "`Model Size` > 1e8" (your column names, or the '
        "canonical names you mapped).",
    )


def input_group(example: str = "N='Model Size',C='Training FLOP'", *more):
    """Input: how the runs table's columns map to the law's names, and which rows to use."""
    return cloup.option_group("Input", columns_option(example), where_option(), *more)


def law_option(default: str | None = "chinchilla", *, multiple: bool = False, help: str | None = None):
    text = help or "A catalog name (see `bayescale laws`) or the path of a .toml law card."
    if multiple:
        return cloup.option("--law", "laws", multiple=True, required=True, help=text)
    return cloup.option("--law", "law_spec", default=default, show_default=True, help=text)


def law_group(*options):
    """Law: which law, and the model around it."""
    return cloup.option_group("Law", *options)


def fit_model_options():
    """What ``fit`` adds to the law: priors, pooling, likelihood, the discrepancy, the parameter convention."""
    return (
        cloup.option(
            "--input",
            "inputs",
            multiple=True,
            metavar="INPUT=COLUMN",
            help="Bind a law's generic input to a column: X=D.",
        ),
        cloup.option(
            "--prior",
            "priors",
            multiple=True,
            metavar="PARAM=PRIOR",
            help="Override a prior: alpha='LogNormal(mu=log(0.3), sigma=0.3)'.",
        ),
        cloup.option(
            "--pool",
            "pool",
            multiple=True,
            metavar="PARAM=COLUMN",
            help="Let a parameter vary by a group column under a population prior: alpha=family (repeatable).",
        ),
        cloup.option(
            "--likelihood",
            default=defaults.LIKELIHOOD,
            show_default=True,
            type=click.Choice(LIKELIHOODS),
            help='Noise model of the observation: log-loss, or the loss itself for a card with scale = "raw".',
        ),
        cloup.option(
            "--extrapolation",
            default=defaults.EXTRAPOLATION,
            show_default=True,
            type=click.Choice(defaults.EXTRAPOLATIONS),
            help="Widen forecasts beyond the observed runs by a discrepancy calibrated on internal backtests "
            "(calibrated-drift: a sweep's medians also move by a drift learned from them).",
        ),
        cloup.option(
            "--params",
            "param_count",
            default="total",
            show_default=True,
            type=click.Choice(["total", "non-embedding", "non_embedding"]),
            help="What N counts: as given (total), or non-embedding parameters (column N_no_embed, or "
            "12*n_layers*d_model^2).",
        ),
        cloup.option(
            "--noise-trend",
            is_flag=True,
            help="Let the noise scale grow or shrink along N (sigma_slope per e-fold), for sweeps whose "
            "scatter changes with size.",
        ),
    )


def sampling_group(*, fan_out: bool = False, extend: bool = False, chains: bool = True):
    """Sampling: the same options on every command that fits.

    ``fan_out``: the command fits several models at once, so ``--cores`` is per fit and defaults to
    the cores left to each parallel fit.
    """
    cores_help = (
        "Cores per fit (default: the machine's cores shared among the parallel fits)."
        if fan_out
        else "Chains sampled in parallel."
    )
    options = [
        cloup.option("--draws", type=int, default=defaults.DRAWS, show_default=True, help="Posterior draws per chain."),
        cloup.option("--tune", type=int, default=defaults.TUNE, show_default=True, help="Tuning steps per chain."),
        *(
            [
                cloup.option(
                    "--chains",
                    type=int,
                    default=defaults.CHAINS,
                    show_default=True,
                    help="Independent chains (R-hat compares them).",
                )
            ]
            if chains
            else []
        ),
        cloup.option(
            "--cores", type=int, default=None if fan_out else defaults.CORES, show_default=not fan_out, help=cores_help
        ),
        cloup.option(
            "--sampler",
            default=defaults.SAMPLER,
            show_default=True,
            type=click.Choice(SAMPLERS),
            help="The NUTS implementation.",
        ),
        cloup.option(
            "--target-accept",
            type=float,
            default=defaults.TARGET_ACCEPT,
            show_default=True,
            help="NUTS's target acceptance rate; raise it (0.99) against divergences.",
        ),
        cloup.option(
            "--seed", type=int, default=defaults.SEED, show_default=True, help="The same seed, the same draws."
        ),
    ]
    if extend:
        options.append(
            cloup.option(
                "--extend/--no-extend",
                default=True,
                show_default=True,
                help="When R-hat or ESS fall short (no divergences), sample once more with twice the draws, whitened "
                "by the first run's draws.",
            )
        )
    options.append(cloup.option("--quiet", is_flag=True, help="No progress bar."))
    return cloup.option_group("Sampling", *options)


def fan_out_group():
    """Fan-out: where the independent fits run."""
    return cloup.option_group(
        "Fan-out",
        cloup.option("--processes", type=int, default=None, help="Parallel local fits (default: one per core)."),
        cloup.option(
            "--scheduler",
            default=None,
            metavar="ADDRESS",
            help="Run the fits on a Dask cluster: its scheduler address, e.g. tcp://host:8786 "
            "(needs pip install 'bayescale[dask]', and bayescale on the workers).",
        ),
        cloup.option(
            "--fail-fast", is_flag=True, help="Cancel the other fits when one fails (default: let them finish)."
        ),
    )


def output_group(*options, ci: bool = True, json: bool = True):
    """Output: interval probability, JSON, and any files the command writes."""
    shared = []
    if ci:
        shared.append(
            cloup.option(
                "--ci-prob",
                type=float,
                default=defaults.CI_PROB,
                show_default=True,
                help="Probability of the credible and predictive intervals.",
            )
        )
    if json:
        shared.append(
            cloup.option(
                "--json", "as_json", is_flag=True, help="Print one JSON object on stdout (the same result as the text)."
            )
        )
    return cloup.option_group("Output", *options, *shared)


def plot_option(what: str):
    """``--plot FILE.png``: save ``what`` (a phrase completing "Save ...") as a PNG figure."""
    return cloup.option(
        "--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help=f"Save {what} as a PNG."
    )


def sensitivity_option(default: bool = True):
    """``--sensitivity/--no-sensitivity``: the prior sensitivity costs a few seconds (PyMC compiles the log prior).

    Commands that fit (``curve``, ``downstream``) leave it off by default, so that it never slows a fit.
    """
    return cloup.option(
        "--sensitivity/--no-sensitivity",
        default=default,
        show_default=True,
        help="Power-scaling prior sensitivity of each forecast (PyMC compiles the log prior: seconds more"
        + (")." if default else "; tens of seconds for many runs' curves)."),
    )


def sampling_settings(params: dict, *, with_chains: bool = True) -> dict:
    """The sampling options of a command, as keyword arguments of ``bs.fit``."""
    keys = (
        ("draws", "tune", "chains", "cores", "sampler", "target_accept", "seed")
        if with_chains
        else ("draws", "tune", "cores", "sampler", "target_accept", "seed")
    )
    return {k: params[k] for k in keys if params.get(k) is not None}
