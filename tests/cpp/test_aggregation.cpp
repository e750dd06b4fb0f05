// aggregation.hpp: pairwise preferences against their definition, the exact
// Kemeny ranking against enumeration, and the local search's optimality
// condition.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <diffrank/aggregation.hpp>
#include <numeric>
#include <random>
#include <vector>

namespace {

std::vector<double> random_rankings(std::size_t n, std::size_t count, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> value(1, static_cast<int>(n));
  std::uniform_real_distribution<double> unif(0.0, 1.0);
  std::vector<double> r(n * count);
  for (double& v : r) v = unif(rng) < 0.15 ? std::nan("") : value(rng);  // ties and missing
  return r;
}

std::vector<double> preferences(const std::vector<double>& r, std::size_t n, std::size_t count,
                                const double* w) {
  std::vector<double> rows(n * n, 0.0), above(n * n);
  diffrank::add_pairwise_preferences(r.data(), n, count, w, rows.data(), 0, n);
  for (std::size_t a = 0; a < n; ++a) {
    for (std::size_t b = 0; b < n; ++b) above[a + n * b] = rows[n * a + b];
  }
  return above;
}

TEST(Aggregation, PairwisePreferencesCountStrictOrders) {
  std::mt19937_64 rng(1);
  const std::size_t n = 7, count = 5;
  const std::vector<double> r = random_rankings(n, count, rng);
  const std::vector<double> w{1.0, 0.5, 2.0, 0.0, 3.0};
  const std::vector<double> above = preferences(r, n, count, w.data());
  // the same rows computed in one range and in two
  std::vector<double> whole(n * n, 0.0), split(n * n, 0.0);
  diffrank::add_pairwise_preferences(r.data(), n, count, w.data(), whole.data(), 0, n);
  diffrank::add_pairwise_preferences(r.data(), n, count, w.data(), split.data(), 0, 3);
  diffrank::add_pairwise_preferences(r.data(), n, count, w.data(), split.data(), 3, n);
  EXPECT_EQ(split, whole);
  for (std::size_t a = 0; a < n; ++a) {
    for (std::size_t b = 0; b < n; ++b) {
      double expected = 0.0;
      for (std::size_t k = 0; k < count; ++k) {
        const double ra = r[a + k * n], rb = r[b + k * n];
        if (!std::isnan(ra) && !std::isnan(rb) && ra < rb) expected += w[k];
      }
      EXPECT_EQ(above[a + n * b], expected);
    }
  }
}

TEST(Aggregation, ExactKemenyIsTheMinimumOverAllOrders) {
  std::mt19937_64 rng(2);
  for (std::size_t n : {1u, 2u, 5u, 7u}) {
    for (int rep = 0; rep < 5; ++rep) {
      const std::vector<double> r = random_rankings(n, 6, rng);
      const std::vector<double> above = preferences(r, n, 6, nullptr);
      std::vector<std::uint32_t> order(n), best(n);
      diffrank::kemeny_exact(above.data(), n, best.data());
      std::vector<std::uint32_t> sorted(best);
      std::sort(sorted.begin(), sorted.end());
      for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(sorted[i], i);
      std::iota(order.begin(), order.end(), 0u);
      double least = INFINITY;
      do {
        least = std::min(least, diffrank::kemeny_disagreement(above.data(), n, order.data()));
      } while (std::next_permutation(order.begin(), order.end()));
      EXPECT_EQ(diffrank::kemeny_disagreement(above.data(), n, best.data()), least);
    }
  }
}

TEST(Aggregation, LocalSearchLeavesNoImprovingMove) {
  std::mt19937_64 rng(3);
  const std::size_t n = 30;
  const std::vector<double> r = random_rankings(n, 8, rng);
  const std::vector<double> above = preferences(r, n, 8, nullptr);
  std::vector<std::uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  const double start = diffrank::kemeny_disagreement(above.data(), n, order.data());
  const std::size_t moves =
      diffrank::kemeny_local_search(above.data(), n, order.data(), 1e-9, [] { return false; });
  const double found = diffrank::kemeny_disagreement(above.data(), n, order.data());
  EXPECT_GT(moves, 0u);
  EXPECT_LT(found, start);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t t = 0; t < n; ++t) {
      std::vector<std::uint32_t> moved(order);
      const std::uint32_t item = moved[i];
      moved.erase(moved.begin() + static_cast<std::ptrdiff_t>(i));
      moved.insert(moved.begin() + static_cast<std::ptrdiff_t>(t), item);
      EXPECT_GE(diffrank::kemeny_disagreement(above.data(), n, moved.data()), found);
    }
  }
  // a stop request ends the search before any move
  std::iota(order.begin(), order.end(), 0u);
  EXPECT_EQ(diffrank::kemeny_local_search(above.data(), n, order.data(), 1e-9, [] { return true; }),
            0u);
}

}  // namespace
