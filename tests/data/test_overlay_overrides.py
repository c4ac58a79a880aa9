"""User data folders ($LPULAB_DATA) overlay the shipped catalog; per-run overrides change one
number for one run without touching a file."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from lpulab import catalog, paths


@pytest.fixture
def user_data(tmp_path, monkeypatch):
    for kind in ("hardware", "prices", "measurements"):
        (tmp_path / kind).mkdir()
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path))
    return tmp_path


def _wafer(folder, price_sheet="wafer-system"):
    src = (paths.HARDWARE / "groq-lpu-v1.toml").read_text()
    src = src.replace('id = "groq-lpu-v1"', 'id = "test-wafer"').replace('prices = "groq-card"', f'prices = "{price_sheet}"')
    src = src.replace('capacity = { value = 220, unit = "MiB"', 'capacity = { value = 44, unit = "GB"')
    (folder / "hardware" / "test-wafer.toml").write_text(src)
    sheet = (paths.PRICES / "groq-card.toml").read_text().replace('id = "groq-card"', f'id = "{price_sheet}"')
    sheet = sheet.replace('unit = { value = 20000, unit = "USD", source = "isopack", kind = "estimate", low = 6000, high = 20000',
                          'unit = { value = 2500000, unit = "USD", source = "isopack", kind = "estimate", low = 2000000, high = 3000000')
    (folder / "prices" / f"{price_sheet}.toml").write_text(sheet)


def test_a_user_folder_adds_a_device_and_its_price_sheet(user_data):
    _wafer(user_data)
    assert "test-wafer" in catalog.device_ids() and "groq-lpu-v1" in catalog.device_ids()
    d = catalog.load_device("test-wafer")
    assert d.capacity() == 44e9 and d.sram_only
    assert catalog.load_prices(d.price_sheet_id())["price.unit"].si == 2.5e6
    ok, errors = catalog.validate_all()
    assert not errors and any(p.endswith("test-wafer.toml") for p in ok)


def test_a_user_file_with_a_shipped_id_replaces_it_for_this_process(user_data):
    src = (paths.HARDWARE / "nvidia-h100-sxm.toml").read_text().replace(
        'bandwidth = { value = 3.35, unit = "TB/s"', 'bandwidth = { value = 3.0, unit = "TB/s"')
    (user_data / "hardware" / "nvidia-h100-sxm.toml").write_text(src)
    assert catalog.load_device("nvidia-h100-sxm").bandwidth() == 3.0e12
    assert str(user_data) in catalog.load_device("nvidia-h100-sxm").path


def test_measurement_tables_of_one_name_are_concatenated(user_data):
    shipped = catalog.load_measurements("speed")
    row = (paths.MEASUREMENTS / "speed.csv").read_text().splitlines()
    (user_data / "measurements" / "speed.csv").write_text(row[0] + "\n" + row[1].replace(row[1].split(",")[0], "my-own-row", 1) + "\n")
    both = catalog.load_measurements("speed")
    assert len(both) == len(shipped) + 1 and "my-own-row" in set(both.id)


def test_a_duplicate_measurement_id_across_folders_is_refused(user_data):
    rows = (paths.MEASUREMENTS / "speed.csv").read_text().splitlines()
    (user_data / "measurements" / "speed.csv").write_text(rows[0] + "\n" + rows[1] + "\n")
    with pytest.raises(catalog.CatalogError, match="duplicate ids"):
        catalog.load_measurements("speed")


def test_a_missing_user_folder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(catalog.CatalogError, match=r"LPULAB_DATA names .*nowhere.*not a folder"):
        catalog.device_ids()


def test_a_broken_price_pointer_is_reported_by_validate_all(user_data):
    _wafer(user_data, price_sheet="wafer-system")
    (user_data / "prices" / "wafer-system.toml").unlink()
    _ok, errors = catalog.validate_all()
    assert any("test-wafer.toml: deployment.prices: no price sheet 'wafer-system'" in e for e in errors), errors


def test_an_override_changes_one_number_for_the_run_and_leaves_the_file_alone():
    path = paths.PRICES / "groq-card.toml"
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with catalog.overriding({"groq-card.price.unit": "15000 USD", "groq-lpu-v1.memory.sram.bandwidth": "40 TB/s"}) as ov:
        v = catalog.load_prices("groq-card")["price.unit"]
        assert v.si == 15000 and not v.is_range and v.source.confidence == "override"
        assert "15000 USD" in v.note and catalog.load_device("groq-lpu-v1").bandwidth() == 40e12
        assert [o.to_dict()["path"] for o in ov] == ["price.unit", "memory.sram.bandwidth"]
    assert catalog.load_prices("groq-card")["price.unit"].si == 20000
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_an_override_takes_a_plain_number_in_the_files_unit_and_ids_with_dots():
    with catalog.overriding({"nvidia-h100-sxm.memory.hbm.bandwidth": 3.0, "llama-3.1-405b.architecture.layers": 100}):
        assert catalog.load_device("nvidia-h100-sxm").bandwidth() == 3.0e12
        assert catalog.load_model("llama-3.1-405b").layers == 100


def test_an_override_can_point_a_device_at_another_price_sheet():
    with catalog.overriding({"nvidia-h100-sxm.deployment.prices": "nvidia-dgx-h200"}):
        assert catalog.load_device("nvidia-h100-sxm").price_sheet_id() == "nvidia-dgx-h200"


@pytest.mark.parametrize("mapping,message", [
    ({"groq-card.price.crd": "1 USD"}, r"groq-card\.toml has no field 'price\.crd'; fields that can be overridden: .*price\.unit"),
    ({"groq-card.price.unit": "15 TB"}, r"'15 TB'.*not a money unit"),
    ({"groq-card.price.unit": "-5 USD"}, r"finite, non-negative"),
    ({"no-such-thing.price.unit": "1 USD"}, r"names no catalog entry.*groq-card"),
    ({"groq-card.price.unit": [1, 2]}, r"the value must be a quantity string"),
    ({"gadgets/groq-card.price.unit": "1 USD"}, r"'gadgets' is not one of hardware, models, prices"),
    ({"groq-card.price": "1 USD"}, r"is a table, not a number"),
    ("groq-card.price.unit=1", r"overrides must be a mapping"),
])
def test_a_bad_override_is_refused_naming_the_key_and_what_is_allowed(mapping, message):
    with pytest.raises(catalog.CatalogError, match=message):
        catalog.parse_overrides(mapping)
    assert catalog.active_overrides() == ()


def test_an_ambiguous_id_must_name_its_kind(user_data):
    shutil.copy(paths.PRICES / "groq-card.toml", user_data / "prices" / "groq-lpu-v1.toml")
    text = (user_data / "prices" / "groq-lpu-v1.toml").read_text().replace('id = "groq-card"', 'id = "groq-lpu-v1"')
    (user_data / "prices" / "groq-lpu-v1.toml").write_text(text)
    with pytest.raises(catalog.CatalogError, match="both a hardware and a prices id"):
        catalog.parse_overrides({"groq-lpu-v1.price.unit": "1 USD"})
    assert catalog.parse_overrides({"prices/groq-lpu-v1.price.unit": "1 USD"})[0].kind == "prices"
