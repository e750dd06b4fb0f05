// Quantile matrix factorization, QMF (Cuturi, Teboul, Niles-Weed and Vert
// 2020, "Supervised quantile normalization for low-rank matrix
// approximation", ICML).
//
// A d x n matrix X (features in rows) is approximated by T(U V): row r of
// U V, z = V' u_r (one value per sample), is mapped by the Sinkhorn soft
// quantile normalization of sinkhorn.hpp onto m increasing target values
// q_r with target weights b_r,
//   xhat_r = T_r(z) = (P q_r) / a,   a = 1/n,
// where P is the entropic transport between z (weights a) and the fixed grid
// y_j = (j - 1) / (m - 1) (weights b_r), at cost (z - y)^2, without
// squashing: the plan does not change when z is shifted, and the spread of z
// against sqrt(eps) sets how sharp the map is, so the L2 penalty on U and V
// is what keeps the maps smooth.
//
// The targets are parametrized without constraints, per row:
//   q = center + scale * qt,   qt_1 = theta_1 (squared loss) or
//   softplus(theta_1) (KL loss, so that every fitted value is positive),
//   qt_j = qt_{j-1} + softplus(theta_j),   b = softmax(beta),
// with center and scale fixed from the data so that the optimizer works in
// the same units for every row.
//
// This header computes one row's data loss (squared error, or generalized
// KL divergence x log(x / xhat) - x + xhat) over its observed entries, and
// its gradient with respect to u_r, z (which the caller turns into V's
// gradient), theta, beta, q and b, through the implicit VJP of the
// transport (SinkhornColumn::vjp). Rows are independent problems: the glue
// runs one QmfRow per thread and reduces V's gradient in a fixed order.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <diffrank/sinkhorn.hpp>
#include <vector>

namespace diffrank {

enum class QmfLoss { squared, kl };

struct QmfSettings {
  QmfLoss loss = QmfLoss::squared;
  std::size_t n = 0;  // samples (length of a row)
  std::size_t k = 0;  // rank
  std::size_t m = 0;  // target values per row
  bool learn_weights = false;
  SinkhornOptions opt;  // eps, tol and max_iter of every row's transport
};

// One row's inputs: strided views into the caller's column-major matrices.
struct QmfRowInput {
  const double* x = nullptr;  // n values, NaN when missing
  std::size_t x_stride = 1;
  const double* u = nullptr;  // k values
  std::size_t u_stride = 1;
  const double* theta = nullptr;  // m values
  const double* beta = nullptr;   // m values, or null for equal weights
  double center = 0.0, scale = 1.0;
};

// Where one row's gradient goes; every pointer but u and z may be null.
struct QmfRowGradient {
  double* u = nullptr;      // k
  double* z = nullptr;      // n: d loss / d z, for V's gradient
  double* theta = nullptr;  // m
  double* beta = nullptr;   // m
  double* q = nullptr;      // m: with respect to the target values
  double* b = nullptr;      // m: with respect to b (normalized weights, sum(b) = 1)
};

namespace qmf_detail {

inline double softplus(double t) {
  return t > 0.0 ? t + std::log1p(std::exp(-t)) : std::log1p(std::exp(t));
}

inline double sigmoid(double t) {
  if (t >= 0.0) return 1.0 / (1.0 + std::exp(-t));
  const double e = std::exp(t);
  return e / (1.0 + e);
}

}  // namespace qmf_detail

// The target values q (m) from theta; positive = true for the KL loss.
inline void qmf_quantiles(const double* theta, std::size_t m, bool positive, double center,
                          double scale, double* q) {
  double acc = positive ? qmf_detail::softplus(theta[0]) : theta[0];
  q[0] = center + scale * acc;
  for (std::size_t j = 1; j < m; ++j) {
    acc += qmf_detail::softplus(theta[j]);
    q[j] = center + scale * acc;
  }
}

// The target weights b = softmax(beta), or 1/m when beta is null.
inline void qmf_weights(const double* beta, std::size_t m, double* b) {
  if (beta == nullptr) {
    std::fill(b, b + m, 1.0 / static_cast<double>(m));
    return;
  }
  const double mx = *std::max_element(beta, beta + m);
  double total = 0.0;
  for (std::size_t j = 0; j < m; ++j) {
    b[j] = std::exp(beta[j] - mx);
    total += b[j];
  }
  for (std::size_t j = 0; j < m; ++j) b[j] /= total;
}

class QmfRow {
 public:
  // The row's data loss at (u, V, theta, beta); writes the fitted row into
  // fitted (n values, stride fitted_stride) when it is not null, and keeps
  // what gradient() needs. V is k x n, column-major.
  double forward(const QmfSettings& s, const double* V, const QmfRowInput& in, double* fitted,
                 std::size_t fitted_stride, SinkhornStatus* status) {
    prepare(s);
    const std::size_t n = s.n, k = s.k;
    for (std::size_t i = 0; i < n; ++i) {
      const double* vi = V + i * k;
      double acc = 0.0;
      for (std::size_t l = 0; l < k; ++l) acc += in.u[l * in.u_stride] * vi[l];
      z_[i] = acc;
      x_[i] = in.x[i * in.x_stride];
    }
    const bool kl = s.loss == QmfLoss::kl;
    qmf_quantiles(in.theta, s.m, kl, in.center, in.scale, q_.data());
    qmf_weights(s.learn_weights ? in.beta : nullptr, s.m, b_.data());
    const SinkhornStatus st = col_.forward(task_, z_.data(), a_.data(), n, xhat_.data(), f_.data(),
                                           g_.data());
    if (status != nullptr) *status = st;
    double loss = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      const double x = x_[i], xh = xhat_[i];
      if (fitted != nullptr) fitted[i * fitted_stride] = xh;
      if (std::isnan(x)) {
        v_[i] = 0.0;  // missing entries are left out of the loss
      } else if (kl) {
        loss += (x > 0.0 ? x * std::log(x / xh) : 0.0) - x + xh;
        v_[i] = 1.0 - x / xh;
      } else {
        loss += (x - xh) * (x - xh);
        v_[i] = 2.0 * (xh - x);
      }
    }
    return loss;
  }

  // The gradient of the loss of the last forward() call (same inputs).
  void gradient(const QmfSettings& s, const double* V, const QmfRowInput& in,
                const QmfRowGradient& out) {
    const std::size_t n = s.n, k = s.k, m = s.m;
    std::fill(out.z, out.z + n, 0.0);
    std::fill(bbar_.begin(), bbar_.end(), 0.0);
    std::fill(qbar_.begin(), qbar_.end(), 0.0);
    col_.vjp(task_, z_.data(), a_.data(), n, f_.data(), g_.data(), v_.data(), out.z, bbar_.data(),
             qbar_.data());
    for (std::size_t l = 0; l < k; ++l) out.u[l] = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      const double* vi = V + i * k;
      for (std::size_t l = 0; l < k; ++l) out.u[l] += vi[l] * out.z[i];
    }
    if (out.q != nullptr) std::copy(qbar_.begin(), qbar_.end(), out.q);
    if (out.theta != nullptr) theta_gradient(s, in, out.theta);
    // b's gradient is defined up to a constant (sum(b) = 1): project it
    double mean = 0.0;
    for (std::size_t j = 0; j < m; ++j) mean += b_[j] * bbar_[j];
    if (out.b != nullptr) {
      for (std::size_t j = 0; j < m; ++j) out.b[j] = bbar_[j] - mean;
    }
    if (out.beta != nullptr) {
      for (std::size_t j = 0; j < m; ++j) out.beta[j] = b_[j] * (bbar_[j] - mean);
    }
  }

 private:
  void prepare(const QmfSettings& s) {
    const std::size_t n = s.n, m = s.m;
    if (y_.size() != m) {
      y_.resize(m);
      for (std::size_t j = 0; j < m; ++j) {
        y_[j] = m > 1 ? static_cast<double>(j) / static_cast<double>(m - 1) : 0.5;
      }
      q_.resize(m);
      b_.resize(m);
      bbar_.resize(m);
      qbar_.resize(m);
      g_.resize(m);
    }
    if (a_.size() != n) {
      a_.assign(n, 1.0 / static_cast<double>(n));
      x_.resize(n);
      z_.resize(n);
      xhat_.resize(n);
      f_.resize(n);
      v_.resize(n);
    }
    task_.kind = SinkhornKind::row;
    task_.squash = false;
    task_.opt = s.opt;
    task_.y = y_.data();
    task_.b = b_.data();
    task_.w = q_.data();
    task_.m = m;
  }

  // theta's gradient from q's: q_j depends on theta_l for every l <= j.
  void theta_gradient(const QmfSettings& s, const QmfRowInput& in, double* out) const {
    const std::size_t m = s.m;
    double tail = 0.0;
    for (std::size_t j = m; j-- > 0;) {
      tail += in.scale * qbar_[j];
      const bool linear = j == 0 && s.loss == QmfLoss::squared;
      out[j] = linear ? tail : tail * qmf_detail::sigmoid(in.theta[j]);
    }
  }

  SinkhornColumn col_;
  SinkhornTask task_;
  std::vector<double> x_, z_, a_, y_, q_, b_, xhat_, f_, g_, v_, bbar_, qbar_;
};

}  // namespace diffrank
