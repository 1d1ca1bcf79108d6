"""The package loads its heavy dependencies only when a command needs them."""

import subprocess
import sys

import pytest


def _modules_after(code: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(done.stdout.split())


def test_listing_laws_and_help_do_not_import_the_sampler_stack():
    loaded = _modules_after("from bayescale.cli.main import main; main(['laws']); main(['--help'])")
    assert not {"pymc", "arviz", "matplotlib", "pytensor", "nutpie", "scipy", "pandas"} & loaded


@pytest.mark.slow
def test_public_names_load_on_first_use():
    loaded = _modules_after(
        "import bayescale as bs; assert callable(bs.fit) and bs.fit.__module__ == 'bayescale.fitting.pipeline'"
    )
    assert "bayescale.fitting.pipeline" in loaded
    bare = _modules_after("import bayescale")
    assert not {"bayescale.fitting.pipeline", "pymc", "arviz", "pandas"} & bare
