"""Generators of data shaped like the HOGWILD! paper's data sets (Niu et al., NIPS 2011).

Every generator takes a size knob and a ``seed``, is deterministic for a seed (the same numbers
on every run and platform with the same numpy), and is vectorised numpy: no Python loop per
row, rating, node or pixel (a few loops over fixed-size blocks bound the memory).

``rcv1_like``      sparse SVM on text (RCV1: 781K x 47K, ~76 nonzeros a row, tf-idf, unit rows)
``netflix_like``   matrix completion (Netflix: 480K users x 17.7K movies, ratings 1..5)
``dblife_like``    multiway graph cut on an entity graph (DBLife: few labelled seeds)
``abdomen_like``   multiway graph cut on an image / volume grid (Abdomen: a CT volume)
``train_test_split_rows``  split row data (X, y) at random.

The statistics each one aims at are in its docstring; ``return_truth=True`` also returns the
hidden ground truth (separator, factors, planted labels), for tests and benchmarks.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .errors import DataError

__all__ = ["rcv1_like", "netflix_like", "dblife_like", "abdomen_like",
           "train_test_split_rows"]


# --------------------------------------------------------------------------------------------
# helpers


def _check_int(name, value, low, high=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DataError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"between {low} and {high}"
        raise DataError(f"{name} must be {rng}, got {value}")
    return int(value)


def _check_frac(name, value, low=0.0, high=1.0, closed_high=False):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be a number, got {value!r}") from None
    ok = low <= v <= high if closed_high else low <= v < high
    if not ok or not np.isfinite(v):
        close = "]" if closed_high else ")"
        raise DataError(f"{name} must be in [{low}, {high}{close}, got {value!r}")
    return v


def _zipf_cdf(x, n, a, offset):
    """CDF of the continuous power law with density ~ (x + offset)^-a on [0, n)."""
    if abs(a - 1.0) < 1e-9:
        return np.log1p(x / offset) / np.log1p(n / offset)
    lo = offset ** (1.0 - a)
    return ((x + offset) ** (1.0 - a) - lo) / ((n + offset) ** (1.0 - a) - lo)


def _zipf_sample(rng, size, n, a, offset):
    """Integers in [0, n) with P(k) ~ (k + offset)^-a (a discretised continuous power law),
    by inverting the CDF in closed form: fast, no table look-ups."""
    u = rng.random(size)
    if abs(a - 1.0) < 1e-9:
        x = offset * np.expm1(u * np.log1p(n / offset))
    else:
        lo = offset ** (1.0 - a)
        hi = (n + offset) ** (1.0 - a)
        x = (lo + u * (hi - lo)) ** (1.0 / (1.0 - a)) - offset
    k = x.astype(np.int64)
    np.minimum(k, n - 1, out=k)
    return k


def _zipf_probs(n, a, offset):
    """P(k) of :func:`_zipf_sample` for k in [0, n)."""
    edges = _zipf_cdf(np.arange(n + 1, dtype=np.float64), n, a, offset)
    return np.diff(edges)


def _unique_sorted(a, return_counts=False):
    """np.unique by one sort (numpy 2's hash-based np.unique is several times slower here)."""
    a = np.sort(a)
    if a.size == 0:
        return (a, np.empty(0, dtype=np.int64)) if return_counts else a
    new = np.empty(a.size, dtype=bool)
    new[0] = True
    np.not_equal(a[1:], a[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    if not return_counts:
        return a[starts]
    return a[starts], np.diff(np.append(starts, a.size))


def _csr_from_sorted(rows, cols, vals, shape):
    """CSR from entries already sorted by (row, col) and unique."""
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    idx_dtype = np.int32 if max(shape) < 2**31 and len(cols) < 2**31 else np.int64
    m = sp.csr_matrix((np.asarray(vals, dtype=np.float64), cols.astype(idx_dtype),
                       indptr.astype(idx_dtype)), shape=shape)
    m.has_sorted_indices = True
    m.has_canonical_format = True
    return m


def _symmetric_from_pairs(i, j, wts, n):
    """Symmetric CSR (zero diagonal) from unique undirected pairs i < j."""
    rows = np.concatenate([i, j])
    cols = np.concatenate([j, i])
    vals = np.concatenate([wts, wts])
    order = np.lexsort((cols, rows))
    return _csr_from_sorted(rows[order], cols[order], vals[order], (n, n))


# --------------------------------------------------------------------------------------------
# RCV1


def rcv1_like(n_rows=800_000, n_features=47_236, nnz_per_row=76, noise=0.05, seed=0,
              zipf_a=1.0, return_truth=False):
    """Sparse text-classification rows shaped like RCV1 (the paper's SVM data set).

    Returns ``(X, y)``: ``X`` a canonical CSR matrix (float64, sorted indices, no duplicate
    column in a row) of shape ``(n_rows, n_features)``, ``y`` float64 in {-1, +1}.

    What it aims at (RCV1-v2 as used by the paper: 781K documents, 47,236 features, about 76
    nonzeros a row, every row tf-idf weighted and L2-normalised):

    * feature popularity follows a power law: a word token falls on the k-th most frequent
      feature with probability ~ 1/(k + 3)^zipf_a (Zipf, ``zipf_a=1``), the popularity ranks
      then scattered over the feature ids at random.  So the commonest features appear in
      almost every row (the paper's Delta for RCV1 is 1.0: a coordinate touched by nearly all
      terms) while most features are rare;
    * row lengths vary (lognormal, sigma 0.5, clipped to [1, 4x the mean]) around a mean of
      ``nnz_per_row`` distinct features: each row draws enough word tokens that, after merging
      repeats, the expected number of distinct features is its target;
    * values are tf-idf: ``(1 + log tf) * log((1 + n_rows) / (1 + df)) + 1`` with tf the
      token count in the row and df the feature's document frequency, then each row is scaled
      to unit L2 norm;
    * labels come from a sparse ground-truth separator (weights N(0,1) on ~10% of the
      features, picked with probability ~ sqrt(popularity)), thresholded at the median margin
      (classes balanced like RCV1's CCAT split, about 47/53), and exactly
      ``round(noise * n_rows)`` labels are then flipped.

    With ``return_truth=True`` returns ``(X, y, truth)`` where ``truth`` has ``w`` (the
    separator), ``b`` (its offset: ``clean_y = sign(X @ w + b)``) and ``clean_y``.
    Full size takes about 10 s and 1-2 GB of memory at peak.
    """
    n_rows = _check_int("n_rows", n_rows, 1)
    n_features = _check_int("n_features", n_features, 1)
    nnz_per_row = _check_int("nnz_per_row", nnz_per_row, 1, n_features)
    noise = _check_frac("noise", noise, 0.0, 1.0, closed_high=True)
    zipf_a = _check_frac("zipf_a", zipf_a, 0.0, 10.0, closed_high=True)
    rng = np.random.default_rng(seed)
    offset = 3.0

    # -- how many tokens a row must draw to get t distinct features on average
    p = _zipf_probs(n_features, zipf_a, offset)
    grid = np.unique(np.round(np.geomspace(1, 64 * n_features, 256)).astype(np.int64))
    distinct = np.array([np.sum(-np.expm1(L * np.log1p(-np.minimum(p, 1 - 1e-15))))
                         for L in grid])          # E[#distinct] after L draws (256 evals)
    sigma = 0.5
    target = rng.lognormal(np.log(nnz_per_row) - sigma**2 / 2, sigma, n_rows)
    cap = min(float(n_features), 4.0 * nnz_per_row)
    target = np.clip(target, 1.0, cap)
    target = np.minimum(target, distinct[-1])
    draws = np.interp(target, distinct, grid.astype(np.float64))
    draws = np.maximum(1, np.round(draws)).astype(np.int64)

    # -- tokens, row by row blocks: a padded (rows x max draws) matrix sorted along the rows
    perm = rng.permutation(n_features)             # popularity rank -> feature id
    sentinel = n_features
    rows_out, cols_out, tf_out = [], [], []
    block = max(1, min(n_rows, (8 << 20) // max(1, int(draws.max()))))
    for start in range(0, n_rows, block):
        stop = min(n_rows, start + block)
        d = draws[start:stop]
        width = int(d.max())
        total = int(d.sum())
        tok = perm[_zipf_sample(rng, total, n_features, zipf_a, offset)].astype(np.int32)
        mat = np.full((stop - start, width), sentinel, dtype=np.int32)
        row_of = np.repeat(np.arange(stop - start), d)
        pos = np.arange(total) - np.repeat(np.cumsum(d) - d, d)
        mat[row_of, pos] = tok
        mat.sort(axis=1)
        flat = mat.ravel()
        new = np.ones(flat.size, dtype=bool)
        new[1:] = flat[1:] != flat[:-1]
        new[::width] = True                        # each row starts a run
        starts = np.flatnonzero(new)
        runs = np.diff(np.append(starts, flat.size))
        keep = flat[starts] != sentinel
        starts, runs = starts[keep], runs[keep]
        rows_out.append((starts // width + start).astype(np.int64))
        cols_out.append(flat[starts])
        tf_out.append(runs.astype(np.float64))
    rows = np.concatenate(rows_out)
    cols = np.concatenate(cols_out)
    tf = np.concatenate(tf_out)
    del rows_out, cols_out, tf_out

    # -- tf-idf, unit rows
    df = np.bincount(cols, minlength=n_features).astype(np.float64)
    idf = np.log((1.0 + n_rows) / (1.0 + df)) + 1.0
    vals = (1.0 + np.log(tf)) * idf[cols]
    del tf
    norms = np.sqrt(np.bincount(rows, weights=vals * vals, minlength=n_rows))
    vals /= norms[rows]
    X = _csr_from_sorted(rows, cols, vals, (n_rows, n_features))
    del rows, cols, vals

    # -- labels from a sparse separator, thresholded at the median, then noise flips
    pop = np.empty(n_features)
    pop[perm] = p                                  # popularity of each feature id
    n_support = max(1, n_features // 10)
    q = np.sqrt(pop)
    support = rng.choice(n_features, size=n_support, replace=False, p=q / q.sum())
    w = np.zeros(n_features)
    w[support] = rng.standard_normal(n_support)
    margin = X @ w
    margin += 1e-9 * rng.standard_normal(n_rows)   # break ties (rows missing the support)
    b = -float(np.median(margin))
    clean = np.where(margin + b > 0, 1.0, -1.0)
    y = clean.copy()
    n_flip = int(round(noise * n_rows))
    if n_flip:
        flip = rng.choice(n_rows, size=n_flip, replace=False)
        y[flip] = -y[flip]
    if return_truth:
        return X, y, {"w": w, "b": b, "clean_y": clean}
    return X, y


# --------------------------------------------------------------------------------------------
# Netflix


def netflix_like(n_users=480_000, n_items=17_770, n_ratings=6_000_000, rank=20, test_frac=0.05,
                 seed=0, discrete=True, return_truth=False):
    """Ratings shaped like the Netflix Prize data (the paper's matrix-completion set).

    Returns ``(train, test)``: two canonical CSR matrices of shape ``(n_users, n_items)`` whose
    stored entries are the ratings (an explicit entry is an observed rating; none is 0).

    What it aims at (Netflix: 480,189 users, 17,770 movies, 100M ratings of 1..5, mean 3.6):

    * power-law degrees on both sides, fitted to Netflix's: a rating's user has popularity
      rank k with probability ~ 1/(k + 7.1e-4 n_users)^0.79 and its movie rank k with
      probability ~ 1/(k + 2.36e-2 n_items)^1.94, the ranks scattered over the ids at random.
      At full size that gives Netflix's ratios: the busiest movie has ~41x the mean number of
      ratings and the median movie ~0.1x; the busiest user ~84x the mean, the median ~0.46x;
    * values from a rank-``rank`` model: ``3.6 + b_user + b_item + <U_user, V_item> + noise``
      with bias std 0.4 and 0.5, factors scaled so the low-rank part has variance 0.6, noise
      std 0.5; with ``discrete=True`` rounded and clipped to the integers 1..5, otherwise
      clipped to [1, 5];
    * no duplicate (user, item) pair: pairs are drawn, duplicates dropped and the shortfall
      drawn again (up to five times), so the count is ``n_ratings`` or a little below it when
      the matrix is nearly full;
    * the split is random by rating: ``test_frac`` of the ratings go to ``test``.

    With ``return_truth=True`` returns ``(train, test, truth)`` with ``U``, ``V``,
    ``user_bias``, ``item_bias``, ``mean``.  Full size takes a few seconds.
    """
    n_users = _check_int("n_users", n_users, 1)
    n_items = _check_int("n_items", n_items, 1)
    n_ratings = _check_int("n_ratings", n_ratings, 1, n_users * n_items)
    rank = _check_int("rank", rank, 1)
    test_frac = _check_frac("test_frac", test_frac)
    rng = np.random.default_rng(seed)
    uperm = rng.permutation(n_users)
    iperm = rng.permutation(n_items)

    # -- unique pairs with power-law margins; the shortfall left by merged repeats is drawn
    #    again, scaled by the share of new pairs the previous round yielded
    u_off, i_off = max(1.0, 7.1e-4 * n_users), max(1.0, 2.36e-2 * n_items)
    keys = np.empty(0, dtype=np.int64)
    yield_rate = 1.0
    for _ in range(6):
        need = n_ratings - keys.size
        if need <= 0:
            break
        extra = int(need / max(yield_rate, 0.05) * 1.02) + 16
        u = uperm[_zipf_sample(rng, extra, n_users, 0.79, u_off)]
        i = iperm[_zipf_sample(rng, extra, n_items, 1.94, i_off)]
        before = keys.size
        keys = _unique_sorted(np.concatenate([keys, u * np.int64(n_items) + i]))
        yield_rate = (keys.size - before) / extra
    if keys.size > n_ratings:
        keep = np.zeros(keys.size, dtype=bool)
        keep[rng.permutation(keys.size)[:n_ratings]] = True
        keys = keys[keep]
    users = keys // n_items
    items = keys % n_items
    n = keys.size
    del keys

    # -- low-rank model
    mean = 3.6
    scale = (0.6 / rank) ** 0.25
    U = rng.standard_normal((n_users, rank)).astype(np.float32) * np.float32(scale)
    V = rng.standard_normal((n_items, rank)).astype(np.float32) * np.float32(scale)
    bu = 0.4 * rng.standard_normal(n_users)
    bi = 0.5 * rng.standard_normal(n_items)
    vals = np.empty(n, dtype=np.float64)
    step = 1 << 20
    for s in range(0, n, step):
        e = min(n, s + step)
        vals[s:e] = np.einsum("ij,ij->i", U[users[s:e]], V[items[s:e]], dtype=np.float64)
    vals += mean + bu[users] + bi[items] + 0.5 * rng.standard_normal(n)
    if discrete:
        np.rint(vals, out=vals)
    np.clip(vals, 1.0, 5.0, out=vals)

    # -- random split by rating
    is_test = np.zeros(n, dtype=bool)
    n_test = int(round(test_frac * n))
    if n_test:
        is_test[rng.choice(n, size=n_test, replace=False)] = True
    shape = (n_users, n_items)
    train = _csr_from_sorted(users[~is_test], items[~is_test], vals[~is_test], shape)
    test = _csr_from_sorted(users[is_test], items[is_test], vals[is_test], shape)
    if return_truth:
        return train, test, {"U": U.astype(np.float64), "V": V.astype(np.float64),
                             "user_bias": bu, "item_bias": bi, "mean": mean}
    return train, test


# --------------------------------------------------------------------------------------------
# DBLife


def dblife_like(n_nodes=5_000, n_labels=10, avg_degree=6, seed=0, p_in=0.8, seed_frac=0.05,
                noise=0.1, signal=0.05, edge_weight=0.01, return_truth=False):
    """An entity graph with planted communities, shaped like DBLife (the paper's graph cut).

    Returns ``(w, c)``: ``w`` a symmetric CSR ``(n, n)`` of positive edge weights with a zero
    (unstored) diagonal, ``c`` a dense ``(n, n_labels)`` array of label costs, for the
    multiway-cut objective ``sum_uv w_uv |x_u - x_v|_1 + sum_v <c_v, x_v>`` over the simplex.

    What it aims at (DBLife: entities linked by co-mentions, a heavy-tailed degree sequence,
    labelled from a handful of hand-picked seeds):

    * degrees: a degree-corrected planted-partition (Chung-Lu) model.  Node propensities are
      Pareto with tail exponent 2.5 (like preferential attachment's power law), each edge picks
      an endpoint with probability ~ propensity and its other end inside the same community
      with probability ``p_in`` (else anywhere), again ~ propensity; self-loops dropped,
      repeats merged.  The mean degree is ``avg_degree`` (unique edges), the max degree is far
      above the median;
    * weights: ``edge_weight`` times the number of times a pair was drawn (its co-mention
      count) times a lognormal factor (sigma 0.25): positive, mostly near ``edge_weight``;
    * communities: sizes from a Dirichlet(2, ..., 2) share, every label used;
    * costs: only ``seed_frac`` of the nodes (the seeds, at least one per label) are
      informative: cost 0 for their planted label and 1 for the others; every other node has
      cost 0.5 for every label less ``signal`` for its planted one (weak evidence, as an
      extractor's confidence); all costs get ``noise * U(0, 1)`` added.

    The defaults make the planted labels the answer of the exact LP, not an accident: with
    edges of weight ~1 (``edge_weight=1``) or no per-node evidence (``signal=0``), the LP
    optimum puts nearly every node in one label and recovers the planted ones at chance;
    at the defaults it recovers ~97% of them where the costs alone give ~60%
    (bench/bench_cuts_lp.py, results in bench/results/cuts_lp.md).

    With ``return_truth=True`` returns ``(w, c, labels, seeds)``: the planted label of every
    node and the indices of the seed nodes.
    """
    n = _check_int("n_nodes", n_nodes, 2)
    k = _check_int("n_labels", n_labels, 1, n)
    avg_degree = _check_frac("avg_degree", avg_degree, 0.0, float(n - 1), closed_high=True)
    p_in = _check_frac("p_in", p_in, 0.0, 1.0, closed_high=True)
    seed_frac = _check_frac("seed_frac", seed_frac, 0.0, 1.0, closed_high=True)
    noise = _check_frac("noise", noise, 0.0, np.inf)
    signal = _check_frac("signal", signal, 0.0, np.inf)
    edge_weight = _check_frac("edge_weight", edge_weight, 0.0, np.inf)
    if edge_weight <= 0:
        raise DataError(f"edge_weight must be positive, got {edge_weight!r}")
    rng = np.random.default_rng(seed)

    # -- communities: every label at least once, the rest by a Dirichlet share
    share = rng.dirichlet(np.full(k, 2.0))
    labels = np.concatenate([np.arange(k), rng.choice(k, size=n - k, p=share)])
    rng.shuffle(labels)
    theta = (1.0 - rng.random(n)) ** (-1.0 / 1.5)            # Pareto, P(>x) ~ x^-1.5
    by_label = np.argsort(labels, kind="stable")
    cum = np.cumsum(theta[by_label])
    cum_all = cum[-1]
    counts = np.bincount(labels, minlength=k)
    ends = np.cumsum(counts)
    starts = ends - counts
    lo = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
    hi = cum[ends - 1]

    def pick(size, within=None):
        """Nodes ~ theta; inside community ``within[e]`` where given."""
        if within is None:
            x = rng.random(size) * cum_all
        else:
            x = lo[within] + rng.random(size) * (hi[within] - lo[within])
        j = np.searchsorted(cum, x, side="right")
        return by_label[np.minimum(j, n - 1)]

    m_target = int(round(n * avg_degree / 2.0))
    m_target = min(m_target, n * (n - 1) // 2)
    keys = np.empty(0, dtype=np.int64)
    mult = np.empty(0, dtype=np.int64)
    for _ in range(4):
        need = m_target - keys.size
        if need <= 0:
            break
        draw = int(need * 1.15) + 8
        a = pick(draw)
        inside = rng.random(draw) < p_in
        b = np.empty(draw, dtype=np.int64)
        b[inside] = pick(int(inside.sum()), labels[a[inside]])
        b[~inside] = pick(int((~inside).sum()))
        ok = a != b
        a, b = a[ok], b[ok]
        new = np.minimum(a, b) * np.int64(n) + np.maximum(a, b)
        allk = np.concatenate([np.repeat(keys, mult), new])
        keys, mult = _unique_sorted(allk, return_counts=True)
    if keys.size > m_target:
        keep = np.sort(rng.choice(keys.size, size=m_target, replace=False))
        keys, mult = keys[keep], mult[keep]
    i, j = keys // n, keys % n
    wts = edge_weight * mult * rng.lognormal(0.0, 0.25, keys.size)
    w = _symmetric_from_pairs(i, j, wts, n)

    # -- costs: a few informative seeds, the rest flat
    c = np.full((n, k), 0.5)
    c[np.arange(n), labels] -= signal
    n_seeds = min(n, max(k, int(round(seed_frac * n)))) if seed_frac > 0 else 0
    if n_seeds:
        # one seed per label first, then the rest at random
        first = by_label[starts]
        rest = np.setdiff1d(np.arange(n), first)
        more = rng.choice(rest, size=max(0, n_seeds - k), replace=False)
        seeds = np.sort(np.concatenate([first, more]))[:n_seeds]
        c[seeds] = 1.0
        c[seeds, labels[seeds]] = 0.0
    else:
        seeds = np.empty(0, dtype=np.int64)
    c += noise * rng.random((n, k))
    if return_truth:
        return w, c, labels, seeds
    return w, c


# --------------------------------------------------------------------------------------------
# Abdomen


def _grid_offsets(ndim, neighbours):
    """Forward neighbour offsets (half of the symmetric stencil) for a grid connectivity."""
    import itertools

    allowed = {2: {4: 1, 8: 2}, 3: {6: 1, 18: 2, 26: 3}}[ndim]
    if neighbours not in allowed:
        raise DataError(f"neighbours must be one of {sorted(allowed)} for a "
                        f"{ndim}-D {'image' if ndim == 2 else 'volume'}, got {neighbours!r}")
    maxl1 = allowed[neighbours]
    out = []
    for off in itertools.product((-1, 0, 1), repeat=ndim):
        l1 = sum(abs(o) for o in off)
        if 0 < l1 <= maxl1 and off > tuple([0] * ndim):   # lexicographically positive
            out.append(off)
    return out


def abdomen_like(height=64, width=64, depth=1, n_labels=5, neighbours=None, noise=0.3, seed=0,
                 smoothness=0.1, return_truth=False):
    """A segmentation problem on an image or volume grid, shaped like the paper's Abdomen set.

    Returns ``(w, c)``: ``w`` a symmetric CSR ``(n, n)`` of positive grid-edge weights (zero
    diagonal) and ``c`` a dense ``(n, n_labels)`` array of label costs, ``n = depth * height *
    width`` pixels numbered ``(z * height + y) * width + x``.

    What it aims at (Abdomen: a CT volume segmented into organs by a multiway cut over a
    6-connected grid; ~2e-3 of the coordinates touched by a term, the sparsest of the paper):

    * a piecewise-constant ground truth: ``n_labels`` smooth random fields (white noise blurred
      with a Gaussian of width ~ 1/8 of the largest side), each pixel taking the label whose
      field is largest: blobby organ-like regions, every label present when the grid allows;
    * an observed image: label k has intensity ``k / (n_labels - 1)``, plus Gaussian noise of
      std ``noise``;
    * costs ``c[p, k] = (I_p - mu_k)^2`` (the usual squared-error data term);
    * edges between grid neighbours: ``neighbours`` 4 or 8 in 2-D (``depth == 1``), 6, 18 or
      26 in 3-D; the default (None) is 4 in 2-D and 6 in 3-D.  Contrast-sensitive weights
      ``smoothness * exp(-(I_p - I_q)^2 / (2 beta)) / distance`` with beta the mean squared
      difference over the edges (Boykov-Jolly): positive, small across region borders.
      The default smoothness 0.1 balances the cut against the squared-error costs: at 1.0 the
      exact LP recovers fewer planted labels (0.22 on a 32 x 32 image) than the costs alone
      (0.39); at 0.1 it recovers 0.83 (bench/bench_cuts_lp.py).

    With ``return_truth=True`` returns ``(w, c, labels, image)``, both flat of length n.
    """
    h = _check_int("height", height, 1)
    wd = _check_int("width", width, 1)
    dp = _check_int("depth", depth, 1)
    k = _check_int("n_labels", n_labels, 1)
    noise = _check_frac("noise", noise, 0.0, np.inf)
    smoothness = _check_frac("smoothness", smoothness, 0.0, np.inf)
    ndim = 2 if dp == 1 else 3
    if neighbours is None:
        neighbours = 4 if ndim == 2 else 6
    offsets = _grid_offsets(ndim, neighbours)
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    shape = (dp, h, wd)
    sigma_px = max(1.0, max(shape) / 8.0)
    sig = (0.0 if dp == 1 else sigma_px, sigma_px, sigma_px)
    fields = np.empty((k,) + shape, dtype=np.float32)
    for lab in range(k):                   # one blurred field per label (k is small)
        f = rng.standard_normal(shape).astype(np.float32)
        fields[lab] = ndimage.gaussian_filter(f, sigma=sig, mode="wrap")
    truth = np.argmax(fields, axis=0).astype(np.int64)
    del fields
    mu = np.linspace(0.0, 1.0, k) if k > 1 else np.zeros(1)
    image = mu[truth] + noise * rng.standard_normal(shape)

    n = dp * h * wd
    flat_img = image.ravel()
    c = (flat_img[:, None] - mu[None, :]) ** 2

    ids = np.arange(n, dtype=np.int64).reshape(shape)
    pi, pj, dist = [], [], []
    for off in offsets:                    # at most 13 stencil directions
        off3 = (0,) * (3 - ndim) + tuple(off)
        src = [slice(max(0, -o), s - max(0, o)) for o, s in zip(off3, shape)]
        dst = [slice(max(0, o), s - max(0, -o)) for o, s in zip(off3, shape)]
        a = ids[tuple(src)].ravel()
        b = ids[tuple(dst)].ravel()
        if a.size:
            pi.append(a)
            pj.append(b)
            dist.append(np.full(a.size, np.sqrt(sum(o * o for o in off3))))
    if pi:
        i = np.concatenate(pi)
        j = np.concatenate(pj)
        d = np.concatenate(dist)
    else:
        i = j = np.empty(0, dtype=np.int64)
        d = np.empty(0)
    diff2 = (flat_img[i] - flat_img[j]) ** 2
    beta = float(diff2.mean()) if diff2.size else 1.0
    beta = beta if beta > 0 else 1.0
    wts = smoothness * np.exp(-diff2 / (2.0 * beta)) / d
    wts = np.maximum(wts, 1e-12)           # strictly positive
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    w = _symmetric_from_pairs(lo, hi, wts, n)
    if return_truth:
        return w, c, truth.ravel(), flat_img
    return w, c


# --------------------------------------------------------------------------------------------
# splitting


def train_test_split_rows(X, y, test_frac, seed=0):
    """Split the rows of ``X`` (and ``y``, which may be None) at random.

    Returns ``(X_train, X_test, y_train, y_test)`` (scikit-learn's order); ``X`` may be a
    sparse matrix (rows taken in CSR) or an array.  ``round(test_frac * n)`` rows go to the
    test part; each part keeps the original row order.
    """
    test_frac = _check_frac("test_frac", test_frac, 0.0, 1.0, closed_high=True)
    n = X.shape[0]
    if y is not None and len(y) != n:
        raise DataError(f"X has {n} rows but y has {len(y)} entries")
    rng = np.random.default_rng(seed)
    is_test = np.zeros(n, dtype=bool)
    n_test = int(round(test_frac * n))
    if n_test:
        is_test[rng.choice(n, size=n_test, replace=False)] = True
    tr, te = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    if sp.issparse(X):
        X = sp.csr_matrix(X)
    Xtr, Xte = X[tr], X[te]
    if y is None:
        return Xtr, Xte, None, None
    y = np.asarray(y)
    return Xtr, Xte, y[tr], y[te]
