// perturb.hpp: the order-preserving integer keys and their stable sort, the
// built-in solvers against brute force (ties included), and the estimators
// of PerturbedOperator (perturbed maximizer and maximum, VJP, JVP,
// Jacobian, Fenchel-Young loss) against the same sums written out over the
// given draws, plain and antithetic, normal and Gumbel.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <diffrank/perturb.hpp>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "helpers.hpp"

namespace {

using namespace testing_helpers;
using diffrank::PerturbNoise;
using diffrank::PerturbSettings;
using diffrank::PerturbSolver;

TEST(PerturbKeys, OrderKeyIsMonotone) {
  const double inf = std::numeric_limits<double>::infinity();
  const double tiny = std::numeric_limits<double>::denorm_min();
  const double big = std::numeric_limits<double>::max();
  std::vector<double> values = {-inf, -big, -1e300, -1e10, -2.0, -1.0, -1.0 + 1e-16, -1e-300,
                                -tiny, -0.0, 0.0, tiny, 2 * tiny, 1e-300, 0.5, 1.0,
                                1.0 + 2.2e-16, 3.0, 1e10, 1e300, big, inf};
  std::mt19937_64 rng(81);
  for (double v : normals(100, rng, 1.0)) values.push_back(v);
  for (double v : uniforms(50, rng, -300.0, 300.0)) values.push_back(std::pow(10.0, v) * (v > 0 ? 1 : -1));
  for (double v : integers(30, rng, 5)) values.push_back(v - 2.0);  // ties
  for (double a : values) {
    for (double b : values) {
      const std::uint64_t ka = diffrank::order_key(a), kb = diffrank::order_key(b);
      ASSERT_EQ(ka < kb, a < b) << a << " " << b;
      ASSERT_EQ(ka == kb, a == b) << a << " " << b;  // -0 and +0 equal
    }
  }
  EXPECT_EQ(diffrank::order_key(-0.0), diffrank::order_key(0.0));
}

TEST(PerturbKeys, SortKeysIsAStableSort) {
  std::mt19937_64 rng(82);
  for (std::size_t n : {0u, 1u, 2u, 7u, 8u, 9u, 16u, 17u, 31u, 64u, 100u, 1000u, 4099u}) {
    for (int levels : {3, 1000000}) {
      std::vector<double> x = integers(n, rng, levels);
      for (std::size_t i = 0; i < n; i += 5) x[i] = -x[i];  // -0 among the ties of 0
      std::vector<diffrank::KeyIndex> keys(n), tmp(n);
      for (std::size_t i = 0; i < n; ++i) {
        keys[i] = {diffrank::order_key(x[i]), static_cast<std::uint32_t>(i)};
      }
      std::vector<diffrank::KeyIndex> expected(keys);
      std::stable_sort(expected.begin(), expected.end(),
                       [](const diffrank::KeyIndex& a, const diffrank::KeyIndex& b) {
                         return a.key < b.key;
                       });
      diffrank::sort_keys(keys.data(), tmp.data(), n);
      for (std::size_t i = 0; i < n; ++i) {
        ASSERT_EQ(keys[i].key, expected[i].key) << "n " << n << " i " << i;
        ASSERT_EQ(keys[i].index, expected[i].index) << "n " << n << " i " << i;
      }
    }
  }
}

// Brute-force solvers, from the header's definitions (ties: the first
// entry, or order of appearance; -0 equals +0).
std::vector<double> brute_solve(PerturbSolver solver, std::size_t k, const std::vector<double>& t) {
  const std::size_t n = t.size();
  std::vector<double> y(n, 0.0);
  // entries before i in the order "larger first, then earlier first"
  auto ahead = [&](std::size_t i) {
    std::size_t c = 0;
    for (std::size_t j = 0; j < n; ++j) c += t[j] > t[i] || (t[j] == t[i] && j < i);
    return c;
  };
  // entries before i in the order "smaller first, then earlier first"
  auto below = [&](std::size_t i) {
    std::size_t c = 0;
    for (std::size_t j = 0; j < n; ++j) c += t[j] < t[i] || (t[j] == t[i] && j < i);
    return c;
  };
  switch (solver) {
    case PerturbSolver::argmax:
      for (std::size_t i = 0; i < n; ++i) {
        if (ahead(i) == 0) y[i] = 1.0;
      }
      break;
    case PerturbSolver::topk:
      for (std::size_t i = 0; i < n; ++i) y[i] = ahead(i) < k ? 1.0 : 0.0;
      break;
    case PerturbSolver::rank:
      for (std::size_t i = 0; i < n; ++i) y[i] = static_cast<double>(below(i) + 1);
      break;
    case PerturbSolver::sort:
      y = t;
      std::sort(y.begin(), y.end());
      break;
    case PerturbSolver::external:
      break;
  }
  return y;
}

std::vector<double> builtin(const PerturbSettings& s, const std::vector<double>& t) {
  diffrank::PerturbScratch scratch;
  std::vector<double> y(t.size(), -7.0);
  diffrank::solve_builtin(s, t.data(), t.size(), y.data(), scratch);
  return y;
}

std::string solver_name(PerturbSolver s) {
  switch (s) {
    case PerturbSolver::argmax: return "argmax";
    case PerturbSolver::topk: return "topk";
    case PerturbSolver::rank: return "rank";
    case PerturbSolver::sort: return "sort";
    default: return "external";
  }
}

TEST(PerturbSolvers, BuiltinSolversAreTheBruteForceAnswer) {
  std::mt19937_64 rng(83);
  for (PerturbSolver solver :
       {PerturbSolver::argmax, PerturbSolver::topk, PerturbSolver::rank, PerturbSolver::sort}) {
    for (std::size_t n : {1u, 2u, 5u, 9u, 40u, 300u}) {
      for (bool ties : {false, true}) {
        std::vector<double> t = ties ? integers(n, rng, 4) : normals(n, rng, 10.0);
        if (ties) {
          for (std::size_t i = 1; i < n; i += 3) t[i] = -t[i];  // -0 and +0 among the ties
        }
        for (std::size_t k : {std::size_t(1), std::size_t(2), n / 2, n}) {
          if (k == 0 || k > n || (solver != PerturbSolver::topk && k != 1)) continue;
          PerturbSettings s;
          s.solver = solver;
          s.k = k;
          const std::vector<double> y = builtin(s, t), expected = brute_solve(solver, k, t);
          const std::string label = solver_name(solver) + " n " + std::to_string(n) + " k " +
                                    std::to_string(k) + (ties ? " ties" : "");
          ASSERT_EQ(y.size(), expected.size());
          for (std::size_t i = 0; i < n; ++i) {
            // sort returns values: -0 and +0 compare equal, and so do they here
            EXPECT_EQ(y[i], expected[i]) << label << " i " << i;
          }
          if (solver == PerturbSolver::sort && !ties) {
            EXPECT_TRUE(std::is_sorted(y.begin(), y.end())) << label;
          }
        }
      }
    }
  }
}

// The argmax of <y, theta> over the set: no vertex of the set does better
// (for rank: the rearrangement inequality, checked against every
// permutation of a short vector).
TEST(PerturbSolvers, RankMaximizesTheInnerProductOverPermutations) {
  std::mt19937_64 rng(84);
  const std::vector<double> t = normals(6, rng);
  PerturbSettings s;
  s.solver = PerturbSolver::rank;
  const std::vector<double> y = builtin(s, t);
  const double best = dot(y, t);
  std::vector<double> perm = {1, 2, 3, 4, 5, 6};
  double top = -INFINITY;
  do {
    top = std::max(top, dot(perm, t));
  } while (std::next_permutation(perm.begin(), perm.end()));
  EXPECT_NEAR(best, top, 1e-12);
}

struct Draws {
  std::vector<double> theta, z;  // z: n x base draws
};

// A perturbed problem with its draws, solved in the given order of draws.
diffrank::PerturbedOperator solved(const PerturbSettings& s, const Draws& d, bool reverse) {
  diffrank::PerturbedOperator op;
  op.reset(d.theta.data(), d.theta.size(), d.z.data(), d.theta.size(), s);
  diffrank::PerturbScratch scratch;
  for (std::size_t c = 0; c < s.samples; ++c) op.solve(reverse ? s.samples - 1 - c : c, scratch);
  return op;
}

// Z_m, from the header's description of the draws: with antithetic normal
// noise, draws 2b and 2b + 1 are +Z_b and -Z_b of base draw b.
std::vector<double> draw_of(const PerturbSettings& s, const Draws& d, std::size_t m) {
  const std::size_t n = d.theta.size();
  const bool paired = s.antithetic && s.noise == PerturbNoise::normal;
  const std::size_t base = paired ? m / 2 : m;
  const double sign = paired && m % 2 == 1 ? -1.0 : 1.0;
  std::vector<double> z(n);
  for (std::size_t i = 0; i < n; ++i) z[i] = sign * d.z[base * n + i];
  return z;
}

// theta + eps Z_m.
std::vector<double> point_of(const PerturbSettings& s, const Draws& d, std::size_t m) {
  std::vector<double> p = draw_of(s, d, m);
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = d.theta[i] + s.eps * p[i];
  return p;
}

// grad_nu(Z_m): Z_m for the normal, 1 - exp(-Z_m) for the Gumbel.
std::vector<double> noise_gradient(const PerturbSettings& s, const Draws& d, std::size_t m) {
  std::vector<double> g = draw_of(s, d, m);
  if (s.noise == PerturbNoise::gumbel) {
    for (double& z : g) z = 1.0 - std::exp(-z);
  }
  return g;
}

Draws make_draws(const PerturbSettings& s, std::size_t n, std::mt19937_64& rng) {
  Draws d;
  d.theta = normals(n, rng);
  const std::size_t nb = diffrank::perturb_base_draws(s);
  if (s.noise == PerturbNoise::normal) {
    d.z = normals(n * nb, rng);
  } else {
    std::extreme_value_distribution<double> gumbel(0.0, 1.0);
    d.z.resize(n * nb);
    for (double& v : d.z) v = gumbel(rng);
  }
  return d;
}

TEST(PerturbedOperator, EstimatorsAreTheSumsOverTheDraws) {
  std::mt19937_64 rng(85);
  const std::size_t n = 6;
  for (PerturbSolver solver :
       {PerturbSolver::argmax, PerturbSolver::topk, PerturbSolver::rank, PerturbSolver::sort}) {
    for (PerturbNoise noise : {PerturbNoise::normal, PerturbNoise::gumbel}) {
      for (bool antithetic : {false, true}) {
        for (std::size_t samples : {1u, 7u, 50u}) {
          PerturbSettings s;
          s.solver = solver;
          s.noise = noise;
          s.eps = 0.7;
          s.k = 2;
          s.samples = samples;
          s.antithetic = antithetic;
          const Draws d = make_draws(s, n, rng);
          const std::string label = solver_name(solver) +
                                    (noise == PerturbNoise::gumbel ? " gumbel" : " normal") +
                                    (antithetic ? " antithetic" : "") + " M " +
                                    std::to_string(samples);
          if (antithetic && noise == PerturbNoise::normal) {
            EXPECT_EQ(diffrank::perturb_base_draws(s), (samples + 1) / 2) << label;
          } else {
            EXPECT_EQ(diffrank::perturb_base_draws(s), samples) << label;
          }
          const diffrank::PerturbedOperator op = solved(s, d, false);
          // brute force over the draws
          std::vector<double> mean(n, 0.0), vjp_ref(n, 0.0), jvp_ref(n, 0.0), jac_ref(n * n, 0.0);
          const std::vector<double> v = normals(n, rng), u = normals(n, rng);
          std::vector<double> target(n, 0.0);
          target[1] = 1.0;
          if (solver == PerturbSolver::topk) target[4] = 1.0;
          if (solver == PerturbSolver::rank) target = {3, 1, 2, 6, 5, 4};
          double maximum = 0.0, fy = 0.0;
          for (std::size_t m = 0; m < samples; ++m) {
            const std::vector<double> p = point_of(s, d, m), g = noise_gradient(s, d, m);
            const std::vector<double> y = brute_solve(solver, s.k, p);
            for (std::size_t i = 0; i < n; ++i) mean[i] += y[i] / samples;
            maximum += dot(y, p) / samples;
            fy += (dot(y, p) - dot(target, p)) / samples;
            for (std::size_t i = 0; i < n; ++i) {
              vjp_ref[i] += dot(v, y) * g[i] / (s.eps * samples);
              jvp_ref[i] += y[i] * dot(g, u) / (s.eps * samples);
              for (std::size_t j = 0; j < n; ++j) jac_ref[i + j * n] += y[i] * g[j] / (s.eps * samples);
            }
          }
          std::vector<double> value(n), vjp(n), jvp(n), jac(n * n), work;
          op.value(value.data());
          op.vjp(v.data(), vjp.data());
          op.jvp(u.data(), jvp.data());
          op.jacobian(jac.data());
          EXPECT_LT(relative_error(value, mean), 1e-14) << label;
          EXPECT_LT(relative_error(vjp, vjp_ref), 1e-13) << label;
          EXPECT_LT(relative_error(jvp, jvp_ref), 1e-13) << label;
          EXPECT_LT(relative_error(jac, jac_ref), 1e-13) << label;
          // the products are those of the Jacobian estimate
          std::vector<double> jt_v(n, 0.0), j_u(n, 0.0);
          for (std::size_t i = 0; i < n; ++i) {
            for (std::size_t j = 0; j < n; ++j) {
              jt_v[j] += jac[i + j * n] * v[i];
              j_u[i] += jac[i + j * n] * u[j];
            }
          }
          EXPECT_LT(relative_error(vjp, jt_v), 1e-13) << label;
          EXPECT_LT(relative_error(jvp, j_u), 1e-13) << label;
          if (solver == PerturbSolver::sort) {
            EXPECT_TRUE(std::isnan(op.maximum())) << label;
          } else {
            EXPECT_NEAR(op.maximum(), maximum, 1e-13 * (1.0 + std::abs(maximum))) << label;
            EXPECT_NEAR(op.fy_loss(target.data(), work), fy, 1e-13 * (1.0 + std::abs(fy))) << label;
            EXPECT_GE(op.fy_loss(target.data(), work), 0.0) << label;
          }
          // the draws solved in another order (as threads may) give the same bits
          const diffrank::PerturbedOperator again = solved(s, d, true);
          std::vector<double> value2(n);
          again.value(value2.data());
          EXPECT_EQ(value, value2) << label;
          if (solver != PerturbSolver::sort) {
            EXPECT_EQ(op.maximum(), again.maximum()) << label;
          }
        }
      }
    }
  }
}

// Antithetic draws are the base draws and their negatives: the operator
// with antithetic = true on base draws z equals the plain operator on the
// explicit draws (z_1, -z_1, z_2, -z_2, ...); an odd M drops the last -z.
TEST(PerturbedOperator, AntitheticDrawsAreExplicitPairs) {
  std::mt19937_64 rng(86);
  const std::size_t n = 5;
  for (std::size_t samples : {6u, 7u}) {
    PerturbSettings s;
    s.solver = PerturbSolver::rank;
    s.eps = 0.5;
    s.samples = samples;
    s.antithetic = true;
    const Draws d = make_draws(s, n, rng);
    Draws explicit_draws;
    explicit_draws.theta = d.theta;
    for (std::size_t m = 0; m < samples; ++m) {
      const double sign = m % 2 == 0 ? 1.0 : -1.0;
      for (std::size_t i = 0; i < n; ++i) explicit_draws.z.push_back(sign * d.z[(m / 2) * n + i]);
    }
    PerturbSettings plain = s;
    plain.antithetic = false;
    const diffrank::PerturbedOperator a = solved(s, d, false), b = solved(plain, explicit_draws, false);
    std::vector<double> va(n), vb(n), ja(n * n), jb(n * n);
    a.value(va.data());
    b.value(vb.data());
    a.jacobian(ja.data());
    b.jacobian(jb.data());
    EXPECT_EQ(va, vb) << "M " << samples;
    EXPECT_LT(relative_error(ja, jb), 1e-15) << "M " << samples;
    EXPECT_NEAR(a.maximum(), b.maximum(), 1e-14 * std::abs(b.maximum()));
    // the points are those draws
    std::vector<double> pa(n), pb(n);
    for (std::size_t m = 0; m < samples; ++m) {
      a.point(m, pa.data());
      b.point(m, pb.data());
      EXPECT_EQ(pa, pb) << "M " << samples << " draw " << m;
    }
  }
  // Gumbel draws are never paired
  PerturbSettings g;
  g.noise = PerturbNoise::gumbel;
  g.antithetic = true;
  g.samples = 6;
  EXPECT_FALSE(diffrank::perturb_paired(g));
  EXPECT_EQ(diffrank::perturb_base_draws(g), 6u);
}

// The gradient of the Fenchel-Young loss in theta (the draws fixed) is
// mean_m y_m - target: the loss is piecewise linear in theta, so central
// differences with a small step are exact up to rounding.
TEST(PerturbedOperator, FenchelYoungGradientIsMeanSolutionMinusTarget) {
  std::mt19937_64 rng(87);
  const std::size_t n = 7;
  for (PerturbSolver solver : {PerturbSolver::argmax, PerturbSolver::topk, PerturbSolver::rank}) {
    PerturbSettings s;
    s.solver = solver;
    s.eps = 1.0;
    s.k = 3;
    s.samples = 40;
    const Draws d = make_draws(s, n, rng);
    std::vector<double> target = brute_solve(solver, s.k, normals(n, rng));
    const diffrank::PerturbedOperator op = solved(s, d, false);
    std::vector<double> value(n), grad(n);
    op.value(value.data());
    for (std::size_t i = 0; i < n; ++i) grad[i] = value[i] - target[i];
    const std::vector<double> fd = finite_gradient(
        [&](const std::vector<double>& th) {
          Draws other = d;
          other.theta = th;
          std::vector<double> work;
          return solved(s, other, false).fy_loss(target.data(), work);
        },
        d.theta, 1e-7);
    EXPECT_LT(relative_error(grad, fd), 1e-7) << solver_name(solver);
  }
}

// Solutions stored from an external solver give the estimates of the
// built-in solver that found them.
TEST(PerturbedOperator, StoredSolutionsActLikeSolvedOnes) {
  std::mt19937_64 rng(88);
  const std::size_t n = 6;
  PerturbSettings s;
  s.solver = PerturbSolver::topk;
  s.k = 2;
  s.samples = 9;
  const Draws d = make_draws(s, n, rng);
  const diffrank::PerturbedOperator builtin_op = solved(s, d, false);
  PerturbSettings ext = s;
  ext.solver = PerturbSolver::external;
  diffrank::PerturbedOperator op;
  op.reset(d.theta.data(), n, d.z.data(), n, ext);
  diffrank::PerturbScratch scratch;
  for (std::size_t m = 0; m < s.samples; ++m) {
    const std::vector<double> y = brute_solve(PerturbSolver::topk, 2, point_of(s, d, m));
    op.store(m, y.data(), scratch);
  }
  std::vector<double> a(n), b(n);
  op.value(a.data());
  builtin_op.value(b.data());
  EXPECT_EQ(a, b);
  EXPECT_EQ(op.maximum(), builtin_op.maximum());
}

// The mean of solutions near the largest double (sort of huge values) does
// not overflow when the mean itself is a double.
TEST(PerturbedOperator, ValueOfHugeSolutionsStaysFinite) {
  const std::size_t n = 3;
  PerturbSettings s;
  s.solver = PerturbSolver::sort;
  s.eps = 1e-300;  // the draws hardly move theta
  s.samples = 5;
  Draws d;
  d.theta = {1.5e308, -1.6e308, 1.0};
  d.z.assign(n * s.samples, 1.0);
  const diffrank::PerturbedOperator op = solved(s, d, false);
  std::vector<double> value(n);
  op.value(value.data());
  EXPECT_NEAR(value[0], -1.6e308, 1e-15 * 1.6e308);
  EXPECT_EQ(value[1], 1.0);
  EXPECT_NEAR(value[2], 1.5e308, 1e-15 * 1.5e308);
}

}  // namespace
