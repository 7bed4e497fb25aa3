"""xp.special: every derivative against finite differences, identities between functions (their tangents
come from different rules), second derivatives, and the clear error for shape parameters."""
import numpy as np
import pytest

import cupy_ad as ad

# name: (constant leading arguments, low, high) of the sampled variable
UNARY = {
    "erf": (-2, 2), "erfc": (-2, 2), "erfinv": (-0.9, 0.9), "erfcinv": (0.1, 1.9), "expit": (-3, 3),
    "logit": (0.1, 0.9), "softplus": (-3, 3), "gammaln": (0.2, 4), "psi": (0.2, 4), "digamma": (0.5, 3),
    "ndtr": (-3, 3), "log_ndtr": (-6, 3), "ndtri": (0.05, 0.95), "entr": (0.1, 2), "sinc": (-2, 2),
    "i0": (-3, 3), "i1": (-3, 3), "i0e": (-3, 3), "i1e": (-3, 3),
}
# name: (constant shape parameters, low, high of the variable)
WITH_PARAMETERS = {
    "polygamma": ((2,), 0.5, 3), "gammainc": ((2.5,), 0.1, 4), "gammaincc": ((0.7,), 0.1, 4),
    "betainc": ((2.5, 1.5), 0.05, 0.95), "betaincc": ((0.8, 3.0), 0.05, 0.95), "stdtr": ((3.5,), -3, 3),
    "chdtr": ((3.0,), 0.1, 6), "chdtrc": ((1.5,), 0.1, 6), "fdtr": ((3.0, 7.5), 0.1, 4), "fdtrc": ((2.0, 5.0), 0.1, 4),
}
BINARY = {"xlogy": (0.1, 3), "xlog1py": (0.1, 3), "rel_entr": (0.1, 3)}


def _uniform(backend, low, high, dtype=np.float64, shape=(2, 5), seed=0):
    a = np.random.default_rng(seed).uniform(low, high, shape)
    return backend.asarray(a.astype(dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_finite_differences(backend, name, dtype):
    x = _uniform(backend, *UNARY[name], dtype=dtype)
    ad.check_jvp(getattr(backend.ns.special, name), (x,))
    assert getattr(backend.ns.special, name)(x).dtype == x.dtype


@pytest.mark.parametrize("name", sorted(WITH_PARAMETERS))
def test_variable_finite_differences(backend, name):
    parameters, low, high = WITH_PARAMETERS[name]
    x = _uniform(backend, low, high)
    f = getattr(backend.ns.special, name)
    ad.check_jvp(lambda x: f(*parameters, x), (x,))
    arrays = [backend.asarray(np.full((5,), p, dtype=np.float64)) for p in parameters]  # parameters as arrays
    ad.check_jvp(lambda x, *p: f(*p, x), (x, *arrays), (None, *[None] * len(arrays)))
    single = _uniform(backend, low, high, np.float32)
    ad.check_jvp(lambda x: f(*parameters, x), (single,))
    assert f(*parameters, single).dtype == single.dtype


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_finite_differences(backend, name):
    x, y = _uniform(backend, *BINARY[name], seed=1), _uniform(backend, *BINARY[name], shape=(5,), seed=2)
    ad.check_jvp(getattr(backend.ns.special, name), (x, y))


@pytest.mark.parametrize("name", ["i1", "i1e", "sinc", "erf", "i0"])
def test_at_zero(backend, name):
    """At x = 0, where the rules replace a 0/0 by its limit (I1(x)/x -> 1/2, (cos(pi x) - sinc x)/x -> 0)."""
    x = backend.asarray([0.0, 0.0, 1e-3, -0.5])
    ad.check_jvp(getattr(backend.ns.special, name), (x,))
    # eps 1e-4: the first derivative's own formula near 0 cancels digits, and a smaller FD step magnifies that
    ad.check_jvp(lambda x: ad.jvp(getattr(backend.ns.special, name), (x,), (backend.asarray(np.ones(4)),))[1], (x,),
                 eps=1e-4)


def test_xlogy_at_zero_x(backend):
    """xlogy(0, y) = 0 for every y: no tangent in y, and log(y) in x (finite for y > 0)."""
    xlogy = backend.ns.special.xlogy
    x, y = backend.asarray([0.0, 0.0, 2.0]), backend.asarray([0.0, 3.0, 3.0])
    _, tangent = ad.jvp(xlogy, (x, y), (backend.asarray([0.0, 1.0, 1.0]), backend.asarray([1.0, 1.0, 1.0])))
    np.testing.assert_allclose(backend.to_numpy(tangent), [0.0, np.log(3.0), np.log(3.0) + 2.0 / 3.0])


def _tangents_agree(backend, f, g, x, rtol=1e-12, atol=1e-14):
    t = backend.random(tuple(x.shape), np.float64, seed=7)
    (fx, df), (gx, dg) = ad.jvp(f, (x,), (t,)), ad.jvp(g, (x,), (t,))
    np.testing.assert_allclose(backend.to_numpy(fx), backend.to_numpy(gx), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(backend.to_numpy(df), backend.to_numpy(dg), rtol=rtol, atol=atol)
    assert np.any(backend.to_numpy(df))


def _identities(ns):
    sp, pi = ns.special, np.pi
    return {  # name: (f, g with f = g, low, high); the pairs reach the tangents through different rules
        "erf+erfc": (lambda x: sp.erf(x) + sp.erfc(x) + x, lambda x: 1.0 + x, -2, 2),
        "logit(expit)": (lambda x: sp.logit(sp.expit(x)), lambda x: x, -3, 3),
        "expit'": (sp.expit, lambda x: 1.0 / (1.0 + ns.exp(-x)), -3, 3),
        "erfinv(erf)": (lambda x: sp.erfinv(sp.erf(x)), lambda x: x, -1.5, 1.5),
        "erfcinv(erfc)": (lambda x: sp.erfcinv(sp.erfc(x)), lambda x: x, -1.5, 1.5),
        "ndtri(ndtr)": (lambda x: sp.ndtri(sp.ndtr(x)), lambda x: x, -2, 2),
        "ndtr(erf)": (sp.ndtr, lambda x: 0.5 * (1.0 + sp.erf(x / 2.0 ** 0.5)), -2, 2),
        "log_ndtr": (sp.log_ndtr, lambda x: ns.log(sp.ndtr(x)), -3, 3),
        "softplus": (lambda x: sp.softplus(x) - sp.softplus(-x), lambda x: x, -3, 3),
        "gammaln recurrence": (lambda x: sp.gammaln(x + 1.0) - sp.gammaln(x), ns.log, 0.3, 4),
        "psi recurrence": (lambda x: sp.psi(x + 1.0) - sp.psi(x), lambda x: 1.0 / x, 0.3, 4),
        "entr": (sp.entr, lambda x: -sp.xlogy(x, x), 0.1, 2),
        "rel_entr": (lambda x: sp.rel_entr(x, 2.0 * x + 1.0), lambda x: sp.xlogy(x, x) - sp.xlogy(x, 2.0 * x + 1.0),
                     0.1, 2),
        "xlog1py": (lambda x: sp.xlog1py(x, x * x), lambda x: sp.xlogy(x, 1.0 + x * x), 0.1, 2),
        "sinc": (lambda x: sp.sinc(x) * (pi * x), lambda x: ns.sin(pi * x), -2, 2),
        "i0e": (sp.i0e, lambda x: ns.exp(-ns.abs(x)) * sp.i0(x), -3, 3),
        "i1e": (sp.i1e, lambda x: ns.exp(-ns.abs(x)) * sp.i1(x), -3, 3),
        "gammainc+gammaincc": (lambda x: sp.gammainc(2.5, x) + sp.gammaincc(2.5, x) + x, lambda x: 1.0 + x, 0.1, 4),
        "betainc symmetry": (lambda x: sp.betainc(2.5, 1.5, x), lambda x: sp.betaincc(1.5, 2.5, 1.0 - x), 0.05, 0.95),
        "betainc+betaincc": (lambda x: sp.betainc(2.5, 1.5, x) + sp.betaincc(2.5, 1.5, x) + x, lambda x: 1.0 + x,
                             0.05, 0.95),
        "stdtr symmetry": (lambda x: sp.stdtr(3.5, x), lambda x: 1.0 - sp.stdtr(3.5, -x), -3, 3),
        "stdtr via betainc": (lambda x: sp.stdtr(3.5, x), lambda x: 1.0 - 0.5 * sp.betainc(1.75, 0.5, 3.5 / (3.5 + x * x)),
                              0.1, 3),
        "chdtrc via gammaincc": (lambda x: sp.chdtrc(3.0, x), lambda x: sp.gammaincc(1.5, x / 2.0), 0.1, 6),
        "chdtr+chdtrc": (lambda x: sp.chdtr(3.0, x), lambda x: 1.0 - sp.chdtrc(3.0, x), 0.1, 6),
        "fdtr via betainc": (lambda x: sp.fdtr(3.0, 7.5, x), lambda x: sp.betainc(1.5, 3.75, 3.0 * x / (3.0 * x + 7.5)),
                             0.1, 4),
        "fdtr+fdtrc": (lambda x: sp.fdtr(3.0, 7.5, x), lambda x: 1.0 - sp.fdtrc(3.0, 7.5, x), 0.1, 4),
    }


@pytest.mark.parametrize("identity", sorted(_identities(ad.namespace("numpy"))))
def test_identity(backend, identity):
    f, g, low, high = _identities(backend.ns)[identity]
    _tangents_agree(backend, f, g, _uniform(backend, low, high, seed=3), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name, low, high", [("erf", -2, 2), ("gammaln", 0.5, 3), ("i1", -2, 2), ("log_ndtr", -4, 2),
                                             ("sinc", -2, 2)])
def test_second_derivatives(backend, name, low, high):
    f = getattr(backend.ns.special, name)
    x = _uniform(backend, low, high)
    t = backend.random(tuple(x.shape), np.float64, seed=4)
    ad.check_jvp(lambda x: ad.jvp(f, (x,), (t,))[1], (x,), (t,))


def test_second_derivative_of_a_distribution_function(backend):
    """d^2/dt^2 of stdtr and fdtrc: the derivative of the density, in t and in x."""
    sp = backend.ns.special
    x = _uniform(backend, 0.2, 3)
    t = backend.asarray(np.ones((2, 5)))
    ad.check_jvp(lambda x: ad.jvp(lambda x: sp.stdtr(4.0, x), (x,), (t,))[1], (x,), (t,))
    ad.check_jvp(lambda x: ad.jvp(lambda x: sp.fdtrc(3.0, 5.0, x), (x,), (t,))[1], (x,), (t,))


@pytest.mark.parametrize("name, position, parameter", [
    ("gammainc", 0, "a"), ("gammaincc", 0, "a"), ("betainc", 0, "a"), ("betainc", 1, "b"), ("betaincc", 1, "b"),
    ("stdtr", 0, "df"), ("chdtr", 0, "v"), ("chdtrc", 0, "v"), ("fdtr", 0, "dfn"), ("fdtrc", 1, "dfd"),
])
def test_shape_parameters_raise(backend, name, position, parameter):
    """A tangent in a shape parameter raises instead of giving a number; a constant one works."""
    parameters, low, high = WITH_PARAMETERS[name]
    f = getattr(backend.ns.special, name)
    args = [backend.asarray(np.full((3,), p)) for p in parameters] + [_uniform(backend, low, high, shape=(3,))]
    tangents = [None] * len(args)
    tangents[position] = backend.asarray(np.ones(3))
    with pytest.raises(NotImplementedError, match=f"derivative of {name} in {parameter} is not implemented"):
        ad.jvp(f, tuple(args), tuple(tangents))
    tangents[position], tangents[-1] = None, backend.asarray(np.ones(3))
    ad.jvp(f, tuple(args), tuple(tangents))
