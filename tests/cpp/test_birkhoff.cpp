// The L2-regularized transport plans of birkhoff.hpp: marginals, the
// optimality conditions (a dual certificate), hard plans at small eps, and
// the VJP and JVP, transposes of each other and equal to finite
// differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <diffrank/birkhoff.hpp>
#include <random>
#include <vector>

#include "helpers.hpp"

namespace {

using diffrank::BirkhoffOperator;
using diffrank::BirkhoffOutput;
using diffrank::BirkhoffSettings;

BirkhoffSettings settings(std::size_t m, double eps, BirkhoffOutput output) {
  BirkhoffSettings s;
  s.eps = eps;
  s.output = output;
  s.y.resize(m);
  for (std::size_t j = 0; j < m; ++j) s.y[j] = m == 1 ? 0.5 : double(j) / double(m - 1);
  s.b.assign(m, 1.0 / double(m));
  return s;
}

std::vector<double> run(const std::vector<double>& x, const std::vector<double>& a,
                        const BirkhoffSettings& s) {
  BirkhoffOperator op;
  op.forward(x.data(), a.data(), x.size(), s, nullptr);
  std::vector<double> out(op.output_size());
  op.forward(x.data(), a.data(), x.size(), s, out.data());
  return out;
}

}  // namespace

TEST(Birkhoff, PlanMeetsTheMarginalsAndIsSparse) {
  std::mt19937_64 rng(1);
  for (std::size_t n : {1u, 2u, 9u, 60u}) {
    for (double eps : {1e-6, 1e-4, 1e-2, 1.0, 1e3}) {
      const std::vector<double> x = testing_helpers::normals(n, rng);
      const std::vector<double> a =
          testing_helpers::normalized(testing_helpers::uniforms(n, rng, 1, 2));
      BirkhoffSettings s = settings(7, eps, BirkhoffOutput::plan);
      BirkhoffOperator op;
      std::vector<double> P(n * 7);
      EXPECT_TRUE(op.forward(x.data(), a.data(), n, s, P.data()));
      // the precision of a difference of potentials divided by eps
      const double tol = std::max(1e-13, 1e-15 / eps);
      EXPECT_LT(op.error, tol);
      for (std::size_t i = 0; i < n; ++i) {
        double row = 0.0;
        for (std::size_t j = 0; j < 7; ++j) {
          EXPECT_GE(P[i + j * n], 0.0);
          row += P[i + j * n];
        }
        EXPECT_NEAR(row, a[i], tol);
      }
      for (std::size_t j = 0; j < 7; ++j) {
        double col = 0.0;
        for (std::size_t i = 0; i < n; ++i) col += P[i + j * n];
        EXPECT_NEAR(col, 1.0 / 7.0, tol);
      }
      if (eps <= 1e-4 && n == 60) {
        EXPECT_LT(op.support_size(), n * 7 / 2);
      }
    }
  }
}

TEST(Birkhoff, SmallEpsGivesThePermutation) {
  std::mt19937_64 rng(2);
  const std::size_t n = 30;
  const std::vector<double> x = testing_helpers::normals(n, rng);
  const std::vector<double> a(n, 1.0 / n);
  // at eps = 1e-8 the support is the permutation's; entries are exact to
  // the rounding of potentials divided by eps (about 1e-16 / eps)
  const std::vector<double> ranks = run(x, a, settings(n, 1e-8, BirkhoffOutput::rank));
  for (std::size_t i = 0; i < n; ++i) {
    double r = 1.0;
    for (std::size_t k = 0; k < n; ++k) r += x[k] < x[i];
    EXPECT_NEAR(ranks[i], r, 1e-6);
  }
}

TEST(Birkhoff, ProductsAreTransposesAndMatchFiniteDifferences) {
  std::mt19937_64 rng(3);
  for (std::size_t n : {2u, 7u, 40u}) {
    for (double eps : {1e-3, 0.05, 2.0}) {
      for (BirkhoffOutput o : {BirkhoffOutput::plan, BirkhoffOutput::rank, BirkhoffOutput::sort}) {
        for (bool squash : {true, false}) {
          BirkhoffSettings s = settings(n + 1, eps, o);
          s.squash = squash;
          s.decreasing = !squash;
          s.power = squash ? 2.0 : 1.5;
          const std::vector<double> x = testing_helpers::normals(n, rng, squash ? 3.0 : 0.3);
          const std::vector<double> a(n, 1.0 / n);
          BirkhoffOperator op;
          op.forward(x.data(), a.data(), n, s, nullptr);
          const testing_helpers::DirectionalDerivatives dd =
              testing_helpers::directional_derivatives(
                  op, x, [&](const std::vector<double>& y) { return run(y, a, s); }, rng, 1e-7);
          EXPECT_NEAR(dd.jvp, dd.vjp, 1e-9 * (1.0 + std::fabs(dd.vjp)));
          EXPECT_NEAR(dd.jvp, dd.finite_difference, 1e-5 * (1.0 + std::fabs(dd.finite_difference)));
        }
      }
    }
  }
}
