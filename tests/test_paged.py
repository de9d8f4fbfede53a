"""cuattn.paged_cache: contiguous caches cut into pages and a block table that decode reads."""

import numpy as np
import pytest

import cuattn
from helpers import draw


@pytest.mark.parametrize("length, page_size", [(1000, 256), (1024, 256), (7, 1), (5, 8), (1, 3), (300, 300)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_paged_cache_layout(rng, length, page_size, shuffle):
    """Every page holds the keys the block table says, zeros past L on each row's last page; the
    table is a permutation of the pages (in order without shuffle)."""
    b, hkv, d = 3, 2, 5
    k, v = rng.standard_normal((2, b, hkv, length, d)).astype(np.float32)
    kp, vp, table = cuattn.paged_cache(k, v, page_size, shuffle=shuffle, seed=rng)
    per_row = -(-length // page_size)
    assert kp.shape == vp.shape == (b * per_row, hkv, page_size, d) and kp.dtype == k.dtype
    assert table.shape == (b, per_row) and table.dtype == np.int32
    assert sorted(table.reshape(-1).tolist()) == list(range(b * per_row))
    if not shuffle:
        np.testing.assert_array_equal(table.reshape(-1), np.arange(b * per_row))
    for x, xp in ((k, kp), (v, vp)):
        for row in range(b):
            for j in range(per_row):
                page = xp[table[row, j]]
                keys = x[row, :, j * page_size:(j + 1) * page_size]
                np.testing.assert_array_equal(page[:, :keys.shape[1]], keys)
                assert not page[:, keys.shape[1]:].any()


def test_paged_cache_seed(rng):
    """The same seed gives the same order; a Generator is taken as is; strided views work."""
    k = rng.standard_normal((4, 2, 64, 16)).astype(np.float16)
    view = np.asfortranarray(k)[:, :, ::2]
    first = cuattn.paged_cache(k, k, 8, seed=7)[2]
    np.testing.assert_array_equal(first, cuattn.paged_cache(k, k, 8, seed=7)[2])
    gen = np.random.default_rng(7)
    np.testing.assert_array_equal(first, cuattn.paged_cache(k, k, 8, seed=gen)[2])
    kp, _, table = cuattn.paged_cache(view, view, 8, seed=1)
    np.testing.assert_array_equal(kp[table[3, 2]], view[3, :, 16:24])


def test_paged_cache_decode_matches_contiguous(rng):
    """decode on the pages (CPU) gives the contiguous call's result, with ragged lengths and a
    length that is not a whole number of pages."""
    b, hq, hkv, length, d = 3, 8, 2, 777, 64
    q = draw(rng, (b, hq, 1, d), np.float32)
    k, v = draw(rng, (b, hkv, length, d), np.float32), draw(rng, (b, hkv, length, d), np.float32)
    lens = np.array([777, 300, 0], np.int32)
    kp, vp, table = cuattn.paged_cache(k, v, 64, seed=rng)
    o, lse = cuattn.decode(q, k, v, cache_seqlens=lens, alibi_slopes="default", return_lse=True)
    op, lsep = cuattn.decode(q, kp, vp, cache_seqlens=lens, block_table=table, alibi_slopes="default",
                             return_lse=True)
    np.testing.assert_allclose(op, o, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lsep, lse, rtol=1e-6)


def test_paged_cache_errors(rng):
    k = rng.standard_normal((2, 2, 16, 8)).astype(np.float32)
    for bad in (0, -1, 2.5, True, "4"):
        with pytest.raises((ValueError, TypeError), match="page_size"):
            cuattn.paged_cache(k, k, bad)
    with pytest.raises(ValueError, match="shape"):
        cuattn.paged_cache(k, k[:, :, :8], 4)
    with pytest.raises(ValueError, match="shape"):
        cuattn.paged_cache(k[0], k[0], 4)
    with pytest.raises(TypeError, match="dtype"):
        cuattn.paged_cache(k, k.astype(np.float16), 4)
    with pytest.raises(TypeError, match="k_cache"):
        cuattn.paged_cache(k.tolist(), k, 4)


@pytest.mark.gpu
def test_gpu_paged_cache(cp, rng):
    """CuPy caches give CuPy pages and table, the same as the NumPy call's; decode on them (GPU)
    matches the contiguous call bit for bit."""
    b, hq, hkv, length, d = 2, 16, 4, 1000, 128
    q = draw(rng, (b, hq, 1, d), np.float16)
    k, v = draw(rng, (b, hkv, length, d), np.float16), draw(rng, (b, hkv, length, d), np.float16)
    kp, vp, table = cuattn.paged_cache(cp.asarray(k), cp.asarray(v), 256, seed=3)
    assert all(isinstance(x, cp.ndarray) for x in (kp, vp, table))
    ref = cuattn.paged_cache(k, v, 256, seed=3)
    for x, r in zip((kp, vp, table), ref):
        np.testing.assert_array_equal(x.get(), r)
    lens = cp.asarray(np.array([1000, 517], np.int32))
    o = cuattn.decode(cp.asarray(q), cp.asarray(k), cp.asarray(v), cache_seqlens=lens, alibi_slopes="default")
    op = cuattn.decode(cp.asarray(q), kp, vp, cache_seqlens=lens, block_table=table, alibi_slopes="default")
    np.testing.assert_array_equal(op.get(), o.get())
