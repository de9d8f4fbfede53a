"""Paged KV caches from contiguous ones: the layout ``cuattn.decode(..., block_table=...)`` reads."""

from __future__ import annotations

import numpy as np

from ._backend import array_kind, as_cupy, require_cupy


def paged_cache(k_cache, v_cache, page_size, *, shuffle=True, seed=None):
    """Cut contiguous K and V caches into pages and a block table, as a paged-attention server
    would hold them.

    Parameters
    ----------
    k_cache, v_cache : array, shape (B, Hkv, L, D)
        Contiguous caches (both NumPy, or both CuPy or other GPU arrays; any dtype and strides).
    page_size : int
        Keys per page (>= 1). Where L is not a whole number of pages, each row's last page is
        padded with zeros (``decode`` never reads keys past a row's ``cache_seqlens``).
    shuffle : bool, optional
        True (default): the pages of all rows in a random order (seeded by ``seed``), as an
        allocator leaves them; False: row 0's pages first, in key order, then row 1's.
    seed : int or numpy.random.Generator, optional
        The shuffle's seed or generator (``numpy.random.default_rng(seed)``).

    Returns
    -------
    k_pages, v_pages : array, shape (B * P, Hkv, page_size, D), the caches' array type and dtype
        P = ceil(L / page_size) pages a row.
    block_table : int32 array, shape (B, P), the caches' array type
        ``block_table[b, j]`` is the page holding keys ``j * page_size ...`` of row b: pass it with
        the pages as ``cuattn.decode(q, k_pages, v_pages, block_table=block_table, ...)``.

    Raises
    ------
    ValueError
        Caches not 4-d, of different shapes, or ``page_size`` < 1.
    TypeError
        Caches of different array types or dtypes, or not arrays.

    Examples
    --------
    >>> import numpy as np, cuattn
    >>> k = np.ones((2, 4, 1000, 64), np.float32)
    >>> kp, vp, table = cuattn.paged_cache(k, k, 256, seed=0)
    >>> kp.shape, table.shape, table.dtype
    ((8, 4, 256, 64), (2, 4), dtype('int32'))
    """
    kinds = (array_kind(k_cache, "k_cache"), array_kind(v_cache, "v_cache"))
    if kinds[0] != kinds[1]:
        raise TypeError(f"k_cache and v_cache must be the same array type; got {kinds[0]} and {kinds[1]}")
    xp = np
    if kinds[0] == "cupy":
        xp = require_cupy()
        k_cache, v_cache = as_cupy(k_cache), as_cupy(v_cache)
    if k_cache.ndim != 4 or k_cache.shape != v_cache.shape:
        raise ValueError(f"k_cache and v_cache must both have shape (B, Hkv, L, D); got {tuple(k_cache.shape)} "
                         f"and {tuple(v_cache.shape)}")
    if k_cache.dtype != v_cache.dtype:
        raise TypeError(f"k_cache and v_cache must have the same dtype; got {k_cache.dtype} and {v_cache.dtype}")
    if isinstance(page_size, bool) or int(page_size) != page_size or page_size < 1:
        raise ValueError(f"page_size must be a positive integer; got {page_size!r}")
    page_size = int(page_size)
    batch, hkv, length, d = k_cache.shape
    per_row = -(-length // page_size)
    order = np.arange(batch * per_row)
    if shuffle:
        order = np.random.default_rng(seed).permutation(batch * per_row)
    table = order.astype(np.int32).reshape(batch, per_row)
    dest = xp.asarray(table.reshape(-1))

    def pages(x):
        out = xp.zeros((batch * per_row, hkv, page_size, d), x.dtype)
        padded = x
        if per_row * page_size != length:  # the last page of each row: zeros past L
            padded = xp.zeros((batch, hkv, per_row * page_size, d), x.dtype)
            padded[:, :, :length] = x
        out[dest] = padded.reshape(batch, hkv, per_row, page_size, d).transpose(0, 2, 1, 3, 4).reshape(
            -1, hkv, page_size, d)
        return out

    return pages(k_cache), pages(v_cache), xp.asarray(table)
