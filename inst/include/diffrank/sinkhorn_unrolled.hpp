// A reference for the tests of the Sinkhorn operators (sinkhorn.hpp): the
// transport solved by a fixed number of plain dense log-domain iterations and
// differentiated by reverse mode through every iteration, the derivative the
// implicit one of Sinkhorn1D (sinkhorn_solver.hpp) must match as the number
// of iterations grows. O(n m) memory per iteration: small problems only.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "sinkhorn_solver.hpp"

namespace diffrank {

// The same transport solved by a fixed number of plain dense log-domain
// iterations from zero potentials, differentiated by reverse-mode through
// every iteration (stores all iterates). Only for small problems: it is the
// reference the implicit derivatives are tested against.
class SinkhornUnrolled {
 public:
  SinkhornUnrolled(const double* z, const double* a, std::size_t n, const double* y, const double* b,
                   std::size_t m, double eps, double power, int iterations)
      : z_(z), a_(a), y_(y), b_(b), n_(n), m_(m), eps_(eps), power_(power), K_(iterations),
        C_(n * m), P_(n * m) {
    for (std::size_t j = 0; j < m; ++j)
      for (std::size_t i = 0; i < n; ++i) C_[i + j * n] = sinkhorn_detail::cost(z[i] - y[j], power);
    g_.assign(static_cast<std::size_t>(K_) + 1, std::vector<double>(m, 0.0));
    f_.assign(static_cast<std::size_t>(K_) + 2, std::vector<double>(n, 0.0));
    for (int k = 1; k <= K_ + 1; ++k) {
      update_f(g_[k - 1], f_[k]);
      if (k <= K_) update_g(f_[k], g_[k]);
    }
    for (std::size_t j = 0; j < m; ++j)
      for (std::size_t i = 0; i < n; ++i)
        P_[i + j * n] = std::exp((f_[K_ + 1][i] + g_[K_][j] - C_[i + j * n]) / eps_);
  }

  std::size_t size(int side) const { return side == 0 ? n_ : m_; }

  void apply(int dst, const double* v, double* out) const {
    if (dst == 0) {
      for (std::size_t i = 0; i < n_; ++i) {
        double acc = 0.0;
        for (std::size_t j = 0; j < m_; ++j) acc += P_[i + j * n_] * (v ? v[j] : 1.0);
        out[i] = acc;
      }
    } else {
      for (std::size_t j = 0; j < m_; ++j) {
        double acc = 0.0;
        for (std::size_t i = 0; i < n_; ++i) acc += P_[i + j * n_] * (v ? v[i] : 1.0);
        out[j] = acc;
      }
    }
  }

  void vjp_plan(std::size_t rank, const double* const* u, const double* const* w, double* zbar,
                double* bbar, double* ptu0 = nullptr, double* pw0 = nullptr) const {
    const std::size_t n = n_, m = m_;
    if (rank > 0 && ptu0 != nullptr) {
      std::vector<double> t(m);
      apply(1, u[0], t.data());
      for (std::size_t j = 0; j < m; ++j) ptu0[j] += t[j];
    }
    if (rank > 0 && pw0 != nullptr) {
      std::vector<double> t(n);
      apply(0, w[0], t.data());
      for (std::size_t i = 0; i < n; ++i) pw0[i] += t[i];
    }
    std::vector<double> Cbar(n * m, 0.0), fbar(n, 0.0), gbar(m, 0.0);
    for (std::size_t j = 0; j < m; ++j) {
      for (std::size_t i = 0; i < n; ++i) {
        double gij = 0.0;
        for (std::size_t q = 0; q < rank; ++q) gij += u[q][i] * w[q][j];
        const double v = gij * P_[i + j * n] / eps_;
        fbar[i] += v;
        gbar[j] += v;
        Cbar[i + j * n] -= v;
      }
    }
    // Reverse sweep. On entering step k, fbar is the adjoint of f^k = F(g^{k-1});
    // F and G are the two log-sum-exp updates, with df_i/dg_j = -A_ij,
    // df_i/dC_ij = A_ij (A = softmax over j), and the same for G over i.
    for (int k = K_ + 1; k >= 1; --k) {
      const std::vector<double>& fk = f_[k];
      const std::vector<double>& gp = g_[k - 1];
      std::vector<double> gbar_prev(m, 0.0);
      if (k == K_ + 1) gbar_prev = gbar;
      for (std::size_t j = 0; j < m; ++j) {
        for (std::size_t i = 0; i < n; ++i) {
          const double aij = std::exp((fk[i] + gp[j] - C_[i + j * n]) / eps_) / a_[i];
          gbar_prev[j] -= fbar[i] * aij;
          Cbar[i + j * n] += fbar[i] * aij;
        }
      }
      std::fill(fbar.begin(), fbar.end(), 0.0);
      if (k - 1 >= 1) {
        const std::vector<double>& fp = f_[k - 1];
        for (std::size_t j = 0; j < m; ++j) {
          for (std::size_t i = 0; i < n; ++i) {
            const double bij = std::exp((fp[i] + gp[j] - C_[i + j * n]) / eps_) / b_[j];
            fbar[i] -= gbar_prev[j] * bij;
            Cbar[i + j * n] += gbar_prev[j] * bij;
          }
          bbar[j] += gbar_prev[j] * eps_ / b_[j];
        }
      }
    }
    for (std::size_t i = 0; i < n; ++i) {
      double acc = 0.0;
      for (std::size_t j = 0; j < m; ++j)
        acc += Cbar[i + j * n] * sinkhorn_detail::cost_deriv(z_[i] - y_[j], power_);
      zbar[i] += acc;
    }
  }

 private:
  void update_f(const std::vector<double>& g, std::vector<double>& f) const {
    for (std::size_t i = 0; i < n_; ++i) {
      double mx = -std::numeric_limits<double>::infinity();
      for (std::size_t j = 0; j < m_; ++j) mx = std::max(mx, (g[j] - C_[i + j * n_]) / eps_);
      double s = 0.0;
      for (std::size_t j = 0; j < m_; ++j) s += std::exp((g[j] - C_[i + j * n_]) / eps_ - mx);
      f[i] = eps_ * (std::log(a_[i]) - mx - std::log(s));
    }
  }
  void update_g(const std::vector<double>& f, std::vector<double>& g) const {
    for (std::size_t j = 0; j < m_; ++j) {
      double mx = -std::numeric_limits<double>::infinity();
      for (std::size_t i = 0; i < n_; ++i) mx = std::max(mx, (f[i] - C_[i + j * n_]) / eps_);
      double s = 0.0;
      for (std::size_t i = 0; i < n_; ++i) s += std::exp((f[i] - C_[i + j * n_]) / eps_ - mx);
      g[j] = eps_ * (std::log(b_[j]) - mx - std::log(s));
    }
  }

  const double *z_, *a_, *y_, *b_;
  std::size_t n_, m_;
  double eps_, power_;
  int K_;
  std::vector<double> C_, P_;
  std::vector<std::vector<double>> f_, g_;
};

}  // namespace diffrank
