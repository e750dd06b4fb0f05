// Internal entry point that exercises parallel.h on its own, for the tests
// (tests/testthat/test-threads.R): ranges, batches, progress callbacks and
// exceptions thrown on worker threads.
#include <Rcpp.h>

#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "parallel.h"

// Runs parallel_batches over n indices and returns how many times each index
// was visited and the counts passed to the progress callback. The body throws
// at index `throw_at` (when below n): std::bad_alloc for what = "bad_alloc",
// std::runtime_error otherwise.
// [[Rcpp::export(rng = false)]]
Rcpp::List parallel_check_cpp(int n, int threads, int grain, int batch, int throw_at,
                              std::string what) {
  Rcpp::IntegerVector visits(n);
  int* v = visits.begin();
  std::vector<double> progress;
  const bool bad_alloc = what == "bad_alloc";
  diffrank_glue::parallel_batches(
      static_cast<std::size_t>(n), threads, static_cast<std::size_t>(grain),
      static_cast<std::size_t>(batch),
      [&](std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) {
          if (static_cast<int>(i) == throw_at) {
            if (bad_alloc) throw std::bad_alloc();
            throw std::runtime_error("worker failed at index " + std::to_string(i));
          }
          ++v[i];
        }
      },
      [&](std::size_t done) { progress.push_back(static_cast<double>(done)); });
  return Rcpp::List::create(Rcpp::Named("visits") = visits,
                            Rcpp::Named("progress") = Rcpp::wrap(progress));
}

// An interrupt check for long loops written in R (noise drawn in chunks):
// the pending interrupt, if any, is raised as an R interrupt.
// [[Rcpp::export(rng = false)]]
void check_interrupt_cpp() {
  Rcpp::checkUserInterrupt();
}
