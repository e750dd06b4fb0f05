# The Mallows model (rmallows(), mallows_model()): draws and fits, timed
# against the repeated insertion sampler written in R (the method of R code
# without a compiled sampler) and against the exact distribution. PerMallows,
# the anchor for fits, is no longer on CRAN; when it is installed its fit is
# timed too. Run by hand with the package installed: Rscript bench/mallows.R
library(diffrank)
if (file.exists("/proc/loadavg")) cat("Load average before the run:", readLines("/proc/loadavg"), "\n")

timed <- function(expr) system.time(expr)[["elapsed"]]

# Repeated insertion in R: item j of the consensus goes V_j places above the
# bottom of the items placed after it.
r_insertion <- function(n, consensus, theta) {
  p <- length(consensus)
  items <- order(consensus)
  out <- matrix(0, p, n)
  for (d in seq_len(n)) {
    placed <- integer(0)
    for (j in p:1) {
      m <- p - j
      w <- exp(-theta * (0:m))
      v <- sample.int(m + 1L, 1L, prob = w) - 1L
      placed <- append(placed, items[j], after = v)
    }
    out[placed, d] <- seq_len(p)
  }
  out
}

p <- 20
theta <- 0.3
set.seed(1)
consensus <- sample(p)
n_r <- 2000
t_r <- timed(r_insertion(n_r, consensus, theta))
t_1 <- timed(rmallows(1e5, consensus, theta, threads = 1))
t_2 <- timed(rmallows(1e5, consensus, theta, threads = 2))
cat(sprintf("Draws of %d items, theta = %.1f\n", p, theta))
cat(sprintf("  R repeated insertion   %8.1f us per draw (%d draws)\n", 1e6 * t_r / n_r, n_r))
cat(sprintf("  rmallows, 1 thread     %8.2f us per draw   %6.0fx faster\n", 1e6 * t_1 / 1e5,
            (t_r / n_r) / (t_1 / 1e5)))
cat(sprintf("  rmallows, 2 threads    %8.2f us per draw   %6.0fx faster\n", 1e6 * t_2 / 1e5,
            (t_r / n_r) / (t_2 / 1e5)))

r <- rmallows(1e4, consensus, theta)
t_fit <- timed(fit <- mallows_model(r))
stopifnot(all(fit$consensus == consensus))
cat(sprintf("Fit to 1e4 rankings of %d items (Kemeny consensus by local search, theta by ML): %.3f s, theta = %.4f\n",
            p, t_fit, fit$theta))
if (requireNamespace("PerMallows", quietly = TRUE)) {
  perms <- t(apply(r, 2, order))
  t_pm <- timed(PerMallows::lmm(perms, dist.name = "kendall", estimation = "approx"))
  cat(sprintf("  PerMallows::lmm: %.3f s, %.1fx our time\n", t_pm, t_pm / t_fit))
} else {
  cat("  (PerMallows is not installed: no anchor for the fit)\n")
}

# The generalized model and top-10 lists of the same rankings.
t_gen <- timed(mallows_model(r, model = "generalized"))
top <- ifelse(r <= 10, r, NA)
t_top <- timed(top_fit <- mallows_model(top))
cat(sprintf("  generalized model: %.3f s; top-10 lists: %.3f s, theta = %.4f\n", t_gen, t_top,
            top_fit$theta))

# Rank aggregation. Exact Kemeny (a shortest path over subsets) against
# enumeration of every ranking, in R with the same preference table.
above_of <- function(r) {
  above <- matrix(0, nrow(r), nrow(r))
  for (k in seq_len(ncol(r))) above <- above + outer(r[, k], r[, k], "<")
  above
}
enumerate_kemeny <- function(above) {
  p <- nrow(above)
  best <- Inf
  visit <- function(prefix, rest, cost) {
    if (cost >= best) return()
    if (!length(rest)) {
      best <<- cost
      return()
    }
    for (j in rest) visit(c(prefix, j), setdiff(rest, j), cost + sum(above[j, prefix]))
  }
  visit(integer(0), seq_len(p), 0)
  best
}
for (p_exact in c(7, 8)) {
  set.seed(2)
  small <- rmallows(200, sample(p_exact), theta = 0.1)
  t_enum <- timed(d_enum <- enumerate_kemeny(above_of(small)))
  t_exact <- timed(agg <- aggregate_rankings(small))
  stopifnot(agg$exact, isTRUE(all.equal(agg$disagreement, d_enum)))
  cat(sprintf("Exact Kemeny of %d items (200 rankings): %.4f s, enumeration with pruning in R %.2f s (%.0fx)\n",
              p_exact, t_exact, t_enum, t_enum / t_exact))
}
set.seed(3)
t16 <- timed(agg16 <- aggregate_rankings(rmallows(1000, sample(16), theta = 0.05)))
cat(sprintf("Exact Kemeny of 16 items (1000 rankings): %.3f s\n", t16))

# Beyond 16 items: the local search, against the same search in R.
r_local_search <- function(above, top) {
  repeat {
    moved <- FALSE
    for (i in seq_along(top)) {
      x <- top[i]
      rest <- top[-i]
      # disagreement of x's pairs at each position t (after t of the others)
      cost <- c(0, cumsum(above[x, rest])) + rev(c(0, cumsum(rev(above[rest, x]))))
      best <- which.min(cost) - 1L
      if (cost[best + 1L] < cost[i] - 1e-9) {
        top <- append(rest, x, after = best)
        moved <- TRUE
      }
    }
    if (!moved) return(top)
  }
}
for (p_big in c(100, 300)) {
  set.seed(4)
  big <- matrix(sample(p_big, p_big * 50, replace = TRUE), p_big)
  above <- above_of(big)
  t_r <- timed(r_top <- r_local_search(above, order(rowMeans(big))))
  t_c <- timed(agg <- aggregate_rankings(big, threads = 1))
  cat(sprintf("Kemeny local search, %d items x 50 rankings with ties: %.3f s; the search in R %.2f s (%.0fx); disagreement %.0f (R %.0f), Borda %.0f\n",
              p_big, t_c, t_r, t_r / t_c, agg$disagreement,
              sum(above[r_top, r_top][lower.tri(above)]),
              aggregate_rankings(big, "borda")$disagreement))
}
set.seed(5)
genes <- matrix(sample(4000, 4000 * 20, replace = TRUE), 4000)
t_4000 <- timed(agg <- aggregate_rankings(genes, threads = 2))
t_borda <- timed(aggregate_rankings(genes, "borda"))
cat(sprintf("4,000 items x 20 rankings: Kemeny %.2f s (2 threads), Borda %.3f s\n", t_4000, t_borda))
