"""Numba kernels for item-item collaborative filtering: cosine top-K neighbours and user scoring.

Both kernels work on one block of rows (items or users) so that callers can split the work into
independent Dask tasks; a block's output depends only on its rows, never on how rows were grouped.
They use a dense accumulator with a touched-list (only touched entries are reset) and a bounded
top-K min-heap, so a row costs O(touched · log K) and memory stays O(rows × K).

Order everywhere: score descending, ties broken by the smaller item index (scoring: the smaller
``rank``, which callers set to the items' popularity order). Unused slots are padded
with index -1 and score 0. Kernels are module-level, ``nogil`` and file-cached; no ``parallel=True``,
because Dask workers supply the parallelism.
"""

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

LINE = 16  # 4-byte entries per 64-byte cache line
# Heap sizes and positions are always passed as int64 (a bare 0 would be typed Literal[int](0) and compile each
# heap helper a second time).
ROOT = np.int64(0)


@intrinsic
def _prefetch(typingctx, array, index):
    """Ask the CPU to bring ``array[index]``'s cache line in for reading (LLVM's ``llvm.prefetch``, kept in every
    cache level) without waiting for it: a loop can start the next row's fetch while it works on this one."""

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), cgutils.voidptr_t)
        i32 = cgutils.int32_t
        fnty = cgutils.ir.FunctionType(cgutils.ir.VoidType(), [cgutils.voidptr_t, i32, i32, i32])
        fn = builder.module.declare_intrinsic("llvm.prefetch", fnty=fnty)
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])  # read, keep in all levels, data cache
        return context.get_dummy_value()

    return types.void(array, index), codegen


@njit(nogil=True, cache=True)
def _better(s1: np.float32, j1: np.int32, s2: np.float32, j2: np.int32) -> bool:
    """Whether (s1, j1) ranks before (s2, j2): higher score first, then smaller index."""
    return s1 > s2 or (s1 == s2 and j1 < j2)


@njit(nogil=True, cache=True)
def _swap(hs, hj, hx, a, b):
    """Swap heap entries a and b."""
    hs[a], hs[b] = hs[b], hs[a]
    hj[a], hj[b] = hj[b], hj[a]
    hx[a], hx[b] = hx[b], hx[a]


@njit(nogil=True, cache=True)
def _sift_down(hs, hj, hx, size, pos):
    """Restore the heap below ``pos``; the root holds the worst kept entry."""
    while True:
        child = 2 * pos + 1
        if child >= size:
            return
        right = child + 1
        if right < size and _better(hs[child], hj[child], hs[right], hj[right]):
            child = right
        if not _better(hs[pos], hj[pos], hs[child], hj[child]):
            return
        _swap(hs, hj, hx, pos, child)
        pos = child


@njit(nogil=True, cache=True)
def _heap_push(hs, hj, hx, size, k, s, j, x):
    """Offer (s, j, x) to a heap of capacity k holding ``size`` entries; return the new size."""
    if size < k:
        pos = size
        hs[pos], hj[pos], hx[pos] = s, j, x
        while pos > 0:
            parent = (pos - 1) // 2
            if not _better(hs[parent], hj[parent], hs[pos], hj[pos]):
                break
            _swap(hs, hj, hx, pos, parent)
            pos = parent
        return size + 1
    if _better(s, j, hs[0], hj[0]):
        hs[0], hj[0], hx[0] = s, j, x
        _sift_down(hs, hj, hx, size, ROOT)
    return size


@njit(nogil=True, cache=True)
def _heap_emit(hs, hj, hx, size, out_j, out_s, out_x):
    """Heap-sort the heap in place (best first) and copy it into the output rows."""
    for end in range(size - 1, 0, -1):
        _swap(hs, hj, hx, ROOT, end)
        _sift_down(hs, hj, hx, end, ROOT)
    for t in range(size):
        out_j[t] = hj[t]
        out_s[t] = hs[t]
        out_x[t] = hx[t]


DENSE_FRACTION = 8  # a row whose pair visits reach n_items / DENSE_FRACTION is summed without a touched list


@njit(nogil=True, cache=True)
def _accumulate(i, xt_indptr, xt_indices, xt_data, x_indptr, x_indices, x_data, acc, count, touched):
    """Gustavson row product of item i with each item's co-occurrence count; returns the number touched.

    ``acc`` (float32) and ``count`` (int32) are two views of one interleaved buffer: entry j of the
    accumulator is at 2j, its count at 2j + 1, so a visit touches one cache line, not two.
    """
    n_touched = 0
    for p in range(xt_indptr[i], xt_indptr[i + 1]):
        u = xt_indices[p]
        a = xt_data[p]
        for q in range(x_indptr[u], x_indptr[u + 1]):
            j = x_indices[q]
            if count[2 * j + 1] == 0:
                touched[n_touched] = j
                n_touched += 1
            acc[2 * j] += a * x_data[q]
            count[2 * j + 1] += 1
    return n_touched


@njit(nogil=True, cache=True)
def _accumulate_dense(i, xt_indptr, xt_indices, xt_data, x_indptr, x_indices, x_data, acc, count):
    """:func:`_accumulate` without a touched list, for a heavy item i that touches many items anyway."""
    for p in range(xt_indptr[i], xt_indptr[i + 1]):
        u = xt_indices[p]
        a = xt_data[p]
        for q in range(x_indptr[u], x_indptr[u + 1]):
            j = x_indices[q]
            acc[2 * j] += a * x_data[q]
            count[2 * j + 1] += 1


@njit(nogil=True, cache=True)
def _touched_in_order(count, n_items, touched):
    """Write the items with a non-zero count (at 2j + 1) into ``touched`` in increasing order; return how
    many. Branch-free (the length advances by the comparison): a sequential read, no mispredicted jumps."""
    found = 0
    for j in range(n_items):
        touched[found] = j
        found += count[2 * j + 1] != 0
    return found


@njit(nogil=True, cache=True)
def _select(i, rec, acc, touched, n_touched, norm_i, norms, ids, hs, hj, hx, k, min_support, shrinkage):
    """Offer the touched items of row i to the top-k heap, clearing their sums and counts; returns the heap
    size. An item's id is read only when its score can enter the heap (most cannot once it is full)."""
    size = ROOT
    for t in range(n_touched):
        j = touched[t]
        c = rec[2 * j + 1]
        dot = acc[2 * j]
        rec[2 * j] = 0
        rec[2 * j + 1] = 0
        denom = norm_i * norms[j]
        if j == i or c < min_support or denom <= 0:
            continue
        s = dot / denom
        if shrinkage > 0:
            s *= c / (c + shrinkage)
        s32 = np.float32(s)
        if s32 > 0 and (size < k or s32 >= hs[0]):
            oj = ids[j]
            if size < k or s32 > hs[0] or oj < hj[0]:
                size = _heap_push(hs, hj, hx, size, k, s32, oj, np.int32(c))
    return size


@njit(nogil=True, cache=True)
def cosine_topk_block(
    start, stop, xt_indptr, xt_indices, xt_data, x_indptr, x_indices, x_data, norms, ids, visits, k, min_support,
    shrinkage
):
    """Top-k cosine neighbours of items [start, stop) of the user × item matrix X.

    Xt is X's item × user CSR, norms[j] the L2 norm of item column j and visits[j] the pair visits of its
    row (Σ deg(u) over its users u: rows with many are summed without a touched list and scanned in
    order). A neighbour j is kept when j != i, its co-occurrence support >= min_support and its score > 0;
    with shrinkage s > 0 the cosine is multiplied by support / (support + s). Neighbours are reported, and
    ties broken, by ``ids[j]`` (int32): the callers' item numbers when X's columns are a permutation of
    them (see ``item_topk``), else ``arange``. Returns (nbr int32, score float32, support int32), each of
    shape (stop - start, k).
    """
    n_items = norms.shape[0]
    n_rows = stop - start
    nbr = np.full((n_rows, k), -1, np.int32)
    score = np.zeros((n_rows, k), np.float32)
    support = np.zeros((n_rows, k), np.int32)
    if k <= 0:
        return nbr, score, support
    rec = np.zeros(2 * n_items, np.int32)
    acc = rec.view(np.float32)
    touched = np.empty(n_items, np.int32)
    hs = np.empty(k, np.float32)
    hj = np.empty(k, np.int32)
    hx = np.empty(k, np.int32)
    for i in range(start, stop):
        if visits[i] * DENSE_FRACTION >= n_items:
            _accumulate_dense(i, xt_indptr, xt_indices, xt_data, x_indptr, x_indices, x_data, acc, rec)
            n_touched = _touched_in_order(rec, n_items, touched)
        else:
            n_touched = _accumulate(i, xt_indptr, xt_indices, xt_data, x_indptr, x_indices, x_data, acc, rec, touched)
        size = _select(i, rec, acc, touched, n_touched, norms[i], norms, ids, hs, hj, hx, k, min_support, shrinkage)
        row = i - start
        _heap_emit(hs, hj, hx, size, nbr[row], score[row], support[row])
    return nbr, score, support


@njit(nogil=True, cache=True)
def score_users_block(users, x_indptr, x_indices, x_data, nbr, score, candidate, rank, n, exclude_seen):
    """Top-n items for the given rows of the user × item history X, from item neighbour lists.

    score(u, j) = Σ_{i in hist(u)} w_ui · sim(i, j) over history items i whose list (nbr[i],
    score[i]) contains j. Non-candidate items are never returned, nor history items when
    exclude_seen. Equal scores are ordered by ``rank`` (a permutation of the items, smaller first), so
    callers decide what a tie means. ``because`` is the history item with the largest w_ui · sim(i, j)
    (ties: smaller i). Only positive scores are returned. Returns (items int32, scores float32, because int32),
    each of shape (len(users), n).
    """
    ids = np.arange(candidate.shape[0], dtype=np.int32)
    return score_users_relabelled(users, x_indptr, x_indices, x_data, nbr, score, candidate, rank, ids, n,
                                  exclude_seen)


@njit(nogil=True, cache=True)
def score_users_relabelled(users, x_indptr, x_indices, x_data, nbr, score, candidate, rank, ids, n, exclude_seen):
    """:func:`score_users_block` on items relabelled: X's indices, the lists (rows and entries), ``candidate`` and
    ``rank`` all number item ``ids[c]`` as c. ``because`` ties and the returned items use the original ids, so
    any relabelling gives the same output; numbering items in popularity order keeps the records that most
    visits update together in the caches. Each history item's lists are a random row of ``nbr`` and ``score``:
    the next item's are prefetched while one is summed, so their fetch overlaps the work instead of stalling it.
    """
    n_items = candidate.shape[0]
    n_users = users.shape[0]
    items = np.full((n_users, n), -1, np.int32)
    scores = np.zeros((n_users, n), np.float32)
    because = np.full((n_users, n), -1, np.int32)
    if n <= 0:
        return items, scores, because
    # acc, best contribution and its history item (-1: untouched) side by side: one cache line
    # per visit instead of three.
    rec = np.zeros((n_items, 3), np.float64)
    rec[:, 2] = -1
    seen = np.zeros(n_items, np.bool_)
    touched = np.empty(n_items, np.int32)
    hs = np.empty(n, np.float32)
    hj = np.empty(n, np.int32)
    hx = np.empty(n, np.int32)
    item_of = np.empty(n_items, np.int32)  # the heap holds ranks; this maps them back to items
    item_of[rank] = np.arange(n_items, dtype=np.int32)
    k = nbr.shape[1]
    for r in range(n_users):
        u = users[r]
        lo, hi = x_indptr[u], x_indptr[u + 1]
        n_touched = 0
        for p in range(lo, hi):
            i = x_indices[p]
            if p + 1 < hi:  # the next history item's lists, a random row each: fetched while this one is summed
                after = np.int64(x_indices[p + 1]) * k
                for line in range(0, k, LINE):  # flat offsets into the C-ordered lists
                    _prefetch(nbr, after + line)
                    _prefetch(score, after + line)
            w = np.float64(x_data[p])
            fi = np.float64(ids[i])
            seen[i] = True
            for t in range(k):
                j = nbr[i, t]
                if j < 0:
                    break
                c = w * score[i, t]
                if rec[j, 2] < 0:
                    touched[n_touched] = j
                    n_touched += 1
                    rec[j, 1] = c
                    rec[j, 2] = fi
                elif c > rec[j, 1] or (c == rec[j, 1] and fi < rec[j, 2]):
                    rec[j, 1] = c
                    rec[j, 2] = fi
                rec[j, 0] += c
        size = ROOT
        for t in range(n_touched):
            j = touched[t]
            s32 = np.float32(rec[j, 0])
            keep = s32 > 0 and candidate[j] and not (exclude_seen and seen[j])
            rj = rank[j]
            if keep and (size < n or s32 > hs[0] or (s32 == hs[0] and rj < hj[0])):
                size = _heap_push(hs, hj, hx, size, n, s32, rj, np.int32(rec[j, 2]))
            rec[j, 0] = 0
            rec[j, 2] = -1
        for p in range(lo, hi):
            seen[x_indices[p]] = False
        _heap_emit(hs, hj, hx, size, items[r], scores[r], because[r])
        for t in range(size):
            items[r, t] = ids[item_of[items[r, t]]]
    return items, scores, because
