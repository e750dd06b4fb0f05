// Helpers of the standalone core tests: random data and finite differences.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <random>
#include <vector>

namespace testing_helpers {

inline std::vector<double> normals(std::size_t n, std::mt19937_64& rng, double sd = 1.0) {
  std::normal_distribution<double> d(0.0, sd);
  std::vector<double> x(n);
  for (double& v : x) v = d(rng);
  return x;
}

inline std::vector<double> uniforms(std::size_t n, std::mt19937_64& rng, double lo, double hi) {
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<double> x(n);
  for (double& v : x) v = d(rng);
  return x;
}

// Integers 0..levels-1 as doubles: many ties.
inline std::vector<double> integers(std::size_t n, std::mt19937_64& rng, int levels) {
  std::uniform_int_distribution<int> d(0, levels - 1);
  std::vector<double> x(n);
  for (double& v : x) v = d(rng);
  return x;
}

inline std::vector<double> normalized(std::vector<double> w) {
  double total = 0.0;
  for (double v : w) total += v;
  for (double& v : w) v /= total;
  return w;
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Central differences of f (a scalar function of x) at x, step h.
inline std::vector<double> finite_gradient(const std::function<double(const std::vector<double>&)>& f,
                                           std::vector<double> x, double h) {
  std::vector<double> g(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double xi = x[i];
    x[i] = xi + h;
    const double up = f(x);
    x[i] = xi - h;
    const double down = f(x);
    x[i] = xi;
    g[i] = (up - down) / (2.0 * h);
  }
  return g;
}

// max |a - b| / max |b|
inline double relative_error(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::abs(a[i] - b[i]));
    den = std::max(den, std::abs(b[i]));
  }
  return den > 0.0 ? num / den : num;
}

// The three readings of <v, J u> for an operator of the contract after its
// forward pass at x: from its JVP, from its VJP, and by central differences
// of value(x) (the operator's output at x) with step h along u.
struct DirectionalDerivatives {
  double jvp, vjp, finite_difference;
};

template <class Op, class Value>
DirectionalDerivatives directional_derivatives(Op& op, const std::vector<double>& x, Value value,
                                               std::mt19937_64& rng, double h) {
  const std::size_t n = x.size(), d = op.output_size();
  const std::vector<double> v = normals(d, rng), u = normals(n, rng);
  std::vector<double> g(n), ju(d);
  op.vjp(v.data(), g.data());
  op.jvp(u.data(), ju.data());
  DirectionalDerivatives out{0.0, 0.0, 0.0};
  for (std::size_t i = 0; i < d; ++i) out.jvp += v[i] * ju[i];
  for (std::size_t i = 0; i < n; ++i) out.vjp += g[i] * u[i];
  std::vector<double> xp = x, xm = x;
  for (std::size_t i = 0; i < n; ++i) {
    xp[i] += h * u[i];
    xm[i] -= h * u[i];
  }
  const std::vector<double> fp = value(xp), fm = value(xm);
  for (std::size_t i = 0; i < d; ++i) out.finite_difference += v[i] * (fp[i] - fm[i]) / (2.0 * h);
  return out;
}

}  // namespace testing_helpers
