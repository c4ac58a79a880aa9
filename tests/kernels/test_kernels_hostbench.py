"""Host bench: quick mode gives a loadable device entry with positive numbers."""

import tomllib

import numpy as np
import pytest

from lpulab.kernels import hostbench as hb

ALLOWED_QUANTITY_KEYS = {"value", "unit", "source", "kind", "sparsity", "note", "formula", "low", "high"}
KINDS = {"vendor-peak", "derived", "measured", "estimate"}


@pytest.fixture(scope="module")
def quick():
    return hb.run_hostbench(quick=True, date="2026-11-24")


def test_quick_mode_gives_a_device_entry_with_positive_numbers(quick):
    assert quick.elapsed_s < 30  # quick is meant to take < 5 s; not a timing assertion, a sanity bound
    entry = hb.device_entry(quick)
    text = hb.to_toml(entry)
    loaded = tomllib.loads(text)
    assert loaded == entry
    assert loaded["id"] == "host-measured" and loaded["category"] == "cpu" and loaded["released"] == "2026-11-24"
    assert loaded["sources"]["hostbench"]["confidence"] == "measured"
    assert "dram" in loaded["memory"] and "fp32" in loaded["compute"]
    quantities = [t[k] for t in loaded["memory"].values() for k in ("capacity", "bandwidth") if k in t]
    quantities += [c["peak"] for c in loaded["compute"].values()]
    for q in quantities:
        assert set(q) <= ALLOWED_QUANTITY_KEYS
        assert q["kind"] in KINDS and q["source"] in loaded["sources"]
        assert q["value"] > 0
    for tier, t in loaded["memory"].items():
        assert t["placement"] == ("off-chip" if tier == "dram" else "on-chip")
        assert t["bandwidth"]["unit"] == "GB/s" and t["bandwidth"]["kind"] == "measured"
        assert "median of" in t["bandwidth"]["note"]


def test_stream_results_are_positive_and_counted_as_stream_does(quick):
    assert {r.kernel for r in quick.stream} == set(hb.KERNELS)
    for r in quick.stream:
        assert r.best_gbs >= r.median_gbs > 0
        assert r.bytes_per_rep == hb.STREAM_BYTES[r.kernel] * r.elements * r.inner_reps
    gemm = [c for c in quick.compute if c.kernel == "gemm"]
    assert all(c.best_gflops > 0 for c in gemm)
    assert quick.to_json().startswith("{")


def test_stream_kernels_compute_the_right_values():
    arr = hb._Arrays(5000, 2)
    arr.a[:] = np.arange(5000.0)
    arr.b[:] = 1.0
    arr.run(None, "copy", 1)
    np.testing.assert_array_equal(arr.c, np.arange(5000.0))
    arr.run(None, "scale", 1)
    np.testing.assert_array_equal(arr.b, 3 * np.arange(5000.0))
    arr.run(None, "add", 3)  # repeated inside one call through zero-stride views: same result
    np.testing.assert_array_equal(arr.c, 4 * np.arange(5000.0))
    arr.run(None, "triad", 1)
    np.testing.assert_array_equal(arr.a, 3 * np.arange(5000.0) + 12 * np.arange(5000.0))
    big = hb._Arrays(3 * hb.TRIAD_BLOCK + 5, 1)  # the blocked path
    big.c[:] = 2.0
    big.run(None, "triad", 2)
    np.testing.assert_array_equal(big.a, 2.0 + 3 * 2.0)


def test_read_caches_from_a_fake_sysfs(tmp_path):
    for i, (lvl, typ, size, shared) in enumerate([(1, "Data", "48K", "0"), (1, "Instruction", "32K", "0"),
                                                  (2, "Unified", "1024K", "0"), (3, "Unified", "32768K", "0-1")]):
        d = tmp_path / f"index{i}"
        d.mkdir()
        for k, v in dict(level=str(lvl), type=typ, size=size, shared_cpu_list=shared).items():
            (d / k).write_text(v + "\n")
    caches = hb.read_caches(tmp_path)
    assert [(c.level, c.size_bytes, c.shared_cpus) for c in caches] == [(1, 49152, 1), (2, 1048576, 1), (3, 33554432, 2)]
    assert hb.read_caches(tmp_path / "missing") == []


def test_tier_choice():
    caches = [hb.CacheLevel(1, "Data", 48 * 1024, 1, ""), hb.CacheLevel(2, "Unified", 1 << 20, 1, ""),
              hb.CacheLevel(3, "Unified", 32 << 20, 2, "")]
    mk = lambda n: hb.StreamResult("triad", n, 2, 1, (1.0,), 3 * n * 8)  # noqa: E731
    results = [mk(2 * (1 << e)) for e in range(9, 22)] + [mk(1 << 24)]
    tiers = hb._pick_tiers(results, caches, threads=2)
    assert tiers["l1"].working_set_bytes / 2 <= 24 * 1024
    assert 48 * 1024 < tiers["l2"].working_set_bytes / 2 <= 512 * 1024
    assert tiers["l3"].working_set_bytes <= 16 << 20 and tiers["l3"].working_set_bytes / 2 > 1 << 20
    assert tiers["dram"].elements == 1 << 24


def test_write_device_toml(tmp_path, quick):
    p = hb.write_device_toml(tmp_path / "host.toml", quick, id="my-host")
    assert tomllib.loads(p.read_text())["id"] == "my-host"
    assert not (tmp_path / "host.toml.tmp").exists()


def test_bad_kernel_is_refused():
    with pytest.raises(ValueError, match="kernel must be one of"):
        hb.measure_stream("fma", 100)


def test_dram_size_follows_the_last_level_cache():
    assert hb._default_sizes(2, False, 32 << 20)[-1] == 1 << 24          # 128 MiB arrays: 4x a 32 MiB L3
    assert hb._default_sizes(2, False, 256 << 20)[-1] * 8 >= 4 * (256 << 20)
    assert hb._default_sizes(2, True, 256 << 20)[-1] * 8 * 3 > 2 * (256 << 20)


# --------------------------------------------------------------------------- as a catalog device


def test_the_entry_loads_with_the_catalog_and_feeds_the_roofline(tmp_path, quick):
    from lpulab import catalog, roofline

    path = hb.write_device_toml(tmp_path / "host-measured.toml", quick)
    dev = catalog.load_device(path)  # the catalog's own loader and schema
    assert dev.id == "host-measured" and dev.category == "cpu" and dev.main_tier == "dram"
    assert {s.confidence for s in dev.sources.values()} <= set(catalog.CONFIDENCES)
    assert dev.sources["hostbench"].confidence == "measured"
    direct = hb.as_device(quick)  # same text, same parser, no file
    assert {t: m.bandwidth.si for t, m in direct.memory.items()} == {t: m.bandwidth.si for t, m in dev.memory.items()}
    r = roofline.roofs(dev, "fp32")
    assert set(r.bandwidth) == set(dev.memory) and r.peak == dev.peak("fp32") > 0
    assert r.bandwidth["dram"] == dev.bandwidth("dram") > 0
    # memory-bound far below the ridge, compute-bound far above it
    assert roofline.bound(1.0, {"dram": 1e9}, r) == "dram" and roofline.bound(1e15, {"dram": 1.0}, r) == "compute"


def test_a_broken_entry_is_refused_naming_the_field(quick):
    from lpulab import catalog

    entry = hb.device_entry(quick)
    entry["sources"]["hostbench"]["confidence"] = "reported"
    with pytest.raises(catalog.CatalogError, match=r"host-measured\.toml: sources\.hostbench\.confidence: 'reported'"):
        hb.as_device(entry)


def test_tier_for_picks_the_fastest_tier_that_holds_the_bytes(quick):
    dev = hb.as_device(quick)
    caps = {t: dev.memory[t].capacity.si for t in ("l1", "l2", "l3") if t in dev.memory}
    for t, cap in caps.items():
        assert hb.tier_for(dev, cap) == t
    assert hb.tier_for(dev, 1e12) == "dram"
    assert list(hb.tier_for(dev, [1.0, 1e12])) == [min(caps, key=caps.get) if caps else "dram", "dram"]
