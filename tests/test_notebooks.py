"""Every notebook in notebooks/ runs top to bottom (with few draws)."""

from pathlib import Path

import nbformat
import pytest
from conftest import SHARED_DATA, shared_file
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
#: notebooks that read ../shared/data, and a file each needs (skipped when absent, failed under CI)
NEEDS_DATA = {
    "downstream.ipynb": "gadre-overtrain/DERIVED_flat_losses.csv",
    "pymc_model.ipynb": "gadre-overtrain/DERIVED_flat_losses.csv",
}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, monkeypatch):
    if path.name in NEEDS_DATA:
        shared_file(NEEDS_DATA[path.name])
    monkeypatch.setenv("BAYESCALE_SHARED_DATA", str(SHARED_DATA))
    monkeypatch.setenv("BAYESCALE_NB_DRAWS", "150")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert figures, f"{path.name} drew no figure"  # plots show inline, not only in files
    assert not any("draws/s" in str(o) for o in outputs)  # no frozen progress tables off a terminal


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_shows_no_sampler_warning_or_traceback(path):
    """What a reader sees on the repository page: outputs of a run at the default settings (make notebooks)."""
    notebook = nbformat.read(path, as_version=4)
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert outputs, f"{path.name} is committed without outputs: run make notebooks"
    shown = " ".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert not [o for o in outputs if o.get("output_type") == "error"] and "Traceback" not in shown
    assert "SamplerWarning" not in shown, f"{path.name} shows a SamplerWarning: run make notebooks at the defaults"
