import numpy as np
import pandas as pd
import pytest
from conftest import shared_file

import bayescale as bs
from bayescale.data.datasets import synthetic_sweep


def test_synthetic_sweep_is_seeded_and_isoflop_shaped():
    a, b = synthetic_sweep(seed=3), synthetic_sweep(seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(synthetic_sweep(seed=4))
    np.testing.assert_allclose(a["C"], 6 * a["N"] * a["D"], rtol=1e-12)
    assert a.groupby("C").size().eq(9).all()


def test_embedded_demo_table_is_the_seeded_sweep():
    shipped = pd.read_csv(bs.datasets.demo_runs_path())
    regenerated = pd.read_csv(pd.io.common.StringIO(synthetic_sweep(seed=0).to_csv(index=False, float_format="%.6g")))
    pd.testing.assert_frame_equal(shipped, regenerated)


def test_epoch_loader_reads_the_shared_copy(epoch_path):
    runs = bs.datasets.load_epoch_chinchilla(epoch_path)
    assert len(runs) == 240
    assert runs["loss"].max() < pd.read_csv(epoch_path)["loss"].nlargest(5).min()
    np.testing.assert_allclose(runs["D"], runs["C"] / (6 * runs["N"]))
    assert 4e7 < runs["N"].min() < 7e7
    assert runs["N"].max() == pytest.approx(1.6e10, rel=0.05)


@pytest.mark.slow
def test_epoch_loader_downloads_once_into_its_cache(epoch_path, tmp_path):
    url = epoch_path.resolve().as_uri()  # a file:// URL stands in for the public one
    runs = bs.datasets.load_epoch_chinchilla(url=url, cache_dir=tmp_path)
    assert (tmp_path / "epoch_svg_extracted_data.csv").exists() and len(runs) == 240
    again = bs.datasets.load_epoch_chinchilla(url="file:///nonexistent", cache_dir=tmp_path)  # served from cache
    pd.testing.assert_frame_equal(runs.frame, again.frame)
    with pytest.raises(bs.BayescaleError, match="could not download"):
        bs.datasets.load_epoch_chinchilla(url="file:///nonexistent", cache_dir=tmp_path / "empty")


def test_opt_trajectories_become_a_checkpoint_table_with_losses_in_nats():
    table = bs.datasets.load_opt_trajectories(shared_file("colpret-curves/opt_trajectories.csv"))
    assert sorted(table["run"].unique()) == ["1.3b", "125m", "13b", "175b", "30b", "6.7b"]
    assert table.groupby("run")["step"].apply(lambda s: s.is_monotonic_increasing).all()
    first = table.iloc[0]
    assert (
        first["N"] == 1.3e9
        and first["tokens"] == pytest.approx(2e9)
        and first["loss"] == pytest.approx(np.log(44.2), abs=1.5)
    )
    assert table["loss"].between(2.0, 4.5).all()  # ln of perplexities 10-70


def test_revisiting_vision_needs_a_task_and_names_the_ones_it_has():
    path = shared_file("colpret-curves/revisiting_vision.csv")
    table = bs.datasets.load_revisiting(path, "IC", "cal_5")
    assert table["run"].nunique() == 6 and set(table["training"]) == {0, 1}
    with pytest.raises(bs.DataError, match="no task 'cal_7' in domain 'IC'.*bird_10"):
        bs.datasets.load_revisiting(path, "IC", "cal_7")
