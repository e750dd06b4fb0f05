// Vectorized inner loops of the Sinkhorn solver (sinkhorn_solver.hpp): the
// kernel terms (pot_l - |d - s_l|^p) / eps of one row of the plan and the sum
// of their exponentials.
//
// GCC/Clang vector extensions make them vectorize at the -O2 R compiles with;
// on x86-64 a second copy built for AVX2+FMA is chosen at run time when the
// processor has it. The exponential is exp(t) = 2^k exp(r), |r| <= log(2)/2,
// with a degree-12 Taylor polynomial (relative error below 5e-16 on
// [-708, 708]). Sums are accumulated in a fixed order, so results never
// depend on the number of threads.
//
// The loop bodies are macros, not templates or inline functions, because each
// must be compiled inside a function of its own instruction set: GCC compiles
// a callee for the target of its own definition, not of its caller, so a
// template called from an __attribute__((target("avx2,fma"))) function would
// run without AVX2 (or fail to inline, "target specific option mismatch"),
// and passing 32-byte vectors between functions built for different targets
// changes their calling convention. A macro pastes the same body into the
// generic and the AVX2 function. Every helper macro is undefined at the end of
// this header.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

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

// sum_l x[l] y[l] in W lanes and two accumulators, summed in a fixed order
// (the same value for the same row, whatever runs it).
#define DIFFRANK_SK_DOT_BODY(V, W)          \
  V a0 = {}, a1 = {};                       \
  std::size_t l = 0;                        \
  for (; l + 2 * W <= len; l += 2 * W) {    \
    V x0, y0, x1, y1;                       \
    std::memcpy(&x0, x + l, sizeof(V));     \
    std::memcpy(&y0, y + l, sizeof(V));     \
    std::memcpy(&x1, x + l + W, sizeof(V)); \
    std::memcpy(&y1, y + l + W, sizeof(V)); \
    a0 += x0 * y0;                          \
    a1 += x1 * y1;                          \
  }                                         \
  a0 += a1;                                 \
  double sum = 0.0;                         \
  for (int q = 0; q < W; ++q) sum += a0[q]; \
  for (; l < len; ++l) sum += x[l] * y[l];  \
  return sum;

// y[l] += a x[l] (SQUARE: a x[l]^2)
#define DIFFRANK_SK_AXPY_BODY(V, W, SQUARE) \
  std::size_t l = 0;                        \
  for (; l + W <= len; l += W) {            \
    V xv, yv;                               \
    std::memcpy(&xv, x + l, sizeof(V));     \
    std::memcpy(&yv, y + l, sizeof(V));     \
    if (SQUARE) xv = xv * xv;               \
    yv += a * xv;                           \
    std::memcpy(y + l, &yv, sizeof(V));     \
  }                                         \
  for (; l < len; ++l) y[l] += a * (SQUARE ? x[l] * x[l] : x[l]);

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

inline double dot_generic(const double* x, const double* y, std::size_t len) {
  DIFFRANK_SK_DOT_BODY(v2d, 2)
}

inline void axpy_generic(double a, const double* x, double* y, std::size_t len) {
  DIFFRANK_SK_AXPY_BODY(v2d, 2, false)
}

inline void axpy_sq_generic(double a, const double* x, double* y, std::size_t len) {
  DIFFRANK_SK_AXPY_BODY(v2d, 2, true)
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

__attribute__((target("avx2,fma"))) inline double dot_avx2(const double* x, const double* y,
                                                           std::size_t len) {
  DIFFRANK_SK_DOT_BODY(v4d, 4)
}

__attribute__((target("avx2,fma"))) inline void axpy_avx2(double a, const double* x, double* y,
                                                          std::size_t len) {
  DIFFRANK_SK_AXPY_BODY(v4d, 4, false)
}

__attribute__((target("avx2,fma"))) inline void axpy_sq_avx2(double a, const double* x, double* y,
                                                             std::size_t len) {
  DIFFRANK_SK_AXPY_BODY(v4d, 4, true)
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

// sum_l x[l] y[l], in a fixed order of its own (not left to right)
inline double dot(const double* x, const double* y, std::size_t len) {
#ifdef DIFFRANK_SK_AVX2
  if (use_avx2()) return dot_avx2(x, y, len);
#endif
  return dot_generic(x, y, len);
}

// y += a x
inline void axpy(double a, const double* x, double* y, std::size_t len) {
#ifdef DIFFRANK_SK_AVX2
  if (use_avx2()) return axpy_avx2(a, x, y, len);
#endif
  axpy_generic(a, x, y, len);
}

// y += a x^2, elementwise
inline void axpy_sq(double a, const double* x, double* y, std::size_t len) {
#ifdef DIFFRANK_SK_AVX2
  if (use_avx2()) return axpy_sq_avx2(a, x, y, len);
#endif
  axpy_sq_generic(a, x, y, len);
}

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

inline double dot(const double* x, const double* y, std::size_t len) {
  double sum = 0.0;
  for (std::size_t l = 0; l < len; ++l) sum += x[l] * y[l];
  return sum;
}

inline void axpy(double a, const double* x, double* y, std::size_t len) {
  for (std::size_t l = 0; l < len; ++l) y[l] += a * x[l];
}

inline void axpy_sq(double a, const double* x, double* y, std::size_t len) {
  for (std::size_t l = 0; l < len; ++l) y[l] += a * x[l] * x[l];
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

// Every macro of this header, so that none leaks into the files that include
// it (undefining a macro that was never defined is allowed).
#undef DIFFRANK_SK_VECTOR
#undef DIFFRANK_SK_AVX2
#undef DIFFRANK_SK_EXP_SUM_BODY
#undef DIFFRANK_SK_TERMS_BODY
#undef DIFFRANK_SK_DOT_BODY
#undef DIFFRANK_SK_AXPY_BODY
#undef DIFFRANK_SK_EXP
#undef DIFFRANK_SK_CLAMP_SELECT
#undef DIFFRANK_SK_CLAMP_LO_SELECT
#undef DIFFRANK_SK_MAX_SELECT
#undef DIFFRANK_SK_CLAMP_MINMAX
#undef DIFFRANK_SK_CLAMP_LO_MINMAX
#undef DIFFRANK_SK_MAX_MINMAX
