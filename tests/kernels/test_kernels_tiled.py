"""Tiled quantised products against the exact reference, the formats, the threads, the cache."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from lpulab.kernels import Decoder, DecoderConfig, ShardedDecoder, build_plan, cache, ops, tiled
from lpulab.kernels.ops import E4M3, Fp8Weight, Int4Weight, Int8Weight

FORMATS = [Int8Weight, Fp8Weight, Int4Weight]


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of a few hundred elements, so that every path (several tiles, several
    reduction chunks, partial tiles, several threads) runs on small matrices."""
    monkeypatch.setattr(tiled, "TILE_ELEMS", 256)
    monkeypatch.setattr(tiled, "GEMM_TILE_ELEMS", 512)
    monkeypatch.setattr(tiled, "PARALLEL_MIN_ELEMS", 0)
    monkeypatch.setattr(tiled, "ROW_ALIGN", 4)


@pytest.fixture(params=[1, 2, 3])
def threads(request):
    tiled.set_threads(request.param)
    yield request.param
    tiled.set_threads(None)


def reference_acc(xq, fmt):
    """The exact integer product, in Python integers (no float rounding anywhere)."""
    w = fmt.dense_int()
    assert np.all(w == np.rint(w))
    return np.array([[sum(int(a) * int(b) for a, b in zip(row, wr)) for wr in w.astype(np.int64)]
                     for row in xq.astype(np.int64)], dtype=object)


@pytest.mark.parametrize("cls", FORMATS)
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_tiled_product_is_the_exact_integer_product(cls, bits, n, small_tiles, threads):
    o, k = 37, 2 * 1100 if cls is Int8Weight else 70  # int8: three float32 reduction chunks
    w = cls.quantize(rng(1).standard_normal((o, k)).astype(np.float32), act_bits=bits)
    lim = 2 ** (bits - 1) - 1
    xq = rng(2).integers(-lim, lim + 1, (n, k)).astype(np.float32)
    xq[0] = lim  # the largest partial sums there can be
    acc = w.int_acc(xq)
    assert acc.dtype == np.float64
    np.testing.assert_array_equal(acc.astype(object), reference_acc(xq, w))


@pytest.mark.parametrize("cls", FORMATS)
def test_matmul_is_the_dequantised_product_and_independent_of_tiles_and_threads(cls, monkeypatch):
    w = cls.quantize(rng(3).standard_normal((50, 64)).astype(np.float32))
    x = rng(4).standard_normal((3, 64)).astype(np.float32)
    x[1, 5] = 300.0  # a "massive activation"
    ref = w.matmul_t(x)
    xq, xs = ops._qrows(x, None, w.act_bits)
    np.testing.assert_array_equal(ref, ops.dequantize_acc(xq.astype(np.float64) @ w.dense_int().T, xs, w.scale))
    np.testing.assert_allclose(ref, x @ w.dequantize().T, rtol=2e-3, atol=2e-3 * np.abs(ref).max())
    for tile, nthreads in [(128, 1), (128, 3), (1 << 19, 2)]:
        monkeypatch.setattr(tiled, "TILE_ELEMS", tile)
        monkeypatch.setattr(tiled, "GEMM_TILE_ELEMS", tile)
        monkeypatch.setattr(tiled, "PARALLEL_MIN_ELEMS", 0)
        tiled.set_threads(nthreads)
        try:
            np.testing.assert_array_equal(w.matmul_t(x), ref)
            np.testing.assert_array_equal(w.matmul_t(x[:1]), ref[:1])
        finally:
            tiled.set_threads(None)


def test_several_weights_in_one_job_equal_each_alone(small_tiles, threads):
    x = rng(5).standard_normal((2, 48)).astype(np.float32)
    for make in (lambda w: w, Int8Weight.quantize, Fp8Weight.quantize, Int4Weight.quantize):
        ws = [make(rng(6 + i).standard_normal((o, 48)).astype(np.float32)) for i, o in enumerate((40, 8, 8))]
        together = ops.matmul_t_many(x, ws)
        for w, y in zip(ws, together):
            np.testing.assert_array_equal(y, ops.matmul_t_many(x, [w])[0])
    mixed = [Int8Weight.quantize(ws[0].dequantize()), ws[1], rng(9).standard_normal((3, 48)).astype(np.float32)]
    for w, y in zip(mixed, ops.matmul_t_many(x, mixed)):
        np.testing.assert_array_equal(y, ops.matmul_t(x, w))


def test_float_products_split_over_threads(small_tiles, threads):
    w = rng(10).standard_normal((90, 33)).astype(np.float32)
    for n in (1, 4):
        x = rng(11).standard_normal((n, 33)).astype(np.float32)
        np.testing.assert_allclose(tiled.float_matmul_t(x, [w, w[:7]]), np.hstack([x @ w.T, x @ w[:7].T]),
                                   rtol=1e-5, atol=1e-5)


def test_int_matmul_t_keeps_its_integer_contract():
    xq = rng(12).integers(-127, 128, (2, 70)).astype(np.int8)
    wq = rng(13).integers(-127, 128, (9, 70)).astype(np.int8)
    acc = ops.int_matmul_t(xq, wq)
    assert acc.dtype == np.int32
    np.testing.assert_array_equal(acc, xq.astype(np.int64) @ wq.astype(np.int64).T)
    assert ops.int_matmul_t(xq.astype(np.int16), wq).dtype == np.int64
    with pytest.raises(TypeError, match="int8/int16 activations and int8 weights"):
        ops.int_matmul_t(xq.astype(np.float32), wq)
    with pytest.raises(ValueError, match="inner dimensions differ"):
        ops.int_matmul_t(xq, wq[:, :5])


# ----------------------------------------------------------------------------- formats

def test_e4m3_table_and_rounding():
    assert E4M3[0x7E] == 448.0 and E4M3[0x01] == 2.0**-9 and E4M3[0x08] == 2.0**-6 and E4M3[0x38] == 1.0
    assert np.isnan(E4M3[0x7F]) and np.isnan(E4M3[0xFF]) and E4M3[0xB8] == -1.0
    codes = ops.quantize_e4m3(np.array([1.0, 1.0625, 1.1875, -3.3, 1000.0, -1000.0, 0.0, 2.0**-10, 3 * 2.0**-11]))
    # 1.0625 is half-way between 1 (0x38, even) and 1.125 (0x39): ties to even; 1.1875 between 0x39 and 0x3A
    assert list(E4M3[codes]) == [1.0, 1.0, 1.25, -3.25, 448.0, -448.0, 0.0, 0.0, 2.0**-9]
    w = rng(14).standard_normal((8, 40)).astype(np.float32)
    q = Fp8Weight.quantize(w)
    assert q.codes.dtype == np.uint8 and q.payload_nbytes == 8 * 40
    # 3 mantissa bits: within half a unit in the last place (2**-4 relative) of each weight
    assert np.all(np.abs(q.dequantize() - w) <= 2.0**-4 * np.abs(w) + 2.0**-9 * np.abs(w).max())
    with pytest.raises(ValueError, match="NaN codes"):
        Fp8Weight(np.full((1, 2), 0x7F, np.uint8), np.ones(1, np.float32))


def test_int4_blocks_packing_and_slices():
    w = rng(15).standard_normal((6, 70)).astype(np.float32)
    w[2, 32:64] *= 1e-3  # a quiet block gets its own power-of-two factor
    q = Int4Weight.quantize(w)
    assert q.packed.shape == (6, 35) and q.exp.shape == (6, 3) and q.payload_nbytes == 6 * 70 // 2
    assert q.exp[2, 1] >= 9 and q.exp.max() <= ops.INT4_SPAN
    step = (q.scale.astype(np.float64) * 2.0**ops.INT4_SPAN)[:, None] * np.ldexp(1.0, -np.repeat(q.exp, 32, 1)[:, :70])
    assert np.all(np.abs(q.dequantize() - w) <= step / 2 + 1e-7)
    assert np.abs(q.dense_int()).max() <= q.int_max
    assert np.all(q.dense_int() / np.ldexp(1.0, ops.INT4_SPAN - np.repeat(q.exp, 32, 1)[:, :70]) % 1 == 0)
    np.testing.assert_array_equal(q.slice(1, 32, 70).dense_int(), q.dense_int()[:, 32:])
    np.testing.assert_array_equal(q.slice(0, 1, 4).slice(1, 64, 70).dense_int(), q.dense_int()[1:4, 64:])
    np.testing.assert_array_equal(q.take_rows(np.array([4, 0])), q.dequantize()[[4, 0]])
    for a, b in [(16, 70), (3, 37), (33, 64), (5, 7), (63, 65)]:  # inside blocks and inside bytes
        part = q.slice(1, a, b)
        np.testing.assert_array_equal(part.dense_int(), q.dense_int()[:, a:b])
        np.testing.assert_array_equal(part.slice(1, 1, b - a).dense_int(), q.dense_int()[:, a + 1:b])
        assert part.payload_nbytes == (6 * (b - a) + 1) // 2
    with pytest.raises(ValueError, match="outside 0:70"):
        q.slice(1, 10, 71)


def test_int4_sharding_cuts_anywhere_and_stays_bit_exact():
    cfg = DecoderConfig(n_layers=2, hidden=64, n_heads=4, n_kv_heads=2, head_dim=16, ffn=96, vocab=40)
    m = Decoder.random(cfg, seed=0, precision="int4")
    prompt = np.array([[3, 1, 4, 1, 5]])
    whole = m.generate(prompt, 3)
    for cut in (40, 41, 64):  # inside a block, inside a byte, on a block boundary
        sd = ShardedDecoder(m, build_plan(cfg, n_chips=2, tensor_parallel=2, sram_bytes=10**12, ffn_cuts=[cut]))
        assert sd.exactness == "bit-exact"
        shard = sd.generate(prompt, 3)
        for s, ref in zip(shard.steps, whole.logits):
            np.testing.assert_array_equal(s.logits, ref)


@pytest.mark.parametrize("precision", ["fp8", "int4"])
def test_other_formats_shard_bit_for_bit(precision):
    cfg = DecoderConfig(n_layers=3, hidden=64, n_heads=6, n_kv_heads=3, head_dim=32, ffn=128, vocab=50,
                        tied_embeddings=False)
    m = Decoder.random(cfg, seed=1, precision=precision)
    prompt = np.array([[2, 7, 1, 8], [2, 8, 1, 8]])
    whole = m.generate(prompt, 3)
    for stages, tp in [(3, 1), (1, 3)]:
        sd = ShardedDecoder(m, build_plan(cfg, n_chips=stages * tp, pipeline_stages=stages, tensor_parallel=tp,
                                          sram_bytes=10**12, ffn_cuts=[37, 96] if tp == 3 else None))
        shard = sd.generate(prompt, 3)
        assert sd.exactness == "bit-exact"
        for s, ref in zip(shard.steps, whole.logits):
            np.testing.assert_array_equal(s.logits, ref)
        np.testing.assert_array_equal(shard.tokens, whole.tokens)


def test_format_errors_are_clear():
    with pytest.raises(ValueError, match=r"Int8Weight.scale must be float32 of shape \(3,\)"):
        Int8Weight(np.zeros((3, 4), np.int8), np.ones(2, np.float32))
    with pytest.raises(ValueError, match="act_bits must be one of"):
        Fp8Weight.quantize(np.ones((2, 2), np.float32), act_bits=12)
    with pytest.raises(ValueError, match="block must be an even number"):
        Int4Weight.quantize(np.ones((2, 2), np.float32), block=3)
    with pytest.raises(ValueError, match=r"precision must be one of \('fp32', 'int8', 'fp8', 'int4'\)"):
        Decoder.random(DecoderConfig(), precision="int2")
    with pytest.raises(ValueError, match="precision must be one of int8, fp8, int4"):
        Decoder.random(DecoderConfig()).quantized(precision="int2")


# ----------------------------------------------------------------------------- threads

def test_row_splits_cover_the_rows():
    for o in (1, 15, 16, 17, 100, 1000):
        for parts in (1, 2, 3, 8):
            sp = tiled.row_splits(o, parts)
            assert sp[0][0] == 0 and sp[-1][1] == o and all(b == c for (_, b), (c, _) in itertools.pairwise(sp))
            assert len(sp) <= parts and all(a % tiled.ROW_ALIGN == 0 for a, _ in sp)


def test_worker_errors_reach_the_caller_and_the_pool_keeps_working():
    tiled.set_threads(3)
    try:
        seen = []

        def fn(i):
            if i == 2:
                raise RuntimeError("part 2 failed")
            seen.append(i)

        with pytest.raises(RuntimeError, match="part 2 failed"):
            tiled.run_parallel(fn, [(0,), (1,), (2,)])
        seen.clear()
        tiled.run_parallel(lambda i: seen.append(i), [(0,), (1,), (2,)])
        assert sorted(seen) == [0, 1, 2]
    finally:
        tiled.set_threads(None)


def test_thread_count_from_the_environment(monkeypatch):
    monkeypatch.setenv("LPULAB_THREADS", "3")
    tiled.set_threads(None)
    try:
        assert tiled.threads() == 3
        monkeypatch.setenv("LPULAB_THREADS", "zero")
        tiled.set_threads(None)
        with pytest.raises(ValueError, match="LPULAB_THREADS must be a positive integer"):
            tiled.threads()
    finally:
        monkeypatch.delenv("LPULAB_THREADS")
        tiled.set_threads(None)
    with pytest.raises(ValueError, match="positive integer or None"):
        tiled.set_threads(0)


def test_blas_is_held_at_one_thread_inside_and_restored():
    libs = tiled._blas_controllers()
    if not libs:
        pytest.skip("no BLAS that threadpoolctl controls")
    before = [lib.get_num_threads() for lib in libs]
    with tiled.blas_single():
        with tiled.blas_single():
            assert all(lib.get_num_threads() == 1 for lib in libs)
        assert all(lib.get_num_threads() == 1 for lib in libs)
    assert [lib.get_num_threads() for lib in libs] == before


# ----------------------------------------------------------------------------- cache

def test_cache_reuses_only_unchanged_inputs(tmp_path, monkeypatch):
    monkeypatch.setenv("LPULAB_CACHE", str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    v1, i1 = cache.cached("thing", {"a": 1}, compute)
    v2, i2 = cache.cached("thing", {"a": 1}, compute)
    assert (v1, v2) == ({"value": 1}, {"value": 1}) and len(calls) == 1
    assert not i1.reused and i2.reused and i1.key == i2.key and i2.measured_utc == i1.measured_utc
    assert "reused from the cache" in i2.sentence("X") and "measured in this run" in i1.sentence("X")
    assert i1.load is not None and i2.load == i1.load and "load average" in i2.sentence("X")
    v3, i3 = cache.cached("thing", {"a": 2}, compute)
    assert v3 == {"value": 2} and not i3.reused and i3.key != i1.key
    v4, i4 = cache.cached("thing", {"a": 1}, compute, enabled=False)  # measured again, replaces the entry
    assert v4 == {"value": 3} and not i4.reused
    assert cache.cached("thing", {"a": 1}, compute)[0] == {"value": 3}
    # a damaged entry is measured again, never half-read
    entry = Path(i4.path)
    assert entry.parent == tmp_path and entry.with_suffix(".json").is_file()
    entry.write_bytes(b"not a pickle")
    v5, i5 = cache.cached("thing", json.loads(json.dumps({"a": 1})), compute)
    assert v5 == {"value": 4} and not i5.reused
    assert not list(tmp_path.glob(".*tmp"))
    assert cache.clear("thing") == 2 and not list(tmp_path.glob("thing-*"))
    with pytest.raises(ValueError, match="kind must be letters"):
        cache.cached("../x", {}, compute)


def test_host_bench_is_keyed_on_machine_and_code(tmp_path, monkeypatch):
    monkeypatch.setenv("LPULAB_CACHE", str(tmp_path))
    kw = dict(threads=1, sizes=[1 << 10], repeats=2, kernels=("copy",), gemm_n=32, gemv_shape=(64, 64))
    a, ia = cache.cached_hostbench(quick=True, **kw)
    b, ib = cache.cached_hostbench(quick=True, **kw)
    assert not ia.reused and ib.reused and a.stream[0].times == b.stream[0].times
    assert ia.inputs["machine"]["cpus"] >= 1 and ia.inputs["code"] == cache.source_hash("hostbench.py")
    c, ic = cache.cached_hostbench(quick=True, **{**kw, "repeats": 3})
    assert not ic.reused and len(c.stream[0].times) == 3


def test_file_hash(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    assert cache.file_sha256(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
