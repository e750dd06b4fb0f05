// Soft permutation matrices by quadratically regularized optimal transport:
// the L2-regularized projection onto the Birkhoff (transport) polytope
// (Blondel, Seguy and Rolet 2018, "Smooth and sparse optimal transport",
// AISTATS; Lorenz, Manns and Meyer 2021, "Quadratically regularized optimal
// transport", Applied Mathematics & Optimization).
//
// For the points z (x squashed as for the Sinkhorn operators, or x itself)
// with weights a and m sorted targets y with weights b, the plan is
//   P = argmin_{P >= 0, P 1 = a, P^T 1 = b} <C, P> + eps/2 sum_ij P_ij^2 / (a_i b_j),
// C_ij = |z_i - y_j|^power. The weights in the penalty make eps mean the same
// for any n and m: with equal weights it is the Euclidean projection of
// -C / (eps n m) onto the polytope (n P is doubly stochastic when m = n). Its
// dual, maximized over (f, g),
//   D(f, g) = a.f + b.g - 1/(2 eps) sum_ij a_i b_j [f_i + g_j - C_ij]_+^2,
// is concave, piecewise quadratic, and gives P_ij = a_i b_j [f_i + g_j -
// C_ij]_+ / eps: exact zeros outside a support S that shrinks to the hard
// sort's as eps -> 0. It is solved by a semismooth Newton method (the Newton
// system is the support's bipartite graph Laplacian; it ends exactly once S
// is found) with a backtracking line search, from the hard sort's dual
// potentials; a value whose row (or target whose column) has no support is
// moved to its exact one-dimensional maximizer.
//
// Derivatives are exact (implicit differentiation of the optimality
// conditions on S): with K_ij = a_i b_j on S, r = K 1, c = K^T 1 and the
// Laplacian M = [[diag(r), K], [K^T, diag(c)]],
//   dP_ij = a_i b_j (df_i + dg_j - dC_ij) / eps on S,  M (df, dg) = (K o dC) sums,
// one sparse factorization of M (one node pinned per connected component of
// S, the null direction (1, -1) of each) serving every product.
#pragma once

#include <Eigen/SparseCholesky>
#include <Eigen/SparseCore>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <vector>

#include "operator.hpp"
#include "sinkhorn.hpp"

namespace diffrank {

enum class BirkhoffOutput { plan, rank, sort };

struct BirkhoffSettings {
  BirkhoffOutput output = BirkhoffOutput::plan;
  double eps = 1e-3;
  double power = 2.0;
  bool squash = true;
  bool decreasing = false;
  double tol = 1e-9;      // relative marginal error: max_i |(P 1)_i - a_i| / a_i, same for b; or
                          // the error rounding allows, about 1e-14 max(C) / eps, if larger
  int max_iter = 100;     // Newton iterations
  std::vector<double> y;  // m sorted targets
  std::vector<double> b;  // their weights, summing to 1
  std::function<void()> poll;
};

class BirkhoffOperator {
 public:
  // Solves the problem of x (n values, weights a summing to 1) and writes the
  // output (plan n x m column-major, n ranks or m sorted values) to out
  // (skipped when null). Returns whether the marginals met `tol`.
  bool forward(const double* x, const double* a, std::size_t n, const BirkhoffSettings& s,
               double* out) {
    n_ = n;
    m_ = s.y.size();
    output_ = s.output;
    eps_ = s.eps;
    power_ = s.power;
    squash_on_ = s.squash;
    decreasing_ = s.decreasing;
    y_ = s.y;
    b_ = s.b;
    cum_b_.resize(m_);
    double total = 0.0;
    for (std::size_t j = 0; j < m_; ++j) cum_b_[j] = total += b_[j];
    a_.assign(a, a + n);
    x_.assign(x, x + n);
    xs_.resize(n);
    for (std::size_t i = 0; i < n; ++i) xs_[i] = decreasing_ ? -x[i] : x[i];
    z_.resize(n);
    if (squash_on_) {
      squash_.fit(xs_.data(), n);
      for (std::size_t i = 0; i < n; ++i) z_[i] = squash_(xs_[i]);
    } else {
      z_ = xs_;
    }
    order_.resize(n);
    std::iota(order_.begin(), order_.end(), std::size_t(0));
    std::stable_sort(order_.begin(), order_.end(),
                     [&](std::size_t p, std::size_t q) { return z_[p] < z_[q]; });
    solve(s);
    factor();
    if (out != nullptr) write_output(out);
    return converged;
  }

  std::size_t input_size() const { return n_; }
  std::size_t output_size() const {
    return output_ == BirkhoffOutput::plan ? n_ * m_ : output_ == BirkhoffOutput::rank ? n_ : m_;
  }

  // out = J^T v (the gradient with respect to x).
  void vjp(const double* v, double* out) {
    std::vector<double> vplan(support_.size());
    std::fill(out, out + n_, 0.0);
    for (std::size_t e = 0; e < support_.size(); ++e) {
      const Entry& s = support_[e];
      vplan[e] = plan_cotangent(v, s.i, s.j);
      if (output_ == BirkhoffOutput::sort) out[s.i] += s.p * v[s.j] / b_[s.j];
    }
    // u = d L / d(f, g) through dP; z = M^+ u; dL/dC on S
    std::vector<double> u(n_ + m_, 0.0);
    for (std::size_t e = 0; e < support_.size(); ++e) {
      const Entry& s = support_[e];
      const double w = vplan[e] * s.k / eps_;
      u[s.i] += w;
      u[n_ + s.j] += w;
    }
    const std::vector<double> zs = solve_laplacian(u);
    std::vector<double> zbar(n_, 0.0);
    for (std::size_t e = 0; e < support_.size(); ++e) {
      const Entry& s = support_[e];
      const double cbar = s.k * (zs[s.i] + zs[n_ + s.j] - vplan[e] / eps_);
      zbar[s.i] += cbar * sinkhorn_detail::cost_deriv(z_[s.i] - y_[s.j], power_);
    }
    pull_back(zbar, out);
  }

  // out = J u.
  void jvp(const double* u, double* out) {
    std::vector<double> dz(n_);
    if (squash_on_) {
      std::vector<double> dxs(u, u + n_);
      if (decreasing_) {
        for (double& d : dxs) d = -d;
      }
      squash_.jvp(xs_.data(), dxs.data(), n_, dz.data());
    } else {
      for (std::size_t i = 0; i < n_; ++i) dz[i] = decreasing_ ? -u[i] : u[i];
    }
    std::vector<double> rhs(n_ + m_, 0.0), dc(support_.size());
    for (std::size_t e = 0; e < support_.size(); ++e) {
      const Entry& s = support_[e];
      dc[e] = sinkhorn_detail::cost_deriv(z_[s.i] - y_[s.j], power_) * dz[s.i];
      rhs[s.i] += s.k * dc[e];
      rhs[n_ + s.j] += s.k * dc[e];
    }
    const std::vector<double> d = solve_laplacian(rhs);
    const std::size_t rows = output_size();
    std::fill(out, out + rows, 0.0);
    for (std::size_t e = 0; e < support_.size(); ++e) {
      const Entry& s = support_[e];
      const double dp = s.k * (d[s.i] + d[n_ + s.j] - dc[e]) / eps_;
      switch (output_) {
        case BirkhoffOutput::plan:
          out[s.i + s.j * n_] = dp;
          break;
        case BirkhoffOutput::rank:
          out[s.i] += static_cast<double>(n_) * dp * cum_b_[s.j] / a_[s.i];
          break;
        case BirkhoffOutput::sort:
          out[s.j] += (dp * x_[s.i] + s.p * u[s.i]) / b_[s.j];
          break;
      }
    }
  }

  // Marginal error, Newton iterations, entries of the support of the last call.
  int iterations = 0;
  double error = 0.0;
  bool converged = false;
  std::size_t support_size() const { return support_.size(); }

 private:
  struct Entry {
    std::size_t i, j;
    double k;  // a_i b_j
    double p;  // the plan's entry
  };

  double cost(std::size_t i, std::size_t j) const {
    return sinkhorn_detail::cost(z_[i] - y_[j], power_);
  }

  // The dual at (f, g), with the marginal residuals a - P 1 and b - P^T 1.
  double dual(const std::vector<double>& f, const std::vector<double>& g,
              std::vector<double>* res) {
    double value = 0.0;
    if (res != nullptr) res->assign(n_ + m_, 0.0);
    for (std::size_t i = 0; i < n_; ++i) value += a_[i] * f[i];
    for (std::size_t j = 0; j < m_; ++j) value += b_[j] * g[j];
    double penalty = 0.0;
    for (std::size_t j = 0; j < m_; ++j) {
      poll_every(j);
      double col = 0.0;
      for (std::size_t i = 0; i < n_; ++i) {
        const double t = f[i] + g[j] - cost(i, j);
        if (t <= 0.0) continue;
        const double k = a_[i] * b_[j];
        const double q = t / eps_;  // divided first: no overflow at huge eps
        penalty += k * t * q;
        if (res != nullptr) {
          const double p = k * q;
          (*res)[i] += p;
          col += p;
        }
      }
      if (res != nullptr) (*res)[n_ + j] = col;
    }
    if (res != nullptr) {
      for (std::size_t i = 0; i < n_; ++i) (*res)[i] = a_[i] - (*res)[i];
      for (std::size_t j = 0; j < m_; ++j) (*res)[n_ + j] = b_[j] - (*res)[n_ + j];
    }
    return value - 0.5 * penalty;
  }

  // The largest marginal error relative to the marginal.
  double marginal_error(const std::vector<double>& res) const {
    double err = 0.0;
    for (std::size_t i = 0; i < n_; ++i) err = std::max(err, std::fabs(res[i]) / a_[i]);
    for (std::size_t j = 0; j < m_; ++j) err = std::max(err, std::fabs(res[n_ + j]) / b_[j]);
    return err;
  }

  // The exact maximizer of the dual in one potential (of value i when
  // side == 0, else of target i), the others fixed: t with
  // sum_k w_k [t - h_k]_+ = eps, h_k = C - (other potential).
  double best_potential(int side, std::size_t i, const std::vector<double>& f,
                        const std::vector<double>& g) const {
    const std::size_t len = side == 0 ? m_ : n_;
    // t <= min_k h_k + eps / w_k at the minimizing k: only the h_k below
    // that bound can be active, usually few of them
    double low = std::numeric_limits<double>::infinity(), bound = low;
    for (std::size_t k = 0; k < len; ++k) {
      const double h = side == 0 ? cost(i, k) - g[k] : cost(k, i) - f[k];
      const double w = side == 0 ? b_[k] : a_[k];
      if (h < low || (h == low && h + eps_ / w < bound)) {
        low = h;
        bound = h + eps_ / w;
      }
    }
    std::vector<std::pair<double, double>> hw;
    for (std::size_t k = 0; k < len; ++k) {
      const double h = side == 0 ? cost(i, k) - g[k] : cost(k, i) - f[k];
      if (h <= bound) hw.emplace_back(h, side == 0 ? b_[k] : a_[k]);
    }
    std::sort(hw.begin(), hw.end());
    double sw = 0.0, swh = 0.0, t = hw[0].first;
    for (std::size_t k = 0; k < hw.size(); ++k) {
      sw += hw[k].second;
      swh += hw[k].second * hw[k].first;
      t = (eps_ + swh) / sw;  // all of the first k + 1 active
      if (k + 1 == hw.size() || t <= hw[k + 1].first) break;
    }
    return t;
  }

  // Dual potentials of the hard transport (north-west corner rule on the
  // sorted points: f_i + g_j = C_ij on its support, <= elsewhere).
  void hard_potentials(std::vector<double>& f, std::vector<double>& g) {
    const std::vector<std::size_t>& order = order_;
    std::size_t i = 0, j = 0;
    double ra = a_[order[0]], rb = b_[0];
    f[order[0]] = 0.0;
    g[0] = cost(order[0], 0);
    while (true) {
      if (ra < rb) {
        rb -= ra;
        if (++i == n_) break;
        ra = a_[order[i]];
        f[order[i]] = cost(order[i], j) - g[j];
      } else {
        ra -= rb;
        if (++j == m_) break;
        rb = b_[j];
        g[j] = cost(order[i], j) - f[order[i]];
      }
    }
    for (++i; i < n_; ++i) f[order[i]] = cost(order[i], m_ - 1) - g[m_ - 1];
    for (++j; j < m_; ++j) g[j] = cost(order[n_ - 1], j) - f[order[n_ - 1]];
  }

  void collect_support(const std::vector<double>& f, const std::vector<double>& g) {
    support_.clear();
    for (std::size_t j = 0; j < m_; ++j) {
      poll_every(j);
      for (std::size_t i = 0; i < n_; ++i) {
        const double t = f[i] + g[j] - cost(i, j);
        if (t > 0.0) {
          const double k = a_[i] * b_[j];
          support_.push_back({i, j, k, k * t / eps_});
        }
      }
    }
  }

  // Every potential set to its exact maximizer, the values' then the
  // targets'.
  void block_ascent(std::vector<double>& f, std::vector<double>& g) const {
    for (std::size_t i = 0; i < n_; ++i) {
      poll_every(i);
      f[i] = best_potential(0, i, f, g);
    }
    for (std::size_t j = 0; j < m_; ++j) {
      poll_every(j);
      g[j] = best_potential(1, j, f, g);
    }
  }

  // The caller's interrupt poll, every 64 steps of a pass over the plan.
  void poll_every(std::size_t step) const {
    if (poll_ != nullptr && *poll_ && step % 64 == 0) (*poll_)();
  }

  void solve(const BirkhoffSettings& s) {
    poll_ = &s.poll;
    std::vector<double> f(n_), g(m_), res;
    hard_potentials(f, g);
    // Exact block ascent once on each side gives every value and target a
    // support to start the Newton iterations from.
    block_ascent(f, g);
    double value = dual(f, g, &res);
    error = marginal_error(res);
    iterations = 0;
    std::vector<double> nf(n_), ng(m_), nres;
    // Once within tol, one more full Newton step: exact (to rounding) when
    // the support is the solution's, and kept only if it helps.
    bool polishing = false;
    const double tol = std::max(s.tol, attainable_error());
    while (iterations < s.max_iter) {
      if (error <= tol) {
        if (polishing || error <= 1e-14) break;
        polishing = true;
      }
      ++iterations;
      collect_support(f, g);
      factor();
      // Newton direction: M d = eps * residual (M pinned per component).
      std::vector<double> rhs(n_ + m_);
      for (std::size_t k = 0; k < n_ + m_; ++k) rhs[k] = eps_ * res[k];
      const std::vector<double> d = solve_laplacian(rhs);
      double slope = 0.0;
      for (std::size_t k = 0; k < n_ + m_; ++k) slope += res[k] * d[k];
      // Backtracking (Armijo) on the dual; near the solution, where the
      // dual's change is below rounding, a step that halves the marginal
      // error is taken as well.
      double step = 1.0, next = value;
      bool moved = false;
      for (int halving = 0; halving < (polishing ? 1 : 40) && !moved; ++halving, step *= 0.5) {
        for (std::size_t i = 0; i < n_; ++i) nf[i] = f[i] + step * d[i];
        for (std::size_t j = 0; j < m_; ++j) ng[j] = g[j] + step * d[n_ + j];
        next = dual(nf, ng, &nres);
        const double next_error = marginal_error(nres);
        moved = polishing ? next_error < error
                          : next >= value + 1e-4 * step * slope || next_error <= 0.5 * error;
      }
      if (moved) {
        f.swap(nf);
        g.swap(ng);
        res.swap(nres);
        value = next;
      }
      // Values or targets left without support, and any step the line
      // search refused: exact block ascent, which never lowers the dual.
      if (!polishing && (!moved || has_isolated(res))) {
        block_ascent(f, g);
        value = dual(f, g, &res);
      }
      error = marginal_error(res);
    }
    converged = error <= tol;
    collect_support(f, g);
    poll_ = nullptr;
  }

  // The marginal error rounding allows: the plan's entries are differences
  // of potentials of the size of the costs, divided by eps.
  double attainable_error() const {
    double big = 0.0;
    for (std::size_t i = 0; i < n_; ++i) {
      big = std::max({big, cost(i, 0), cost(i, m_ - 1)});
    }
    return 1e-14 * std::max(big, 1.0) / eps_;
  }

  // Whether a value or target has no support: its row (column) of the plan
  // sums to exactly 0, so its residual is exactly its weight.
  bool has_isolated(const std::vector<double>& res) const {
    for (std::size_t i = 0; i < n_; ++i) {
      if (res[i] == a_[i]) return true;
    }
    for (std::size_t j = 0; j < m_; ++j) {
      if (res[n_ + j] == b_[j]) return true;
    }
    return false;
  }

  // Factors the Laplacian of the current support, with the first node of
  // each connected component pinned (removed); nodes without support are
  // their own components and pinned.
  void factor() {
    const std::size_t nodes = n_ + m_;
    std::vector<std::size_t> parent(nodes);
    std::iota(parent.begin(), parent.end(), std::size_t(0));
    auto find = [&](std::size_t v) {
      while (parent[v] != v) v = parent[v] = parent[parent[v]];
      return v;
    };
    for (const Entry& s : support_) {
      const std::size_t r1 = find(s.i), r2 = find(n_ + s.j);
      if (r1 != r2) parent[std::max(r1, r2)] = std::min(r1, r2);
    }
    // Nodes numbered in the order of their positions (values by z, targets
    // by y, merged): the support of a plan between sorted points is a
    // staircase, so the Laplacian is banded in this order and factors
    // without fill outside the band.
    index_.assign(nodes, -1);
    Eigen::Index free = 0;
    std::size_t j = 0;
    for (std::size_t r = 0; r <= n_; ++r) {
      const std::size_t i = r < n_ ? order_[r] : 0;
      while (j < m_ && (r == n_ || y_[j] <= z_[i])) {
        if (find(n_ + j) != n_ + j) index_[n_ + j] = free++;  // a component's root stays pinned
        ++j;
      }
      if (r < n_ && find(i) != i) index_[i] = free++;
    }
    std::vector<double> diag(nodes, 0.0);
    std::vector<Eigen::Triplet<double>> t;
    t.reserve(support_.size() + nodes);
    for (const Entry& s : support_) {
      diag[s.i] += s.k;
      diag[n_ + s.j] += s.k;
      const Eigen::Index p = index_[s.i], q = index_[n_ + s.j];
      if (p >= 0 && q >= 0) t.emplace_back(std::max(p, q), std::min(p, q), s.k);
    }
    for (std::size_t v = 0; v < nodes; ++v) {
      if (index_[v] >= 0) t.emplace_back(index_[v], index_[v], diag[v]);
    }
    Eigen::SparseMatrix<double> lap(free, free);
    lap.setFromTriplets(t.begin(), t.end());
    free_ = free;
    if (free > 0) ldlt_->compute(lap);
  }

  // x with M x = rhs on the unpinned nodes and 0 on the pinned ones.
  std::vector<double> solve_laplacian(const std::vector<double>& rhs) const {
    std::vector<double> x(n_ + m_, 0.0);
    if (free_ == 0) return x;
    Eigen::VectorXd r(free_);
    for (std::size_t v = 0; v < n_ + m_; ++v) {
      if (index_[v] >= 0) r[index_[v]] = rhs[v];
    }
    const Eigen::VectorXd sol = ldlt_->solve(r);
    for (std::size_t v = 0; v < n_ + m_; ++v) {
      if (index_[v] >= 0) x[v] = sol[index_[v]];
    }
    return x;
  }

  // The cotangent of the plan entry (i, j) for the output's cotangent v.
  double plan_cotangent(const double* v, std::size_t i, std::size_t j) const {
    switch (output_) {
      case BirkhoffOutput::plan:
        return v[i + j * n_];
      case BirkhoffOutput::rank:
        return static_cast<double>(n_) * v[i] * cum_b_[j] / a_[i];
      case BirkhoffOutput::sort:
        return v[j] * x_[i] / b_[j];
    }
    return 0.0;
  }

  void write_output(double* out) const {
    const std::size_t rows = output_size();
    std::fill(out, out + rows, 0.0);
    for (const Entry& s : support_) {
      switch (output_) {
        case BirkhoffOutput::plan:
          out[s.i + s.j * n_] = s.p;
          break;
        case BirkhoffOutput::rank:
          out[s.i] += s.p * cum_b_[s.j];
          break;
        case BirkhoffOutput::sort:
          out[s.j] += s.p * x_[s.i];
          break;
      }
    }
    if (output_ == BirkhoffOutput::rank) {
      for (std::size_t i = 0; i < n_; ++i) out[i] *= static_cast<double>(n_) / a_[i];
    } else if (output_ == BirkhoffOutput::sort) {
      for (std::size_t j = 0; j < m_; ++j) out[j] /= b_[j];
    }
  }

  // out += d/dx of the points' cotangent zbar (through the squash and the
  // sign of `decreasing`).
  void pull_back(const std::vector<double>& zbar, double* out) const {
    std::vector<double> xsbar(n_, 0.0);
    if (squash_on_) {
      squash_.vjp(xs_.data(), zbar.data(), n_, xsbar.data());
    } else {
      xsbar = zbar;
    }
    for (std::size_t i = 0; i < n_; ++i) out[i] += decreasing_ ? -xsbar[i] : xsbar[i];
  }

  std::size_t n_ = 0, m_ = 0;
  BirkhoffOutput output_ = BirkhoffOutput::plan;
  double eps_ = 1e-3, power_ = 2.0;
  bool squash_on_ = true, decreasing_ = false;
  std::vector<double> y_, b_, a_, x_, xs_, z_, cum_b_;
  Squash squash_;
  std::vector<Entry> support_;
  std::vector<std::size_t> order_;  // the values by increasing z
  const std::function<void()>* poll_ = nullptr;  // the settings' poll, during forward()
  std::vector<Eigen::Index> index_;
  Eigen::Index free_ = 0;
  // behind a pointer: Eigen's factorizations cannot be copied or moved, and
  // the glue keeps the columns' operators in a vector
  using Factor =
      Eigen::SimplicialLDLT<Eigen::SparseMatrix<double>, Eigen::Lower, Eigen::NaturalOrdering<int>>;
  std::unique_ptr<Factor> ldlt_ = std::make_unique<Factor>();
};

static_assert(is_column_operator<BirkhoffOperator>::value,
              "BirkhoffOperator must meet the operator contract (operator.hpp)");

}  // namespace diffrank
