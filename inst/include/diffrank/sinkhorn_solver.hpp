// The entropic optimal transport solver in one dimension behind the Sinkhorn
// sorting operators (sinkhorn.hpp), after Cuturi, Teboul and Vert 2019,
// "Differentiable ranking and sorting using optimal transport", NeurIPS.
//
// The solver works on sorted values, where the Gibbs kernel exp(-c / eps) is
// numerically banded around the monotone matching: each row visits only the
// entries that can change a result at double precision, found with a bound
// that proves the rest negligible, so smaller eps costs less per iteration,
// and memory stays O(n + m). Iterations start from the dual potentials of the
// hard sort, are Anderson-accelerated (Walker and Ni 2011), and switch to
// Newton steps on the semi-dual when Sinkhorn's linear rate degrades at small
// eps. (Eps scaling, the alternative start kept for tests and benchmarks, is
// a continuation: each eps of the schedule is solved, by Sinkhorn and Newton
// steps, before the next.) Derivatives come from differentiating the
// fixed-point conditions once (implicit function theorem), not the
// iterations.
//
// One problem can use several threads: the rows of a potential update (and
// of the plan products) are independent, so they are cut into ranges that a
// runner given by the caller executes (the core knows no threading
// library). Every row is computed exactly as in a serial run and the
// marginal error is summed serially in row order. The passes of the
// derivatives also add each row into sums over the other side; those sums
// are taken over chunks of rows fixed by the problem, then added in chunk
// order. So the results do not depend on the number of threads, nor on the
// cut.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <vector>

#include "sinkhorn_kernels.hpp"

namespace diffrank {

struct SinkhornOptions {
  double eps = 1e-2;            // entropic regularization, in units of the cost
  double power = 2.0;           // cost |x - y|^power
  double tol = 1e-6;            // stop when ||P^T 1 - b||_1 <= tol
  int max_iter = 1000;          // Sinkhorn iterations (one f and one g update each)
  bool scaling = false;         // eps scaling from zero potentials (without warm_start):
                                // eps = kScalingStart * kScalingFactor^k down to eps,
                                // each solved to kStageTol before the next
  bool warm_start = true;       // start from the dual potentials of the hard sort
  bool rescue = false;          // when a warm start does not converge, solve again by eps
                                // scaling (which it can stall without: few targets at
                                // small eps) and keep the better of the two
  bool banded = true;           // skip kernel entries that cannot matter
  int newton_after = -1;        // Sinkhorn iterations before Newton steps may start;
                                // -1: 10 with at most kDenseSchur targets, else 50
  // Called between iterations and every kPollRows kernel rows, from the
  // thread that runs the problem; it may throw to abandon the work (the R
  // glue throws when the user interrupts). Empty: never called.
  std::function<void()> poll;
  // Threads inside one problem: run_parts(parts, body) must call body(p) once
  // for every p < parts, in any order and on any threads; unset (or parts =
  // 1) runs serially. Used for problems of at least kParallelRows rows.
  std::size_t parts = 1;
  std::function<void(std::size_t, const std::function<void(std::size_t)>&)> run_parts;
};

struct SinkhornStatus {
  int iterations = 0;
  double error = std::numeric_limits<double>::infinity();
  bool converged = false;
  double entries = 0.0;  // kernel entries evaluated by the iterations (for benchmarks)
};

namespace sinkhorn_detail {

constexpr std::size_t kBlock = 32;
constexpr std::size_t kPollRows = 1024;   // kernel rows between two polls (a multiple of kDotRows)
constexpr std::size_t kDenseSchur = 400;  // larger Schur complements use conjugate gradients
constexpr int kAndersonDepth = 8;         // iterates combined by Anderson acceleration
constexpr double kScalingStart = 1.0;     // first eps of eps scaling
constexpr double kScalingFactor = 0.5;    // eps scaling: eps_{k+1} = max(eps, factor eps_k)
constexpr double kStageTol = 1e-6;        // eps scaling: marginal error that ends a stage
constexpr std::size_t kParallelRows = 512;  // fewer rows per update: one thread
constexpr std::size_t kDotRows = 4;         // rows whose products with a vector run side by side
constexpr std::size_t kMaxChunks = 64;      // row chunks of one pass of the VJP (row_pass)

// out[g] = sum of row[g][l] * v[l] over l in [lo[g], hi[g]), g < kDotRows,
// each sum taken from 0 in increasing l: the same values as one loop per row.
// One loop's additions form a chain, each waiting for the previous one; the
// rows' chains are interleaved where their ranges overlap, so that they run
// side by side in the pipeline.
inline void dot_rows(double* const* row, const std::size_t* lo, const std::size_t* hi,
                     const double* v, double* out) {
  static_assert(kDotRows == 4, "dot_rows interleaves four rows");
  std::size_t L = lo[0], H = hi[0];
  for (std::size_t g = 1; g < kDotRows; ++g) {
    L = std::max(L, lo[g]);
    H = std::min(H, hi[g]);
  }
  if (L >= H) {  // no common part: one row at a time
    for (std::size_t g = 0; g < kDotRows; ++g) {
      double acc = 0.0;
      for (std::size_t l = lo[g]; l < hi[g]; ++l) acc += row[g][l] * v[l];
      out[g] = acc;
    }
    return;
  }
  // lo[g] <= L < H <= hi[g]: each row is summed over [lo, L), [L, H), [H, hi)
  double acc[kDotRows];
  for (std::size_t g = 0; g < kDotRows; ++g) {
    acc[g] = 0.0;
    for (std::size_t l = lo[g]; l < L; ++l) acc[g] += row[g][l] * v[l];
  }
  double a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  const double *r0 = row[0], *r1 = row[1], *r2 = row[2], *r3 = row[3];
  for (std::size_t l = L; l < H; ++l) {
    const double vl = v[l];
    a0 += r0[l] * vl;
    a1 += r1[l] * vl;
    a2 += r2[l] * vl;
    a3 += r3[l] * vl;
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
  for (std::size_t g = 0; g < kDotRows; ++g) {
    for (std::size_t l = H; l < hi[g]; ++l) acc[g] += row[g][l] * v[l];
    out[g] = acc[g];
  }
}

// Symmetric positive definite solve by Cholesky, in place (a is k x k,
// column-major); a pivot that is not positive (a direction the plan does not
// determine) gets a zero solution component.
inline void cholesky_solve(std::vector<double>& a, std::size_t k, double* rhs) {
  const double tiny = 1e-300;
  for (std::size_t j = 0; j < k; ++j) {
    double d = a[j + j * k];
    for (std::size_t p = 0; p < j; ++p) d -= a[j + p * k] * a[j + p * k];
    const bool ok = d > tiny;
    d = ok ? std::sqrt(d) : 0.0;
    a[j + j * k] = d;
    for (std::size_t i = j + 1; i < k; ++i) {
      double v = a[i + j * k];
      for (std::size_t p = 0; p < j; ++p) v -= a[i + p * k] * a[j + p * k];
      a[i + j * k] = ok ? v / d : 0.0;
    }
  }
  for (std::size_t j = 0; j < k; ++j) {
    double v = rhs[j];
    for (std::size_t p = 0; p < j; ++p) v -= a[j + p * k] * rhs[p];
    rhs[j] = a[j + j * k] > 0.0 ? v / a[j + j * k] : 0.0;
  }
  for (std::size_t j = k; j-- > 0;) {
    double v = rhs[j];
    for (std::size_t p = j + 1; p < k; ++p) v -= a[p + j * k] * rhs[p];
    rhs[j] = a[j + j * k] > 0.0 ? v / a[j + j * k] : 0.0;
  }
}

// Anderson acceleration (type II) of the fixed-point map g -> T(g) of one
// Sinkhorn iteration: the next g combines the last `depth` images so that the
// combined residual T(g) - g is smallest (Walker and Ni 2011). Sinkhorn's
// linear rate degrades as eps decreases; this recovers much of it. Rows of
// the plan stay exact because f is always recomputed from the accelerated g.
class Anderson {
 public:
  Anderson(std::size_t m, int depth) : m_(m), depth_(depth) {}
  void reset() {
    dx_.clear();
    dr_.clear();
    have_prev_ = false;
  }
  // x: current iterate, tx: T(x) on entry, the next iterate on exit.
  void step(const double* x, double* tx) {
    std::vector<double> r(m_);
    for (std::size_t j = 0; j < m_; ++j) r[j] = tx[j] - x[j];
    if (have_prev_) {
      std::vector<double> dt(m_), dr(m_);
      for (std::size_t j = 0; j < m_; ++j) {
        dt[j] = tx[j] - prev_tx_[j];
        dr[j] = r[j] - prev_r_[j];
      }
      dx_.push_back(std::move(dt));
      dr_.push_back(std::move(dr));
      if (static_cast<int>(dx_.size()) > depth_) {
        dx_.erase(dx_.begin());
        dr_.erase(dr_.begin());
      }
    }
    prev_tx_.assign(tx, tx + m_);
    prev_r_ = r;
    have_prev_ = true;
    const std::size_t k = dr_.size();
    if (k == 0) return;
    std::vector<double> A(k * k), rhs(k);
    double trace = 0.0;
    for (std::size_t p = 0; p < k; ++p) {
      for (std::size_t q = 0; q <= p; ++q) {
        double v = 0.0;
        for (std::size_t j = 0; j < m_; ++j) v += dr_[p][j] * dr_[q][j];
        A[p + q * k] = v;
        A[q + p * k] = v;
      }
      trace += A[p + p * k];
      double v = 0.0;
      for (std::size_t j = 0; j < m_; ++j) v += dr_[p][j] * r[j];
      rhs[p] = v;
    }
    if (!(trace > 0.0)) return;
    for (std::size_t p = 0; p < k; ++p) A[p + p * k] += 1e-10 * trace;
    cholesky_solve(A, k, rhs.data());
    for (std::size_t p = 0; p < k; ++p) {
      for (std::size_t j = 0; j < m_; ++j) tx[j] -= rhs[p] * dx_[p][j];
    }
  }

 private:
  std::size_t m_;
  int depth_;
  std::vector<std::vector<double>> dx_, dr_;
  std::vector<double> prev_tx_, prev_r_;
  bool have_prev_ = false;
};

inline double cost(double u, double power) {
  return power == 2.0 ? u * u : std::pow(std::fabs(u), power);
}

// d cost(z - y) / dz
inline double cost_deriv(double u, double power) {
  if (power == 2.0) return 2.0 * u;
  if (u == 0.0) return 0.0;
  return power * std::pow(std::fabs(u), power - 1.0) * (u > 0.0 ? 1.0 : -1.0);
}

}  // namespace sinkhorn_detail

// Entropic transport between n sorted points z with weights a and m sorted
// targets y with weights b (both summing to 1), cost |z - y|^power, in the log
// domain. Side 0 is the points (potential f), side 1 the targets (g). Only
// O(n + m) memory: kernel rows are recomputed when needed.
class Sinkhorn1D {
 public:
  Sinkhorn1D(const double* z, const double* a, std::size_t n, const double* y, const double* b,
             std::size_t m, const SinkhornOptions& opt)
      : opt_(opt) {
    pts_[0] = z;
    pts_[1] = y;
    np_[0] = n;
    np_[1] = m;
    for (int s = 0; s < 2; ++s) {
      const double* w = s == 0 ? a : b;
      logw_[s].resize(np_[s]);
      w_[s] = w;
      for (std::size_t k = 0; k < np_[s]; ++k) logw_[s][k] = std::log(w[k]);
      pot_[s].assign(np_[s], 0.0);
      hint_[s].assign(np_[s], 0);
      width_[s].assign(np_[s], 1);
      // a skipped entry is below e^-T_s times the largest one of its row, so
      // all skipped entries together stay below e^-35 (6e-16) of the row sum
      threshold_[s] = 35.0 + std::log(static_cast<double>(np_[s]) + 1.0);
    }
    stride_ = std::max(n, m) + 4;
    bufs_.assign(1, std::vector<double>(sinkhorn_detail::kDotRows * stride_));
    eps_cur_ = opt_.eps;
  }

  std::size_t size(int side) const { return np_[side]; }
  const double* potential(int side) const { return pot_[side].data(); }

  void set_potentials(const double* f, const double* g) {
    std::copy(f, f + np_[0], pot_[0].begin());
    std::copy(g, g + np_[1], pot_[1].begin());
    eps_cur_ = opt_.eps;
    prepared_[0] = prepared_[1] = false;
  }

  SinkhornStatus solve() {
    entries_ = 0.0;
    SinkhornStatus st = solve_from(opt_.warm_start, opt_.scaling);
    if (st.converged || !opt_.warm_start || !opt_.rescue) return st;
    const std::vector<double> f(pot_[0]), g(pot_[1]);
    SinkhornStatus again = solve_from(false, true);
    again.iterations += st.iterations;
    if (again.converged || again.error < st.error) return again;
    pot_[0] = f;
    pot_[1] = g;
    prepared_[0] = prepared_[1] = false;
    st.iterations = again.iterations;
    st.entries = again.entries;
    return st;
  }

 private:
  // The iterations from the hard sort's potentials (warm) or from zero
  // potentials, by eps scaling when `scaling`; entries_ accumulates.
  SinkhornStatus solve_from(bool warm, bool scaling_asked) {
    SinkhornStatus st;
    const bool scaling = !warm && scaling_asked;
    if (warm) {
      hard_potentials();
      eps_cur_ = opt_.eps;
    } else {
      std::fill(pot_[0].begin(), pot_[0].end(), 0.0);
      std::fill(pot_[1].begin(), pot_[1].end(), 0.0);
      eps_cur_ = scaling ? std::max(opt_.eps, sinkhorn_detail::kScalingStart) : opt_.eps;
    }
    std::vector<double> next(np_[1]);
    sinkhorn_detail::Anderson aa(np_[1], sinkhorn_detail::kAndersonDepth);
    double best_err = std::numeric_limits<double>::infinity();
    std::vector<double> best_g(pot_[1]);
    int at_target = 0;
    double prev_err = std::numeric_limits<double>::infinity();  // eps scaling
    bool newton_last = false;
    sweep(0, pot_[0].data(), nullptr);
    double err = std::numeric_limits<double>::infinity();
    while (st.iterations < opt_.max_iter) {
      poll();
      ++st.iterations;
      err = sweep(1, next.data(), pot_[1].data());
      if (eps_cur_ <= opt_.eps && err <= opt_.tol) {
        st.converged = true;
        break;
      }
      if (scaling) {
        // Eps scaling is a continuation: eps is halved only once the
        // current stage is solved, so that each stage starts from the
        // solution of the previous one, where Newton steps converge. A
        // Newton step follows each plain update that did not halve the error
        // (the one that starts a stage included); the other iterations, and
        // failed Newton steps, are plain updates, which still make progress
        // where Newton steps no longer can (at the rounding floor). Halving
        // eps after every iteration instead reached the target eps with
        // potentials many eps from its solution, where Sinkhorn crawls and
        // the accelerated iteration below can stall.
        const bool slow = !(err <= 0.5 * prev_err);
        prev_err = err;
        if (eps_cur_ > opt_.eps && err <= sinkhorn_detail::kStageTol) {
          eps_cur_ = std::max(opt_.eps, eps_cur_ * sinkhorn_detail::kScalingFactor);
        } else if (slow && !newton_last && newton_step(next)) {
          newton_last = true;
          continue;
        }
        newton_last = false;
      } else {
        // eps_cur_ == opt_.eps: the accelerated iteration
        ++at_target;
        const int newton_after = opt_.newton_after >= 0                           ? opt_.newton_after
                                 : np_[1] <= sinkhorn_detail::kDenseSchur ? 10
                                                                          : 50;
        // safeguard: an extrapolation that made things much worse (or
        // non-finite) is dropped and the iteration restarts from the best g.
        // Checked before any Newton step: a Newton step from such an iterate
        // (with few targets at small eps, one whose plan has fallen apart
        // into blocks) cannot repair it, and would reset the safeguard.
        if (!(err <= 10.0 * best_err)) {
          aa.reset();
          std::copy(best_g.begin(), best_g.end(), next.begin());
        } else {
          if (err < best_err) {
            best_err = err;
            best_g = pot_[1];
          }
          if (at_target > newton_after && newton_step(next)) {
            aa.reset();
            best_err = std::numeric_limits<double>::infinity();
            continue;
          }
          aa.step(pot_[1].data(), next.data());
        }
      }
      pot_[1].swap(next);
      prepared_[1] = false;
      sweep(0, pot_[0].data(), nullptr);
    }
    if (!st.converged) {
      eps_cur_ = opt_.eps;
      err = sweep(1, next.data(), pot_[1].data());
      st.converged = err <= opt_.tol;
    }
    st.error = err;
    st.entries = entries_;
    eps_cur_ = opt_.eps;
    return st;
  }

 public:
  // out[k] = sum_l P_kl v[l] for every k of side `dst` (v lives on the other
  // side); with v == nullptr, the marginal sum_l P_kl. (At the eps of the
  // iterations: opt_.eps outside eps scaling, and after solve().)
  void apply(int dst, const double* v, double* out) {
    const int src = 1 - dst;
    prepare(src);
    const double inv_eps = 1.0 / eps_cur_;
    constexpr std::size_t G = sinkhorn_detail::kDotRows;
    for_rows(dst, [&](std::size_t k0, std::size_t k1, Cache& cache) {
      double* row[G];
      for (std::size_t g = 0; g < G; ++g) row[g] = cache.buf + g * stride_;
      std::size_t lo[G], hi[G];
      for (std::size_t k = k0; k < k1; k += G) {
        // G rows' exponentials in G row buffers, then their products with v
        const std::size_t rows = std::min(G, k1 - k);
        for (std::size_t g = 0; g < rows; ++g) {
          cache.buf = row[g];
          const Range r = band(dst, k + g, cache);
          const double total = sinkhorn_kernels::exp_shift_sum(row[g] + r.lo, r.hi - r.lo,
                                                               pot_[dst][k + g] * inv_eps);
          if (v == nullptr) out[k + g] = total;
          lo[g] = r.lo;
          hi[g] = r.hi;
        }
        if (v == nullptr) continue;
        if (rows == G) {
          sinkhorn_detail::dot_rows(row, lo, hi, v, out + k);
        } else {
          for (std::size_t g = 0; g < rows; ++g) {
            double acc = 0.0;
            for (std::size_t l = lo[g]; l < hi[g]; ++l) acc += row[g][l] * v[l];
            out[k + g] = acc;
          }
        }
      }
      cache.buf = row[0];
    });
  }

  // The plan P (n x m, column-major); for small problems and tests only.
  void dense_plan(double* out) {
    const std::size_t n = np_[0], m = np_[1];
    std::fill(out, out + n * m, 0.0);
    serial_rows(0, [&](std::size_t i, const double* buf, const Range& r) {
      for (std::size_t j = r.lo; j < r.hi; ++j) out[i + j * n] = buf[j];
    });
  }

  // Vector-Jacobian product through the plan at the fixed point. The caller's
  // loss depends on P through sum_ij G_ij P_ij with G = sum_r u_r w_r^T (u_r on
  // the points, w_r on the targets); this adds d loss / dz to zbar and
  // d loss / db to bbar (defined up to a constant, since sum(b) = 1). The
  // optimality conditions are differentiated once; the adjoint system is
  // solved through its Schur complement on the smaller side s with the gauge
  // fixed (first unknown = 0): densely when that side is small, else by
  // conjugate gradients. Every pass runs over the rows of the other side o and
  // computes each row of the plan once, for all the products it enters
  // (row_pass): the right-hand sides, the marginals and the preconditioner
  // in one pass, one pass per conjugate-gradient step, one for the result.
  // The first pass computes P w_0 and P^T u_0 on the way: they are added to
  // pw0 (n values) and ptu0 (m values) when these are not null.
  void vjp_plan(std::size_t rank, const double* const* u, const double* const* w, double* zbar,
                double* bbar, double* ptu0 = nullptr, double* pw0 = nullptr) {
    using sinkhorn_kernels::axpy;
    using sinkhorn_kernels::dot;
    AdjointSystem sys(np_);
    const int o = sys.o, s = sys.s;
    const std::size_t ks = np_[s];
    // G = sum_r a_r c_r^T with a_r on side o, c_r on side s; the products
    // P c_0 (on side o) and P^T a_0 (on side s) go to these when not null
    const double* const* a = o == 0 ? u : w;
    const double* const* c = o == 0 ? w : u;
    double* pc0 = o == 0 ? pw0 : ptu0;
    double* pa0 = o == 0 ? ptu0 : pw0;
    std::vector<std::vector<double>> q(rank, std::vector<double>(ks, 0.0));
    {
      std::vector<double*> out = sys.scatters();
      for (std::size_t r = 0; r < rank; ++r) out.push_back(q[r].data());
      row_pass(o, out.size(), out.data(),
               [&](std::size_t k, const double* p, std::size_t lo, std::size_t hi, double total,
                   double* const* sc) {
                 const std::size_t len = hi - lo;
                 double rk = 0.0;
                 for (std::size_t r = 0; r < rank; ++r) {
                   const double pc = dot(p + lo, c[r] + lo, len);
                   if (r == 0 && pc0 != nullptr) pc0[k] += pc;
                   rk += a[r][k] * pc;
                 }
                 sys.record_row(k, p, lo, hi, total, rk, sc);
                 for (std::size_t r = 0; r < rank; ++r) axpy(a[r][k], p + lo, sc[3 + r] + lo, len);
               });
    }
    if (rank > 0 && pa0 != nullptr) {
      for (std::size_t l = 0; l < ks; ++l) pa0[l] += q[0][l];
    }
    sys.rhs[s].assign(ks, 0.0);
    for (std::size_t l = 0; l < ks; ++l) {
      for (std::size_t r = 0; r < rank; ++r) sys.rhs[s][l] += c[r][l] * q[r][l];
    }
    solve_adjoint(sys);
    vjp_result(
        sys,
        [&](std::size_t i, std::size_t j) {
          double gij = 0.0;
          for (std::size_t r = 0; r < rank; ++r) gij += u[r][i] * w[r][j];
          return gij;
        },
        zbar, bbar);
  }

  // vjp_plan for a cotangent G given entry by entry, G(i, j) for point i and
  // target j (in the solver's sorted order): the VJP of any function of the
  // whole plan, at the cost of a VJP.
  template <class Entry>
  void vjp_entries(Entry&& entry, double* zbar, double* bbar) {
    const int o = AdjointSystem::rows_side(np_);
    auto pg = [&](std::size_t k, const double* p, std::size_t l) {
      return p[l] * (o == 0 ? entry(k, l) : entry(l, k));
    };
    AdjointSystem sys = entry_system(
        [&](std::size_t k, const double* p, std::size_t lo, std::size_t hi) {
          double rk = 0.0;
          for (std::size_t l = lo; l < hi; ++l) rk += pg(k, p, l);
          return rk;
        },
        pg);
    solve_adjoint(sys);
    vjp_result(sys, entry, zbar, bbar);
  }

  // Jacobian-vector product through the plan at the fixed point, the
  // transpose of vjp_plan: for a tangent dz of the points, the plan moves by
  // dP_ij = P_ij (df_i + dg_j - C'_ij dz_i) / eps, where (df, dg) solve the
  // same system as the adjoint, [[D0, P], [P^T, D1]] (df, dg) = (r0, r1)
  // with r0_i = dz_i sum_j P_ij C'_ij and r1_j = sum_i P_ij C'_ij dz_i (the
  // marginals stay fixed), in the same way (schur_side). Writes dP w_r (n
  // values) to dpw[r] for the nw <= 4 target-side vectors w_r, and adds dP^T
  // u_r (m values) to dptu[r] for the nu <= 4 point-side vectors u_r, and
  // dP itself to dplan (n x m, column-major, entries within the band; the
  // caller zeroes it) when dplan is not null. The passes over the plan are
  // those of vjp_plan: the cost of a VJP.
  void jvp_plan(const double* dz, std::size_t nu, const double* const* u, double* const* dptu,
                std::size_t nw, const double* const* w, double* const* dpw,
                double* dplan = nullptr) {
    constexpr std::size_t kMaxVectors = 4;
    const int o = AdjointSystem::rows_side(np_);
    const double* z = pts_[0];
    const double* y = pts_[1];
    const double power = opt_.power;
    // P_kl C'_kl, with the point and target of (k, l) taken from the side of
    // the rows
    auto pc = [&](std::size_t k, const double* p, std::size_t l) {
      return p[l] * sinkhorn_detail::cost_deriv(o == 0 ? z[k] - y[l] : z[l] - y[k], power);
    };
    AdjointSystem sys = entry_system(
        [&](std::size_t k, const double* p, std::size_t lo, std::size_t hi) {
          double acc = 0.0;
          for (std::size_t l = lo; l < hi; ++l) acc += o == 0 ? pc(k, p, l) : pc(k, p, l) * dz[l];
          return o == 0 ? acc * dz[k] : acc;
        },
        [&](std::size_t k, const double* p, std::size_t l) {
          return pc(k, p, l) * (o == 0 ? dz[k] : dz[l]);
        });
    solve_adjoint(sys);
    const double inv_eps = 1.0 / opt_.eps;
    const std::vector<double>* sol = sys.sol;
    row_pass(0, nu, dptu,
             [&](std::size_t i, const double* p, std::size_t lo, std::size_t hi, double,
                 double* const* sc) {
               if (o == 0) sys.solve_row(i, p, lo, hi);
               double acc[kMaxVectors] = {0.0, 0.0, 0.0, 0.0};
               const double fi = sol[0][i], dzi = dz[i];
               for (std::size_t j = lo; j < hi; ++j) {
                 const double e = p[j] * inv_eps *
                                  (fi + sol[1][j] -
                                   sinkhorn_detail::cost_deriv(z[i] - y[j], power) * dzi);
                 for (std::size_t r = 0; r < nw; ++r) acc[r] += e * w[r][j];
                 for (std::size_t r = 0; r < nu; ++r) sc[r][j] += e * u[r][i];
                 if (dplan != nullptr) dplan[i + j * np_[0]] = e;
               }
               for (std::size_t r = 0; r < nw; ++r) dpw[r][i] = acc[r];
             });
  }

 private:
  void poll() const {
    if (opt_.poll) opt_.poll();
  }

  struct Range {
    std::size_t lo, hi;
    double max;
  };

  // The linear system of vjp_plan and jvp_plan, [[D_o, P], [P^T, D_s]]
  // (sol_o, sol_s) = (rhs_o, rhs_s) with D the marginals, solved on the
  // smaller side s. One pass over the rows of side o records each row
  // (record_row: its marginal and right-hand side, and the sums that
  // schur_side needs); the caller fills rhs_s; solve_adjoint() then gives
  // sol_s, and sol_o row by row (solve_row) in a later pass over side o.
  struct AdjointSystem {
    int o, s;
    std::vector<double> marg[2], rhs[2], sol[2];
    std::vector<double> bt, dsq;  // P^T D_o^-1 rhs_o and sum_k P_kl^2 / marg_o[k]

    // The rows of the passes are those of the larger side; the system is
    // solved on the smaller one.
    static int rows_side(const std::size_t* np) { return np[1] <= np[0] ? 0 : 1; }
    explicit AdjointSystem(const std::size_t* np) : o(rows_side(np)), s(1 - o) {
      marg[o].resize(np[o]);
      rhs[o].resize(np[o]);
      marg[s].assign(np[s], 0.0);
      bt.assign(np[s], 0.0);
      dsq.assign(np[s], 0.0);
    }
    // The scatter outputs of the first pass, in the order record_row adds
    // to them.
    std::vector<double*> scatters() { return {marg[s].data(), bt.data(), dsq.data()}; }
    void record_row(std::size_t k, const double* p, std::size_t lo, std::size_t hi, double total,
                    double rk, double* const* sc) {
      using sinkhorn_kernels::axpy;
      using sinkhorn_kernels::axpy_sq;
      const std::size_t len = hi - lo;
      marg[o][k] = total;
      rhs[o][k] = rk;
      axpy(1.0, p + lo, sc[0] + lo, len);
      axpy(rk / total, p + lo, sc[1] + lo, len);
      axpy_sq(1.0 / total, p + lo, sc[2] + lo, len);
    }
    // sol_o = D_o^-1 (rhs_o - P sol_s), row k of side o.
    void solve_row(std::size_t k, const double* p, std::size_t lo, std::size_t hi) {
      sol[o][k] = (rhs[o][k] - sinkhorn_kernels::dot(p + lo, sol[s].data() + lo, hi - lo)) /
                  marg[o][k];
    }
  };

  // The adjoint system whose right-hand sides are the row and column sums of
  // a matrix H on the plan's support, from one pass over the rows of side o:
  // row_sum(k, p, lo, hi) gives row k's sum (rhs_o), entry(k, p, l) its entry
  // l, scattered into rhs_s (computed again there: the rows of a pass may run
  // on several threads).
  template <class RowSum, class Entry>
  AdjointSystem entry_system(RowSum&& row_sum, Entry&& entry) {
    AdjointSystem sys(np_);
    sys.rhs[sys.s].assign(np_[sys.s], 0.0);
    std::vector<double*> out = sys.scatters();
    out.push_back(sys.rhs[sys.s].data());
    row_pass(sys.o, out.size(), out.data(),
             [&](std::size_t k, const double* p, std::size_t lo, std::size_t hi, double total,
                 double* const* sc) {
               sys.record_row(k, p, lo, hi, total, row_sum(k, p, lo, hi), sc);
               for (std::size_t l = lo; l < hi; ++l) sc[3][l] += entry(k, p, l);
             });
    return sys;
  }

  // sol_s by schur_side; sol_o is sized, and filled here when side o is the
  // targets (a pass over their rows), else by the caller's last pass over
  // the points, which needs each row of the plan anyway.
  void solve_adjoint(AdjointSystem& sys) {
    schur_side(sys.o, sys.marg, sys.rhs[sys.s], sys.bt, sys.dsq, sys.sol[sys.s]);
    sys.sol[sys.o].resize(np_[sys.o]);
    if (sys.o == 1) {
      row_pass(1, 0, nullptr,
               [&](std::size_t k, const double* p, std::size_t lo, std::size_t hi, double,
                   double* const*) { sys.solve_row(k, p, lo, hi); });
    }
  }

  // The last pass of a VJP through the plan, once the adjoint system is
  // solved: d loss / dz_i = (1/eps) sum_j P_ij C'_ij (sol0_i + sol1_j - G_ij)
  // added to zbar, and sol1 (d loss / db) added to bbar.
  template <class Entry>
  void vjp_result(AdjointSystem& sys, Entry&& entry, double* zbar, double* bbar) {
    const double inv_eps = 1.0 / opt_.eps;
    const double* z = pts_[0];
    const double* y = pts_[1];
    const std::vector<double>* sol = sys.sol;
    const bool solve_rows = sys.o == 0;
    row_pass(0, 0, nullptr,
             [&](std::size_t i, const double* p, std::size_t lo, std::size_t hi, double,
                 double* const*) {
               if (solve_rows) sys.solve_row(i, p, lo, hi);
               const double f = sol[0][i];
               double acc = 0.0;
               for (std::size_t j = lo; j < hi; ++j) {
                 acc += p[j] * sinkhorn_detail::cost_deriv(z[i] - y[j], opt_.power) *
                        (f + sol[1][j] - entry(i, j));
               }
               zbar[i] += acc * inv_eps;
             });
    for (std::size_t j = 0; j < np_[1]; ++j) bbar[j] += sol[1][j];
  }

  // The side-s part of the solution of [[D_o, P], [P^T, D_s]] (sol_o,
  // sol_s) = (rhs_o, rhs_s), sol_s[0] = 0 (the gauge), from what one pass
  // over the rows of side o gave: bt = P^T D_o^-1 rhs_o and dsq_l = sum_k
  // P_kl^2 / marg_o[k]. The Schur complement S = D_s - P^T D_o^-1 P is
  // factored densely when side s is small, else solved by conjugate
  // gradients with one pass over the rows of side o per step.
  void schur_side(int o, const std::vector<double>* marg, const std::vector<double>& rhs_s,
                  const std::vector<double>& bt, const std::vector<double>& dsq,
                  std::vector<double>& sol_s) {
    using sinkhorn_kernels::axpy;
    using sinkhorn_kernels::dot;
    const int s = 1 - o;
    const std::size_t ks = np_[s];
    // b = rhs_s - P^T D_o^-1 rhs_o, diag(S) = marg_s - sum_k P_kl^2 / marg_o[k]
    std::vector<double> b(ks), diag(ks);
    for (std::size_t l = 0; l < ks; ++l) {
      b[l] = rhs_s[l] - bt[l];
      diag[l] = marg[s][l] - dsq[l];
      if (!(diag[l] > 1e-14 * marg[s][l])) diag[l] = marg[s][l] > 0.0 ? marg[s][l] : 1.0;
    }
    sol_s.assign(ks, 0.0);
    if (ks > 1 && ks <= sinkhorn_detail::kDenseSchur) {
      dense_schur(s, marg, b, sol_s);
    } else if (ks > 1) {
      std::vector<double> pt(ks);
      auto op = [&](const std::vector<double>& v, std::vector<double>& out) {
        std::fill(pt.begin(), pt.end(), 0.0);
        double* scatter[1] = {pt.data()};
        row_pass(o, 1, scatter,
                 [&](std::size_t k, const double* p, std::size_t lo, std::size_t hi, double,
                     double* const* sc) {
                   const double t = dot(p + lo, v.data() + lo, hi - lo) / marg[o][k];
                   axpy(t, p + lo, sc[0] + lo, hi - lo);
                 });
        for (std::size_t l = 0; l < ks; ++l) out[l] = marg[s][l] * v[l] - pt[l];
        out[0] = 0.0;
      };
      cg_loop(diag, b, sol_s, op);
    }
  }
  // What band() keeps from row to row of one range of rows: the band of the
  // last point (reused for an equal point), the row buffer of the range and
  // the kernel entries it evaluated.
  struct Cache {
    bool valid = false;
    double d = 0.0;
    std::size_t lo = 0, hi = 0;
    double* buf = nullptr;
    double entries = 0.0;
  };

  Cache serial_cache() {
    Cache cache;
    cache.buf = bufs_[0].data();
    return cache;
  }

  // Runs body(k0, k1, cache) over the rows [0, rows) of side dst: in one range
  // on this thread, or cut into opt_.parts ranges run by opt_.run_parts, each
  // with its own Cache and row buffer. A range never starts inside a run of
  // equal points (band() reuses the band of the previous row for an equal
  // point), so every row is computed as in one serial pass. Entry counts are
  // whole numbers, summed exactly. Each range is handed to body in pieces of
  // kPollRows rows (a multiple of kDotRows) with a poll in between, the same
  // Cache carried over: the rows are computed as in one piece.
  template <class Body>
  void for_rows(int dst, Body&& polled_body) {
    auto body = [&](std::size_t k0, std::size_t k1, Cache& cache) {
      for (std::size_t k = k0; k < k1; k += sinkhorn_detail::kPollRows) {
        if (k > k0) poll();
        polled_body(k, std::min(k1, k + sinkhorn_detail::kPollRows), cache);
      }
    };
    const std::size_t rows = np_[dst];
    std::size_t parts = 1;
    if (opt_.parts > 1 && opt_.run_parts && rows >= sinkhorn_detail::kParallelRows) {
      parts = std::min(opt_.parts, rows / (sinkhorn_detail::kParallelRows / 2));
    }
    if (parts <= 1) {
      Cache cache = serial_cache();
      body(std::size_t(0), rows, cache);
      entries_ += cache.entries;
      return;
    }
    while (bufs_.size() < parts) bufs_.emplace_back(bufs_[0].size());
    const std::vector<std::size_t> start = equal_work_starts(dst, parts);
    std::vector<Cache> caches(parts);
    opt_.run_parts(parts, [&](std::size_t p) {
      caches[p].buf = bufs_[p].data();
      if (start[p] < start[p + 1]) body(start[p], start[p + 1], caches[p]);
    });
    for (const Cache& cache : caches) entries_ += cache.entries;
  }

  // The first rows of `parts` ranges of the rows of side dst (and the number
  // of rows last) with equal shares of the band widths at the last pass over
  // them (the work of a row; the bands change little from one pass to the
  // next), none starting inside a run of equal points; ranges may be empty.
  std::vector<std::size_t> equal_work_starts(int dst, std::size_t parts) const {
    const std::size_t rows = np_[dst];
    const std::size_t* width = width_[dst].data();
    double total = 0.0;
    for (std::size_t k = 0; k < rows; ++k) total += static_cast<double>(width[k]);
    std::vector<std::size_t> start(parts + 1, rows);
    start[0] = 0;
    const double* d = pts_[dst];
    std::size_t k = 0;
    double done = 0.0;
    for (std::size_t p = 1; p < parts; ++p) {
      const double share = total * static_cast<double>(p) / static_cast<double>(parts);
      while (k < rows && done + static_cast<double>(width[k]) <= share) {
        done += static_cast<double>(width[k]);
        ++k;
      }
      while (k > 0 && k < rows && d[k] == d[k - 1]) done += static_cast<double>(width[k++]);
      start[p] = k;
    }
    return start;
  }

  // Calls row(k, p, r) for every row k of side dst in order, on this thread,
  // with p[l] = P_kl on the band r of the row.
  template <class RowFn>
  void serial_rows(int dst, RowFn&& row) {
    prepare(1 - dst);
    Cache cache = serial_cache();
    for (std::size_t k = 0; k < np_[dst]; ++k) {
      const Range r = band(dst, k, cache);
      sinkhorn_kernels::exp_shift_sum(cache.buf + r.lo, r.hi - r.lo, pot_[dst][k] / eps_cur_);
      row(k, static_cast<const double*>(cache.buf), r);
    }
    entries_ += cache.entries;
  }

  // One pass over the rows of side dst computing each row of the plan once:
  // row(k, p, lo, hi, total, scratch) gets p[l] = P_kl for l in [lo, hi) (the
  // band; the rest is negligible) and total = sum_l P_kl, and may add to the
  // arrays scratch[q], q < scatters, on the other side, within [lo, hi). What
  // the rows add is summed into out[q] chunk by chunk: chunks of rows with
  // equal work, set by the problem and the passes before this one alone
  // (never starting inside a run of equal points), each summed in row order,
  // then added to out in chunk order, so the sums do not depend on the
  // number of threads. The chunks run opt_.parts at a time, each with its own
  // row buffer and scratch arrays.
  template <class RowFn>
  void row_pass(int dst, std::size_t scatters, double* const* out, RowFn&& row) {
    const int src = 1 - dst;
    prepare(src);
    const std::size_t rows = np_[dst], ns = np_[src];
    const double inv_eps = 1.0 / opt_.eps;
    // chunks of equal work (set by the problem and the passes before this
    // one), about kParallelRows / 2 rows each, at most kMaxChunks; no empty one
    const std::size_t wanted = std::max<std::size_t>(
        1, std::min(sinkhorn_detail::kMaxChunks, rows / (sinkhorn_detail::kParallelRows / 2)));
    std::vector<std::size_t> start = equal_work_starts(dst, wanted);
    start.erase(std::unique(start.begin(), start.end()), start.end());
    const std::size_t chunks = start.size() - 1;
    std::size_t slots = 1;
    if (opt_.parts > 1 && opt_.run_parts) slots = std::min(opt_.parts, chunks);
    while (bufs_.size() < slots) bufs_.emplace_back(bufs_[0].size());
    std::vector<std::vector<double>> scratch(slots, std::vector<double>(scatters * ns, 0.0));
    std::vector<std::size_t> first(chunks), last(chunks);  // the columns each chunk touched
    std::vector<double> entries(slots, 0.0);
    auto run_chunk = [&](std::size_t ch, std::size_t slot) {
      Cache cache;
      cache.buf = bufs_[slot].data();
      std::vector<double*> sc(scatters);
      for (std::size_t q = 0; q < scatters; ++q) sc[q] = scratch[slot].data() + q * ns;
      std::size_t lo = ns, hi = 0;
      for (std::size_t k = start[ch]; k < start[ch + 1]; ++k) {
        if (k > start[ch] && (k - start[ch]) % sinkhorn_detail::kPollRows == 0) poll();
        const Range r = band(dst, k, cache);
        const double total =
            sinkhorn_kernels::exp_shift_sum(cache.buf + r.lo, r.hi - r.lo, pot_[dst][k] * inv_eps);
        lo = std::min(lo, r.lo);
        hi = std::max(hi, r.hi);
        row(k, static_cast<const double*>(cache.buf), r.lo, r.hi, total, sc.data());
      }
      first[ch] = lo;
      last[ch] = hi;
      entries[slot] += cache.entries;
    };
    for (std::size_t c0 = 0; c0 < chunks; c0 += slots) {
      const std::size_t wave = std::min(slots, chunks - c0);
      if (wave == 1) {
        run_chunk(c0, 0);
      } else {
        opt_.run_parts(wave, [&](std::size_t p) { run_chunk(c0 + p, p); });
      }
      for (std::size_t p = 0; p < wave; ++p) {
        for (std::size_t q = 0; q < scatters; ++q) {
          double* part = scratch[p].data() + q * ns;
          for (std::size_t l = first[c0 + p]; l < last[c0 + p]; ++l) {
            out[q][l] += part[l];
            part[l] = 0.0;
          }
        }
      }
    }
    for (double e : entries) entries_ += e;
  }

  // Block maxima of the potential of side `src`, with prefix and suffix
  // maxima over blocks: they bound every term of a block from above.
  void prepare(int src) {
    if (prepared_[src]) return;
    const std::size_t ns = np_[src], nb = (ns + sinkhorn_detail::kBlock - 1) / sinkhorn_detail::kBlock;
    bmax_[src].assign(nb, -std::numeric_limits<double>::infinity());
    for (std::size_t l = 0; l < ns; ++l) {
      double& b = bmax_[src][l / sinkhorn_detail::kBlock];
      b = std::max(b, pot_[src][l]);
    }
    pre_[src] = bmax_[src];
    suf_[src] = bmax_[src];
    for (std::size_t b = 1; b < nb; ++b) pre_[src][b] = std::max(pre_[src][b], pre_[src][b - 1]);
    for (std::size_t b = nb - 1; b-- > 0;) suf_[src][b] = std::max(suf_[src][b], suf_[src][b + 1]);
    prepared_[src] = true;
  }

  // Fills cache.buf[lo, hi) with (pot_src[l] - c(d - s[l])) / eps for the band of
  // sources l whose terms can matter for destination k of side dst, and
  // returns the band and the largest term. Sources outside the band have
  // pot - c below (a lower bound of the maximum) - T eps: the block bound
  // max(pot over block) - min(c over block) proves it, and the scan stops
  // on a side once the suffix (prefix) maximum of the potential, minus the
  // cost that only grows from there, is below the same level.
  Range band(int dst, std::size_t k, Cache& cache) {
    const int src = 1 - dst;
    const double* s = pts_[src];
    const std::size_t ns = np_[src];
    const double* q = pot_[src].data();
    const double d = pts_[dst][k];
    const double power = opt_.power;
    std::size_t lo = 0, hi = ns;
    const std::size_t B = sinkhorn_detail::kBlock;
    if (opt_.banded && ns > B) {
      if (cache.valid && cache.d == d) {
        lo = cache.lo;
        hi = cache.hi;
      } else {
        const std::size_t h = std::min(hint_[dst][k], ns - 1);
        const double thr = q[h] - sinkhorn_detail::cost(d - s[h], power) - threshold_[src] * eps_cur_;
        const std::size_t nb = bmax_[src].size(), bh = h / B;
        std::size_t blo = bh, bhi = bh;
        for (std::size_t bb = bh + 1; bb < nb; ++bb) {
          const double first = s[bb * B], last = s[std::min(ns, bb * B + B) - 1];
          const double cmin = d < first ? sinkhorn_detail::cost(first - d, power)
                              : d > last ? sinkhorn_detail::cost(d - last, power) : 0.0;
          if (d <= first && suf_[src][bb] - cmin < thr) break;
          if (bmax_[src][bb] - cmin >= thr) bhi = bb;
        }
        for (std::size_t bb = bh; bb-- > 0;) {
          const double first = s[bb * B], last = s[std::min(ns, bb * B + B) - 1];
          const double cmin = d < first ? sinkhorn_detail::cost(first - d, power)
                              : d > last ? sinkhorn_detail::cost(d - last, power) : 0.0;
          if (d >= last && pre_[src][bb] - cmin < thr) break;
          if (bmax_[src][bb] - cmin >= thr) blo = bb;
        }
        lo = blo * B;
        hi = std::min(ns, bhi * B + B);
        cache.valid = true;
        cache.d = d;
        cache.lo = lo;
        cache.hi = hi;
      }
    }
    const double inv_eps = 1.0 / eps_cur_;
    double* buf = cache.buf;
    double* out = buf + lo;
    const double mx = power == 2.0
                          ? sinkhorn_kernels::terms_sq(d, s + lo, q + lo, hi - lo, inv_eps, out)
                          : sinkhorn_kernels::terms_pow(d, s + lo, q + lo, hi - lo, inv_eps, power, out);
    // the next lower bound of the maximum: a local maximum near the old hint
    std::size_t h = std::min(std::max(hint_[dst][k], lo), hi - 1);
    while (h + 1 < hi && buf[h + 1] > buf[h]) ++h;
    while (h > lo && buf[h - 1] > buf[h]) --h;
    hint_[dst][k] = h;
    width_[dst][k] = hi - lo;
    cache.entries += static_cast<double>(hi - lo);
    return {lo, hi, mx};
  }

  // Log-domain update of the potential of side dst, written to out. With
  // old != nullptr (the g update) returns ||P^T 1 - b||_1 for the plan built
  // from the current f and the old g: its column sums are b_j exp((g_old_j -
  // g_new_j) / eps), so the error costs no extra pass.
  double sweep(int dst, double* out, const double* old) {
    const int src = 1 - dst;
    prepare(src);
    if (old != nullptr) err_terms_.resize(np_[dst]);
    for_rows(dst, [&](std::size_t k0, std::size_t k1, Cache& cache) {
      for (std::size_t k = k0; k < k1; ++k) {
        const Range r = band(dst, k, cache);
        const double total =
            sinkhorn_kernels::exp_shift_total(cache.buf + r.lo, r.hi - r.lo, -r.max);
        out[k] = eps_cur_ * (logw_[dst][k] - r.max - std::log(total));
        if (old != nullptr) {
          err_terms_[k] = w_[dst][k] * std::fabs(std::expm1((old[k] - out[k]) / eps_cur_));
        }
      }
    });
    // summed in row order, whatever the threads
    double err = 0.0;
    if (old != nullptr) {
      for (std::size_t k = 0; k < np_[dst]; ++k) err += err_terms_[k];
    }
    prepared_[dst] = false;
    return err;
  }

  // One damped Newton step on the semi-dual J(g) = <a, f(g)> + <b, g>, f(g)
  // the exact f update (so rows stay exact): its gradient is b - P^T 1 and
  // its Hessian -S / eps, S the Schur complement of the adjoint system, so
  // the direction is eps S^{-1} (b - c), gauge fixed. Sinkhorn's linear rate
  // collapses at small eps; Newton's does not. `next` holds G(f) on entry
  // (it gives the column sums for free). Returns false, leaving the state
  // unchanged, when no step length increases J strictly: a step on which J
  // only ties (a zero direction, where the plan has fallen apart into blocks
  // and the Schur complement is singular) is no progress, and reporting it
  // as one skipped the Sinkhorn update in every later iteration.
  bool newton_step(const std::vector<double>& next) {
    const std::size_t n = np_[0], m = np_[1];
    std::vector<double> marg[2], rhs[2], sol[2];
    marg[0].assign(w_[0], w_[0] + n);
    marg[1].resize(m);
    rhs[0].assign(n, 0.0);
    rhs[1].resize(m);
    for (std::size_t j = 0; j < m; ++j) {
      marg[1][j] = w_[1][j] * std::exp((pot_[1][j] - next[j]) / eps_cur_);
      rhs[1][j] = eps_cur_ * (w_[1][j] - marg[1][j]);
    }
    cg_max_ = 200;
    cg_tol_ = 1e-8;
    schur_solve(1, marg, rhs, sol);
    cg_max_ = 0;
    cg_tol_ = 1e-12;
    const std::vector<double> f0(pot_[0]), g0(pot_[1]);
    auto objective = [&]() {
      double j = 0.0;
      for (std::size_t i = 0; i < n; ++i) j += w_[0][i] * pot_[0][i];
      for (std::size_t k = 0; k < m; ++k) j += w_[1][k] * pot_[1][k];
      return j;
    };
    const double j0 = objective();
    double step = 1.0;
    for (int t = 0; t < 12; ++t, step *= 0.5) {
      for (std::size_t k = 0; k < m; ++k) pot_[1][k] = g0[k] + step * sol[1][k];
      prepared_[1] = false;
      sweep(0, pot_[0].data(), nullptr);
      const double j1 = objective();
      if (std::isfinite(j1) && j1 > j0) return true;
    }
    pot_[0] = f0;
    pot_[1] = g0;
    prepared_[0] = prepared_[1] = false;
    return false;
  }

  // Dual potentials of the unregularized problem (the hard sort): the
  // north-west corner rule gives the monotone plan, and f_i + g_j = c_ij on
  // its support.
  void hard_potentials() {
    const std::size_t n = np_[0], m = np_[1];
    const double* z = pts_[0];
    const double* y = pts_[1];
    std::vector<double>& f = pot_[0];
    std::vector<double>& g = pot_[1];
    std::size_t i = 0, j = 0;
    double ra = w_[0][0], rb = w_[1][0];
    f[0] = 0.0;
    g[0] = sinkhorn_detail::cost(z[0] - y[0], opt_.power);
    while (true) {
      if (ra < rb) {
        rb -= ra;
        if (++i == n) break;
        ra = w_[0][i];
        f[i] = sinkhorn_detail::cost(z[i] - y[j], opt_.power) - g[j];
      } else {
        ra -= rb;
        if (++j == m) break;
        rb = w_[1][j];
        g[j] = sinkhorn_detail::cost(z[i] - y[j], opt_.power) - f[i];
      }
    }
    for (++i; i < n; ++i) f[i] = sinkhorn_detail::cost(z[i] - y[m - 1], opt_.power) - g[m - 1];
    for (++j; j < m; ++j) g[j] = sinkhorn_detail::cost(z[n - 1] - y[j], opt_.power) - f[n - 1];
    prepared_[0] = prepared_[1] = false;
  }

  // Solves [[D0, P], [P^T, D1]] (sol0, sol1) = (rhs0, rhs1), D the marginals,
  // by eliminating the side 1 - s and fixing sol_s[0] = 0.
  void schur_solve(int s, std::vector<double>* marg, std::vector<double>* rhs,
                   std::vector<double>* sol) {
    const int o = 1 - s;
    const std::size_t ks = np_[s], ko = np_[o];
    std::vector<double> t(ko), b(ks);
    for (std::size_t k = 0; k < ko; ++k) t[k] = rhs[o][k] / marg[o][k];
    apply(s, t.data(), b.data());
    for (std::size_t k = 0; k < ks; ++k) b[k] = rhs[s][k] - b[k];
    sol[s].assign(ks, 0.0);
    if (ks > 1) {
      if (ks <= sinkhorn_detail::kDenseSchur) {
        dense_schur(s, marg, b, sol[s]);
      } else {
        conjugate_gradients(s, marg, b, sol[s]);
      }
    }
    std::vector<double> ps(ko);
    apply(o, sol[s].data(), ps.data());
    sol[o].resize(ko);
    for (std::size_t k = 0; k < ko; ++k) sol[o][k] = (rhs[o][k] - ps[k]) / marg[o][k];
  }

  // x (x[0] = 0) solving the Schur complement of side s for b, formed
  // densely (side s has at most kDenseSchur points) and factored.
  void dense_schur(int s, const std::vector<double>* marg, const std::vector<double>& b,
                   std::vector<double>& x) {
    const int o = 1 - s;
    const std::size_t ks = np_[s], kr = ks - 1;
    std::vector<double> S(kr * kr, 0.0);
    serial_rows(o, [&](std::size_t k, const double* buf, const Range& r) {
      const double inv = 1.0 / marg[o][k];
      const std::size_t l0 = std::max<std::size_t>(r.lo, 1);
      for (std::size_t l2 = l0; l2 < r.hi; ++l2) {
        const double p2 = buf[l2] * inv;
        double* col = S.data() + (l2 - 1) * kr - 1;
        for (std::size_t l1 = l2; l1 < r.hi; ++l1) col[l1] -= buf[l1] * p2;
      }
    });
    for (std::size_t l = 1; l < ks; ++l) S[(l - 1) + (l - 1) * kr] += marg[s][l];
    std::vector<double> rhs(b.begin() + 1, b.end());
    sinkhorn_detail::cholesky_solve(S, kr, rhs.data());
    x.assign(ks, 0.0);
    std::copy(rhs.begin(), rhs.end(), x.begin() + 1);
  }

  // Preconditioned conjugate gradients on the Schur complement of side s,
  // x[0] = 0, Jacobi preconditioner; each product with the complement costs
  // two passes over the plan (the Newton steps of the forward solve).
  void conjugate_gradients(int s, std::vector<double>* marg, const std::vector<double>& b,
                           std::vector<double>& x) {
    const int o = 1 - s;
    const std::size_t ks = np_[s], ko = np_[o];
    std::vector<double> diag(marg[s]);
    serial_rows(o, [&](std::size_t k, const double* buf, const Range& r) {
      for (std::size_t l = r.lo; l < r.hi; ++l) diag[l] -= buf[l] * buf[l] / marg[o][k];
    });
    for (std::size_t l = 0; l < ks; ++l) {
      if (!(diag[l] > 1e-14 * marg[s][l])) diag[l] = marg[s][l] > 0.0 ? marg[s][l] : 1.0;
    }
    std::vector<double> t(ko);
    auto op = [&](const std::vector<double>& v, std::vector<double>& out) {
      apply(o, v.data(), t.data());
      for (std::size_t k = 0; k < ko; ++k) t[k] /= marg[o][k];
      apply(s, t.data(), out.data());
      for (std::size_t l = 0; l < ks; ++l) out[l] = marg[s][l] * v[l] - out[l];
      out[0] = 0.0;
    };
    cg_loop(diag, b, x, op);
  }

  // Conjugate gradients for op(x) = b with x[0] = 0 (op must return out[0] =
  // 0), preconditioned by diag; stops at ||r|| <= cg_tol_ ||b|| or after
  // cg_max_ steps (0: a bound from the size).
  template <class Op>
  void cg_loop(const std::vector<double>& diag, const std::vector<double>& b,
               std::vector<double>& x, Op&& op) {
    const std::size_t ks = b.size();
    std::vector<double> r(b), zv(ks), p(ks), ap(ks);
    r[0] = 0.0;
    x.assign(ks, 0.0);
    double bnorm = 0.0;
    for (double v : r) bnorm += v * v;
    bnorm = std::sqrt(bnorm);
    if (bnorm == 0.0) return;
    for (std::size_t l = 0; l < ks; ++l) zv[l] = r[l] / diag[l];
    p = zv;
    double rz = 0.0;
    for (std::size_t l = 0; l < ks; ++l) rz += r[l] * zv[l];
    const int max_cg = cg_max_ > 0 ? cg_max_ : static_cast<int>(std::min<std::size_t>(5000, 4 * ks + 100));
    for (int it = 0; it < max_cg; ++it) {
      poll();
      op(p, ap);
      double pap = 0.0;
      for (std::size_t l = 0; l < ks; ++l) pap += p[l] * ap[l];
      if (!(pap > 0.0)) break;
      const double alpha = rz / pap;
      double rn = 0.0;
      for (std::size_t l = 0; l < ks; ++l) {
        x[l] += alpha * p[l];
        r[l] -= alpha * ap[l];
        rn += r[l] * r[l];
      }
      if (std::sqrt(rn) <= cg_tol_ * bnorm) break;
      double rz_new = 0.0;
      for (std::size_t l = 0; l < ks; ++l) {
        zv[l] = r[l] / diag[l];
        rz_new += r[l] * zv[l];
      }
      const double beta = rz_new / rz;
      rz = rz_new;
      for (std::size_t l = 0; l < ks; ++l) p[l] = zv[l] + beta * p[l];
    }
  }

  SinkhornOptions opt_;
  const double* pts_[2];
  const double* w_[2];
  std::size_t np_[2];
  std::vector<double> logw_[2], pot_[2], bmax_[2], pre_[2], suf_[2];
  std::vector<std::size_t> hint_[2];
  std::vector<std::size_t> width_[2];  // band width of each row at its last visit
  double threshold_[2];
  bool prepared_[2] = {false, false};
  // kDotRows row buffers of stride_ values for each range of rows
  std::vector<std::vector<double>> bufs_;
  std::size_t stride_ = 0;
  std::vector<double> err_terms_;
  double eps_cur_;
  double entries_ = 0.0;
  int cg_max_ = 0;
  double cg_tol_ = 1e-12;
};

}  // namespace diffrank
