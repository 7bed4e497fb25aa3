"""The fft extension: every transform against finite differences and against NumPy's transform of the
tangent (the JVP of a linear map), round trips, Parseval, and constants from fftfreq."""
import numpy as np
import pytest

import cupy_ad as ad

REAL = (np.float32, np.float64)
COMPLEX = (np.complex64, np.complex128)
# name: (dtypes of the input, keyword arguments)
TRANSFORMS = {
    "fft": (COMPLEX, {"n": 6, "axis": 0}), "ifft": (COMPLEX, {"norm": "ortho"}),
    "fftn": (COMPLEX, {"s": (4, 3), "axes": (0, 1)}), "ifftn": (COMPLEX, {"axes": (0,), "norm": "forward"}),
    "rfft": (REAL, {"n": 7}), "irfft": (COMPLEX, {}), "rfftn": (REAL, {"norm": "ortho"}),
    "irfftn": (COMPLEX, {"s": (3, 6), "axes": (0, 1)}), "hfft": (COMPLEX, {"n": 9}), "ihfft": (REAL, {"axis": 0}),
    "fftshift": (REAL + COMPLEX, {"axes": 1}), "ifftshift": (REAL + COMPLEX, {}),
}
CASES = [(name, dtype) for name, (dtypes, _) in TRANSFORMS.items() for dtype in dtypes]


@pytest.mark.parametrize("name, dtype", CASES)
def test_transform_matches_finite_differences_and_numpy(backend, name, dtype):
    kwargs = TRANSFORMS[name][1]
    x, t = backend.random((4, 5), dtype, seed=1), backend.random((4, 5), dtype, seed=2)
    if dtype in COMPLEX:  # the imaginary parts irfft/hfft ignore (DC bins) are set, and must stay ignored
        assert np.abs(backend.to_numpy(t)[:, 0].imag).min() > 0
    f = lambda x: getattr(backend.ns.fft, name)(x, **kwargs)  # noqa: E731
    ad.check_jvp(f, (x,))
    value, tangent = ad.jvp(f, (x,), (t,))
    reference = getattr(np.fft, name)
    np.testing.assert_allclose(backend.to_numpy(tangent), reference(backend.to_numpy(t), **kwargs),
                               rtol=1e-5 if dtype in (np.float32, np.complex64) else 1e-12, atol=1e-5)
    assert value.dtype == tangent.dtype


@pytest.mark.parametrize("forward, inverse, dtype", [("fft", "ifft", np.complex128), ("fftn", "ifftn", np.complex64),
                                                     ("rfft", "irfft", np.float64), ("ihfft", "hfft", np.float32),
                                                     ("rfftn", "irfftn", np.float64),
                                                     ("fftshift", "ifftshift", np.float64)])
def test_round_trip_tangent_is_the_input_tangent(backend, forward, inverse, dtype):
    """inverse(forward(x)) = x, so its tangent is dx exactly (also through the real-linear half spectra)."""
    fft = backend.ns.fft
    x, t = backend.random((3, 6), dtype, seed=3), backend.random((3, 6), dtype, seed=4)
    size = {"n": 6} if inverse in ("irfft", "hfft") else {"s": (3, 6), "axes": (0, 1)} if inverse == "irfftn" else {}
    _, tangent = ad.jvp(lambda x: getattr(fft, inverse)(getattr(fft, forward)(x), **size), (x,), (t,))
    np.testing.assert_allclose(backend.to_numpy(tangent), backend.to_numpy(t),
                               rtol=1e-5 if dtype in (np.float32, np.complex64) else 1e-12, atol=1e-6)


def test_parseval_first_and_second_derivatives(backend):
    """sum |fft(x)|^2 = n sum |x|^2: the JVP is 2 n Re<x, dx> and the second derivative 2 n |dx|^2."""
    ns = backend.ns
    x, t = backend.random((2, 8), np.complex128, seed=5), backend.random((2, 8), np.complex128, seed=6)

    def energy(x):
        return ns.sum(ns.abs(ns.fft.fft(x, axis=-1)) ** 2)

    _, first = ad.jvp(energy, (x,), (t,))
    xn, tn = backend.to_numpy(x), backend.to_numpy(t)
    np.testing.assert_allclose(float(backend.to_numpy(first)), 2 * 8 * np.sum((xn.conj() * tn).real), rtol=1e-12)
    _, second = ad.jvp(lambda x: ad.jvp(energy, (x,), (t,))[1], (x,), (t,))
    np.testing.assert_allclose(float(backend.to_numpy(second)), 2 * 8 * np.sum(np.abs(tn) ** 2), rtol=1e-12)


def test_fftfreq_are_constants(backend):
    fft = backend.ns.fft
    x = backend.random((6,), np.float64)

    def scaled(x):
        return fft.rfft(x) * fft.rfftfreq(6, d=0.5), fft.fftfreq(5, d=0.5, dtype=backend.ns.float32)

    (_, freq), (tangent, freq_tangent) = ad.jvp(scaled, (x,), (backend.random((6,), np.float64, seed=1),))
    assert not np.any(backend.to_numpy(freq_tangent))
    np.testing.assert_array_equal(backend.to_numpy(freq), np.fft.fftfreq(5, d=0.5).astype(np.float32))
    ad.check_jvp(scaled, (x,))
