// The relaxed sorting networks of sorting_network.hpp: the networks sort
// (0-1 principle), the plan is doubly stochastic and gives the sort and the
// ranks, and the VJP and JVP are transposes of each other and match finite
// differences, for every network, relaxation, output and order.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <diffrank/sorting_network.hpp>
#include <random>
#include <vector>

#include "helpers.hpp"

namespace {

using diffrank::NetworkKind;
using diffrank::NetworkOperator;
using diffrank::NetworkOutput;
using diffrank::NetworkRelaxation;
using diffrank::NetworkSettings;

std::vector<double> run(const std::vector<double>& x, const NetworkSettings& s) {
  NetworkOperator op;
  op.forward(x.data(), x.size(), s, nullptr);
  std::vector<double> out(op.output_size());
  op.forward(x.data(), x.size(), s, out.data());
  return out;
}

}  // namespace

TEST(SortingNetwork, ComparatorCountsMatchTheNetworks) {
  for (std::size_t n : {1u, 2u, 3u, 7u, 8u, 9u, 100u}) {
    for (NetworkKind k : {NetworkKind::odd_even, NetworkKind::bitonic}) {
      std::size_t wires = 0;
      EXPECT_EQ(diffrank::network_comparators(k, n, &wires).size(),
                static_cast<std::size_t>(diffrank::network_comparator_count(k, double(n))));
    }
  }
}

TEST(SortingNetwork, SortsEveryZeroOneInput) {
  NetworkSettings s;
  s.scale = diffrank::NetworkScale::none;
  s.eps = 1e-9;
  for (std::size_t n : {2u, 5u, 8u, 11u}) {
    for (NetworkKind k : {NetworkKind::odd_even, NetworkKind::bitonic}) {
      s.network = k;
      for (unsigned bits = 0; bits < (1u << n); ++bits) {
        std::vector<double> x(n);
        for (std::size_t i = 0; i < n; ++i) x[i] = (bits >> i) & 1u;
        std::vector<double> out = run(x, s), sorted = x;
        std::sort(sorted.begin(), sorted.end());
        ASSERT_EQ(out, sorted) << "n = " << n << ", bits = " << bits;
      }
    }
  }
}

TEST(SortingNetwork, PlanIsDoublyStochasticAndGivesSortAndRanks) {
  std::mt19937_64 rng(3);
  const std::size_t n = 13;
  const std::vector<double> x = testing_helpers::normals(n, rng);
  for (NetworkKind k : {NetworkKind::odd_even, NetworkKind::bitonic}) {
    NetworkSettings s;
    s.network = k;
    s.eps = 3.0;
    s.output = NetworkOutput::plan;
    const std::vector<double> P = run(x, s);
    s.output = NetworkOutput::sort;
    const std::vector<double> sorted = run(x, s);
    s.output = NetworkOutput::rank;
    const std::vector<double> ranks = run(x, s);
    for (std::size_t i = 0; i < n; ++i) {
      double row = 0.0, col = 0.0, rank = 0.0, sort = 0.0;
      for (std::size_t j = 0; j < n; ++j) {
        row += P[i + j * n];
        col += P[j + i * n];
        rank += P[i + j * n] * double(j + 1);
        sort += P[j + i * n] * x[j];
      }
      EXPECT_NEAR(row, 1.0, 1e-13);
      EXPECT_NEAR(col, 1.0, 1e-13);
      EXPECT_NEAR(rank, ranks[i], 1e-12);
      EXPECT_NEAR(sort, sorted[i], 1e-12);
    }
  }
}

TEST(SortingNetwork, ProductsAreTransposesAndMatchFiniteDifferences) {
  std::mt19937_64 rng(4);
  for (std::size_t n : {1u, 2u, 6u, 13u}) {
    for (NetworkKind k : {NetworkKind::odd_even, NetworkKind::bitonic}) {
      for (NetworkRelaxation r : {NetworkRelaxation::logistic, NetworkRelaxation::cauchy}) {
        for (NetworkOutput o : {NetworkOutput::sort, NetworkOutput::rank, NetworkOutput::plan}) {
          for (bool decreasing : {false, true}) {
            NetworkSettings s;
            s.network = k;
            s.relaxation = r;
            s.output = o;
            s.decreasing = decreasing;
            s.eps = 2.0;
            const std::vector<double> x = testing_helpers::normals(n, rng);
            NetworkOperator op;
            op.forward(x.data(), n, s, nullptr);
            const testing_helpers::DirectionalDerivatives dd =
                testing_helpers::directional_derivatives(
                    op, x, [&](const std::vector<double>& y) { return run(y, s); }, rng, 1e-6);
            EXPECT_NEAR(dd.jvp, dd.vjp, 1e-10 * (1.0 + std::fabs(dd.vjp)));
            EXPECT_NEAR(dd.jvp, dd.finite_difference,
                        1e-6 * (1.0 + std::fabs(dd.finite_difference)));
          }
        }
      }
    }
  }
}
