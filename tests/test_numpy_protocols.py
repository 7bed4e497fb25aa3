"""Plain NumPy code on dual values (NEP 13 and NEP 18) is differentiated by the namespace's rules;
what has no equivalent, and NumPy-only methods, raise errors naming the namespace function."""
from __future__ import annotations

import copy
import pickle

import numpy as np
import optree
import pytest

import cupy_ad as ad
from cupy_ad.namespace.numpy_protocols import NoArrayMethodError

rng = np.random.default_rng(0)
A = rng.standard_normal((4, 4))
SPD = A @ A.T + 4 * np.eye(4)
B = rng.standard_normal((4, 3))


def _same_jvp(numpy_code, namespace_code, primals):
    """NumPy code on duals gives the jvp of the namespace code (the identity) and matches finite
    differences."""
    ad.check_jvp(numpy_code, primals)
    tangents = tuple(np.ones_like(p) for p in primals)
    got, want = ad.jvp(numpy_code, primals, tangents), ad.jvp(namespace_code, primals, tangents)
    assert optree.tree_structure(got) == optree.tree_structure(want)
    for g, w in zip(optree.tree_leaves(got), optree.tree_leaves(want)):
        assert not isinstance(g, ad.Dual)
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-13)


def test_plain_numpy_code_is_differentiated():
    def numpy_code(x, w):
        h = np.tanh(np.dot(x, w)) + np.logaddexp(x[:, :3], 0.5)
        h = np.concatenate([np.reshape(h, (3, 4)), np.transpose(h)], axis=0)
        h = np.where(h > 0, np.exp(-h), np.clip(h, -0.5, None) ** 2)
        return np.sum(h, axis=0), np.mean(h), np.linalg.norm(h, axis=1), np.max(h, axis=(0, 1))

    def namespace_code(x, w):
        xp = x.__array_namespace__()
        h = xp.tanh(x @ w) + xp.logaddexp(x[:, :3], 0.5)
        h = xp.concat([xp.reshape(h, (3, 4)), xp.permute_dims(h, (1, 0))], axis=0)
        h = xp.where(h > 0, xp.exp(-h), xp.clip(h, -0.5, None) ** 2)
        return xp.sum(h, axis=0), xp.mean(h), xp.linalg.vector_norm(h, axis=1), xp.max(h, axis=(0, 1))

    _same_jvp(numpy_code, namespace_code, (A, B))


@pytest.mark.parametrize("name, numpy_code, namespace_code, primals", [
    ("solve", lambda a, b: np.linalg.solve(a, b), lambda a, b: ad.linalg.solve(a, b), (A, B)),
    ("inv", np.linalg.inv, ad.linalg.inv, (A,)),
    ("det", np.linalg.det, ad.linalg.det, (A,)),
    ("slogdet", lambda a: np.linalg.slogdet(a)[1], lambda a: ad.linalg.slogdet(a).logabsdet, (A,)),
    ("eigh", lambda a: np.linalg.eigh(a).eigenvalues, lambda a: ad.linalg.eigh(a).eigenvalues, (SPD,)),
    ("eigvalsh", np.linalg.eigvalsh, ad.linalg.eigvalsh, (SPD,)),
    ("svd", lambda a: np.linalg.svd(a, compute_uv=False), ad.linalg.svdvals, (B,)),
    ("svd vectors", lambda a: np.linalg.svd(a, full_matrices=False)[0] * np.linalg.svd(a, full_matrices=False)[0][:1],
     lambda a: ad.linalg.svd(a, full_matrices=False)[0] * ad.linalg.svd(a, full_matrices=False)[0][:1], (B,)),
    ("qr", lambda a: np.linalg.qr(a)[1], lambda a: ad.linalg.qr(a)[1], (B,)),
    ("cholesky", np.linalg.cholesky, ad.linalg.cholesky, (SPD,)),
    ("norm fro", np.linalg.norm, lambda a: ad.linalg.vector_norm(a), (B,)),
    ("norm nuc", lambda a: np.linalg.norm(a, "nuc"), lambda a: ad.linalg.matrix_norm(a, ord="nuc"), (B,)),
    ("norm axes", lambda a: np.linalg.norm(a, 1, axis=(1, 0), keepdims=True),
     lambda a: ad.linalg.matrix_norm(a.T, ord=1, keepdims=True), (B,)),
    ("pinv", np.linalg.pinv, ad.linalg.pinv, (B,)),
    ("matrix_power", lambda a: np.linalg.matrix_power(a, 3), lambda a: a @ a @ a, (A,)),
    ("multi_dot", lambda a, b: np.linalg.multi_dot([a, a, b]), lambda a, b: a @ a @ b, (A, B)),
    ("trace", lambda a: np.trace(a[None], axis1=1, axis2=2), lambda a: ad.namespace("numpy").linalg.trace(a)[None],
     (A,)),
    ("vdot, inner, outer", lambda a, b: np.vdot(a, a) * np.inner(b, b) + np.outer(a[0], a[1]),
     lambda a, b: ad.namespace().sum(a * a) * (b @ b.T) + a[0][:, None] * a[1], (A, B)),
])
def test_numpy_linalg_and_products(name, numpy_code, namespace_code, primals):
    _same_jvp(numpy_code, namespace_code, primals)


C = rng.standard_normal((2, 3, 4))
IDX = np.array([[2, 0, 1, 1]])


@pytest.mark.parametrize("name, numpy_code, namespace_code", [
    ("cumsum, cumprod", lambda x: (np.cumsum(x), np.cumprod(x, axis=1)),
     lambda x: (ad.namespace().cumulative_sum(ad.namespace().reshape(x, (-1,))),
                ad.namespace().cumulative_prod(x, axis=1))),
    ("prod, amax, std, var", lambda x: (np.prod(x, axis=(0, 2)), np.amax(x, axis=-1), np.std(x, ddof=1), np.var(x, 0)),
     lambda x: (ad.namespace().prod(x, axis=(0, 2)), ad.namespace().max(x, axis=-1),
                ad.namespace().std(x, correction=1), ad.namespace().var(x, axis=0))),
    ("shapes", lambda x: (np.squeeze(x[:1]), np.swapaxes(x, 0, 2), np.moveaxis(x, 0, -1), np.expand_dims(x, 1),
                          np.ravel(x), np.broadcast_to(x[0], (5, 3, 4)), np.stack([x, x], axis=1)),
     lambda x: (x[0], ad.namespace().permute_dims(x, (2, 1, 0)), ad.namespace().permute_dims(x, (1, 2, 0)),
                x[:, None], ad.namespace().reshape(x, (-1,)), ad.namespace().broadcast_to(x[0], (5, 3, 4)),
                ad.namespace().stack([x, x], axis=1))),
    ("flip, roll, tile, repeat", lambda x: (np.flip(x, axis=[0, 2]), np.roll(x, 1, axis=1), np.tile(x, 2),
                                            np.repeat(x, 2)),
     lambda x: (ad.namespace().flip(x, axis=(0, 2)), ad.namespace().roll(x, 1, axis=1),
                ad.namespace().tile(x, (1, 1, 2)), ad.namespace().repeat(ad.namespace().reshape(x, (-1,)), 2))),
    ("triangles, diagonal", lambda x: (np.tril(x, -1), np.triu(x), np.diagonal(x, 1, 1, 2), np.diagonal(x[0])),
     lambda x: (ad.namespace().tril(x, k=-1), ad.namespace().triu(x), ad.namespace().linalg.diagonal(x, offset=1),
                ad.namespace().linalg.diagonal(x[0]))),
    ("take, sort, types", lambda x: (np.take(x, [3, 5]), np.take_along_axis(x[0], IDX, axis=0), np.sort(x, axis=1),
                                     np.real(x), np.imag(x), np.astype(x, np.complex128), np.zeros_like(x) + x),
     lambda x: (ad.namespace().reshape(x, (-1,))[3:6:2], ad.namespace().take_along_axis(x[0], IDX, axis=0),
                ad.namespace().sort(x, axis=1), ad.namespace().real(x), ad.namespace().imag(x),
                ad.namespace().astype(x, np.complex128), x)),
])
def test_numpy_spellings(name, numpy_code, namespace_code):
    _same_jvp(numpy_code, namespace_code, (C,))


def test_ufunc_methods():
    _same_jvp(lambda x: (np.add.reduce(x), np.maximum.reduce(x, axis=None), np.multiply.reduce(x, axis=1)),
              lambda x: (ad.namespace().sum(x, axis=0), ad.namespace().max(x), ad.namespace().prod(x, axis=1)), (B,))
    _same_jvp(lambda x: (np.add.accumulate(x), np.subtract.outer(x[0], x[:, 0])),
              lambda x: (ad.namespace().cumulative_sum(x, axis=0), x[0][:, None] - x[:, 0]), (B,))


def test_operators_with_a_numpy_array_on_the_left():
    def f(x):
        return np.ones(3) + x, A[:3, :3] @ x, 2.0 ** x, A[0, :3] * x, (A[0, :3] < x) * x

    def g(x):
        return x + np.ones(3), ad.linalg.solve(np.eye(3), A[:3, :3] @ x), np.exp(np.log(2.0) * x), x * A[0, :3], \
            (x > A[0, :3]) * x

    _same_jvp(f, g, (B[0],))
    value, _ = ad.jvp(lambda x: np.ones(3) + x, (B[0],), (None,))
    assert isinstance(value, np.ndarray)


def test_nested_jvp_through_numpy_functions():
    x = np.linspace(0.1, 1.0, 5)
    d2 = ad.jvp(lambda y: ad.jvp(np.sin, (y,), (np.ones_like(y),))[1], (x,), (np.ones_like(x),))[1]
    np.testing.assert_allclose(d2, -np.sin(x), rtol=1e-14)


@pytest.mark.parametrize("call, message", [
    (lambda x: np.sin(x, out=np.empty(3)), r"np.sin\(..., out=...\) cannot write into an array.*xp.sin"),
    (lambda x: np.add(x, 1.0, where=x > 0), r"np.add\(..., where=...\).*xp.where\(mask, xp.add"),
    (lambda x: np.exp(x, dtype=np.float32), r"np.exp\(..., dtype=...\) is not supported.*xp.exp"),
    (lambda x: np.add.at(x, [0], 1.0), r"np.add.at has no equivalent"),
    (lambda x: np.cbrt(x), r"np.cbrt has no equivalent.*x.__array_namespace__\(\)"),
    (lambda x: np.einsum("i,i", x, x), r"np.einsum has no equivalent"),
    (lambda x: np.sum(x, where=x > 0), r"np.sum\(..., where=...\) is not supported.*xp.sum"),
    (lambda x: np.reshape(x, (3, 1), order="F"), r"np.reshape\(..., order=...\)"),
    (lambda x: np.linalg.eig(x[:, None] * x), r"np.linalg.eig has no equivalent"),
])
def test_what_has_no_equivalent_is_refused_clearly(call, message):
    with pytest.raises(TypeError, match=message):
        ad.jvp(call, (np.ones(3),), (np.ones(3),))


def test_in_place_numpy_operator_is_refused_clearly():
    def f(x):
        acc = np.zeros(3)
        acc += x
        return acc

    with pytest.raises(TypeError, match="cannot write into an array"):
        ad.jvp(f, (np.ones(3),), (np.ones(3),))


def test_numpy_functions_on_duals_of_every_backend(backend):
    x = backend.random((3,))

    def f(x):
        if isinstance(x, ad.Dual):  # (check_jvp's finite differences call f on raw arrays too)
            # CuPy reads __array_ufunc__ on the instance: None keeps its operators deferring to the dual
            assert callable(x.__array_ufunc__) if backend.name == "numpy" else x.__array_ufunc__ is None
        return np.sin(x) * np.sum(x ** 2)

    ad.check_jvp(f, (x,))
    value, slope = ad.jvp(f, (x,), (x,))
    assert type(value) is type(x) and type(slope) is type(x)  # the backend's arrays, through its namespace


@pytest.mark.parametrize("attribute, hint", [
    ("sum", r"use xp.sum\(x\), xp = x.__array_namespace__\(\)"), ("reshape", r"use xp.reshape\(x, shape\)"),
    ("astype", r"use xp.astype\(x, dtype\)"), ("transpose", r"use xp.permute_dims"), ("conj", r"use xp.conj\(x\)"),
    ("flatten", r"use xp.reshape\(x, \(-1,\)\)"), ("strides", "use the array namespace"),
])
def test_numpy_only_methods_name_the_namespace_function(backend, attribute, hint):
    def f(x):
        with pytest.raises(NoArrayMethodError, match=f"no method or attribute '{attribute}': {hint}"):
            getattr(x, attribute)
        return x

    ad.jvp(f, (backend.random((2, 2)),), (None,))


def test_missing_attributes_stay_attribute_errors():
    x = ad.Dual(1, np.ones(2), np.ones(2))
    assert issubclass(NoArrayMethodError, AttributeError)
    assert not hasattr(x, "sum") and not hasattr(x, "__array_interface__") and getattr(x, "flags", None) is None
    for twin in (copy.copy(x), copy.deepcopy(x), pickle.loads(pickle.dumps(x))):
        assert type(twin) is ad.Dual and twin.level == 1 and np.array_equal(twin.tangent, x.tangent)


def test_scipy_code_calling_numpy_ufuncs():
    special = pytest.importorskip("scipy.special")
    x = np.linspace(-3.0, 3.0, 7)
    ad.check_jvp(special.softplus, (x,))  # np.logaddexp(0, x)
    _, slope = ad.jvp(special.softplus, (x,), (np.ones_like(x),))
    np.testing.assert_allclose(slope, 1 / (1 + np.exp(-x)), rtol=1e-14)  # softplus' = the logistic sigmoid


def test_scipy_special_ufuncs_run_the_namespace_special_functions():
    special = pytest.importorskip("scipy.special")
    x = np.linspace(0.2, 2.0, 6)

    def scipy_code(x):
        return special.erf(x) * special.xlogy(x, x + 1.0) + special.gammaln(x)

    def namespace_code(x):
        xp = x.__array_namespace__()
        return xp.special.erf(x) * xp.special.xlogy(x, x + 1.0) + xp.special.gammaln(x)

    _same_jvp(scipy_code, namespace_code, (x,))
    with pytest.raises(TypeError, match=r"scipy.special.erf\(..., out=...\).*xp.special.erf"):
        ad.jvp(lambda x: special.erf(x, out=np.empty(6)), (x,), (x,))


def _filled_diagonal(x):
    a = np.zeros((3, 3))
    np.fill_diagonal(a, x[0])  # NumPy's dispatch looks at a only: x is converted inside it
    return a


def _copied(x):
    np.copyto(np.zeros(3), x)
    return x


@pytest.mark.parametrize("f", [_filled_diagonal, _copied])
def test_numpy_writers_name_the_fix(f):
    """np.fill_diagonal(plain, traced) got the generic conversion error (and np.copyto 'has no equivalent')
    under jvp and vmap; now the refusal says it writes into an array and names the namespace's way."""
    message = r"np\.(fill_diagonal|copyto) writes into an array in place.*xp.where\(mask, value, a\)"
    with pytest.raises(TypeError, match=message):
        ad.jvp(f, (np.ones(3),), (np.ones(3),))
    with pytest.raises(TypeError, match=message):
        ad.vmap(f)(np.ones((2, 3)))
    if f is _filled_diagonal:  # (jit's own refusal of np.copyto on its traced value stays)
        with pytest.raises(TypeError, match=message):
            ad.jit(f)(np.ones(3))
    np.testing.assert_array_equal(ad.jvp(_filled_diagonal, (np.ones(3),), (None,))[0], np.eye(3))  # no tangent
