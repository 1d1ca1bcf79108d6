"""The documentation builds with no warning: every page, the CLI reference and the API reference."""

import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(tmp_path / "html")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    pages = {p.relative_to(tmp_path / "html").as_posix() for p in (tmp_path / "html").rglob("*.html")}
    assert {"index.html", "cli.html", "api.html", "guide/fit_and_forecast.html", "guide/many_fits.html"} <= pages
    api = (tmp_path / "html" / "api.html").read_text()
    assert "bayescale.fit" in api and "Parameters" in api and "Returns" in api
    cli = (tmp_path / "html" / "cli.html").read_text()
    assert "--target-accept" in cli and "backtest" in cli
