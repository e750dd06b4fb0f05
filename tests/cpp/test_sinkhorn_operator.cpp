// Tests of sinkhorn_operator.hpp: the package's Sinkhorn operators on one
// column (kinds, missing values, decreasing order) and the chain rules to
// the user's inputs, against finite differences and exact identities.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <diffrank/sinkhorn_operator.hpp>
#include <limits>
#include <random>
#include <vector>

#include "helpers.hpp"

using diffrank::SinkhornOperator;
using diffrank::SinkhornOutput;
using diffrank::SinkhornProblem;
using diffrank::SinkhornSpec;
using testing_helpers::dot;
using testing_helpers::finite_gradient;
using testing_helpers::normals;

namespace {

std::vector<double> grid(std::size_t m) {
  std::vector<double> y(m);
  for (std::size_t l = 0; l < m; ++l) y[l] = m == 1 ? 0.5 : double(l) / double(m - 1);
  return y;
}

// The spec R/sinkhorn.R builds for each kind (sinkhorn_problems()), with
// tight tolerances so that finite differences see the converged operator.
SinkhornSpec make_spec(SinkhornOutput output, std::size_t n, bool decreasing = false,
                       std::vector<double> raw_b = {}, std::vector<double> target = {}) {
  SinkhornSpec spec;
  spec.output = output;
  spec.n = n;
  spec.decreasing = decreasing;
  spec.opt.eps = 0.05;
  spec.opt.tol = 1e-13;
  spec.opt.max_iter = 5000;
  const std::size_t m = !raw_b.empty()   ? raw_b.size()
                        : !target.empty() ? target.size()
                                          : 5;
  if (raw_b.empty()) raw_b.assign(m, 1.0);
  SinkhornProblem pr;
  pr.y = grid(m);
  pr.b = testing_helpers::normalized(raw_b);
  switch (output) {
    case SinkhornOutput::rank:
    case SinkhornOutput::cdf: pr.set_cumsum_weights(); break;
    case SinkhornOutput::sort: break;
    case SinkhornOutput::plan:
      pr.whole_plan = true;
      break;
    case SinkhornOutput::topk:
      pr.y = grid(2);
      pr.b = {0.6, 0.4};
      pr.w = {0.0, 1.0};
      break;
    case SinkhornOutput::normalize: {
      // the sorted target, and where each sorted value was in the user's
      std::vector<std::size_t> order(target.size());
      for (std::size_t k = 0; k < order.size(); ++k) order[k] = k;
      std::sort(order.begin(), order.end(),
                [&](std::size_t i, std::size_t j) { return target[i] < target[j]; });
      pr.w.resize(target.size());
      for (std::size_t k = 0; k < order.size(); ++k) pr.w[k] = target[order[k]];
      spec.target_order = order;
      break;
    }
    case SinkhornOutput::quantile:
      // levels 0.8, 0.3 and 0.3 again, width 0.2, in one problem: windows
      // [0.2, 0.4] and [0.7, 0.9] and the masses around them, targets 0.5
      // apart; the outputs are targets 3, 1 and 1
      pr.b = {0.2, 0.2, 0.3, 0.2, 0.1};
      pr.y = {0.0, 0.5, 1.0, 1.5, 2.0};
      pr.rows = {3, 1, 1};
      break;
  }
  spec.problem = pr;
  return spec;
}

struct Solved {
  std::vector<double> value, f, g;
};

Solved forward(const SinkhornSpec& spec, const std::vector<double>& x, const std::vector<double>& a) {
  Solved r;
  r.value.assign(spec.output_rows(), std::numeric_limits<double>::quiet_NaN());
  r.f.assign(spec.f_size(), 0.0);
  r.g.assign(spec.g_size(), 0.0);
  SinkhornOperator op;
  const diffrank::SinkhornStatus st =
      op.forward(spec, spec.opt, x.data(), a.data(), r.value.data(), r.f.data(), r.g.data(),
                 nullptr);
  EXPECT_TRUE(st.converged);
  return r;
}

const SinkhornOutput kinds[] = {
    SinkhornOutput::rank, SinkhornOutput::cdf,       SinkhornOutput::sort, SinkhornOutput::quantile,
    SinkhornOutput::topk, SinkhornOutput::normalize, SinkhornOutput::plan};

}  // namespace

// The VJP of every kind, in both orders, equals central differences of
// <v, value>, and the JVP is its transpose.
TEST(SinkhornOperator, DerivativesOfEveryKindAndOrder) {
  // five target values for normalization, so five targets for every kind
  std::mt19937_64 rng(21);
  const std::size_t n = 7;
  const std::vector<double> a = testing_helpers::normalized({1, 2, 1, 3, 1, 2, 1});
  for (SinkhornOutput kind : kinds) {
    for (bool decreasing : {false, true}) {
      const SinkhornSpec spec =
          make_spec(kind, n, decreasing, {}, {2.0, -1.0, 4.0, 0.5, 3.0});
      const std::vector<double> x = normals(n, rng);
      const Solved run = forward(spec, x, a);
      const std::vector<double> v = normals(spec.output_rows(), rng);
      const std::vector<double> u = normals(n, rng);
      SinkhornOperator op;
      std::vector<double> xbar(n, 0.0), bbar(spec.targets(), 0.0), wbar(spec.targets(), 0.0);
      op.vjp(spec, spec.opt, x.data(), a.data(), run.f.data(), run.g.data(), v.data(),
             xbar.data(), bbar.data(), wbar.data());
      const auto loss = [&](const std::vector<double>& z) { return dot(v, forward(spec, z, a).value); };
      const std::vector<double> fd = finite_gradient(loss, x, 1e-6);
      for (std::size_t i = 0; i < n; ++i) {
        EXPECT_NEAR(xbar[i], fd[i], 1e-6 * (1.0 + std::fabs(fd[i])))
            << "kind " << int(kind) << " decreasing " << decreasing << " i " << i;
      }
      std::vector<double> ju(spec.output_rows(), 0.0);
      op.jvp(spec, spec.opt, x.data(), a.data(), run.f.data(), run.g.data(), u.data(), ju.data());
      EXPECT_NEAR(dot(v, ju), dot(xbar, u), 1e-10 * (1.0 + std::fabs(dot(xbar, u))))
          << "kind " << int(kind) << " decreasing " << decreasing;
    }
  }
}

// The decreasing order is the increasing one of -x, read back: ranks and CDF
// values of -x exactly, and the increasing sort reversed.
TEST(SinkhornOperator, DecreasingIsTheIncreasingOperatorOfMinusXOrReversed) {
  std::mt19937_64 rng(22);
  const std::size_t n = 9;
  const std::vector<double> a(n, 1.0 / n);
  const std::vector<double> x = normals(n, rng);
  std::vector<double> minus_x(n);
  for (std::size_t i = 0; i < n; ++i) minus_x[i] = -x[i];
  const Solved dec_rank = forward(make_spec(SinkhornOutput::rank, n, true), x, a);
  const Solved inc_rank = forward(make_spec(SinkhornOutput::rank, n, false), minus_x, a);
  EXPECT_EQ(dec_rank.value, inc_rank.value);
  const Solved dec_sort = forward(make_spec(SinkhornOutput::sort, n, true), x, a);
  std::vector<double> inc_sort = forward(make_spec(SinkhornOutput::sort, n, false), x, a).value;
  std::reverse(inc_sort.begin(), inc_sort.end());
  EXPECT_EQ(dec_sort.value, inc_sort);
}

// Ranks are n times the CDF values, which never exceed 1.
TEST(SinkhornOperator, RanksAreNTimesTheCdf) {
  std::mt19937_64 rng(23);
  const std::size_t n = 11;
  const std::vector<double> a(n, 1.0 / n);
  const std::vector<double> x = normals(n, rng);
  const Solved rank = forward(make_spec(SinkhornOutput::rank, n), x, a);
  const Solved cdf = forward(make_spec(SinkhornOutput::cdf, n), x, a);
  for (std::size_t i = 0; i < n; ++i) {
    EXPECT_LE(cdf.value[i], 1.0);
    EXPECT_EQ(rank.value[i], double(n) * cdf.value[i]);
  }
}

// A missing value is left out: the other values get what the column
// without it gives (weights renormalized), the missing one stays NaN with a
// zero gradient and a zero tangent.
TEST(SinkhornOperator, MissingValuesAreLeftOut) {
  std::mt19937_64 rng(24);
  const std::size_t n = 8;
  const std::vector<double> a = testing_helpers::normalized({1, 1, 2, 1, 1, 3, 1, 1});
  std::vector<double> x = normals(n, rng);
  const std::size_t missing = 3;
  x[missing] = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> xo, ao;
  for (std::size_t i = 0; i < n; ++i) {
    if (i == missing) continue;
    xo.push_back(x[i]);
    ao.push_back(a[i]);
  }
  ao = testing_helpers::normalized(ao);
  const std::vector<double> target = {0.0, 1.0, 3.0, 6.0};
  const SinkhornSpec spec = make_spec(SinkhornOutput::normalize, n, false, {}, target);
  const SinkhornSpec compact = make_spec(SinkhornOutput::normalize, n - 1, false, {}, target);
  const Solved full = forward(spec, x, a);
  const Solved small = forward(compact, xo, ao);
  EXPECT_TRUE(std::isnan(full.value[missing]));
  std::vector<double> v = normals(n, rng), u = normals(n, rng);
  std::vector<double> vo, uo;
  for (std::size_t i = 0; i < n; ++i) {
    if (i == missing) continue;
    EXPECT_EQ(full.value[i], small.value[i < missing ? i : i - 1]);
    vo.push_back(v[i]);
    uo.push_back(u[i]);
  }
  SinkhornOperator op;
  std::vector<double> xbar(n, 0.0), bbar(4, 0.0), wbar(4, 0.0);
  op.vjp(spec, spec.opt, x.data(), a.data(), full.f.data(), full.g.data(), v.data(), xbar.data(),
         bbar.data(), wbar.data());
  std::vector<double> xbar_o(n - 1, 0.0), bbar_o(4, 0.0), wbar_o(4, 0.0);
  op.vjp(compact, compact.opt, xo.data(), ao.data(), small.f.data(), small.g.data(), vo.data(),
         xbar_o.data(), bbar_o.data(), wbar_o.data());
  EXPECT_EQ(xbar[missing], 0.0);
  EXPECT_EQ(wbar, wbar_o);
  std::vector<double> ju(n, 1.0);
  op.jvp(spec, spec.opt, x.data(), a.data(), full.f.data(), full.g.data(), u.data(), ju.data());
  EXPECT_EQ(ju[missing], 0.0);
}

// The gradients of the user's raw target weights (through b = raw /
// sum(raw) and, for CDF values, w = cumsum(b)) and of the target values in
// the user's order equal central differences.
TEST(SinkhornOperator, TargetGradientsInTheUsersTerms) {
  std::mt19937_64 rng(25);
  const std::size_t n = 6;
  const std::vector<double> a(n, 1.0 / n);
  const std::vector<double> x = normals(n, rng);
  const std::vector<double> raw = {1.0, 2.0, 3.0, 2.0, 0.5};
  const std::vector<double> target = {4.0, -1.0, 2.5, 0.0, 7.0};
  double raw_sum = 0.0;
  for (double r : raw) raw_sum += r;
  for (SinkhornOutput kind : {SinkhornOutput::cdf, SinkhornOutput::normalize}) {
    const SinkhornSpec spec = make_spec(kind, n, false, raw, target);
    const std::size_t m = spec.targets();
    const Solved run = forward(spec, x, a);
    const std::vector<double> v = normals(n, rng);
    SinkhornOperator op;
    std::vector<double> xbar(n, 0.0), bbar(m, 0.0), wbar(m, 0.0);
    op.vjp(spec, spec.opt, x.data(), a.data(), run.f.data(), run.g.data(), v.data(), xbar.data(),
           bbar.data(), wbar.data());
    std::vector<double> raw_grad(m), target_grad(m);
    diffrank::sinkhorn_target_gradients(spec, bbar.data(), wbar.data(), raw_sum, raw_grad.data(),
                                        target_grad.data());
    const auto by_raw = [&](const std::vector<double>& r) {
      return dot(v, forward(make_spec(kind, n, false, r, target), x, a).value);
    };
    const std::vector<double> fd_raw = finite_gradient(by_raw, raw, 1e-6);
    for (std::size_t l = 0; l < m; ++l) {
      EXPECT_NEAR(raw_grad[l], fd_raw[l], 1e-6) << "kind " << int(kind) << " l " << l;
    }
    if (kind != SinkhornOutput::normalize) continue;
    const auto by_target = [&](const std::vector<double>& t) {
      return dot(v, forward(make_spec(kind, n, false, raw, t), x, a).value);
    };
    const std::vector<double> fd_target = finite_gradient(by_target, target, 1e-6);
    for (std::size_t l = 0; l < m; ++l) EXPECT_NEAR(target_grad[l], fd_target[l], 1e-6);
  }
}

// The plan's rows and columns sum to the weights, and its VJP for the
// cotangent 1 w^T (summed over the targets) is that of the row average P w
// times a (the CDF's, without the division by a).
TEST(SinkhornOperator, PlanIsTheTransportTheOthersRead) {
  std::mt19937_64 rng(27);
  const std::size_t n = 7, m = 5;
  const std::vector<double> a = testing_helpers::normalized({1, 2, 1, 3, 1, 2, 1});
  const std::vector<double> x = normals(n, rng);
  const SinkhornSpec plan = make_spec(SinkhornOutput::plan, n);
  const SinkhornSpec cdf = make_spec(SinkhornOutput::cdf, n);
  ASSERT_EQ(plan.output_rows(), n * m);
  const Solved p = forward(plan, x, a), c = forward(cdf, x, a);
  const std::vector<double>& w = cdf.problem.w;
  for (std::size_t i = 0; i < n; ++i) {
    double row = 0.0, pw = 0.0;
    for (std::size_t j = 0; j < m; ++j) {
      row += p.value[i + j * n];
      pw += p.value[i + j * n] * w[j];
    }
    EXPECT_NEAR(row, a[i], 1e-14);
    EXPECT_NEAR(pw / a[i], c.value[i], 1e-12);
  }
  const std::vector<double> v = normals(n, rng);
  std::vector<double> outer(n * m);
  for (std::size_t j = 0; j < m; ++j) {
    for (std::size_t i = 0; i < n; ++i) outer[i + j * n] = v[i] / a[i] * w[j];
  }
  SinkhornOperator op;
  std::vector<double> xbar_plan(n), xbar_cdf(n), bbar(m, 0.0), wbar(m, 0.0);
  op.vjp(plan, plan.opt, x.data(), a.data(), p.f.data(), p.g.data(), outer.data(), xbar_plan.data(),
         bbar.data(), wbar.data());
  op.vjp(cdf, cdf.opt, x.data(), a.data(), c.f.data(), c.g.data(), v.data(), xbar_cdf.data(),
         bbar.data(), wbar.data());
  for (std::size_t i = 0; i < n; ++i) EXPECT_NEAR(xbar_plan[i], xbar_cdf[i], 1e-10);
}

// All quantile levels come from one transport: each output is the mean
// input value sent to its level's target (a repeated level repeats it), and
// the cotangents of a repeated level add up.
TEST(SinkhornOperator, QuantileLevelsShareOneTransport) {
  std::mt19937_64 rng(26);
  const std::size_t n = 10;
  const std::vector<double> a(n, 1.0 / n);
  const std::vector<double> x = normals(n, rng);
  const SinkhornSpec spec = make_spec(SinkhornOutput::quantile, n);
  ASSERT_EQ(spec.output_rows(), 3u);
  ASSERT_EQ(spec.g_size(), 5u);
  std::vector<double> value(3), f(spec.f_size()), g(spec.g_size()), means(spec.g_size());
  SinkhornOperator op;
  op.forward(spec, spec.opt, x.data(), a.data(), value.data(), f.data(), g.data(), means.data());
  EXPECT_EQ(value[0], means[3]);
  EXPECT_EQ(value[1], means[1]);
  EXPECT_EQ(value[2], means[1]);
  EXPECT_LT(value[1], value[0]);
  std::vector<double> split(n), summed(n), bbar(5, 0.0), wbar(5, 0.0);
  const std::vector<double> v_split = {0.5, 1.0, 2.0}, v_summed = {0.5, 3.0, 0.0};
  op.vjp(spec, spec.opt, x.data(), a.data(), f.data(), g.data(), v_split.data(), split.data(),
         bbar.data(), wbar.data());
  op.vjp(spec, spec.opt, x.data(), a.data(), f.data(), g.data(), v_summed.data(), summed.data(),
         bbar.data(), wbar.data());
  for (std::size_t i = 0; i < n; ++i) EXPECT_NEAR(split[i], summed[i], 1e-14);
}

// <b, bbar>: bbar minus it is orthogonal to the simplex's normal (sums to 0
// against b's changes that keep sum(b) = 1).
TEST(SinkhornOperator, SimplexGaugeMakesTheGradientTangent) {
  const std::vector<double> b = {0.2, 0.5, 0.3}, bbar = {1.0, -2.0, 4.0};
  const double gauge = diffrank::simplex_gauge(b.data(), bbar.data(), 3);
  EXPECT_DOUBLE_EQ(gauge, 0.2 - 1.0 + 1.2);
  double along = 0.0;
  for (std::size_t l = 0; l < 3; ++l) along += b[l] * (bbar[l] - gauge);
  EXPECT_NEAR(along, 0.0, 1e-15);
}
