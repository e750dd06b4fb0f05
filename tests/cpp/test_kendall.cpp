// kendall.hpp: pair counts against an O(n^2) count (with ties and missing
// values), the three counting paths against each other, the weighted
// kernels against their O(n^2) definition, and the kernels on partial
// rankings against enumeration of the total orders consistent with them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <diffrank/kendall.hpp>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "helpers.hpp"

namespace {

using namespace testing_helpers;

struct Ranked {
  std::vector<std::uint32_t> order, rank;
  diffrank::RankedProfile profile;
  explicit Ranked(const std::vector<double>& x) : order(x.size()), rank(x.size()) {
    profile = diffrank::rank_profile(x.data(), x.size(), order.data(), rank.data());
  }
};

diffrank::KendallCounts brute_counts(const std::vector<double>& x, const std::vector<double>& y) {
  diffrank::KendallCounts c;
  std::vector<std::size_t> kept;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!std::isnan(x[i]) && !std::isnan(y[i])) kept.push_back(i);
  }
  c.n = static_cast<std::int64_t>(kept.size());
  c.n0 = c.n * (c.n - 1) / 2;
  for (std::size_t p = 0; p < kept.size(); ++p) {
    for (std::size_t q = p + 1; q < kept.size(); ++q) {
      const double dx = x[kept[p]] - x[kept[q]], dy = y[kept[p]] - y[kept[q]];
      c.concordant += dx * dy > 0;
      c.discordant += dx * dy < 0;
      c.tied_x += dx == 0;
      c.tied_y += dy == 0;
      c.tied_xy += dx == 0 && dy == 0;
    }
  }
  return c;
}

void expect_counts_equal(const diffrank::KendallCounts& a, const diffrank::KendallCounts& b) {
  EXPECT_EQ(a.n, b.n);
  EXPECT_EQ(a.n0, b.n0);
  EXPECT_EQ(a.concordant, b.concordant);
  EXPECT_EQ(a.discordant, b.discordant);
  EXPECT_EQ(a.tied_x, b.tied_x);
  EXPECT_EQ(a.tied_y, b.tied_y);
  EXPECT_EQ(a.tied_xy, b.tied_xy);
}

diffrank::KendallCounts counts(const std::vector<double>& x, const std::vector<double>& y) {
  const Ranked a(x), b(y);
  diffrank::KendallScratch s;
  s.reserve(x.size());
  return diffrank::kendall_counts(a.profile, b.profile, b.profile, s);
}

// The merge-sort path on the same inputs as kendall_counts builds.
diffrank::KendallCounts counts_by_merge(const std::vector<double>& x, const std::vector<double>& y) {
  const Ranked a(x), b(y);
  std::vector<std::uint32_t> seq, xr;
  for (std::size_t k = 0; k < a.profile.q; ++k) {
    const std::uint32_t f = a.order[k];
    if (b.rank[f] == diffrank::kMissingRank) continue;
    seq.push_back(b.rank[f]);
    xr.push_back(a.rank[f]);
  }
  diffrank::KendallCounts c;
  c.n = static_cast<std::int64_t>(seq.size());
  c.n0 = diffrank::pairs_of(c.n);
  std::vector<std::uint32_t> scratch(seq.size());
  return diffrank::kendall_counts_by_merge(seq.data(), xr.data(), seq.size(), scratch.data(), c);
}

TEST(KendallCounts, MatchTheQuadraticCount) {
  std::mt19937_64 rng(41);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (std::size_t n : {0u, 1u, 2u, 3u, 10u, 100u, 2000u}) {
    for (int levels : {2, 7, 1000000}) {
      std::vector<double> x = integers(n, rng, levels), y = integers(n, rng, levels);
      for (std::size_t i = 0; i < n; i += 13) x[i] = nan;
      for (std::size_t i = 5; i < n; i += 17) y[i] = nan;
      const diffrank::KendallCounts expected = brute_counts(x, y);
      expect_counts_equal(counts(x, y), expected);
      expect_counts_equal(counts_by_merge(x, y), expected);
      expect_counts_equal(diffrank::PairCounts()(x.data(), y.data(), n), expected);
      const diffrank::KendallCounts c = counts(x, y);
      EXPECT_EQ(c.concordant + c.discordant + c.tied_x + c.tied_y - c.tied_xy, c.n0);
    }
  }
}

TEST(KendallCounts, LongProfilesAgreeAcrossCountingPaths) {
  // above 2^16 items the trie uses 32-bit counters
  std::mt19937_64 rng(42);
  const std::size_t n = 70000;
  for (int levels : {50, 1 << 30}) {
    const std::vector<double> x = integers(n, rng, levels), y = integers(n, rng, levels);
    expect_counts_equal(counts(x, y), counts_by_merge(x, y));
  }
}

TEST(KendallCounts, TauBIsTheTextbookFormula) {
  std::mt19937_64 rng(43);
  const std::vector<double> x = integers(300, rng, 20), y = integers(300, rng, 25);
  const diffrank::KendallCounts c = brute_counts(x, y);
  const double expected = static_cast<double>(c.concordant - c.discordant) /
                          std::sqrt(static_cast<double>(c.n0 - c.tied_x) *
                                    static_cast<double>(c.n0 - c.tied_y));
  EXPECT_NEAR(diffrank::tau_b(counts(x, y)), expected, 1e-15);
  EXPECT_EQ(diffrank::tau_b(counts(x, x)), 1.0);
  EXPECT_TRUE(std::isnan(diffrank::tau_b(counts(std::vector<double>(5, 1.0), y))));
}

// The weighted kernel of Jiao and Vert over the items observed in both
// profiles, without ties: positions counted from the top (1 = largest).
double brute_weighted(const std::vector<double>& x, const std::vector<double>& y,
                      diffrank::WeightKind kind, const std::vector<double>& u) {
  std::vector<std::size_t> kept;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!std::isnan(x[i]) && !std::isnan(y[i])) kept.push_back(i);
  }
  const std::size_t q = kept.size();
  std::vector<std::size_t> px(q, 1), py(q, 1);
  for (std::size_t p = 0; p < q; ++p) {
    for (std::size_t r = 0; r < q; ++r) {
      px[p] += x[kept[r]] > x[kept[p]];
      py[p] += y[kept[r]] > y[kept[p]];
    }
  }
  auto weight = [&](std::size_t a, std::size_t b) {
    return kind == diffrank::WeightKind::product ? u[a - 1] * u[b - 1] : u[a - 1] + u[b - 1];
  };
  double total = 0.0;
  for (std::size_t p = 0; p < q; ++p) {
    for (std::size_t r = 0; r < q; ++r) {
      if (!(x[kept[p]] < x[kept[r]] && y[kept[p]] < y[kept[r]])) continue;
      if (kind == diffrank::WeightKind::average) {
        // mean over k = 1..q of the top-k kernel
        const std::size_t worst = std::max(std::max(px[p], px[r]), std::max(py[p], py[r]));
        total += static_cast<double>(q - worst + 1) / static_cast<double>(q);
      } else {
        total += weight(px[p], px[r]) * weight(py[p], py[r]);
      }
    }
  }
  return total;
}

TEST(WeightedKendall, MatchesTheQuadraticDefinition) {
  std::mt19937_64 rng(44);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (std::size_t n : {2u, 9u, 120u}) {
    std::vector<double> x = normals(n, rng), y = normals(n, rng);
    x[0] = nan;
    y[n - 1] = nan;
    const std::vector<double> u = uniforms(n, rng, 0.0, 1.0);
    const Ranked a(x), b(y);
    diffrank::KendallScratch s;
    s.reserve_weighted(n);
    for (diffrank::WeightKind kind : {diffrank::WeightKind::product, diffrank::WeightKind::additive,
                                      diffrank::WeightKind::average}) {
      const double expected = brute_weighted(x, y, kind, u);
      const double got = diffrank::weighted_kendall(a.profile, b.profile, b.profile, kind, u.data(), s);
      EXPECT_NEAR(got, expected, 1e-12 * std::max(1.0, std::abs(expected)))
          << "n " << n << " kind " << static_cast<int>(kind);
    }
  }
}

// rank_profile (radix argsort above 32,768 values, bucket sort below)
// against a stable comparison sort: same order, same dense ranks, with ties,
// both zeros, infinities and missing values.
TEST(RankProfile, MatchesAStableSort) {
  std::mt19937_64 rng(45);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (std::size_t n : {1u, 2u, 17u, 1000u, 40000u}) {
    for (int kind = 0; kind < 3; ++kind) {
      std::vector<double> x = kind == 0 ? normals(n, rng) : integers(n, rng, kind == 1 ? 5 : 3000);
      for (std::size_t i = 3; i < n; i += 97) x[i] = nan;
      for (std::size_t i = 5; i < n; i += 101) x[i] = -0.0;
      for (std::size_t i = 7; i < n; i += 103) x[i] = 0.0;
      if (n > 20) {
        x[11] = inf;
        x[13] = -inf;
      }
      std::vector<std::uint32_t> expected;
      for (std::size_t i = 0; i < n; ++i) {
        if (!std::isnan(x[i])) expected.push_back(static_cast<std::uint32_t>(i));
      }
      std::stable_sort(expected.begin(), expected.end(),
                       [&](std::uint32_t p, std::uint32_t q) { return x[p] < x[q]; });
      const Ranked r(x);
      ASSERT_EQ(r.profile.q, expected.size());
      EXPECT_TRUE(std::equal(expected.begin(), expected.end(), r.order.begin()));
      std::uint32_t rank = 0;
      for (std::size_t k = 0; k < expected.size(); ++k) {
        if (k > 0 && x[expected[k]] != x[expected[k - 1]]) ++rank;
        EXPECT_EQ(r.rank[expected[k]], rank);
      }
      EXPECT_EQ(r.profile.distinct, expected.empty() ? 0u : rank + 1u);
      for (std::size_t i = 0; i < n; ++i) {
        if (std::isnan(x[i])) {
          EXPECT_EQ(r.rank[i], diffrank::kMissingRank);
        }
      }
    }
  }
}

// Two long vectors (the radix ranking and every counting path) against the
// O(n^2) count.
TEST(KendallCounts, LongVectorsMatchTheQuadraticCount) {
  std::mt19937_64 rng(46);
  const std::size_t n = 34000;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (int levels : {40, 1 << 30}) {
    std::vector<double> x = integers(n, rng, levels), y = integers(n, rng, levels);
    for (std::size_t i = 0; i < n; i += 1009) y[i] = nan;
    const diffrank::KendallCounts expected = brute_counts(x, y);
    expect_counts_equal(counts(x, y), expected);
    expect_counts_equal(counts_by_merge(x, y), expected);
    diffrank::PairCounts pair;  // reused, as the glue does
    expect_counts_equal(pair(x.data(), y.data(), n), expected);
    expect_counts_equal(pair(y.data(), x.data(), n), brute_counts(y, x));
  }
}

// The two-vector counts beyond 2^18 distinct values (the merge-sort path)
// against the ranked profiles' counts.
TEST(KendallCounts, PairCountsOfVeryLongVectors) {
  std::mt19937_64 rng(47);
  const std::size_t n = 300000;
  std::vector<double> x = normals(n, rng), y = normals(n, rng);
  for (std::size_t i = 0; i < n; ++i) y[i] += x[i];
  for (std::size_t i = 0; i < n; i += 7) x[i] = std::round(x[i] * 100.0);
  expect_counts_equal(diffrank::PairCounts()(x.data(), y.data(), n), counts(x, y));
  expect_counts_equal(counts(x, y), counts_by_merge(x, y));
}

// The total orders of x.size() items (sigma[i] = rank, larger above)
// consistent with x: observed items with x_i > x_j above, tied and missing
// (NaN) items anywhere.
std::vector<std::vector<int>> consistent_orders(const std::vector<double>& x) {
  std::vector<int> sigma(x.size());
  std::iota(sigma.begin(), sigma.end(), 0);
  std::vector<std::vector<int>> out;
  do {
    bool ok = true;
    for (std::size_t i = 0; i < x.size() && ok; ++i) {
      for (std::size_t j = 0; j < x.size() && ok; ++j) ok = !(x[i] > x[j]) || sigma[i] > sigma[j];
    }
    if (ok) out.push_back(sigma);
  } while (std::next_permutation(sigma.begin(), sigma.end()));
  return out;
}

// Mean of sign(sigma_i - sigma_j) over the orders, pair by pair.
std::vector<double> mean_embedding(const std::vector<std::vector<int>>& orders, std::size_t n) {
  std::vector<double> phi;
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = i + 1; j < n; ++j) {
      double sum = 0.0;
      for (const auto& s : orders) sum += (s[i] > s[j]) - (s[i] < s[j]);
      phi.push_back(sum / static_cast<double>(orders.size()));
    }
  }
  return phi;
}

// x with its values below the k-th largest tied at the bottom.
std::vector<double> top_list(std::vector<double> x, std::size_t k) {
  std::vector<double> seen;
  for (double v : x) {
    if (!std::isnan(v)) seen.push_back(v);
  }
  if (k == 0 || k >= seen.size()) return x;
  std::sort(seen.begin(), seen.end(), std::greater<double>());
  for (double& v : x) {
    if (!std::isnan(v) && v < seen[k - 1]) v = -1e300;
  }
  return x;
}

TEST(PartialRankings, InterleavedKendallIsTheMeanOverConsistentOrders) {
  std::mt19937_64 rng(7);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::uniform_int_distribution<std::size_t> size(2, 6);
  for (int rep = 0; rep < 200; ++rep) {
    const std::size_t n = size(rng);
    std::vector<double> x = integers(n, rng, rep % 2 ? 3 : 1000),
                        y = integers(n, rng, rep % 3 ? 4 : 1000);
    std::uniform_int_distribution<std::size_t> item(0, n - 1);
    for (int m = 0; m < rep % 4; ++m) x[item(rng)] = nan;
    for (int m = 0; m < (rep / 4) % 3; ++m) y[item(rng)] = nan;
    const Ranked a(x), b(y);
    diffrank::KendallScratch s;
    s.reserve(n);
    diffrank::PartialScratch partial;
    partial.reserve(n);
    const diffrank::KendallCounts c = diffrank::kendall_counts(a.profile, b.profile, b.profile, s);
    const std::vector<double> pa = mean_embedding(consistent_orders(x), n),
                              pb = mean_embedding(consistent_orders(y), n);
    double expected = 0.0, self_a = 0.0;
    for (std::size_t t = 0; t < pa.size(); ++t) {
      expected += pa[t] * pb[t];
      self_a += pa[t] * pa[t];
    }
    EXPECT_NEAR(diffrank::interleaved_kendall(a.profile, b.profile, n, c, partial), expected,
                1e-12);
    EXPECT_NEAR(diffrank::interleaved_kendall_self(a.profile, n, partial), self_a, 1e-12);
  }
}

TEST(PartialRankings, TopListsAndTheirMallowsKernel) {
  std::mt19937_64 rng(8);
  std::uniform_int_distribution<std::size_t> size(2, 6);
  for (int rep = 0; rep < 120; ++rep) {
    const std::size_t n = size(rng);
    const std::vector<double> x = integers(n, rng, rep % 2 ? 3 : 1000), y = integers(n, rng, 1000);
    std::uniform_int_distribution<std::size_t> cut(1, n);
    const std::size_t k = cut(rng);
    Ranked a(x), b(y);
    diffrank::keep_top(a.profile, a.rank.data(), k);
    diffrank::keep_top(b.profile, b.rank.data(), k);
    // the cut profiles rank the items as the cut values do
    const Ranked a_cut(top_list(x, k));
    for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(a.rank[i], a_cut.rank[i]);
    EXPECT_EQ(a.profile.distinct, a_cut.profile.distinct);

    diffrank::KendallScratch s;
    s.reserve(n);
    const diffrank::KendallCounts c = diffrank::kendall_counts(a.profile, b.profile, b.profile, s);
    const auto oa = consistent_orders(top_list(x, k)), ob = consistent_orders(top_list(y, k));
    for (double lambda : {0.0, 0.3, 2.0, 50.0}) {
      // the mean kernel between two sets of orders
      auto mean_kernel = [&](const std::vector<std::vector<int>>& o1,
                             const std::vector<std::vector<int>>& o2) {
        double sum = 0.0;
        for (const auto& sa : o1) {
          for (const auto& sb : o2) {
            int d = 0;
            for (std::size_t i = 0; i < n; ++i) {
              for (std::size_t j = i + 1; j < n; ++j) d += (sa[i] > sa[j]) != (sb[i] > sb[j]);
            }
            sum += std::exp(-lambda * d);
          }
        }
        return sum / static_cast<double>(o1.size() * o2.size());
      };
      const double expected =
          mean_kernel(oa, ob) / std::sqrt(mean_kernel(oa, oa) * mean_kernel(ob, ob));
      const std::vector<double> g = diffrank::mean_q_factorial_logs(n, lambda);
      std::vector<std::uint32_t> scratch(n);
      const double got = std::exp(
          diffrank::mallows_ties_exponent(a.profile, b.profile, c, lambda, 1.0, g, scratch.data()));
      EXPECT_NEAR(got, expected, 1e-13 * std::max(1.0, expected)) << "lambda " << lambda;
    }
  }
}

}  // namespace
