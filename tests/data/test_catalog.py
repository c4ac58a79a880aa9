"""Every catalog file validates; broken files are refused with the file and field named."""


import pytest

from lpulab import catalog, paths

GOOD = '''
id = "{id}"
name = "Test chip"
vendor = "Test"
category = "gpu"
released = "2024"
[sources.ds]
title = "datasheet"
url = "https://example.org"
date = "2024"
confidence = "official"
[memory.hbm]
placement = "off-chip"
capacity = {{ value = 80, unit = "GB", source = "ds", kind = "vendor-peak" }}
bandwidth = {{ value = 3.35, unit = "TB/s", source = "ds", kind = "vendor-peak" }}
[compute.bf16]
peak = {{ value = 989, unit = "TFLOP/s", source = "ds", kind = "vendor-peak", sparsity = "dense" }}
'''


def write(tmp_path, text, name="test-chip"):
    p = tmp_path / f"{name}.toml"
    p.write_text(text.format(id=name) if "{id}" in text else text)
    return p


@pytest.mark.parametrize("path", sorted(paths.HARDWARE.glob("*.toml")), ids=lambda p: p.stem)
def test_every_device_file_validates(path):
    d = catalog.load_device(path)
    assert d.id == path.stem
    assert d.memory and all(t.capacity is None or t.capacity.si > 0 for t in d.memory.values())
    for v in d.compute.values():
        assert v.sparsity == "dense"


@pytest.mark.parametrize("path", sorted(paths.MODELS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_model_file_validates(path):
    m = catalog.load_model(path)
    assert m.layers > 0 and m.hidden_size > 0


def test_validate_all_finds_no_errors():
    ok, errors = catalog.validate_all()
    assert errors == []
    assert len(ok) >= 10


def test_pinned_facts():
    # numbers the claims rest on: 220 MiB, 80 TB/s, 3.35 TB/s
    lpu = catalog.load_device("groq-lpu-v1")
    assert lpu.capacity() == pytest.approx(220 * 2**20)
    assert lpu.bandwidth() == pytest.approx(80e12)
    assert catalog.load_device("nvidia-h100-sxm").bandwidth("hbm") == pytest.approx(3.35e12)
    assert lpu.main_tier == "sram" and catalog.load_device("nvidia-h100-sxm").main_tier == "hbm"


def test_unverified_numbers_are_estimates_with_ranges():
    lpu = catalog.load_device("groq-lpu-v1")
    for v in list(lpu.power.values()) + list(lpu.price.values()):
        if v.source.confidence == "unverified":
            assert v.kind == "estimate" and v.is_range


def test_a_good_file_loads(tmp_path):
    d = catalog.load_device(write(tmp_path, GOOD))
    assert d.bandwidth() == pytest.approx(3.35e12)


@pytest.mark.parametrize("old,new,field,message", [
    ('unit = "TB/s", ', "", "memory.hbm.bandwidth", "missing field(s) unit"),
    ('"TB/s"', '"TB/sx"', "memory.hbm.bandwidth.unit", "unknown unit"),
    ('"TB/s"', '"GB"', "memory.hbm.bandwidth.unit", "not a bandwidth unit"),
    ('source = "ds", kind = "vendor-peak" }\n[compute', 'kind = "vendor-peak" }\n[compute', "memory.hbm.bandwidth", "missing field(s) source"),
    ('value = 3.35', 'value = -3.35', "memory.hbm.bandwidth.value", "negative"),
    ('[memory.hbm]\n', '[memory.hbm]\ncolour = "red"\n', "memory.hbm", "unknown field(s) colour"),
    ('source = "ds", kind = "vendor-peak" }\n[compute', 'source = "nowhere", kind = "vendor-peak" }\n[compute', "memory.hbm.bandwidth.source", "unknown source"),
    ('kind = "vendor-peak", sparsity', 'kind = "guess", sparsity', "compute.bf16.peak.kind", "not one of"),
    (', sparsity = "dense" ', ' ', "compute.bf16.peak.sparsity", "sparsity"),
    ('category = "gpu"', 'category = "fpga"', "category", "not one of"),
    ('[memory.hbm]', '[memory.tape]', "memory.tape", "not one of"),
    ('value = 3.35', 'value = "fast"', "memory.hbm.bandwidth.value", "finite number"),
])
def test_broken_files_are_refused_with_file_and_field(tmp_path, old, new, field, message):
    text = GOOD.format(id="test-chip")
    assert old in text, old
    p = write(tmp_path, text.replace(old, new, 1))
    with pytest.raises(catalog.CatalogError) as e:
        catalog.load_device(p)
    msg = str(e.value)
    assert "test-chip.toml" in msg and field in msg and message in msg


def test_derived_value_needs_a_formula(tmp_path):
    text = GOOD.format(id="test-chip").replace('value = 3.35, unit = "TB/s", source = "ds", kind = "vendor-peak"',
                                               'value = 3.35, unit = "TB/s", source = "ds", kind = "derived"')
    with pytest.raises(catalog.CatalogError, match="formula"):
        catalog.load_device(write(tmp_path, text))


def test_id_must_match_file_name(tmp_path):
    p = tmp_path / "other.toml"
    p.write_text(GOOD.format(id="test-chip"))
    with pytest.raises(catalog.CatalogError, match="file name"):
        catalog.load_device(p)


def test_invalid_toml_is_named(tmp_path):
    p = write(tmp_path, "id = \n")
    with pytest.raises(catalog.CatalogError, match=r"test-chip.toml: not valid TOML"):
        catalog.load_device(p)


def test_unknown_device_lists_the_known_ones():
    with pytest.raises(KeyError, match="nvidia-h100-sxm"):
        catalog.load_device("nvidia-h1000")


def test_broken_model_is_refused(tmp_path):
    src = (paths.MODELS / "llama-2-7b.toml").read_text()
    p = tmp_path / "llama-2-7b.toml"
    p.write_text(src.replace("kv_heads", "kv_headz", 1))
    with pytest.raises(catalog.CatalogError, match=r"llama-2-7b.toml: architecture"):
        catalog.load_model(p)


def test_files_read_are_hashed():
    catalog.load_device("groq-lpu-v1")
    files = catalog.files_read()
    assert "data/hardware/groq-lpu-v1.toml" in files
    assert len(files["data/hardware/groq-lpu-v1.toml"]) == 64
