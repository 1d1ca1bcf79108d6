"""nutpie's callbacks from the on-disk cache (issue "Answers in seconds": pay the compile once per law)."""

import ctypes
import json
import sys
import warnings

import numpy as np
import pymc as pm
import pytest

from bayescale.defaults import reproducible_compilation
from bayescale.inference import callbacks


def line_model(x, y):
    """A small regression whose numbers are all ``pm.Data``, as bayescale builds its models."""
    with pm.Model() as model:
        xs = pm.Data("x", np.asarray(x, float))
        ys = pm.Data("y", np.asarray(y, float))
        slope = pm.Normal("slope", 0, 2)
        sigma = pm.HalfNormal("sigma", 1)
        pm.Normal("obs", slope * xs, sigma, observed=ys)
    return model


def data(n, seed):
    rng = np.random.default_rng(seed)
    x = np.linspace(-1, 1, n)
    return x, 0.7 * x + rng.normal(0, 0.3, n)


def compile_line(x, y):
    with reproducible_compilation():
        return callbacks.compile_model(line_model(x, y), ["slope", "sigma"])


def logp_and_grad(compiled, point):
    """Call the compiled log-density callback through its C address, as nutpie does."""
    x = np.ascontiguousarray(point, float)
    grad, logp = np.zeros_like(x), np.zeros(())
    pointer = ctypes.POINTER(ctypes.c_double)
    call = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_uint64, pointer, pointer, pointer, ctypes.c_void_p)(
        compiled.compiled_logp_func.address
    )
    code = call(
        len(x),
        x.ctypes.data_as(pointer),
        grad.ctypes.data_as(pointer),
        logp.ctypes.data_as(pointer),
        compiled.user_data.ctypes.data,
    )
    assert code == 0
    return float(logp), grad


@pytest.mark.slow
def test_callbacks_are_written_once_and_loaded_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BAYESCALE_CACHE", str(tmp_path))
    first = compile_line(*data(30, 0))
    written = sorted((tmp_path / "nutpie-callbacks").glob("callback_*.py"))
    assert len(written) == 2, "one log-density and one expansion callback"
    assert list((tmp_path / "nutpie-callbacks" / "__pycache__").glob("*.nbi")), "Numba's cache index"
    assert first.compiled_logp_func.cache_hits == 0
    again = compile_line(*data(45, 1))  # same structure, other numbers and length
    assert again.compiled_logp_func.cache_hits == 1 and again.compiled_expand_func.cache_hits == 1
    assert sorted((tmp_path / "nutpie-callbacks").glob("callback_*.py")) == written


@pytest.mark.slow
def test_the_cached_callbacks_compute_the_models_log_density_and_gradient(tmp_path, monkeypatch):
    monkeypatch.setenv("BAYESCALE_CACHE", str(tmp_path))
    x, y = data(40, 2)
    model = line_model(x, y)
    compiled = compile_line(x, y)
    point = np.array([0.4, np.log(0.5)])  # slope, log sigma (nutpie's order is the model's value variables')
    names = [v.name for v in model.value_vars]
    value = dict(zip(names, point, strict=True))
    logp, grad = logp_and_grad(compiled, point)
    assert logp == pytest.approx(float(model.compile_logp()(value)), rel=1e-12)
    np.testing.assert_allclose(grad, model.compile_dlogp()(value), rtol=1e-10)
    bigger = compiled.with_data(x=np.linspace(-2, 2, 70), y=np.zeros(70))  # nutpie swaps the inputs' addresses
    model_bigger = line_model(np.linspace(-2, 2, 70), np.zeros(70))
    assert logp_and_grad(bigger, point)[0] == pytest.approx(float(model_bigger.compile_logp()(value)), rel=1e-12)


@pytest.mark.slow
def test_sampling_with_cached_callbacks_draws_what_nutpie_draws(tmp_path, monkeypatch):
    import nutpie

    monkeypatch.setenv("BAYESCALE_CACHE", str(tmp_path))
    x, y = data(25, 3)
    with reproducible_compilation():
        plain = nutpie.compile_pymc_model(line_model(x, y), var_names=["slope", "sigma"])
    settings = dict(draws=200, tune=200, chains=2, cores=1, seed=4, progress_bar=False)
    ours = nutpie.sample(compile_line(x, y), **settings)["posterior"]["slope"].values
    theirs = nutpie.sample(plain, **settings)["posterior"]["slope"].values
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.slow
def test_a_nutpie_with_another_data_record_falls_back_to_its_own_compile_with_a_warning(tmp_path, monkeypatch):
    """A nutpie release that lays out ``user_data`` differently must not be read with the old layout."""
    import nutpie.compile_pymc

    original = nutpie.compile_pymc.make_user_data

    def with_a_version_field(keys, shared_data):
        record = original(keys, shared_data)
        wider = np.zeros((), np.dtype([*record.dtype.descr, ("version", np.uint32)]))
        wider["shared"] = record["shared"]
        return wider

    monkeypatch.setenv("BAYESCALE_CACHE", str(tmp_path))
    monkeypatch.setattr(nutpie.compile_pymc, "make_user_data", with_a_version_field)
    x, y = data(20, 5)
    with pytest.warns(RuntimeWarning, match="could not be cached"):
        compiled = compile_line(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isfinite(logp_and_grad(compiled, np.array([0.1, 0.0]))[0])


@pytest.mark.slow
def test_a_cache_folder_that_cannot_be_written_falls_back_with_a_warning(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("BAYESCALE_CACHE", str(blocker / "cache"))
    x, y = data(20, 6)
    with pytest.warns(RuntimeWarning, match="could not be cached"):
        compiled = compile_line(x, y)
    assert np.isfinite(logp_and_grad(compiled, np.array([0.1, 0.0]))[0])


@pytest.mark.slow
def test_a_known_structure_loads_its_callbacks_without_building_the_graphs(tmp_path, monkeypatch):
    """A new process with a structure compiled before skips PyTensor's graph rewrites (1.3 s of a fit)."""
    import nutpie.compile_pymc

    monkeypatch.setenv("BAYESCALE_CACHE", str(tmp_path))
    with reproducible_compilation():
        callbacks.compile_model(line_model(*data(30, 7)), ["slope", "sigma"], structure_key="line")
    assert len(list((tmp_path / "nutpie-callbacks").glob("manifest_*.json"))) == 1

    def no_graphs(*args, **kwargs):
        raise AssertionError("the graphs were built again")

    x, y = data(45, 8)
    model = line_model(x, y)
    with monkeypatch.context() as patched:
        patched.setattr(nutpie.compile_pymc, "_make_functions", no_graphs)
        with reproducible_compilation():
            known = callbacks.compile_model(model, ["slope", "sigma"], structure_key="line")
    point = np.array([0.3, np.log(0.4)])
    value = dict(zip([v.name for v in model.value_vars], point, strict=True))
    logp, grad = logp_and_grad(known, point)
    assert logp == pytest.approx(float(model.compile_logp()(value)), rel=1e-12)
    np.testing.assert_allclose(grad, model.compile_dlogp()(value), rtol=1e-10)
    settings = dict(draws=100, tune=100, chains=2, cores=1, seed=4, progress_bar=False)
    import nutpie

    with reproducible_compilation():
        fresh = callbacks.compile_model(model, ["slope", "sigma"])
    np.testing.assert_array_equal(
        nutpie.sample(known, **settings)["posterior"]["slope"].values,
        nutpie.sample(fresh, **settings)["posterior"]["slope"].values,
    )


@pytest.mark.slow
def test_an_edited_package_or_a_lost_callback_builds_the_graphs_again(tmp_path, monkeypatch):
    import nutpie.compile_pymc

    monkeypatch.setenv("BAYESCALE_CACHE", str(tmp_path))
    with reproducible_compilation():
        callbacks.compile_model(line_model(*data(30, 9)), ["slope", "sigma"], structure_key="line")
    built = []
    original = nutpie.compile_pymc._make_functions
    monkeypatch.setattr(nutpie.compile_pymc, "_make_functions", lambda *a, **k: built.append(1) or original(*a, **k))
    monkeypatch.setattr(callbacks, "_source_hash", lambda: "an edited bayescale")
    with reproducible_compilation():
        callbacks.compile_model(line_model(*data(30, 9)), ["slope", "sigma"], structure_key="line")
    assert built == [1]
    monkeypatch.undo()
    monkeypatch.setenv("BAYESCALE_CACHE", str(tmp_path))
    monkeypatch.setattr(nutpie.compile_pymc, "_make_functions", lambda *a, **k: built.append(2) or original(*a, **k))
    for written in (tmp_path / "nutpie-callbacks").glob("callback_*.py"):
        written.unlink()
    for name in [name for name in sys.modules if name.startswith("bayescale_callback_")]:
        monkeypatch.delitem(sys.modules, name)  # as in a new process
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to nutpie's own compile
        with reproducible_compilation():
            again = callbacks.compile_model(line_model(*data(30, 9)), ["slope", "sigma"], structure_key="line")
    assert built == [1, 2]
    assert np.isfinite(logp_and_grad(again, np.array([0.1, 0.0]))[0])


@pytest.mark.slow
def test_an_unreadable_manifest_builds_the_graphs_without_a_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("BAYESCALE_CACHE", str(tmp_path))
    with reproducible_compilation():
        callbacks.compile_model(line_model(*data(30, 10)), ["slope", "sigma"], structure_key="line")
    (manifest,) = (tmp_path / "nutpie-callbacks").glob("manifest_*.json")
    manifest.write_text("{not json")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with reproducible_compilation():
            compiled = callbacks.compile_model(line_model(*data(30, 10)), ["slope", "sigma"], structure_key="line")
    assert np.isfinite(logp_and_grad(compiled, np.array([0.1, 0.0]))[0])
    assert json.loads(manifest.read_text())["n_dim"] == 2, "written again"
