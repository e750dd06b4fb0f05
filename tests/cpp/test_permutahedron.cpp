// permutahedron.hpp: identities of soft ranks and sorts, their eps -> 0
// limits, and their derivatives against finite differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <diffrank/permutahedron.hpp>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "helpers.hpp"

namespace {

using namespace testing_helpers;
using diffrank::Regularization;
using diffrank::SoftKind;
using diffrank::SoftScale;

diffrank::SoftSettings settings(SoftKind kind, Regularization reg, double eps,
                                SoftScale scale = SoftScale::none, bool descending = false) {
  diffrank::SoftSettings s;
  s.kind = kind;
  s.reg = reg;
  s.eps = eps;
  s.scale = scale;
  s.descending = descending;
  return s;
}

std::vector<double> run(const std::vector<double>& x, const diffrank::SoftSettings& s) {
  diffrank::SoftOperator op;
  std::vector<double> out(x.size());
  EXPECT_TRUE(op.forward(x.data(), x.size(), s, out.data()));
  return out;
}

// Average ranks (1 = smallest), as R's rank().
std::vector<double> hard_ranks(const std::vector<double>& x) {
  const std::size_t n = x.size();
  std::vector<double> r(n);
  for (std::size_t i = 0; i < n; ++i) {
    double below = 0.0, tied = 0.0;
    for (std::size_t j = 0; j < n; ++j) {
      below += x[j] < x[i];
      tied += x[j] == x[i];
    }
    r[i] = below + (tied + 1.0) / 2.0;
  }
  return r;
}

const Regularization kRegs[] = {Regularization::l2, Regularization::kl};
const SoftScale kScales[] = {SoftScale::none, SoftScale::sd, SoftScale::spacing};

TEST(SoftRank, SumsToTheSumOfRanksAndKeepsTheOrder) {
  std::mt19937_64 rng(21);
  for (std::size_t n : {2u, 7u, 100u, 1000u}) {
    const std::vector<double> x = normals(n, rng);
    const double total = 0.5 * static_cast<double>(n) * static_cast<double>(n + 1);
    for (Regularization reg : kRegs) {
      for (SoftScale scale : kScales) {
        for (double eps : {0.01, 0.5, 5.0}) {
          for (bool descending : {false, true}) {
            const std::vector<double> r =
                run(x, settings(SoftKind::rank, reg, eps, scale, descending));
            EXPECT_NEAR(std::accumulate(r.begin(), r.end(), 0.0), total, 1e-10 * total);
            for (std::size_t i = 0; i < n; ++i) {
              EXPECT_GE(r[i], 1.0 - 1e-12);
              EXPECT_LE(r[i], static_cast<double>(n) + 1e-12);
              for (std::size_t j = 0; j < std::min<std::size_t>(n, 20); ++j) {
                if ((x[i] < x[j]) != descending && x[i] != x[j]) {
                  EXPECT_LE(r[i], r[j] + 1e-12);
                }
              }
            }
          }
        }
      }
    }
  }
}

TEST(SoftRank, DescendingIsTheRankOfMinusX) {
  std::mt19937_64 rng(22);
  std::vector<double> x = normals(50, rng), neg(x);
  for (double& v : neg) v = -v;
  for (Regularization reg : kRegs) {
    for (SoftScale scale : kScales) {
      EXPECT_EQ(run(x, settings(SoftKind::rank, reg, 0.3, scale, true)),
                run(neg, settings(SoftKind::rank, reg, 0.3, scale, false)));
    }
  }
}

TEST(SoftSort, L2PreservesTheSumAndSorts) {
  std::mt19937_64 rng(23);
  for (std::size_t n : {2u, 9u, 500u}) {
    const std::vector<double> x = normals(n, rng, 2.0);
    const double total = std::accumulate(x.begin(), x.end(), 0.0);
    for (SoftScale scale : kScales) {
      for (double eps : {0.001, 0.1, 10.0}) {
        for (bool descending : {false, true}) {
          const std::vector<double> s =
              run(x, settings(SoftKind::sort, Regularization::l2, eps, scale, descending));
          EXPECT_NEAR(std::accumulate(s.begin(), s.end(), 0.0), total, 1e-9 * static_cast<double>(n));
          for (std::size_t i = 1; i < n; ++i) {
            if (descending) {
              EXPECT_GE(s[i - 1], s[i] - 1e-12);
            } else {
              EXPECT_LE(s[i - 1], s[i] + 1e-12);
            }
          }
        }
      }
    }
  }
}

TEST(SoftSort, KlPreservesTheSumOfExponentials) {
  // The descending KL soft sort is the log of a point of the permutahedron of
  // exp(x).
  std::mt19937_64 rng(24);
  const std::vector<double> x = normals(40, rng);
  double total = 0.0;
  for (double v : x) total += std::exp(v);
  for (double eps : {0.05, 1.0, 20.0}) {
    const std::vector<double> s =
        run(x, settings(SoftKind::sort, Regularization::kl, eps, SoftScale::none, true));
    double got = 0.0;
    for (double v : s) got += std::exp(v);
    EXPECT_NEAR(got, total, 1e-12 * total);
  }
}

TEST(SoftOperators, HardLimits) {
  std::mt19937_64 rng(25);
  std::vector<double> x = integers(60, rng, 15);  // ties
  const std::vector<double> ranks = hard_ranks(x);
  std::vector<double> sorted(x);
  std::sort(sorted.begin(), sorted.end());
  for (Regularization reg : kRegs) {
    EXPECT_EQ(run(x, settings(SoftKind::rank, reg, 0.0)), ranks);
    EXPECT_EQ(run(x, settings(SoftKind::sort, reg, 0.0)), sorted);
  }
  // distinct values at least 1 apart: eps far below the gaps gives the hard
  // operators (exactly with L2, where no block is pooled)
  std::vector<double> y(40);
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<double>((i * 17) % 40);
  std::vector<double> ysorted(y);
  std::sort(ysorted.begin(), ysorted.end());
  EXPECT_EQ(run(y, settings(SoftKind::rank, Regularization::l2, 1e-3)), hard_ranks(y));
  const std::vector<double> kl = run(y, settings(SoftKind::rank, Regularization::kl, 1e-3));
  EXPECT_LT(relative_error(kl, hard_ranks(y)), 1e-12);
  EXPECT_LT(relative_error(run(y, settings(SoftKind::sort, Regularization::l2, 1e-3)), ysorted), 1e-12);
  EXPECT_LT(relative_error(run(y, settings(SoftKind::sort, Regularization::kl, 1e-3)), ysorted), 1e-12);
  // a very large eps pools everything: every L2 rank is the mean rank
  for (double r : run(y, settings(SoftKind::rank, Regularization::l2, 1e12))) EXPECT_NEAR(r, 20.5, 1e-9);
}

TEST(SoftOperators, RefuseOverflow) {
  const std::vector<double> x = {1e300, -1e300, 0.0};
  diffrank::SoftOperator op;
  std::vector<double> out(3);
  EXPECT_FALSE(op.forward(x.data(), 3, settings(SoftKind::rank, Regularization::l2, 1e-10), out.data()));
  const std::vector<double> huge = {1e301, 0.0, 1.0};
  EXPECT_FALSE(op.forward(huge.data(), 3, settings(SoftKind::sort, Regularization::l2, 1.0), out.data()));
}

// vjp against finite differences of <v, F(x)>, jvp against vjp, and the
// Jacobian against jvp, for every kind, regularization, scale and order.
TEST(SoftOperators, DerivativesMatchFiniteDifferences) {
  std::mt19937_64 rng(26);
  const std::size_t n = 12;
  for (SoftKind kind : {SoftKind::rank, SoftKind::sort}) {
    for (Regularization reg : kRegs) {
      for (SoftScale scale : kScales) {
        for (bool descending : {false, true}) {
          const std::vector<double> x = normals(n, rng), v = normals(n, rng), u = normals(n, rng);
          const double eps = scale == SoftScale::none ? 0.7 : (scale == SoftScale::sd ? 0.2 : 2.0);
          const diffrank::SoftSettings s = settings(kind, reg, eps, scale, descending);
          const std::string label = std::string(kind == SoftKind::rank ? "rank" : "sort") +
                                    (reg == Regularization::l2 ? " l2" : " kl") + " scale " +
                                    std::to_string(static_cast<int>(scale)) +
                                    (descending ? " descending" : "");
          diffrank::SoftOperator op;
          std::vector<double> value(n), g(n), ju(n), jac(n * n);
          ASSERT_TRUE(op.forward(x.data(), n, s, value.data()));
          op.vjp(v.data(), g.data());
          op.jvp(u.data(), ju.data());
          op.jacobian(jac.data());
          const std::vector<double> fd = finite_gradient(
              [&](const std::vector<double>& xx) { return dot(v, run(xx, s)); }, x, 1e-6);
          EXPECT_LT(relative_error(g, fd), 1e-6) << label;
          EXPECT_NEAR(dot(v, ju), dot(g, u), 1e-10 * (1.0 + std::abs(dot(g, u)))) << label;
          for (std::size_t i = 0; i < n; ++i) {
            double row = 0.0;
            for (std::size_t j = 0; j < n; ++j) row += jac[i + n * j] * u[j];
            EXPECT_NEAR(row, ju[i], 1e-10 * (1.0 + std::abs(ju[i]))) << label;
          }
        }
      }
    }
  }
}

// Local rank coordinates (SoftScale::local): derivatives through the map,
// both directions and regularizations, with short vectors (one window) and
// long ones (windows of 19 gaps); invariance under a x + b; ties kept.
TEST(SoftRankLocal, DerivativesMatchFiniteDifferences) {
  std::mt19937_64 rng(41);
  for (std::size_t n : {3u, 12u, 45u}) {
    for (Regularization reg : kRegs) {
      for (bool descending : {false, true}) {
        std::vector<double> x = normals(n, rng);
        for (double& value : x) value = std::exp(value);  // skewed
        const std::vector<double> v = normals(n, rng), u = normals(n, rng);
        const diffrank::SoftSettings s =
            settings(SoftKind::rank, reg, 0.5, SoftScale::local, descending);
        diffrank::SoftOperator op;
        std::vector<double> value(n), g(n), ju(n);
        ASSERT_TRUE(op.forward(x.data(), n, s, value.data()));
        op.vjp(v.data(), g.data());
        op.jvp(u.data(), ju.data());
        const std::vector<double> fd = finite_gradient(
            [&](const std::vector<double>& xx) { return dot(v, run(xx, s)); }, x, 1e-7);
        const std::string label = std::to_string(n) + (reg == Regularization::l2 ? " l2" : " kl") +
                                  (descending ? " descending" : "");
        EXPECT_LT(relative_error(g, fd), 1e-5) << label;
        EXPECT_NEAR(dot(v, ju), dot(g, u), 1e-10 * (1.0 + std::abs(dot(g, u)))) << label;
        // L2 (the default) mixes the closest neighbours at eps = 0.5; KL, whose
        // blocks compare with the gaps of log(rho), may be hard
        if (reg == Regularization::l2) {
          EXPECT_GT(std::sqrt(dot(g, g)), 0.0) << label;
        }
      }
    }
  }
}

TEST(SoftRankLocal, InvariantUnderAffineMapsAndKeepsTies) {
  std::mt19937_64 rng(42);
  std::vector<double> x = normals(300, rng), affine(x), neg(x);
  for (std::size_t i = 0; i < x.size(); ++i) {
    affine[i] = 1e3 * x[i] - 5.0;
    neg[i] = -x[i];
  }
  const diffrank::SoftSettings up = settings(SoftKind::rank, Regularization::l2, 0.5,
                                             SoftScale::local, false);
  const diffrank::SoftSettings down = settings(SoftKind::rank, Regularization::l2, 0.5,
                                               SoftScale::local, true);
  EXPECT_LT(relative_error(run(x, up), run(affine, up)), 1e-12);
  EXPECT_EQ(run(x, down), run(neg, up));
  std::vector<double> tied(x);
  for (double& value : tied) value = std::round(10.0 * value) / 10.0;
  const std::vector<double> r = run(tied, up);
  for (std::size_t i = 0; i < tied.size(); ++i) {
    for (std::size_t j = 0; j < tied.size(); ++j) {
      if (tied[i] == tied[j]) {
        EXPECT_EQ(r[i], r[j]);
      }
    }
  }
}

TEST(PermutahedronProjection, IsAPointOfThePermutahedronAndIdempotent) {
  std::mt19937_64 rng(27);
  const std::size_t n = 15;
  for (Regularization reg : kRegs) {
    for (int rep = 0; rep < 5; ++rep) {
      const std::vector<double> z = normals(n, rng, 3.0), w = normals(n, rng);
      diffrank::PermutahedronProjection project;
      std::vector<double> y(n), again(n);
      project(z.data(), w.data(), n, reg, y.data());
      // in the permutahedron of w (of exp(w) for KL): same total, and the
      // sums of the k largest values are at most those of w (majorization)
      std::vector<double> ys(y), ws(w);
      if (reg == Regularization::kl) {
        for (double& v : ys) v = std::exp(v);
        for (double& v : ws) v = std::exp(v);
      }
      std::sort(ys.rbegin(), ys.rend());
      std::sort(ws.rbegin(), ws.rend());
      double sy = 0.0, sw = 0.0;
      for (std::size_t k = 0; k < n; ++k) {
        sy += ys[k];
        sw += ws[k];
        EXPECT_LE(sy, sw + 1e-10 * std::abs(sw));
      }
      EXPECT_NEAR(sy, sw, 1e-10 * std::abs(sw));
      project(y.data(), w.data(), n, reg, again.data());
      EXPECT_LT(relative_error(again, y), 1e-10);
    }
  }
}

}  // namespace
