"""Writes into basic-indexing views reach their base (primal and tangent), and a write into a base
reaches its views, as in NumPy; in-place operators keep shape and dtype. Each case is run on a
NumPy array as the reference (tangent: the same code on the tangent, by linearity of writes)."""
from __future__ import annotations

import importlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import cupy_ad as ad
from cupy_ad.backends.base import _entries_may_share_memory


def _writes(c):
    v = c[0, :, :]
    v[0, 0] = v[0, 0] + 1.0  # sklearn's pattern: a slice updated through a view
    w = v[1, :]  # a view of a view
    w[...] = w * 3.0
    r = c[1, ...]
    c[1, 0, 1] = -c[1, 0, 1]  # a write into the base reaches its view r
    r += 2.0  # in-place on a view reaches c
    return c, v, r, c[2:, ::-1, ...]


def test_view_writes_match_numpy(backend):
    rng = np.random.default_rng(0)
    c0, dc0 = rng.standard_normal((3, 2, 2)), rng.standard_normal((3, 2, 2))
    expected = [np.copy(o) for o in _writes(c0.copy())]
    outs, tangents = ad.jvp(_writes, (backend.asarray(c0),), (backend.asarray(dc0),))
    for got, want in zip(outs, expected):
        np.testing.assert_array_equal(backend.to_numpy(got), want)
    # the tangent: writes of x + 1, x * 3, -x, x + 2 map the tangent by 1, 3, -1, 1
    dc = dc0.copy()
    dc[0, 1] *= 3.0
    dc[1, 0, 1] *= -1.0
    np.testing.assert_array_equal(backend.to_numpy(tangents[0]), dc)
    np.testing.assert_array_equal(backend.to_numpy(tangents[2]), dc[1])
    ad.check_jvp(lambda c: _writes(c)[0], (backend.asarray(c0),))


def test_write_of_a_dual_into_a_view_of_a_constant(backend):
    """A view of a creation-function constant takes the tangent of the value written into it."""
    ns = backend.ns
    x = backend.asarray([1.0, 2.0])

    def f(a):
        c = ns.zeros((2, 2), dtype=a.dtype)
        row = c[1, :]
        row[:] = a * a
        return c

    value, slope = ad.jvp(f, (x,), (backend.asarray([1.0, 1.0]),))
    np.testing.assert_array_equal(backend.to_numpy(value), [[0.0, 0.0], [1.0, 4.0]])
    np.testing.assert_array_equal(backend.to_numpy(slope), [[0.0, 0.0], [2.0, 4.0]])


def test_advanced_indexing_copies(backend):
    ns = backend.ns
    x = backend.asarray([1.0, 2.0, 3.0])

    def f(a):
        picked = a[ns.asarray([0, 2])]
        picked[0] = 10.0  # a copy, as in NumPy: a is unchanged
        masked = a[a > 1.5]
        masked[0] = 10.0
        return a

    value, _ = ad.jvp(f, (x,), (x,))
    np.testing.assert_array_equal(backend.to_numpy(value), [1.0, 2.0, 3.0])


def test_in_place_operators(backend):
    x32 = backend.asarray(np.array([1.0, 2.0], dtype=np.float32))
    x64 = backend.asarray([1.0, 2.0])

    def grow(a, b):
        a += b
        return a

    with pytest.raises(TypeError, match="dtype"):
        ad.jvp(grow, (x32, x64), (x32, x64))
    with pytest.raises(ValueError, match="shape"):
        ad.jvp(grow, (x64, backend.asarray([[1.0], [2.0]])), (None, None))

    def ops(a):
        b = a
        b *= 3.0
        b -= 1.0
        b **= 2
        b /= 2.0
        return a  # b is a: the same value, updated in place

    value, slope = ad.jvp(ops, (x64,), (backend.asarray([1.0, 1.0]),))
    np.testing.assert_allclose(backend.to_numpy(value), (3.0 * np.array([1.0, 2.0]) - 1.0) ** 2 / 2.0)
    np.testing.assert_allclose(backend.to_numpy(slope), 3.0 * (3.0 * np.array([1.0, 2.0]) - 1.0))

    def shifts(k):
        k <<= 2
        k >>= 1
        return k, 1 << k, 256 >> k

    out, _ = ad.jvp(shifts, (backend.asarray([1, 2]),), (None,))
    assert [backend.to_numpy(o).tolist() for o in out] == [[2, 4], [4, 16], [64, 16]]


def _transposed_writes(c, k):
    """Writes through the transposing views NumPy returns (x.T, x.mT, matrix_transpose, permute_dims) and a
    write into the base seen by such a view; ``k`` scales the constants (0: the same code on a tangent)."""
    xp = c.__array_namespace__()
    t = c.T
    t[0, ...] = t[0, ...] * 5.0
    m = c.mT
    m[1, 0] = k * 7.0
    p = xp.permute_dims(c, (1, 0))
    p[2, :] += 1.0 * k
    s = xp.matrix_transpose(c)
    c[0, 0] = -c[0, 0]  # seen by s, as in NumPy
    s[:, 1] *= 2.0
    return c, s


def _rearranged_writes(c, k):
    """Writes through the other rearranging views NumPy returns: expand_dims, squeeze, flip, moveaxis, unstack,
    reshape (where NumPy's is a view)."""
    xp = c.__array_namespace__()
    e = xp.expand_dims(c, axis=0)
    e[0, 1, 2] = k * 4.0
    q = xp.squeeze(e, axis=0)  # a view of a view
    q[0, 2] = q[0, 2] * 3.0
    f = xp.flip(c, axis=1)
    f[0, 0] = -f[0, 0]
    m = xp.moveaxis(c, 0, 1)
    m[1, 1] += 2.0 * k
    u = xp.unstack(c)[1]
    u[0] = u[0] * 0.5
    r = xp.reshape(c, (3, 2))  # a view: c is C-contiguous
    r[2, 1] = r[2, 1] + 10.0 * k
    t = xp.reshape(c.T, (6,))  # a copy, as NumPy's (c.T is not contiguous): the write stays in t
    t[0] = 100.0 * k
    return c, q, f, t


@pytest.mark.parametrize("writes", [_transposed_writes, _rearranged_writes])
def test_writes_through_rearranging_views_reach_the_base(backend, writes):
    """Before, x.T, x.mT, matrix_transpose, permute_dims, expand_dims, squeeze, flip, moveaxis, unstack and
    reshape were copies under every transform: the writes were lost (eager NumPy's x changed, ours did not), silently."""
    c0, dc0 = np.arange(6.0).reshape(2, 3), np.linspace(1.0, 2.0, 6).reshape(2, 3)
    values = [np.copy(o) for o in writes(c0.copy(), 1.0)]
    slopes = [np.copy(o) for o in writes(dc0.copy(), 0.0)]
    f = lambda c: writes(c, 1.0)  # noqa: E731
    x, dx = backend.asarray(c0), backend.asarray(dc0)
    for name, run in [("jvp", lambda: ad.jvp(f, (x,), (dx,))),
                      ("jit(jvp)", lambda: ad.jit(lambda a, b: ad.jvp(f, (a,), (b,)))(x, dx)),
                      ("jvp(jit)", lambda: ad.jvp(ad.jit(f), (x,), (dx,)))]:
        outs, tangents = run()
        for got, want in zip([*outs, *tangents], [*values, *slopes]):
            np.testing.assert_array_equal(backend.to_numpy(got), want, err_msg=name)
    for got, want in zip(ad.jit(f)(x), values):
        np.testing.assert_array_equal(backend.to_numpy(got), want)
    np.testing.assert_array_equal(backend.to_numpy(x), c0)  # the input is never written


def test_writes_through_views_under_vmap(backend):
    """vmap kept no views at all (v = x[0]; v[1] = 9 left x unchanged): against a loop of NumPy."""
    c0 = np.arange(12.0).reshape(2, 2, 3)  # two examples

    def f(c):
        v = c[0, ...]
        v[1, ...] = 9.0
        return _transposed_writes(c, 1.0)[0], _rearranged_writes(c, 1.0)[1], v, c.T

    outs = ad.vmap(f)(backend.asarray(c0))
    for k in range(2):
        for got, want in zip(outs, f(c0[k].copy())):
            np.testing.assert_array_equal(backend.to_numpy(got)[k], want)


def test_numpy_method_views_under_plain_jit():
    """Under a plain jit (NumPy's methods are recorded), x.reshape(...) returned a copy: a later write into x was
    not seen by it, silently. Now it sees writes into x, and a write into it (which could not reach x) raises."""
    def reads(x):
        y = x.reshape(3, 2)
        x[0, 0] = 10.0
        return y + 0.0, x.real + 1.0

    def writes(x):
        y = x.reshape(3, 2)
        y[0, 0] = 10.0
        return x

    jitted = ad.jit(reads)
    for c in (np.arange(6.0).reshape(2, 3), np.linspace(1.0, 2.0, 6).reshape(2, 3)):  # recording, then replay
        for got, want in zip(jitted(c.copy()), reads(c.copy())):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(TypeError, match=r"write into the result of x.reshape\(...\), a view of x.*xp.reshape"):
        ad.jit(writes)(np.ones((2, 3)))


def _scalar_accumulator(x):
    """``acc = x[0]; acc += x[i]``: NumPy's x[0] of a 1-D x (an integer for every axis) is a scalar, a copy."""
    xp = x.__array_namespace__()
    acc = x[0]
    for i in range(1, 3):
        acc += x[i]
    last = x[1, ...]  # a 0-d view in NumPy: writes reach x
    last *= 2.0
    first = xp.unstack(x)[2]  # a scalar (a copy) in NumPy, as x[2]
    first += 100.0
    return acc, x, first


def test_an_integer_for_every_axis_is_a_copy(backend):
    """``acc = x[0]; acc += ...`` wrote into x (x[0] was taken for a 0-d view, which NumPy's scalar is not): the
    caller's x[0] seen by the rest of f was changed, silently, under jvp, vmap and jit."""
    c0, dc0 = np.array([1.0, 2.0, 3.0]), np.array([0.5, -1.0, 2.0])
    values, slopes = _scalar_accumulator(c0.copy()), _scalar_accumulator(dc0.copy())
    slopes = (slopes[0], slopes[1], dc0[2])  # (the constant 100 has no slope)
    x, dx = backend.asarray(c0), backend.asarray(dc0)
    for name, run in [("jvp", lambda: ad.jvp(_scalar_accumulator, (x,), (dx,))),
                      ("jit(jvp)", lambda: ad.jit(lambda a, b: ad.jvp(_scalar_accumulator, (a,), (b,)))(x, dx))]:
        outs, tangents = run()
        for got, want in zip([*outs, *tangents], [*values, *slopes]):
            np.testing.assert_array_equal(backend.to_numpy(got), want, err_msg=name)
    jitted = ad.jit(_scalar_accumulator)
    for _ in range(2):  # recording, then replay
        for got, want in zip(jitted(x), values):
            np.testing.assert_array_equal(backend.to_numpy(got), want)
    for got, want in zip(ad.vmap(_scalar_accumulator)(backend.asarray(c0[None])), values):
        np.testing.assert_array_equal(backend.to_numpy(got)[0], want)


def test_a_write_through_flip_keeps_the_base_layout():
    """A write through xp.flip(x) left x with negative strides (its copy flipped back), so a later xp.reshape(x)
    was a copy where NumPy's is a view: the write into the reshape was lost, silently."""
    def f(c):
        xp = c.__array_namespace__()
        flipped = xp.flip(c, axis=0)
        flipped[0, 0] = 5.0 * flipped[0, 1]
        r = xp.reshape(c, (6,))  # a view in NumPy: c keeps its C-contiguous layout
        r[1] = 7.0 * r[2]
        return c

    c0, dc0 = np.arange(6.0).reshape(2, 3), np.linspace(1.0, 2.0, 6).reshape(2, 3)
    value, slope = f(c0.copy()), f(dc0.copy())
    for name, run in [("jvp", lambda: ad.jvp(f, (c0,), (dc0,))), ("jvp(jit)", lambda: ad.jvp(ad.jit(f), (c0,), (dc0,)))]:
        out, tangent = run()
        np.testing.assert_array_equal(out, value, err_msg=name)
        np.testing.assert_array_equal(tangent, slope, err_msg=name)
    np.testing.assert_array_equal(ad.vmap(f)(c0[None])[0], value)


def test_a_jit_replay_with_another_layout_decides_views_as_numpy():
    """Whether NumPy's reshape is a view follows the layout, which is not in jit's signature: a replay of a
    recording on a C-contiguous x, on a Fortran-ordered one, passed the writes into x.reshape on to x as a view
    (NumPy's is a copy there), silently; and the other way round. A replay now checks it (else records again)."""
    def through_namespace(c):
        r = c.__array_namespace__().reshape(c, (6,))
        r[0] = 99.0
        return c

    def through_method(c):
        r = c.reshape(6)
        c[0, 0] = 50.0
        return r + 0.0

    a = np.arange(6.0).reshape(2, 3)
    for f in (through_namespace, through_method):
        jitted = ad.jit(f)
        for c in (a, np.asfortranarray(a), a, np.asfortranarray(a)):
            np.testing.assert_array_equal(jitted(c), f(np.array(c, order="K")), err_msg=f.__name__)
        np.testing.assert_array_equal(a, np.arange(6.0).reshape(2, 3))


def test_a_write_of_a_nested_vmap_value_into_a_dual_is_refused():
    """x[0] = b, with x a dual of jvp and b a value of a vmap inside it, raised "array-API arrays have no method
    or attribute 'primal'"; now the refusal says what cannot be and the fix (as a jvp value into a vmap's)."""
    def f(x):
        def g(b):
            x[0] = b
            return b * 2.0
        ad.vmap(g)(np.array([1.0, 2.0]))
        return x

    with pytest.raises(TypeError, match=r"x\[key\] = value on a value of jvp: value belongs to a transform nested"):
        ad.jvp(f, (np.ones(3),), (np.ones(3),))


def _write_then_reshape(c, k):
    """A write and an in-place operator into c, then a write into xp.reshape(c): a copy where c's layout is not
    contiguous (NumPy's), a view where it is; ``k`` scales the constants (0: the same code on a tangent)."""
    xp = c.__array_namespace__()
    c[0, 0] = 5.0 * c[0, 1]
    c += 1.0 * k
    r = xp.reshape(c, (12,))
    r[1] = 77.0 * r[2]
    return c, r


_LAYOUTS = {"reversed": lambda a: a[..., ::-1, :], "sliced": lambda a: np.concatenate([a, a], axis=-1)[..., :4],
            "C": lambda a: a, "column-major": lambda a: np.moveaxis(np.moveaxis(a, -1, 0).copy(), 0, -1)}


@pytest.mark.parametrize("layout", _LAYOUTS)
def test_a_write_keeps_the_layout_of_an_input(layout):
    """x[key] = v and x op= y gave a non-contiguous x (negative strides, a sliced caller array) a compact copy, so
    a later xp.reshape(x) was a view where NumPy's is a copy: its writes reached x, silently, under jvp, jit and
    vmap. x keeps its layout now (where the result of x op= y lies otherwise, it is copied into x's layout)."""
    laid = _LAYOUTS[layout]
    a, da = np.arange(24.0).reshape(2, 3, 4), np.linspace(1.0, 2.0, 24).reshape(2, 3, 4)
    c, dc = laid(a[0].copy()), laid(da[0].copy())
    values = [np.copy(o) for o in _write_then_reshape(laid(a[0].copy()), 1.0)]
    slopes = [np.copy(o) for o in _write_then_reshape(laid(da[0].copy()), 0.0)]
    f = lambda c: _write_then_reshape(c, 1.0)  # noqa: E731
    for name, run in [("jvp", lambda: ad.jvp(f, (c,), (dc,))), ("jvp(jit)", lambda: ad.jvp(ad.jit(f), (c,), (dc,))),
                      ("jit(jvp)", lambda: ad.jit(lambda x, dx: ad.jvp(f, (x,), (dx,)))(c, dc))]:
        outs, tangents = run()
        for got, want in zip([*outs, *tangents], [*values, *slopes]):
            np.testing.assert_array_equal(got, want, err_msg=name)
    jitted = ad.jit(f)
    for x in (np.ascontiguousarray(c), c, c):  # recorded on a C-contiguous x: a replay on c's layout records again
        want = [np.copy(o) for o in f(x.copy(order="K") if x is not c else laid(a[0].copy()))]
        for got, expected in zip(jitted(x), want):
            np.testing.assert_array_equal(got, expected, err_msg="jit")
    for got, want in zip(ad.vmap(f)(laid(a.copy())), values):
        np.testing.assert_array_equal(got[0], want, err_msg="vmap")
    np.testing.assert_array_equal(c, laid(a[0].copy()))  # the input is never written


def test_views_of_a_value_are_made_in_its_own_thread_only():
    """note_view keeps a base's views in a plain list, which it compacts: a view appended meanwhile by another
    thread could be lost. No other thread can make one: the value of a running jvp, vmap or jit is refused there
    (its level is not alive in that thread) before any view of it exists; the refusal is what the list relies on."""
    def f(x):
        xp = x.__array_namespace__()
        makers = [lambda: x[0], lambda: x.T, lambda: xp.reshape(x, (4,)), lambda: xp.flip(x, axis=0)]
        with ThreadPoolExecutor(1) as pool:
            for make in makers:
                with pytest.raises(ValueError, match="another thread"):
                    pool.submit(make).result()
        return x

    x = np.ones((2, 2))
    ad.jvp(f, (x,), (x,))
    ad.vmap(f)(np.ones((3, 2, 2)))
    ad.jit(f)(x)


def test_an_in_place_operator_under_vmap_keeps_each_example_s_layout():
    """vmap: x op= y compared the layouts of the stacks, whose batch axes may lie apart: x batched at axis 1 (each
    example lies with gaps, x[:, k]) and x + y at axis 0 (each example contiguous) have the same strides, so x took
    x + y's contiguous examples and a later reshape was a view where NumPy's of x[:, k] is a copy (its write reached
    x, silently). Against NumPy on each example, laid out as the stack's (y at axis 0 or 1: both cases)."""
    def f(x, y):
        x += y
        r = x.__array_namespace__().reshape(x, (9,))
        r[0] = 99.0
        return x, r

    x, y = np.arange(27.0).reshape(3, 3, 3), np.linspace(1.0, 2.0, 27).reshape(3, 3, 3)
    for y_axis in (0, 1):
        examples = [f(np.moveaxis(x.copy(), 1, 0)[k], np.moveaxis(y, y_axis, 0)[k]) for k in range(3)]
        for got, want in zip(ad.vmap(f, in_axes=(1, y_axis))(x, y), map(np.stack, zip(*examples))):
            np.testing.assert_array_equal(got, want, err_msg=f"y at axis {y_axis}")


def test_a_write_into_an_input_whose_entries_share_memory_reaches_one_entry():
    """An input whose entries overlap in memory (sliding_window_view: x[1, 0] is x[0, 1]) got a copy with its
    strides, so a write into one entry changed the other in the primal but not in the tangent (the derivative of
    an entry the write made constant was 1), and x += y lost the sums that land on one place (0, 4, 8 for 0, 2, 4).
    Each entry gets its own place, as in a copy (NumPy's x would be read-only), as a broadcast axis's do."""
    def write(x):
        x[1, 0] = 0.0
        return x * 1.0

    def add(x, y):
        x += y
        return x * 1.0

    x, y = np.lib.stride_tricks.sliding_window_view(np.arange(6.0), 3), np.arange(12.0).reshape(4, 3)
    out, slope = ad.jvp(write, (x,), (np.ones((4, 3)),))
    np.testing.assert_array_equal(out, write(x.copy()))
    np.testing.assert_array_equal(slope, write(np.ones((4, 3))))
    for name, run in [("jvp", lambda: ad.jvp(add, (x, y), (y, y))[0]), ("jit", lambda: ad.jit(add)(x, y)),
                      ("vmap", lambda: ad.vmap(add)(x, y))]:
        np.testing.assert_array_equal(run(), x + y, err_msg=name)


_REARRANGING = {"flip": lambda xp, c: xp.flip(c, axis=0), "T": lambda xp, c: c.T,
                "moveaxis": lambda xp, c: xp.moveaxis(c, 0, 1), "expand_dims": lambda xp, c: xp.expand_dims(c, axis=1)}


@pytest.mark.parametrize("view", _REARRANGING)
@pytest.mark.parametrize("layout", _LAYOUTS)
def test_an_in_place_operator_on_a_rearranging_view_keeps_its_base_s_layout(layout, view):
    """v op= y on a view rearranging its base (xp.flip, x.T, moveaxis, expand_dims) rebound the base to the result
    rearranged back, in the result's layout: xp.flip of a C-contiguous x gave x negative strides (since flip's
    write stopped compacting), x.T of a reversed x a column-major one, so a later xp.reshape(x) was a copy where
    NumPy's is a view, or the reverse: its write reached x or not, silently, under jvp, jit and vmap. The base
    takes it as its own x[...] = new, in its own layout."""
    def f(c):
        xp = c.__array_namespace__()
        v = _REARRANGING[view](xp, c)
        v += 1.0
        r = xp.reshape(c, (12,))
        r[1] = 77.0
        return c, r

    laid, a = _LAYOUTS[layout], np.arange(24.0).reshape(2, 3, 4)
    c, want = laid(a[0].copy()), [np.copy(o) for o in f(laid(a[0].copy()))]
    for name, got in [("jvp", ad.jvp(f, (c,), (c,))[0]), ("jit", ad.jit(f)(c)),
                      ("vmap", [o[0] for o in ad.vmap(f)(laid(a.copy()))])]:
        for got_one, want_one in zip(got, want):
            np.testing.assert_array_equal(got_one, want_one, err_msg=name)


@pytest.mark.parametrize("layout", _LAYOUTS)
def test_a_masked_write_of_each_example_keeps_the_layout(layout):
    """vmap: x[mask] = v with a mask of each example's own rebound x to the where's result, laid out afresh, so a
    later xp.reshape(x) of a reversed, sliced or column-major x was a view where NumPy's is a copy (its write
    reached x, silently). Against NumPy on each example of the stack, under vmap, jit(vmap) and jvp(vmap)."""
    def f(x, m):
        x[m] = -1.0
        r = x.__array_namespace__().reshape(x, (12,))
        r[1] = 77.0
        return x, r

    laid, a = _LAYOUTS[layout], np.arange(24.0).reshape(2, 3, 4)
    m = np.arange(24).reshape(2, 3, 4) % 3 == 0
    want = [np.stack(o) for o in zip(*[f(laid(a.copy())[k], m[k]) for k in range(2)])]
    for name, run in [("vmap", lambda: ad.vmap(f)(laid(a.copy()), m)),
                      ("jit(vmap)", lambda: ad.jit(ad.vmap(f))(laid(a.copy()), m)),
                      ("jvp(vmap)", lambda: ad.jvp(lambda x: ad.vmap(f)(x, m), (laid(a.copy()),), (laid(a.copy()),))[0])]:
        for got, expected in zip(run(), want):
            np.testing.assert_array_equal(got, expected, err_msg=name)


def test_jit_replays_an_in_place_operator_on_inputs_of_many_layouts():
    """jit's replay checked that each input lay as at recording (its strides), so every new layout recorded again:
    column slices c[:, :4] of arrays of 12 widths made 12 recordings of one signature, and the ninth raised a
    RuntimeError (MAX_VARIANTS, naming control flow). A replay checks what the recording decided, whether the
    result of x op= y lies as x: one program for the 11 sliced ones; still NumPy's (the write into xp.reshape(c)
    reaches c only where c is contiguous, width 4)."""
    f = lambda c: _write_then_reshape(c, 1.0)  # noqa: E731
    jitted = ad.jit(f)
    for width in range(4, 16):
        sliced = lambda: np.arange(3.0 * width).reshape(3, width)[:, :4]  # noqa: E731
        for got, want in zip(jitted(sliced()), f(sliced())):
            np.testing.assert_array_equal(got, want, err_msg=f"width {width}")


def test_jit_buffer_reuse_keeps_the_layout_a_reshape_decides_by(monkeypatch):
    """jit's replay writes an elementwise result into a dead temporary; laid out as that temporary, not as NumPy
    lays out a fresh result: recorded on column-major x and y (the reshape of v copies), a replay on a C x with a
    column-major y wrote u = t + x into t's column-major buffer where NumPy's u is C, so v's reshape copied as at
    recording where NumPy's is a view: the write into it was lost, silently. Reuse now needs the operands of the
    result's shape to lie as the temporary."""
    monkeypatch.setattr(importlib.import_module("cupy_ad.transforms.jit_program"), "REUSE_MIN_BYTES", 1024)

    def f(x, y):
        t = y * 2.0
        u = t + x
        v = u * 1.5
        r = v.__array_namespace__().reshape(v, (-1,))
        r[0] = 5.0
        return v

    a = np.arange(4096.0).reshape(64, 64) + 1.0
    jitted = ad.jit(f)
    for x, y in [(np.asfortranarray(a), np.asfortranarray(a)), (a.copy(), np.asfortranarray(a)), (a.copy(), a.copy())]:
        np.testing.assert_array_equal(jitted(x, y), f(x.copy(order="K"), y))


def test_jit_buffer_reuse_with_a_broadcast_operand_keeps_numpy_s_layout(monkeypatch):
    """An operand of another shape (z broadcast along the first axis) also decides NumPy's layout of a fresh result,
    which reuse took only from the operands of the result's shape: recorded on column-major y and z, a replay on a
    column-major y with a C z wrote u = t + z into t's column-major buffer where NumPy's u lies otherwise (strides
    (8, 64, 16): C wins where the operands disagree), so v's reshape copied as at recording where NumPy's is a view:
    the write into it was lost, silently. Reuse needs a C-contiguous temporary (then NumPy's fresh result is C too)
    or operands all of its shape, lying as it does."""
    monkeypatch.setattr(importlib.import_module("cupy_ad.transforms.jit_program"), "REUSE_MIN_BYTES", 1024)

    def f(y, z):
        t = y * 2.0
        u = t + z
        v = u * 1.5
        r = v.__array_namespace__().reshape(v, (2, -1))
        r[0, 0] = 5.0
        return v

    a, b = np.arange(512.0).reshape(2, 16, 16) + 1.0, np.arange(256.0).reshape(16, 16)
    jitted = ad.jit(f)
    for y, z in [(np.asfortranarray(a), np.asfortranarray(b)), (np.asfortranarray(a), b.copy()), (a.copy(), b.copy())]:
        np.testing.assert_array_equal(jitted(y, z), f(y.copy(order="K"), z))


def test_a_write_keeps_an_interleaved_layout_whose_entries_lie_apart():
    """A layout whose axes interleave without two entries in one place (as_strided: steps 2 and 3 items, entries at
    0, 3, 2, 5, 4, 7) failed the quick test that each axis steps past the ones below it and got a C-order copy, so
    xp.reshape(x) was a view where NumPy's is a copy: its write reached x, silently, under jvp and jit. The entries'
    places are counted where the quick test fails: x keeps its layout where they lie apart."""
    def f(x):
        x[0, 0] = 1.0
        r = x.__array_namespace__().reshape(x, (6,))
        r[1] = 7.0
        return x

    def interleaved():
        return np.lib.stride_tricks.as_strided(np.arange(8.0), shape=(3, 2), strides=(16, 24))

    want = f(interleaved())
    for name, run in [("jvp", lambda: ad.jvp(f, (interleaved(),), (interleaved(),))[0]),
                      ("jit", lambda: ad.jit(f)(interleaved()))]:
        np.testing.assert_array_equal(run(), want, err_msg=name)


def test_whether_entries_share_memory_is_decided_as_by_counting_their_places():
    """strided_copy's test for entries in one place (its marks, one byte per place spanned, replaced numpy.unique
    of every entry's offset: 8.9 s for 10^7 entries, docs/measurements.md) against a count of the offsets, over
    random layouts of 1 to 4 axes with steps -7..7 (0: a broadcast axis, no entries of its own)."""
    rng = np.random.default_rng(0)
    for _ in range(3000):
        ndim = int(rng.integers(1, 5))
        shape = tuple(int(n) for n in rng.integers(1, 6, ndim))
        steps = [int(s) for s in rng.integers(-7, 8, ndim)]
        offsets = sum(np.arange(n).reshape((-1,) + (1,) * k) * s  # (signed, as the layout's own)
                      for k, (s, n) in enumerate(zip(steps, shape)) if s)
        offsets = np.ravel(offsets) if np.ndim(offsets) else np.zeros(1)
        kept = [n for s, n in zip(steps, shape) if s]
        shared = np.unique(offsets).size < int(np.prod(kept))
        assert _entries_may_share_memory(steps, shape) == shared, (steps, shape)
