"""jacfwd and hessian: against finite differences, against JAX, pytrees, and one factorisation per
point whatever the number of directions (kernel calls counted)."""
import numpy as np
import pytest

import cupy_ad as ad


def _fd_jacobian(f, x, step=1e-6):
    """Central differences of a NumPy function, shape out.shape + x.shape."""
    x = np.asarray(x, dtype=float)
    columns = []
    for k in range(x.size):
        e = np.zeros(x.size)
        e[k] = step
        e = e.reshape(x.shape)
        columns.append((np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * step))
    out_shape = np.shape(columns[0])
    return np.moveaxis(np.stack(columns), 0, -1).reshape(*out_shape, *x.shape)


def _sym(ns, a):
    return a + a.mT


FUNCTIONS = {  # name -> (f(ns, x), shape of x)
    "elementwise": (lambda ns, x: ns.sin(x) * ns.exp(x[::-1]) + x ** 3, (4,)),
    "matrix": (lambda ns, x: (x @ x.mT)[..., 1:] / (1.0 + ns.sum(x * x)), (3, 2)),
    "eigvalsh": (lambda ns, x: ad.linalg.eigvalsh(_sym(ns, x)), (3, 3)),
    "eigh_vectors": (lambda ns, x: _gauged(ns, ad.linalg.eigh(_sym(ns, x)).eigenvectors), (3, 3)),
    "lu_factor": (lambda ns, x: ad.linalg.lu_factor(x)[0], (3, 3)),
    "qr": (lambda ns, x: ad.linalg.qr(x).R, (4, 3)),
    "svdvals": (lambda ns, x: ad.linalg.svdvals(x), (3, 4)),
    "solve_det": (lambda ns, x: ad.linalg.solve(x, x[:, 0]) * ad.linalg.det(x), (3, 3)),
    "cholesky": (lambda ns, x: ad.linalg.cholesky(x @ x.mT + 2.0 * ns.eye(3)), (3, 3)),
}


def _gauged(ns, v):
    return v * ns.sign(v[..., :1, :])


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_jacfwd_matches_finite_differences(backend, name):
    fn, shape = FUNCTIONS[name]
    ns = backend.ns
    x = backend.random(shape, seed=3) + (backend.asarray(3.0 * np.eye(*shape)) if len(shape) == 2 else 0.0)
    jac = ad.jacfwd(lambda a: fn(ns, a))(x)
    out = fn(ns, x)
    assert tuple(jac.shape) == tuple(out.shape) + shape
    numpy_f = lambda a: backend.to_numpy(fn(ns, backend.asarray(a)))  # noqa: E731
    np.testing.assert_allclose(backend.to_numpy(jac), _fd_jacobian(numpy_f, backend.to_numpy(x)), rtol=1e-5,
                               atol=1e-6)


def test_pytrees_argnums_and_aux(backend):
    ns = backend.ns
    x, y = backend.random((2,)), backend.random((3,), seed=1)

    def f(a, d):
        return {"u": ns.sum(a) * d["y"], "v": a * d["s"]}, ns.sum(a)

    jac, aux = ad.jacfwd(f, argnums=(0, 1), has_aux=True)(x, {"y": y, "s": backend.asarray(2.0)})
    np.testing.assert_allclose(backend.to_numpy(aux), backend.to_numpy(ns.sum(x)))
    du_dx, du_dd = jac["u"]
    assert tuple(du_dx.shape) == (3, 2) and tuple(du_dd["y"].shape) == (3, 3) and tuple(du_dd["s"].shape) == (3,)
    np.testing.assert_allclose(backend.to_numpy(du_dx), np.outer(backend.to_numpy(y), np.ones(2)))
    np.testing.assert_allclose(backend.to_numpy(du_dd["y"]), np.eye(3) * float(backend.to_numpy(ns.sum(x))))
    np.testing.assert_allclose(backend.to_numpy(jac["v"][1]["s"]), backend.to_numpy(x))
    with pytest.raises(TypeError, match="floating-point"):
        ad.jacfwd(lambda n: n * 2)(backend.asarray(np.arange(3)))


def test_hessian_matches_finite_differences_of_the_gradient(backend):
    ns = backend.ns
    base = backend.random((3, 3), seed=5)
    spd = base @ base.mT + 3.0 * ns.eye(3)

    def f(p):  # a log-determinant and an eigenvalue of A(p): every rule's second order
        a = p[0] * base + p[1] * base.mT + p[2] * ns.eye(3) + spd
        return ad.linalg.slogdet(a)[1] + ad.linalg.eigvalsh(_sym(ns, a))[-1]

    p = backend.asarray([0.1, -0.2, 0.3])
    hess = backend.to_numpy(ad.hessian(f)(p))
    gradient = lambda q: backend.to_numpy(ad.jacfwd(f)(backend.asarray(q)))  # noqa: E731
    np.testing.assert_allclose(hess, _fd_jacobian(gradient, backend.to_numpy(p)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(hess, hess.T, rtol=1e-10, atol=1e-12)
    nested = ad.jacfwd(ad.jacfwd(ad.jacfwd(lambda q: ns.sum(ns.sin(q) * q[0]))))(p)  # third order
    assert tuple(nested.shape) == (3, 3, 3)


def test_against_jax(backend):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    ns = backend.ns
    rng = np.random.default_rng(0)
    a0, a1 = rng.standard_normal((2, 4, 4))
    p = np.array([0.3, -0.7])

    def ours(q):
        a = q[0] * backend.asarray(a1 + a1.T) + q[1] * ns.eye(4) + backend.asarray(a0 + a0.T)
        return ad.linalg.eigvalsh(a) + ns.sum(ns.tanh(q)) * ad.linalg.slogdet(a @ a + ns.eye(4))[1]

    def theirs(q):
        a = jnp.asarray(a0 + a0.T) + q[0] * (a1 + a1.T) + q[1] * jnp.eye(4)
        return jnp.linalg.eigvalsh(a) + jnp.sum(jnp.tanh(q)) * jnp.linalg.slogdet(a @ a + jnp.eye(4))[1]

    np.testing.assert_allclose(backend.to_numpy(ad.jacfwd(ours)(backend.asarray(p))),
                               np.asarray(jax.jit(jax.jacfwd(theirs))(p)), rtol=1e-10, atol=1e-12)
    scalar_ours = lambda q: ns.sum(ns.sin(q) ** 2 * q[0])  # noqa: E731
    scalar_theirs = lambda q: jnp.sum(jnp.sin(q) ** 2 * q[0])  # noqa: E731
    np.testing.assert_allclose(backend.to_numpy(ad.hessian(scalar_ours)(backend.asarray(p))),
                               np.asarray(jax.jit(jax.hessian(scalar_theirs))(p)), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kernel, f", [
    ("eigh", lambda a: ad.linalg.eigvalsh(a + a.mT)),
    ("lu_factor", lambda a: ad.linalg.lu_factor(a)[0]),
    ("svd", lambda a: ad.linalg.svd(a, full_matrices=False).S),
    ("qr", lambda a: ad.linalg.qr(a).Q),
])
def test_one_factorisation_for_any_number_of_directions(backend, monkeypatch, kernel, f):
    kernels = ad.namespace(backend.name).backend
    calls = []
    original = getattr(kernels, kernel)

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(kernels, kernel, counted)
    a = backend.random((5, 5), seed=2) + backend.asarray(4.0 * np.eye(5))
    jac = ad.jacfwd(f)(a)  # 25 directions
    assert tuple(jac.shape[-2:]) == (5, 5)
    assert calls == [(5, 5)], calls
    # second order: as many calls for 25 x 25 directions as for one pair of directions
    g = lambda x: backend.ns.sum(f(x))  # noqa: E731
    calls.clear()
    t = backend.random((5, 5), seed=7)
    ad.jvp(lambda x: ad.jvp(g, (x,), (t,))[1], (a,), (t,))
    per_pair = len(calls)
    calls.clear()
    ad.hessian(g)(a)
    assert len(calls) == per_pair, calls


def test_vmap_of_jacfwd_and_jacfwd_of_vmap(backend):
    """Jacobians at many points (the points batched under the directions: the swap of levels) and the
    Jacobian of a mapped function, against loops; the inputs are left as they were."""
    ns = backend.ns
    f = lambda a: ad.linalg.eigvalsh(_sym(ns, a)) * ns.sum(a)  # noqa: E731
    points = backend.random((3, 3, 3), seed=4)
    copy = backend.to_numpy(points).copy()
    jacobians = ad.vmap(ad.jacfwd(f))(points)
    for k in range(3):
        one = ad.jacfwd(f)(backend.asarray(backend.to_numpy(points)[k]))
        np.testing.assert_allclose(backend.to_numpy(jacobians)[k], backend.to_numpy(one), rtol=1e-9, atol=1e-12)
    mapped = ad.jacfwd(ad.vmap(f))(points)  # (3, 3) outputs by (3, 3, 3) inputs: block diagonal in the batch
    for k in range(3):
        np.testing.assert_allclose(backend.to_numpy(mapped)[k, :, k], backend.to_numpy(jacobians)[k], rtol=1e-9,
                                   atol=1e-12)
    np.testing.assert_array_equal(backend.to_numpy(points), copy)


def test_repeated_eigenvalues_have_no_jacobian(backend):
    """At repeated eigenvalues eigh's derivative is one-sided and not linear: jacfwd refuses, saying why."""
    with pytest.raises(TypeError, match="repeated eigen/singular values"):
        ad.jacfwd(ad.linalg.eigvalsh)(backend.asarray(np.eye(3)))


def test_bad_argnums_and_aux_are_refused_and_keywords_pass_through(backend):
    """A repeated argnum used to drop its first block of directions (zeros) and a non-pair has_aux output
    was split silently; keyword arguments are passed to f undifferentiated, as in JAX."""
    ns = backend.ns
    x, y = backend.random((3,)), backend.random((3,), seed=1)
    copy = backend.to_numpy(x).copy()
    with pytest.raises(ValueError, match=r"argnums \(0, 0\) names an argument twice"):
        ad.jacfwd(lambda a, b: a * b, argnums=(0, 0))(x, y)
    with pytest.raises(ValueError, match="argnums is empty"):
        ad.jacfwd(lambda a, b: a * b, argnums=())(x, y)
    with pytest.raises(TypeError, match="argnums must be an int or a tuple of ints, got 0.0"):
        ad.jacfwd(lambda a: a, argnums=0.0)(x)
    with pytest.raises(TypeError, match="has_aux=True f must return a pair.*got tuple of length 3"):
        ad.jacfwd(lambda a: (a, a, a), has_aux=True)(x)
    with pytest.raises(TypeError, match="has_aux=True f must return a pair"):
        ad.jacfwd(ns.sin, has_aux=True)(x)
    jac = ad.jacfwd(lambda a, scale=1.0: a * scale)(x, scale=y)
    np.testing.assert_array_equal(backend.to_numpy(jac), np.diag(backend.to_numpy(y)))
    hess = ad.hessian(lambda a, scale=1.0: ns.sum(a ** 3) * scale)(x, scale=2.0)
    np.testing.assert_allclose(backend.to_numpy(hess), np.diag(12.0 * copy), rtol=1e-14)
    np.testing.assert_array_equal(backend.to_numpy(x), copy)


def test_the_jacobian_of_a_linear_map_is_an_array_of_its_own(backend):
    """Where f passes the basis through (identity, slices, reshapes) the Jacobian was NumPy's read-only,
    self-overlapping view of one vector: writing into it raised."""
    x = backend.random((3,))
    for f, want in ((lambda a: a, np.eye(3)), (lambda a: a[1:], np.eye(3)[1:]),
                    (lambda a: backend.ns.reshape(a, (3, 1)), np.eye(3)[:, None, :])):
        jac = ad.jacfwd(f)(x)
        jac[(0,) * jac.ndim] = 5.0
        want = want.copy()
        want[(0,) * want.ndim] = 5.0
        np.testing.assert_array_equal(backend.to_numpy(jac), want)


def test_complex_inputs_need_holomorphic_as_in_jax(backend):
    """A complex input used to get the real basis only, silently: jacfwd(conj) gave the identity. Now
    refused unless holomorphic=True, which gives the complex derivative (against a complex difference
    quotient, and the Hessian against the second derivative); hessian takes has_aux as JAX's."""
    ns = backend.ns
    z = backend.asarray(np.array([1 + 2j, 0.5 - 1j]))
    with pytest.raises(TypeError, match=r"args\[0\] has dtype .*complex128.*needs holomorphic=True"):
        ad.jacfwd(ns.conj)(z)
    with pytest.raises(TypeError, match="holomorphic=True takes complex inputs only"):
        ad.jacfwd(ns.sin, holomorphic=True)(ns.real(z))
    with pytest.raises(TypeError, match="holomorphic=True needs complex outputs"):
        ad.jacfwd(ns.abs, holomorphic=True)(z)
    z_np, step = backend.to_numpy(z), 1e-7j  # holomorphic: the same quotient along any complex step
    jac = backend.to_numpy(ad.jacfwd(lambda a: ns.sin(a) * a, holomorphic=True)(z))
    fd = [(np.sin(z_np + step * e) * (z_np + step * e) - np.sin(z_np - step * e) * (z_np - step * e)) / (2 * step)
          for e in np.eye(2)]
    np.testing.assert_allclose(jac, np.stack(fd, axis=-1), rtol=1e-8)
    hess = backend.to_numpy(ad.hessian(lambda a: ns.sum(ns.sin(a) * a), holomorphic=True)(z))
    np.testing.assert_allclose(hess, np.diag(2 * np.cos(z_np) - z_np * np.sin(z_np)), rtol=1e-12)
    x = backend.random((3,))
    hess, aux = ad.hessian(lambda a: (ns.sum(a ** 3), a * 2.0), has_aux=True)(x)
    np.testing.assert_allclose(backend.to_numpy(hess), np.diag(6.0 * backend.to_numpy(x)), rtol=1e-13)
    np.testing.assert_array_equal(backend.to_numpy(aux), 2.0 * backend.to_numpy(x))


def test_empty_inputs(backend):
    """An input with no entries has a Jacobian with no entries, as in JAX (NumPy's basis view raised
    "negative dimensions"); argnums naming no array is refused by name (the message spoke of vmap)."""
    ns = backend.ns
    assert tuple(ad.jacfwd(lambda a: ns.sum(a) + 1.0)(ns.zeros((0,))).shape) == (0,)
    assert tuple(ad.hessian(lambda a: ns.sum(a ** 2))(ns.zeros((0,))).shape) == (0, 0)
    jac = ad.jacfwd(lambda a, b: a * b[0], argnums=(0, 1))(ns.zeros((0,)), backend.random((2,)))
    assert [tuple(j.shape) for j in jac] == [(0, 0), (0, 2)]
    with pytest.raises(ValueError, match="argnums 1 names hold no arrays"):
        ad.jacfwd(lambda a, b: a, argnums=1)(ns.zeros((2,)), None)


def test_python_float_inputs_as_jax(backend):
    """A Python float is a 0-d input (it was refused), weakly typed in f as in jvp: float32 work stays float32;
    the basis lives on the backend of the other arguments."""
    ns = backend.ns
    np.testing.assert_allclose(backend.to_numpy(ad.jacfwd(ns.sin)(1.0)), np.cos(1.0), rtol=1e-15)
    np.testing.assert_allclose(backend.to_numpy(ad.hessian(lambda s: ns.sin(s) * s)(1.0)),
                               2 * np.cos(1.0) - np.sin(1.0), rtol=1e-14)
    x32 = backend.asarray(np.ones(2, np.float32))
    assert ad.jacfwd(lambda s, x: s * x)(2.0, x32).dtype == x32.dtype  # (x an argument: the basis on its backend)
    x = backend.random((2,))
    jac_x, jac_s = ad.jacfwd(lambda a, s: a * s, argnums=(0, 1))(x, 3.0)
    np.testing.assert_array_equal(backend.to_numpy(jac_x), 3.0 * np.eye(2))
    np.testing.assert_array_equal(backend.to_numpy(jac_s), backend.to_numpy(x))
    with pytest.raises(TypeError, match=r"args\[0\] must be a floating-point array or a Python float.*got int"):
        ad.jacfwd(ns.sin)(1)
