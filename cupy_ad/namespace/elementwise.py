"""Elementwise functions of the array API and their derivatives, one line per function, and the
factory ``elementwise`` that makes them (with ``add_tangents`` and ``fit``, which its rules use).

Each derivative maps the tangent ``g`` of one argument (and the output ``ans`` and the arguments)
to its contribution to the output tangent. Complex functions use the holomorphic derivative
f'(z) g; non-holomorphic ones (abs, real, imag, conj, sign) give their real-linear map.
"""
from __future__ import annotations

import cmath
import math
import numbers
import operator
from typing import Any, Callable

from ..core import Primitive, bind, bind_batched_elementwise, bind_below
from ..values import Batched, Dual, Zero
from ._rules import backend_function, is_complex_dtype, xp_of
from .manipulation import aligned, astype, broadcast_to
from .weak import bind_elementwise


def fit(term: Any, ans: Any) -> Any:
    """Broadcast and cast a tangent term to the output's shape and dtype."""
    if term.shape != ans.shape:
        term = broadcast_to(term, ans.shape)
    if term.dtype != ans.dtype:
        term = astype(term, ans.dtype)
    return term


def add_tangents(a: Any, b: Any) -> Any:
    """The sum of two tangents, either of which may be a symbolic zero."""
    if type(a) is Zero:
        return b
    if type(b) is Zero:
        return a
    return add(a, b)


def broadcasting(prim: Primitive) -> Callable:
    """The batching rule of an elementwise primitive (any number of broadcasting operands). It calls
    ``prim`` rather than binding it (``bind_below``), so that an elementwise primitive types weak
    operands (Python scalars of an enclosing jvp, :mod:`.weak`) against the others' dtype at the level
    below too."""
    def rule(values: list, axes: list, **params: Any) -> tuple[Any, int]:
        if len(values) == 1:  # unary: the batch axis stays where it is
            return bind_below(prim, values, params), axes[0]
        if len(values) == 2:  # binary, batch-first operands that broadcast as they are (the common case)
            (x, y), (x_axis, y_axis) = values, axes
            x_ndim, y_ndim = getattr(x, "ndim", 0), getattr(y, "ndim", 0)
            if (x_axis == 0 and (y_axis is None and y_ndim < x_ndim or y_axis == 0 and y_ndim == x_ndim)
                    or y_axis == 0 and x_axis is None and x_ndim < y_ndim):
                return bind_below(prim, values, params), 0
        ranks = [getattr(v, "ndim", 0) - (axis is not None) for v, axis in zip(values, axes)]
        widest = max(ranks)
        if all(axis is None or axis == 0 and r == widest for axis, r in zip(axes, ranks)):
            return bind_below(prim, values, params), 0  # batch-first and of full rank: broadcasts as it is
        return bind_below(prim, aligned(values, axes), params), 0
    return rule


class ElementwisePrimitive(Primitive):
    """A primitive applied elementwise: weakly typed (Python-scalar) operands take the dtype of the
    others before dispatch (see :mod:`.weak`)."""

    __slots__ = ()

    def __call__(self, *args: Any, **params: Any) -> Any:
        if type(args[0]) is Batched or len(args) > 1 and type(args[1]) is Batched:
            out = bind_batched_elementwise(self, args, params)
            if out is not None:
                return out
        for a in args:
            if type(a) is Dual and a.weak:
                return bind_elementwise(self, args, params)
        return bind(self, *args, **params)


def elementwise(name: str, *derivatives: Callable | None, impl: Callable | None = None) -> Primitive:
    """An elementwise primitive from one derivative per argument (``None``: not differentiable).

    ``derivative(g, ans, *args)`` is the tangent contribution of that argument's tangent ``g``;
    contributions are broadcast to the output and summed, skipping symbolic zeros.
    """
    prim = ElementwisePrimitive(name, impl or backend_function(name))
    prim.batch = broadcasting(prim)

    @prim.def_jvp
    def rule(primals: list, tangents: list, **params: Any):
        ans = bind(prim, *primals, **params)
        out: Any = Zero.like(ans)
        for derivative, g in zip(derivatives, tangents):
            if derivative is not None and type(g) is not Zero:
                out = add_tangents(out, fit(derivative(g, ans, *primals), ans))
        return ans, out

    return prim


# Arithmetic (operators keep Python-scalar promotion exactly as the backend does it).
add = elementwise("add", lambda g, ans, x, y: g, lambda g, ans, x, y: g, impl=operator.add)
subtract = elementwise("subtract", lambda g, ans, x, y: g, lambda g, ans, x, y: negative(g),
                       impl=operator.sub)
multiply = elementwise("multiply", lambda g, ans, x, y: multiply(g, y), lambda g, ans, x, y: multiply(x, g),
                       impl=operator.mul)
divide = elementwise("divide", lambda g, ans, x, y: divide(g, y),
                     lambda g, ans, x, y: negative(multiply(g, divide(ans, y))), impl=operator.truediv)
def _pow_base_derivative(g: Any, ans: Any, x: Any, y: Any) -> Any:
    # d/dx x^y = y x^(y-1), taken as 0 where y == 0 (so 0^0 has derivative 0, as in JAX)
    if isinstance(y, numbers.Number):
        return multiply(g, multiply(y, pow(x, y - 1))) if y != 0 else multiply(g, 0.0)
    return multiply(g, where(equal(y, 0), 0.0, multiply(y, pow(x, subtract(y, 1)))))


def _pow_exponent_derivative(g: Any, ans: Any, x: Any, y: Any) -> Any:
    # d/dy x^y = log(x) x^y, taken as 0 where x == 0
    if isinstance(x, numbers.Number):
        return multiply(g, multiply(_scalar_log(x), ans))
    return multiply(g, where(equal(x, 0), 0.0, multiply(log(where(equal(x, 0), 1.0, x)), ans)))


def _scalar_log(x: complex) -> complex:
    if x == 0:
        return 0.0
    return math.log(x) if isinstance(x, numbers.Real) and x > 0 else cmath.log(x)


pow = elementwise("pow", _pow_base_derivative, _pow_exponent_derivative,  # noqa: A001 - the standard's name
                  impl=operator.pow)
negative = elementwise("negative", lambda g, ans, x: negative(g), impl=operator.neg)
positive = elementwise("positive", lambda g, ans, x: g, impl=operator.pos)
square = elementwise("square", lambda g, ans, x: multiply(g, multiply(2.0, x)))
sqrt = elementwise("sqrt", lambda g, ans, x: divide(g, multiply(2.0, ans)))
exp = elementwise("exp", lambda g, ans, x: multiply(g, ans))
expm1 = elementwise("expm1", lambda g, ans, x: multiply(g, add(ans, 1.0)))
log = elementwise("log", lambda g, ans, x: divide(g, x))
log1p = elementwise("log1p", lambda g, ans, x: divide(g, add(x, 1.0)))
log2 = elementwise("log2", lambda g, ans, x: divide(g, multiply(x, math.log(2.0))))
log10 = elementwise("log10", lambda g, ans, x: divide(g, multiply(x, math.log(10.0))))
logaddexp = elementwise("logaddexp", lambda g, ans, x, y: multiply(g, exp(subtract(x, ans))),
                        lambda g, ans, x, y: multiply(g, exp(subtract(y, ans))))
reciprocal = elementwise("reciprocal", lambda g, ans, x: negative(multiply(g, square(ans))))
# |x1| with the sign of x2: +-g as the signs of x1 and the result agree; piecewise constant in x2.
copysign = elementwise("copysign", lambda g, ans, x, y: where(equal(signbit(x), signbit(ans)), g, negative(g)), None)
nextafter = elementwise("nextafter", lambda g, ans, x, y: g, None)  # x1 moved by one ulp: slope 1 in x1
hypot = elementwise("hypot", lambda g, ans, x, y: multiply(g, _safe_div(x, ans)),
                    lambda g, ans, x, y: multiply(g, _safe_div(y, ans)))

# Trigonometric and hyperbolic.
sin = elementwise("sin", lambda g, ans, x: multiply(g, cos(x)))
cos = elementwise("cos", lambda g, ans, x: negative(multiply(g, sin(x))))
tan = elementwise("tan", lambda g, ans, x: multiply(g, add(1.0, square(ans))))
sinh = elementwise("sinh", lambda g, ans, x: multiply(g, cosh(x)))
cosh = elementwise("cosh", lambda g, ans, x: multiply(g, sinh(x)))
tanh = elementwise("tanh", lambda g, ans, x: multiply(g, subtract(1.0, square(ans))))
asin = elementwise("asin", lambda g, ans, x: divide(g, sqrt(subtract(1.0, square(x)))))
acos = elementwise("acos", lambda g, ans, x: negative(divide(g, sqrt(subtract(1.0, square(x))))))
atan = elementwise("atan", lambda g, ans, x: divide(g, add(1.0, square(x))))
asinh = elementwise("asinh", lambda g, ans, x: divide(g, sqrt(add(square(x), 1.0))))
# sqrt(x - 1) sqrt(x + 1) rather than sqrt(x^2 - 1): the right branch for complex x
acosh = elementwise("acosh", lambda g, ans, x: divide(g, multiply(sqrt(subtract(x, 1.0)), sqrt(add(x, 1.0)))))
atanh = elementwise("atanh", lambda g, ans, x: divide(g, subtract(1.0, square(x))))
# d atan2(y, x) = (x dy - y dx) / (x^2 + y^2); x x rather than square(x): either may be a Python scalar
atan2 = elementwise("atan2", lambda g, ans, y, x: multiply(g, divide(x, add(multiply(x, x), multiply(y, y)))),
                    lambda g, ans, y, x: negative(multiply(g, divide(y, add(multiply(x, x), multiply(y, y))))))


def _safe_div(num: Any, den: Any) -> Any:
    """num / den, and 0 where den == 0 (for derivatives at points of non-differentiability)."""
    zero = equal(den, 0)
    return where(zero, 0.0, divide(num, where(zero, 1.0, den)))


# Complex parts.
real = elementwise("real", lambda g, ans, x: real(g))
imag = elementwise("imag", lambda g, ans, x: imag(g))
conj = elementwise("conj", lambda g, ans, x: conj(g))


def _abs_derivative(g: Any, ans: Any, x: Any) -> Any:
    if is_complex_dtype(x):  # d|z| = Re(conj(z) dz) / |z|, 0 at z = 0
        return _safe_div(real(multiply(conj(x), g)), ans)
    return multiply(g, sign(x))


abs = elementwise("abs", _abs_derivative)  # noqa: A001 - the standard's name


def _sign_derivative(g: Any, ans: Any, x: Any) -> Any:
    # s = z/|z|: ds = (dz - s Re(conj(s) dz)) / |z|; 0 for real input and at z = 0
    if not is_complex_dtype(x):
        return Zero.like(ans)
    return _safe_div(subtract(g, multiply(ans, real(multiply(conj(ans), g)))), abs(x))


sign = elementwise("sign", _sign_derivative)


def _extremum(name: str, wins: Any) -> Any:
    # Where the arguments tie, each gets half of the tangent (as JAX does).
    def share(g: Any, ans: Any, mine: Any, other: Any) -> Any:
        return where(wins(mine, other), g, where(equal(mine, other), multiply(g, 0.5), 0.0))

    return elementwise(name, lambda g, ans, x, y: share(g, ans, x, y), lambda g, ans, x, y: share(g, ans, y, x))


maximum = _extremum("maximum", lambda a, b: greater(a, b))
minimum = _extremum("minimum", lambda a, b: less(a, b))


def _clip_impl(x: Any, lo: Any, hi: Any) -> Any:
    return xp_of(x).clip(x, lo, hi)


def _clip_share(select: Any) -> Any:
    def derivative(g: Any, ans: Any, x: Any, lo: Any, hi: Any) -> Any:
        below = less(x, lo) if lo is not None else None
        above = greater(x, hi) if hi is not None else None
        return where(select(below, above), g, 0.0)
    return derivative


def _inside(below: Any, above: Any) -> Any:
    if below is None:
        return logical_not(above)
    if above is None:
        return logical_not(below)
    return logical_not(logical_or(below, above))


def _only_below(below: Any, above: Any) -> Any:
    return below if above is None else logical_and(below, logical_not(above))


_clip = elementwise("clip", _clip_share(_inside), _clip_share(_only_below),
                    _clip_share(lambda below, above: above), impl=_clip_impl)


def clip(x: Any, /, min: Any = None, max: Any = None) -> Any:  # noqa: A002 - the standard's names
    """Clamp ``x`` to [min, max]; the tangent follows whichever of x, min, max is returned."""
    if min is None and max is None:
        return positive(x)
    return _clip(x, min, max)


def _where_impl(condition: Any, x1: Any, x2: Any) -> Any:
    return xp_of(condition, x1, x2).where(condition, x1, x2)


where = elementwise("where", None, lambda g, ans, c, x, y: where(c, g, 0.0),
                    lambda g, ans, c, x, y: where(c, 0.0, g), impl=_where_impl)

remainder = elementwise("remainder", lambda g, ans, x, y: g,  # x - floor(x/y) y
                        lambda g, ans, x, y: negative(multiply(g, floor_divide(x, y))), impl=operator.mod)

# Functions whose outputs carry no tangent (piecewise constant or not floating point).
def piecewise_constant(name: str, impl: Callable | None = None) -> Primitive:
    """An elementwise primitive whose outputs carry zero tangents (weak operands typed as by ``elementwise``)."""
    return elementwise(name, impl=impl)


equal = piecewise_constant("equal", operator.eq)
not_equal = piecewise_constant("not_equal", operator.ne)
less = piecewise_constant("less", operator.lt)
less_equal = piecewise_constant("less_equal", operator.le)
greater = piecewise_constant("greater", operator.gt)
greater_equal = piecewise_constant("greater_equal", operator.ge)
floor_divide = piecewise_constant("floor_divide", operator.floordiv)
isnan = piecewise_constant("isnan")
isinf = piecewise_constant("isinf")
isfinite = piecewise_constant("isfinite")
signbit = piecewise_constant("signbit")
logical_and = piecewise_constant("logical_and")
logical_or = piecewise_constant("logical_or")
logical_xor = piecewise_constant("logical_xor")
logical_not = piecewise_constant("logical_not")
floor = piecewise_constant("floor")
ceil = piecewise_constant("ceil")
trunc = piecewise_constant("trunc")
round = piecewise_constant("round")  # noqa: A001 - the standard's name
bitwise_and = piecewise_constant("bitwise_and")
bitwise_or = piecewise_constant("bitwise_or")
bitwise_xor = piecewise_constant("bitwise_xor")
bitwise_invert = piecewise_constant("bitwise_invert")
bitwise_left_shift = piecewise_constant("bitwise_left_shift")
bitwise_right_shift = piecewise_constant("bitwise_right_shift")
_NONDIFFERENTIABLE = [
    "equal", "not_equal", "less", "less_equal", "greater", "greater_equal", "floor_divide", "isnan", "isinf",
    "isfinite", "signbit", "logical_and", "logical_or", "logical_xor", "logical_not", "floor", "ceil", "trunc",
    "round", "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_invert", "bitwise_left_shift",
    "bitwise_right_shift",
]

# NumPy spellings of the standard's names.
arcsin, arccos, arctan, arcsinh, arccosh, arctanh, arctan2 = asin, acos, atan, asinh, acosh, atanh, atan2
power, absolute, conjugate = pow, abs, conj

__all__ = [
    "abs", "absolute", "acos", "acosh", "add", "arccos", "arccosh", "arcsin", "arcsinh", "arctan", "arctan2",
    "arctanh", "asin", "asinh", "atan", "atan2", "atanh", "clip", "conj", "conjugate", "copysign", "cos", "cosh",
    "divide", "exp", "expm1", "hypot", "imag", "log", "log10", "log1p", "log2", "logaddexp", "maximum", "minimum",
    "multiply", "negative", "nextafter", "positive", "pow", "power", "real", "reciprocal", "remainder", "sign",
    "sin", "sinh", "sqrt", "square", "subtract", "tan", "tanh", "where", *_NONDIFFERENTIABLE,
]
