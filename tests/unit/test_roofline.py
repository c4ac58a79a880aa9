import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lpulab import catalog, roofline

pos = st.floats(min_value=1e-3, max_value=1e18, allow_nan=False, allow_infinity=False)


def test_hand_computed_ridge_and_attainable():
    # H100 SXM bf16: 989 TFLOP/s over 3.35 TB/s -> ridge 295.2 FLOP/B
    assert roofline.ridge_point(989e12, 3.35e12) == pytest.approx(295.22, rel=1e-4)
    assert roofline.attainable(2.0, 989e12, 3.35e12) == pytest.approx(6.7e12)
    assert roofline.attainable(1e4, 989e12, 3.35e12) == pytest.approx(989e12)


def test_op_time_takes_the_slowest_roof():
    r = roofline.Roofs("x", "bf16", 100.0, {"hbm": 10.0, "l2": 50.0})
    # compute 1 s, hbm 2 s, l2 0.4 s -> 2 s, bound by hbm
    assert roofline.op_time(100.0, {"hbm": 20.0, "l2": 20.0}, r) == pytest.approx(2.0)
    assert roofline.bound(100.0, {"hbm": 20.0, "l2": 20.0}, r) == "hbm"
    assert roofline.bound(1000.0, {"hbm": 20.0}, r) == "compute"


def test_unknown_tier_is_named():
    r = roofline.Roofs("x", "bf16", 100.0, {"hbm": 10.0})
    with pytest.raises(KeyError, match="sram"):
        roofline.op_time(1.0, {"sram": 1.0}, r)


@given(pos, pos, pos)
def test_attainable_never_above_either_roof(i, p, w):
    a = roofline.attainable(i, p, w)
    assert a <= p * (1 + 1e-12)
    assert a <= i * w * (1 + 1e-12)


@given(st.lists(pos, min_size=2, max_size=20), pos, pos)
def test_attainable_is_monotone_in_intensity(xs, p, w):
    xs = np.sort(np.asarray(xs))
    a = roofline.attainable(xs, p, w)
    assert np.all(np.diff(a) >= -1e-9 * a[1:])


def test_broadcasting_over_a_sweep():
    b = np.arange(1, 1025)
    flops, nbytes = roofline.matvec(8192, 28672, b, weight_bytes=1.0, act_bytes=1.0)
    assert flops.shape == nbytes.shape == (1024,)
    # batch 1, int8: intensity just under 2 FLOP per byte
    assert flops[0] / nbytes[0] == pytest.approx(2.0, rel=1e-3)


def test_roofs_from_catalog_apply_efficiency_equally():
    h100 = catalog.load_device("nvidia-h100-sxm")
    full = roofline.roofs(h100, "bf16", ["hbm"])
    half = roofline.roofs(h100, "bf16", ["hbm"], roofline.Efficiency(compute=0.5, memory=0.5))
    assert full.bandwidth["hbm"] == pytest.approx(3.35e12)
    assert half.peak == pytest.approx(full.peak / 2)
    assert half.ridge("hbm") == pytest.approx(full.ridge("hbm"))


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_efficiency_must_be_a_fraction(bad):
    with pytest.raises(ValueError, match="Efficiency"):
        roofline.Efficiency(memory=bad)
