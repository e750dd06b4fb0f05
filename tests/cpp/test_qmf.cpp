// qmf.hpp: the targets of theta and phi against the formulas of the header
// written out, the weights against softmax, and the gradients of one row's
// loss (QMF and QMFQ, squared and KL, with a missing entry) against central
// differences of the forward loss, the row read from d x n matrices with the
// strides the R glue (src/qmf.cpp) uses; the rows' maps as functions
// (QmfRowMap) against the fitted rows and their own differences, and the
// placement of new samples (QmfPlacer) on data the fit represents exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <diffrank/qmf.hpp>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "helpers.hpp"

namespace {

using namespace testing_helpers;

const double kNaN = std::numeric_limits<double>::quiet_NaN();

// log(1 + e^t), written plainly (moderate t only).
double plain_softplus(double t) { return std::log(1.0 + std::exp(t)); }

// The inverse of softplus: log(e^y - 1), y > 0.
double inverse_softplus(double y) { return std::log(std::expm1(y)); }

// Standard normal quantile by bisection on the distribution function.
double normal_quantile(double p) {
  double lo = -40.0, hi = 40.0;
  for (int it = 0; it < 200; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return 0.5 * (lo + hi);
}

std::vector<double> quantiles_of(const std::vector<double>& theta, bool positive, double center,
                                 double scale) {
  std::vector<double> q(theta.size());
  diffrank::qmf_quantiles(theta.data(), theta.size(), positive, center, scale, q.data());
  return q;
}

TEST(QmfTargets, QuantilesAreTheCenteredScaledCumulativeSums) {
  std::mt19937_64 rng(61);
  for (std::size_t m : {1u, 2u, 5u, 12u}) {
    const std::vector<double> theta = uniforms(m, rng, -5.0, 5.0);
    for (bool positive : {false, true}) {
      const double center = positive ? 0.0 : -0.7, scale = positive ? 2.5 : 1.3;
      const std::vector<double> q = quantiles_of(theta, positive, center, scale);
      double acc = positive ? plain_softplus(theta[0]) : theta[0];
      for (std::size_t j = 0; j < m; ++j) {
        if (j > 0) acc += plain_softplus(theta[j]);
        const double expected = center + scale * acc;
        EXPECT_NEAR(q[j], expected, 1e-14 * (1.0 + std::abs(expected)))
            << "m " << m << " j " << j << (positive ? " positive" : "");
        if (j > 0) {
          EXPECT_GT(q[j], q[j - 1]);
        }
      }
      if (positive) {
        EXPECT_GT(q[0], center);  // every target above the centre (0 for KL)
      }
    }
  }
  // far from 0 the softplus is t (large t) or e^t (very negative t), and
  // never overflows
  const std::vector<double> wide = {-3.0, -30.0, 800.0, 40.0};
  const std::vector<double> q = quantiles_of(wide, true, 0.0, 1.0);
  EXPECT_NEAR(q[0], plain_softplus(-3.0), 5e-15 * q[0]);
  EXPECT_NEAR(q[1] - q[0], std::exp(-30.0), 1e-16);
  EXPECT_EQ(q[2], q[1] + 800.0);
  EXPECT_NEAR(q[3] - q[2], 40.0, 1e-12);
  for (double v : q) EXPECT_TRUE(std::isfinite(v));
}

TEST(QmfTargets, WeightsAreSoftmax) {
  std::mt19937_64 rng(62);
  for (std::size_t m : {1u, 3u, 9u}) {
    const std::vector<double> beta = normals(m, rng, 2.0);
    std::vector<double> b(m);
    diffrank::qmf_weights(beta.data(), m, b.data());
    double total = 0.0, denom = 0.0;
    for (double v : beta) denom += std::exp(v);
    for (std::size_t j = 0; j < m; ++j) {
      total += b[j];
      EXPECT_NEAR(b[j], std::exp(beta[j]) / denom, 1e-15) << "m " << m;
    }
    EXPECT_NEAR(total, 1.0, 1e-15);
    // null beta: equal weights
    diffrank::qmf_weights(nullptr, m, b.data());
    for (double v : b) EXPECT_EQ(v, 1.0 / m);
  }
  // shifts of beta do not matter, and large values do not overflow
  const std::vector<double> big = {1000.0, 999.0, 1001.0}, small = {1.0, 0.0, 2.0};
  std::vector<double> bb(3), bs(3);
  diffrank::qmf_weights(big.data(), 3, bb.data());
  diffrank::qmf_weights(small.data(), 3, bs.data());
  EXPECT_LT(relative_error(bb, bs), 1e-15);
}

// The data-side targets written out: cumulative softplus (from 0 for the
// squared loss), then standardized (1/m variance) or divided by the mean.
std::vector<double> plain_data_targets(const std::vector<double>& phi, bool positive) {
  const std::size_t m = phi.size();
  std::vector<double> p(m);
  double acc = positive ? plain_softplus(phi[0]) : 0.0;
  p[0] = acc;
  for (std::size_t j = 1; j < m; ++j) p[j] = acc += plain_softplus(phi[j]);
  double mean = 0.0, var = 0.0;
  for (double v : p) mean += v / m;
  for (double v : p) var += (v - mean) * (v - mean) / m;
  for (double& v : p) v = positive ? v / mean : (v - mean) / std::sqrt(var);
  return p;
}

std::vector<double> data_targets(const std::vector<double>& phi, bool positive) {
  std::vector<double> p(phi.size());
  diffrank::qmfq_data_targets(phi.data(), phi.size(), positive, p.data());
  return p;
}

TEST(QmfTargets, DataTargetsAreStandardizedAndIncreasing) {
  std::mt19937_64 rng(63);
  for (std::size_t m : {2u, 3u, 6u, 15u}) {
    for (bool positive : {false, true}) {
      const std::vector<double> phi = uniforms(m, rng, -4.0, 4.0);
      const std::vector<double> p = data_targets(phi, positive);
      const std::string label = "m " + std::to_string(m) + (positive ? " positive" : "");
      EXPECT_LT(relative_error(p, plain_data_targets(phi, positive)), 1e-13) << label;
      double mean = 0.0, var = 0.0;
      for (double v : p) mean += v / m;
      for (double v : p) var += (v - mean) * (v - mean) / m;
      if (positive) {
        EXPECT_NEAR(mean, 1.0, 1e-14) << label;
        EXPECT_GT(p[0], 0.0) << label;
      } else {
        EXPECT_NEAR(mean, 0.0, 1e-14) << label;
        EXPECT_NEAR(var, 1.0, 1e-13) << label;
        // phi_1 is unused
        std::vector<double> other(phi);
        other[0] += 3.0;
        EXPECT_EQ(data_targets(other, false), p) << label;
      }
      for (std::size_t j = 1; j < m; ++j) EXPECT_GT(p[j], p[j - 1]) << label << " j " << j;
    }
  }
}

TEST(QmfTargets, DataTargetsVjpMatchesFiniteDifferences) {
  std::mt19937_64 rng(64);
  for (std::size_t m : {2u, 4u, 9u}) {
    for (bool positive : {false, true}) {
      const std::vector<double> phi = uniforms(m, rng, -2.0, 2.0), c = normals(m, rng);
      const std::vector<double> p = data_targets(phi, positive);
      std::vector<double> g(m);
      diffrank::qmfq_data_targets_vjp(phi.data(), p.data(), c.data(), m, positive, g.data());
      const std::vector<double> fd = finite_gradient(
          [&](const std::vector<double>& ph) { return dot(c, data_targets(ph, positive)); }, phi,
          1e-5);
      const std::string label = "m " + std::to_string(m) + (positive ? " positive" : "");
      EXPECT_LT(relative_error(g, fd), 1e-8) << label;
      if (!positive) {
        EXPECT_EQ(g[0], 0.0) << label;
      }
    }
  }
}

// One row (row r of d x n matrices, as the glue passes them) of a QMF or
// QMFQ problem, with every parameter the loss depends on.
struct RowProblem {
  diffrank::QmfSettings s;
  std::size_t d = 3, r = 1;
  std::vector<double> X, U, V, theta, beta, phi, scores;  // X, U, scores: d x n, d x k
  double center = 0.0, scale = 1.0;

  diffrank::QmfRowInput input() const {
    diffrank::QmfRowInput in;
    in.x = X.data() + r;
    in.x_stride = d;
    in.u = U.data() + r;
    in.u_stride = d;
    in.theta = theta.data();
    in.beta = s.learn_weights ? beta.data() : nullptr;
    in.phi = s.map_data ? phi.data() : nullptr;
    in.scores = s.map_data ? scores.data() + r : nullptr;
    in.center = center;
    in.scale = scale;
    return in;
  }

  double loss(std::vector<double>* fitted = nullptr, std::vector<double>* mapped = nullptr,
              diffrank::SinkhornStatus* status = nullptr) const {
    diffrank::QmfRow row;
    if (fitted != nullptr) fitted->assign(s.n, kNaN);
    if (mapped != nullptr) mapped->assign(s.n, kNaN);
    return row.forward(s, V.data(), input(), fitted ? fitted->data() : nullptr,
                       mapped ? mapped->data() : nullptr, 1, status);
  }

  double x(std::size_t i) const { return X[r + i * d]; }
};

RowProblem make_problem(diffrank::QmfLoss loss, bool map_data, std::mt19937_64& rng) {
  RowProblem p;
  const std::size_t n = 7, k = 2, m = 4;
  p.s.loss = loss;
  p.s.n = n;
  p.s.k = k;
  p.s.m = m;
  p.s.learn_weights = true;
  p.s.map_data = map_data;
  p.s.opt.eps = 0.05;
  p.s.opt.tol = 1e-13;
  p.s.opt.max_iter = 5000;
  p.s.opt.newton_after = 0;  // as the glue sets it for m <= 400
  const bool kl = loss == diffrank::QmfLoss::kl;
  p.X = kl ? uniforms(p.d * n, rng, 0.2, 3.0) : normals(p.d * n, rng, 1.5);
  p.U = normals(p.d * k, rng, 0.7);
  p.V = normals(k * n, rng, 0.7);
  p.theta = uniforms(m, rng, -1.0, 1.0);
  p.beta = normals(m, rng, 0.5);
  p.phi = uniforms(m, rng, -1.0, 1.0);
  // one missing entry, and for KL one zero entry, in the row
  p.X[p.r + 4 * p.d] = kNaN;
  if (kl) p.X[p.r + 2 * p.d] = 0.0;
  // the row's centre and scale as R/qmf.R sets them
  std::size_t count = 0;
  double sum = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isnan(p.x(i))) {
      sum += p.x(i);
      ++count;
    }
  }
  const double mean = sum / count;
  if (kl) {
    p.center = 0.0;
    p.scale = mean;
  } else {
    double ss = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      if (!std::isnan(p.x(i))) ss += (p.x(i) - mean) * (p.x(i) - mean);
    }
    p.center = mean;
    p.scale = std::sqrt(ss / (count - 1));
  }
  // every row's normal scores, qnorm((rank - 1/2) / observed), NaN where missing
  p.scores.assign(p.d * n, kNaN);
  for (std::size_t row = 0; row < p.d; ++row) {
    std::size_t obs = 0;
    for (std::size_t i = 0; i < n; ++i) obs += !std::isnan(p.X[row + i * p.d]);
    for (std::size_t i = 0; i < n; ++i) {
      const double xi = p.X[row + i * p.d];
      if (std::isnan(xi)) continue;
      double rank = 1.0;
      for (std::size_t l = 0; l < n; ++l) {
        const double xl = p.X[row + l * p.d];
        if (l != i && !std::isnan(xl)) rank += xl < xi ? 1.0 : (xl == xi ? 0.5 : 0.0);
      }
      p.scores[row + i * p.d] = normal_quantile((rank - 0.5) / obs);
    }
  }
  return p;
}

struct RowGradient {
  std::vector<double> u, z, theta, beta, q, b, phi;
};

RowGradient gradient_of(const RowProblem& p) {
  const std::size_t n = p.s.n, k = p.s.k, m = p.s.m;
  RowGradient g;
  g.u.assign(k, kNaN);
  g.z.assign(n, kNaN);
  g.theta.assign(m, kNaN);
  g.beta.assign(m, kNaN);
  g.q.assign(m, kNaN);
  g.b.assign(m, kNaN);
  g.phi.assign(m, kNaN);
  diffrank::QmfRow row;
  const diffrank::QmfRowInput in = p.input();
  diffrank::SinkhornStatus st;
  row.forward(p.s, p.V.data(), in, nullptr, nullptr, 1, &st);
  EXPECT_TRUE(st.converged);
  diffrank::QmfRowGradient out;
  out.u = g.u.data();
  out.z = g.z.data();
  out.theta = g.theta.data();
  out.beta = g.beta.data();
  out.q = g.q.data();
  out.b = g.b.data();
  out.phi = p.s.map_data ? g.phi.data() : nullptr;
  row.gradient(p.s, p.V.data(), in, out);
  return g;
}

// Central differences of the loss in the entries `which` of the parameter
// vector `member` of the problem.
std::vector<double> fd_of(const RowProblem& p, std::vector<double> RowProblem::*member,
                          const std::vector<std::size_t>& which, double h) {
  std::vector<double> out(which.size());
  for (std::size_t l = 0; l < which.size(); ++l) {
    RowProblem up(p), down(p);
    (up.*member)[which[l]] += h;
    (down.*member)[which[l]] -= h;
    out[l] = (up.loss() - down.loss()) / (2.0 * h);
  }
  return out;
}

std::vector<std::size_t> all(std::size_t len) {
  std::vector<std::size_t> idx(len);
  for (std::size_t i = 0; i < len; ++i) idx[i] = i;
  return idx;
}

// theta from the targets q: the inverse of qmf_quantiles.
std::vector<double> theta_of(const std::vector<double>& q, bool positive, double center,
                             double scale) {
  std::vector<double> theta(q.size());
  const double t0 = (q[0] - center) / scale;
  theta[0] = positive ? inverse_softplus(t0) : t0;
  for (std::size_t j = 1; j < q.size(); ++j) theta[j] = inverse_softplus((q[j] - q[j - 1]) / scale);
  return theta;
}

void check_row_gradients(const RowProblem& p, const std::string& label) {
  const std::size_t n = p.s.n, k = p.s.k, m = p.s.m;
  const bool kl = p.s.loss == diffrank::QmfLoss::kl;
  const double h = 1e-5, tol = 1e-7;

  // the loss is the sum over the observed entries of the fitted row (or,
  // for QMFQ, of the mapped data) against the fitted values
  std::vector<double> fitted, mapped;
  diffrank::SinkhornStatus st;
  const double loss = p.loss(&fitted, &mapped, &st);
  ASSERT_TRUE(st.converged) << label;
  double expected = 0.0, mean_fit = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    mean_fit += fitted[i] / n;
    if (std::isnan(p.x(i))) {
      if (p.s.map_data) {
        EXPECT_TRUE(std::isnan(mapped[i])) << label;
      }
      continue;
    }
    const double x = p.s.map_data ? mapped[i] : p.x(i), xh = fitted[i];
    expected += kl ? (x > 0.0 ? x * std::log(x / xh) : 0.0) - x + xh : (x - xh) * (x - xh);
  }
  EXPECT_NEAR(loss, expected, 1e-12 * expected) << label;
  // the transport keeps the mass: mean(fitted) = sum_j b_j q_j
  std::vector<double> q(m), b(m);
  diffrank::qmf_quantiles(p.theta.data(), m, kl, p.center, p.scale, q.data());
  diffrank::qmf_weights(p.beta.data(), m, b.data());
  EXPECT_NEAR(mean_fit, dot(b, q), 1e-11 * (std::abs(dot(b, q)) + 1.0)) << label;

  const RowGradient g = gradient_of(p);
  // u: entries r, r + d, ... of U
  std::vector<std::size_t> u_idx(k);
  for (std::size_t l = 0; l < k; ++l) u_idx[l] = p.r + l * p.d;
  EXPECT_LT(relative_error(g.u, fd_of(p, &RowProblem::U, u_idx, h)), tol) << label << " u";
  // z through V: d loss / d V[l, i] = u_l zbar_i
  std::vector<double> vgrad(k * n);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t l = 0; l < k; ++l) vgrad[l + i * k] = p.U[p.r + l * p.d] * g.z[i];
  }
  EXPECT_LT(relative_error(vgrad, fd_of(p, &RowProblem::V, all(k * n), h)), tol) << label << " V";
  EXPECT_LT(relative_error(g.theta, fd_of(p, &RowProblem::theta, all(m), h)), tol)
      << label << " theta";
  EXPECT_LT(relative_error(g.beta, fd_of(p, &RowProblem::beta, all(m), h)), tol) << label << " beta";
  // q: through theta_of(q), the inverse parametrization
  const std::vector<double> fdq = finite_gradient(
      [&](const std::vector<double>& qq) {
        RowProblem other(p);
        other.theta = theta_of(qq, kl, p.center, p.scale);
        return other.loss();
      },
      q, h * p.scale);
  EXPECT_LT(relative_error(g.q, fdq), tol) << label << " q";
  // b (projected, sum(b) = 1): beta's gradient is b * b's gradient
  double proj = 0.0;
  for (std::size_t j = 0; j < m; ++j) proj += b[j] * g.b[j];
  EXPECT_NEAR(proj, 0.0, 1e-12 * (1.0 + std::abs(dot(g.b, g.b)))) << label;
  for (std::size_t j = 0; j < m; ++j) {
    EXPECT_NEAR(g.beta[j], b[j] * g.b[j], 1e-14 * (1.0 + std::abs(g.b[j]))) << label;
  }
  if (p.s.map_data) {
    const std::vector<double> fdphi = fd_of(p, &RowProblem::phi, all(m), h);
    EXPECT_LT(relative_error(g.phi, fdphi), tol) << label << " phi";
    if (!kl) {
      EXPECT_EQ(g.phi[0], 0.0) << label;  // phi_1 is unused
    }
  }
}

TEST(QmfRow, GradientsMatchFiniteDifferences) {
  std::mt19937_64 rng(65);
  for (diffrank::QmfLoss loss : {diffrank::QmfLoss::squared, diffrank::QmfLoss::kl}) {
    const RowProblem p = make_problem(loss, false, rng);
    check_row_gradients(p, loss == diffrank::QmfLoss::kl ? "QMF kl" : "QMF squared");
  }
}

TEST(QmfRow, QmfqGradientsMatchFiniteDifferences) {
  std::mt19937_64 rng(66);
  for (diffrank::QmfLoss loss : {diffrank::QmfLoss::squared, diffrank::QmfLoss::kl}) {
    const RowProblem p = make_problem(loss, true, rng);
    check_row_gradients(p, loss == diffrank::QmfLoss::kl ? "QMFQ kl" : "QMFQ squared");
  }
}

// With equal weights (learn_weights false) beta is ignored, the weights are
// 1/m, and the missing entry's data value never matters.
TEST(QmfRow, EqualWeightsAndMissingEntries) {
  std::mt19937_64 rng(67);
  RowProblem p = make_problem(diffrank::QmfLoss::squared, false, rng);
  p.s.learn_weights = false;
  const double loss = p.loss();
  RowProblem other(p);
  for (double& v : other.beta) v += 1.0;
  other.beta[0] = 5.0;
  EXPECT_EQ(other.loss(), loss);
  // learned weights equal to 1/m give the same loss (softmax of equal betas)
  RowProblem flat(p);
  flat.s.learn_weights = true;
  std::fill(flat.beta.begin(), flat.beta.end(), 0.3);
  EXPECT_NEAR(flat.loss(), loss, 1e-13 * loss);
  // the same row with the missing entry observed has a larger loss by
  // exactly that entry's term (the fitted values do not depend on x)
  std::vector<double> fitted;
  p.loss(&fitted);
  RowProblem seen(p);
  seen.X[seen.r + 4 * seen.d] = 0.25;
  const double extra = (0.25 - fitted[4]) * (0.25 - fitted[4]);
  EXPECT_NEAR(seen.loss(), loss + extra, 1e-13 * (loss + extra));
}

// A fitted factorization to place samples in: d rows, each solved by
// QmfRow on its own random training row, keeping its targets q and the
// potentials g that QmfRowMap needs.
struct PlacedFit {
  std::size_t d = 0, n = 0, k = 0, m = 0;
  double eps = 0.05;
  std::vector<double> U, V, q, g, fitted, y;  // U d x k, V k x n, q g m x d, fitted d x n
  std::vector<diffrank::QmfRowMap> maps;
};

PlacedFit make_fit(diffrank::QmfLoss loss, std::mt19937_64& rng) {
  PlacedFit f;
  f.d = 30;
  f.n = 15;
  f.k = 3;
  f.m = 6;
  const bool kl = loss == diffrank::QmfLoss::kl;
  diffrank::QmfSettings s;
  s.loss = loss;
  s.n = f.n;
  s.k = f.k;
  s.m = f.m;
  s.learn_weights = true;
  s.opt.eps = f.eps;
  s.opt.tol = 1e-14;
  s.opt.max_iter = 5000;
  s.opt.newton_after = 0;
  const std::vector<double> X =
      kl ? uniforms(f.d * f.n, rng, 0.2, 3.0) : normals(f.d * f.n, rng, 1.5);
  // KL fits keep U and V non-negative
  f.U = kl ? uniforms(f.d * f.k, rng, 0.0, 0.5) : normals(f.d * f.k, rng, 0.3);
  f.V = kl ? uniforms(f.k * f.n, rng, 0.0, 0.5) : normals(f.k * f.n, rng, 0.3);
  const std::vector<double> theta = uniforms(f.m * f.d, rng, -1.0, 1.0);
  const std::vector<double> beta = normals(f.m * f.d, rng, 0.5);
  f.q.resize(f.m * f.d);
  f.g.resize(f.m * f.d);
  f.fitted.resize(f.d * f.n);
  f.y = diffrank::qmf_grid(f.m);
  diffrank::QmfRow row;
  for (std::size_t r = 0; r < f.d; ++r) {
    diffrank::QmfRowInput in;
    in.x = X.data() + r;
    in.x_stride = f.d;
    in.u = f.U.data() + r;
    in.u_stride = f.d;
    in.theta = theta.data() + r * f.m;
    in.beta = beta.data() + r * f.m;
    in.center = kl ? 0.0 : 0.4;
    in.scale = kl ? 1.2 : 1.5;
    diffrank::SinkhornStatus st;
    row.forward(s, f.V.data(), in, f.fitted.data() + r, nullptr, f.d, &st);
    EXPECT_TRUE(st.converged);
    diffrank::qmf_quantiles(in.theta, f.m, kl, in.center, in.scale, f.q.data() + r * f.m);
    std::copy(row.target_potentials(), row.target_potentials() + f.m, f.g.data() + r * f.m);
  }
  f.maps.resize(f.d);
  for (std::size_t r = 0; r < f.d; ++r) {
    f.maps[r].q = f.q.data() + r * f.m;
    f.maps[r].g = f.g.data() + r * f.m;
    f.maps[r].y = f.y.data();
    f.maps[r].m = f.m;
    f.maps[r].eps = f.eps;
  }
  return f;
}

// At the training values the map is the fitted row (the plan's rows); its
// slope is the derivative of the value, and it is increasing everywhere.
TEST(QmfRowMap, ReproducesTheFittedRowsAndTheirSlope) {
  std::mt19937_64 rng(68);
  for (diffrank::QmfLoss loss : {diffrank::QmfLoss::squared, diffrank::QmfLoss::kl}) {
    const PlacedFit f = make_fit(loss, rng);
    std::vector<double> w(f.m), values(f.d * f.n);
    for (std::size_t i = 0; i < f.n; ++i) {
      diffrank::qmf_map_values(f.maps, f.U.data(), f.k, f.V.data() + i * f.k,
                               values.data() + i * f.d, 1);
    }
    for (std::size_t e = 0; e < values.size(); ++e) {
      EXPECT_NEAR(values[e], f.fitted[e], 1e-11 * (1.0 + std::fabs(f.fitted[e])));
    }
    for (std::size_t r = 0; r < f.d; r += 7) {
      double previous = -std::numeric_limits<double>::infinity();
      for (double z = -1.5; z <= 2.5; z += 0.05) {
        double slope = kNaN;
        const double value = f.maps[r](z, &slope, w.data());
        const double h = 1e-6;
        const double numeric =
            (f.maps[r](z + h, nullptr, w.data()) - f.maps[r](z - h, nullptr, w.data())) / (2 * h);
        EXPECT_NEAR(slope, numeric, 1e-6 * (1.0 + std::fabs(numeric)))
            << "row " << r << ", z " << z;
        EXPECT_GE(slope, 0.0);
        EXPECT_GE(value, previous - 1e-12);
        previous = value;
      }
    }
  }
}

// Data that the fit represents exactly, x = T(U v*), place at v*: from a
// perturbed start, for both losses; for KL with a coordinate of v* at its
// bound 0. With a ridge penalty, the result is stationary: the projected
// gradient of the objective vanishes.
TEST(QmfPlacer, RecoversTheCoordinatesOfExactData) {
  std::mt19937_64 rng(69);
  for (diffrank::QmfLoss loss : {diffrank::QmfLoss::squared, diffrank::QmfLoss::kl}) {
    const bool kl = loss == diffrank::QmfLoss::kl;
    const PlacedFit f = make_fit(loss, rng);
    for (std::size_t i = 0; i < 4; ++i) {
      std::vector<double> truth(f.V.begin() + i * f.k, f.V.begin() + (i + 1) * f.k);
      if (kl && i == 0) truth[1] = 0.0;
      std::vector<double> x(f.d);
      diffrank::qmf_map_values(f.maps, f.U.data(), f.k, truth.data(), x.data(), 1);
      if (i == 3) x[5] = kNaN;  // missing entries are left out
      diffrank::QmfPlaceSettings s;
      s.loss = loss;
      s.k = f.k;
      s.tol = 1e-15;
      s.max_iter = 200;
      std::vector<double> v(truth);
      for (double& value : v) value += 0.1;
      diffrank::QmfPlacer placer;
      const diffrank::QmfPlaceResult res =
          placer.place(s, f.maps, x.data(), 1, f.U.data(), v.data());
      EXPECT_TRUE(res.converged);
      EXPECT_LT(res.objective, 1e-16);
      for (std::size_t l = 0; l < f.k; ++l) {
        EXPECT_NEAR(v[l], truth[l], 1e-6) << (kl ? "kl" : "squared") << ", sample " << i;
        if (kl) {
          EXPECT_GE(v[l], 0.0);
        }
      }
      // with a ridge: the projected gradient of the penalized objective vanishes
      s.ridge = 0.05;
      const diffrank::QmfPlaceResult ridged =
          placer.place(s, f.maps, x.data(), 1, f.U.data(), v.data());
      EXPECT_TRUE(ridged.converged);
      auto objective = [&](const std::vector<double>& at) {
        std::vector<double> t(f.d);
        diffrank::qmf_map_values(f.maps, f.U.data(), f.k, at.data(), t.data(), 1);
        double total = 0.0;
        for (std::size_t r = 0; r < f.d; ++r) {
          if (std::isnan(x[r])) continue;
          total +=
              kl ? (x[r] * std::log(x[r] / t[r]) - x[r] + t[r]) : (x[r] - t[r]) * (x[r] - t[r]);
        }
        for (double value : at) total += s.ridge * value * value;
        return total;
      };
      EXPECT_NEAR(objective(v), ridged.objective, 1e-12 * ridged.objective);
      for (std::size_t l = 0; l < f.k; ++l) {
        const double h = 1e-6;
        std::vector<double> up(v), down(v);
        up[l] += h;
        down[l] = kl ? std::max(0.0, down[l] - h) : down[l] - h;
        const double grad = (objective(up) - objective(down)) / (up[l] - down[l]);
        if (kl && v[l] == 0.0) {
          EXPECT_GT(grad, -1e-6);  // at the bound, the objective rises inwards
        } else {
          EXPECT_NEAR(grad, 0.0, 1e-5) << (kl ? "kl" : "squared") << ", sample " << i;
        }
      }
    }
  }
}

}  // namespace
