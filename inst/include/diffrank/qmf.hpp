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
// QMFQ, the paper's second model, also maps the data: S(X) ~ T(U V), where
// S_r is the soft quantile normalization of row r's normal scores (so that
// it depends on the row's ranks only, as a quantile normalization does) onto
// m increasing learned targets p_r with equal weights, in the row's units:
//   S_r(x) = center + scale * (P_x p_r) / a,
// with p_r standardized (mean 0 and variance 1 under the equal weights, so
// that S cannot shrink the data towards a constant the model fits for free)
// or, for the KL loss, positive with mean 1. The transport of the scores does
// not depend on p_r, so S_r is linear in p_r.
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
  bool map_data = false;  // QMFQ: fit S(X), the learned map of the data's scores
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
  const double* phi = nullptr;    // m values: QMFQ's data-side targets
  const double* scores = nullptr;  // n values (QMFQ), NaN where x is missing
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
  double* phi = nullptr;    // m: QMFQ's data-side parameters
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

// QMFQ's data-side targets p (m) from phi: p~_1 = softplus(phi_1) (KL; 0 for
// the squared loss, where phi_1 is unused), p~_j = p~_{j-1} +
// softplus(phi_j), then standardized to mean 0 and variance 1 (squared loss)
// or divided by their mean (KL), under equal weights 1/m.
inline void qmfq_data_targets(const double* phi, std::size_t m, bool positive, double* p) {
  double acc = positive ? qmf_detail::softplus(phi[0]) : 0.0;
  p[0] = acc;
  for (std::size_t j = 1; j < m; ++j) {
    acc += qmf_detail::softplus(phi[j]);
    p[j] = acc;
  }
  double mean = 0.0;
  for (std::size_t j = 0; j < m; ++j) mean += p[j];
  mean /= static_cast<double>(m);
  if (positive) {
    for (std::size_t j = 0; j < m; ++j) p[j] /= mean;
    return;
  }
  double var = 0.0;
  for (std::size_t j = 0; j < m; ++j) var += (p[j] - mean) * (p[j] - mean);
  const double sd = std::sqrt(var / static_cast<double>(m));
  for (std::size_t j = 0; j < m; ++j) p[j] = (p[j] - mean) / sd;
}

// phi's gradient (m) from p's (pbar), at the targets p of phi.
inline void qmfq_data_targets_vjp(const double* phi, const double* p, const double* pbar,
                                  std::size_t m, bool positive, double* out) {
  // the raw targets' gradient: through p = (p~ - mean) / sd, or p~ / mean
  double mean_pbar = 0.0, mean_ppbar = 0.0, raw_mean = 0.0, raw_sd = 0.0;
  double acc = positive ? qmf_detail::softplus(phi[0]) : 0.0;
  std::vector<double> raw(m);
  raw[0] = acc;
  for (std::size_t j = 1; j < m; ++j) raw[j] = acc += qmf_detail::softplus(phi[j]);
  for (std::size_t j = 0; j < m; ++j) {
    mean_pbar += pbar[j];
    mean_ppbar += p[j] * pbar[j];
    raw_mean += raw[j];
  }
  const double dm = static_cast<double>(m);
  mean_pbar /= dm;
  mean_ppbar /= dm;
  raw_mean /= dm;
  for (std::size_t j = 0; j < m; ++j) raw_sd += (raw[j] - raw_mean) * (raw[j] - raw_mean);
  raw_sd = std::sqrt(raw_sd / dm);
  double tail = 0.0;
  for (std::size_t j = m; j-- > 0;) {
    tail += positive ? (pbar[j] - mean_ppbar) / raw_mean
                     : (pbar[j] - mean_pbar - p[j] * mean_ppbar) / raw_sd;
    out[j] = (j == 0 && !positive) ? 0.0 : tail * qmf_detail::sigmoid(phi[j]);
  }
}

class QmfRow {
 public:
  // The row's data loss at (u, V, theta, beta, and phi for QMFQ); writes
  // the fitted row T(U V) into fitted and (QMFQ) the mapped data S(x) into
  // mapped (n values each, stride `stride`) when they are not null, and
  // keeps what gradient() needs. V is k x n, column-major.
  double forward(const QmfSettings& s, const double* V, const QmfRowInput& in, double* fitted,
                 double* mapped, std::size_t stride, SinkhornStatus* status) {
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
    SinkhornStatus data_status;
    if (s.map_data) data_status = apply_data_map(s, in);
    qmf_quantiles(in.theta, s.m, kl, in.center, in.scale, q_.data());
    qmf_weights(s.learn_weights ? in.beta : nullptr, s.m, b_.data());
    SinkhornStatus st = col_.forward(task_, z_.data(), a_.data(), n, xhat_.data(), f_.data(),
                                     g_.data());
    if (s.map_data) {
      st.iterations += data_status.iterations;
      st.converged = st.converged && data_status.converged;
      st.error = std::max(st.error, data_status.error);
    }
    if (status != nullptr) *status = st;
    double loss = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      const double x = x_[i], xh = xhat_[i];
      if (fitted != nullptr) fitted[i * stride] = xh;
      if (mapped != nullptr) mapped[i * stride] = x;
      if (std::isnan(x)) {
        v_[i] = 0.0;  // missing entries are left out of the loss
        xbar_[i] = 0.0;
      } else if (kl) {
        const double log_ratio = x > 0.0 ? std::log(x / xh) : 0.0;
        loss += x * log_ratio - x + xh;
        v_[i] = 1.0 - x / xh;
        xbar_[i] = log_ratio;
      } else {
        loss += (x - xh) * (x - xh);
        v_[i] = 2.0 * (xh - x);
        xbar_[i] = -v_[i];
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
    const double mean = simplex_gauge(b_.data(), bbar_.data(), m);
    if (out.b != nullptr) {
      for (std::size_t j = 0; j < m; ++j) out.b[j] = bbar_[j] - mean;
    }
    if (out.beta != nullptr) {
      for (std::size_t j = 0; j < m; ++j) out.beta[j] = b_[j] * (bbar_[j] - mean);
    }
    if (s.map_data && out.phi != nullptr) phi_gradient(s, in, out.phi);
  }

 private:
  // QMFQ: x_ = S(x), the transport of the observed scores onto p (equal
  // weights), in the row's units; missing entries stay NaN.
  SinkhornStatus apply_data_map(const QmfSettings& s, const QmfRowInput& in) {
    const std::size_t n = s.n, m = s.m;
    observed_.clear();
    scores_.clear();
    for (std::size_t i = 0; i < n; ++i) {
      const double sc = in.scores[i * in.x_stride];
      if (std::isnan(sc)) continue;
      observed_.push_back(i);
      scores_.push_back(sc);
    }
    const std::size_t no = observed_.size();
    data_a_.assign(no, 1.0 / static_cast<double>(no));
    data_out_.resize(no);
    data_f_.resize(no);
    data_g_.resize(m);
    p_.resize(m);
    equal_b_.assign(m, 1.0 / static_cast<double>(m));
    qmfq_data_targets(in.phi, m, s.loss == QmfLoss::kl, p_.data());
    data_task_ = task_;
    data_task_.b = equal_b_.data();
    data_task_.w = p_.data();
    const SinkhornStatus st = data_col_.forward(data_task_, scores_.data(), data_a_.data(), no,
                                                data_out_.data(), data_f_.data(), data_g_.data());
    for (std::size_t k = 0; k < no; ++k) x_[observed_[k]] = in.center + in.scale * data_out_[k];
    return st;
  }

  // phi's gradient: p's is scale * P_x^T (xbar / a) over the observed entries.
  void phi_gradient(const QmfSettings& s, const QmfRowInput& in, double* out) {
    const std::size_t m = s.m, no = observed_.size();
    std::vector<double> v(no), scores_bar(no, 0.0), b_bar(m, 0.0), p_bar(m, 0.0);
    for (std::size_t k = 0; k < no; ++k) v[k] = xbar_[observed_[k]];
    data_col_.vjp(data_task_, scores_.data(), data_a_.data(), no, data_f_.data(), data_g_.data(),
                  v.data(), scores_bar.data(), b_bar.data(), p_bar.data(), in.scale);
    qmfq_data_targets_vjp(in.phi, p_.data(), p_bar.data(), m, s.loss == QmfLoss::kl, out);
  }

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
      xbar_.resize(n);
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

  SinkhornColumn col_, data_col_;
  SinkhornTask task_, data_task_;
  std::vector<double> x_, z_, a_, y_, q_, b_, xhat_, f_, g_, v_, xbar_, bbar_, qbar_;
  // QMFQ's data side: observed entries, their scores, transport and targets
  std::vector<std::size_t> observed_;
  std::vector<double> scores_, data_a_, data_out_, data_f_, data_g_, p_, equal_b_;
};

}  // namespace diffrank
