"""Special functions (``xp.special``, SciPy's names) over dual values, one derivative per line.

SciPy with ``SCIPY_ARRAY_API=1`` looks up ``xp.special.<name>`` in its inputs' namespace before
falling back to NumPy, so ``scipy.special.erf(dual)`` and the p-values of ``scipy.stats`` tests
land here. The primal comes from the backend (``Backend.special``: SciPy, cupyx.scipy.special);
the derivatives are written with the namespace, so they nest.

Derivatives (DLMF 7.10, 5.15, 8.8, 8.17, 10.29; the others by the chain rule):
erf' = 2/sqrt(pi) e^{-x^2}; erfinv' = sqrt(pi)/2 e^{erfinv(x)^2} (inverse function rule);
expit' = expit (1 - expit); logit' = 1 / (x (1 - x)); gammaln' = psi; psi^{(n)}' = psi^{(n+1)};
ndtr' = phi(x) = e^{-x^2/2}/sqrt(2 pi); log_ndtr' = phi(x) / ndtr(x) = e^{-x^2/2 - log_ndtr(x)}/sqrt(2 pi);
ndtri' = 1 / phi(ndtri(x)); I0' = I1 and I1' = I0 - I1/x (DLMF 10.29.2), with their e^{-|x|} scaled
forms; sinc'(x) = (cos(pi x) - sinc(x)) / x.
The regularised incomplete gamma and beta functions and the distribution functions built on them
(Student t, chi-squared, F) are differentiated in their variable x: the derivative of a CDF is
the density. Their derivatives in the shape parameters (a, b, degrees of freedom) have no closed
form; a tangent flowing into one raises ``NotImplementedError`` (pass the parameter as a constant).
"""
from __future__ import annotations

import math
import numbers
import types
from typing import Any, Callable

from ._rules import backend_of_args, elementwise, xp_of
from .elementwise import (add, cos, divide, equal, exp, log, log1p, multiply, negative, sign, square,
                          subtract, where)

_SQRT_PI = math.sqrt(math.pi)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _special(name: str, *derivatives: Callable | None) -> Any:
    def impl(*args: Any) -> Any:
        return backend_of_args(args).special(name, *args)

    impl.__name__ = name
    return elementwise(name, *derivatives, impl=impl)


def _softplus(x: Any) -> Any:
    """log(1 + e^x) = logaddexp(0, x) in the backend's namespace (SciPy has softplus only from 1.15)."""
    xp = xp_of(x)
    return xp.logaddexp(xp.zeros_like(x), x)


def _constant_parameter(function: str, parameter: str) -> Callable:
    """The 'derivative' of a shape parameter without a closed form: a clear error, never a number."""
    def refuse(g: Any, ans: Any, *args: Any) -> Any:
        raise NotImplementedError(
            f"the derivative of {function} in {parameter} is not implemented (it has no closed form); "
            f"pass {parameter} as a constant (no tangent)")
    return refuse


def _scalar_or_array(array_function: Callable, scalar_function: Callable) -> Callable:
    """Shape parameters may be Python numbers: compute on them with ``math``."""
    return lambda v: scalar_function(v) if isinstance(v, numbers.Number) else array_function(v)


def _ln(v: Any) -> Any:
    return _scalar_or_array(log, math.log)(v)


def _lgamma(v: Any) -> Any:
    return _scalar_or_array(gammaln, math.lgamma)(v)


def _betaln(a: Any, b: Any) -> Any:
    return subtract(add(_lgamma(a), _lgamma(b)), _lgamma(add(a, b)))  # add/subtract take Python numbers too


def _divide_where_nonzero(num: Any, den: Any, at_zero: Any) -> Any:
    """num / den, and ``at_zero`` (the limit, to first order where second derivatives need it) where den == 0."""
    zero = equal(den, 0)
    return where(zero, at_zero, divide(num, where(zero, 1.0, den)))


def _x_over(x: Any, y: Any) -> Any:
    """x / y, and 0 where x == 0: the derivative of xlogy(x, y) in y (xlogy(0, y) = 0 for every y)."""
    if isinstance(x, numbers.Number):
        return divide(x, y) if x != 0 else 0.0
    zero = equal(x, 0)
    return where(zero, 0.0, divide(x, where(zero, 1.0, y)))


def _gamma_density(a: Any, x: Any) -> Any:
    """x^(a-1) e^(-x) / Gamma(a), the derivative of gammainc(a, x) in x (DLMF 8.8.13)."""
    return exp(subtract(subtract(xlogy(subtract(a, 1.0), x), x), _lgamma(a)))


def _beta_density(a: Any, b: Any, x: Any) -> Any:
    """x^(a-1) (1-x)^(b-1) / B(a, b), the derivative of betainc(a, b, x) in x (DLMF 8.17.1)."""
    return exp(subtract(add(xlogy(subtract(a, 1.0), x), xlog1py(subtract(b, 1.0), negative(x))), _betaln(a, b)))


def _t_density(df: Any, t: Any) -> Any:
    """Student's t density: Gamma((df+1)/2) / (sqrt(df pi) Gamma(df/2)) (1 + t^2/df)^(-(df+1)/2)."""
    half = multiply(add(df, 1.0), 0.5)
    log_norm = subtract(subtract(_lgamma(half), _lgamma(multiply(df, 0.5))), multiply(_ln(multiply(df, math.pi)), 0.5))
    return exp(subtract(log_norm, multiply(half, log1p(divide(square(t), df)))))


def _chi2_density(v: Any, x: Any) -> Any:
    """The chi-squared density with v degrees of freedom: gammainc(v/2, x/2)' = density(v/2, x/2) / 2."""
    return multiply(_gamma_density(multiply(v, 0.5), multiply(x, 0.5)), 0.5)


def _f_density(d1: Any, d2: Any, x: Any) -> Any:
    """The F density: with y = d1 x / (d1 x + d2), F's CDF is betainc(d1/2, d2/2, y), so it is
    beta_density(d1/2, d2/2, y) dy/dx with dy/dx = d1 d2 / (d1 x + d2)^2."""
    scaled = multiply(d1, x)
    total = add(scaled, d2)
    return multiply(_beta_density(multiply(d1, 0.5), multiply(d2, 0.5), divide(scaled, total)),
                    divide(multiply(d1, d2), square(total)))


def _distribution(name: str, parameters: tuple[str, ...], density: Callable, *, upper_tail: bool = False) -> Any:
    """A distribution function (``upper_tail``: 1 minus it) of x after its shape ``parameters``: the
    derivative in x is (minus) the density; tangents in the parameters raise."""
    def in_x(g: Any, ans: Any, *args: Any) -> Any:
        change = multiply(g, density(*args))
        return negative(change) if upper_tail else change

    return _special(name, *(_constant_parameter(name, p) for p in parameters), in_x)


def _bessel_i1_derivative(g: Any, ans: Any, x: Any) -> Any:
    return multiply(g, subtract(i0(x), _divide_where_nonzero(ans, x, 0.5)))  # I1(x)/x -> 1/2 at 0


def _bessel_i1e_derivative(g: Any, ans: Any, x: Any) -> Any:
    # i1e = e^{-|x|} I1: i1e' = i0e - i1e / x - sign(x) i1e (i1e / x -> 1/2 at 0; I1(0) = 0 smooths the kink)
    return multiply(g, subtract(subtract(i0e(x), _divide_where_nonzero(ans, x, 0.5)), multiply(sign(x), ans)))


erf = _special("erf", lambda g, ans, x: multiply(g, multiply(exp(negative(square(x))), 2.0 / _SQRT_PI)))
erfc = _special("erfc", lambda g, ans, x: multiply(g, multiply(exp(negative(square(x))), -2.0 / _SQRT_PI)))
erfinv = _special("erfinv", lambda g, ans, x: multiply(g, multiply(exp(square(ans)), _SQRT_PI / 2.0)))
erfcinv = _special("erfcinv", lambda g, ans, x: multiply(g, multiply(exp(square(ans)), -_SQRT_PI / 2.0)))
expit = _special("expit", lambda g, ans, x: multiply(g, multiply(ans, subtract(1.0, ans))))
logit = _special("logit", lambda g, ans, x: divide(g, multiply(x, subtract(1.0, x))))
softplus = elementwise("softplus", lambda g, ans, x: multiply(g, expit(x)), impl=_softplus)  # log(1 + e^x)
gammaln = _special("gammaln", lambda g, ans, x: multiply(g, psi(x)))
psi = _special("psi", lambda g, ans, x: multiply(g, polygamma(1, x)))
polygamma = _special("polygamma", None, lambda g, ans, n, x: multiply(g, polygamma(add(n, 1), x)))
ndtr = _special("ndtr", lambda g, ans, x: multiply(g, multiply(exp(multiply(square(x), -0.5)), 1.0 / _SQRT_2PI)))
log_ndtr = _special("log_ndtr", lambda g, ans, x: multiply(
    g, multiply(exp(subtract(multiply(square(x), -0.5), ans)), 1.0 / _SQRT_2PI)))
ndtri = _special("ndtri", lambda g, ans, x: multiply(g, multiply(exp(multiply(square(ans), 0.5)), _SQRT_2PI)))
entr = _special("entr", lambda g, ans, x: negative(multiply(g, add(log(x), 1.0))))  # -x log x
rel_entr = _special("rel_entr",  # x log(x / y)
                    lambda g, ans, x, y: multiply(g, add(subtract(log(x), log(y)), 1.0)),
                    lambda g, ans, x, y: negative(multiply(g, divide(x, y))))
xlogy = _special("xlogy", lambda g, ans, x, y: xlogy(g, y),  # x log y, 0 where x == 0
                 lambda g, ans, x, y: multiply(g, _x_over(x, y)))
xlog1py = _special("xlog1py", lambda g, ans, x, y: xlog1py(g, y),  # x log(1 + y), 0 where x == 0
                   lambda g, ans, x, y: multiply(g, _x_over(x, add(y, 1.0))))
sinc = _special("sinc", lambda g, ans, x: multiply(  # sin(pi x) / (pi x); at 0: -pi^2 x / 3 (its Taylor slope)
    g, _divide_where_nonzero(subtract(cos(multiply(x, math.pi)), ans), x, multiply(x, -math.pi ** 2 / 3.0))))
i0 = _special("i0", lambda g, ans, x: multiply(g, i1(x)))
i1 = _special("i1", _bessel_i1_derivative)
i0e = _special("i0e", lambda g, ans, x: multiply(g, subtract(i1e(x), multiply(sign(x), ans))))
i1e = _special("i1e", _bessel_i1e_derivative)
gammainc = _distribution("gammainc", ("a",), _gamma_density)
gammaincc = _distribution("gammaincc", ("a",), _gamma_density, upper_tail=True)
betainc = _distribution("betainc", ("a", "b"), _beta_density)
betaincc = _distribution("betaincc", ("a", "b"), _beta_density, upper_tail=True)
stdtr = _distribution("stdtr", ("df",), _t_density)
chdtr = _distribution("chdtr", ("v",), _chi2_density)
chdtrc = _distribution("chdtrc", ("v",), _chi2_density, upper_tail=True)
fdtr = _distribution("fdtr", ("dfn", "dfd"), _f_density)
fdtrc = _distribution("fdtrc", ("dfn", "dfd"), _f_density, upper_tail=True)
digamma = psi

FUNCTIONS = {
    "erf": erf, "erfc": erfc, "erfinv": erfinv, "erfcinv": erfcinv, "expit": expit, "logit": logit,
    "softplus": softplus, "gammaln": gammaln, "psi": psi, "digamma": digamma, "polygamma": polygamma,
    "ndtr": ndtr, "log_ndtr": log_ndtr, "ndtri": ndtri, "entr": entr, "rel_entr": rel_entr, "xlogy": xlogy,
    "xlog1py": xlog1py, "sinc": sinc, "i0": i0, "i1": i1, "i0e": i0e, "i1e": i1e, "gammainc": gammainc,
    "gammaincc": gammaincc, "betainc": betainc, "betaincc": betaincc, "stdtr": stdtr, "chdtr": chdtr,
    "chdtrc": chdtrc, "fdtr": fdtr, "fdtrc": fdtrc,
}


def special_namespace(name: str) -> types.ModuleType:
    """The ``special`` sub-namespace: the same functions on every backend (they dispatch on their inputs)."""
    module = types.ModuleType(name)
    module.__dict__.update(FUNCTIONS)
    return module
