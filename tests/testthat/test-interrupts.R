# SIGINT (Ctrl-C) during a long call must come back to R as an interrupt,
# after which the same R process still computes. Each call runs in its own
# Rscript process (helper-interrupts.R) and would take minutes without the
# interrupt; the tests assert the outcome, not a time (tools/interrupts.R
# times every family before a release).

# POSIX signals and a shell to start the child with; not on CRAN, whose
# machines should not see subprocesses killed by signals (about 15 seconds;
# make test runs them with NOT_CRAN=true).
skip_unless_signals <- function() {
  skip_on_cran()
  skip_on_os("windows")
}

test_that("Sinkhorn ranks of many columns stop on SIGINT", {
  skip_unless_signals()
  out <- interrupt_outcome("x <- matrix(rnorm(2000 * 1000), 2000)",
                           "sinkhorn_rank(x, eps = 1e-4, n_targets = 2000, threads = 2)")
  expect_identical(out[c("outcome", "usable")], list(outcome = "interrupted", usable = TRUE))
})

test_that("a Sinkhorn problem of one long column stops on SIGINT", {
  skip_unless_signals()
  out <- interrupt_outcome("x <- rnorm(30000)",
                           "sinkhorn_rank(x, eps = 1e-4, n_targets = 30000, threads = 1)")
  expect_identical(out[c("outcome", "usable")], list(outcome = "interrupted", usable = TRUE))
})

test_that("a large Kendall kernel matrix stops on SIGINT", {
  skip_unless_signals()
  out <- interrupt_outcome("x <- matrix(rnorm(20000 * 1000), 20000)",
                           "kendall_kernel(x, threads = 2)")
  expect_identical(out[c("outcome", "usable")], list(outcome = "interrupted", usable = TRUE))
})

test_that("a long SUQUAN fit stops on SIGINT", {
  skip_unless_signals()
  out <- interrupt_outcome(
    "x <- matrix(rnorm(3000 * 200), 3000); y <- rep(0:1, 100)",
    "suquan(x, y, lambda = 1e-3, rounds = 1e5, max_iter = 1e6, tol = 1e-12, threads = 2)")
  expect_identical(out[c("outcome", "usable")], list(outcome = "interrupted", usable = TRUE))
})
