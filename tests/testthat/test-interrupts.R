# SIGINT (Ctrl-C) during a long call must come back to R as an interrupt,
# after which the same R process still computes. Each call runs in its own
# Rscript process and would take minutes without the interrupt; the test
# asserts the outcome, not a time (tools/interrupts.R times every family
# before a release).

interrupt_outcome <- function(setup, call, delay = 1, give_up = 60) {
  dir <- tempfile("interrupt-")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE), add = TRUE)
  flag <- file.path(dir, "started")
  result <- file.path(dir, "result")
  child <- file.path(dir, "child.R")
  writeLines(c(
    "suppressPackageStartupMessages(library(diffrank))",
    "set.seed(1)",
    setup,
    sprintf("writeLines('go', '%s')", flag),
    sprintf("outcome <- tryCatch({ %s; 'finished' },", call),
    "  interrupt = function(e) 'interrupted',",
    "  error = function(e) paste('error:', conditionMessage(e)))",
    "usable <- tryCatch(identical(soft_rank(c(3, 1, 2), eps = 1e-3, scale = 'none'), c(3, 1, 2)),",
    "  error = function(e) FALSE)",
    sprintf("writeLines(c(outcome, usable), '%s')", result)
  ), child)
  rscript <- file.path(R.home("bin"), "Rscript")
  libs <- paste(.libPaths(), collapse = .Platform$path.sep)
  pid <- as.integer(system(sprintf("R_LIBS='%s' '%s' '%s' > '%s' 2>&1 & echo $!", libs, rscript,
                                   child, file.path(dir, "log")), intern = TRUE))
  waited <- 0
  while (!file.exists(flag) && !file.exists(result) && waited < give_up) {
    Sys.sleep(0.05)
    waited <- waited + 0.05
  }
  Sys.sleep(delay)
  tools::pskill(pid, tools::SIGINT)
  waited <- 0
  while (!file.exists(result) && waited < give_up) {
    Sys.sleep(0.05)
    waited <- waited + 0.05
  }
  if (!file.exists(result)) {
    tools::pskill(pid, tools::SIGKILL)
    return(c(outcome = "ignored SIGINT", usable = NA))
  }
  Sys.sleep(0.1)
  out <- readLines(result)
  c(outcome = out[1], usable = out[2])
}

# POSIX signals and a shell to start the child with (R CMD check runs these
# too: they take about 15 seconds).
skip_unless_signals <- function() {
  skip_on_os("windows")
}

test_that("Sinkhorn ranks of many columns stop on SIGINT", {
  skip_unless_signals()
  out <- interrupt_outcome("x <- matrix(rnorm(2000 * 1000), 2000)",
                           "sinkhorn_rank(x, eps = 1e-4, n_targets = 2000, threads = 2)")
  expect_identical(out, c(outcome = "interrupted", usable = "TRUE"))
})

test_that("a Sinkhorn problem of one long column stops on SIGINT", {
  skip_unless_signals()
  out <- interrupt_outcome("x <- rnorm(30000)",
                           "sinkhorn_rank(x, eps = 1e-4, n_targets = 30000, threads = 1)")
  expect_identical(out, c(outcome = "interrupted", usable = "TRUE"))
})

test_that("a large Kendall kernel matrix stops on SIGINT", {
  skip_unless_signals()
  out <- interrupt_outcome("x <- matrix(rnorm(20000 * 1000), 20000)",
                           "kendall_kernel(x, threads = 2)")
  expect_identical(out, c(outcome = "interrupted", usable = "TRUE"))
})

test_that("a long SUQUAN fit stops on SIGINT", {
  skip_unless_signals()
  out <- interrupt_outcome(
    "x <- matrix(rnorm(3000 * 200), 3000); y <- rep(0:1, 100)",
    "suquan(x, y, lambda = 1e-3, rounds = 1e5, max_iter = 1e6, tol = 1e-12, threads = 2)")
  expect_identical(out, c(outcome = "interrupted", usable = "TRUE"))
})
