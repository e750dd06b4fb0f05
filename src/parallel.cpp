// Internal entry point that exercises parallel.h on its own, for the tests
// (tests/testthat/test-threads.R): ranges, batches, progress callbacks and
// exceptions thrown on worker threads.
#include <Rcpp.h>

#include <chrono>
#include <mutex>
#include <new>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "parallel.h"

// Runs parallel_batches over n indices, each taking at least `micros`
// microseconds, and returns how many times each index was visited, the counts
// passed to the progress callback and the number of distinct threads that ran
// the body. The body throws at index `throw_at` (when below n):
// std::bad_alloc for what = "bad_alloc", std::runtime_error otherwise.
// [[Rcpp::export(rng = false)]]
Rcpp::List parallel_check_cpp(int n, int threads, int grain, int batch, int throw_at,
                              std::string what, int micros = 0) {
  Rcpp::IntegerVector visits(n);
  int* v = visits.begin();
  std::vector<double> progress;
  std::set<std::thread::id> seen;
  std::mutex seen_mutex;
  const bool bad_alloc = what == "bad_alloc";
  diffrank_glue::parallel_batches(
      static_cast<std::size_t>(n), threads, static_cast<std::size_t>(grain),
      static_cast<std::size_t>(batch),
      [&](std::size_t begin, std::size_t end) {
        {
          std::lock_guard<std::mutex> lock(seen_mutex);
          seen.insert(std::this_thread::get_id());
        }
        for (std::size_t i = begin; i < end; ++i) {
          if (static_cast<int>(i) == throw_at) {
            if (bad_alloc) throw std::bad_alloc();
            throw std::runtime_error("worker failed at index " + std::to_string(i));
          }
          if (micros > 0) std::this_thread::sleep_for(std::chrono::microseconds(micros));
          ++v[i];
        }
      },
      [&](std::size_t done) { progress.push_back(static_cast<double>(done)); });
  return Rcpp::List::create(Rcpp::Named("visits") = visits,
                            Rcpp::Named("progress") = Rcpp::wrap(progress),
                            Rcpp::Named("threads_used") = static_cast<int>(seen.size()));
}

// An interrupt check for long loops written in R (noise drawn in chunks):
// the pending interrupt, if any, is raised as an R interrupt.
// [[Rcpp::export(rng = false)]]
void check_interrupt_cpp() {
  Rcpp::checkUserInterrupt();
}

// The most threads a call starts (src/parallel.h: max_threads), which the R
// wrappers' checks of `threads` take as well (R/threads.R).
// [[Rcpp::export(rng = false)]]
int max_threads_cpp() { return diffrank_glue::max_threads; }
