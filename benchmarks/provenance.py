"""Where a benchmark's result goes and what it was measured at: today's date and the commit checked out."""

import datetime
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stamp(name: str, out: str | None = None) -> tuple[str, str, Path]:
    """(date, short commit, output path): ``out`` or ``benchmarks/results/<name>_<date>_<commit>.json``."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    today = datetime.date.today().isoformat()
    return today, commit, Path(out or ROOT / "benchmarks" / "results" / f"{name}_{today}_{commit}.json")
