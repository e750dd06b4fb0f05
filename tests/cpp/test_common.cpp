// common.hpp: the overflow-safe moments, the argsort and the NaN gather.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <diffrank/common.hpp>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "helpers.hpp"

namespace {

using namespace testing_helpers;

double naive_sd(const std::vector<double>& x) {
  double mean = 0.0;
  for (double v : x) mean += v;
  mean /= static_cast<double>(x.size());
  double ss = 0.0;
  for (double v : x) ss += (v - mean) * (v - mean);
  return std::sqrt(ss / static_cast<double>(x.size() - 1));
}

TEST(Moments, MatchTheTwoPassFormula) {
  std::mt19937_64 rng(1);
  for (std::size_t n : {2u, 3u, 10u, 1000u}) {
    const std::vector<double> x = normals(n, rng, 3.0);
    const diffrank::ScaledMoments m = diffrank::scaled_moments(x.data(), n);
    EXPECT_NEAR(m.scale * m.sd, naive_sd(x), 1e-14 * naive_sd(x));
    EXPECT_NEAR(diffrank::standard_deviation(x.data(), n), naive_sd(x), 1e-14 * naive_sd(x));
    const double mean = std::accumulate(x.begin(), x.end(), 0.0) / static_cast<double>(n);
    EXPECT_NEAR(m.scale * m.mean, mean, 1e-14 * m.scale);
  }
}

TEST(Moments, NeitherOverflowNorUnderflow) {
  const std::vector<double> base = {0.3, -1.2, 2.5, 0.9, -0.4};
  const double sd = naive_sd(base);
  for (double scale : {1e-300, 1e-200, 1e154, 1e200, 1e300}) {
    std::vector<double> x = base;
    for (double& v : x) v *= scale;
    const double s = diffrank::standard_deviation(x.data(), x.size());
    EXPECT_NEAR(s / scale, sd, 1e-13) << "scale " << scale;
  }
  const std::vector<double> wide = {-1e200, 0.0, 1e200, 2e200};
  EXPECT_NEAR(diffrank::standard_deviation(wide.data(), 4) / 1e200, std::sqrt(5.0 / 3.0), 1e-14);
}

TEST(Moments, DegenerateInputs) {
  const std::vector<double> zeros(4, 0.0), one = {3.0}, constant(5, 0.1);
  EXPECT_EQ(diffrank::standard_deviation(zeros.data(), 4), 0.0);
  EXPECT_EQ(diffrank::scaled_moments(zeros.data(), 4).scale, 0.0);
  EXPECT_EQ(diffrank::standard_deviation(one.data(), 1), 0.0);
  EXPECT_EQ(diffrank::standard_deviation(constant.data(), 5), 0.0);
  const std::vector<double> inf = {1.0, std::numeric_limits<double>::infinity()};
  EXPECT_EQ(diffrank::standard_deviation(inf.data(), 2), 0.0);
}

TEST(SortObserved, IsAStableArgsortOfTheObservedValues) {
  std::mt19937_64 rng(2);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<diffrank::IndexedValue> scratch;
  for (int rep = 0; rep < 20; ++rep) {
    std::vector<double> x = integers(200, rng, 30);
    for (int k = 0; k < rep; ++k) x[(k * 37) % x.size()] = nan;
    x[5] = -0.0;
    x[6] = 0.0;
    std::vector<std::uint32_t> expected;
    for (std::uint32_t i = 0; i < x.size(); ++i) {
      if (!std::isnan(x[i])) expected.push_back(i);
    }
    std::stable_sort(expected.begin(), expected.end(),
                     [&](std::uint32_t a, std::uint32_t b) { return x[a] < x[b]; });
    std::vector<std::uint32_t> order(x.size());
    std::vector<double> sorted(x.size());
    const std::size_t q =
        diffrank::sort_observed(x.data(), x.size(), scratch, order.data(), sorted.data());
    ASSERT_EQ(q, expected.size());
    for (std::size_t k = 0; k < q; ++k) {
      EXPECT_EQ(order[k], expected[k]);
      EXPECT_EQ(sorted[k], x[expected[k]]);
    }
    EXPECT_EQ(diffrank::sort_observed(x.data(), x.size(), scratch, order.data(), nullptr), q);
  }
}

TEST(ObservedValues, GathersAndRenormalizes) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> x = {1.0, nan, 3.0, nan, 5.0}, a = {0.1, 0.2, 0.3, 0.2, 0.2};
  diffrank::ObservedValues obs;
  ASSERT_TRUE(obs.gather(x.data(), a.data(), x.size()));
  EXPECT_EQ(obs.idx, (std::vector<std::size_t>{0, 2, 4}));
  EXPECT_EQ(obs.x, (std::vector<double>{1.0, 3.0, 5.0}));
  EXPECT_NEAR(obs.a[0], 1.0 / 6.0, 1e-15);
  EXPECT_NEAR(obs.a[1], 0.5, 1e-15);
  EXPECT_NEAR(obs.a[2], 1.0 / 3.0, 1e-15);
  const std::vector<double> full = {1.0, 2.0};
  EXPECT_FALSE(obs.gather(full.data(), a.data(), 2));
}

}  // namespace
