import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import fake_fit

import bayescale as bs


def test_save_and_load_give_identical_summaries_and_predictions(demo_runs, tmp_path):
    fit = fake_fit(demo_runs, spread=0.03)
    path = fit.save(tmp_path / "fit.nc")
    again = bs.load(path)
    pd.testing.assert_frame_equal(again.summary(0.8), fit.summary(0.8))
    pd.testing.assert_frame_equal(again.predict(N=[7e10], D=[1.4e12]), fit.predict(N=[7e10], D=[1.4e12]))
    assert again.law.to_dict() == fit.law.to_dict() and again.priors == fit.priors
    pd.testing.assert_frame_equal(again.runs.frame, fit.runs.frame)
    assert again.settings == fit.settings and again.diagnostics == fit.diagnostics
    raw = xr.open_datatree(path)
    assert '"bayescale_version": "0.1.0"' in raw.attrs["bayescale"]
    assert "log_likelihood" in raw.children and "constant_data" in raw.children
    raw.close()


@pytest.mark.slow
def test_interrupted_save_keeps_the_earlier_good_file(demo_runs, tmp_path, monkeypatch):
    good = fake_fit(demo_runs)
    path = good.save(tmp_path / "fit.nc")
    before = path.read_bytes()

    def crash(self, target, **kwargs):
        with open(target, "wb") as handle:
            handle.write(b"half a file")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", crash)
    with pytest.raises(KeyboardInterrupt):
        fake_fit(demo_runs, spread=0.1).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["fit.nc"]  # no temporary file left behind


def test_bad_paths_and_foreign_files_are_explained(demo_runs, tmp_path):
    fit = fake_fit(demo_runs)
    with pytest.raises(bs.BayescaleError, match="ending in .nc"):
        fit.save(tmp_path / "fit.pkl")
    with pytest.raises(bs.BayescaleError, match="folder .* does not exist"):
        fit.save(tmp_path / "missing" / "fit.nc")
    with pytest.raises(bs.BayescaleError, match="does not exist"):
        bs.load(tmp_path / "none.nc")
    (tmp_path / "junk.nc").write_text("not netcdf")
    with pytest.raises(bs.BayescaleError, match="not a readable fit file"):
        bs.load(tmp_path / "junk.nc")
    xr.Dataset({"x": ("a", np.arange(3))}).to_netcdf(tmp_path / "other.nc")
    with pytest.raises(bs.BayescaleError, match="not a bayescale fit"):
        bs.load(tmp_path / "other.nc")


def test_a_staged_folder_fills_its_target_only_when_the_block_ends(tmp_path):
    """Many files at once: Ctrl-C inside the block leaves no file and no folder; on success they all move in."""
    from bayescale.files import staged_folder

    target = tmp_path / "new" / "out"
    with pytest.raises(KeyboardInterrupt), staged_folder(target) as staging:
        (staging / "fits").mkdir()
        (staging / "fits" / "a.nc").write_text("a")
        raise KeyboardInterrupt
    assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == []
    target.mkdir(parents=True)
    (target / "kept.txt").write_text("earlier")
    with staged_folder(target) as staging:
        (staging / "fits").mkdir()
        (staging / "fits" / "a.nc").write_text("a")
        (staging / "comparison.csv").write_text("c")
        assert not (target / "comparison.csv").exists()  # nothing moves before the end
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == [
        "comparison.csv",
        "fits",
        "fits/a.nc",
        "kept.txt",
    ]
    with pytest.raises(bs.BayescaleError, match="is a file; give a folder"), staged_folder(target / "kept.txt"):
        pass
