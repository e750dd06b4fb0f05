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

}  // namespace testing_helpers
