"""data/prices/*.toml: every sheet validates, broken sheets are refused naming file and field,
and the numbers that also live in data/hardware agree with it."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from lpulab import catalog, paths

GOOD = '''
id = "{id}"
name = "A card"
as_of = "2024-02"
category = "claim"

[sources.s]
title = "A source"
url = "https://example.org"
date = "2024-02"
confidence = "third-party"

[price]
card = {{ value = 20000, unit = "USD", source = "s", kind = "estimate", low = 6000, high = 20000 }}

[power]
card = {{ value = 185, unit = "W", source = "s", kind = "estimate" }}

[tariff]
rate = {{ value = 200, unit = "USD/kW/month", source = "s", kind = "estimate" }}

[factor]
pue = {{ value = 1.5, unit = "", source = "s", kind = "measured" }}
'''


def write(tmp_path: Path, text: str, name: str = "sheet") -> Path:
    """Write a sheet; ``text`` is GOOD (or an edit of it) still holding its ``{id}`` slot."""
    p = tmp_path / f"{name}.toml"
    p.write_text(text.format(id=name))
    return p


@pytest.mark.parametrize("sheet", catalog.price_ids())
def test_every_price_sheet_validates(sheet):
    s = catalog.load_prices(sheet)
    assert s.values, sheet
    for key, v in s.values.items():
        assert math.isfinite(v.si) and v.si >= 0, key
        assert v.source.url.startswith("http"), key
        if v.is_range:
            assert v.low_si <= v.si <= v.high_si, key


def test_price_sheets_are_in_validate_all():
    ok, errors = catalog.validate_all()
    assert not errors
    assert {f"data/prices/{i}.toml" for i in catalog.price_ids()} <= set(ok)


def test_good_sheet_parses_into_si(tmp_path):
    s = catalog.load_prices(write(tmp_path, GOOD))
    assert s["price.card"].si == 20000.0
    assert s["price.card"].low_si == 6000.0
    assert s["power.card"].si == 185.0
    # 200 USD per kW per month (pint's month = 730.5 h) is about 0.274 USD/kWh, in USD/J
    assert s["tariff.rate"].si * 3.6e6 == pytest.approx(0.2738, abs=1e-4)
    assert s["factor.pue"].si == 1.5
    with pytest.raises(KeyError, match=r"entries: price.card"):
        s["price.server"]


BROKEN = [
    ("unit", 'card = {{ value = 20000, source = "s", kind = "estimate" }}', r"price\.card: missing field\(s\) unit"),
    ("dimension", 'card = {{ value = 20000, unit = "W", source = "s", kind = "estimate" }}', r"price\.card\.unit: unit 'W' is not a money unit"),
    ("source", 'card = {{ value = 1, unit = "USD", source = "nowhere", kind = "estimate" }}', r"price\.card\.source: unknown source 'nowhere'"),
    ("kind", 'card = {{ value = 1, unit = "USD", source = "s", kind = "guess" }}', r"price\.card\.kind: 'guess' is not one of"),
    ("range", 'card = {{ value = 30000, unit = "USD", source = "s", kind = "estimate", low = 6000, high = 20000 }}', r"price\.card: value 30000 lies outside its range"),
    ("negative", 'card = {{ value = -1, unit = "USD", source = "s", kind = "estimate" }}', r"price\.card\.value: negative value"),
    ("bare", "card = 20000", r"price\.card: a number must be an inline table"),
    ("field", 'card = {{ value = 1, unit = "USD", source = "s", kind = "estimate", colour = "red" }}', r"price\.card: unknown field\(s\) colour"),
    ("formula", 'card = {{ value = 1, unit = "USD", source = "s", kind = "derived" }}', r"price\.card\.formula: a derived value must name its formula"),
]


@pytest.mark.parametrize("what,line,message", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_entries_are_refused_with_file_and_field(tmp_path, what, line, message):
    text = GOOD.replace('card = {{ value = 20000, unit = "USD", source = "s", kind = "estimate", low = 6000, high = 20000 }}', line)
    p = write(tmp_path, text, f"broken-{what}")
    with pytest.raises(catalog.CatalogError) as exc:
        catalog.load_prices(p)
    assert f"broken-{what}.toml" in str(exc.value)
    assert re.search(message, str(exc.value)), str(exc.value)


@pytest.mark.parametrize("edit,message", [
    (('id = "{id}"', 'id = "other"'), r"id: 'other' must equal the file name 'broken'"),
    (('as_of = "2024-02"', 'as_of = "Feb 2024"'), r"as_of: 'Feb 2024' is not a date"),
    (('category = "claim"', 'category = "fpga"'), r"category: 'fpga' is not one of"),
    (('category = "claim"', 'category = "system"'), r"a system sheet prices one deployment unit and needs .*missing count\.chips_per_unit, price\.unit, power\.unit"),
    (("[factor]", "[discount]"), r"\(top level\): unknown field\(s\) discount"),
    (('confidence = "third-party"', 'confidence = "sure"'), r"sources\.s\.confidence: 'sure' is not one of"),
    (('name = "A card"\n', ''), r"\(top level\): missing field\(s\) name"),
])
def test_broken_sheets_are_refused_with_file_and_field(tmp_path, edit, message):
    p = write(tmp_path, GOOD.replace(*edit), "broken")
    with pytest.raises(catalog.CatalogError) as exc:
        catalog.load_prices(p)
    assert "broken.toml" in str(exc.value) and re.search(message, str(exc.value)), str(exc.value)


def test_not_toml_is_refused_with_its_name(tmp_path):
    p = tmp_path / "garbled.toml"
    p.write_text("id = \n")
    with pytest.raises(catalog.CatalogError, match=r"garbled\.toml: not valid TOML"):
        catalog.load_prices(p)


def test_unknown_sheet_names_the_known_ones():
    with pytest.raises(KeyError, match=r"known: .*groq-card"):
        catalog.load_prices("no-such-sheet")


def test_validate_all_reports_a_broken_sheet_in_a_user_data_folder(tmp_path, monkeypatch):
    (tmp_path / "prices").mkdir()
    for name in ("ok", "bad"):
        text = GOOD if name == "ok" else GOOD.replace('kind = "measured"', 'kind = "rumour"')
        write(tmp_path / "prices", text, name)
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path))
    _ok, errors = catalog.validate_all()
    assert any("bad.toml" in e for e in errors)
    assert not any("ok.toml" in e for e in errors)
    assert catalog.load_prices("ok").path.endswith("ok.toml")


def test_card_power_and_gpu_prices_agree_with_the_hardware_catalog():
    card = catalog.load_prices("groq-card")["power.unit"]
    tdp = catalog.load_device("groq-lpu-v1").power["tdp"]
    assert (card.si, card.low_si, card.high_si) == (tdp.si, tdp.low_si, tdp.high_si)
    for sheet, device in (("nvidia-dgx-h100", "nvidia-h100-sxm"), ("nvidia-dgx-h200", "nvidia-h200")):
        assert catalog.load_prices(sheet)["price.gpu"].si == catalog.load_device(device).price["unit_price"].si


def test_as_stated_sheet_reproduces_its_own_arithmetic():
    s = catalog.load_prices("as-stated-jia-2024")
    n, card, server = s["count.lpu_cards"].si, s["price.card"].si, s["price.server"].si
    assert n * card / server == pytest.approx(38.13, abs=0.01)
    assert n * s["power.card"].si / s["power.server"].si == pytest.approx(10.58, abs=0.01)
    hours = s["time.lifetime"].si / 3600
    assert hours == 26280
    # the reposted opex numbers imply the stated rate, on both sides
    assert s["price.lpu_opex"].si / (n * s["power.card"].si * s["time.lifetime"].si) == pytest.approx(s["tariff.implied"].si, rel=2e-3)
    assert s["price.gpu_opex"].si / (s["power.server"].si * s["time.lifetime"].si) == pytest.approx(s["tariff.implied"].si, rel=2e-3)
    assert s["tariff.implied_monthly"].si == pytest.approx(s["tariff.implied"].si, rel=2e-3)


def test_every_device_that_names_a_price_sheet_names_a_system_sheet():
    for d in catalog.devices().values():
        if d.deployment.prices:
            sheet = catalog.load_prices(d.price_sheet_id())
            assert sheet.category == "system", d.id


def test_a_device_without_a_price_sheet_says_what_to_add():
    with pytest.raises(catalog.CatalogError, match=r"nvidia-h100-pcie.*cannot be costed: add a price sheet prices/<id>\.toml"):
        catalog.load_device("nvidia-h100-pcie").price_sheet_id()


def test_measurement_rows_load_with_their_source():
    v = catalog.measurement("mlperf40-h100x8-llama2-70b-server-output_tok_s_aggregate")
    assert v.si == 20556.4 and v.kind == "measured" and v.source.confidence == "official"
    assert catalog.measurement("groq-stated-2024-02-llama-2-70b").kind == "vendor-peak"
    with pytest.raises(KeyError, match="no row 'nope'"):
        catalog.measurement("nope")
