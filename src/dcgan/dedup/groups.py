"""Grouping images whose hashes collide, and optionally those a few bits apart.

Exact collisions are runs of equal codes after a sort (n log n, but in C: about a second per million codes).
Near collisions within Hamming radius r use multi-index hashing: split the code into r + 1 blocks; two codes at most r bits apart agree exactly on at least one block
(pigeonhole), so only codes sharing a block value are compared. Groups are the connected components of
"collides with". The search stays near-linear while the blocks are long enough to keep buckets small:
with 128-bit codes and a million images, a radius up to ~5 (blocks of 21+ bits).
"""

from __future__ import annotations

import numpy as np

#: A block bucket with more distinct codes than this is not searched pairwise (it would be quadratic: 12.5
#: million pairs at 5,000); its codes still group by exact collision. Reported as `skipped_buckets`.
MAX_BUCKET = 5_000


def buckets(keys: np.ndarray) -> list[np.ndarray]:
    """Rows of `keys` (N, k) uint8 that are identical, as sorted row indices (only those with 2 or more).

    A sort of the rows as byte strings: n log n, but in C, a second per million rows.
    """
    return runs(np.ascontiguousarray(keys).view(np.dtype((np.void, keys.shape[1]))).ravel())


def runs(values: np.ndarray) -> list[np.ndarray]:
    """Positions of the values (1-D) that occur more than once, one sorted index array per repeated value."""
    if len(values) < 2:
        return []
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    bounds = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    starts, ends = np.r_[0, bounds], np.r_[bounds, len(values)]
    repeated = ends - starts > 1
    return [order[a:e] for a, e in zip(starts[repeated], ends[repeated], strict=True)]


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit distances between packed codes a (n, k) and b (m, k) uint8 -> (n, m) int."""
    return np.bitwise_count(a[:, None, :] ^ b[None, :, :]).sum(-1, dtype=np.int64)


def block_keys(codes: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Bits lo..hi-1 of packed codes (N, k) uint8, packed again as (N, ceil((hi - lo) / 8)) uint8 keys."""
    first, last = lo // 8, (hi + 7) // 8
    bits = np.unpackbits(codes[:, first:last], axis=1)[:, lo - 8 * first : hi - 8 * first]
    return np.packbits(bits, axis=1)


def _pairs_within(starts: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (a, b), a < b, of positions inside each run [start, start + size), without a Python loop."""
    first = np.repeat(np.cumsum(sizes) - sizes, sizes)
    elem = np.repeat(starts, sizes) + np.arange(int(sizes.sum())) - first
    later = np.repeat(starts + sizes, sizes) - elem - 1  # partners after each element in its run
    a = np.repeat(elem, later)
    b = a + 1 + np.arange(int(later.sum())) - np.repeat(np.cumsum(later) - later, later)
    return a, b


def near_pairs(codes: np.ndarray, radius: int, pair_batch: int = 4_000_000) -> tuple[np.ndarray, int]:
    """Pairs (P, 2) of rows of packed codes (N, k) at most `radius` bits apart (may repeat), and buckets skipped.

    For each of the radius + 1 blocks: sort the codes by the block's bits, and compare every pair inside each
    run of equal keys, a batch of runs at a time (about `pair_batch` pairs), all in numpy.
    """
    n_bits = codes.shape[1] * 8
    if radius >= n_bits:
        raise ValueError(f"radius {radius} must be smaller than the code length ({n_bits} bits)")
    edges = np.linspace(0, n_bits, radius + 2).round().astype(int)  # radius + 1 blocks of bits
    found = [np.zeros((0, 2), np.int64)]
    skipped = 0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        keys = block_keys(codes, int(lo), int(hi))
        rows = np.ascontiguousarray(keys).view(np.dtype((np.void, keys.shape[1]))).ravel()
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        bounds = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
        starts, ends = np.r_[0, bounds], np.r_[bounds, len(rows)]
        sizes = ends - starts
        skipped += int((sizes > MAX_BUCKET).sum())
        keep = (sizes > 1) & (sizes <= MAX_BUCKET)
        starts, sizes = starts[keep], sizes[keep]
        total = np.cumsum(sizes * (sizes - 1) // 2)
        begin = 0
        while begin < len(starts):
            done = int(total[begin - 1]) if begin else 0
            end = max(begin + 1, int(np.searchsorted(total, done + pair_batch, side="right")))
            a, b = _pairs_within(starts[begin:end], sizes[begin:end])
            i, j = order[a], order[b]
            close = np.bitwise_count(codes[i] ^ codes[j]).sum(1, dtype=np.int64) <= radius
            found.append(np.stack([i[close], j[close]], 1))
            begin = end
    return np.concatenate(found), skipped


def group_duplicates(
    codes: np.ndarray, digests: np.ndarray | None = None, radius: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Groups of near-duplicates among N images, and the groups of exact (byte-identical) duplicates.

    Args:
        codes: packed hashes (N, k) uint8; equal codes are near-duplicates.
        digests: sha256 of each file's bytes (N, 32) uint8, or None; equal digests are exact duplicates.
        radius: also join codes at most this many bits apart (0: exact collisions only, the paper's rule).

    Returns:
        (groups, exact_groups, skipped_buckets): each group sorted indices with 2 or more members. Every exact
        group lies inside one group: byte-identical files decode to the same pixels, hence the same code.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    unique, inverse = np.unique(codes, axis=0, return_inverse=True)
    label = inverse.ravel()
    skipped = 0
    if radius > 0:
        pairs, skipped = near_pairs(unique, radius)
        if len(pairs):
            a, b = pairs.T
            graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(len(unique), len(unique)))
            label = connected_components(graph, directed=False)[1][label]
    exact = buckets(digests) if digests is not None else []
    return runs(label), exact, skipped


def keeper_first(group: np.ndarray, areas: np.ndarray, nbytes: np.ndarray) -> np.ndarray:
    """A group reordered so the copy to keep comes first: most pixels, then largest file, then listed first."""
    order = np.lexsort((group, -nbytes[group], -areas[group]))
    return group[order]
