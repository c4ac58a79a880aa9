import numpy as np
import pytest

from lpulab import units


@pytest.mark.parametrize("value,unit,si", [
    (80, "TB/s", 8.0e13),
    (3.35, "TB/s", 3.35e12),
    (220, "MiB", 220 * 2**20),
    (230, "MB", 2.3e8),
    (989, "TFLOP/s", 9.89e14),
    (750, "TOP/s", 7.5e14),
    (900, "MHz", 9.0e8),
    (185, "W", 185.0),
    (20000, "USD", 20000.0),
    (80, "count", 80.0),
    (5, "us", 5e-6),
])
def test_to_si(value, unit, si):
    assert units.to_si(value, unit) == pytest.approx(si)


def test_bytes_are_not_counts_or_bits():
    # pint's default registry makes the bit dimensionless; lpulab gives information a dimension
    with pytest.raises(units.UnitError):
        units.to_si(1, "count", "bytes")
    with pytest.raises(units.UnitError):
        units.to_si(1, "MHz", "bandwidth")
    assert units.to_si(1, "B") == 1.0


def test_round_trip_and_arrays():
    x = np.array([1.0, 2.5, 80.0])
    assert np.allclose(units.from_si(units.to_si(x, "TB/s"), "TB/s"), x)
    assert units.fmt(8e13, "TB/s") == "80 TB/s"


def test_parse_quantity_and_colocation_rate():
    assert units.parse_quantity("3.35 TB/s", "bandwidth") == pytest.approx(3.35e12)
    # 200 USD per kW-month is the 0.274 USD/kWh that the C4 reconstruction implies
    per_kwh = units.from_si(units.parse_quantity("200 USD/kW/month"), "USD/kWh")
    assert per_kwh == pytest.approx(0.2738, rel=1e-3)


def test_unknown_unit_is_named():
    with pytest.raises(units.UnitError, match="furlongz"):
        units.to_si(1, "furlongz")
    with pytest.raises(units.UnitError, match="not a bandwidth unit"):
        units.to_si(1, "GB", "bandwidth")
