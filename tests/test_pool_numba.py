"""The numba max-pool kernels (kernels/pool_numba.py) give the NumPy reference's numbers bit for
bit: the maximum, the winner of every window (ties and padding included) and the gradient."""
import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mrcnn_np.nn.layers import max_pool2d_backward, max_pool2d_forward

KSP = [(1, 2, 0), (2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 1), (3, 3, 0), (5, 2, 2)]


def _both(x, k, s, p, dout_seed):
    out_np, c_np = max_pool2d_forward(x, k, s, p, backend="numpy")
    out_nb, c_nb = max_pool2d_forward(x, k, s, p, backend="numba")
    dout = np.random.default_rng(dout_seed).standard_normal(out_np.shape).astype(x.dtype)
    return (out_np, c_np, max_pool2d_backward(dout, c_np),
            out_nb, c_nb, max_pool2d_backward(dout, c_nb))


@settings(max_examples=40, deadline=None)
@given(st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 9), st.integers(1, 9)),
       st.sampled_from(KSP), st.sampled_from([np.float32, np.float64]),
       st.sampled_from(["distinct", "ties", "negative"]), st.integers(0, 999))
def test_numba_max_pool_equals_numpy_bit_for_bit(shape, ksp, dtype, values, seed):
    k, s, p = ksp
    N, C, H, W = shape
    assume(H + 2 * p >= k and W + 2 * p >= k)  # the window fits the padded input
    rng = np.random.default_rng(seed)
    if values == "distinct":
        x = rng.standard_normal(shape)
    elif values == "ties":    # few distinct values: many windows tie, first in window wins
        x = rng.integers(0, 3, shape).astype(float)
    else:                     # all below zero: a padded -inf cell sits beside every winner
        x = -1 - rng.random(shape)
    x = x.astype(dtype)
    out_np, c_np, dx_np, out_nb, c_nb, dx_nb = _both(x, k, s, p, seed)
    assert out_nb.dtype == out_np.dtype == dtype and dx_nb.dtype == dx_np.dtype == dtype
    np.testing.assert_array_equal(out_nb, out_np)
    np.testing.assert_array_equal(c_nb[4], c_np[4])             # the winners' indices
    assert dx_nb.tobytes() == dx_np.tobytes()                   # the same bits


def test_numba_max_pool_hand_worked_tie_and_padding():
    # 1 x 3 row [2, 2, 1] padded by 1 (-inf on each side), kernel 3, stride 1:
    # windows [-inf 2 2], [2 2 1], [2 1 -inf] -> max 2, 2, 2; winners x[0], x[0], x[1]
    # (the first maximum in window order), so dx = [d0 + d1, d2, 0].
    x = np.array([[2.0, 2.0, 1.0]] * 3).reshape(1, 1, 3, 3)
    x[0, 0, [0, 2]] = -5.0                      # rows 0 and 2 never win: a 1 x 3 problem
    out, cache = max_pool2d_forward(x, 3, 1, 1, backend="numba")
    np.testing.assert_array_equal(out[0, 0, 1], [2, 2, 2])
    dout = np.zeros((1, 1, 3, 3))
    dout[0, 0, 1] = [10.0, 20.0, 40.0]
    dout[0, 0, 0] = dout[0, 0, 2] = 0.0
    dx = max_pool2d_backward(dout, cache)
    np.testing.assert_array_equal(dx[0, 0, 1], [30, 40, 0])
