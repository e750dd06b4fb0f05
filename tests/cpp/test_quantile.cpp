// quantile.hpp: quantile normalization of a matrix against a plain
// reference (sort every column, average the sorted columns, give each value
// the average at its rank), with the three rules for ties and missing values.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <diffrank/quantile.hpp>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "helpers.hpp"

namespace {

using namespace testing_helpers;
using Matrix = std::vector<std::vector<double>>;  // columns

// Linear interpolation of increasing values v at 0-based position h (R's
// quantile type 7).
double at(const std::vector<double>& v, double h) {
  const std::size_t lo = static_cast<std::size_t>(std::floor(h));
  if (lo + 1 >= v.size()) return v.back();
  return v[lo] + (h - static_cast<double>(lo)) * (v[lo + 1] - v[lo]);
}

std::vector<double> normalize(const std::vector<double>& x, const std::vector<double>& target,
                              diffrank::Ties ties) {
  diffrank::ColumnSorter sort;
  const std::size_t q = sort(x.data(), x.size());
  std::vector<double> out(x.size());
  diffrank::normalize_sorted_column(x.data(), sort.order.data(), q, x.size(), target.data(), ties,
                                    out.data());
  return out;
}

// The target of complete columns: the mean of the sorted columns, by the
// core's column sort and resampling.
std::vector<double> fitted_target(const Matrix& columns) {
  const std::size_t p = columns[0].size();
  std::vector<double> target(p, 0.0), quantiles(p);
  diffrank::ColumnSorter sort;
  for (const auto& x : columns) {
    const std::size_t q = sort(x.data(), p);
    diffrank::resample_sorted(sort.sorted.data(), q, p, quantiles.data());
    for (std::size_t i = 0; i < p; ++i) target[i] += quantiles[i] / static_cast<double>(columns.size());
  }
  return target;
}

TEST(QuantileNormalization, DistinctValuesTakeTheMeanAtTheirRank) {
  std::mt19937_64 rng(51);
  const std::size_t p = 200, n = 6;
  Matrix columns;
  for (std::size_t j = 0; j < n; ++j) columns.push_back(normals(p, rng, 1.0 + j));
  // plain reference
  std::vector<double> reference(p, 0.0);
  for (const auto& x : columns) {
    std::vector<double> s(x);
    std::sort(s.begin(), s.end());
    for (std::size_t i = 0; i < p; ++i) reference[i] += s[i] / static_cast<double>(n);
  }
  const std::vector<double> target = fitted_target(columns);
  EXPECT_EQ(target, reference);
  for (const auto& x : columns) {
    for (diffrank::Ties ties : {diffrank::Ties::midrank, diffrank::Ties::average, diffrank::Ties::first}) {
      const std::vector<double> out = normalize(x, target, ties);
      for (std::size_t i = 0; i < p; ++i) {
        const std::size_t rank = std::count_if(x.begin(), x.end(), [&](double v) { return v < x[i]; });
        EXPECT_EQ(out[i], reference[rank]);
      }
    }
  }
}

TEST(QuantileNormalization, TiesFollowTheirRule) {
  std::mt19937_64 rng(52);
  const std::size_t p = 150;
  const std::vector<double> x = integers(p, rng, 12);
  std::vector<double> target = normals(p, rng);
  std::sort(target.begin(), target.end());
  const std::vector<double> mid = normalize(x, target, diffrank::Ties::midrank);
  const std::vector<double> avg = normalize(x, target, diffrank::Ties::average);
  const std::vector<double> first = normalize(x, target, diffrank::Ties::first);
  for (std::size_t i = 0; i < p; ++i) {
    std::size_t below = 0, tied = 0, tied_before = 0;
    for (std::size_t k = 0; k < p; ++k) {
      below += x[k] < x[i];
      tied += x[k] == x[i];
      tied_before += x[k] == x[i] && k < i;
    }
    // ranks below .. below + tied - 1 (0-based)
    EXPECT_NEAR(mid[i], at(target, below + 0.5 * (tied - 1.0)), 1e-14);
    double mean = 0.0;
    for (std::size_t k = below; k < below + tied; ++k) mean += target[k] / static_cast<double>(tied);
    EXPECT_NEAR(avg[i], mean, 1e-14);
    EXPECT_EQ(first[i], target[below + tied_before]);
  }
}

TEST(QuantileNormalization, MissingValuesUseTheObservedLevels) {
  std::mt19937_64 rng(53);
  const std::size_t p = 40;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> x = normals(p, rng);
  for (std::size_t i = 3; i < p; i += 7) x[i] = nan;
  std::size_t q = 0;
  for (double v : x) q += !std::isnan(v);
  std::vector<double> target = normals(p, rng);
  std::sort(target.begin(), target.end());
  const std::vector<double> out = normalize(x, target, diffrank::Ties::midrank);
  for (std::size_t i = 0; i < p; ++i) {
    if (std::isnan(x[i])) {
      EXPECT_TRUE(std::isnan(out[i]));
      continue;
    }
    std::size_t rank = 0;
    for (double v : x) rank += v < x[i];  // NaN compares false
    const double h = static_cast<double>(rank) * (p - 1.0) / (q - 1.0);
    EXPECT_NEAR(out[i], at(target, h), 1e-14);
  }
}

TEST(QuantileNormalization, ResamplingIsTypeSevenQuantiles) {
  std::mt19937_64 rng(54);
  for (std::size_t q : {1u, 2u, 17u, 100u}) {
    for (std::size_t p : {1u, 5u, 17u, 333u}) {
      std::vector<double> sorted = normals(q, rng);
      std::sort(sorted.begin(), sorted.end());
      std::vector<double> out(p);
      diffrank::resample_sorted(sorted.data(), q, p, out.data());
      for (std::size_t i = 0; i < p; ++i) {
        const double level = p == 1 ? 0.5 : static_cast<double>(i) / (p - 1.0);
        EXPECT_NEAR(out[i], at(sorted, level * (q - 1.0)), 1e-14);
      }
    }
  }
}

}  // namespace
