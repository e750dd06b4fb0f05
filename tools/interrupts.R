# Interrupt check before a release (make release-checks): a long call of
# each family runs in its own Rscript process, gets SIGINT (Ctrl-C) once it
# has run for `delay` seconds, and must return to R within a second, after
# which the same process must still compute. Prints one line per family and
# exits with status 1 if any call ignores the interrupt for longer.
#   Rscript tools/interrupts.R          (from the source folder, diffrank
#                                       installed; Linux or macOS)
delay <- 1.5     # seconds of work before the interrupt
limit <- 1       # seconds allowed between SIGINT and the return to R
give_up <- 120   # seconds after which a call that ignores SIGINT is killed

# Each case: data set-up (not timed), then one call that would run for far
# longer than `delay` uninterrupted (minutes for most of them).
cases <- list(
  kendall_kernel = c("x <- matrix(rnorm(20000 * 1500), 20000)",
                     "kendall_kernel(x, threads = 2, progress = FALSE)"),
  weighted_kendall_kernel = c("x <- matrix(rnorm(20000 * 1500), 20000)",
                              "weighted_kendall_kernel(x, threads = 2, progress = FALSE)"),
  kendall_kernel_interleave = c("x <- matrix(rnorm(20000 * 1500), 20000); x[sample(length(x), 3e6)] <- NA",
                                "kendall_kernel(x, na = \"interleave\", threads = 2, progress = FALSE)"),
  mallows_kernel_topk = c("x <- matrix(rnorm(20000 * 1500), 20000)",
                          "mallows_kernel(x, type = \"topk\", k = 2000, threads = 2, progress = FALSE)"),
  mallows_kernel = c("x <- matrix(rnorm(20000 * 1500), 20000)",
                     "mallows_kernel(x, threads = 2, progress = FALSE)"),
  rmallows = c("consensus <- sample(2000)",
               "rmallows(1e5, consensus, theta = 0.001, threads = 2)"),
  aggregate_rankings = c("x <- matrix(sample(4000, 4000 * 400, replace = TRUE), 4000)",
                         "aggregate_rankings(x, method = \"kemeny\", threads = 2)"),
  mallows_mixture = c("r <- cbind(rmallows(2e4, sample(300), 0.01), rmallows(2e4, sample(300), 0.01))",
                      "mallows_mixture(r, 1:4, threads = 2)"),
  sinkhorn_rank_many_columns = c("x <- matrix(rnorm(2000 * 2000), 2000)",
                                 "sinkhorn_rank(x, eps = 1e-4, n_targets = 2000, threads = 2, progress = FALSE)"),
  sinkhorn_rank_one_long_column = c("x <- rnorm(50000)",
                                    "sinkhorn_rank(x, eps = 1e-3, n_targets = 50000, threads = 2, progress = FALSE)"),
  sinkhorn_plan = c("x <- matrix(rnorm(200 * 4e4), 200)",
                    "suppressWarnings(sinkhorn_plan(x, eps = 1e-4, n_targets = 8, threads = 2, progress = FALSE))"),
  birkhoff_rank = c("x <- matrix(rnorm(2000 * 100), 2000)",
                    "birkhoff_rank(x, n_targets = 2000, threads = 2)"),
  birkhoff_rank_one_long_column = c("x <- rnorm(4000)",
                                    "birkhoff_rank(x, n_targets = 4000, threads = 2)"),
  network_plan = c("x <- matrix(rnorm(1024 * 40), 1024)",
                   "network_plan(x, network = \"odd_even\", threads = 2)"),
  network_plan_one_long_column = c("x <- rnorm(8192)", "network_plan(x, threads = 2)"),
  sinkhorn_quantize = c("x <- matrix(rnorm(200 * 4e4), 200)",
                        "sinkhorn_quantize(x, eps = 1e-4, n_targets = 8, threads = 2, progress = FALSE)"),
  sinkhorn_normalize = c("x <- matrix(rnorm(50000 * 400), 50000)",
                         "sinkhorn_normalize(x, threads = 2, progress = FALSE)"),
  soft_rank = c("x <- matrix(rnorm(2e8), 1e4)", "soft_rank(x, threads = 2)"),
  normalize_quantiles = c("x <- matrix(rnorm(2e8), 1e5)", "normalize_quantiles(x, threads = 2)"),
  perturbed = c("theta <- rnorm(2000)",
                "perturbed_fn(theta, \"rank\", n_samples = 5e4, threads = 2)"),
  suquan = c(paste("x <- matrix(rnorm(5000 * 400), 5000); y <- rep(0:1, 200);",
                   "x[, y == 1] <- x[, y == 1] + rnorm(5000, sd = 0.2)"),
             "suquan(x, y, lambda = 1e-3, rounds = 1000, max_iter = 1000L, tol = 1e-12, threads = 2)"),
  qmf = c("x <- matrix(rnorm(20000 * 100), 20000)",
          "qmf(x, rank = 10, max_epochs = 10000L, tol = 0, threads = 2, verbose = FALSE)")
)

source("tests/testthat/helper-interrupts.R")  # interrupt_outcome()

run_case <- function(name, setup, call) {
  out <- interrupt_outcome(setup, call, delay = delay, give_up = give_up)
  data.frame(family = name, outcome = out$outcome, seconds = out$seconds, usable = out$usable)
}

rows <- do.call(rbind, lapply(names(cases), function(name) {
  row <- run_case(name, cases[[name]][1], cases[[name]][2])
  cat(sprintf("%-32s %-12s %6s s  R usable after: %s\n", row$family, row$outcome,
              format(round(row$seconds, 3), nsmall = 3), row$usable))
  row
}))
ok <- rows$outcome == "interrupted" & !is.na(rows$seconds) & rows$seconds < limit &
  rows$usable %in% TRUE
cat(sprintf("\n%d of %d families stop within %g s of SIGINT and leave R usable\n", sum(ok),
            nrow(rows), limit))
if (!all(ok)) {
  cat("not met:", paste(rows$family[!ok], collapse = ", "), "\n")
  quit(status = 1)
}
