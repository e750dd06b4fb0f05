// Supervised quantile normalization, SUQUAN (Le Morvan and Vert 2017,
// "Supervised quantile normalisation", arXiv:1706.00244).
//
// A sample x of p features is quantile-normalized to a target f (p
// non-decreasing values) and fed to a linear model with K outputs (K = 1 for
// least squares and logistic regression, one per class for multinomial
// regression):
//   g_k(x) = w_k' Psi_f(x) + b_k,   Psi_f(x)_j = f at the quantile level of x_j.
// f, W = (w_1 .. w_K) and b are learned together by minimizing
//   J = (1/n) sum_i loss(y_i, g(x_i)) + lambda [(1 - alpha) ||W||^2 + alpha |W|_1]
//       + smooth * sum_k (f_{k+2} - 2 f_{k+1} + f_k)^2
// over f in C = {f non-decreasing, sum_k f_k = 0, ||f|| <= radius}. The
// intercepts absorb any shift of f, so centring loses nothing; the bound
// removes the scale that f and W share; with a standardized start (mean 0,
// mean square 1) every normalized sample has mean 0 and variance at most 1,
// whatever the location and scale of the data. The last term is a roughness
// penalty (a smoothed monotone regression, Ramsay 1988; Eilers and Marx 1996).
//
// The quantile level of x_j is a fractional position h_j in [0, p - 1] (the
// midrank rule of quantile.hpp, the median for a missing value), so Psi_f(x)
// is linear in f and g is bilinear in (f, W):
//   g_k(x) = f' u(w_k) + b_k,  u(w)_m = sum_j w_j [weight of position m in h_j].
// Method "bnd" alternates exact convex steps: the linear model with f fixed
// (ridge: Newton steps in the n-dimensional span of the samples; elastic
// net: coordinate descent on iteratively reweighted least squares, as in
// Friedman, Hastie and Tibshirani 2010), then f with the model fixed
// (accelerated projected gradient; the projection is isotonic regression by
// pool adjacent violators, and with a roughness penalty the proximal step is
// solved by ADMM with a banded solve). Each step is warm-started and never
// accepted when it would raise J, so J never increases. The number of rounds
// (one round: a new f, then a new model) is a tuning parameter: early rounds
// act as early stopping. fit_path() runs the rounds for a decreasing
// sequence of lambda values, as cross-validation needs.
//
// Heavy loops take an executor exec(count, body) that runs body(begin, end)
// over [0, count), possibly on several threads; work is always cut into
// chunks of fixed size, so results do not depend on the number of threads.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "isotonic.hpp"

namespace diffrank {
namespace suquan {

enum class Family { gaussian, binomial, multinomial };

using Index = Eigen::Index;
using Matrix = Eigen::MatrixXd;
using Vector = Eigen::VectorXd;
// Positions are the caller's p x n memory (e.g. an R matrix), never copied.
using Positions = Eigen::Ref<const Matrix>;

// Runs everything on the calling thread.
struct Serial {
  template <class Body>
  void operator()(std::size_t count, Body&& body) const {
    if (count > 0) body(std::size_t{0}, count);
  }
};

// body(begin, length) on the chunks [0, chunk), [chunk, 2 chunk), ... of
// [0, n); the split never depends on the executor. Work below about a
// million operations (n items of `cost` each) runs on the calling thread,
// where starting threads would cost more than it saves.
template <class Exec, class Body>
void for_chunks(const Exec& exec, Index n, Index chunk, double cost, Body&& body) {
  if (n <= 0) return;
  const std::size_t count = static_cast<std::size_t>((n + chunk - 1) / chunk);
  auto run = [&](std::size_t c0, std::size_t c1) {
    for (std::size_t c = c0; c < c1; ++c) {
      const Index begin = static_cast<Index>(c) * chunk;
      body(begin, std::min(chunk, n - begin));
    }
  };
  if (static_cast<double>(n) * cost < 1e6) {
    run(0, count);
  } else {
    exec(count, run);
  }
}

// Losses -------------------------------------------------------------------

inline double softplus(double t) {
  return t > 0 ? t + std::log1p(std::exp(-t)) : std::log1p(std::exp(t));
}

inline double sigmoid(double t) {
  return t > 0 ? 1.0 / (1.0 + std::exp(-t)) : std::exp(t) / (1.0 + std::exp(t));
}

// Mean loss of the links eta (n x K) against the labels Y (n x K: values for
// gaussian, 0/1 for binomial, one-hot rows for multinomial). With `grad`,
// also the derivative of the mean loss with respect to each link; with
// `curv`, the diagonal of each sample's Hessian divided by n.
inline double mean_loss(Family family, const Matrix& Y, const Matrix& eta, Matrix* grad = nullptr,
                        Matrix* curv = nullptr) {
  const Index n = Y.rows(), K = Y.cols();
  const double dn = static_cast<double>(n);
  if (grad) grad->resize(n, K);
  if (curv) curv->resize(n, K);
  double total = 0.0;
  for (Index i = 0; i < n; ++i) {
    if (family == Family::multinomial) {
      const double top = eta.row(i).maxCoeff();
      double sum = 0.0;
      for (Index k = 0; k < K; ++k) sum += std::exp(eta(i, k) - top);
      const double lse = top + std::log(sum);
      total += lse - Y.row(i).dot(eta.row(i));
      if (grad || curv) {
        for (Index k = 0; k < K; ++k) {
          const double prob = std::exp(eta(i, k) - lse);
          if (grad) (*grad)(i, k) = (prob - Y(i, k)) / dn;
          if (curv) (*curv)(i, k) = prob * (1.0 - prob) / dn;
        }
      }
    } else if (family == Family::binomial) {
      const double e = eta(i, 0);
      total += softplus(e) - Y(i, 0) * e;
      if (grad || curv) {
        const double prob = sigmoid(e);
        if (grad) (*grad)(i, 0) = (prob - Y(i, 0)) / dn;
        if (curv) (*curv)(i, 0) = prob * (1.0 - prob) / dn;
      }
    } else {
      const double r = eta(i, 0) - Y(i, 0);
      total += 0.5 * r * r;
      if (grad) (*grad)(i, 0) = r / dn;
      if (curv) (*curv)(i, 0) = 1.0 / dn;
    }
  }
  return total / dn;
}

inline double penalty(const Matrix& w, double lambda, double alpha) {
  double value = (1.0 - alpha) * w.squaredNorm();
  if (alpha > 0.0) value += alpha * w.cwiseAbs().sum();
  return lambda * value;
}

// sum_k (f_{k+2} - 2 f_{k+1} + f_k)^2.
inline double roughness(const Vector& f) {
  double total = 0.0;
  for (Index k = 0; k + 2 < f.size(); ++k) {
    const double d = f[k + 2] - 2.0 * f[k + 1] + f[k];
    total += d * d;
  }
  return total;
}

// Normalization and its adjoint ---------------------------------------------

inline void split_position(double h, Index last, Index& lo, double& frac) {
  lo = std::min<Index>(static_cast<Index>(h), last);
  frac = h - static_cast<double>(lo);
}

inline double interpolate(const Vector& f, Index lo, double frac) {
  return frac > 0.0 ? f[lo] + frac * (f[lo + 1] - f[lo]) : f[lo];
}

// Psi_f for every sample into z (p x n): z(j, i) = f at position(j, i).
template <class Exec = Serial>
void normalize_to(const Positions& position, const Vector& f, Matrix& z, const Exec& exec = {}) {
  const Index p = position.rows(), last = f.size() - 1;
  z.resize(p, position.cols());
  for_chunks(exec, position.cols(), 8, static_cast<double>(p), [&](Index i0, Index len) {
    for (Index i = i0; i < i0 + len; ++i) {
      for (Index j = 0; j < p; ++j) {
        Index lo;
        double frac;
        split_position(position(j, i), last, lo, frac);
        z(j, i) = interpolate(f, lo, frac);
      }
    }
  });
}

struct Model {
  Matrix w;  // p x K
  Vector b;  // K
};

inline Model zero_model(Index p, Index K) { return {Matrix::Zero(p, K), Vector::Zero(K)}; }

// The links z' W + b (n x K).
template <class Exec = Serial>
void links(const Matrix& z, const Model& model, Matrix& eta, const Exec& exec = {}) {
  eta.resize(z.cols(), model.w.cols());
  for_chunks(exec, z.cols(), 16, static_cast<double>(z.rows() * model.w.cols()),
             [&](Index i0, Index len) {
               eta.middleRows(i0, len).noalias() = z.middleCols(i0, len).transpose() * model.w;
             });
  eta.rowwise() += model.b.transpose();
}

// z a for a p x n matrix z and an n x K matrix a.
template <class Exec = Serial>
Matrix times(const Matrix& z, const Matrix& a, const Exec& exec = {}) {
  Matrix out(z.rows(), a.cols());
  for_chunks(
      exec, z.rows(), 256, static_cast<double>(z.cols() * a.cols()),
      [&](Index j0, Index len) { out.middleRows(j0, len).noalias() = z.middleRows(j0, len) * a; });
  return out;
}

// The adjoint of Psi in f for every sample and class, as one p x (n K)
// matrix: column i + n k holds u(w_k) of sample i, so that its dot product
// with f is w_k' Psi_f(x_i).
template <class Exec = Serial>
void rank_weights(const Positions& position, const Matrix& w, Matrix& u, const Exec& exec = {}) {
  const Index p = position.rows(), n = position.cols(), K = w.cols();
  u.setZero(p, n * K);
  for_chunks(exec, n, 4, static_cast<double>(p * K), [&](Index i0, Index len) {
    for (Index i = i0; i < i0 + len; ++i) {
      for (Index j = 0; j < p; ++j) {
        Index lo;
        double frac;
        split_position(position(j, i), p - 1, lo, frac);
        for (Index k = 0; k < K; ++k) {
          if (frac > 0.0) {
            u(lo, i + n * k) += (1.0 - frac) * w(j, k);
            u(lo + 1, i + n * k) += frac * w(j, k);
          } else {
            u(lo, i + n * k) += w(j, k);
          }
        }
      }
    }
  });
}

// The operator of method "svd": M v = sum_i sum_k c_ik u_i(v_k), mapping a
// vector of p K feature weights (K blocks) to p target values, without the
// p x p K matrix; and its transpose M' t (block k: sum_i c_ik Psi_t(x_i)).
inline Vector svd_times(const Positions& position, const Matrix& c, const Vector& v) {
  const Index p = position.rows(), n = position.cols(), K = c.cols();
  Vector out = Vector::Zero(p);
  for (Index i = 0; i < n; ++i) {
    for (Index j = 0; j < p; ++j) {
      double weight = 0.0;
      for (Index k = 0; k < K; ++k) weight += c(i, k) * v[j + p * k];
      Index lo;
      double frac;
      split_position(position(j, i), p - 1, lo, frac);
      if (frac > 0.0) {
        out[lo] += (1.0 - frac) * weight;
        out[lo + 1] += frac * weight;
      } else {
        out[lo] += weight;
      }
    }
  }
  return out;
}

inline Vector svd_times_transpose(const Positions& position, const Matrix& c, const Vector& t) {
  const Index p = position.rows(), n = position.cols(), K = c.cols();
  Vector out = Vector::Zero(p * K);
  for (Index i = 0; i < n; ++i) {
    for (Index j = 0; j < p; ++j) {
      Index lo;
      double frac;
      split_position(position(j, i), p - 1, lo, frac);
      const double value = interpolate(t, lo, frac);
      for (Index k = 0; k < K; ++k) out[j + p * k] += c(i, k) * value;
    }
  }
  return out;
}

// Projection and the proximal step of the roughness penalty ------------------

// Euclidean projection onto C: centre (the mean of a non-decreasing vector is
// a free direction, orthogonal to the centred cone), isotonic regression by
// PAV (which keeps the mean), then into the ball (for a convex cone,
// projecting onto it and then scaling into the ball is the projection onto
// their intersection).
class QuantileProjector {
 public:
  QuantileProjector(Index p, double radius)
      : radius_(radius), bounds_(p + 1), scratch_(2 * p), projected_(p) {}
  void operator()(Vector& f) {
    f.array() -= f.mean();
    isotonic_increasing(f.data(), nullptr, static_cast<std::size_t>(f.size()), projected_.data(),
                        bounds_.data(), scratch_.data());
    const double norm = projected_.norm();
    if (norm > radius_) projected_ *= radius_ / norm;
    f.swap(projected_);
  }

 private:
  double radius_;
  std::vector<std::uint32_t> bounds_;
  std::vector<double> scratch_;
  Vector projected_;
};

// argmin over f in C of (L/2) ||f - a||^2 + weight * roughness(f), by ADMM
// on the split f = v, v in C: the f-update is a solve with the pentadiagonal
// matrix (L + rho) I + 2 weight D'D (D: second differences), factored once
// per L; the v-update is the projection onto C. The dual variable and v are
// kept between calls (warm starts).
class RoughnessProx {
 public:
  RoughnessProx(Index p, double weight, double radius)
      : p_(p), weight_(weight), project_(p, radius), d_(p), l1_(p), l2_(p) {}

  void operator()(const Vector& a, double L, Vector& out, int max_iter = 2000, double tol = 1e-9) {
    const double curvature_max = L + 32.0 * weight_;
    const double rho = std::sqrt(L * curvature_max);
    if (L != factored_L_) {
      if (mu_.size() == p_ && rho_ > 0.0) mu_ *= rho_ / rho;
      factor(L + rho);
      factored_L_ = L;
      rho_ = rho;
    }
    if (v_.size() != p_) {
      v_ = a;
      project_(v_);
      mu_ = Vector::Zero(p_);
    }
    Vector f(p_), previous(p_);
    for (int iter = 0; iter < max_iter; ++iter) {
      f = L * a + rho * (v_ - mu_);
      solve(f);
      previous = v_;
      v_ = f + mu_;
      project_(v_);
      mu_ += f - v_;
      const double scale = std::max({f.norm(), v_.norm(), 1e-300});
      if ((f - v_).norm() <= tol * scale && (v_ - previous).norm() <= tol * scale) break;
    }
    out = v_;
  }

 private:
  // LDL' of diag * I + 2 weight D'D, whose bands are assembled row by row of D.
  void factor(double diag) {
    Vector a0 = Vector::Constant(p_, diag), a1 = Vector::Zero(p_), a2 = Vector::Zero(p_);
    const double c = 2.0 * weight_;
    for (Index m = 0; m + 2 < p_; ++m) {
      a0[m] += c;
      a0[m + 1] += 4.0 * c;
      a0[m + 2] += c;
      a1[m] += -2.0 * c;
      a1[m + 1] += -2.0 * c;
      a2[m] += c;
    }
    for (Index k = 0; k < p_; ++k) {
      double dk = a0[k];
      if (k >= 1) dk -= l1_[k - 1] * l1_[k - 1] * d_[k - 1];
      if (k >= 2) dk -= l2_[k - 2] * l2_[k - 2] * d_[k - 2];
      d_[k] = dk;
      double e1 = a1[k];
      if (k >= 1) e1 -= l2_[k - 1] * l1_[k - 1] * d_[k - 1];
      l1_[k] = k + 1 < p_ ? e1 / dk : 0.0;
      l2_[k] = k + 2 < p_ ? a2[k] / dk : 0.0;
    }
  }

  void solve(Vector& x) const {
    for (Index k = 0; k < p_; ++k) {
      if (k >= 1) x[k] -= l1_[k - 1] * x[k - 1];
      if (k >= 2) x[k] -= l2_[k - 2] * x[k - 2];
    }
    for (Index k = 0; k < p_; ++k) x[k] /= d_[k];
    for (Index k = p_ - 1; k >= 0; --k) {
      if (k + 1 < p_) x[k] -= l1_[k] * x[k + 1];
      if (k + 2 < p_) x[k] -= l2_[k] * x[k + 2];
    }
  }

  Index p_;
  double weight_;
  QuantileProjector project_;
  Vector d_, l1_, l2_, v_, mu_;
  double factored_L_ = -1.0, rho_ = 0.0;
};

// Step (a): the linear model with f fixed --------------------------------------

inline double objective(Family family, const Matrix& Y, const Matrix& eta, const Model& model,
                        double lambda, double alpha) {
  return mean_loss(family, Y, eta) + penalty(model.w, lambda, alpha);
}

// The samples' span: z'z = V S V', phi = V S^{1/2} (the samples' coordinates)
// and to_w = V S^{-1/2} (w = z to_w beta), over the eigenvalues kept.
struct Span {
  Matrix phi, to_w;
};

template <class Exec = Serial>
Span make_span(const Matrix& z, const Exec& exec = {}) {
  const Index n = z.cols();
  Matrix gram(n, n);
  for_chunks(exec, n, 16, static_cast<double>(n * z.rows()), [&](Index i0, Index len) {
    gram.middleCols(i0, len).noalias() = z.transpose() * z.middleCols(i0, len);
  });
  Eigen::SelfAdjointEigenSolver<Matrix> eigen(gram);
  const Vector& s = eigen.eigenvalues();
  const double cutoff = std::max(s.maxCoeff(), 0.0) * 1e-12;
  std::vector<Index> kept;
  for (Index k = 0; k < s.size(); ++k) {
    if (s[k] > cutoff && s[k] > 0.0) kept.push_back(k);
  }
  const Index r = static_cast<Index>(kept.size());
  Span span{Matrix(n, r), Matrix(n, r)};
  for (Index c = 0; c < r; ++c) {
    const double root = std::sqrt(s[kept[c]]);
    span.phi.col(c) = eigen.eigenvectors().col(kept[c]) * root;
    span.to_w.col(c) = eigen.eigenvectors().col(kept[c]) / root;
  }
  return span;
}

// Minimizes (1/n) sum_i loss(y_i, beta' phi_i + b) + lambda ||beta||^2 over
// beta (r x K) and b (K) by damped Newton steps from the given start; a step
// is only taken when it lowers the objective (Armijo backtracking).
inline void newton_ridge(Family family, const Matrix& Y, double lambda, const Matrix& phi,
                         Matrix& beta, Vector& b) {
  const Index n = phi.rows(), r = phi.cols(), K = Y.cols(), q = r + 1;
  Matrix design(n, q);
  design << phi, Vector::Ones(n);
  Matrix theta(q, K);
  theta.topRows(r) = beta;
  theta.row(r) = b.transpose();
  auto value_at = [&](const Matrix& t) {
    const Matrix eta = design * t;
    return mean_loss(family, Y, eta) + lambda * t.topRows(r).squaredNorm();
  };
  double current = value_at(theta);
  Matrix eta, grad, curv, hessian(q * K, q * K), candidate;
  for (int iter = 0; iter < 100; ++iter) {
    eta = design * theta;
    mean_loss(family, Y, eta, &grad, &curv);
    Matrix gradient = design.transpose() * grad;
    gradient.topRows(r) += 2.0 * lambda * theta.topRows(r);
    if (family == Family::multinomial) {
      // Block (k, l): sum_i prob_ik (delta_kl - prob_il) phi_i phi_i' / n.
      Matrix prob = eta;
      for (Index i = 0; i < n; ++i) {
        const double top = eta.row(i).maxCoeff();
        prob.row(i) = (eta.row(i).array() - top).exp();
        prob.row(i) /= prob.row(i).sum();
      }
      Vector d(n);
      for (Index k = 0; k < K; ++k) {
        for (Index l = 0; l <= k; ++l) {
          for (Index i = 0; i < n; ++i) {
            d[i] = prob(i, k) * ((k == l ? 1.0 : 0.0) - prob(i, l)) / static_cast<double>(n);
          }
          hessian.block(k * q, l * q, q, q).noalias() =
              design.transpose() * d.asDiagonal() * design;
          if (l != k)
            hessian.block(l * q, k * q, q, q) = hessian.block(k * q, l * q, q, q).transpose();
        }
      }
    } else {
      hessian.noalias() = design.transpose() * curv.col(0).asDiagonal() * design;
    }
    for (Index k = 0; k < K; ++k) {
      hessian.block(k * q, k * q, r, r).diagonal().array() += 2.0 * lambda;
      // The intercepts are not penalized: keep their curvature away from zero
      // when every probability saturates (and, for multinomial, along the
      // shift of all intercepts, which changes nothing).
      hessian(k * q + r, k * q + r) += family == Family::multinomial ? 1e-10 : 1e-12;
    }
    const Eigen::Map<const Vector> g(gradient.data(), q * K);
    const Vector step_vec = hessian.ldlt().solve(g);
    const double decrement = g.dot(step_vec);
    if (!(decrement > 1e-15 * (1.0 + std::abs(current)))) break;
    const Eigen::Map<const Matrix> step(step_vec.data(), q, K);
    double t = 1.0;
    bool moved = false;
    for (int halving = 0; halving < 60; ++halving, t *= 0.5) {
      candidate = theta - t * step;
      if (family == Family::multinomial) candidate.row(r).array() -= candidate.row(r).mean();
      const double value = value_at(candidate);
      if (value <= current - 1e-4 * t * decrement) {
        theta = candidate;
        current = value;
        moved = true;
        break;
      }
    }
    if (!moved) break;
  }
  beta = theta.topRows(r);
  b = theta.row(r).transpose();
}

// The ridge model on fixed features z (p x n), solved exactly in the span of
// the samples (w = z to_w beta holds the optimum); never worse than the start.
template <class Exec = Serial>
void fit_ridge(Family family, const Matrix& Y, double lambda, const Matrix& z, const Span& span,
               Model& model, const Exec& exec = {}) {
  Matrix eta;
  links(z, model, eta, exec);
  const double start_value = objective(family, Y, eta, model, lambda, 0.0);
  Model start_b = model;
  start_b.b.setZero();
  Matrix zw;
  links(z, start_b, zw, exec);  // z' W
  Matrix beta = span.to_w.transpose() * zw;
  Vector b = model.b;
  newton_ridge(family, Y, lambda, span.phi, beta, b);
  Model candidate{times(z, span.to_w * beta, exec), b};
  links(z, candidate, eta, exec);
  if (objective(family, Y, eta, candidate, lambda, 0.0) <= start_value) model = candidate;
}

// The elastic net model on fixed features z by cyclic coordinate descent on
// the quadratic approximation of the loss (one class at a time for
// multinomial), with active-set sweeps and a backtracking line search on J so
// that J never increases.
template <class Exec = Serial>
void fit_elastic_net(Family family, const Matrix& Y, double lambda, double alpha, const Matrix& z,
                     Model& model, const Exec& exec = {}, double tol = 1e-13) {
  const Index p = z.rows(), n = z.cols(), K = Y.cols();
  const Matrix zt = z.transpose();  // feature j is the contiguous column j
  const double l1 = lambda * alpha, l2 = 2.0 * lambda * (1.0 - alpha);
  Matrix eta, grad, curv;
  links(z, model, eta, exec);
  double current = objective(family, Y, eta, model, lambda, alpha);
  Vector v(n), res(n), a(p), wk(p);
  for (int outer = 0; outer < 1000; ++outer) {
    const double cycle_start = current;
    for (Index k = 0; k < K; ++k) {
      mean_loss(family, Y, eta, &grad, &curv);
      // Quadratic model: sum_i (v_i / 2) (res_i)^2, res_i = e_i - (change of eta_ik).
      for (Index i = 0; i < n; ++i) {
        v[i] = std::max(curv(i, k), 1e-5 / static_cast<double>(n));
        res[i] = -grad(i, k) / v[i];
      }
      const double scale = res.dot(v.cwiseProduct(res));
      a.noalias() = zt.array().square().matrix().transpose() * v;
      wk = model.w.col(k);
      double bk = model.b[k];
      auto update = [&](Index j) {
        const double* zj = zt.col(j).data();
        double g = 0.0;
        for (Index i = 0; i < n; ++i) g += v[i] * zj[i] * res[i];
        const double old = wk[j], num = g + a[j] * old;
        const double shrunk = num > l1 ? num - l1 : (num < -l1 ? num + l1 : 0.0);
        const double updated = a[j] + l2 > 0.0 ? shrunk / (a[j] + l2) : 0.0;
        if (updated == old) return 0.0;
        const double delta = updated - old;
        for (Index i = 0; i < n; ++i) res[i] -= zj[i] * delta;
        wk[j] = updated;
        return a[j] * delta * delta;
      };
      auto update_intercept = [&]() {
        const double delta = v.dot(res) / v.sum();
        bk += delta;
        res.array() -= delta;
        return v.sum() * delta * delta;
      };
      const double threshold = tol * std::max(scale, 1e-300);
      for (int sweep = 0; sweep < 1000; ++sweep) {
        double largest = update_intercept();
        for (Index j = 0; j < p; ++j) largest = std::max(largest, update(j));
        if (largest <= threshold) break;
        for (int inner = 0; inner < 10000; ++inner) {
          double active = update_intercept();
          for (Index j = 0; j < p; ++j) {
            if (wk[j] != 0.0) active = std::max(active, update(j));
          }
          if (active <= threshold) break;
        }
      }
      // Line search along the change of class k.
      const Vector w_old = model.w.col(k);
      const double b_old = model.b[k];
      double t = 1.0;
      bool moved = false;
      for (int halving = 0; halving < 40; ++halving, t *= 0.5) {
        model.w.col(k) = w_old + t * (wk - w_old);
        model.b[k] = b_old + t * (bk - b_old);
        links(z, model, eta, exec);
        const double value = objective(family, Y, eta, model, lambda, alpha);
        if (value <= current) {
          current = value;
          moved = true;
          break;
        }
      }
      if (!moved) {
        model.w.col(k) = w_old;
        model.b[k] = b_old;
        links(z, model, eta, exec);
      }
    }
    if (cycle_start - current <= tol * std::max(std::abs(current), 1e-300)) break;
  }
}

// Step (b): the target with the model fixed ---------------------------------------

// Spaces for the f step. FullSpace: f itself, as p values, with the
// projection onto C or, with a roughness penalty, its proximal step.
template <class Exec>
class FullSpace {
 public:
  FullSpace(const Matrix& u, double radius, double smooth, const Exec& exec)
      : u_(u),
        exec_(exec),
        smooth_(smooth),
        project_(u.rows(), radius),
        prox_(u.rows(), smooth, radius) {}
  Index size() const { return u_.rows(); }
  const Vector* weights() const { return nullptr; }
  // eta = u' v + b (n x K, column i + n k of u is sample i, class k).
  void links(const Vector& v, const Vector& b, Matrix& eta) const {
    const Index n = eta.rows();
    for_chunks(exec_, u_.cols(), 16, static_cast<double>(u_.rows()), [&](Index c0, Index len) {
      for (Index c = c0; c < c0 + len; ++c) eta(c % n, c / n) = u_.col(c).dot(v);
    });
    eta.rowwise() += b.transpose();
  }
  void gradient(const Eigen::Map<const Vector>& g_eta, Vector& g) const {
    g.resize(u_.rows());
    for_chunks(exec_, u_.rows(), 256, static_cast<double>(u_.cols()), [&](Index j0, Index len) {
      g.segment(j0, len).noalias() = u_.middleRows(j0, len) * g_eta;
    });
  }
  void step(const Vector& target, double L, Vector& out) {
    if (smooth_ > 0.0) {
      prox_(target, L, out);
    } else {
      out = target;
      project_(out);
    }
  }
  double penalty(const Vector& v) const { return smooth_ > 0.0 ? smooth_ * roughness(v) : 0.0; }

 private:
  const Matrix& u_;
  const Exec& exec_;
  double smooth_;
  QuantileProjector project_;
  RoughnessProx prox_;
};

// BlockSpace: the targets that are constant on the blocks of equal values of
// a given f (the blocks of its last projection), as one value per block.
// With d the block sizes, ||f||^2 = sum_k d_k v_k^2, so proximal steps in the
// metric D are those of the full space restricted to these targets, at a
// cost of (number of blocks) x n instead of p x n.
class BlockSpace {
 public:
  template <class Exec>
  BlockSpace(const Matrix& u, const Vector& f, double radius, const Exec& exec)
      : radius_(radius), block_of_(f.size()) {
    const Index p = f.size();
    Index m = 0;
    for (Index j = 0; j < p; ++j) {
      if (j > 0 && f[j] != f[j - 1]) ++m;
      block_of_[j] = m;
    }
    ++m;
    d_ = Vector::Zero(m);
    v_ = Vector::Zero(m);
    for (Index j = 0; j < p; ++j) {
      d_[block_of_[j]] += 1.0;
      v_[block_of_[j]] = f[j];
    }
    a_ = Matrix::Zero(m, u.cols());
    for_chunks(exec, u.cols(), 4, static_cast<double>(p), [&](Index c0, Index len) {
      for (Index c = c0; c < c0 + len; ++c) {
        for (Index j = 0; j < p; ++j) a_(block_of_[j], c) += u(j, c);
      }
    });
    bounds_.resize(m + 1);
    scratch_.resize(2 * m);
    projected_.resize(m);
  }
  Index size() const { return d_.size(); }
  const Vector* weights() const { return &d_; }
  const Vector& values() const { return v_; }
  void links(const Vector& v, const Vector& b, Matrix& eta) const {
    Eigen::Map<Vector>(eta.data(), eta.size()).noalias() = a_.transpose() * v;
    eta.rowwise() += b.transpose();
  }
  void gradient(const Eigen::Map<const Vector>& g_eta, Vector& g) const {
    g.noalias() = a_ * g_eta;
  }
  // The projection onto C in the metric D: weighted centring, weighted PAV
  // (which keeps the weighted mean), then into the ball.
  void step(const Vector& target, double, Vector& out) {
    const Index m = d_.size();
    out = target;
    out.array() -= d_.dot(out) / d_.sum();
    isotonic_increasing(out.data(), d_.data(), static_cast<std::size_t>(m), projected_.data(),
                        bounds_.data(), scratch_.data());
    const double norm = std::sqrt(d_.dot(projected_.cwiseAbs2()));
    if (norm > radius_) projected_ *= radius_ / norm;
    out.swap(projected_);
  }
  double penalty(const Vector&) const { return 0.0; }
  void expand(const Vector& v, Vector& f) const {
    for (Index j = 0; j < f.size(); ++j) f[j] = v[block_of_[j]];
  }

 private:
  double radius_;
  std::vector<Index> block_of_;
  Vector d_, v_;
  Matrix a_;
  std::vector<std::uint32_t> bounds_;
  std::vector<double> scratch_;
  Vector projected_;
};

// Accelerated proximal gradient (FISTA) on (v, b) in a space, with a
// backtracking estimate L of the local Lipschitz constant of the loss (kept
// between calls) and restarts of the momentum (O'Donoghue and Candes 2015).
// A step that would raise the objective restarts the momentum and is
// replaced by a plain proximal gradient step from the current point, so the
// objective `current` never increases. Stops when v changes by less than
// tol (relative) or after max_iter steps.
template <class Space>
void fista(Space& space, Family family, const Matrix& Y, Vector& v, Vector& b, double& current,
           double& L, int max_iter, double tol) {
  const Index n = Y.rows(), K = Y.cols();
  const Vector* d = space.weights();
  struct Point {
    Vector v, b;
    Matrix eta;
  };
  auto sq_norm = [&](const Vector& dv) { return d ? d->dot(dv.cwiseAbs2()) : dv.squaredNorm(); };
  Matrix grad;
  Vector gv, gb, target;
  auto prox_step = [&](const Point& from, Point& out, double& out_loss) {
    const double fx = mean_loss(family, Y, from.eta, &grad);
    space.gradient(Eigen::Map<const Vector>(grad.data(), n * K), gv);
    gb = grad.colwise().sum().transpose();
    out.eta.resize(n, K);
    for (int tries = 0; tries < 100; ++tries) {
      target = d ? Vector(from.v - gv.cwiseQuotient(*d) / L) : Vector(from.v - gv / L);
      space.step(target, L, out.v);
      out.b = from.b - gb / L;
      space.links(out.v, out.b, out.eta);
      out_loss = mean_loss(family, Y, out.eta);
      const Vector dv = out.v - from.v, db = out.b - from.b;
      const double bound =
          fx + gv.dot(dv) + gb.dot(db) + 0.5 * L * (sq_norm(dv) + db.squaredNorm());
      if (out_loss <= bound + 1e-15 * std::abs(fx)) return;
      L *= 2.0;
    }
  };
  Point x{v, b, Matrix(n, K)}, look, next;
  space.links(x.v, x.b, x.eta);
  look = x;
  double loss = 0.0, momentum = 1.0;
  for (int iter = 0; iter < max_iter; ++iter) {
    L *= 0.8;  // try a slightly longer step
    prox_step(look, next, loss);
    double value = loss + space.penalty(next.v);
    if (value > current) {
      prox_step(x, next, loss);
      value = loss + space.penalty(next.v);
      momentum = 1.0;
      look = next;
    } else if (d ? (look.v - next.v).dot(d->cwiseProduct(next.v - x.v)) +
                           (look.b - next.b).dot(next.b - x.b) >
                       0.0
                 : (look.v - next.v).dot(next.v - x.v) + (look.b - next.b).dot(next.b - x.b) >
                       0.0) {
      momentum = 1.0;
      look = next;
    } else {
      const double next_momentum = 0.5 * (1.0 + std::sqrt(1.0 + 4.0 * momentum * momentum));
      const double beta = (momentum - 1.0) / next_momentum;
      look.v = next.v + beta * (next.v - x.v);
      look.b = next.b + beta * (next.b - x.b);
      look.eta = next.eta + beta * (next.eta - x.eta);
      momentum = next_momentum;
    }
    if (value > current) break;  // only rounding is left
    const double change = std::sqrt(sq_norm(next.v - x.v) / std::max(sq_norm(x.v), 1e-300));
    x = next;
    current = value;
    if (change < tol) break;
  }
  v = x.v;
  b = x.b;
}

// Step (b): f in C and b with W fixed (u from rank_weights). Without a
// roughness penalty, an active-set scheme: a proximal gradient step in the
// full space fixes the blocks of equal values of f (PAV pools most of the p
// values into a few dozen blocks), FISTA then runs on the block values at a
// fraction of the cost, and the next full step splits or merges blocks; it
// stops when a full step no longer moves f (relative change below tol). With
// a roughness penalty f has no blocks, and FISTA runs in the full space.
template <class Exec = Serial>
void fit_quantiles(Family family, const Matrix& Y, const Matrix& u, double radius, double smooth,
                   Vector& f, Vector& b, int max_iter, double tol, const Exec& exec = {}) {
  const Index p = f.size(), n = Y.rows(), K = Y.cols();
  FullSpace<Exec> full(u, radius, smooth, exec);
  Matrix eta(n, K);
  full.links(f, b, eta);
  double current = mean_loss(family, Y, eta) + full.penalty(f);
  // A first estimate of L from below: the mean curvature of the loss times the
  // mean squared norm of the columns of u, over n (the backtracking doubles it).
  const double curvature =
      family == Family::gaussian ? 1.0 : (family == Family::binomial ? 0.25 : 0.5);
  double L = std::max(curvature * (u.colwise().squaredNorm().mean() + 1.0) / static_cast<double>(n),
                      1e-12);
  if (smooth > 0.0) {
    fista(full, family, Y, f, b, current, L, max_iter * 10, tol);
    return;
  }
  for (int outer = 0; outer < max_iter; ++outer) {
    const Vector f_before = f;
    fista(full, family, Y, f, b, current, L, 1, 0.0);
    const double change = (f - f_before).norm() / std::max(f_before.norm(), 1e-300);
    if (change < tol) break;
    BlockSpace blocks(u, f, radius, exec);
    if (blocks.size() > p / 4) {
      fista(full, family, Y, f, b, current, L, 20, tol);
      continue;
    }
    Vector v = blocks.values();
    fista(blocks, family, Y, v, b, current, L, 100 * max_iter, tol);
    blocks.expand(v, f);
  }
}

// The alternation -----------------------------------------------------------------

struct Options {
  Family family = Family::binomial;
  double lambda = 1.0;
  double alpha = 0.0;   // 0: ridge, 1: lasso
  double smooth = 0.0;  // weight of the roughness penalty on f
  int rounds = 1;       // rounds of (new f, new model); < 0: until convergence
  int max_iter = 50;    // most rounds in any case
  double tol = 1e-3;
  int inner_iter = 50;  // most full steps of the f step
  double inner_tol = 1e-5;
};

struct Step {
  int round;
  char kind;  // 'w' linear model, 'f' quantile function
  double objective;
  double change;  // relative change of f (steps 'f'), 0 otherwise
};

struct Fit {
  Vector f;
  Model model;
  std::vector<Step> history;
  int rounds = 0;          // rounds done
  bool converged = false;  // stopped because f or J changed by less than tol
  bool budget = false;     // stopped at max_iter before converging or the rounds asked for
};

template <class Exec>
void fit_linear(Family family, const Matrix& Y, const Options& opt, const Matrix& z,
                const Span* span, Model& model, const Exec& exec) {
  if (opt.alpha > 0.0) {
    fit_elastic_net(family, Y, opt.lambda, opt.alpha, z, model, exec);
  } else if (span != nullptr) {
    fit_ridge(family, Y, opt.lambda, z, *span, model, exec);
  } else {
    fit_ridge(family, Y, opt.lambda, z, make_span(z, exec), model, exec);
  }
}

template <class Exec>
double full_objective(const Options& opt, const Matrix& Y, const Matrix& z, const Vector& f,
                      const Model& model, const Exec& exec) {
  Matrix eta;
  links(z, model, eta, exec);
  double value = objective(opt.family, Y, eta, model, opt.lambda, opt.alpha);
  if (opt.smooth > 0.0) value += opt.smooth * roughness(f);
  return value;
}

// Method "bnd" from the target f0 (in C, with the radius ||f0||) and the model
// `model` (a warm start, e.g. zero). Round 0 fits the model with f = f0;
// round r >= 1 refits the model (r >= 2) and then f. report(r, f, model) is
// called at the end of every round; monitor(step) after every step (for
// progress reports and interrupts). span0, when given, is make_span() of
// Psi_f0(x), shared by several calls.
template <class Exec, class Report, class Monitor>
Fit alternate(const Positions& position, const Matrix& Y, const Vector& f0, const Options& opt,
              Model model, const Span* span0, const Exec& exec, Report&& report,
              Monitor&& monitor) {
  Fit fit;
  fit.f = f0;
  const double radius = f0.norm();
  Matrix z, u;
  normalize_to(position, fit.f, z, exec);
  fit_linear(opt.family, Y, opt, z, span0, model, exec);
  double previous = full_objective(opt, Y, z, fit.f, model, exec);
  fit.history.push_back({0, 'w', previous, 0.0});
  monitor(fit.history.back());
  report(0, fit.f, model);
  const int limit = opt.rounds < 0 ? opt.max_iter : std::min(opt.rounds, opt.max_iter);
  for (int r = 1; r <= limit; ++r) {
    if (r > 1) {
      fit_linear(opt.family, Y, opt, z, nullptr, model, exec);
      fit.history.push_back({r, 'w', full_objective(opt, Y, z, fit.f, model, exec), 0.0});
      monitor(fit.history.back());
    }
    const Vector f_before = fit.f;
    rank_weights(position, model.w, u, exec);
    fit_quantiles(opt.family, Y, u, radius, opt.smooth, fit.f, model.b, opt.inner_iter,
                  opt.inner_tol, exec);
    normalize_to(position, fit.f, z, exec);
    const double value = full_objective(opt, Y, z, fit.f, model, exec);
    const double change = (fit.f - f_before).norm() / std::max(f_before.norm(), 1e-300);
    fit.history.push_back({r, 'f', value, change});
    monitor(fit.history.back());
    fit.rounds = r;
    report(r, fit.f, model);
    const double gain = (previous - value) / std::max(std::abs(previous), 1e-300);
    previous = value;
    if (change < opt.tol || gain < opt.tol) {
      fit.converged = true;
      break;
    }
  }
  fit.budget =
      !fit.converged && fit.rounds == opt.max_iter && (opt.rounds < 0 || opt.rounds > opt.max_iter);
  fit.model = model;
  return fit;
}

template <class Exec, class Monitor>
Fit fit_bnd(const Positions& position, const Matrix& Y, const Vector& f0, const Options& opt,
            const Exec& exec, Monitor&& monitor) {
  return alternate(
      position, Y, f0, opt, zero_model(position.rows(), Y.cols()), nullptr, exec,
      [](int, const Vector&, const Model&) {}, monitor);
}

// The rounds 0..opt.rounds for every lambda of a decreasing sequence, each
// starting from f0 and from the previous lambda's round-0 model;
// report(l, r, f, model) receives every (lambda, round) pair, the last model
// repeated when the alternation converged before opt.rounds.
template <class Exec, class Report, class Monitor>
void fit_path(const Positions& position, const Matrix& Y, const Vector& f0,
              const std::vector<double>& lambdas, const Options& opt, const Exec& exec,
              Report&& report, Monitor&& monitor) {
  Matrix z0;
  normalize_to(position, f0, z0, exec);
  Span span0;
  if (opt.alpha == 0.0) span0 = make_span(z0, exec);
  Model warm = zero_model(position.rows(), Y.cols());
  const int last_round = opt.rounds < 0 ? opt.max_iter : opt.rounds;
  for (std::size_t l = 0; l < lambdas.size(); ++l) {
    Options o = opt;
    o.lambda = lambdas[l];
    int reported = -1;
    const Fit fit = alternate(
        position, Y, f0, o, warm, opt.alpha == 0.0 ? &span0 : nullptr, exec,
        [&](int r, const Vector& f, const Model& model) {
          if (r == 0) warm = model;
          report(l, r, f, model);
          reported = r;
        },
        monitor);
    for (int r = reported + 1; r <= last_round; ++r) report(l, r, fit.f, fit.model);
  }
}

// The largest useful lambda, as glmnet computes it: the largest absolute
// correlation-like score (1/n) |sum_i z_ji (y_ik - mean_k)| of a feature of
// Psi_f0(x) with the centred labels, divided by max(alpha, 0.001).
template <class Exec = Serial>
double lambda_max(const Positions& position, const Matrix& Y, const Vector& f0, double alpha,
                  const Exec& exec = {}) {
  Matrix z;
  normalize_to(position, f0, z, exec);
  const Matrix centred = Y.rowwise() - Y.colwise().mean();
  const Matrix score = times(z, centred, exec) / static_cast<double>(Y.rows());
  return score.cwiseAbs().maxCoeff() / std::max(alpha, 1e-3);
}

}  // namespace suquan
}  // namespace diffrank
