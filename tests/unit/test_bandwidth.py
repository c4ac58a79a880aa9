import pytest

from lpulab import bandwidth, catalog


@pytest.fixture(scope="module")
def table():
    L = catalog.load_device("groq-lpu-v1")
    G = [catalog.load_device(g) for g in ("nvidia-h100-sxm", "nvidia-h100-pcie", "nvidia-h200", "nvidia-b200")]
    return bandwidth.compare(L, G, tiers=("hbm", "l1"))


def ratio(table, gpu, tier="hbm"):
    return float(table[(table.gpu == gpu) & (table.tier == tier)].bandwidth_ratio.iloc[0])


def test_hand_computed_ratios(table):
    assert ratio(table, "nvidia-h100-sxm") == pytest.approx(80 / 3.35)   # 23.9x
    assert ratio(table, "nvidia-h100-pcie") == pytest.approx(40.0)
    assert ratio(table, "nvidia-h200") == pytest.approx(80 / 4.8)        # 16.7x
    assert ratio(table, "nvidia-b200") == pytest.approx(10.0)


def test_sram_to_sram_is_far_below_20x(table):
    assert ratio(table, "nvidia-h100-sxm", "l1") < 5


def test_capacity_is_the_price(table):
    row = table[(table.gpu == "nvidia-h100-sxm") & (table.tier == "hbm")].iloc[0]
    # 220 MiB against 80 GB: about 1/347
    assert row.capacity_ratio == pytest.approx(220 * 2**20 / 80e9)


def test_achieved_fractions_scale_the_ratio(table):
    L = catalog.load_device("groq-lpu-v1")
    H = catalog.load_device("nvidia-h100-sxm")
    t = bandwidth.compare(L, [H], gpu_achieved=0.9)
    assert float(t.bandwidth_ratio.iloc[0]) == pytest.approx(80 / (0.9 * 3.35))
    with pytest.raises(ValueError, match="gpu_achieved"):
        bandwidth.compare(L, [H], gpu_achieved=0.0)


def test_c1_verdict_depends_on_which_gpu(table):
    v = bandwidth.judge_c1(table, "nvidia-h100-sxm", "hbm")
    assert v.reproduces and v.holds == "depends on assumptions"
    assert (v.low, v.high) == (pytest.approx(10.0), pytest.approx(40.0))
    with pytest.raises(ValueError, match="has no hbm bandwidth"):
        bandwidth.judge_c1(table, "nvidia-a100-sxm-80gb", "hbm")
    with pytest.raises(ValueError, match=r"no l1 bandwidth.*nvidia-h100-sxm"):
        bandwidth.reference_row(table, "nvidia-b200", "l1")
