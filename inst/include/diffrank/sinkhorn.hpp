// Sinkhorn sorting operators in one dimension (Cuturi, Teboul and Vert 2019,
// "Differentiable ranking and sorting using optimal transport", NeurIPS;
// Cuturi, Teboul, Niles-Weed and Vert 2020, "Supervised quantile
// normalization for low-rank matrix approximation", ICML).
//
// An entropic optimal transport between n weighted values and m sorted
// weighted targets gives soft CDF values, ranks, sorted values (quantiles),
// soft quantile normalization and top-k masks. This header holds the
// operators read from a solved transport and their vector-Jacobian products;
// the pieces live in
//   sinkhorn_kernels.hpp   vectorized inner loops (exp and kernel terms),
//   sinkhorn_solver.hpp    the banded log-domain solver Sinkhorn1D, with
//                          Anderson acceleration, Newton steps, eps scaling
//                          and implicit derivatives,
//   sinkhorn_unrolled.hpp  the dense unrolled reference for tests.
// Including this header includes them all. The package's operators (kinds,
// missing values, decreasing order, chain rules to the user's inputs) are
// built on it in sinkhorn_operator.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common.hpp"
#include "sinkhorn_solver.hpp"
#include "sinkhorn_unrolled.hpp"

namespace diffrank {

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
  const std::size_t n = e.size(0);
  std::vector<double> u(n);
  for (std::size_t i = 0; i < n; ++i) u[i] = v[i] / a[i];
  const double* us[1] = {u.data()};
  const double* ws[1] = {w};
  // wbar += P^T u
  e.vjp_plan(1, us, ws, zbar, bbar, wbar, nullptr);
}

// JVP of the row average for the tangent dz of the points: out_i =
// (dP w)_i / a_i.
inline void sinkhorn_row_average_jvp(Sinkhorn1D& e, const double* a, const double* w,
                                     const double* dz, double* out) {
  const std::size_t n = e.size(0);
  const double* ws[1] = {w};
  double* outs[1] = {out};
  e.jvp_plan(dz, 0, nullptr, nullptr, 1, ws, outs);
  for (std::size_t i = 0; i < n; ++i) out[i] /= a[i];
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
  std::vector<double> c(m), q(m), w1(m), w2(m), ones(n, 1.0);
  e.apply(1, nullptr, c.data());
  e.apply(1, u, q.data());
  for (std::size_t j = 0; j < m; ++j) {
    q[j] /= c[j];
    w1[j] = v[j] / c[j];
    w2[j] = -v[j] * q[j] / c[j];
  }
  const double* us[2] = {u, ones.data()};
  const double* ws[2] = {w1.data(), w2.data()};
  // ubar += P w1
  e.vjp_plan(2, us, ws, zbar, bbar, nullptr, ubar);
}

// JVP of the column average for the tangents dz of the points and du of the
// averaged values: with q = P^T u / c, out_j = (dP^T u + P^T du - q dP^T 1)_j
// / c_j.
inline void sinkhorn_col_average_jvp(Sinkhorn1D& e, const double* u, const double* du,
                                     const double* dz, double* out) {
  const std::size_t n = e.size(0), m = e.size(1);
  std::vector<double> c(m), q(m), ptdu(m), dptu(m, 0.0), dpt1(m, 0.0), ones(n, 1.0);
  e.apply(1, nullptr, c.data());
  e.apply(1, u, q.data());
  e.apply(1, du, ptdu.data());
  const double* us[2] = {u, ones.data()};
  double* outs[2] = {dptu.data(), dpt1.data()};
  e.jvp_plan(dz, 2, us, outs, 0, nullptr, nullptr);
  for (std::size_t j = 0; j < m; ++j) {
    q[j] /= c[j];
    out[j] = (dptu[j] + ptdu[j] - q[j] * dpt1[j]) / c[j];
  }
}

// The exponent e for which max|x| 2^e is in [1, 2) when max|x| is outside
// [2^-256, 2^256], else 0 (also for x all zero, or not finite). The
// derivatives of a column of such values (or of such a cotangent) are
// computed on x 2^e, where no intermediate leaves the double range (the
// squashed operators are invariant, or equivariant, under a positive scale),
// and the chain rule is applied once at the end: scaling by a power of two
// is exact, and ordinary inputs are not touched at all.
inline int range_exponent(const double* x, std::size_t n) {
  double big = 0.0;
  for (std::size_t i = 0; i < n; ++i) big = std::max(big, std::fabs(x[i]));
  if (!(big > 0.0) || !std::isfinite(big) || (big >= 0x1p-256 && big <= 0x1p256)) return 0;
  int e = 0;
  std::frexp(big, &e);  // big = f 2^e, f in [0.5, 1)
  return 1 - e;
}

// The squashing map applied before transport: z = logistic((x - mean) / sd),
// so that eps means the same whatever the scale of x. The moments are those
// of x / max|x| (scaled_moments), so that no sum or square overflows or
// underflows, for x of any magnitude. A constant x (or a single value) maps
// to z = 1/2, with the derivative of logistic(x - mean).
struct Squash {
  void fit(const double* x, std::size_t n) {
    m_ = scaled_moments(x, n);
    constant = !(m_.sd > 0.0);
    sd_x_ = constant ? 1.0 : m_.scale * m_.sd;
  }
  // (x - mean) / sd, 0 when x is constant.
  double standardized(double x) const {
    return constant ? 0.0 : (x / m_.scale - m_.mean) / m_.sd;
  }
  double operator()(double x) const { return 1.0 / (1.0 + std::exp(-standardized(x))); }
  // xbar += J^T zbar (mean and sd depend on x too)
  void vjp(const double* x, const double* zbar, std::size_t n, double* xbar) const {
    std::vector<double> wv(n), uv(n);
    double sw = 0.0, swu = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      uv[i] = standardized(x[i]);
      const double z = 1.0 / (1.0 + std::exp(-uv[i]));
      wv[i] = zbar[i] * z * (1.0 - z);
      sw += wv[i];
      swu += wv[i] * uv[i];
    }
    const double mw = sw / static_cast<double>(n);
    const double k = constant ? 0.0 : swu / static_cast<double>(n - 1);
    for (std::size_t i = 0; i < n; ++i) xbar[i] += (wv[i] - mw) / sd_x_ - k * uv[i] / sd_x_;
  }
  // dz = J dx, the transpose of vjp() term by term
  void jvp(const double* x, const double* dx, std::size_t n, double* dz) const {
    std::vector<double> uv(n);
    double sd = 0.0, sud = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      uv[i] = standardized(x[i]);
      sd += dx[i];
      sud += dx[i] * uv[i];
    }
    const double md = sd / static_cast<double>(n);
    const double k = constant ? 0.0 : sud / static_cast<double>(n - 1);
    for (std::size_t i = 0; i < n; ++i) {
      const double z = 1.0 / (1.0 + std::exp(-uv[i]));
      dz[i] = z * (1.0 - z) * ((dx[i] - md) / sd_x_ - k * uv[i] / sd_x_);
    }
  }
  bool constant = true;

 private:
  ScaledMoments m_;
  double sd_x_ = 1.0;  // sd in the units of x (1 when x is constant)
};

// One column: sorts x, squashes it if asked, solves the transport to the
// targets (y, b) and reads an operator; the potentials are returned in the
// caller's order so that a VJP can be taken later without solving again.
// kind row: out_i = (P w)_i / a_i (n values); kind col: out_j = weighted mean
// of x over the mass sent to target j (m values); kind plan: P itself (n x m,
// column-major, entries outside the solver's band 0).
enum class SinkhornKind { row, col, plan };

struct SinkhornTask {
  SinkhornKind kind = SinkhornKind::row;
  bool squash = true;
  SinkhornOptions opt;
  const double* y = nullptr;  // m sorted targets
  const double* b = nullptr;  // m target weights, sum 1
  const double* w = nullptr;  // m values averaged by the row kind
  std::size_t m = 0;
};

// The number of values of a task's output for a column of n values.
inline std::size_t sinkhorn_output_size(const SinkhornTask& task, std::size_t n) {
  switch (task.kind) {
    case SinkhornKind::row:
      return n;
    case SinkhornKind::col:
      return task.m;
    case SinkhornKind::plan:
      return n * task.m;
  }
  return 0;
}

class SinkhornColumn {
 public:
  SinkhornStatus forward(const SinkhornTask& task, const double* x, const double* a, std::size_t n,
                         double* out, double* f_out, double* g_out) {
    setup(task, x, a, n);
    Sinkhorn1D sk(zs_.data(), as_.data(), n, task.y, task.b, task.m, task.opt);
    const SinkhornStatus st = sk.solve();
    if (task.kind == SinkhornKind::plan) {
      read_plan(sk, n, task.m, out);
    } else {
      read(task, sk, n, out);
    }
    if (task.kind == SinkhornKind::col && x_exponent_ != 0) {
      for (std::size_t j = 0; j < task.m; ++j) out[j] = std::ldexp(out[j], -x_exponent_);
    }
    const double* f = sk.potential(0);
    for (std::size_t k = 0; k < n; ++k) f_out[order_[k]] = f[k];
    std::copy(sk.potential(1), sk.potential(1) + task.m, g_out);
    return st;
  }

  // Adds to xbar (n, caller's order), bbar and wbar (m) the VJP of the
  // operator for the cotangent factor * v, at the potentials f, g of a
  // forward run. (The factor is applied after v is rescaled, so that a huge
  // v times the factor need not be a double.)
  void vjp(const SinkhornTask& task, const double* x, const double* a, std::size_t n,
           const double* f, const double* g, const double* v, double* xbar, double* bbar,
           double* wbar, double factor = 1.0) {
    setup(task, x, a, n);
    Sinkhorn1D sk(zs_.data(), as_.data(), n, task.y, task.b, task.m, task.opt);
    std::vector<double> fs(n);
    for (std::size_t k = 0; k < n; ++k) fs[k] = f[order_[k]];
    sk.set_potentials(fs.data(), g);
    const bool row = task.kind == SinkhornKind::row;
    const bool degree0 = task.kind != SinkhornKind::col;  // in x: rows and plans
    const std::size_t len = sinkhorn_output_size(task, n);
    v_exponent_ = range_exponent(v, len);
    const int r = w_exponent_ = row ? range_exponent(task.w, task.m) : 0;
    auto back = [&](const SinkhornTask& t, const double* vv, double* xb, double* bb, double* wb) {
      if (t.kind == SinkhornKind::plan) {
        backward_plan(sk, n, t.m, t.squash, vv, xb, bb);
      } else {
        backward(t, sk, n, vv, xb, bb, wb);
      }
    };
    if (x_exponent_ == 0 && v_exponent_ == 0 && r == 0) {
      if (factor == 1.0) {
        back(task, v, xbar, bbar, wbar);
      } else {
        std::vector<double> vf(v, v + len);
        for (double& c : vf) c *= factor;
        back(task, vf.data(), xbar, bbar, wbar);
      }
      return;
    }
    // on x 2^s, v 2^t and w 2^r: a row operator (of degree 0 in x, 1 in w)
    // has the gradient 2^(s - t - r) times that of the scaled problem for x,
    // 2^(-t - r) for b, 2^-t for w (a plan: r = 0); a column operator
    // (degree 1 in x) has 2^-t for x, 2^(-s - t) for b
    const int s = x_exponent_, t = v_exponent_;
    const SinkhornTask scaled = scaled_task(task, r);
    std::vector<double> vs(len), xb(n, 0.0), bb(task.m, 0.0), wb(task.m, 0.0);
    for (std::size_t k = 0; k < len; ++k) vs[k] = std::ldexp(v[k], t) * factor;
    back(scaled, vs.data(), xb.data(), bb.data(), wb.data());
    const int ex = degree0 ? s - t - r : -t, eb = degree0 ? -t - r : -s - t;
    for (std::size_t i = 0; i < n; ++i) xbar[i] += std::ldexp(xb[i], ex);
    for (std::size_t l = 0; l < task.m; ++l) {
      bbar[l] += std::ldexp(bb[l], eb);
      wbar[l] += std::ldexp(wb[l], -t);
    }
  }

  // Writes to out (n values in the caller's order for the row kind, m for
  // the column kind, n x m for the plan) the JVP of the operator for the
  // tangent dx of x, at the potentials f, g of a forward run: the transpose
  // of vjp().
  void jvp(const SinkhornTask& task, const double* x, const double* a, std::size_t n,
           const double* f, const double* g, const double* dx, double* out) {
    setup(task, x, a, n);
    Sinkhorn1D sk(zs_.data(), as_.data(), n, task.y, task.b, task.m, task.opt);
    std::vector<double> fs(n);
    for (std::size_t k = 0; k < n; ++k) fs[k] = f[order_[k]];
    sk.set_potentials(fs.data(), g);
    // on the tangent dx 2^t of x 2^s and on w 2^r (see vjp): 2^(s - t - r)
    // for a row operator, 2^-t for a column operator
    const int s = x_exponent_, t = range_exponent(dx, n);
    v_exponent_ = t;
    std::vector<double> d(n), dzo(n), dz(n), dxs(n);
    for (std::size_t i = 0; i < n; ++i) d[i] = t == 0 ? dx[i] : std::ldexp(dx[i], t);
    if (task.squash) {
      std::vector<double> xo(n);
      for (std::size_t k = 0; k < n; ++k) xo[order_[k]] = xs_[k];
      squash_.jvp(xo.data(), d.data(), n, dzo.data());
    } else {
      dzo = d;
    }
    for (std::size_t k = 0; k < n; ++k) {
      dz[k] = dzo[order_[k]];
      dxs[k] = d[order_[k]];
    }
    const bool row = task.kind == SinkhornKind::row;
    const int r = w_exponent_ = row ? range_exponent(task.w, task.m) : 0;
    const int e = task.kind != SinkhornKind::col ? s - t - r : -t;
    if (task.kind == SinkhornKind::plan) {
      const std::size_t m = task.m;
      std::vector<double> dp(n * m, 0.0);
      sk.jvp_plan(dz.data(), 0, nullptr, nullptr, 0, nullptr, nullptr, dp.data());
      for (std::size_t j = 0; j < m; ++j) {
        for (std::size_t k = 0; k < n; ++k) {
          out[order_[k] + j * n] = e == 0 ? dp[k + j * n] : std::ldexp(dp[k + j * n], e);
        }
      }
    } else if (row) {
      std::vector<double> o(n);
      const SinkhornTask scaled = scaled_task(task, r);
      sinkhorn_row_average_jvp(sk, as_.data(), scaled.w, dz.data(), o.data());
      for (std::size_t k = 0; k < n; ++k) out[order_[k]] = e == 0 ? o[k] : std::ldexp(o[k], e);
    } else {
      sinkhorn_col_average_jvp(sk, xs_.data(), dxs.data(), dz.data(), out);
      if (e != 0) {
        for (std::size_t j = 0; j < task.m; ++j) out[j] = std::ldexp(out[j], e);
      }
    }
  }

  // The power-of-two exponents the last call applied to x (squashed
  // operators only), to its cotangent or tangent, and to the averaged values
  // w (range_exponent).
  int x_exponent() const { return x_exponent_; }
  int v_exponent() const { return v_exponent_; }
  int w_exponent() const { return w_exponent_; }

  // The same VJP by differentiating `iterations` plain iterations (dense,
  // small problems only); out receives the operator's value of that run.
  // The reference of tests on x of ordinary magnitude: no rescaling is
  // undone here (range_exponent gives 0 for such x).
  void vjp_unrolled(const SinkhornTask& task, const double* x, const double* a, std::size_t n,
                    int iterations, const double* v, double* out, double* xbar, double* bbar,
                    double* wbar) {
    setup(task, x, a, n);
    SinkhornUnrolled sk(zs_.data(), as_.data(), n, task.y, task.b, task.m, task.opt.eps,
                        task.opt.power, iterations);
    read(task, sk, n, out);
    backward(task, sk, n, v, xbar, bbar, wbar);
  }

 private:
  // The task with its averaged values w scaled by 2^r (kept in ws_).
  SinkhornTask scaled_task(const SinkhornTask& task, int r) {
    if (r == 0) return task;
    ws_.resize(task.m);
    for (std::size_t l = 0; l < task.m; ++l) ws_[l] = std::ldexp(task.w[l], r);
    SinkhornTask out = task;
    out.w = ws_.data();
    return out;
  }

  // x must have no missing value (gather the observed ones first:
  // ObservedValues in common.hpp).
  void setup(const SinkhornTask& task, const double* x, const double* a, std::size_t n) {
    order_.resize(n);
    xs_.resize(n);
    zs_.resize(n);
    as_.resize(n);
    sort_observed(x, n, scratch_, order_.data(), xs_.data());
    // the squashed operators see x only through its standardized values,
    // which are those of x 2^s
    x_exponent_ = task.squash ? range_exponent(x, n) : 0;
    if (x_exponent_ != 0) {
      scaled_.resize(n);
      for (std::size_t i = 0; i < n; ++i) scaled_[i] = std::ldexp(x[i], x_exponent_);
      for (std::size_t k = 0; k < n; ++k) xs_[k] = std::ldexp(xs_[k], x_exponent_);
    }
    if (task.squash) squash_.fit(x_exponent_ != 0 ? scaled_.data() : x, n);
    for (std::size_t k = 0; k < n; ++k) {
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
    pull_back(n, task.squash, zbar, xsbar, xbar);
  }

  // The plan's VJP for the cotangent v (n x m, caller's row order).
  void backward_plan(Sinkhorn1D& sk, std::size_t n, std::size_t m, bool squash, const double* v,
                     double* xbar, double* bbar) {
    std::vector<double> vs(n * m), zbar(n, 0.0), xsbar(n, 0.0);
    for (std::size_t j = 0; j < m; ++j) {
      for (std::size_t k = 0; k < n; ++k) vs[k + j * n] = v[order_[k] + j * n];
    }
    sk.vjp_entries([&](std::size_t i, std::size_t j) { return vs[i + j * n]; }, zbar.data(), bbar);
    pull_back(n, squash, zbar, xsbar, xbar);
  }

  // The plan (n x m) in the caller's row order.
  void read_plan(Sinkhorn1D& sk, std::size_t n, std::size_t m, double* out) {
    std::vector<double> p(n * m);
    sk.dense_plan(p.data());
    for (std::size_t j = 0; j < m; ++j) {
      for (std::size_t k = 0; k < n; ++k) out[order_[k] + j * n] = p[k + j * n];
    }
  }

  // Adds to xbar (caller's order) the gradient of x from zbar, that of the
  // sorted transported points (through the squash), and xsbar, that of the
  // sorted values averaged by a column operator.
  void pull_back(std::size_t n, bool squash, const std::vector<double>& zbar,
                 const std::vector<double>& xsbar, double* xbar) {
    std::vector<double> zb(n), xb(n, 0.0);
    for (std::size_t k = 0; k < n; ++k) zb[order_[k]] = zbar[k];
    if (squash) {
      std::vector<double> xo(n);
      for (std::size_t k = 0; k < n; ++k) xo[order_[k]] = xs_[k];
      squash_.vjp(xo.data(), zb.data(), n, xb.data());
    } else {
      xb = zb;
    }
    for (std::size_t k = 0; k < n; ++k) xb[order_[k]] += xsbar[k];
    for (std::size_t i = 0; i < n; ++i) xbar[i] += xb[i];
  }

  std::vector<IndexedValue> scratch_;
  std::vector<std::uint32_t> order_;
  std::vector<double> xs_, zs_, as_, scaled_, ws_;
  Squash squash_;
  int x_exponent_ = 0, v_exponent_ = 0, w_exponent_ = 0;
};

}  // namespace diffrank
