// Small helpers shared by the families of the core: an uninitialized buffer
// for large scratch arrays (soft sorts, Kendall ranks, quantile
// normalization), one overflow-safe mean and standard deviation (the
// scale-free eps of soft sorts and the squashing of Sinkhorn operators), one
// argsort of the observed values of a vector (quantile normalization, Kendall
// ranks, Sinkhorn), and one gathering of the observed values of a column with
// their weights renormalized (operators that solve a column with missing
// values on its observed values).
//
// Missing values are NaN (which includes R's NA) throughout.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace diffrank {

// A resizable array of a trivial type that, unlike std::vector, leaves new
// elements uninitialized: the buffers below are always written before being
// read, and zero-filling tens of megabytes per call would cost as much as the
// sort.
//
// Buffers of several megabytes (n around 10^6) are fresh memory on every call,
// and faulting them in 4 KB page by page cost about a third of a soft sort of
// 10^6 values (more under virtualization). On Linux such buffers are aligned
// to 2 MB and marked for transparent huge pages, which cuts the page faults
// 512-fold; elsewhere, or if the kernel declines, they are ordinary memory.
template <class T>
class Buffer {
  static_assert(std::is_trivial<T>::value, "Buffer holds trivial types only");

 public:
  void resize(std::size_t n) {
    if (n > capacity_) {
      data_.reset(allocate(n));
      capacity_ = n;
    }
    size_ = n;
  }
  std::size_t size() const { return size_; }
  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  T& operator[](std::size_t i) { return data_.get()[i]; }
  const T& operator[](std::size_t i) const { return data_.get()[i]; }
  void swap(Buffer& other) {
    data_.swap(other.data_);
    std::swap(size_, other.size_);
    std::swap(capacity_, other.capacity_);
  }

 private:
  static T* allocate(std::size_t n) {
    const std::size_t bytes = std::max<std::size_t>(n * sizeof(T), 1);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    constexpr std::size_t huge = std::size_t(1) << 21;
    if (bytes >= 2 * huge) {
      const std::size_t rounded = (bytes + huge - 1) & ~(huge - 1);
      void* p = nullptr;
      if (posix_memalign(&p, huge, rounded) == 0) {
        madvise(p, rounded, MADV_HUGEPAGE);  // a hint: failure is harmless
        return static_cast<T*>(p);
      }
    }
#endif
    void* p = std::malloc(bytes);
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
  std::size_t size_ = 0, capacity_ = 0;
};

// Mean and standard deviation (n - 1 denominator) of x[0..n) divided by
// scale = max |x| first, so that neither the sum nor the squares overflow or
// underflow, whatever the magnitude of x (1e200 or 1e-200 alike): the moments
// of x are scale * mean and scale * sd. scale is 0 (and so are mean and sd)
// when x is empty, all zero or has a non-finite value; sd is 0 when n < 2.
struct ScaledMoments {
  double scale = 0.0;
  double mean = 0.0;
  double sd = 0.0;
};

inline ScaledMoments scaled_moments(const double* x, std::size_t n) {
  ScaledMoments m;
  double big = 0.0;
  for (std::size_t i = 0; i < n; ++i) big = std::max(big, std::abs(x[i]));
  if (!(big > 0.0) || !std::isfinite(big)) return m;
  m.scale = big;
  double mean = 0.0;
  for (std::size_t i = 0; i < n; ++i) mean += x[i] / big;
  mean /= static_cast<double>(n);
  m.mean = mean;
  if (n < 2) return m;
  double ss = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double d = x[i] / big - mean;
    ss += d * d;
  }
  m.sd = std::sqrt(ss / static_cast<double>(n - 1));
  return m;
}

// Standard deviation of x[0..n) (n - 1 denominator) without overflow; 0 in
// the cases where scaled_moments gives scale 0.
inline double standard_deviation(const double* x, std::size_t n) {
  const ScaledMoments m = scaled_moments(x, n);
  return m.scale * m.sd;
}

struct IndexedValue {
  double value;
  std::uint32_t index;
};

// The argsort of the core: writes to order[0..q) the positions of the q
// observed values of x[0..p), sorted by value and then by position (a stable
// sort; -0 and +0 tie), and to sorted_values[0..q), unless it is null, the
// values in that order; returns q. Sorting (value, position) pairs keeps the
// comparisons in cache, about twice as fast as sorting positions through x.
// `scratch` is the caller's, to avoid allocations. (Soft sorts, whose sort is
// most of their cost, use the radix sort DecreasingOrder of permutahedron.hpp.)
inline std::size_t sort_observed(const double* x, std::size_t p, std::vector<IndexedValue>& scratch,
                                 std::uint32_t* order, double* sorted_values) {
  scratch.clear();
  for (std::size_t i = 0; i < p; ++i) {
    if (!std::isnan(x[i])) scratch.push_back({x[i], static_cast<std::uint32_t>(i)});
  }
  std::sort(scratch.begin(), scratch.end(), [](const IndexedValue& a, const IndexedValue& b) {
    return a.value < b.value || (a.value == b.value && a.index < b.index);
  });
  for (std::size_t k = 0; k < scratch.size(); ++k) order[k] = scratch[k].index;
  if (sorted_values) {
    for (std::size_t k = 0; k < scratch.size(); ++k) sorted_values[k] = scratch[k].value;
  }
  return scratch.size();
}

// The observed values of a column x[0..n) and their weights a renormalized to
// sum 1, for an operator that solves a column with missing values on its
// observed values alone; idx maps them back to the column.
struct ObservedValues {
  std::vector<std::size_t> idx;
  std::vector<double> x, a;
  // Returns false when the column has no missing value (then nothing is
  // copied and the column can be used as it is).
  bool gather(const double* x_col, const double* a_all, std::size_t n) {
    idx.clear();
    for (std::size_t i = 0; i < n; ++i) {
      if (!std::isnan(x_col[i])) idx.push_back(i);
    }
    if (idx.size() == n) return false;
    x.resize(idx.size());
    a.resize(idx.size());
    double total = 0.0;
    for (std::size_t k = 0; k < idx.size(); ++k) total += a_all[idx[k]];
    for (std::size_t k = 0; k < idx.size(); ++k) {
      x[k] = x_col[idx[k]];
      a[k] = a_all[idx[k]] / total;
    }
    return true;
  }
};

// <b, bbar>: the constant by which the gradient bbar of weights b on the
// simplex (sum(b) = 1) is defined; bbar - <b, bbar> is the gradient along it.
inline double simplex_gauge(const double* b, const double* bbar, std::size_t m) {
  double mean = 0.0;
  for (std::size_t l = 0; l < m; ++l) mean += b[l] * bbar[l];
  return mean;
}

}  // namespace diffrank
