import pytest

from lpulab import bandwidth, catalog, claims


def test_c1_as_stated_is_80_over_3_35():
    assert bandwidth.as_stated_ratio() == pytest.approx(80 / 3.35)
    assert round(bandwidth.as_stated_ratio(), 1) == 23.9


@pytest.mark.parametrize("value,expected", [(19.0, True), (18.9, False), (40.0, True)])
def test_at_least_with_tolerance(value, expected):
    c1 = catalog.load_claims()["C1"]  # at least 20, tolerance 5 %
    assert claims.meets(c1, value) is expected


def test_approximately():
    c3 = catalog.load_claims()["C3"]  # approximately 38, tolerance 10 %
    assert claims.meets(c3, 38.1)
    assert claims.meets(c3, 34.3)
    assert not claims.meets(c3, 20.3)


def test_verdict_three_ways():
    assert claims.judge("C1", 23.9, 23.9, 21.0, 40.0).holds == claims.HOLDS
    assert claims.judge("C1", 23.9, 23.9, 10.0, 40.0).holds == claims.DEPENDS
    v = claims.judge("C1", 23.9, 3.0, 2.4, 4.1)
    assert v.holds == claims.FAILS and v.reproduces


@pytest.mark.parametrize("claim,est,low,high,expected", [
    ("C3", 50.0, 30.0, 70.0, claims.DEPENDS),    # 38 lies inside the band: the band overlaps [34.2, 41.8]
    ("C3", 38.0, 35.0, 41.0, claims.HOLDS),      # the band inside the tolerance interval
    ("C3", 60.0, 50.0, 70.0, claims.FAILS),      # no overlap, above
    ("C3", 20.0, 15.0, 30.0, claims.FAILS),      # no overlap, below
    ("C3", 40.0, 20.0, 41.8, claims.DEPENDS),    # touches the interval's top from inside
    ("C2", 5.0, 2.0, 9.5, claims.DEPENDS),       # at-least 10 within 10 %: 9.5 >= 9.0 overlaps
    ("C2", 5.0, 2.0, 8.9, claims.FAILS),
    ("C2", 12.0, 9.0, 30.0, claims.HOLDS),
])
def test_verdict_is_band_overlap_with_the_tolerance_interval(claim, est, low, high, expected):
    assert claims.judge(claim, 0.0 + est, est, low, high).holds == expected


def test_every_claim_names_its_as_stated_inputs_and_its_band():
    cs = catalog.load_claims()
    assert cs["C1"].as_stated == {"lpu": "groq-lpu-v1", "gpu": "nvidia-h100-sxm", "lpu_tier": "sram", "gpu_tier": "hbm"}
    assert cs["C3"].as_stated["sheet"] == cs["C4"].as_stated["sheet"] == "as-stated-jia-2024"
    assert all(c.band for c in cs.values())


def test_estimate_outside_band_is_refused():
    with pytest.raises(ValueError, match="outside its band"):
        claims.judge("C1", 23.9, 50.0, 10.0, 40.0)


def test_all_four_claims_defined_in_both_languages():
    cs = catalog.load_claims()
    assert set(cs) == {"C1", "C2", "C3", "C4"}
    for c in cs.values():
        assert c.wording_zh and c.wording_en and c.source and c.notebook
