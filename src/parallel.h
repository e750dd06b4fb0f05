// Thread pool access for the Rcpp glue. The numerical core stays free of R
// and of any threading library: glue code hands it index ranges through
// parallel_for, whose body must never touch the R API (inputs are validated,
// outputs allocated and random numbers drawn on the main thread beforehand).
#pragma once

// RcppParallel's RMatrix.h derives from std::iterator, deprecated in C++17.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#include <RcppParallel.h>
#pragma GCC diagnostic pop
#include <Rcpp.h>

#include <algorithm>
#include <cstddef>

namespace diffrank_glue {

template <class Body>
struct RangeWorker : public RcppParallel::Worker {
  Body& body;
  explicit RangeWorker(Body& b) : body(b) {}
  void operator()(std::size_t begin, std::size_t end) override { body(begin, end); }
};

// Runs body(begin, end) over [0, n) with `threads` threads. Each index must be
// processed independently of the others, so the result does not depend on the
// number of threads or on how TBB splits the range. With `batch` > 0 the range
// is cut into batches of that size and the main thread checks for a user
// interrupt between two batches.
template <class Body>
void parallel_for(std::size_t n, int threads, Body body, std::size_t grain = 1,
                  std::size_t batch = 0) {
  if (n == 0) return;
  if (batch == 0) batch = n;
  for (std::size_t start = 0; start < n; start += batch) {
    const std::size_t stop = std::min(n, start + batch);
    if (threads <= 1 || stop - start <= 1) {
      body(start, stop);
    } else {
      auto shifted = [&](std::size_t b, std::size_t e) { body(start + b, start + e); };
      RangeWorker<decltype(shifted)> worker(shifted);
      RcppParallel::parallelFor(0, stop - start, worker, std::max<std::size_t>(grain, 1), threads);
    }
    if (stop < n) Rcpp::checkUserInterrupt();
  }
}

}  // namespace diffrank_glue
