"""Property tests: random shapes, broadcasting and axes, each checked against finite differences."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import cupy_ad as ad

shapes = st.lists(st.integers(1, 3), min_size=0, max_size=3).map(tuple)


@settings(max_examples=20, deadline=None)
@given(shape=shapes, drop=st.integers(0, 3), seed=st.integers(0, 2**16),
       op=st.sampled_from(["add", "multiply", "divide", "atan2", "hypot", "maximum"]))
def test_broadcast_binary(shape, drop, seed, op):
    ns = ad.namespace("numpy")
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 2.0, shape)
    y = rng.uniform(0.5, 2.0, shape[min(drop, len(shape)):])
    ad.check_jvp(getattr(ns, op), (x, y))


@settings(max_examples=20, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), seed=st.integers(0, 2**16),
       keepdims=st.booleans(), name=st.sampled_from(["sum", "mean", "prod", "max", "min"]), data=st.data())
def test_reductions_over_random_axes(shape, seed, keepdims, name, data):
    axes = data.draw(st.lists(st.integers(0, len(shape) - 1), unique=True, max_size=len(shape)).map(tuple))
    x = np.random.default_rng(seed).standard_normal(shape)
    fn = getattr(ad.namespace("numpy"), name)
    ad.check_jvp(lambda a: fn(a, axis=axes or None, keepdims=keepdims), (x,))
