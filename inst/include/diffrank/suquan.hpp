// Supervised quantile normalization, SUQUAN (Le Morvan and Vert 2017,
// "Supervised quantile normalisation", arXiv:1706.00244).
//
// A sample x of p features is quantile-normalized to a target f (p
// non-decreasing values) and fed to a linear model:
//   g(x) = w' Psi_f(x) + b,   Psi_f(x)_j = f at the quantile level of x_j,
// and f, w, b are learned together by minimizing
//   J = (1/n) sum_i loss(y_i, g(x_i)) + lambda ||w||^2
// over f in the set C of non-decreasing vectors of norm at most ||f_0||
// (the norm bound removes the scale shared by f and w).
//
// The quantile level of x_j is a fractional position h_j in [0, p - 1] (the
// midrank rule of quantile.hpp, the median for a missing value), so Psi_f(x)
// is linear in f and g is bilinear in (f, w):
//   g(x) = f' u(w) + b,  u(w)_k = sum_j w_j [weight of position k in h_j].
// Method "bnd" alternates exact convex steps in (w, b) and in (f, b), each
// warm-started and never accepted when it would raise J, so J never
// increases. Method "svd" takes the leading singular pair of the label-
// weighted sum of the samples' permutation matrices by power iteration (two
// O(n p) products a step, no p x p matrix), then fits (w, b) with f fixed.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "isotonic.hpp"

namespace diffrank {
namespace suquan {

enum class Family { gaussian, binomial };

using Matrix = Eigen::MatrixXd;
using Vector = Eigen::VectorXd;
// Positions are the caller's p x n memory (e.g. an R matrix), never copied.
using Positions = Eigen::Ref<const Matrix>;

struct LossTerms {
  double value, gradient, curvature;
};

// Loss of one sample with respect to the link eta; binomial labels are 0/1.
inline LossTerms loss(Family family, double y, double eta) {
  if (family == Family::gaussian) {
    const double r = eta - y;
    return {0.5 * r * r, r, 1.0};
  }
  const double softplus = eta > 0 ? eta + std::log1p(std::exp(-eta)) : std::log1p(std::exp(eta));
  const double prob = eta > 0 ? 1.0 / (1.0 + std::exp(-eta)) : std::exp(eta) / (1.0 + std::exp(eta));
  return {softplus - y * eta, prob - y, prob * (1.0 - prob)};
}

inline double mean_loss(Family family, const Vector& y, const Vector& eta) {
  double total = 0.0;
  for (Eigen::Index i = 0; i < y.size(); ++i) total += loss(family, y[i], eta[i]).value;
  return total / static_cast<double>(y.size());
}

// Calls visit(j, i, lo, frac) for feature j of sample i, which sits at
// fractional position lo + frac of a target whose last index is `last`.
template <class Visit>
inline void for_each_position(const Positions& position, Eigen::Index last, Visit&& visit) {
  const Eigen::Index p = position.rows(), n = position.cols();
  for (Eigen::Index i = 0; i < n; ++i) {
    for (Eigen::Index j = 0; j < p; ++j) {
      const double h = position(j, i);
      const Eigen::Index lo = std::min<Eigen::Index>(static_cast<Eigen::Index>(h), last);
      visit(j, i, lo, h - static_cast<double>(lo));
    }
  }
}

inline double interpolate(const Vector& f, Eigen::Index lo, double frac) {
  return frac > 0.0 ? f[lo] + frac * (f[lo + 1] - f[lo]) : f[lo];
}

// Psi_f for every sample into z (p x n): z(j, i) = f at position(j, i).
inline void normalize_to(const Positions& position, const Vector& f, Matrix& z) {
  z.resize(position.rows(), position.cols());
  for_each_position(position, f.size() - 1, [&](Eigen::Index j, Eigen::Index i, Eigen::Index lo,
                                                double frac) { z(j, i) = interpolate(f, lo, frac); });
}

inline Matrix normalize_to(const Positions& position, const Vector& f) {
  Matrix z;
  normalize_to(position, f, z);
  return z;
}

// sum_i c_i Psi_f(x_i), without the p x n matrix.
inline Vector normalized_sum(const Positions& position, const Vector& f, const Vector& c) {
  Vector out = Vector::Zero(position.rows());
  for_each_position(position, f.size() - 1,
                    [&](Eigen::Index j, Eigen::Index i, Eigen::Index lo, double frac) {
                      out[j] += c[i] * interpolate(f, lo, frac);
                    });
  return out;
}

// The adjoint of Psi in f: u_i(w) is such that f' u_i(w) = w' Psi_f(x_i) for
// every f; add(k, i, value) receives the contributions to u_i(w)_k.
template <class Add>
inline void scatter_weights(const Positions& position, const Vector& w, Eigen::Index length,
                            Add&& add) {
  for_each_position(position, length - 1,
                    [&](Eigen::Index j, Eigen::Index i, Eigen::Index lo, double frac) {
                      if (frac > 0.0) {
                        add(lo, i, (1.0 - frac) * w[j]);
                        add(lo + 1, i, frac * w[j]);
                      } else {
                        add(lo, i, w[j]);
                      }
                    });
}

inline void rank_weights(const Positions& position, const Vector& w, Eigen::Index length,
                         Matrix& u) {
  u.setZero(length, position.cols());
  scatter_weights(position, w, length,
                  [&](Eigen::Index k, Eigen::Index i, double value) { u(k, i) += value; });
}

// sum_i c_i u_i(w), without the p x n matrix.
inline Vector rank_weight_sum(const Positions& position, const Vector& w, const Vector& c,
                              Eigen::Index length) {
  Vector out = Vector::Zero(length);
  scatter_weights(position, w, length,
                  [&](Eigen::Index k, Eigen::Index i, double value) { out[k] += c[i] * value; });
  return out;
}

// Euclidean projection onto C: non-decreasing (PAV), then into the ball of
// the given radius (for a convex cone, projecting onto the cone and then
// scaling into the ball is the projection onto their intersection).
class QuantileProjector {
 public:
  QuantileProjector(Eigen::Index p, double radius)
      : radius_(radius), bounds_(p + 1), scratch_(2 * p), projected_(p) {}
  void operator()(Vector& f) {
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

struct LinearModel {
  Vector w;
  double b = 0.0;
};

inline double objective(Family family, const Vector& y, double lambda, const Matrix& z,
                        const LinearModel& model) {
  const Vector eta = (z.transpose() * model.w).array() + model.b;
  return mean_loss(family, y, eta) + lambda * model.w.squaredNorm();
}

// Minimizes (1/n) sum_i loss(y_i, phi_i' beta + b) + lambda ||beta||^2 by
// damped Newton steps from the given start; a step is only taken when it
// lowers the objective (Armijo backtracking).
inline void newton_ridge(Family family, const Vector& y, double lambda, const Matrix& phi,
                         Vector& beta, double& b) {
  const Eigen::Index n = phi.rows(), r = phi.cols();
  Matrix design(n, r + 1);
  design << phi, Vector::Ones(n);
  Vector theta(r + 1);
  theta << beta, b;
  auto value_at = [&](const Vector& t) {
    const Vector eta = design * t;
    return mean_loss(family, y, eta) + lambda * t.head(r).squaredNorm();
  };
  double current = value_at(theta);
  for (int iter = 0; iter < 100; ++iter) {
    const Vector eta = design * theta;
    Vector d1(n), d2(n);
    for (Eigen::Index i = 0; i < n; ++i) {
      const LossTerms t = loss(family, y[i], eta[i]);
      d1[i] = t.gradient / static_cast<double>(n);
      d2[i] = t.curvature / static_cast<double>(n);
    }
    Vector gradient = design.transpose() * d1;
    gradient.head(r) += 2.0 * lambda * theta.head(r);
    Matrix hessian = design.transpose() * d2.asDiagonal() * design;
    hessian.diagonal().head(r).array() += 2.0 * lambda;
    // The intercept is not penalized: keep its curvature away from zero
    // when every probability saturates.
    hessian(r, r) += 1e-12;
    const Vector step = hessian.ldlt().solve(gradient);
    const double decrement = gradient.dot(step);
    if (!(decrement > 1e-15 * (1.0 + std::abs(current)))) break;
    double t = 1.0;
    bool moved = false;
    for (int halving = 0; halving < 60; ++halving, t *= 0.5) {
      const Vector candidate = theta - t * step;
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
  beta = theta.head(r);
  b = theta[r];
}

// Step (a): the ridge-penalized linear model on fixed features z (p x n),
// solved exactly in the span of the samples (w = z V S^{-1/2} beta, where
// z'z = V S V'), which holds the optimum; never worse than the start.
inline void fit_linear(Family family, const Vector& y, double lambda, const Matrix& z,
                       LinearModel& model) {
  const double start_value = objective(family, y, lambda, z, model);
  const Matrix gram = z.transpose() * z;
  Eigen::SelfAdjointEigenSolver<Matrix> eigen(gram);
  const Vector& s = eigen.eigenvalues();
  const double cutoff = std::max(s.maxCoeff(), 0.0) * 1e-12;
  std::vector<Eigen::Index> kept;
  for (Eigen::Index k = 0; k < s.size(); ++k) {
    if (s[k] > cutoff && s[k] > 0.0) kept.push_back(k);
  }
  const Eigen::Index n = z.cols(), r = static_cast<Eigen::Index>(kept.size());
  Matrix phi(n, r), to_w(n, r);
  for (Eigen::Index c = 0; c < r; ++c) {
    const double root = std::sqrt(s[kept[c]]);
    phi.col(c) = eigen.eigenvectors().col(kept[c]) * root;
    to_w.col(c) = eigen.eigenvectors().col(kept[c]) / root;
  }
  Vector beta = to_w.transpose() * (z.transpose() * model.w);
  double b = model.b;
  newton_ridge(family, y, lambda, phi, beta, b);
  LinearModel candidate{z * (to_w * beta), b};
  if (objective(family, y, lambda, z, candidate) <= start_value) model = candidate;
}

// Step (b): f in C and b with w fixed, by accelerated projected gradient
// (FISTA) with a backtracking estimate of the local Lipschitz constant, which
// near a good fit is far below the global bound of the logistic loss. A step
// that would raise the objective restarts the momentum and is replaced by a
// plain projected gradient step from the current point, so the objective
// never increases.
inline void fit_quantiles(Family family, const Vector& y, const Matrix& u, double radius,
                          Vector& f, double& b, int max_iter, double tol) {
  const Eigen::Index n = u.cols();
  QuantileProjector project(f.size(), radius);
  const double dn = static_cast<double>(n);
  struct Point {
    Vector f;
    double b;
  };
  auto value_at = [&](const Point& x) {
    const Vector eta = (u.transpose() * x.f).array() + x.b;
    return mean_loss(family, y, eta);
  };
  auto gradient_at = [&](const Point& x, Point& g) {
    const Vector eta = (u.transpose() * x.f).array() + x.b;
    Vector d(n);
    double value = 0.0;
    for (Eigen::Index i = 0; i < n; ++i) {
      const LossTerms t = loss(family, y[i], eta[i]);
      d[i] = t.gradient / dn;
      value += t.value / dn;
    }
    g.f = u * d;
    g.b = d.sum();
    return value;
  };
  // One projected gradient step from x with step 1/L, L grown until the
  // quadratic upper bound holds at the new point.
  double lipschitz = 1e-8;
  auto prox_step = [&](const Point& x, Point& out, double& out_value) {
    Point g;
    const double fx = gradient_at(x, g);
    for (int tries = 0; tries < 200; ++tries) {
      out.f = x.f - g.f / lipschitz;
      out.b = x.b - g.b / lipschitz;
      project(out.f);
      out_value = value_at(out);
      const Vector df = out.f - x.f;
      const double db = out.b - x.b;
      const double bound = fx + g.f.dot(df) + g.b * db +
                           0.5 * lipschitz * (df.squaredNorm() + db * db);
      if (out_value <= bound + 1e-15 * std::abs(fx)) return;
      lipschitz *= 2.0;
    }
  };

  Point x{f, b}, look = x, next;
  double current = value_at(x), value = current;
  double momentum = 1.0;
  for (int iter = 0; iter < max_iter; ++iter) {
    lipschitz *= 0.5;  // try a longer step first
    prox_step(look, next, value);
    if (value > current) {
      prox_step(x, next, value);
      momentum = 1.0;
      look = next;
    } else {
      const double next_momentum = 0.5 * (1.0 + std::sqrt(1.0 + 4.0 * momentum * momentum));
      const double beta = (momentum - 1.0) / next_momentum;
      look.f = next.f + beta * (next.f - x.f);
      look.b = next.b + beta * (next.b - x.b);
      momentum = next_momentum;
    }
    if (value > current) break;  // only rounding is left
    const double change = (next.f - x.f).norm() / std::max(x.f.norm(), 1e-300);
    x = next;
    current = value;
    if (change < tol) break;
  }
  f = x.f;
  b = x.b;
}

struct Options {
  Family family = Family::binomial;
  double lambda = 1e-2;
  int max_iter = 50;
  double tol = 1e-3;
  int inner_iter = 100;
  double inner_tol = 1e-5;
};

struct Step {
  int iteration;
  char kind;  // 'w' linear model, 'f' quantile function, 's' singular pair
  double objective;
  double change;  // relative change of f (steps 'f' and 's'), 0 otherwise
};

struct Fit {
  Vector f;
  LinearModel model;
  std::vector<Step> history;
  bool converged = false;
  int iterations = 0;
};

// Method "bnd". `position` is p x n (from midrank_positions), y the labels,
// f0 the starting target (non-decreasing, length p). `monitor(step)` is called
// after every step (for progress reports and interrupts).
template <class Monitor>
Fit fit_bnd(const Positions& position, const Vector& y, const Vector& f0, const Options& opt,
            Monitor&& monitor) {
  Fit fit;
  fit.f = f0;
  const double radius = f0.norm();
  fit.model.w = Vector::Zero(position.rows());
  fit.model.b = 0.0;
  double previous = std::numeric_limits<double>::infinity();
  Matrix z, u;
  normalize_to(position, fit.f, z);
  for (int iter = 1; iter <= opt.max_iter; ++iter) {
    fit.iterations = iter;
    fit_linear(opt.family, y, opt.lambda, z, fit.model);
    const double after_w = objective(opt.family, y, opt.lambda, z, fit.model);
    fit.history.push_back({iter, 'w', after_w, 0.0});
    monitor(fit.history.back());

    const Vector f_before = fit.f;
    rank_weights(position, fit.model.w, fit.f.size(), u);
    fit_quantiles(opt.family, y, u, radius, fit.f, fit.model.b, opt.inner_iter, opt.inner_tol);
    normalize_to(position, fit.f, z);
    const double after_f = objective(opt.family, y, opt.lambda, z, fit.model);
    const double change = (fit.f - f_before).norm() / std::max(f_before.norm(), 1e-300);
    fit.history.push_back({iter, 'f', after_f, change});
    monitor(fit.history.back());

    const double gain = (previous - after_f) / std::max(std::abs(previous), 1e-300);
    previous = after_f;
    if (change < opt.tol || gain < opt.tol) {
      fit.converged = true;
      break;
    }
  }
  return fit;
}

// The linear model alone with f fixed at f0: quantile normalization to f0
// followed by ridge-penalized regression (the baseline SUQUAN improves on).
template <class Monitor>
Fit fit_fixed(const Positions& position, const Vector& y, const Vector& f0, const Options& opt,
              Monitor&& monitor) {
  Fit fit;
  fit.f = f0;
  fit.model.w = Vector::Zero(position.rows());
  const Matrix z = normalize_to(position, fit.f);
  fit_linear(opt.family, y, opt.lambda, z, fit.model);
  fit.history.push_back({1, 'w', objective(opt.family, y, opt.lambda, z, fit.model), 0.0});
  monitor(fit.history.back());
  fit.iterations = 1;
  fit.converged = true;
  return fit;
}

// Method "svd": M = sum_i c_i Pi_i with c_i the centred labels, never formed:
// M v = sum_i c_i u_i(v) and M' t = sum_i c_i Psi_t(x_i).
template <class Monitor>
Fit fit_svd(const Positions& position, const Vector& y, const Vector& f0, const Options& opt,
            Monitor&& monitor) {
  const Eigen::Index p = position.rows(), n = position.cols();
  const Vector c = (y.array() - y.mean()) / static_cast<double>(n);
  auto times = [&](const Vector& v) { return rank_weight_sum(position, v, c, f0.size()); };
  auto times_transpose = [&](const Vector& t) { return normalized_sum(position, t, c); };

  Fit fit;
  Vector ramp = Vector::LinSpaced(f0.size(), -1.0, 1.0);
  Vector v = times_transpose(ramp);
  if (v.norm() == 0.0) v = Vector::Ones(p);
  v.normalize();
  double change = 1.0;
  int iter = 0;
  for (; iter < opt.max_iter * 20 && change > opt.inner_tol; ++iter) {
    Vector next = times_transpose(times(v));
    const double norm = next.norm();
    if (norm == 0.0) break;
    next /= norm;
    change = (next - v).norm();
    v = next;
  }
  Vector f = times(v);
  if (f.dot(ramp) < 0.0) f = -f;
  const double radius = f0.norm();
  f *= radius / std::max(f.norm(), 1e-300);
  QuantileProjector(f.size(), radius)(f);
  if (f.norm() == 0.0) f = f0;  // no increasing direction: keep the start
  fit.f = f;
  fit.history.push_back({0, 's', std::numeric_limits<double>::quiet_NaN(), change});
  monitor(fit.history.back());

  fit.model.w = Vector::Zero(p);
  const Matrix z = normalize_to(position, fit.f);
  fit_linear(opt.family, y, opt.lambda, z, fit.model);
  fit.history.push_back({1, 'w', objective(opt.family, y, opt.lambda, z, fit.model), 0.0});
  monitor(fit.history.back());
  fit.iterations = iter;
  fit.converged = change <= opt.inner_tol;
  return fit;
}

}  // namespace suquan
}  // namespace diffrank
