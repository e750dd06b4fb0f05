// isotonic.hpp against brute force: a naive pool-adjacent-violators that
// recomputes every block from scratch, and the min-max formula of isotonic
// regression, fit_i = max_{j <= i} min_{k >= i} (weighted mean of y_j..y_k).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <diffrank/isotonic.hpp>
#include <random>
#include <vector>

#include "helpers.hpp"

namespace {

using namespace testing_helpers;

struct Block {
  std::size_t lo, hi;
};

// Naive PAV: merge the first adjacent pair of blocks whose values violate the
// order until none does; value(lo, hi) is computed from scratch each time.
// `violates(a, b)` says whether blocks a (left) and b must be pooled.
template <class Value, class Violates>
std::vector<Block> naive_pav(std::size_t n, Value value, Violates violates) {
  std::vector<Block> blocks;
  for (std::size_t i = 0; i < n; ++i) blocks.push_back({i, i + 1});
  bool merged = true;
  while (merged) {
    merged = false;
    for (std::size_t b = 0; b + 1 < blocks.size(); ++b) {
      if (violates(value(blocks[b].lo, blocks[b].hi), value(blocks[b + 1].lo, blocks[b + 1].hi))) {
        blocks[b].hi = blocks[b + 1].hi;
        blocks.erase(blocks.begin() + static_cast<std::ptrdiff_t>(b) + 1);
        merged = true;
        break;
      }
    }
  }
  return blocks;
}

double weighted_mean(const std::vector<double>& y, const std::vector<double>& w, std::size_t lo,
                     std::size_t hi) {
  double s = 0.0, t = 0.0;
  for (std::size_t i = lo; i < hi; ++i) {
    s += w[i] * y[i];
    t += w[i];
  }
  return s / t;
}

std::vector<double> min_max_fit(const std::vector<double>& y, const std::vector<double>& w) {
  const std::size_t n = y.size();
  std::vector<double> fit(n);
  for (std::size_t i = 0; i < n; ++i) {
    double best = -INFINITY;
    for (std::size_t j = 0; j <= i; ++j) {
      double inner = INFINITY;
      for (std::size_t k = i; k < n; ++k) inner = std::min(inner, weighted_mean(y, w, j, k + 1));
      best = std::max(best, inner);
    }
    fit[i] = best;
  }
  return fit;
}

std::vector<double> run_increasing(const std::vector<double>& y, const double* w) {
  const std::size_t n = y.size();
  std::vector<double> out(n), scratch(2 * n);
  std::vector<std::uint32_t> bounds(n + 1);
  diffrank::isotonic_increasing(y.data(), w, n, out.data(), bounds.data(), scratch.data());
  return out;
}

TEST(Isotonic, IncreasingMatchesNaivePavAndMinMax) {
  std::mt19937_64 rng(11);
  for (std::size_t n : {1u, 2u, 5u, 17u, 40u}) {
    for (int rep = 0; rep < 10; ++rep) {
      const std::vector<double> y = rep % 2 ? integers(n, rng, 4) : normals(n, rng);
      const std::vector<double> ones(n, 1.0), w = uniforms(n, rng, 0.1, 3.0);
      for (const std::vector<double>* weights : {&ones, &w}) {
        const std::vector<double> out =
            run_increasing(y, weights == &ones ? nullptr : weights->data());
        const auto blocks = naive_pav(
            n, [&](std::size_t lo, std::size_t hi) { return weighted_mean(y, *weights, lo, hi); },
            [](double a, double b) { return a >= b; });
        const std::vector<double> reference = min_max_fit(y, *weights);
        for (const Block& b : blocks) {
          const double v = weighted_mean(y, *weights, b.lo, b.hi);
          for (std::size_t i = b.lo; i < b.hi; ++i) {
            EXPECT_NEAR(out[i], v, 1e-12);
            EXPECT_NEAR(out[i], reference[i], 1e-12);
          }
        }
        for (std::size_t i = 1; i < n; ++i) EXPECT_LE(out[i - 1], out[i]);
      }
    }
  }
}

TEST(Isotonic, L2DecreasingBlocksAndMeans) {
  std::mt19937_64 rng(12);
  for (std::size_t n : {1u, 3u, 8u, 33u}) {
    for (int rep = 0; rep < 10; ++rep) {
      const std::vector<double> y = rep % 3 == 0 ? integers(n, rng, 3) : normals(n, rng);
      std::vector<double> mean(n);
      std::vector<std::uint32_t> bounds(n + 1);
      const std::size_t nb = diffrank::isotonic_l2_decreasing(y.data(), n, bounds.data(), mean.data());
      const std::vector<double> ones(n, 1.0);
      const auto blocks = naive_pav(
          n, [&](std::size_t lo, std::size_t hi) { return weighted_mean(y, ones, lo, hi); },
          [](double a, double b) { return a <= b; });
      ASSERT_EQ(nb, blocks.size());
      EXPECT_EQ(bounds[0], 0u);
      EXPECT_EQ(bounds[nb], n);
      for (std::size_t b = 0; b < nb; ++b) {
        EXPECT_EQ(bounds[b], blocks[b].lo);
        EXPECT_NEAR(mean[b], weighted_mean(y, ones, blocks[b].lo, blocks[b].hi), 1e-12);
        if (b > 0) {
          EXPECT_GT(mean[b - 1], mean[b]);
        }
      }
      // the same as the increasing fit of -y, negated
      std::vector<double> neg(y);
      for (double& v : neg) v = -v;
      const std::vector<double> inc = run_increasing(neg, nullptr);
      for (std::size_t b = 0; b < nb; ++b) {
        for (std::size_t i = bounds[b]; i < bounds[b + 1]; ++i) EXPECT_NEAR(mean[b], -inc[i], 1e-12);
      }
    }
  }
}

double log_sum_exp(const std::vector<double>& v, std::size_t lo, std::size_t hi) {
  double m = -INFINITY;
  for (std::size_t i = lo; i < hi; ++i) m = std::max(m, v[i]);
  double s = 0.0;
  for (std::size_t i = lo; i < hi; ++i) s += std::exp(v[i] - m);
  return m + std::log(s);
}

TEST(Isotonic, KlDecreasingMatchesNaivePav) {
  std::mt19937_64 rng(13);
  for (std::size_t n : {1u, 4u, 12u, 30u}) {
    for (int rep = 0; rep < 10; ++rep) {
      std::vector<double> s = normals(n, rng, 2.0), w = normals(n, rng, 2.0);
      std::sort(s.rbegin(), s.rend());
      std::sort(w.rbegin(), w.rend());
      std::vector<double> lse_s(n), lse_w(n);
      std::vector<std::uint32_t> bounds(n + 1);
      const std::size_t nb = diffrank::isotonic_kl_decreasing(s.data(), w.data(), n, bounds.data(),
                                                              lse_s.data(), lse_w.data());
      auto value = [&](std::size_t lo, std::size_t hi) {
        return log_sum_exp(s, lo, hi) - log_sum_exp(w, lo, hi);
      };
      const auto blocks = naive_pav(n, value, [](double a, double b) { return a <= b; });
      ASSERT_EQ(nb, blocks.size());
      for (std::size_t b = 0; b < nb; ++b) {
        EXPECT_EQ(bounds[b], blocks[b].lo);
        EXPECT_NEAR(lse_s[b], log_sum_exp(s, blocks[b].lo, blocks[b].hi), 1e-12);
        EXPECT_NEAR(lse_w[b], log_sum_exp(w, blocks[b].lo, blocks[b].hi), 1e-12);
      }
    }
  }
}

TEST(Isotonic, KlLogRhoIsTheKlProblemWithLogRho) {
  std::mt19937_64 rng(14);
  for (std::size_t n : {1u, 2u, 9u, 50u, 300u}) {
    std::vector<double> s = normals(n, rng, 3.0), w(n);
    std::sort(s.rbegin(), s.rend());
    for (std::size_t i = 0; i < n; ++i) w[i] = std::log(static_cast<double>(n - i));
    std::vector<double> a(n), b(n), c(n), scratch(n);
    std::vector<std::uint32_t> bounds1(n + 1), bounds2(n + 1);
    const std::size_t nb1 =
        diffrank::isotonic_kl_decreasing(s.data(), w.data(), n, bounds1.data(), a.data(), b.data());
    const std::size_t nb2 = diffrank::isotonic_kl_decreasing_log_rho(s.data(), n, bounds2.data(),
                                                                     c.data(), scratch.data());
    ASSERT_EQ(nb1, nb2);
    for (std::size_t k = 0; k <= nb1; ++k) EXPECT_EQ(bounds1[k], bounds2[k]);
    for (std::size_t k = 0; k < nb1; ++k) {
      EXPECT_NEAR(a[k], c[k], 1e-12 * std::max(1.0, std::abs(a[k])));
      EXPECT_NEAR(b[k], scratch[k], 1e-12 * std::max(1.0, std::abs(b[k])));
    }
  }
}

}  // namespace
