// kendall.hpp: pair counts against an O(n^2) count (with ties and missing
// values), the three counting paths against each other, and the weighted
// kernels against their O(n^2) definition.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <diffrank/kendall.hpp>
#include <limits>
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

}  // namespace
