"""jvp's contract: pytrees, symbolic zeros, nesting, the namespace protocol and bad input."""
from collections import namedtuple

import numpy as np
import pytest
from array_api_compat import array_namespace

import cupy_ad as ad
from cupy_ad.namespace import elementwise

Pair = namedtuple("Pair", "left right")


def test_array_namespace_of_a_dual_is_ours(backend):
    seen = []

    def f(x):
        xp = array_namespace(x)
        seen.append(xp)
        return xp.sum(xp.exp(x) * x, axis=0)

    ad.check_jvp(f, (backend.random((3, 2)),))
    assert seen[0] is ad.namespace(backend.name)
    assert seen[0] is ad.namespace(backend.xp)


def test_dual_attributes_follow_the_backend(backend):
    x = backend.random((2, 3))

    def f(a):
        assert a.shape == (2, 3) and a.ndim == 2 and a.dtype == x.dtype and a.size == 6
        assert a.device == x.device
        assert a.T.shape == (3, 2) and a.mT.shape == (3, 2)
        return -a + (+a) * 2 - a / 3 + a ** 2 + 2 ** a + 1 - a @ a.T @ a

    ad.check_jvp(f, (x,))


def test_pytrees_in_and_out(backend):
    x, y, z = backend.random((3,)), backend.random((3,), seed=1), backend.random((2,), seed=2)

    def f(pair, d, lst):
        ns = array_namespace(pair.left)
        return {"a": pair.left * d["w"], "b": [ns.sin(pair.right), lst[0] @ lst[0]]}, Pair(d["w"], lst[0])

    primals = (Pair(x, y), {"w": y}, [z])
    ad.check_jvp(f, primals)
    out, tangents = ad.jvp(f, primals, (Pair(x, None), {"w": ad.Zero}, [z]))
    assert isinstance(out[1], Pair) and isinstance(tangents[1], Pair)
    np.testing.assert_allclose(backend.to_numpy(tangents[0]["b"][0]), 0.0)
    np.testing.assert_allclose(backend.to_numpy(tangents[0]["a"]), backend.to_numpy(x) * backend.to_numpy(y))


def test_none_tangent_for_a_whole_subtree(backend):
    x = backend.random((3,))
    out, t = ad.jvp(lambda p, q: p * q[0] * q[1], (x, (x, x)), (x, None))
    np.testing.assert_allclose(backend.to_numpy(t), backend.to_numpy(x) ** 3)


def test_zero_tangents_are_concrete_for_float_outputs_and_symbolic_for_integers(backend):
    x = backend.random((4,))
    ns = backend.ns
    out, t = ad.jvp(lambda a: (a * 2.0, ns.argmax(a), a > 0), (x,), (None,))
    assert backend.to_numpy(t[0]).shape == (4,) and not np.any(backend.to_numpy(t[0]))
    assert isinstance(t[1], ad.Zero) and isinstance(t[2], ad.Zero)
    assert t[2].shape == (4,)


def test_symbolic_zero_spends_no_tangent_work_on_y(backend, monkeypatch):
    """f(x, y) with y's tangent Zero: no rule ever runs on y's work, and the rules that do run see
    exactly one nonzero tangent (x's). Every primitive of the namespace is counted."""
    from cupy_ad.core import Primitive
    from cupy_ad.namespace import indexing, manipulation, products, reductions

    seen = []
    primitives = {id(p): p for module in (elementwise, reductions, manipulation, products, indexing)
                  for p in vars(module).values() if isinstance(p, Primitive)}
    for prim in primitives.values():
        def counting(primals, tangents, rule=prim.jvp, name=prim.name, **params):
            seen.append((name, sum(type(t) is not ad.Zero for t in tangents)))
            return rule(primals, tangents, **params)

        monkeypatch.setattr(prim, "jvp", counting)
    x, y = backend.random((3,)), backend.random((3,), seed=1)

    def f(a, b):
        ns = array_namespace(a)
        b2 = ns.exp(b) * b  # y alone: no rule runs at all
        return ns.sum(a * b2 * ns.sin(b))

    _, t = ad.jvp(f, (x, y), (x, ad.Zero))
    assert seen == [("multiply", 1), ("multiply", 1), ("sum", 1)]
    x_, y_ = backend.to_numpy(x), backend.to_numpy(y)
    np.testing.assert_allclose(backend.to_numpy(t), np.sum(x_ * np.exp(y_) * y_ * np.sin(y_)))


def _second_derivative_check(f, x):
    """jvp of (x -> jvp(f)(x)) matches finite differences of the first derivative."""
    def first(a):
        return ad.jvp(f, (a,), (a * 0.0 + 1.0,))[1]

    ad.check_jvp(first, (x,))


@pytest.mark.parametrize("case", ["sin", "exp", "matmul", "composite"])
def test_nested_jvp_second_derivatives(backend, case):
    x = backend.random((3, 3))
    functions = {
        "sin": lambda a: array_namespace(a).sin(a),
        "exp": lambda a: array_namespace(a).exp(a),
        "matmul": lambda a: a @ a @ a,
        "composite": lambda a: array_namespace(a).sum(array_namespace(a).tanh(a @ a) / (1.0 + a * a), axis=1),
    }
    _second_derivative_check(functions[case], x)


def test_nested_jvp_exact_values(backend):
    """d^2/dx^2 sin(x) = -sin(x), with a closed-over outer dual (no perturbation confusion)."""
    x = backend.random((5,))
    ones = backend.asarray(np.ones(5))

    def first(a):
        return ad.jvp(lambda b: array_namespace(b).sin(b), (a,), (ones,))[1]

    _, second = ad.jvp(first, (x,), (ones,))
    np.testing.assert_allclose(backend.to_numpy(second), -np.sin(backend.to_numpy(x)), rtol=1e-14)

    def mixed(a):  # d/da d/db (a * b) at b = a is 1, not 2
        return ad.jvp(lambda b: a * b, (a,), (ones,))[1]

    _, cross = ad.jvp(mixed, (x,), (ones,))
    np.testing.assert_allclose(backend.to_numpy(cross), 1.0)


def test_python_scalar_primals():
    out, t = ad.jvp(lambda a: a * a, (3.0,), (1.0,))
    assert float(out) == 9.0 and float(t) == 6.0


def test_inputs_are_never_modified(backend):
    x = backend.random((3, 3))
    dx = backend.random((3, 3), seed=1)
    before = backend.to_numpy(x).copy(), backend.to_numpy(dx).copy()

    def f(a):
        a[0, 0] = 5.0  # a functional update of the dual, not of the caller's array
        return a * 2.0

    ad.jvp(f, (x,), (dx,))
    np.testing.assert_array_equal(backend.to_numpy(x), before[0])
    np.testing.assert_array_equal(backend.to_numpy(dx), before[1])


def test_nan_and_inf_propagate(backend):
    x = backend.asarray([np.nan, np.inf, 1.0])
    with np.errstate(all="ignore"):
        out, t = ad.jvp(lambda a: array_namespace(a).sin(a) * 2.0, (x,), (backend.asarray([1.0, 1.0, 1.0]),))
    t = backend.to_numpy(t)
    assert np.isnan(t[0]) and np.isnan(t[1]) and np.isfinite(t[2])


# Bad input.
def test_tangent_shape_mismatch_names_the_argument(backend):
    with pytest.raises(ValueError, match=r"primals\[1\].*\(3,\).*\(2,\)"):
        ad.jvp(lambda a, b: a, (backend.random((2,)), backend.random((2,))),
               (None, backend.random((3,))))


def test_tangent_dtype_mismatch(backend):
    with pytest.raises(ValueError, match="dtype"):
        ad.jvp(lambda a: a, (backend.random((2,)),), (backend.random((2,), np.float32),))


def test_mismatched_pytree_structure(backend):
    x = backend.random((2,))
    with pytest.raises(ValueError, match="structure"):
        ad.jvp(lambda p: p[0], ((x, x),), ((x, x, x),))
    with pytest.raises(ValueError, match="primals"):
        ad.jvp(lambda a: a, (x, x), (x,))


def test_non_array_leaf(backend):
    with pytest.raises(TypeError, match="must be an array"):
        ad.jvp(lambda a: a, ("text",), (None,))


def test_integer_primal_with_tangent(backend):
    n = backend.asarray(np.arange(3))
    with pytest.raises(ValueError, match="integer"):
        ad.jvp(lambda a: a, (n,), (backend.asarray(np.ones(3)),))
    out, t = ad.jvp(lambda a: a * 2, (n,), (None,))
    assert isinstance(t, ad.Zero)


def test_function_returning_a_non_array(backend):
    with pytest.raises(TypeError, match="must return arrays"):
        ad.jvp(lambda a: "done", (backend.random((2,)),), (None,))


def test_mixing_backends_names_both():
    import array_api_strict

    with pytest.raises(TypeError, match=r"numpy.*array_api_strict"):
        ad.jvp(lambda a, b: a, (np.ones(2), array_api_strict.ones(2)), (None, None))


def test_dual_cannot_leak_into_numpy():
    with pytest.raises(TypeError, match="tangent"):
        ad.jvp(lambda a: np.asarray(a), (np.ones(2),), (np.ones(2),))


def test_check_jvp_detects_a_wrong_rule(monkeypatch):
    prim = elementwise.sin
    monkeypatch.setattr(prim, "jvp", lambda primals, tangents: (prim(*primals), tangents[0]))
    with pytest.raises(AssertionError, match="FAIL"):
        ad.check_jvp(lambda a: array_namespace(a).sin(a), (np.linspace(0.1, 1, 4),))


def test_backend_selection(monkeypatch):
    monkeypatch.setattr(ad.backends, "_default", ["array_api_strict"])
    assert ad.namespace().backend.name == "array_api_strict"
    ad.set_backend("numpy")
    assert ad.default_backend().name == "numpy"
    with pytest.raises(ValueError, match="unknown backend"):
        ad.set_backend("no_such_array_library")


@pytest.mark.parametrize("transform", ["jvp", "vmap", "jit"])
def test_a_backend_array_on_the_left_of_a_traced_value(backend, transform):
    """``w * x`` with ``w`` a closed-over array of the backend: NumPy (and CuPy) arrays defer to the
    traced value; array_api_strict's operators raise instead of returning NotImplemented (its issue
    188), which becomes a TypeError naming the namespace function that works, ``xp.multiply(w, x)``."""
    w, x = backend.random((3,), seed=1), backend.random((3,), seed=2)
    run = {"jvp": lambda f: ad.jvp(f, (x,), (x,))[0], "vmap": lambda f: ad.vmap(f)(backend.ns.stack([x, x]))[1, ...],
           "jit": lambda f: ad.jit(f)(x)}[transform]
    want = backend.to_numpy(w) * backend.to_numpy(x)
    np.testing.assert_allclose(backend.to_numpy(run(lambda v: v.__array_namespace__().multiply(w, v))), want)
    if backend.name != "array_api_strict":
        np.testing.assert_allclose(backend.to_numpy(run(lambda v: w * v)), want)
        return
    kind = {"jvp": "Dual", "vmap": "Batched", "jit": "JitTraced"}[transform]
    for op, function in (("*", "multiply"), ("-", "subtract"), ("<", "less")):
        with pytest.raises(TypeError, match=rf"Array\.__\w+__ refused a {transform} value .*{kind}.*instead of "
                                            rf"returning NotImplemented.* Write xp\.{function}\(y, x\)"):
            run(eval(f"lambda v: w {op} v", {"w": w}))


def test_a_users_operator_keeps_its_own_type_error(backend):
    """Only a backend array's refusing operator is explained (review10): a user's class whose ``__mul__``
    raises a TypeError keeps it (the advice xp.multiply(y, x) does not apply to it), and one that passes
    the traced value on to an array's operator has that array's operator named, not its own."""
    w, x = backend.random((3,), seed=1), backend.random((3,), seed=2)

    class Refuses:
        def __mul__(self, other):
            raise TypeError(f"Refuses cannot multiply a {type(other).__name__}")

    class Wraps:
        def __mul__(self, other):
            return w * other

    with pytest.raises(TypeError, match=r"^Refuses cannot multiply a Dual$"):
        ad.jvp(lambda v: Refuses() * v, (x,), (x,))
    if backend.name == "array_api_strict":
        with pytest.raises(TypeError, match=r"Array\.__mul__ refused a jvp value"):
            ad.jvp(lambda v: Wraps() * v, (x,), (x,))
    else:
        np.testing.assert_allclose(backend.to_numpy(ad.jvp(lambda v: Wraps() * v, (x,), (x,))[0]),
                                   backend.to_numpy(w) * backend.to_numpy(x))
