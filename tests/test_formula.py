import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
import xarray as xr

from bayescale.errors import FormulaError
from bayescale.laws.formula import FUNCTIONS, Formula


def test_numpy_and_pytensor_agree_from_one_parse():
    f = Formula("E + A / N**alpha + B / D**beta + log1p(maximum(N, D)) * 0")
    env = {
        "E": 1.7,
        "A": 400.0,
        "alpha": 0.34,
        "B": 410.0,
        "beta": 0.28,
        "N": np.array([1e8, 1e10]),
        "D": np.array([2e9, 2e11]),
    }
    expected = 1.7 + 400 / env["N"] ** 0.34 + 410 / env["D"] ** 0.28
    np.testing.assert_allclose(f.numpy(env), expected)
    sym = {k: pt.dscalar(k) if np.ndim(v) == 0 else pt.dvector(k) for k, v in env.items()}
    fn = pytensor.function(list(sym.values()), f.pytensor(sym))
    np.testing.assert_allclose(fn(*env.values()), expected)
    assert f.names == {"E", "A", "alpha", "B", "beta", "N", "D"}  # function names are not variables


def test_numpy_form_broadcasts_posterior_draws_against_points():
    f = Formula("E + A * X**(-alpha)")
    draws = xr.DataArray([[1.0, 2.0]], dims=("chain", "draw"))
    x = xr.DataArray([1.0, 10.0, 100.0], dims="point")
    out = f.numpy({"E": draws, "A": 1.0, "alpha": 1.0, "X": x})
    assert out.dims == ("chain", "draw", "point")
    np.testing.assert_allclose(out.values[0, 1], [3.0, 2.1, 2.01])


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("__import__('os')", "unknown function '__import__'"),
        ("__import__('os').system('echo hi')", "attribute access"),
        ("N.__class__", "attribute access"),
        ("(lambda x: x)(N)", "Lambda is not allowed"),
        ("N[0]", "Subscript is not allowed"),
        ("[x for x in N]", "ListComp is not allowed"),
        ("'abc'", "only numbers"),
        ("N if N else D", "IfExp is not allowed"),
        ("N // 2", "FloorDiv is not allowed"),
        ("exp(N, D)", "exp() takes 1"),
        ("eval('1')", "unknown function 'eval'"),
        ("np.exp(N)", "attribute access (np.exp)"),
        ("N +", "cannot parse"),
        ("_secret + N", "may not start with '_'"),
    ],
)
def test_formulas_that_reach_for_python_are_refused(text, fragment):
    with pytest.raises(FormulaError, match=None) as info:
        Formula(text)
    assert fragment in str(info.value)


def test_unknown_function_error_lists_what_is_allowed():
    with pytest.raises(FormulaError) as info:
        Formula("cosh(N)")
    for name in FUNCTIONS:
        assert name in str(info.value)


def test_unknown_name_error_lists_allowed_names():
    with pytest.raises(FormulaError, match="unknown name.*'bet'.*allowed names are.*beta"):
        Formula("E + B / D**bet").check_names({"E", "B", "D", "beta"}, "law 'x'")
