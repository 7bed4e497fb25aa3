"""jit as a demanding user meets it (a new user's trial): array-API code written by others and the
edge cases of the compiled path, each against the eager call (``_assert_identical``: bit for bit on
NumPy, within rounding on CuPy)."""
import numpy as np
import pytest
from test_jit import _assert_identical

import cupy_ad as ad


def test_an_array_without_a_trace_indexed_by_a_traced_key(backend):
    """Under a jvp or jacfwd inside jit, a constant's primal and a rule's zeros are raw arrays: indexed by
    a traced mask or index (``d[x > 0] = x[x > 0]`` on zeros, scikit-learn's ridge ``d[idx] = ...``)
    NumPy converted the key and the recording refused it; the index is now a step of the program."""
    ns = backend.ns
    w = backend.asarray([[0.5, 1.5, -2.0, 3.0], [4.0, 5.0, 6.0, 7.0]])

    def masked(x):
        d = ns.zeros(4, dtype=x.dtype)
        d[x > 0] = x[x > 0] * 2.0
        return d

    def gathered(x):
        return ns.asarray(w)[1, ...][x > 0] * ns.sum(x) + ns.asarray(w)[0, ...][ns.argmax(x)]

    for x in (backend.asarray([1.0, -1.0, 2.0, -3.0]), backend.asarray([-1.0, 1.0, 1.0, 3.0])):
        t = backend.asarray([0.5, 1.0, -2.0, 1.5])
        for f in (masked, gathered):
            _assert_identical(backend, ad.jvp(ad.jit(f), (x,), (t,)), ad.jvp(f, (x,), (t,)))
            _assert_identical(backend, ad.jit(lambda x, t: ad.jvp(f, (x,), (t,)))(x, t), ad.jvp(f, (x,), (t,)))
            if f is gathered or backend.name != "array_api_strict":  # (eager jacfwd of a masked write builds
                _assert_identical(backend, ad.jacfwd(ad.jit(f))(x), ad.jacfwd(f)(x))  # a key strict refuses)


def test_a_number_read_from_a_constant_of_the_program(backend):
    """``int()``, ``float()`` and ``operator.index`` of a value computed from no input (SciPy's ``lmoment``:
    ``int(xp.max(order))`` of its default orders) are the same in every replay: they convert (they were
    refused like a number read from an input); one read from an input is still refused."""
    ns = backend.ns

    def f(x):
        orders = ns.asarray([1, 4, 2])
        n = int(ns.max(orders))
        return x[:n] * float(ns.sum(ns.ones(3))) + ns.ones(3)[ns.max(orders) - 3]

    x, t = backend.asarray([0.5, -1.0, 2.0, 3.0, 4.0]), backend.asarray([1.0, 2.0, 3.0, 4.0, 5.0])
    for x_ in (x, x * 2.0):
        _assert_identical(backend, ad.jit(f)(x_), f(x_))
        _assert_identical(backend, ad.jvp(ad.jit(f), (x_,), (t,)), ad.jvp(f, (x_,), (t,)))
    with pytest.raises(TypeError, match="number read from an array"):
        ad.jit(lambda x: x * float(ns.sum(x)))(x)


def test_a_constant_converted_to_numpy_is_read_only():
    """``np.asarray`` of a constant of the program gave the recording's own array: a write into it (after a step
    had read it) changed what every replay computes (``x * c`` replayed as ``7 x`` where f computed ``x``). It is a
    read-only view now (a write raises, as it cannot be replayed); ``np.array`` copies, as eagerly."""
    def f(x, write):
        c = x.__array_namespace__().ones(3)
        y = x * c
        a = np.asarray(c)
        if write:
            a[:] = 7.0
        return y + float(np.array(c).sum()) + a[0]

    x = np.array([1.0, -2.0, 3.0])
    jitted = ad.jit(f, static_argnums=1)
    for x_ in (x, 2.0 * x):
        np.testing.assert_array_equal(jitted(x_, False), f(x_, False))
    with pytest.raises(ValueError, match="read-only"):
        jitted(x, True)


def test_complex_products_are_not_commuted(backend):
    """NumPy's complex multiplication rounds ``a * b`` and ``b * a`` differently (its SIMD loops contract
    one product of the imaginary part with an FMA: a third of random pairs differ). The replay's common
    subexpressions let ``b * a`` reuse ``a * b``, so the jvp of ``a * a`` (``t * a + a * t``) replayed as
    ``2 (t * a)``: not bit for bit the eager result the README promises. Complex products keep their order."""
    rng = np.random.default_rng(0)
    a = backend.asarray(rng.standard_normal((8, 8)) + 1j * rng.standard_normal((8, 8)))
    t = backend.asarray(rng.standard_normal((8, 8)) + 1j * rng.standard_normal((8, 8)))

    def f(a):
        return a * a + 1.0 / (1.0 + a * a)

    jitted = ad.jit(lambda a, t: ad.jvp(f, (a,), (t,)))
    for scale in (1.0, 3.0, -0.5):
        _assert_identical(backend, jitted(a * scale, t), ad.jvp(f, (a * scale,), (t,)))


def test_an_unhashable_value_of_the_signature_is_named_with_the_fix(backend):
    """The error named neither the argument nor what to pass instead."""
    x = backend.asarray([1.0, 2.0])
    with pytest.raises(TypeError, match=r"static argument 1 \(list\) .* pass a tuple for a list"):
        ad.jit(lambda x, n: x * len(n), static_argnums=1)(x, [1, 2])
    with pytest.raises(TypeError, match=r"a Python value among the arguments \(set\) .* or an array as an ordinary"):
        ad.jit(lambda x, n: x * len(n))(x, {1, 2})
    assert backend.to_numpy(ad.jit(lambda x, n: x * len(n), static_argnums=1)(x, (1, 2))).tolist() == [2.0, 4.0]


def test_a_traced_value_written_into_a_numpy_array_names_the_fix():
    """``z = np.zeros(3); z[0] = x[0]`` (a NumPy habit): NumPy calls float() on x[0] and raises its own
    ValueError ("setting an array element with a sequence") from our TypeError, whose advice was about
    arithmetic; it now names the write and its fix, which replays as eagerly."""
    x = np.arange(1.0, 4.0)

    def numpy_habit(x):
        z = np.zeros(3)
        z[0] = x[0]
        return z

    with pytest.raises((TypeError, ValueError)) as raised:
        ad.jit(numpy_habit)(x)
    error = raised.value if isinstance(raised.value, TypeError) else raised.value.__cause__
    assert "written into a NumPy array, z[i] = x: make z with xp.zeros" in str(error)

    def fixed(x):
        z = x.__array_namespace__().zeros(3)
        z[0] = x[0]
        return z

    np.testing.assert_array_equal(ad.jit(fixed)(x), [1.0, 0.0, 0.0])


def test_an_empty_index_under_vmap(backend):
    """``vals[()]`` (SciPy's skew, kurtosis and variation end with it) under vmap: the batching rule read
    ``key[0]`` of the empty tuple (IndexError); it is the whole example, as eagerly."""
    ns = backend.ns
    x = backend.asarray(np.arange(12.0).reshape(3, 4) / 5.0)

    def f(a):
        return ns.sum(a * a)[()] + a[0]

    want = backend.to_numpy(ns.stack([f(x[k, ...]) for k in range(3)]))
    for mapped in (ad.vmap(f), ad.vmap(ad.jit(f)), ad.jit(ad.vmap(f))):
        np.testing.assert_array_equal(backend.to_numpy(mapped(x)), want)



def test_python_control_flow_on_a_value_shared_by_all_examples_under_vmap(backend):
    """``bool()``, ``int()`` and ``float()`` of an unmapped value (a constant made in ``f``: SciPy's
    ``lmoment`` checks ``xp.any(order <= 0)`` and reads ``int(xp.max(order))`` of its default orders) were
    refused like those of a mapped one; the value is the same for every example, so they answer. A mapped
    value is still refused."""
    ns = backend.ns
    x = backend.asarray(np.arange(12.0).reshape(3, 4) / 5.0)

    def f(a):
        orders = ns.asarray([1, 3])
        if ns.any(orders <= 0):
            raise ValueError("orders must be positive")
        return a[:int(ns.max(orders))] * float(ns.sum(ns.ones(2)))

    want = backend.to_numpy(ns.stack([f(x[k, ...]) for k in range(3)]))
    for mapped in (ad.vmap(f), ad.vmap(ad.jit(f)), ad.jit(ad.vmap(f))):
        np.testing.assert_array_equal(backend.to_numpy(mapped(x)), want)
    with pytest.raises(TypeError, match="bool\\(\\) of a value inside vmap"):
        ad.vmap(lambda a: a * 2 if ns.sum(a) > 0 else a)(x)


def test_a_branch_in_a_scan_body_spends_the_programs_of_a_jitted_whole_and_the_error_says_what_to_jit(backend):
    """jit of a function whose scan body branches on values records a guard per step: each pattern of
    outcomes is a program, and random inputs spend the 8 at once. The error now names the remedy, which
    holds: scan(jit(body)) replays two programs whatever the pattern."""
    ns = backend.ns
    rng = np.random.default_rng(0)

    def body(h, x):
        h = ns.tanh(h + x)
        if ns.sum(h) > 0:
            h = h * 0.5
        return h, ns.sum(h)

    whole = ad.jit(lambda h, xs: ad.scan(body, h, xs))
    h0 = backend.asarray(np.zeros(3))
    with pytest.raises(RuntimeError, match=r"scan\(jit\(body\)\)"):
        for _ in range(40):
            whole(h0, backend.asarray(rng.standard_normal((12, 3))))
    jitted_body = ad.jit(body)
    for _ in range(10):
        xs = backend.asarray(rng.standard_normal((12, 3)))
        _assert_identical(backend, ad.scan(jitted_body, h0, xs), ad.scan(body, h0, xs))
    assert [len(programs) for programs in jitted_body.cache.values()] == [2]
