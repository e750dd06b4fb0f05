// mallows.hpp: the normalizing constant and the expected distance against
// enumeration of all permutations, draws that are permutations at the
// distance their stage codes give, and the stage codes of top lists.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <diffrank/mallows.hpp>
#include <numeric>
#include <random>
#include <vector>

namespace {

// Pairs of items that two rank vectors order differently.
int kendall_distance(const std::vector<double>& a, const std::vector<int>& b) {
  int d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    for (std::size_t j = i + 1; j < a.size(); ++j) d += (a[i] < a[j]) != (b[i] < b[j]);
  }
  return d;
}

TEST(Mallows, NormalizerAndExpectedDistanceMatchEnumeration) {
  for (std::size_t n : {1u, 2u, 3u, 5u, 7u}) {
    const std::vector<double> identity = [&] {
      std::vector<double> v(n);
      std::iota(v.begin(), v.end(), 1.0);
      return v;
    }();
    for (double theta : {0.0, 1e-9, 0.3, 2.0, 30.0}) {
      std::vector<int> sigma(n);
      std::iota(sigma.begin(), sigma.end(), 1);
      double total = 0.0, weighted = 0.0;
      do {
        const int d = kendall_distance(identity, sigma);
        total += std::exp(-theta * d);
        weighted += d * std::exp(-theta * d);
      } while (std::next_permutation(sigma.begin(), sigma.end()));
      EXPECT_NEAR(diffrank::mallows_log_normalizer(n, theta), std::log(total), 1e-12);
      EXPECT_NEAR(diffrank::mallows_expected_distance(n, theta), weighted / total,
                  1e-9 * std::max(1.0, weighted / total));
      // (at theta near 0 the mean distance barely moves with theta: ill-conditioned)
      if (theta > 1e-3 && theta < 30.0 && n > 1) {
        const std::vector<double> reached(n - 1, 1.0);
        EXPECT_NEAR(diffrank::mallows_theta_for_stages(n, reached.data(), weighted / total), theta,
                    1e-8 * theta);
      }
    }
  }
}

TEST(Mallows, DrawsArePermutationsAtTheirStageDistance) {
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> unif(0.0, 1.0);
  diffrank::MallowsSampler sampler;
  for (std::size_t n : {1u, 2u, 9u, 100u}) {
    std::vector<std::uint32_t> order(n);
    std::iota(order.begin(), order.end(), 0u);
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<int> centre_rank(n);
    for (std::size_t k = 0; k < n; ++k) centre_rank[order[k]] = static_cast<int>(k + 1);
    for (double theta : {0.0, 0.2, 5.0, 1e300}) {
      std::vector<double> u(n > 0 ? n - 1 : 0), rank(n);
      for (double& v : u) v = unif(rng);
      const std::vector<double> thetas(n, theta);
      const std::uint64_t d = sampler.draw(u.data(), thetas.data(), order.data(), n, rank.data());
      std::vector<double> sorted = rank;
      std::sort(sorted.begin(), sorted.end());
      for (std::size_t k = 0; k < n; ++k) EXPECT_EQ(sorted[k], static_cast<double>(k + 1));
      EXPECT_EQ(d, static_cast<std::uint64_t>(kendall_distance(rank, centre_rank)));
      if (theta > 1e100) {
        EXPECT_EQ(d, 0u);
      }
    }
  }
  // the inversion counts invert their distribution function
  for (double theta : {0.0, 0.5, 3.0}) {
    const std::size_t m = 6;
    double cumulative = 0.0, norm = 0.0;
    for (std::size_t r = 0; r <= m; ++r) norm += std::exp(-theta * r);
    for (std::size_t r = 0; r <= m; ++r) {
      const double below = cumulative;
      cumulative += std::exp(-theta * r) / norm;
      EXPECT_EQ(diffrank::MallowsSampler::inversions(below + 1e-9, m, theta), r);
      if (r < m) {
        EXPECT_EQ(diffrank::MallowsSampler::inversions(cumulative - 1e-9, m, theta), r);
      }
    }
  }
}

TEST(Mallows, StageCodesOfDrawsAndTopLists) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> unif(0.0, 1.0);
  diffrank::MallowsSampler sampler;
  diffrank::StageCoder coder;
  const std::size_t n = 9;
  std::vector<std::uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<double> centre_rank(n);
  for (std::size_t k = 0; k < n; ++k) centre_rank[order[k]] = static_cast<double>(k + 1);
  std::vector<double> thetas{2.0, 1.0, 0.5, 0.5, 0.2, 0.0, 0.0, 3.0};
  for (int rep = 0; rep < 50; ++rep) {
    std::vector<double> u(n - 1), rank(n), codes(n - 1);
    for (double& v : u) v = unif(rng);
    sampler.draw(u.data(), thetas.data(), order.data(), n, rank.data());
    // the codes read back are those the draw used
    EXPECT_EQ(coder(rank.data(), centre_rank.data(), n, codes.data()), n - 1);
    for (std::size_t j = 0; j + 1 < n; ++j) {
      EXPECT_EQ(codes[j], static_cast<double>(
                              diffrank::MallowsSampler::inversions(u[j], n - 1 - j, thetas[j])));
    }
    // a top-3 list keeps the first three codes: items placed later that the
    // centre puts above each of its items
    std::vector<double> top(rank);
    for (double& v : top) {
      if (v > 3.0) v = std::nan("");
    }
    std::vector<double> top_codes(n - 1, -1.0);
    EXPECT_EQ(coder(top.data(), centre_rank.data(), n, top_codes.data()), 3u);
    for (std::size_t j = 0; j < 3; ++j) {
      std::size_t placed = 0;
      for (std::size_t i = 0; i < n; ++i) placed = rank[i] == j + 1.0 ? i : placed;
      double expected = 0.0;
      for (std::size_t i = 0; i < n; ++i) {
        expected += rank[i] > j + 1.0 && centre_rank[i] < centre_rank[placed];
      }
      EXPECT_EQ(top_codes[j], expected);
    }
    EXPECT_EQ(top_codes[3], -1.0);
  }
}

TEST(Mallows, ThetaForStagesSolvesTheLikelihoodEquation) {
  const std::size_t n = 8;
  const std::vector<double> reached{100, 100, 80, 80, 50, 10, 0};
  for (double theta : {0.01, 0.3, 2.0}) {
    double total = 0.0;
    for (std::size_t j = 0; j + 1 < n; ++j) {
      total += reached[j] * diffrank::truncated_geometric_mean(n - 1 - j, theta);
    }
    EXPECT_NEAR(diffrank::mallows_theta_for_stages(n, reached.data(), total), theta, 1e-9 * theta);
  }
  EXPECT_EQ(diffrank::mallows_theta_for_stages(n, reached.data(), 0.0), INFINITY);
  EXPECT_EQ(diffrank::mallows_theta_for_stages(n, reached.data(), 1e6), 0.0);
}

}  // namespace
