import json
import shutil
import subprocess
import sys

import pytest

from bayescale.cli.main import main
from bayescale.data.datasets import demo_runs_path


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_laws_lists_the_catalog(capsys):
    code, out, _ = run(capsys, "laws")
    assert code == 0 and "chinchilla" in out and "E + A / N**alpha + B / D**beta" in out
    starts = {line.index(" L(") for line in out.splitlines() if not line.startswith(" ") and " L(" in line}  # aligned
    assert len(starts) == 1
    code, out, _ = run(capsys, "laws", "--json")
    laws = {law["name"]: law for law in json.loads(out)["laws"]}
    assert laws["chinchilla"]["params"] == ["E", "A", "alpha", "B", "beta"] and laws["metric_exp"]["kind"] == "metric"
    assert laws["chinchilla"]["formula"] == "L(N, D) = E + A / N**alpha + B / D**beta"


def test_installed_entry_point_runs():
    exe = shutil.which("bayescale") or str(__import__("pathlib").Path(sys.executable).parent / "bayescale")
    done = subprocess.run([exe, "laws"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "kaplan_nd" in done.stdout


@pytest.fixture(scope="module")
def small_fit(tmp_path_factory):
    """A real (small) fit through the CLI: demo runs, 2 chains x 200 draws."""
    path = tmp_path_factory.mktemp("cli") / "fit.nc"
    code = main(
        [
            "fit",
            str(demo_runs_path()),
            "--law",
            "chinchilla",
            "--draws",
            "200",
            "--tune",
            "300",
            "--chains",
            "2",
            "--seed",
            "3",
            "--out",
            str(path),
            "--quiet",
        ]
    )
    assert code == 0 and path.exists()
    return path


@pytest.mark.slow
def test_summary_json_has_the_documented_shape(small_fit, capsys):
    code, out, _ = run(capsys, "summary", str(small_fit), "--ci-prob", "0.8", "--json")
    data = json.loads(out)
    assert code == 0 and data["law"] == "chinchilla" and data["ci_prob"] == 0.8 and data["n_obs"] == 63
    # kappa: the extrapolation discrepancy; allocation_omega and _tau: plan's N* discrepancy inside and beyond
    assert set(data["params"]) == {
        "E",
        "A",
        "alpha",
        "B",
        "beta",
        "sigma",
        "nu",
        "kappa",
        "allocation_omega",
        "allocation_tau",
    }
    for stats in data["params"].values():
        assert stats["lower"] < stats["median"] < stats["upper"]
    assert 0.2 < data["params"]["alpha"]["median"] < 0.5
    assert set(data["diagnostics"]) == {
        "divergences",
        "rhat_max",
        "ess_bulk_min",
        "ess_tail_min",
        "n_draws",
        "problems",
    }
    assert all(set(stats) >= {"sd", "ess_bulk", "r_hat", "reference"} for stats in data["params"].values())
    from bayescale import load

    timings = load(small_fit).settings["timings"]  # where the fit's time went, saved with it
    assert {
        "read and validate",
        "mode search",
        "build model",
        "compile and set-up",
        "sampling",
        "log-likelihood",
        "diagnostics",
        "calibration",
    } == set(timings) and all(v >= 0 for v in timings.values())
    assert 0 < timings["sampling"] < sum(timings.values())


@pytest.mark.slow
def test_predict_json_and_text(small_fit, capsys):
    code, out, _ = run(capsys, "predict", str(small_fit), "--at", "N=7e10,D=1.4e12", "--at", "N=1e9,C=1.2e20", "--json")
    data = json.loads(out)
    assert code == 0 and data["ci_prob"] == 0.9 and len(data["predictions"]) == 2
    first = data["predictions"][0]
    assert first["N"] == 7e10 and first["D"] == 1.4e12
    assert first["pred_lower"] < first["lower"] < first["median"] < first["upper"] < first["pred_upper"]
    assert data["predictions"][1]["D"] == pytest.approx(1.2e20 / 6e9)
    # how far each point reaches, on every axis the data bound (compute and tokens per parameter too)
    assert first["C_vs_max"] >= first["N_vs_max"] * first["D_vs_max"] > 0  # no run reached both largest N and D
    assert {"N_vs_max", "D_vs_max", "C_vs_max", "D_per_N_vs_max", "extrapolation"} <= set(first)
    code, out, _ = run(capsys, "predict", str(small_fit), "--at", "N=7e10,D=1.4e12")
    assert code == 0 and "N=7e+10, D=1.4e+12" in out
    assert f"C {first['C_vs_max']:.2g}x" in out and f"D_per_N {first['D_per_N_vs_max']:.2g}x" in out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["fit", str(demo_runs_path()), "--law", "chinchila", "--out", "x.nc"], "unknown law 'chinchila'"),
        (["fit", str(demo_runs_path()), "--columns", "N=Params", "--out", "x.nc"], "column 'Params' (mapped to N)"),
        (
            ["fit", str(demo_runs_path()), "--prior", "alpha=Normal(mu=__import__('os'))", "--out", "x.nc"],
            "unknown function '__import__'",
        ),
        (["fit", str(demo_runs_path()), "--draws", "0", "--out", "x.nc"], "draws must be a whole number >= 1"),
        (["fit", "missing.csv", "--out", "x.nc"], "runs file 'missing.csv' does not exist"),
        (["fit", str(demo_runs_path()), "--out", "x.pkl"], "ending in .nc"),
        (["summary", "missing.nc"], "fit file 'missing.nc' does not exist"),
    ],
)
def test_errors_are_one_line_on_stderr_with_exit_2(capsys, argv, fragment):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and err.startswith("error: ") and fragment in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_predict_errors(small_fit, capsys):
    for argv, fragment in [
        (["--at", "N=7e10"], "needs input(s) D"),
        (["--at", "N=big,D=1"], "not a number"),
        ([], "give the points"),
    ]:
        code, _, err = run(capsys, "predict", str(small_fit), *argv)
        assert code == 2 and fragment in err


@pytest.mark.slow
def test_a_failed_fit_never_overwrites_a_good_one(small_fit, tmp_path, capsys):
    before = small_fit.read_bytes()
    bad = tmp_path / "bad.csv"
    bad.write_text("N,D,loss\n1e9,1e10,abc\n")
    code, _, err = run(capsys, "fit", str(bad), "--out", str(small_fit))
    assert code == 2 and "column 'loss'" in err and small_fit.read_bytes() == before


@pytest.mark.slow
def test_predict_with_several_fits_stacks_them(small_fit, tmp_path, capsys):
    other = tmp_path / "kaplan.nc"
    assert (
        main(
            [
                "fit",
                str(demo_runs_path()),
                "--law",
                "kaplan_nd",
                "--draws",
                "200",
                "--tune",
                "300",
                "--chains",
                "2",
                "--out",
                str(other),
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    code, out, _ = run(capsys, "predict", str(small_fit), str(other), "--at", "N=7e10,D=1.4e12", "--json")
    data = json.loads(out)
    assert code == 0 and set(data["weights"]) == {"fit", "kaplan"}
    assert sum(data["weights"].values()) == pytest.approx(1.0)
    alone = {}
    for path in (small_fit, other):
        _, text, _ = run(capsys, "predict", str(path), "--at", "N=7e10,D=1.4e12", "--json")
        alone[path.stem] = json.loads(text)["predictions"][0]
    stacked = data["predictions"][0]
    lows = sorted(p["median"] for p in alone.values())
    assert lows[0] <= stacked["median"] <= lows[1] + 1e-9 or min(data["weights"].values()) < 0.05
    assert stacked["pred_lower"] >= min(p["pred_lower"] for p in alone.values()) - 0.05
    code, out, _ = run(capsys, "predict", str(small_fit), str(other), "--at", "N=7e10,D=1.4e12")
    assert code == 0 and out.startswith("stacked (fit ")


@pytest.mark.slow
def test_fit_prints_each_sampler_warning_once_with_advice_for_api_and_cli(tmp_path):
    exe = shutil.which("bayescale") or str(__import__("pathlib").Path(sys.executable).parent / "bayescale")
    done = subprocess.run(
        [
            exe,
            "fit",
            str(demo_runs_path()),
            "--draws",
            "30",
            "--tune",
            "30",
            "--chains",
            "2",
            "--out",
            str(tmp_path / "short.nc"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("low effective sample size") == 1, done.stderr  # 60 draws: ESS is surely short
    assert "Draw more (draws=2000; CLI: --draws 2000)" in done.stderr
    assert "warning" not in done.stdout


@pytest.mark.slow
def test_demo_fits_forecasts_and_draws_the_fan_chart(tmp_path, capsys):
    """The README's first command: the main job on the embedded demo sweep."""
    assert main(["demo", "--out", str(tmp_path), "--draws", "150", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "forecast at N=7e+10, D=1.4e+12" in out and "90% of new runs would land between" in out
    assert (tmp_path / "demo_fit.nc").exists() and (tmp_path / "demo_forecast.png").stat().st_size > 10_000


@pytest.mark.slow
def test_same_seed_gives_the_same_posterior_with_a_cold_and_a_warm_compile_cache(tmp_path):
    """Issue "Every number agrees", point 5: two fresh processes, the first on an empty compile cache.

    With Numba's fastmath on, code compiled fresh and code loaded from the cache differ at 1e-14 and
    NUTS turns that into different draws; bayescale compiles without fastmath so the draws agree, with
    nutpie's callbacks compiled (cold) or loaded from bayescale's cache by their manifest (warm) alike.
    """
    import os

    import xarray as xr

    import bayescale as bs

    exe = shutil.which("bayescale") or str(__import__("pathlib").Path(sys.executable).parent / "bayescale")
    cache = tmp_path / "compile-cache"
    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={cache}", "BAYESCALE_CACHE": str(tmp_path / "callbacks")}
    for name in ("cold", "warm"):
        done = subprocess.run(
            [
                exe,
                "fit",
                str(demo_runs_path()),
                "--draws",
                "300",
                "--tune",
                "300",
                "--out",
                str(tmp_path / f"{name}.nc"),
                "--quiet",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        if name == "cold":
            assert any((cache / "numba").iterdir()), "the first run should have filled the empty cache"
            assert list((tmp_path / "callbacks" / "nutpie-callbacks").glob("callback_*.py")), "and written callbacks"
            assert list((tmp_path / "callbacks" / "nutpie-callbacks").glob("manifest_*.json")), "and their manifest"
    cold, warm = (bs.load(tmp_path / f"{name}.nc").posterior for name in ("cold", "warm"))
    xr.testing.assert_equal(cold, warm)


@pytest.mark.slow
def test_ctrl_c_during_sampling_exits_130_with_one_line_and_no_file(tmp_path):
    """nutpie returns the draws so far at Ctrl-C; the fit must stop there: one line, exit 130, nothing saved.

    Run with stderr to a pipe, so the fit also shows its progress lines (at most one every 10 s);
    the first one says sampling is under way, and SIGINT is sent then.
    """
    import signal
    import time

    out = tmp_path / "fit.nc"
    # pytest-xdist's workers ignore SIGINT, and a child inherits that: give the fit Ctrl-C's default back
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bayescale.cli.main",
            "fit",
            str(demo_runs_path()),
            "--draws",
            "200000",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        lines = []
        for line in process.stderr:  # progress lines arrive while nutpie samples
            lines.append(line)
            if line.startswith("sampling: "):
                break
        assert lines and lines[-1].startswith("sampling: ") and "s left" in lines[-1], lines
        process.send_signal(signal.SIGINT)
        start = time.monotonic()
        _, rest = process.communicate(timeout=60)
    finally:
        process.kill()  # never leave a fit running, whatever failed above
    assert time.monotonic() - start < 15
    assert process.returncode == 130
    assert "interrupted" in rest and "Traceback" not in rest and "NaN" not in rest, rest
    assert not out.exists()
