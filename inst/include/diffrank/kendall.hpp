// Kendall, Mallows and weighted Kendall kernels between real-valued profiles.
//
// Two profiles x, x' of the same n items are compared through the pairs of
// items they order the same way (concordant) or the opposite way
// (discordant). Counts follow Knight (1966): visit the items by increasing x
// and count the inversions of x', in O(n log n) with 64-bit counters. The
// inversions are counted with a binary trie of prefix counts over the ranks
// of x' (one counter per rank prefix at each bit level, a Fenwick-like tree
// without pointer chasing), which is branch-free and a few times faster than
// a merge sort while it fits in cache; profiles with more than 2^18 distinct
// values are counted by a merge sort.
//
// The kernels are those of Jiao and Vert, "The Kendall and Mallows kernels
// for permutations" (ICML 2015, IEEE TPAMI 2018) and "The weighted Kendall and
// high-order kernels for permutations" (ICML 2018); the weighted kernels sum,
// over the items, weighted counts of the items that dominate them in both
// profiles, kept in a Fenwick tree over the ranks.
//
// Each profile is ranked once (rank_profile, with the radix argsort of
// permutahedron.hpp); a pair of profiles then costs one pass over integer
// ranks. Missing values (NaN) are left out: a pair of profiles is compared on
// the items observed in both.
//
// Ties in the weighted kernels: an item's rank position counts from the top
// (1 = largest value); a block of m tied items occupies m positions a..a+m-1,
// and each item of the block gets the mean of the position weights u over
// them (its expected weight when the block is ordered at random). Pairs tied
// in either profile are never concordant.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "common.hpp"
#include "permutahedron.hpp"

namespace diffrank {

constexpr std::uint32_t kMissingRank = std::numeric_limits<std::uint32_t>::max();

// One ranked profile, in memory owned by the caller: `order` lists the q
// observed items by increasing value (ties by index) and `rank` gives, for
// each of the n items, its dense rank (0 = smallest, tied items share one) or
// kMissingRank; `distinct` is the number of distinct values.
struct RankedProfile {
  const std::uint32_t* order;
  const std::uint32_t* rank;
  std::size_t q;
  std::size_t distinct;
};

// Scratch memory of rank_profile, reused from profile to profile.
struct RankScratch {
  DecreasingOrder sort;
  std::vector<double> observed, sorted;
  std::vector<std::uint32_t> where;
};

// Ranks x[0..n) into order[0..q) and rank[0..n) (see RankedProfile). The
// order is that of a stable sort by value (-0 and +0 tie), found by the radix
// (long profiles) or bucket (short ones) argsort DecreasingOrder, several
// times faster than a comparison sort at 10^5 values and more.
inline RankedProfile rank_profile(const double* x, std::size_t n, std::uint32_t* order,
                                  std::uint32_t* rank, RankScratch& s) {
  std::size_t q = 0;
  for (std::size_t i = 0; i < n; ++i) q += !std::isnan(x[i]);
  s.sorted.resize(q);
  if (q == n) {
    s.sort(x, -1.0, n, order, s.sorted.data());
  } else {
    s.observed.resize(q);
    s.where.resize(q);
    for (std::size_t i = 0, k = 0; i < n; ++i) {
      if (std::isnan(x[i])) continue;
      s.observed[k] = x[i];
      s.where[k++] = static_cast<std::uint32_t>(i);
    }
    s.sort(s.observed.data(), -1.0, q, order, s.sorted.data());
    for (std::size_t k = 0; k < q; ++k) order[k] = s.where[order[k]];
  }
  // sorted holds -x in increasing order of x
  std::fill(rank, rank + n, kMissingRank);
  std::uint32_t r = 0;
  for (std::size_t k = 0; k < q; ++k) {
    if (k > 0 && s.sorted[k] != s.sorted[k - 1]) ++r;
    rank[order[k]] = r;
  }
  return {order, rank, q, q > 0 ? static_cast<std::size_t>(r) + 1 : 0};
}

inline RankedProfile rank_profile(const double* x, std::size_t n, std::uint32_t* order,
                                  std::uint32_t* rank) {
  RankScratch s;
  return rank_profile(x, n, order, rank, s);
}

// Counts of the values inserted so far (integers below 2^bits) by prefix:
// level b holds, for each value of v >> b, how many inserted values share it.
// The values greater than y are, over the levels b where bit b of y is 0,
// those whose prefix is y's with bit b set. Count is a 16-bit counter when
// fewer than 2^16 values are inserted: half the cache.
template <class Count>
class PrefixCounts {
 public:
  void reset(unsigned bits) {
    bits_ = bits;
    table_.assign(std::size_t(2) << bits, Count(0));
    std::size_t offset = 0;
    for (unsigned b = 0; b < bits; ++b) {
      level_[b] = table_.data() + offset;
      offset += std::size_t(1) << (bits - b);
    }
  }
  std::uint64_t greater(std::uint32_t y) const {
    std::uint64_t count = 0;
    for (unsigned b = 0; b < bits_; ++b) {
      const std::uint32_t prefix = y >> b;
      count += static_cast<std::uint32_t>(level_[b][prefix | 1u]) & ((prefix & 1u) - 1u);
    }
    return count;
  }
  std::uint32_t equal(std::uint32_t y) const { return level_[0][y]; }
  void insert(std::uint32_t y) {
    for (unsigned b = 0; b < bits_; ++b) ++level_[b][y >> b];
  }
  // greater(y) followed by insert(y), unrolled over the Bits levels (Bits
  // must be the `bits` of reset): level B starts at 2^(Bits+1) - 2^(Bits-B+1).
  template <unsigned Bits>
  std::uint64_t greater_then_insert(std::uint32_t y) {
    return greater_then_insert<Bits>(y, std::make_integer_sequence<unsigned, Bits>{});
  }

 private:
  template <unsigned Bits, unsigned... B>
  std::uint64_t greater_then_insert(std::uint32_t y, std::integer_sequence<unsigned, B...>) {
    Count* t = table_.data();
    std::uint64_t count = 0;
    ((count += static_cast<std::uint32_t>(
                   t[(std::size_t(2) << Bits) - (std::size_t(2) << (Bits - B)) + ((y >> B) | 1u)]) &
               (((y >> B) & 1u) - 1u),
      ++t[(std::size_t(2) << Bits) - (std::size_t(2) << (Bits - B)) + (y >> B)]),
     ...);
    return count;
  }

  unsigned bits_ = 0;
  std::vector<Count> table_;
  Count* level_[32] = {};
};

inline unsigned bits_for(std::size_t distinct) {
  unsigned bits = 1;
  while ((std::size_t(1) << bits) < distinct) ++bits;
  return bits;
}

// Sorts a[0..n) and returns its number of strict inversions (i < j with
// a[i] > a[j]); buf must hold n values.
inline std::uint64_t sort_count_inversions(std::uint32_t* a, std::size_t n, std::uint32_t* buf) {
  std::uint64_t inversions = 0;
  // Short runs by insertion sort: fewer passes over memory than merging from
  // width 1, and each shift is one inversion.
  const std::size_t run = 16;
  for (std::size_t s = 0; s < n; s += run) {
    const std::size_t e = std::min(n, s + run);
    for (std::size_t i = s + 1; i < e; ++i) {
      const std::uint32_t v = a[i];
      std::size_t j = i;
      while (j > s && a[j - 1] > v) {
        a[j] = a[j - 1];
        --j;
      }
      inversions += i - j;
      a[j] = v;
    }
  }
  std::uint32_t* src = a;
  std::uint32_t* dst = buf;
  for (std::size_t width = run; width < n; width *= 2) {
    for (std::size_t lo = 0; lo < n; lo += 2 * width) {
      const std::size_t mid = std::min(n, lo + width), hi = std::min(n, lo + 2 * width);
      std::size_t i = lo, j = mid, k = lo;
      // Branch-free merge: an element taken from the right half jumps over
      // every element left in the left half. Equal values are not inversions,
      // so the left one goes first.
      while (i < mid && j < hi) {
        const std::uint32_t l = src[i], r = src[j];
        const bool right = r < l;
        dst[k++] = right ? r : l;
        inversions += right ? static_cast<std::uint64_t>(mid - i) : 0;
        i += !right;
        j += right;
      }
      while (i < mid) dst[k++] = src[i++];
      while (j < hi) dst[k++] = src[j++];
    }
    std::swap(src, dst);
  }
  if (src != a) std::copy(src, src + n, a);
  return inversions;
}

inline std::int64_t pairs_of(std::int64_t m) { return m * (m - 1) / 2; }

// Pair counts over the n items observed in both profiles. tied_x counts the
// pairs tied in x (also those tied in both), tied_xy the pairs tied in both.
struct KendallCounts {
  std::int64_t n = 0, n0 = 0, concordant = 0, discordant = 0, tied_x = 0, tied_y = 0, tied_xy = 0;
};

// Scratch memory of one thread, reused from pair to pair.
struct KendallScratch {
  std::vector<std::uint32_t> seq, buf, yblock;
  PrefixCounts<std::uint16_t> counts16;
  PrefixCounts<std::uint32_t> counts32;
  std::vector<double> uy;
  std::vector<std::uint32_t> yfirst, ysize;
  std::vector<double> tree;
  void reserve(std::size_t n) {
    seq.resize(n);
    buf.resize(n);
    yblock.resize(n);
  }
  void reserve_weighted(std::size_t n) {
    reserve(n);
    uy.resize(n);
    yfirst.resize(n);
    ysize.resize(n);
  }
};

// Whether item f enters the comparison of a pair: observed in both profiles
// (`other` and `mask` are the profiles whose missing items are left out).
inline bool kept(std::uint32_t f, const RankedProfile& other, const RankedProfile& mask) {
  return other.rank[f] != kMissingRank && mask.rank[f] != kMissingRank;
}

// The same counts by a merge sort, for y ranks too many for a trie: each
// tie block of x is sorted by y first, so that pairs tied in x are never
// inversions and pairs tied in both are equal neighbours. `scratch` must hold
// n values; seq and xr are overwritten.
inline KendallCounts kendall_counts_by_merge(std::uint32_t* seq, std::uint32_t* xr, std::size_t n,
                                             std::uint32_t* scratch, KendallCounts c) {
  std::size_t k = 0;
  while (k < n) {
    std::size_t e = k + 1;
    while (e < n && xr[e] == xr[k]) ++e;
    if (e - k > 1) {
      c.tied_x += pairs_of(static_cast<std::int64_t>(e - k));
      std::sort(seq + k, seq + e);
      for (std::size_t t = k; t < e;) {
        std::size_t u = t + 1;
        while (u < e && seq[u] == seq[t]) ++u;
        c.tied_xy += pairs_of(static_cast<std::int64_t>(u - t));
        t = u;
      }
    }
    k = e;
  }
  c.discordant = static_cast<std::int64_t>(sort_count_inversions(seq, n, scratch));
  for (k = 0; k < n;) {
    std::size_t e = k + 1;
    while (e < n && seq[e] == seq[k]) ++e;
    c.tied_y += pairs_of(static_cast<std::int64_t>(e - k));
    k = e;
  }
  c.concordant = c.n0 - c.discordant - c.tied_x - c.tied_y + c.tied_xy;
  return c;
}

namespace detail {

// Discordant and tied pair counts of the y ranks seq[0..n) visited by
// increasing x (x ranks xr[0..n)); `before` is scratch for n values.
template <class Count, unsigned Bits>
void count_pairs_fixed(PrefixCounts<Count>& counts, const std::uint32_t* seq,
                       const std::uint32_t* xr, std::size_t n, std::uint32_t* before,
                       KendallCounts& c) {
  counts.reset(Bits);
  std::uint64_t discordant = 0, tied_y = 0, tied_xy = 0, tied_x = 0;
  std::size_t k = 0;
  while (k < n) {
    std::size_t e = k + 1;
    while (e < n && xr[e] == xr[k]) ++e;
    if (e - k == 1) {
      tied_y += counts.equal(seq[k]);
      discordant += counts.template greater_then_insert<Bits>(seq[k]);
    } else {
      // Items tied in x do not count against each other: query the whole
      // block, then insert it; equal y inside the block are tied in both.
      tied_x += pairs_of(static_cast<std::int64_t>(e - k));
      for (std::size_t t = k; t < e; ++t) {
        discordant += counts.greater(seq[t]);
        before[t - k] = counts.equal(seq[t]);
      }
      for (std::size_t t = k; t < e; ++t) {
        const std::uint32_t equal = counts.equal(seq[t]);
        tied_y += equal;
        tied_xy += equal - before[t - k];
        counts.insert(seq[t]);
      }
    }
    k = e;
  }
  c.discordant = static_cast<std::int64_t>(discordant);
  c.tied_x = static_cast<std::int64_t>(tied_x);
  c.tied_y = static_cast<std::int64_t>(tied_y);
  c.tied_xy = static_cast<std::int64_t>(tied_xy);
  c.concordant = c.n0 - c.discordant - c.tied_x - c.tied_y + c.tied_xy;
}

// count_pairs_fixed with Bits = bits, for bits from Bits to kMaxTrieBits.
// Beyond 2^18 distinct values the trie's upper levels (over a megabyte of
// counters) miss the cache at every insertion, and the merge sort is faster
// (at 10^6 distinct values, about 2.5 times).
constexpr unsigned kMaxTrieBits = 18;
template <class Count, unsigned Bits = 1>
void count_pairs(PrefixCounts<Count>& counts, unsigned bits, const std::uint32_t* seq,
                 const std::uint32_t* xr, std::size_t n, std::uint32_t* before, KendallCounts& c) {
  if constexpr (Bits < kMaxTrieBits) {
    if (bits != Bits) {
      count_pairs<Count, Bits + 1>(counts, bits, seq, xr, n, before, c);
      return;
    }
  }
  count_pairs_fixed<Count, Bits>(counts, seq, xr, n, before, c);
}

}  // namespace detail

// Knight's method on the items observed in a, b and mask (pass mask = b for a
// plain pair). s must have been reserved for the number of items.
inline KendallCounts kendall_counts(const RankedProfile& a, const RankedProfile& b,
                                    const RankedProfile& mask, KendallScratch& s) {
  KendallCounts c;
  std::uint32_t* seq = s.seq.data();  // y ranks by increasing x
  std::uint32_t* xr = s.buf.data();   // x ranks, to find x's tie blocks
  std::size_t n = 0;
  for (std::size_t k = 0; k < a.q; ++k) {
    const std::uint32_t f = a.order[k];
    if (!kept(f, b, mask)) continue;
    seq[n] = b.rank[f];
    xr[n] = a.rank[f];
    ++n;
  }
  c.n = static_cast<std::int64_t>(n);
  c.n0 = pairs_of(c.n);
  const unsigned bits = bits_for(b.distinct);
  if (bits > detail::kMaxTrieBits) return kendall_counts_by_merge(seq, xr, n, s.yblock.data(), c);
  if (n < 65536) {
    detail::count_pairs(s.counts16, bits, seq, xr, n, s.yblock.data(), c);
  } else {
    detail::count_pairs(s.counts32, bits, seq, xr, n, s.yblock.data(), c);
  }
  return c;
}

// Pair counts of two vectors x[0..n) and y[0..n), over the items observed in
// both: what kendall_counts gives for their two ranked profiles, without
// ranking x (its order and tie blocks are read from its sorted values) or
// storing either profile's ranks item by item, so that two long vectors cost
// two radix sorts, one scatter of y's ranks, one gather and one count. The
// buffers are kept from call to call and left uninitialized (Buffer).
class PairCounts {
 public:
  KendallCounts operator()(const double* x, const double* y, std::size_t n) {
    std::size_t q = 0;
    for (std::size_t i = 0; i < n; ++i) q += !(std::isnan(x[i]) || std::isnan(y[i]));
    const double* xv = x;
    const double* yv = y;
    if (q < n) {
      xs_.resize(q);
      ys_.resize(q);
      for (std::size_t i = 0, k = 0; i < n; ++i) {
        if (std::isnan(x[i]) || std::isnan(y[i])) continue;
        xs_[k] = x[i];
        ys_[k++] = y[i];
      }
      xv = xs_.data();
      yv = ys_.data();
    }
    KendallCounts c;
    c.n = static_cast<std::int64_t>(q);
    c.n0 = pairs_of(c.n);
    if (q == 0) return c;
    order_.resize(q);
    sorted_.resize(q);
    xr_.resize(q);
    ry_.resize(q);
    seq_.resize(q);
    scratch_.resize(q);
    // x's dense ranks in x's order (sorted_ holds -x, increasing in x)
    sort_(xv, -1.0, q, order_.data(), sorted_.data());
    std::uint32_t r = 0;
    for (std::size_t k = 0; k < q; ++k) {
      if (k > 0 && sorted_[k] != sorted_[k - 1]) ++r;
      xr_[k] = r;
    }
    // y's dense ranks by item, gathered in x's order (order_ of x moves to seq_)
    for (std::size_t k = 0; k < q; ++k) seq_[k] = order_[k];
    sort_(yv, -1.0, q, order_.data(), sorted_.data());
    r = 0;
    for (std::size_t k = 0; k < q; ++k) {
      if (k > 0 && sorted_[k] != sorted_[k - 1]) ++r;
      ry_[order_[k]] = r;
    }
    for (std::size_t k = 0; k < q; ++k) seq_[k] = ry_[seq_[k]];
    const unsigned bits = bits_for(static_cast<std::size_t>(r) + 1);
    if (bits > detail::kMaxTrieBits) {
      return kendall_counts_by_merge(seq_.data(), xr_.data(), q, scratch_.data(), c);
    }
    if (q < 65536) {
      detail::count_pairs(counts16_, bits, seq_.data(), xr_.data(), q, scratch_.data(), c);
    } else {
      detail::count_pairs(counts32_, bits, seq_.data(), xr_.data(), q, scratch_.data(), c);
    }
    return c;
  }

 private:
  DecreasingOrder sort_;
  Buffer<double> xs_, ys_, sorted_;
  Buffer<std::uint32_t> order_, xr_, ry_, seq_, scratch_;
  PrefixCounts<std::uint16_t> counts16_;
  PrefixCounts<std::uint32_t> counts32_;
};

inline double nan_value() { return std::numeric_limits<double>::quiet_NaN(); }

// sqrt(a * b), exact when a == b so that a profile's tau-b with itself is 1.
inline double geometric_mean(double a, double b) {
  return a == b ? a : std::sqrt(a) * std::sqrt(b);
}

// Kendall's tau-a, (n_c - n_d) / n0; NaN with fewer than two items.
inline double tau_a(const KendallCounts& c) {
  if (c.n0 == 0) return nan_value();
  return static_cast<double>(c.concordant - c.discordant) / static_cast<double>(c.n0);
}

// Kendall's tau-b, (n_c - n_d) / sqrt((n0 - t_x)(n0 - t_y)), as
// stats::cor(method = "kendall"); NaN when a profile is constant.
inline double tau_b(const KendallCounts& c) {
  const std::int64_t dx = c.n0 - c.tied_x, dy = c.n0 - c.tied_y;
  if (dx == 0 || dy == 0) return nan_value();
  return static_cast<double>(c.concordant - c.discordant) /
         geometric_mean(static_cast<double>(dx), static_cast<double>(dy));
}

// Kendall distance with ties: discordant pairs, plus one half for each pair
// tied in one profile only (Fagin et al.'s K^(1/2)). It is half the squared
// distance between the embeddings (1[x_i < x_j], 1[x_i > x_j])_{i<j}, so the
// Mallows kernel built on it stays positive definite with ties; without ties
// it is n_d.
inline double kendall_distance(const KendallCounts& c) {
  return static_cast<double>(c.discordant) +
         0.5 * static_cast<double>(c.tied_x + c.tied_y - 2 * c.tied_xy);
}

// Mallows kernel exp(-lambda d), d the distance above, divided by n0 when
// normalized; NaN with fewer than two items.
inline double mallows(const KendallCounts& c, double lambda, bool normalized) {
  if (c.n0 == 0) return nan_value();
  double d = kendall_distance(c);
  if (normalized) d /= static_cast<double>(c.n0);
  return std::exp(-lambda * d);
}

// Partial rankings (Jiao and Vert 2018, section on partial rankings). A
// profile with ties or missing items stands for the set of total orders
// consistent with it: tied items in any order, and each missing item anywhere
// among the observed ones. The convolution Kendall kernel of two such
// profiles is the mean Kendall kernel over all pairs of total orders, which
// is the inner product of their mean embeddings: for a pair of items (i, j),
// the mean of sign(sigma(i) - sigma(j)) over the total orders sigma.
//   - Both observed: the sign of x_i - x_j (0 when tied), so profiles with
//     ties but no missing items give tau-a's numerator n_c - n_d.
//   - i observed, j missing: j falls into each of the q + 1 gaps around the q
//     observed items with the same chance, so the mean is
//     (below(i) - above(i)) / (q + 1), with below(i) and above(i) the observed
//     items strictly below and above i (ties count half each way: a tied
//     block's items take its positions in random order).
//   - Both missing: 0, by symmetry.
// Summed over the pairs, by whether each item is observed in both profiles
// (O), in a only (A), in b only (B) or in neither (N), the products are
//   sum over pairs in O of sign_a sign_b                      (Knight's count)
//   + sum over i in O, j in A of sign_a(i, j) c_b(i)
//   + sum over i in O, j in B of sign_b(i, j) c_a(i)
//   + |N| sum over i in O of c_a(i) c_b(i)
//   - (sum over i in A of c_a(i)) (sum over j in B of c_b(j))
// (pairs inside A, inside B, or with one item in N and the other not in O
// are 0 in one of the two profiles), each a walk over a profile's order:
// O(n log n) for a pair.

// Keeps the items of p among its k largest values ranked and ties all the
// others at the bottom (a top-k list): ranks below the k-th largest value's
// become 0. Items tied with the k-th largest value stay ranked, so the list
// may hold more than k items. rank is p's rank array (writable).
inline void keep_top(RankedProfile& p, std::uint32_t* rank, std::size_t k) {
  if (k == 0 || k >= p.q) return;
  const std::uint32_t cut = rank[p.order[p.q - k]];
  if (cut == 0) return;
  for (std::size_t t = 0; t < p.q; ++t) {
    const std::uint32_t f = p.order[t];
    rank[f] = rank[f] >= cut ? rank[f] - cut + 1 : 0;
  }
  p.distinct -= cut - 1;
}

// For each observed item i of p, below(i) - above(i) over the observed items
// of p (see above), in num[i]; when sub is given, also sub_num[i] = the same
// count over the observed items of p missing in `other` only, and returns
// the sum of num over those items. `other` may be p itself (no such items).
inline double position_numerators(const RankedProfile& p, const RankedProfile& other,
                                  std::int64_t* num, std::int64_t* sub_num,
                                  std::int64_t& sub_count) {
  sub_count = 0;
  for (std::size_t t = 0; t < p.q; ++t) sub_count += other.rank[p.order[t]] == kMissingRank;
  const std::int64_t q = static_cast<std::int64_t>(p.q);
  std::int64_t below = 0, sub_below = 0;
  double sub_sum = 0.0;
  std::size_t k = 0;
  while (k < p.q) {
    std::size_t e = k + 1;
    while (e < p.q && p.rank[p.order[e]] == p.rank[p.order[k]]) ++e;
    const std::int64_t size = static_cast<std::int64_t>(e - k);
    std::int64_t sub_size = 0;
    for (std::size_t t = k; t < e; ++t) sub_size += other.rank[p.order[t]] == kMissingRank;
    const std::int64_t value = below - (q - below - size);
    const std::int64_t sub_value = sub_below - (sub_count - sub_below - sub_size);
    for (std::size_t t = k; t < e; ++t) {
      const std::uint32_t f = p.order[t];
      num[f] = value;
      if (sub_num != nullptr) sub_num[f] = sub_value;
      if (other.rank[f] == kMissingRank) sub_sum += static_cast<double>(value);
    }
    below += size;
    sub_below += sub_size;
    k = e;
  }
  return sub_sum;
}

// Scratch of interleaved_kendall: four counts per item.
struct PartialScratch {
  std::vector<std::int64_t> num_a, sub_a, num_b, sub_b;
  void reserve(std::size_t n) {
    num_a.resize(n);
    sub_a.resize(n);
    num_b.resize(n);
    sub_b.resize(n);
  }
};

// The sum over the pairs of n items of the products of the mean embeddings
// of a and b (the convolution kernel times n(n-1)/2); `counts` are a and b's
// Knight counts on the items observed in both.
inline double interleaved_kendall(const RankedProfile& a, const RankedProfile& b, std::size_t n,
                                  const KendallCounts& counts, PartialScratch& s) {
  std::int64_t only_a = 0, only_b = 0;
  const double sum_a = position_numerators(a, b, s.num_a.data(), s.sub_a.data(), only_a);
  const double sum_b = position_numerators(b, a, s.num_b.data(), s.sub_b.data(), only_b);
  // over the items observed in both: sign sums against A and B, and c_a c_b
  std::int64_t against_a = 0, against_b = 0, both = 0;
  for (std::size_t t = 0; t < a.q; ++t) {
    const std::uint32_t f = a.order[t];
    if (b.rank[f] == kMissingRank) continue;
    against_a += s.sub_a[f] * s.num_b[f];
    against_b += s.sub_b[f] * s.num_a[f];
    both += s.num_a[f] * s.num_b[f];
  }
  const double gaps_a = static_cast<double>(a.q) + 1.0, gaps_b = static_cast<double>(b.q) + 1.0;
  const double neither =
      static_cast<double>(static_cast<std::int64_t>(n) - counts.n - only_a - only_b);
  // grouped so that swapping a and b gives the same bits (a symmetric matrix
  // holds one of the two)
  return static_cast<double>(counts.concordant - counts.discordant) +
         (static_cast<double>(against_a) / gaps_b + static_cast<double>(against_b) / gaps_a) +
         (neither * static_cast<double>(both) - sum_a * sum_b) / (gaps_a * gaps_b);
}

// interleaved_kendall of a profile with itself: its pairs ordered among the
// observed items, plus (n - q) sum of c(i)^2 over the observed items.
inline double interleaved_kendall_self(const RankedProfile& p, std::size_t n, PartialScratch& s) {
  std::int64_t none = 0;
  position_numerators(p, p, s.num_a.data(), nullptr, none);
  std::int64_t tied = 0, squares = 0;
  std::size_t k = 0;
  while (k < p.q) {
    std::size_t e = k + 1;
    while (e < p.q && p.rank[p.order[e]] == p.rank[p.order[k]]) ++e;
    tied += pairs_of(static_cast<std::int64_t>(e - k));
    k = e;
  }
  for (std::size_t t = 0; t < p.q; ++t) squares += s.num_a[p.order[t]] * s.num_a[p.order[t]];
  const double gaps = static_cast<double>(p.q) + 1.0;
  return static_cast<double>(pairs_of(static_cast<std::int64_t>(p.q)) - tied) +
         static_cast<double>(n - p.q) * static_cast<double>(squares) / (gaps * gaps);
}

// Convolution Mallows kernel of two profiles with ties (bucket orders, such
// as top-k lists): the mean of exp(-lambda d) over the total orders
// consistent with each, d the number of discordant pairs. Given b's order,
// the pairs inside a tie block of a of size t are discordant as often as the
// inversions of a random order of t items, whose mean of q^inv (q =
// exp(-lambda)) is [t]_q! / t! with [t]_q! the q-factorial; the pairs in
// different blocks of a but one block of b are the inversions of a random
// order of b's block against a's weak order on it, whose mean of q^inv is the
// q-multinomial over t! on the parts tied in both. With G(t) = log([t]_q! /
// t!), the kernel is
//   exp(-lambda n_d + sum over a's blocks G(t) + sum over b's blocks G(t)
//       - sum over the groups tied in both G(t)),
// n_d the pairs strictly ordered in both and discordant; without ties it is
// exp(-lambda n_d). A profile's kernel with itself is exp(sum over its blocks
// G(t)), below 1 with ties; the package divides by the geometric mean of the
// two, for a unit diagonal like the Mallows kernel of full rankings:
//   exp(-lambda n_d + (1/2) sum over a's and b's blocks G(t)
//       - sum over the groups tied in both G(t)).

// G(t) for t = 0..n.
inline std::vector<double> mean_q_factorial_logs(std::size_t n, double lambda) {
  std::vector<double> g(n + 1, 0.0);
  if (!(lambda > 0.0)) return g;
  const double unit = std::expm1(-lambda);  // 1 - q, negated
  for (std::size_t t = 2; t <= n; ++t) {
    const double j = static_cast<double>(t);
    // [j]_q / j = (1 - q^j) / ((1 - q) j)
    g[t] = g[t - 1] + std::log(std::expm1(-lambda * j) / (unit * j));
  }
  return g;
}

// The exponent of the convolution Mallows kernel above, divided by the
// geometric mean of the two profiles' kernels with themselves (0 for a
// profile with itself), with counts a and b's Knight counts, distances
// divided by `pairs` (as mallows() divides by n0, so that profiles without
// ties give its bits when pairs = n0), and g from mean_q_factorial_logs for
// lambda / pairs; scratch holds n values.
inline double mallows_ties_exponent(const RankedProfile& a, const RankedProfile& b,
                                    const KendallCounts& counts, double lambda, double pairs,
                                    const std::vector<double>& g, std::uint32_t* scratch) {
  double distance = static_cast<double>(counts.discordant);
  if (pairs != 1.0) distance /= pairs;
  double exponent = -lambda * distance;
  auto blocks = [&](const RankedProfile& p, bool groups) {
    std::size_t k = 0;
    while (k < p.q) {
      std::size_t e = k + 1;
      while (e < p.q && p.rank[p.order[e]] == p.rank[p.order[k]]) ++e;
      if (e - k > 1) {
        exponent += 0.5 * g[e - k];
        if (groups) {
          const std::size_t m = e - k;
          for (std::size_t t = 0; t < m; ++t) scratch[t] = b.rank[p.order[k + t]];
          std::sort(scratch, scratch + m);
          for (std::size_t t = 0; t < m;) {
            std::size_t u = t + 1;
            while (u < m && scratch[u] == scratch[t]) ++u;
            exponent -= g[u - t];
            t = u;
          }
        }
      }
      k = e;
    }
  };
  blocks(a, true);
  blocks(b, false);
  return exponent;
}

enum class WeightKind {
  product,   // w(a, b) = u_a u_b (top-k: u = 1 on the k top positions)
  additive,  // w(a, b) = u_a + u_b
  average    // mean of the top-k kernels over k = 1..n
};

namespace detail {

// Sum over k = 1..q of F(k) G(k), where F(k) is the share of the positions
// first..first+size-1 that are <= k (a ramp from 0 to 1), and G likewise.
// Summed piecewise on the pieces where both are linear, from each piece's
// start so that every term is non-negative.
inline double sum_ramp_products(double q, double first1, double size1, double first2,
                                double size2) {
  auto value = [](double k, double first, double size) {
    return std::min(1.0, std::max(0.0, (k - first + 1.0) / size));
  };
  auto slope = [](double k, double first, double size) {
    return (k >= first && k < first + size - 1.0) ? 1.0 / size : 0.0;
  };
  double cuts[6] = {1.0, first1, first1 + size1 - 1.0, first2, first2 + size2 - 1.0, q + 1.0};
  std::sort(cuts, cuts + 6);
  double total = 0.0;
  for (int c = 0; c < 5; ++c) {
    const double lo = std::max(1.0, cuts[c]), hi = std::min(q + 1.0, cuts[c + 1]);
    if (hi <= lo) continue;
    const double len = hi - lo;  // k = lo .. hi - 1
    const double f = value(lo, first1, size1), g = value(lo, first2, size2);
    const double sf = slope(lo, first1, size1), sg = slope(lo, first2, size2);
    const double s1 = len * (len - 1.0) / 2.0, s2 = (len - 1.0) * len * (2.0 * len - 1.0) / 6.0;
    total += f * g * len + (f * sg + g * sf) * s1 + sf * sg * s2;
  }
  return total;
}

// Fenwick tree over block indices 0..m-1 holding four sums per node: count,
// sum of u_x u_y, sum of u_x, sum of u_y.
struct Fenwick4 {
  double* t;
  std::size_t m;
  void clear() { std::fill(t, t + 4 * m, 0.0); }
  void add(std::size_t i, double c, double w, double dx, double dy) {
    for (++i; i <= m; i += i & (~i + 1)) {
      double* node = t + 4 * (i - 1);
      node[0] += c;
      node[1] += w;
      node[2] += dx;
      node[3] += dy;
    }
  }
  // Sums over indices 0..i-1.
  void prefix(std::size_t i, double out[4]) const {
    out[0] = out[1] = out[2] = out[3] = 0.0;
    for (; i > 0; i -= i & (~i + 1)) {
      const double* node = t + 4 * (i - 1);
      out[0] += node[0];
      out[1] += node[1];
      out[2] += node[2];
      out[3] += node[3];
    }
  }
};

}  // namespace detail

// Weighted Kendall kernel of Jiao and Vert (2018) over the items observed in
// a, b and mask: the sum over the pairs (i, j) with x_i < x_j and y_i < y_j of
// w(pos_x(i), pos_x(j)) w(pos_y(i), pos_y(j)), positions counted from the top
// over the items compared and weighted by u[0..) (u[0] for the top position;
// unused for the average kernel). Ties as in the header comment.
inline double weighted_kendall(const RankedProfile& a, const RankedProfile& b,
                               const RankedProfile& mask, WeightKind kind, const double* u,
                               KendallScratch& s) {
  // Positions of the items in b (y), walking b from its largest value down.
  std::size_t q = 0, k = b.q, block = 0;
  while (k > 0) {
    const std::size_t e = k;  // the tie block is order[lo..e)
    std::size_t lo = k - 1;
    while (lo > 0 && b.rank[b.order[lo - 1]] == b.rank[b.order[k - 1]]) --lo;
    std::size_t m = 0;
    for (std::size_t t = lo; t < e; ++t) m += kept(b.order[t], a, mask);
    if (m > 0) {
      double sum = 0.0;
      if (kind != WeightKind::average) {
        for (std::size_t t = 0; t < m; ++t) sum += u[q + t];
      }
      const double mean = sum / static_cast<double>(m);
      for (std::size_t t = lo; t < e; ++t) {
        const std::uint32_t f = b.order[t];
        if (!kept(f, a, mask)) continue;
        s.yblock[f] = static_cast<std::uint32_t>(block);
        s.uy[f] = mean;
        s.yfirst[f] = static_cast<std::uint32_t>(q + 1);
        s.ysize[f] = static_cast<std::uint32_t>(m);
      }
      q += m;
      ++block;
    }
    k = lo;
  }

  // Items by decreasing x: the weighted sums over the items already inserted
  // and above in y are those over the items that dominate in both.
  s.tree.assign(4 * std::max<std::size_t>(block, 1), 0.0);
  // Block indices grow downwards: the items above y_i are the prefix.
  detail::Fenwick4 tree{s.tree.data(), block};
  const double qd = static_cast<double>(q);
  double total = 0.0, sums[4];
  std::size_t position = 0;
  k = a.q;
  while (k > 0) {
    const std::size_t e = k;
    std::size_t lo = k - 1;
    while (lo > 0 && a.rank[a.order[lo - 1]] == a.rank[a.order[k - 1]]) --lo;
    std::size_t m = 0;
    for (std::size_t t = lo; t < e; ++t) m += kept(a.order[t], b, mask);
    if (m > 0) {
      double sum = 0.0;
      if (kind != WeightKind::average) {
        for (std::size_t t = 0; t < m; ++t) sum += u[position + t];
      }
      const double ux = sum / static_cast<double>(m);
      // Query the whole block before inserting it: items tied in x do not
      // dominate each other.
      for (std::size_t t = lo; t < e; ++t) {
        const std::uint32_t f = a.order[t];
        if (!kept(f, b, mask)) continue;
        tree.prefix(s.yblock[f], sums);
        const double uy = s.uy[f];
        switch (kind) {
          case WeightKind::product:
            total += ux * uy * sums[1];
            break;
          case WeightKind::additive:
            total += ux * uy * sums[0] + ux * sums[3] + uy * sums[2] + sums[1];
            break;
          case WeightKind::average:
            if (sums[0] > 0.0) {
              total += sums[0] * detail::sum_ramp_products(qd, static_cast<double>(position + 1),
                                                           static_cast<double>(m),
                                                           static_cast<double>(s.yfirst[f]),
                                                           static_cast<double>(s.ysize[f]));
            }
            break;
        }
      }
      for (std::size_t t = lo; t < e; ++t) {
        const std::uint32_t f = a.order[t];
        if (!kept(f, b, mask)) continue;
        const double uy = s.uy[f];
        tree.add(s.yblock[f], 1.0, ux * uy, ux, uy);
      }
      position += m;
    }
    k = lo;
  }
  if (kind == WeightKind::average) total = q > 0 ? total / qd : 0.0;
  return total;
}

}  // namespace diffrank
