"""Numba kernels for item-item collaborative filtering: cosine top-K neighbours and user scoring.

Both kernels work on one block of rows (items or users) so that callers can split the work into
independent Dask tasks; a block's output depends only on its rows, never on how rows were grouped.
They use a dense accumulator with a touched-list (only touched entries are reset), or for a user's short
history a small hash table sized to it, and a bounded top-K (for neighbours, candidates above a bar cut back
to the K best when their buffer fills; for recommendations, rows kept sorted by insertion), so a row costs
O(touched) plus its top-K updates and memory stays O(rows × K).

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
LOW32 = np.uint64(0xFFFFFFFF)
HIGH = np.uint64(32)
KEPT_PER_K = 4  # a row's kept candidates are cut back to its k best each time they reach KEPT_PER_K × k


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
def _cut(keys, nbr, sup, n, k):
    """Keep, in place, the k largest of the first n (distinct) keys and their neighbours and supports; return
    the k-th largest, which a later candidate must now beat."""
    kth = np.partition(keys[:n], n - k)[n - k]
    m = 0
    for t in range(n):
        if keys[t] >= kth:
            keys[m], nbr[m], sup[m] = keys[t], nbr[t], sup[t]
            m += 1
    return kth


@njit(nogil=True, cache=True)
def _select(i, rec, acc, touched, n_touched, norm_i, norms, ids, keys, kj, kc, bits, k, min_support, shrinkage):
    """Keep the best k touched items of row i, clearing their sums and counts; returns how many were kept.

    A candidate's rank is one uint64 key: its positive float32 score's bits (ordered as the scores are) above
    the complement of its id, so a larger key is a higher score or, at equal scores, a smaller id. Candidates
    that beat the current bar are appended; when ``keys`` is full they are cut back to the best k
    (:func:`_cut`) and the k-th best becomes the bar: a few appends and cuts per row instead of a heap's
    unpredictable sift on every accepted offer. An item's id is read only when its score's bits reach the bar's.
    """
    as_float = bits[1:].view(np.float32)
    n, bar, bar_high, room = 0, np.uint64(0), np.uint32(0), keys.shape[0]
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
        as_float[0] = np.float32(s)
        high = bits[1]
        if as_float[0] > 0 and high >= bar_high:
            oj = ids[j]
            key = (np.uint64(high) << HIGH) | (LOW32 - np.uint64(oj))
            if key > bar:
                keys[n], kj[n], kc[n] = key, oj, c
                n += 1
                if n == room:
                    bar = _cut(keys, kj, kc, n, k)
                    bar_high, n = np.uint32(bar >> HIGH), k
    if n > k:
        _cut(keys, kj, kc, n, k)
        n = k
    return n


@njit(nogil=True, cache=True)
def _emit(keys, kj, kc, n, bits, out_j, out_s, out_x):
    """Sort the n (at most k) kept candidates best first, by insertion, into one output row."""
    for t in range(1, n):
        key, j, c = keys[t], kj[t], kc[t]
        p = t
        while p > 0 and keys[p - 1] < key:
            keys[p], kj[p], kc[p] = keys[p - 1], kj[p - 1], kc[p - 1]
            p -= 1
        keys[p], kj[p], kc[p] = key, j, c
    as_float = bits[1:].view(np.float32)
    for t in range(n):
        bits[1] = np.uint32(keys[t] >> HIGH)
        out_j[t], out_s[t], out_x[t] = kj[t], as_float[0], kc[t]


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
    keys = np.empty(KEPT_PER_K * k, np.uint64)
    kj = np.empty(KEPT_PER_K * k, np.int32)
    kc = np.empty(KEPT_PER_K * k, np.int32)
    bits = np.zeros(2, np.uint32)  # bits[1] and a float32 view of it: a score's bits without a copy
    for i in range(start, stop):
        if visits[i] * DENSE_FRACTION >= n_items:
            _accumulate_dense(i, xt_indptr, xt_indices, xt_data, x_indptr, x_indices, x_data, acc, rec)
            n_touched = _touched_in_order(rec, n_items, touched)
        else:
            n_touched = _accumulate(i, xt_indptr, xt_indices, xt_data, x_indptr, x_indices, x_data, acc, rec, touched)
        n = _select(i, rec, acc, touched, n_touched, norms[i], norms, ids, keys, kj, kc, bits, k, min_support,
                    shrinkage)
        row = i - start
        _emit(keys, kj, kc, n, bits, nbr[row], score[row], support[row])
    return nbr, score, support


SMALL_ENTRIES = 32768  # users with at most this many list entries (history length × K) merge them in a small table


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
                                  exclude_seen, SMALL_ENTRIES)


@njit(nogil=True, cache=True)
def _table_bits(entries):
    """log2 of the smallest power of two holding ``entries`` at most a quarter full (at least 2 slots): few
    collisions, each a mispredicted probe."""
    bits = 1
    while (1 << bits) < 4 * entries:
        bits += 1
    return bits


@njit(nogil=True, cache=True)
def _slot(keys, j, mask):
    """Slot of item j in an open-addressing table of ``mask + 1`` slots (linear probing, -1 marks a free
    slot): the one holding j, else the free one where j goes. Items hash to their low bits: items numbered by
    popularity then give the most visited ones distinct slots."""
    s = j & mask
    while keys[s] != j and keys[s] >= 0:
        s = (s + 1) & mask
    return s


@njit(nogil=True, cache=True)
def _prefetch_lists(nbr, score, i):
    """Start fetching item i's lists, a random row each of ``nbr`` and ``score`` (flat offsets: C order)."""
    start = np.int64(i) * nbr.shape[1]
    for line in range(0, nbr.shape[1], LINE):
        _prefetch(nbr, start + line)
        _prefetch(score, start + line)


@njit(nogil=True, cache=True)
def _merge_lists(lo, hi, x_indices, x_data, nbr, score, ids, seen, rec, keys, bits, touched):
    """Add user history entries [lo, hi)'s weighted lists into the records ``rec`` (sum, best contribution,
    its history item's id; -1: untouched); returns how many records it touched, listed in ``touched``.

    With ``bits`` = 0 item j's record is row j of the catalogue-wide records; else it is a slot of a table of
    2^bits slots whose items are ``keys``, small enough to stay in the fastest caches. Either way each sum adds
    the contributions in history order, then list order, so both give the same bits. Each history item's lists
    are a random row of ``nbr`` and ``score``: the next item's are prefetched while one is summed.
    """
    k = nbr.shape[1]
    mask = (1 << bits) - 1
    n_touched = 0
    for p in range(lo, hi):
        i = x_indices[p]
        if p + 1 < hi:
            _prefetch_lists(nbr, score, x_indices[p + 1])
        w = np.float64(x_data[p])
        fi = np.float64(ids[i])
        seen[i] = True
        for t in range(k):
            j = nbr[i, t]
            if j < 0:
                break
            c = w * score[i, t]
            if bits == 0:
                s = j
                fresh = rec[s, 2] < 0
            else:
                s = _slot(keys, j, mask)
                fresh = keys[s] < 0
                if fresh:
                    keys[s] = j
            if fresh:
                touched[n_touched] = s
                n_touched += 1
                rec[s, 0] = c
                rec[s, 1] = c
                rec[s, 2] = fi
            else:
                if c > rec[s, 1] or (c == rec[s, 1] and fi < rec[s, 2]):
                    rec[s, 1] = c
                    rec[s, 2] = fi
                rec[s, 0] += c
    return n_touched


@njit(nogil=True, cache=True)
def _insert_top(out_s, out_j, out_x, size, n, s, j, x):
    """Insert (s, j, x) into rows kept sorted best first (score descending, then smaller j), holding ``size`` of
    at most n entries, when it ranks before the last of n; returns the new size. Shifting the few entries it
    passes is cheaper than a heap's unpredictable sift."""
    if size == n and not _better(s, j, out_s[n - 1], out_j[n - 1]):
        return size
    pos = size if size < n else n - 1
    while pos > 0 and _better(s, j, out_s[pos - 1], out_j[pos - 1]):
        out_s[pos] = out_s[pos - 1]
        out_j[pos] = out_j[pos - 1]
        out_x[pos] = out_x[pos - 1]
        pos -= 1
    out_s[pos] = s
    out_j[pos] = j
    out_x[pos] = x
    return min(size + 1, n)


@njit(nogil=True, cache=True)
def _offer_touched(rec, keys, bits, touched, n_touched, candidate, seen, exclude_seen, rank, out_s, out_j, out_x):
    """Offer the touched records (see :func:`_merge_lists`) to the top-n rows ``out_*`` by (score, rank), freeing
    them; returns how many rows hold entries. An item's candidacy, seen flag and rank are read only when its
    score can enter the top n (most cannot once it is full)."""
    n = out_s.shape[0]
    size = 0
    for t in range(n_touched):
        s = touched[t]
        j = s if bits == 0 else keys[s]
        s32 = np.float32(rec[s, 0])
        if s32 > 0 and (size < n or s32 >= out_s[n - 1]) and candidate[j] and not (exclude_seen and seen[j]):
            size = _insert_top(out_s, out_j, out_x, size, n, s32, rank[j], np.int32(rec[s, 2]))
        if bits == 0:
            rec[s, 2] = -1
        else:
            keys[s] = -1
    return size


@njit(nogil=True, cache=True)
def _largest_small(users, x_indptr, k, small_entries):
    """(list entries of the largest user merged in a small table, whether any user needs the catalogue-wide
    records)."""
    largest = 0
    any_large = False
    for u in users:
        entries = (x_indptr[u + 1] - x_indptr[u]) * k
        if entries > small_entries:
            any_large = True
        else:
            largest = max(largest, entries)
    return largest, any_large


@njit(nogil=True, cache=True)
def relabel_lists(nbr, score, ids, number):
    """The lists (nbr int32, score float32) with items renumbered: row c is item ``ids[c]``'s, and each
    neighbour j becomes ``number[j]`` (-1 padding stays). One pass over the lists, writing each row once."""
    n_rows, k = ids.shape[0], nbr.shape[1]
    out_nbr = np.empty((n_rows, k), np.int32)
    out_score = np.empty((n_rows, k), np.float32)
    for c in range(n_rows):
        i = ids[c]
        for t in range(k):
            j = nbr[i, t]
            out_nbr[c, t] = number[j] if j >= 0 else -1
            out_score[c, t] = score[i, t]
    return out_nbr, out_score


@njit(nogil=True, cache=True)
def score_users_relabelled(users, x_indptr, x_indices, x_data, nbr, score, candidate, rank, ids, n, exclude_seen,
                           small_entries):
    """:func:`score_users_block` on items relabelled: X's indices, the lists (rows and entries), ``candidate`` and
    ``rank`` all number item ``ids[c]`` as c. ``because`` ties and the returned items use the original ids, so
    any relabelling gives the same output; numbering items in popularity order keeps the records that most
    visits update together in the caches.

    A user whose history holds at most ``small_entries`` list entries (history length × K) merges them in a
    table sized to them rather than in catalogue-wide records, which on a large catalogue miss the caches at
    every visit; the output is the same bits whatever ``small_entries``.
    """
    n_items = candidate.shape[0]
    n_users = users.shape[0]
    items = np.full((n_users, n), -1, np.int32)
    scores = np.zeros((n_users, n), np.float32)
    because = np.full((n_users, n), -1, np.int32)
    if n <= 0:
        return items, scores, because
    k = nbr.shape[1]
    largest, any_large = _largest_small(users, x_indptr, k, small_entries)
    # sum, best contribution and its history item side by side: one cache line per visit instead of three
    rec = np.empty((n_items if any_large else 0, 3), np.float64)
    rec[:, 2] = -1
    slots = 1 << _table_bits(largest)
    table = np.empty((slots, 3), np.float64)
    keys = np.full(slots, -1, np.int32)
    touched = np.empty(max(slots, rec.shape[0]), np.int32)
    seen = np.zeros(n_items, np.bool_)
    item_of = np.empty(n_items, np.int32)  # the top-n rows hold ranks; this maps them back to items
    for c in range(n_items):  # a loop, not item_of[rank] = arange: that form compiles a costly error path
        item_of[rank[c]] = c
    for r in range(n_users):
        u = users[r]
        lo, hi = x_indptr[u], x_indptr[u + 1]
        if r + 1 < n_users and x_indptr[users[r + 1]] < x_indptr[users[r + 1] + 1]:  # the next user's first lists
            _prefetch_lists(nbr, score, x_indices[x_indptr[users[r + 1]]])
        large = (hi - lo) * k > small_entries
        bits = 0 if large else _table_bits((hi - lo) * k)
        vals = rec if large else table
        n_touched = _merge_lists(lo, hi, x_indices, x_data, nbr, score, ids, seen, vals, keys, bits, touched)
        size = _offer_touched(vals, keys, bits, touched, n_touched, candidate, seen, exclude_seen, rank, scores[r],
                              items[r], because[r])
        for p in range(lo, hi):
            seen[x_indices[p]] = False
        for t in range(size):  # the rows hold ranks until here
            items[r, t] = ids[item_of[items[r, t]]]
    return items, scores, because
