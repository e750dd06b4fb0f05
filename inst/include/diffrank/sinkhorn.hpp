// Sinkhorn sorting operators in one dimension (Cuturi, Teboul and Vert 2019,
// "Differentiable ranking and sorting using optimal transport", NeurIPS;
// Cuturi, Teboul, Niles-Weed and Vert 2020, "Supervised quantile
// normalization for low-rank matrix approximation", ICML).
//
// An entropic optimal transport between n weighted values and m sorted
// weighted targets gives soft CDF values, ranks, sorted values (quantiles),
// soft quantile normalization and top-k masks. The solver works on sorted
// values, where the Gibbs kernel exp(-c / eps) is numerically banded around
// the monotone matching: each row visits only the entries that can change a
// result at double precision, found with a bound that proves the rest
// negligible, so smaller eps costs less per iteration, and memory stays
// O(n + m). Iterations start from the dual potentials of the hard sort (or
// use eps scaling), are Anderson-accelerated, and switch to Newton steps on
// the semi-dual when Sinkhorn's linear rate degrades at small eps.
// Derivatives come from differentiating the fixed-point conditions once
// (implicit function theorem), not the iterations; a dense unrolled
// differentiation of the iterations is kept as the reference for tests.
//
// Part 1: vectorized inner loops. GCC/Clang vector extensions make them
// vectorize at the -O2 R compiles with; on x86-64 a second copy built for
// AVX2+FMA is chosen at run time when the processor has it. The exponential
// is exp(t) = 2^k exp(r), |r| <= log(2)/2, with a degree-12 Taylor polynomial
// (relative error below 5e-16 on [-708, 708]). Sums are accumulated in a fixed
// order, so results never depend on the number of threads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace diffrank {
namespace sinkhorn_kernels {

#if defined(__GNUC__) || defined(__clang__)
#define DIFFRANK_SK_VECTOR 1
#endif

#ifdef DIFFRANK_SK_VECTOR

// exp of the vector OUT (type V, integer twin U) in place. Arguments are
// clamped to [-708, 708]: below, the true value is negligible next to the
// terms it is summed with (all shifted by their maximum); above never occurs.
//
// CLAMP(lo, hi, x) must equal (x < lo ? lo : x) then (x > hi ? hi : x), NaN
// passing through: the portable select below, or single max/min instructions
// where available (a vector select costs a compare and a two-uop blend).
// The _LO forms clamp from below only, for arguments known to be <= 0 (or
// NaN): a shift by minus the maximum of the terms (see exp_shift_total).
#define DIFFRANK_SK_CLAMP_SELECT(LO, HI, X) (X = X < LO ? LO : X, X = X > HI ? HI : X)
#define DIFFRANK_SK_CLAMP_LO_SELECT(LO, HI, X) (X = X < LO ? LO : X, (void)HI)
#define DIFFRANK_SK_MAX_SELECT(A, B) (A > B ? A : B)
#define DIFFRANK_SK_EXP(V, U, OUT, CLAMP)                                               \
  do {                                                                                  \
    V lo_ = {}, hi_ = {};                                                              \
    lo_ -= 708.0;                                                                       \
    hi_ += 708.0;                                                                       \
    V t_ = OUT;                                                                         \
    CLAMP(lo_, hi_, t_);                                                                \
    const V kd_ = t_ * 1.4426950408889634 + 6755399441055744.0;                         \
    const V k_ = kd_ - 6755399441055744.0;                                              \
    const V r_ = (t_ - k_ * 6.93147180369123816490e-01) - k_ * 1.90821492927058770002e-10; \
    V p_ = r_ * (1.0 / 479001600.0) + 1.0 / 39916800.0;                                 \
    p_ = p_ * r_ + 1.0 / 3628800.0;                                                     \
    p_ = p_ * r_ + 1.0 / 362880.0;                                                      \
    p_ = p_ * r_ + 1.0 / 40320.0;                                                       \
    p_ = p_ * r_ + 1.0 / 5040.0;                                                        \
    p_ = p_ * r_ + 1.0 / 720.0;                                                         \
    p_ = p_ * r_ + 1.0 / 120.0;                                                         \
    p_ = p_ * r_ + 1.0 / 24.0;                                                          \
    p_ = p_ * r_ + 1.0 / 6.0;                                                           \
    p_ = p_ * r_ + 0.5;                                                                 \
    p_ = p_ * r_ + 1.0;                                                                 \
    p_ = p_ * r_ + 1.0;                                                                 \
    const U bits_ = ((U)kd_ + 1023u) << 52;                                             \
    OUT = p_ * (V)bits_;                                                                \
  } while (0)

// t[l] <- exp(t[l] + shift) for l < len; returns the sum of the new t. With
// STORE false, t is left unchanged and only the sum is returned (the potential
// updates need nothing else, and the store is a sizeable part of the loop).
#define DIFFRANK_SK_EXP_SUM_BODY(V, U, W, CLAMP, STORE)                   \
  V acc = {};                                                             \
  std::size_t l = 0;                                                      \
  for (; l + W <= len; l += W) {                                          \
    V v;                                                                  \
    std::memcpy(&v, t + l, sizeof(V));                                    \
    v = v + shift;                                                        \
    DIFFRANK_SK_EXP(V, U, v, CLAMP);                                      \
    if (STORE) std::memcpy(t + l, &v, sizeof(V));                         \
    acc += v;                                                             \
  }                                                                       \
  double sum = 0.0;                                                       \
  for (int q = 0; q < W; ++q) sum += acc[q];                              \
  if (l < len) {                                                          \
    V v;                                                                  \
    for (int q = 0; q < W; ++q) v[q] = l + q < len ? t[l + q] : -1000.0;  \
    v = v + shift;                                                        \
    DIFFRANK_SK_EXP(V, U, v, CLAMP);                                      \
    for (int q = 0; l + q < len; ++q) {                                   \
      if (STORE) t[l + q] = v[q];                                         \
      sum += v[q];                                                        \
    }                                                                     \
  }                                                                       \
  return sum;

// out[l] = (pot[l] - (d - s[l])^2) * inv_eps for l < len; returns the maximum.
#define DIFFRANK_SK_TERMS_BODY(V, W, MAX)                                              \
  const double ninf = -std::numeric_limits<double>::infinity();                      \
  V mx = {};                                                                          \
  mx = mx + ninf;                                                                     \
  std::size_t l = 0;                                                                  \
  for (; l + W <= len; l += W) {                                                      \
    V sv, qv;                                                                         \
    std::memcpy(&sv, s + l, sizeof(V));                                               \
    std::memcpy(&qv, pot + l, sizeof(V));                                             \
    const V u = d - sv;                                                               \
    const V v = (qv - u * u) * inv_eps;                                               \
    std::memcpy(out + l, &v, sizeof(V));                                              \
    mx = MAX(v, mx);                                                                  \
  }                                                                                   \
  double m = ninf;                                                                    \
  for (int q = 0; q < W; ++q) m = mx[q] > m ? mx[q] : m;                              \
  for (; l < len; ++l) {                                                              \
    const double u = d - s[l];                                                        \
    out[l] = (pot[l] - u * u) * inv_eps;                                              \
    m = out[l] > m ? out[l] : m;                                                      \
  }                                                                                   \
  return m;

typedef double v2d __attribute__((vector_size(16)));
typedef std::uint64_t v2u __attribute__((vector_size(16)));

inline double exp_shift_sum_generic(double* t, std::size_t len, double shift) {
  DIFFRANK_SK_EXP_SUM_BODY(v2d, v2u, 2, DIFFRANK_SK_CLAMP_SELECT, true)
}

inline double exp_shift_total_generic(double* t, std::size_t len, double shift) {
  DIFFRANK_SK_EXP_SUM_BODY(v2d, v2u, 2, DIFFRANK_SK_CLAMP_LO_SELECT, false)
}

inline double terms_sq_generic(double d, const double* s, const double* pot, std::size_t len,
                               double inv_eps, double* out) {
  DIFFRANK_SK_TERMS_BODY(v2d, 2, DIFFRANK_SK_MAX_SELECT)
}

#if defined(__x86_64__) && !defined(DIFFRANK_NO_AVX2)
#define DIFFRANK_SK_AVX2 1
typedef double v4d __attribute__((vector_size(32)));
typedef std::uint64_t v4u __attribute__((vector_size(32)));

// vmaxpd(a, b) = a > b ? a : b and vminpd(a, b) = a < b ? a : b (the second
// operand when either is NaN): the same values as the select form, bit for bit.
#define DIFFRANK_SK_CLAMP_MINMAX(LO, HI, X) \
  (X = __builtin_ia32_maxpd256(LO, X), X = __builtin_ia32_minpd256(HI, X))
#define DIFFRANK_SK_CLAMP_LO_MINMAX(LO, HI, X) (X = __builtin_ia32_maxpd256(LO, X), (void)HI)
#define DIFFRANK_SK_MAX_MINMAX(A, B) __builtin_ia32_maxpd256(A, B)

__attribute__((target("avx2,fma"))) inline double exp_shift_sum_avx2(double* t, std::size_t len,
                                                                     double shift) {
  DIFFRANK_SK_EXP_SUM_BODY(v4d, v4u, 4, DIFFRANK_SK_CLAMP_MINMAX, true)
}

__attribute__((target("avx2,fma"))) inline double exp_shift_total_avx2(double* t, std::size_t len,
                                                                       double shift) {
  DIFFRANK_SK_EXP_SUM_BODY(v4d, v4u, 4, DIFFRANK_SK_CLAMP_LO_MINMAX, false)
}

__attribute__((target("avx2,fma"))) inline double terms_sq_avx2(double d, const double* s,
                                                                const double* pot, std::size_t len,
                                                                double inv_eps, double* out) {
  DIFFRANK_SK_TERMS_BODY(v4d, 4, DIFFRANK_SK_MAX_MINMAX)
}

inline bool use_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
#endif

inline double exp_shift_sum(double* t, std::size_t len, double shift) {
#ifdef DIFFRANK_SK_AVX2
  if (use_avx2()) return exp_shift_sum_avx2(t, len, shift);
#endif
  return exp_shift_sum_generic(t, len, shift);
}

// exp_shift_sum without writing the exponentials back (t is not modified),
// for shift = -max(t): every argument is then <= 0 (or NaN), so the upper
// clamp, which could only act above 708, is left out (same values).
inline double exp_shift_total(double* t, std::size_t len, double shift) {
#ifdef DIFFRANK_SK_AVX2
  if (use_avx2()) return exp_shift_total_avx2(t, len, shift);
#endif
  return exp_shift_total_generic(t, len, shift);
}

inline double terms_sq(double d, const double* s, const double* pot, std::size_t len,
                       double inv_eps, double* out) {
#ifdef DIFFRANK_SK_AVX2
  if (use_avx2()) return terms_sq_avx2(d, s, pot, len, inv_eps, out);
#endif
  return terms_sq_generic(d, s, pot, len, inv_eps, out);
}

#undef DIFFRANK_SK_EXP_SUM_BODY
#undef DIFFRANK_SK_TERMS_BODY
#undef DIFFRANK_SK_EXP
#undef DIFFRANK_SK_CLAMP_SELECT
#undef DIFFRANK_SK_CLAMP_LO_SELECT
#undef DIFFRANK_SK_MAX_SELECT
#ifdef DIFFRANK_SK_AVX2
#undef DIFFRANK_SK_CLAMP_MINMAX
#undef DIFFRANK_SK_CLAMP_LO_MINMAX
#undef DIFFRANK_SK_MAX_MINMAX
#endif

#else  // no vector extension: plain loops

inline double exp_shift_sum(double* t, std::size_t len, double shift) {
  double sum = 0.0;
  for (std::size_t l = 0; l < len; ++l) {
    t[l] = std::exp(std::max(t[l] + shift, -708.0));
    sum += t[l];
  }
  return sum;
}

inline double exp_shift_total(double* t, std::size_t len, double shift) {
  double sum = 0.0;
  for (std::size_t l = 0; l < len; ++l) sum += std::exp(std::max(t[l] + shift, -708.0));
  return sum;
}

inline double terms_sq(double d, const double* s, const double* pot, std::size_t len,
                       double inv_eps, double* out) {
  double m = -std::numeric_limits<double>::infinity();
  for (std::size_t l = 0; l < len; ++l) {
    const double u = d - s[l];
    out[l] = (pot[l] - u * u) * inv_eps;
    m = out[l] > m ? out[l] : m;
  }
  return m;
}

#endif

// The same terms for the cost |d - s|^power.
inline double terms_pow(double d, const double* s, const double* pot, std::size_t len,
                        double inv_eps, double power, double* out) {
  double m = -std::numeric_limits<double>::infinity();
  for (std::size_t l = 0; l < len; ++l) {
    out[l] = (pot[l] - std::pow(std::fabs(d - s[l]), power)) * inv_eps;
    m = out[l] > m ? out[l] : m;
  }
  return m;
}

}  // namespace sinkhorn_kernels
}  // namespace diffrank

// Part 2: the solver, its derivatives and the operators.

namespace diffrank {

struct SinkhornOptions {
  double eps = 1e-2;            // entropic regularization, in units of the cost
  double power = 2.0;           // cost |x - y|^power
  double tol = 1e-6;            // stop when ||P^T 1 - b||_1 <= tol
  int max_iter = 1000;          // Sinkhorn iterations (one f and one g update each)
  bool scaling = false;         // eps scaling: eps_start * factor^k down to eps
  double eps_start = 1.0;
  double scaling_factor = 0.5;
  bool warm_start = true;       // start from the dual potentials of the hard sort
  bool banded = true;           // skip kernel entries that cannot matter
  double relaxation = 1.0;      // over-relaxation of the g update, in [1, 2)
  int anderson = 8;             // depth of Anderson acceleration of g (0: none)
  bool newton = true;           // switch to Newton steps when Sinkhorn is slow
};

struct SinkhornStatus {
  int iterations = 0;
  double error = std::numeric_limits<double>::infinity();
  bool converged = false;
  double entries = 0.0;  // kernel entries evaluated by the iterations (for benchmarks)
};

namespace sinkhorn_detail {

constexpr std::size_t kBlock = 32;
constexpr std::size_t kDenseSchur = 400;  // larger Schur complements use conjugate gradients

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
  Anderson(std::size_t m, int depth) : m_(m), depth_(std::max(depth, 0)) {}
  void reset() {
    dx_.clear();
    dr_.clear();
    have_prev_ = false;
  }
  // x: current iterate, tx: T(x) on entry, the next iterate on exit.
  void step(const double* x, double* tx) {
    if (depth_ == 0) return;
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
      // a skipped entry is below e^-T_s times the largest one of its row, so
      // all skipped entries together stay below e^-35 (6e-16) of the row sum
      threshold_[s] = 35.0 + std::log(static_cast<double>(np_[s]) + 1.0);
    }
    buf_.resize(std::max(n, m) + 4);
    eps_cur_ = opt_.eps;
  }

  std::size_t size(int side) const { return np_[side]; }
  const double* potential(int side) const { return pot_[side].data(); }
  double eps() const { return opt_.eps; }

  void set_potentials(const double* f, const double* g) {
    std::copy(f, f + np_[0], pot_[0].begin());
    std::copy(g, g + np_[1], pot_[1].begin());
    eps_cur_ = opt_.eps;
    prepared_[0] = prepared_[1] = false;
  }

  SinkhornStatus solve() {
    SinkhornStatus st;
    entries_ = 0.0;
    if (opt_.warm_start) {
      hard_potentials();
      eps_cur_ = opt_.eps;
    } else {
      std::fill(pot_[0].begin(), pot_[0].end(), 0.0);
      std::fill(pot_[1].begin(), pot_[1].end(), 0.0);
      eps_cur_ = opt_.scaling ? std::max(opt_.eps, opt_.eps_start) : opt_.eps;
    }
    std::vector<double> next(np_[1]);
    sinkhorn_detail::Anderson aa(np_[1], opt_.anderson);
    double best_err = std::numeric_limits<double>::infinity();
    std::vector<double> best_g(pot_[1]);
    int at_target = 0;
    sweep(0, pot_[0].data(), nullptr);
    double err = std::numeric_limits<double>::infinity();
    while (st.iterations < opt_.max_iter) {
      ++st.iterations;
      err = sweep(1, next.data(), pot_[1].data());
      if (eps_cur_ <= opt_.eps && err <= opt_.tol) {
        st.converged = true;
        break;
      }
      if (eps_cur_ <= opt_.eps) {
        ++at_target;
        const int newton_after = np_[1] <= sinkhorn_detail::kDenseSchur ? 10 : 50;
        if (opt_.newton && at_target > newton_after && newton_step(next)) {
          aa.reset();
          best_err = std::numeric_limits<double>::infinity();
          continue;
        }
        if (opt_.anderson > 0) {
          // safeguard: an extrapolation that made things much worse (or
          // non-finite) is dropped and the iteration restarts from the best g
          if (!(err <= 10.0 * best_err)) {
            aa.reset();
            std::copy(best_g.begin(), best_g.end(), next.begin());
          } else {
            if (err < best_err) {
              best_err = err;
              best_g = pot_[1];
            }
            aa.step(pot_[1].data(), next.data());
          }
        } else if (opt_.relaxation != 1.0) {
          const double w = opt_.relaxation;
          for (std::size_t j = 0; j < np_[1]; ++j) next[j] = (1.0 - w) * pot_[1][j] + w * next[j];
        }
      }
      pot_[1].swap(next);
      prepared_[1] = false;
      eps_cur_ = std::max(opt_.eps, eps_cur_ * opt_.scaling_factor);
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

  // out[k] = sum_l P_kl v[l] for every k of side `dst` (v lives on the other
  // side); with v == nullptr, the marginal sum_l P_kl.
  void apply(int dst, const double* v, double* out) {
    const int src = 1 - dst;
    prepare(src);
    Cache cache;
    const double inv_eps = 1.0 / opt_.eps;
    for (std::size_t k = 0; k < np_[dst]; ++k) {
      const Range r = band(dst, k, cache);
      double* t = buf_.data() + r.lo;
      const double total = sinkhorn_kernels::exp_shift_sum(t, r.hi - r.lo, pot_[dst][k] * inv_eps);
      if (v == nullptr) {
        out[k] = total;
      } else {
        double acc = 0.0;
        for (std::size_t l = r.lo; l < r.hi; ++l) acc += buf_[l] * v[l];
        out[k] = acc;
      }
    }
  }

  // The plan P (n x m, column-major); for small problems and tests only.
  void dense_plan(double* out) {
    const std::size_t n = np_[0], m = np_[1];
    std::fill(out, out + n * m, 0.0);
    prepare(1);
    Cache cache;
    for (std::size_t i = 0; i < n; ++i) {
      const Range r = band(0, i, cache);
      sinkhorn_kernels::exp_shift_sum(buf_.data() + r.lo, r.hi - r.lo, pot_[0][i] / opt_.eps);
      for (std::size_t j = r.lo; j < r.hi; ++j) out[i + j * n] = buf_[j];
    }
  }

  // Vector-Jacobian product through the plan at the fixed point. The caller's
  // loss depends on P through sum_ij G_ij P_ij with G = sum_r u_r w_r^T (u_r on
  // the points, w_r on the targets); this adds d loss / dz to zbar and
  // d loss / db to bbar (defined up to a constant, since sum(b) = 1). The
  // optimality conditions are differentiated once; the adjoint system is
  // solved through its Schur complement on the smaller side with the gauge
  // fixed (first unknown = 0): densely when that side is small, else by
  // conjugate gradients with O(band) matrix-vector products.
  void vjp_plan(std::size_t rank, const double* const* u, const double* const* w, double* zbar,
                double* bbar) {
    const std::size_t n = np_[0], m = np_[1];
    std::vector<double> marg[2], rhs[2];
    for (int s = 0; s < 2; ++s) {
      marg[s].assign(np_[s], 0.0);
      rhs[s].assign(np_[s], 0.0);
    }
    std::vector<double> tmp_n(n), tmp_m(m);
    apply(0, nullptr, marg[0].data());
    apply(1, nullptr, marg[1].data());
    for (std::size_t r = 0; r < rank; ++r) {
      apply(0, w[r], tmp_n.data());
      for (std::size_t i = 0; i < n; ++i) rhs[0][i] += u[r][i] * tmp_n[i];
      apply(1, u[r], tmp_m.data());
      for (std::size_t j = 0; j < m; ++j) rhs[1][j] += w[r][j] * tmp_m[j];
    }
    std::vector<double> sol[2];
    const int s = m <= n ? 1 : 0;
    schur_solve(s, marg, rhs, sol);
    // d loss / dz_i = (1/eps) sum_j P_ij C'_ij (lambda_i + mu_j - G_ij)
    prepare(1);
    Cache cache;
    const double inv_eps = 1.0 / opt_.eps;
    const double* z = pts_[0];
    const double* y = pts_[1];
    for (std::size_t i = 0; i < n; ++i) {
      const Range r = band(0, i, cache);
      sinkhorn_kernels::exp_shift_sum(buf_.data() + r.lo, r.hi - r.lo, pot_[0][i] * inv_eps);
      double acc = 0.0;
      for (std::size_t j = r.lo; j < r.hi; ++j) {
        double gij = 0.0;
        for (std::size_t q = 0; q < rank; ++q) gij += u[q][i] * w[q][j];
        acc += buf_[j] * sinkhorn_detail::cost_deriv(z[i] - y[j], opt_.power) *
               (sol[0][i] + sol[1][j] - gij);
      }
      zbar[i] += acc * inv_eps;
    }
    for (std::size_t j = 0; j < m; ++j) bbar[j] += sol[1][j];
  }

 private:
  struct Range {
    std::size_t lo, hi;
    double max;
  };
  struct Cache {
    bool valid = false;
    double d = 0.0;
    std::size_t lo = 0, hi = 0;
  };

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

  // Fills buf_[lo, hi) with (pot_src[l] - c(d - s[l])) / eps for the band of
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
    double* out = buf_.data() + lo;
    const double mx = power == 2.0
                          ? sinkhorn_kernels::terms_sq(d, s + lo, q + lo, hi - lo, inv_eps, out)
                          : sinkhorn_kernels::terms_pow(d, s + lo, q + lo, hi - lo, inv_eps, power, out);
    // the next lower bound of the maximum: a local maximum near the old hint
    std::size_t h = std::min(std::max(hint_[dst][k], lo), hi - 1);
    while (h + 1 < hi && buf_[h + 1] > buf_[h]) ++h;
    while (h > lo && buf_[h - 1] > buf_[h]) --h;
    hint_[dst][k] = h;
    entries_ += static_cast<double>(hi - lo);
    return {lo, hi, mx};
  }

  // Log-domain update of the potential of side dst, written to out. With
  // old != nullptr (the g update) returns ||P^T 1 - b||_1 for the plan built
  // from the current f and the old g: its column sums are b_j exp((g_old_j -
  // g_new_j) / eps), so the error costs no extra pass.
  double sweep(int dst, double* out, const double* old) {
    const int src = 1 - dst;
    prepare(src);
    Cache cache;
    double err = 0.0;
    for (std::size_t k = 0; k < np_[dst]; ++k) {
      const Range r = band(dst, k, cache);
      const double total = sinkhorn_kernels::exp_shift_total(buf_.data() + r.lo, r.hi - r.lo, -r.max);
      out[k] = eps_cur_ * (logw_[dst][k] - r.max - std::log(total));
      if (old != nullptr) err += w_[dst][k] * std::fabs(std::expm1((old[k] - out[k]) / eps_cur_));
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
  // unchanged, when no step length increases J.
  bool newton_step(const std::vector<double>& next) {
    const std::size_t n = np_[0], m = np_[1];
    std::vector<double> marg[2], rhs[2], sol[2];
    marg[0].assign(w_[0], w_[0] + n);
    marg[1].resize(m);
    rhs[0].assign(n, 0.0);
    rhs[1].resize(m);
    for (std::size_t j = 0; j < m; ++j) {
      marg[1][j] = w_[1][j] * std::exp((pot_[1][j] - next[j]) / opt_.eps);
      rhs[1][j] = opt_.eps * (w_[1][j] - marg[1][j]);
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
      if (std::isfinite(j1) && j1 >= j0 - 1e-15 * (std::fabs(j0) + opt_.eps)) return true;
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
      const std::size_t kr = ks - 1;
      if (ks <= sinkhorn_detail::kDenseSchur) {
        std::vector<double> S(kr * kr, 0.0);
        prepare(s);
        Cache cache;
        for (std::size_t k = 0; k < ko; ++k) {
          const Range r = band(o, k, cache);
          sinkhorn_kernels::exp_shift_sum(buf_.data() + r.lo, r.hi - r.lo, pot_[o][k] / opt_.eps);
          const double inv = 1.0 / marg[o][k];
          const std::size_t l0 = std::max<std::size_t>(r.lo, 1);
          for (std::size_t l2 = l0; l2 < r.hi; ++l2) {
            const double p2 = buf_[l2] * inv;
            double* col = S.data() + (l2 - 1) * kr - 1;
            for (std::size_t l1 = l2; l1 < r.hi; ++l1) col[l1] -= buf_[l1] * p2;
          }
        }
        for (std::size_t l = 1; l < ks; ++l) S[(l - 1) + (l - 1) * kr] += marg[s][l];
        std::vector<double> x(b.begin() + 1, b.end());
        sinkhorn_detail::cholesky_solve(S, kr, x.data());
        std::copy(x.begin(), x.end(), sol[s].begin() + 1);
      } else {
        conjugate_gradients(s, marg, b, sol[s]);
      }
    }
    std::vector<double> ps(ko);
    apply(o, sol[s].data(), ps.data());
    sol[o].resize(ko);
    for (std::size_t k = 0; k < ko; ++k) sol[o][k] = (rhs[o][k] - ps[k]) / marg[o][k];
  }

  // Preconditioned conjugate gradients on the Schur complement of side s,
  // x[0] = 0, Jacobi preconditioner.
  void conjugate_gradients(int s, std::vector<double>* marg, const std::vector<double>& b,
                           std::vector<double>& x) {
    const int o = 1 - s;
    const std::size_t ks = np_[s], ko = np_[o];
    std::vector<double> diag(marg[s]);
    {
      prepare(s);
      Cache cache;
      for (std::size_t k = 0; k < ko; ++k) {
        const Range r = band(o, k, cache);
        sinkhorn_kernels::exp_shift_sum(buf_.data() + r.lo, r.hi - r.lo, pot_[o][k] / opt_.eps);
        for (std::size_t l = r.lo; l < r.hi; ++l) diag[l] -= buf_[l] * buf_[l] / marg[o][k];
      }
      for (std::size_t l = 0; l < ks; ++l) {
        if (!(diag[l] > 1e-14 * marg[s][l])) diag[l] = marg[s][l] > 0.0 ? marg[s][l] : 1.0;
      }
    }
    std::vector<double> t(ko);
    auto op = [&](const std::vector<double>& v, std::vector<double>& out) {
      apply(o, v.data(), t.data());
      for (std::size_t k = 0; k < ko; ++k) t[k] /= marg[o][k];
      apply(s, t.data(), out.data());
      for (std::size_t l = 0; l < ks; ++l) out[l] = marg[s][l] * v[l] - out[l];
      out[0] = 0.0;
    };
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
  double threshold_[2];
  bool prepared_[2] = {false, false};
  std::vector<double> buf_;
  double eps_cur_;
  double entries_ = 0.0;
  int cg_max_ = 0;
  double cg_tol_ = 1e-12;
};

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

  const double* potential(int side) const { return side == 0 ? f_[K_ + 1].data() : g_[K_].data(); }
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
                double* bbar) const {
    const std::size_t n = n_, m = m_;
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

// Operators read from a solved transport E (Sinkhorn1D or SinkhornUnrolled).
// Row averages: out_i = (P w)_i / a_i (CDF with w = cumsum(b), ranks, soft
// quantile normalization with w = t, top-k with w = (0, 1)).
template <class E>
void sinkhorn_row_average(E& e, const double* a, const double* w, double* out) {
  const std::size_t n = e.size(0);
  e.apply(0, w, out);
  for (std::size_t i = 0; i < n; ++i) out[i] /= a[i];
}

// VJP of the row average for the cotangent v: adds to zbar (d/dz), bbar
// (d/db through the plan) and wbar (d/dw).
template <class E>
void sinkhorn_row_average_vjp(E& e, const double* a, const double* w, const double* v,
                              double* zbar, double* bbar, double* wbar) {
  const std::size_t n = e.size(0), m = e.size(1);
  std::vector<double> u(n), tmp(m);
  for (std::size_t i = 0; i < n; ++i) u[i] = v[i] / a[i];
  const double* us[1] = {u.data()};
  const double* ws[1] = {w};
  e.vjp_plan(1, us, ws, zbar, bbar);
  e.apply(1, u.data(), tmp.data());
  for (std::size_t j = 0; j < m; ++j) wbar[j] += tmp[j];
}

// Column averages: out_j = (P^T u)_j / c_j with c = P^T 1 (S-sort and
// S-quantiles with u = x): a weighted mean of u for each target, so the
// outputs stay inside the range of u even before full convergence.
template <class E>
void sinkhorn_col_average(E& e, const double* u, double* out) {
  const std::size_t m = e.size(1);
  std::vector<double> c(m);
  e.apply(1, nullptr, c.data());
  e.apply(1, u, out);
  for (std::size_t j = 0; j < m; ++j) out[j] /= c[j];
}

template <class E>
void sinkhorn_col_average_vjp(E& e, const double* u, const double* v, double* zbar, double* bbar,
                              double* ubar) {
  const std::size_t n = e.size(0), m = e.size(1);
  std::vector<double> c(m), q(m), w1(m), w2(m), ones(n, 1.0), tmp(n);
  e.apply(1, nullptr, c.data());
  e.apply(1, u, q.data());
  for (std::size_t j = 0; j < m; ++j) {
    q[j] /= c[j];
    w1[j] = v[j] / c[j];
    w2[j] = -v[j] * q[j] / c[j];
  }
  const double* us[2] = {u, ones.data()};
  const double* ws[2] = {w1.data(), w2.data()};
  e.vjp_plan(2, us, ws, zbar, bbar);
  e.apply(0, w1.data(), tmp.data());
  for (std::size_t i = 0; i < n; ++i) ubar[i] += tmp[i];
}

// The squashing map applied before transport: z = logistic((x - mean) / sd),
// so that eps means the same whatever the scale of x (sd = 1 when x is
// constant or has one value).
struct Squash {
  double mean = 0.0, sd = 1.0;
  void fit(const double* x, std::size_t n) {
    double s = 0.0;
    for (std::size_t i = 0; i < n; ++i) s += x[i];
    mean = s / static_cast<double>(n);
    double ss = 0.0;
    for (std::size_t i = 0; i < n; ++i) ss += (x[i] - mean) * (x[i] - mean);
    sd = n > 1 ? std::sqrt(ss / static_cast<double>(n - 1)) : 0.0;
    if (!(sd > 0.0)) sd = 1.0;
    constant = !(n > 1 && ss > 0.0);
  }
  double operator()(double x) const { return 1.0 / (1.0 + std::exp(-(x - mean) / sd)); }
  // xbar += J^T zbar (mean and sd depend on x too)
  void vjp(const double* x, const double* zbar, std::size_t n, double* xbar) const {
    std::vector<double> wv(n), uv(n);
    double sw = 0.0, swu = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      const double z = (*this)(x[i]);
      uv[i] = (x[i] - mean) / sd;
      wv[i] = zbar[i] * z * (1.0 - z);
      sw += wv[i];
      swu += wv[i] * uv[i];
    }
    const double mw = sw / static_cast<double>(n);
    const double k = constant ? 0.0 : swu / static_cast<double>(n - 1);
    for (std::size_t i = 0; i < n; ++i) xbar[i] += (wv[i] - mw) / sd - k * uv[i] / sd;
  }
  bool constant = true;
};

// One column: sorts x, squashes it if asked, solves the transport to the
// targets (y, b) and reads an operator; the potentials are returned in the
// caller's order so that a VJP can be taken later without solving again.
// kind row: out_i = (P w)_i / a_i (n values); kind col: out_j = weighted mean
// of x over the mass sent to target j (m values).
enum class SinkhornKind { row, col };

struct SinkhornTask {
  SinkhornKind kind = SinkhornKind::row;
  bool squash = true;
  SinkhornOptions opt;
  const double* y = nullptr;  // m sorted targets
  const double* b = nullptr;  // m target weights, sum 1
  const double* w = nullptr;  // m values averaged by the row kind
  std::size_t m = 0;
};

class SinkhornColumn {
 public:
  SinkhornStatus forward(const SinkhornTask& task, const double* x, const double* a, std::size_t n,
                         double* out, double* f_out, double* g_out) {
    setup(task, x, a, n);
    Sinkhorn1D sk(zs_.data(), as_.data(), n, task.y, task.b, task.m, task.opt);
    const SinkhornStatus st = sk.solve();
    read(task, sk, n, out);
    const double* f = sk.potential(0);
    for (std::size_t k = 0; k < n; ++k) f_out[order_[k]] = f[k];
    std::copy(sk.potential(1), sk.potential(1) + task.m, g_out);
    return st;
  }

  // Adds to xbar (n, caller's order), bbar and wbar (m) the VJP of the
  // operator for the cotangent v, at the potentials f, g of a forward run.
  void vjp(const SinkhornTask& task, const double* x, const double* a, std::size_t n,
           const double* f, const double* g, const double* v, double* xbar, double* bbar,
           double* wbar) {
    setup(task, x, a, n);
    Sinkhorn1D sk(zs_.data(), as_.data(), n, task.y, task.b, task.m, task.opt);
    std::vector<double> fs(n);
    for (std::size_t k = 0; k < n; ++k) fs[k] = f[order_[k]];
    sk.set_potentials(fs.data(), g);
    backward(task, sk, n, v, xbar, bbar, wbar);
  }

  // The same VJP by differentiating `iterations` plain iterations (dense,
  // small problems only); out receives the operator's value of that run.
  void vjp_unrolled(const SinkhornTask& task, const double* x, const double* a, std::size_t n,
                    int iterations, const double* v, double* out, double* xbar, double* bbar,
                    double* wbar) {
    setup(task, x, a, n);
    SinkhornUnrolled sk(zs_.data(), as_.data(), n, task.y, task.b, task.m, task.opt.eps,
                        task.opt.power, iterations);
    read(task, sk, n, out);
    backward(task, sk, n, v, xbar, bbar, wbar);
  }

  // The plan (n x m, caller's row order, column-major), for tests.
  SinkhornStatus plan(const SinkhornTask& task, const double* x, const double* a, std::size_t n,
                      double* out) {
    setup(task, x, a, n);
    Sinkhorn1D sk(zs_.data(), as_.data(), n, task.y, task.b, task.m, task.opt);
    const SinkhornStatus st = sk.solve();
    std::vector<double> p(n * task.m);
    sk.dense_plan(p.data());
    for (std::size_t j = 0; j < task.m; ++j)
      for (std::size_t k = 0; k < n; ++k) out[order_[k] + j * n] = p[k + j * n];
    return st;
  }

 private:
  void setup(const SinkhornTask& task, const double* x, const double* a, std::size_t n) {
    order_.resize(n);
    for (std::size_t i = 0; i < n; ++i) order_[i] = i;
    std::stable_sort(order_.begin(), order_.end(),
                     [x](std::size_t i, std::size_t j) { return x[i] < x[j]; });
    xs_.resize(n);
    zs_.resize(n);
    as_.resize(n);
    if (task.squash) squash_.fit(x, n);
    for (std::size_t k = 0; k < n; ++k) {
      xs_[k] = x[order_[k]];
      as_[k] = a[order_[k]];
      zs_[k] = task.squash ? squash_(xs_[k]) : xs_[k];
    }
  }

  template <class E>
  void read(const SinkhornTask& task, E& sk, std::size_t n, double* out) {
    if (task.kind == SinkhornKind::row) {
      std::vector<double> o(n);
      sinkhorn_row_average(sk, as_.data(), task.w, o.data());
      for (std::size_t k = 0; k < n; ++k) out[order_[k]] = o[k];
    } else {
      sinkhorn_col_average(sk, xs_.data(), out);
    }
  }

  template <class E>
  void backward(const SinkhornTask& task, E& sk, std::size_t n, const double* v, double* xbar,
                double* bbar, double* wbar) {
    std::vector<double> zbar(n, 0.0), xsbar(n, 0.0);
    if (task.kind == SinkhornKind::row) {
      std::vector<double> vs(n);
      for (std::size_t k = 0; k < n; ++k) vs[k] = v[order_[k]];
      sinkhorn_row_average_vjp(sk, as_.data(), task.w, vs.data(), zbar.data(), bbar, wbar);
    } else {
      sinkhorn_col_average_vjp(sk, xs_.data(), v, zbar.data(), bbar, xsbar.data());
    }
    std::vector<double> zb(n), xb(n, 0.0);
    for (std::size_t k = 0; k < n; ++k) zb[order_[k]] = zbar[k];
    if (task.squash) {
      std::vector<double> xo(n);
      for (std::size_t k = 0; k < n; ++k) xo[order_[k]] = xs_[k];
      squash_.vjp(xo.data(), zb.data(), n, xb.data());
    } else {
      xb = zb;
    }
    for (std::size_t k = 0; k < n; ++k) xb[order_[k]] += xsbar[k];
    for (std::size_t i = 0; i < n; ++i) xbar[i] += xb[i];
  }

  std::vector<std::size_t> order_;
  std::vector<double> xs_, zs_, as_;
  Squash squash_;
};

}  // namespace diffrank
