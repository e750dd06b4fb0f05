// Thread pool access for the Rcpp glue. The numerical core stays free of R
// and of any threading library: glue code hands it index ranges through
// parallel_for or parallel_batches, whose body must never touch the R API
// (inputs are validated, outputs allocated and random numbers drawn on the
// main thread beforehand) and reports errors by throwing a C++ exception
// (never Rcpp::stop, which calls R to record the call stack).
//
// Threads run in one TBB task arena per thread count, created on first use
// and kept for the session. RcppParallel::parallelFor creates and destroys an
// arena at every call, and with oneTBB 2021.8 (Debian 12) each of those calls
// keeps about 7 KB that is never returned (2,000 threaded calls: +14 MB);
// a reused arena keeps the resident memory flat. A call never asks for more
// threads than TBB may run (the machine's cores), nor more than max_threads.
#pragma once

// One back end of RcppParallel, not its umbrella header <RcppParallel.h>:
// that one also brings RMatrix.h, which derives from std::iterator
// (deprecated in C++17) and is not used here. src/Makevars sets
// RCPP_PARALLEL_USE_TBB=1.
#if RCPP_PARALLEL_USE_TBB
#include <RcppParallel/TBB.h>
#else
#include <RcppParallel/TinyThread.h>
#endif
#include <Rcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace diffrank_glue {

// Most threads a call may use; R/threads.R caps `threads` at the same value.
constexpr int max_threads = 1024;

// The first exception (lowest start index) thrown by a body on any thread,
// kept so that it is rethrown on the main thread, where Rcpp's wrapper turns
// it into an R error. Once one is caught, the remaining ranges are skipped.
class ErrorSlot {
 public:
  bool failed() const { return failed_.load(std::memory_order_relaxed); }
  void capture(std::size_t at) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!error_ || at < at_) {
      error_ = std::current_exception();
      at_ = at;
    }
    failed_.store(true, std::memory_order_relaxed);
  }
  void rethrow() {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::atomic<bool> failed_{false};
  std::mutex mutex_;
  std::exception_ptr error_;
  std::size_t at_ = 0;
};

// Whether the tests lifted the cap at the machine's cores: the environment
// variable DIFFRANK_UNCAP_THREADS=true (set by tests/testthat/test-threads.R
// outside CRAN), so that 3 and 8 threads really run on a 2-core machine.
inline bool threads_uncapped() {
  const char* value = std::getenv("DIFFRANK_UNCAP_THREADS");
  return value != nullptr && std::strcmp(value, "true") == 0;
}

#if RCPP_PARALLEL_USE_TBB
// The arena for `threads` threads. Called from the main R thread only (R
// code is single-threaded), so the map needs no lock. Never destroyed: at
// process exit TBB may already have shut down. An arena larger than the
// machine gets its workers only under a global limit raised to max_threads.
inline tbb::task_arena& arena_for(int threads) {
  static auto* arenas = new std::map<int, tbb::task_arena*>();
  static tbb::global_control* raised = nullptr;
  if (raised == nullptr && threads_uncapped()) {
    raised = new tbb::global_control(tbb::global_control::max_allowed_parallelism,
                                     static_cast<std::size_t>(max_threads));
  }
  tbb::task_arena*& arena = (*arenas)[threads];
  if (arena == nullptr) arena = new tbb::task_arena(threads);
  return *arena;
}
#else
template <class Body>
struct RangeWorker : public RcppParallel::Worker {
  Body& body;
  explicit RangeWorker(Body& b) : body(b) {}
  void operator()(std::size_t begin, std::size_t end) override { body(begin, end); }
};
#endif

// The threads a call asking for `threads` actually runs: from 1 to
// max_threads, and no more than TBB may run (the machine's cores; TBB says so
// on stderr when asked for more).
inline int usable_threads(int threads) {
  threads = std::min(std::max(threads, 1), max_threads);
#if RCPP_PARALLEL_USE_TBB
  if (!threads_uncapped()) {
    threads = std::min(threads, std::max(1, tbb::this_task_arena::max_concurrency()));
  }
#endif
  return threads;
}

// Runs body(begin, end) over [0, n) with `threads` threads and ranges of at
// least `grain` indices (the last one may be shorter), and rethrows on the
// calling thread the first exception a body threw.
template <class Body>
void run_range(std::size_t n, int threads, std::size_t grain, Body& body) {
  if (n == 0) return;
  if (n <= 1) {
    body(std::size_t(0), n);
    return;
  }
  threads = usable_threads(threads);
  grain = std::max<std::size_t>(grain, 1);
  // One range (n <= grain) would run on one thread anyway: without entering
  // the arena, whose start costs more than a short body.
  if (threads == 1 || n <= grain) {
    body(std::size_t(0), n);
    return;
  }
  ErrorSlot error;
  auto guarded = [&](std::size_t begin, std::size_t end) {
    if (error.failed()) return;
    try {
      body(begin, end);
    } catch (...) {
      error.capture(begin);
    }
  };
#if RCPP_PARALLEL_USE_TBB
  arena_for(threads).execute([&] {
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n, grain),
                      [&](const tbb::blocked_range<std::size_t>& r) { guarded(r.begin(), r.end()); });
  });
#else
  RangeWorker<decltype(guarded)> worker(guarded);
  RcppParallel::ttParallelFor(0, n, worker, grain);
#endif
  error.rethrow();
}

// Runs body(begin, end) over [0, n) with `threads` threads, in batches
// (all of [0, n) at once when batch is 0): between two batches the main
// thread calls between(done) with the number of indices done so far and
// then checks for a user interrupt. The first batch has `threads * grain`
// indices (at most `batch`); each next one is sized from the time the last
// one took, to last about a tenth of a second (at most four times larger or
// smaller), so that an interrupt is noticed within a fraction of a second
// however long an index takes, and short indices are not held up by many
// joins. Each index must be processed independently of the others, so the
// result depends neither on the number of threads nor on the batches and
// ranges (of at least `grain` indices) that the work is cut into.
// The batch argument for timed batches from the first one on (a loop over
// columns that may be long, such as sorting every column of a large matrix).
constexpr std::size_t timed_batches = std::numeric_limits<std::size_t>::max();

template <class Body, class Between>
void parallel_batches(std::size_t n, int threads, std::size_t grain, std::size_t batch, Body body,
                      Between&& between) {
  if (n == 0) return;
  grain = std::max<std::size_t>(grain, 1);
  std::size_t size = batch == 0 ? n
                                : std::min(batch, static_cast<std::size_t>(std::max(threads, 1)) * grain);
  constexpr double target_seconds = 0.1;
  for (std::size_t start = 0; start < n;) {
    const std::size_t stop = std::min(n, start + size);
    auto shifted = [&](std::size_t b, std::size_t e) { body(start + b, start + e); };
    const auto began = std::chrono::steady_clock::now();
    run_range(stop - start, threads, grain, shifted);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    between(stop);
    if (stop < n) Rcpp::checkUserInterrupt();
    const double factor = std::min(4.0, std::max(0.25, target_seconds / std::max(seconds, 1e-6)));
    size = std::max<std::size_t>(1, static_cast<std::size_t>(static_cast<double>(stop - start) * factor));
    start = stop;
  }
}

template <class Body>
void parallel_batches(std::size_t n, int threads, std::size_t grain, std::size_t batch,
                      Body body) {
  parallel_batches(n, threads, grain, batch, body, [](std::size_t) {});
}

// parallel_batches without a progress callback, in the argument order the
// glue has always used.
template <class Body>
void parallel_for(std::size_t n, int threads, Body body, std::size_t grain = 1,
                  std::size_t batch = 0) {
  parallel_batches(n, threads, grain, batch, body);
}

// A poll for user interrupts from inside one long problem (the `poll` of
// the core's settings), callable from any thread: on the main R thread it
// checks for an interrupt at most every 0.1 s; once one is seen, every call
// on any thread throws Rcpp::internal::InterruptedException, which the
// parallel helpers carry back to the main thread and Rcpp turns into the R
// interrupt. Columns are checked between batches by parallel_batches; this
// covers a single column that runs for seconds.
class InterruptPoll {
 public:
  InterruptPoll() : main_(std::this_thread::get_id()), last_(std::chrono::steady_clock::now()) {}
  InterruptPoll(const InterruptPoll&) = delete;
  InterruptPoll& operator=(const InterruptPoll&) = delete;

  void operator()() {
    if (seen_.load(std::memory_order_relaxed)) throw Rcpp::internal::InterruptedException();
    if (std::this_thread::get_id() != main_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    if (R_ToplevelExec(check, nullptr) == FALSE) {
      seen_.store(true, std::memory_order_relaxed);
      throw Rcpp::internal::InterruptedException();
    }
  }

  // A std::function for the core's settings, valid while this object lives.
  std::function<void()> callback() {
    return [this] { (*this)(); };
  }

 private:
  static void check(void*) { R_CheckUserInterrupt(); }
  std::thread::id main_;
  std::chrono::steady_clock::time_point last_;  // main thread only
  std::atomic<bool> seen_{false};
};

// A progress line on stderr ("\r<label>: 42% of 1000 <unit>") for a long
// loop, shown once the work has taken more than `delay` seconds; a callback
// for parallel_batches (main thread only).
class ProgressLine {
 public:
  ProgressLine(bool enabled, std::string label, std::string unit, std::size_t total,
               double delay = 2.0)
      : enabled_(enabled),
        label_(std::move(label)),
        unit_(std::move(unit)),
        total_(total),
        delay_(delay),
        start_(std::chrono::steady_clock::now()) {}
  ~ProgressLine() {
    if (shown_) REprintf("\n");
  }
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  void operator()(std::size_t done) {
    if (!enabled_ || total_ == 0) return;
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    if (elapsed <= delay_) return;
    REprintf("\r%s: %3.0f%% of %.0f %s", label_.c_str(),
             100.0 * static_cast<double>(done) / static_cast<double>(total_),
             static_cast<double>(total_), unit_.c_str());
    shown_ = true;
  }

 private:
  bool enabled_, shown_ = false;
  std::string label_, unit_;
  std::size_t total_;
  double delay_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace diffrank_glue
