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
#include <limits>
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

// The grid of target positions y_j = (j - 1) / (m - 1) that every row's
// transport uses (0.5 for a single target).
inline std::vector<double> qmf_grid(std::size_t m) {
  std::vector<double> y(m);
  for (std::size_t j = 0; j < m; ++j) {
    y[j] = m > 1 ? static_cast<double>(j) / static_cast<double>(m - 1) : 0.5;
  }
  return y;
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

  // The potentials of the targets (m values) of the last forward() call:
  // with the targets and the grid they define the row's map T_r as a
  // function of any value (QmfRowMap).
  const double* target_potentials() const { return g_.data(); }

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
      y_ = qmf_grid(m);
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

// One row's fitted map as a function of a new value z: the out-of-sample
// extension of the entropic map (Pooladian and Niles-Weed 2021,
// "Entropic estimation of optimal transport maps", arXiv:2109.12004),
//   T(z) = sum_j q_j w_j(z),  w(z) = softmax_j((g_j - (z - y_j)^2) / eps),
// where g are the targets' potentials of the transport the fit solved for
// the row (QmfRow::target_potentials(); the solver's potentials hold the
// log weights, P_ij = exp((f_i + g_j - (z_i - y_j)^2) / eps)). At a
// training value z_i, w(z_i) is row i of the plan divided by a_i (the
// row's marginal), so T(z_i) is the fitted value; a new
// sample is mapped without changing the row's plan, so each new sample is
// placed independently of the others. T is increasing, with derivative
//   T'(z) = (2 / eps) sum_j w_j (q_j - T) (y_j - ybar),  ybar = sum_j w_j y_j.
struct QmfRowMap {
  const double* q = nullptr;  // m target values
  const double* g = nullptr;  // m potentials
  const double* y = nullptr;  // m grid points
  std::size_t m = 0;
  double eps = 1.0;

  // T(z), and T'(z) into *slope when slope is not null; w is m scratch values.
  double operator()(double z, double* slope, double* w) const {
    double top = -std::numeric_limits<double>::infinity();
    for (std::size_t j = 0; j < m; ++j) {
      const double d = z - y[j];
      w[j] = (g[j] - d * d) / eps;
      top = std::max(top, w[j]);
    }
    double total = 0.0;
    for (std::size_t j = 0; j < m; ++j) total += w[j] = std::exp(w[j] - top);
    double value = 0.0, ybar = 0.0;
    for (std::size_t j = 0; j < m; ++j) {
      w[j] /= total;
      value += w[j] * q[j];
      ybar += w[j] * y[j];
    }
    if (slope != nullptr) {
      double cov = 0.0;
      for (std::size_t j = 0; j < m; ++j) cov += w[j] * (q[j] - value) * (y[j] - ybar);
      *slope = 2.0 * cov / eps;
    }
    return value;
  }
};

// Row r's score u_r' v of a sample at coordinates v (k values); U is d x k,
// column-major.
inline double qmf_score(const double* U, std::size_t d, std::size_t k, std::size_t r,
                        const double* v) {
  double z = 0.0;
  for (std::size_t l = 0; l < k; ++l) z += U[r + l * d] * v[l];
  return z;
}

// The fitted values T_r(u_r' v) of one sample at coordinates v (k values)
// for the rows of `maps` (U is d x k, column-major), into out (stride apart).
inline void qmf_map_values(const std::vector<QmfRowMap>& maps, const double* U, std::size_t k,
                           const double* v, double* out, std::size_t stride) {
  const std::size_t d = maps.size();
  std::vector<double> w;
  for (std::size_t r = 0; r < d; ++r) {
    w.resize(maps[r].m);
    out[r * stride] = maps[r](qmf_score(U, d, k, r, v), nullptr, w.data());
  }
}

struct QmfPlaceSettings {
  QmfLoss loss = QmfLoss::squared;
  std::size_t k = 0;
  double ridge = 0.0;  // penalty ridge * ||v||^2, the fit's penalty on a column of V
  double tol = 1e-8;   // relative decrease of the objective that ends the search
  int max_iter = 500;
};

struct QmfPlaceResult {
  double objective = 0.0;
  int iterations = 0;
  bool converged = false;
};

// Places one new sample x (d values, NaN when missing) in a fit: the
// coordinates v (k values; non-negative for the KL loss) that minimize
//   sum_r loss(x_r, T_r(u_r' v)) + ridge ||v||^2
// with every row's map fixed (QmfRowMap). Projected Levenberg-Marquardt on
// the Gauss-Newton model of the loss (squared: 2 T'^2 u u'; KL, whose second
// derivative in T is x / T^2: x / T^2 T'^2 u u'), from the v given; the
// coordinates at a bound with a gradient pointing out of the feasible set
// are held there for the step.
class QmfPlacer {
 public:
  QmfPlaceResult place(const QmfPlaceSettings& s, const std::vector<QmfRowMap>& maps,
                       const double* x, std::size_t x_stride, const double* U, double* v) {
    const std::size_t k = s.k;
    const bool positive = s.loss == QmfLoss::kl;
    grad_.assign(k, 0.0);
    hess_.assign(k * k, 0.0);
    trial_.resize(k);
    step_.resize(k);
    free_.resize(k);
    if (positive) {
      for (std::size_t l = 0; l < k; ++l) v[l] = std::max(v[l], 0.0);
    }
    QmfPlaceResult out;
    double f = evaluate(s, maps, x, x_stride, U, v, true);
    double damping = 1e-3;
    for (out.iterations = 0; out.iterations < s.max_iter;) {
      std::size_t nfree = 0;
      for (std::size_t l = 0; l < k; ++l) {
        free_[l] = !positive || v[l] > 0.0 || grad_[l] < 0.0;
        nfree += free_[l] ? 1 : 0;
      }
      if (nfree == 0) {
        out.converged = true;
        break;
      }
      solve_step(k, damping);
      ++out.iterations;
      for (std::size_t l = 0; l < k; ++l) {
        trial_[l] = v[l] + step_[l];
        if (positive) trial_[l] = std::max(trial_[l], 0.0);
      }
      const double ft = evaluate(s, maps, x, x_stride, U, trial_.data(), false);
      if (ft < f) {
        const double decrease = (f - ft) / std::max(std::fabs(f), 1e-300);
        std::copy(trial_.begin(), trial_.end(), v);
        f = evaluate(s, maps, x, x_stride, U, v, true);
        damping = std::max(damping / 3.0, 1e-12);
        if (decrease <= s.tol) {
          out.converged = true;
          break;
        }
      } else {
        // no decrease: a shorter, steeper step; at the minimum (to rounding)
        // every step fails and the damping grows without bound
        damping *= 4.0;
        if (damping > 1e12) {
          out.converged = true;
          break;
        }
      }
    }
    out.objective = f;
    return out;
  }

 private:
  // The objective at v; with derivatives, its gradient and Gauss-Newton
  // matrix into grad_ and hess_.
  double evaluate(const QmfPlaceSettings& s, const std::vector<QmfRowMap>& maps, const double* x,
                  std::size_t x_stride, const double* U, const double* v, bool derivatives) {
    const std::size_t k = s.k, d = maps.size();
    const bool kl = s.loss == QmfLoss::kl;
    if (derivatives) {
      std::fill(grad_.begin(), grad_.end(), 0.0);
      std::fill(hess_.begin(), hess_.end(), 0.0);
    }
    double f = 0.0;
    for (std::size_t r = 0; r < d; ++r) {
      const double xr = x[r * x_stride];
      if (std::isnan(xr)) continue;
      w_.resize(maps[r].m);
      double slope = 0.0;
      const double t = maps[r](qmf_score(U, d, k, r, v), derivatives ? &slope : nullptr, w_.data());
      double dt = 0.0, curvature = 0.0;  // d loss / d T and its Gauss-Newton second derivative
      if (kl) {
        f += (xr > 0.0 ? xr * std::log(xr / t) : 0.0) - xr + t;
        dt = 1.0 - xr / t;
        curvature = xr / (t * t);
      } else {
        f += (xr - t) * (xr - t);
        dt = 2.0 * (t - xr);
        curvature = 2.0;
      }
      if (!derivatives) continue;
      const double gz = dt * slope, hz = curvature * slope * slope;
      for (std::size_t l = 0; l < k; ++l) {
        const double ul = U[r + l * d];
        grad_[l] += gz * ul;
        for (std::size_t c = 0; c <= l; ++c) hess_[l * k + c] += hz * ul * U[r + c * d];
      }
    }
    for (std::size_t l = 0; l < k; ++l) f += s.ridge * v[l] * v[l];
    if (derivatives) {
      for (std::size_t l = 0; l < k; ++l) {
        grad_[l] += 2.0 * s.ridge * v[l];
        hess_[l * k + l] += 2.0 * s.ridge;
        for (std::size_t c = 0; c < l; ++c) hess_[c * k + l] = hess_[l * k + c];
      }
    }
    return f;
  }

  // step_ = -(H + damping diag(H))^-1 grad on the free coordinates (0 on
  // the others). The damped Gauss-Newton matrix is positive definite; a
  // pivot lost to rounding leaves its component of the step at 0.
  void solve_step(std::size_t k, double damping) {
    idx_.clear();
    for (std::size_t l = 0; l < k; ++l)
      if (free_[l]) idx_.push_back(l);
    const std::size_t nf = idx_.size();
    double scale = 0.0;
    for (std::size_t a = 0; a < nf; ++a) scale = std::max(scale, hess_[idx_[a] * k + idx_[a]]);
    if (!(scale > 0.0)) scale = 1.0;
    chol_.resize(nf * nf);
    sol_.resize(nf);
    for (std::size_t a = 0; a < nf; ++a) {
      for (std::size_t c = 0; c < nf; ++c) chol_[a * nf + c] = hess_[idx_[a] * k + idx_[c]];
      chol_[a * nf + a] += damping * std::max(hess_[idx_[a] * k + idx_[a]], 1e-12 * scale);
      sol_[a] = -grad_[idx_[a]];
    }
    sinkhorn_detail::cholesky_solve(chol_, nf, sol_.data());
    std::fill(step_.begin(), step_.end(), 0.0);
    for (std::size_t a = 0; a < nf; ++a) step_[idx_[a]] = sol_[a];
  }

  std::vector<double> grad_, hess_, trial_, step_, chol_, sol_, w_;
  std::vector<std::size_t> idx_;
  std::vector<char> free_;
};

}  // namespace diffrank
