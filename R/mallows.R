#' The Mallows model of rankings
#'
#' The Mallows model under the Kendall distance: a ranking \eqn{\sigma}{sigma}
#' of p items has probability
#' \deqn{P(\sigma) = \exp(-\theta\, d(\sigma, \sigma_0)) / \psi(\theta),}{
#' P(sigma) = exp(-theta d(sigma, sigma0)) / psi(theta),}
#' where \eqn{d}{d} counts the pairs of items that \eqn{\sigma}{sigma} and the
#' consensus ranking \eqn{\sigma_0}{sigma0} (the model's centre) order differently and \eqn{\theta \ge 0}{theta >= 0}
#' is the dispersion (0: every ranking equally likely; large: rankings close
#' to the consensus). `rmallows()` draws rankings, `dmallows()` gives their
#' probability, and `mallows_model()` fits the consensus and the dispersion to
#' observed rankings.
#'
#' @section The model:
#' Listing the items from the top of the consensus, let \eqn{V_j}{V_j} count the
#' items below the j-th in the consensus that a ranking puts above it. Every
#' ranking has one such vector, its distance to the consensus is
#' \eqn{\sum_j V_j}{sum V_j}, and under the model the \eqn{V_j}{V_j} are
#' independent truncated geometric variables on \eqn{0, \ldots, p - j}{0..p-j}
#' (Fligner and Verducci 1986). This gives the normalizing constant
#' \eqn{\psi(\theta) = \prod_{j=1}^{p} (1 - e^{-j\theta}) / (1 - e^{-\theta})}{psi(theta) = prod_j (1 - exp(-j theta)) / (1 - exp(-theta))},
#' the expected distance in closed form, and exact draws from p - 1 uniforms
#' each (R's generator: `set.seed()` reproduces them), placed in
#' O(p log p) per draw.
#'
#' @section Fitting:
#' `mallows_model()` takes the consensus given, or estimates it: the Borda
#' ranking (items by mean rank), then a local search that swaps neighbours of
#' the consensus while fewer rankings agree with their order than disagree (each
#' swap lowers the total Kendall distance to the rankings; the result is
#' locally Kemeny-optimal, not necessarily the Kemeny ranking). The search
#' needs the p x p table of pairwise preferences: beyond 2,000 items the
#' consensus is the Borda ranking alone. For a given
#' consensus, the maximum-likelihood dispersion solves
#' \eqn{E_\theta[d] = \bar d}{E_theta[d] = mean distance}, which has one
#' solution (0 when the mean distance is at least p(p - 1)/4, that of
#' rankings drawn at random; infinite, with a warning, when every ranking
#' equals the consensus).
#'
#' @param n Number of rankings to draw, a whole number >= 0.
#' @param consensus The consensus ranking (the model's centre, the most
#'   likely ranking): a ranking of the p items, 1 for the top item (as
#'   `rank(-score)` gives), without ties. Its names, if any, name the items;
#'   when the rows of `x` are named too, they are matched by name.
#'   For `mallows_model()`, `NULL` (the default) to estimate it.
#' @param theta The dispersion, a finite number >= 0.
#' @param x Rankings, items x rankings: each column a ranking of
#'   `1:nrow(x)`, 1 for the top item, without ties or missing values; a
#'   vector for one ranking. For `print()`, a `mallows_model`.
#' @param log Whether to return log-probabilities.
#' @param threads Number of threads; see [diffrank_threads()]. The result does
#'   not depend on it.
#' @param ... Must be empty (an error names any argument given there).
#' @return `rmallows()`: a p x n matrix of rankings (1 = top), with the item
#'   names of `consensus` as row names. `dmallows()`: one probability per
#'   ranking. `mallows_model()`: an object of class `mallows_model`, a list
#'   with `consensus` (a ranking of the items, 1 = top), `theta`, `distance`
#'   (each ranking's distance to the consensus), `log_likelihood`,
#'   `expected_distance` (under the fit) and `n_items`, `n_rankings`.
#' @references
#' Mallows CL (1957). Non-null ranking models. I. *Biometrika* 44, 114-130.
#'
#' Fligner MA, Verducci JS (1986). Distance based ranking models. *Journal of
#' the Royal Statistical Society B* 48(3), 359-369.
#' @seealso [mallows_kernel()], the kernel exp(-lambda d) between rankings.
#' @export
#' @examples
#' set.seed(1)
#' consensus <- c(a = 1, b = 2, c = 3, d = 4, e = 5)
#' r <- rmallows(200, consensus, theta = 0.7)
#' r[, 1:5]
#' dmallows(r[, 1:3], consensus, theta = 0.7)
#' fit <- mallows_model(r)   # the consensus and theta from the rankings
#' fit
rmallows <- function(n, consensus, theta, threads = diffrank_threads()) {
  n <- check_whole(n, "n", lower = 0)
  consensus <- check_consensus_ranking(consensus)
  theta <- check_number(theta, "theta", lower = 0)
  threads <- check_threads(threads)
  p <- length(consensus)
  check_memory(8 * as.double(n) * p, "n", n)
  out <- mallows_output_cpp(p, n)
  consensus_order <- order(consensus) - 1L
  # Draws in chunks of about 2^20 uniforms, written into `out` in place:
  # bounded scratch memory, and R checks for interrupts between chunks
  # (runif() does not). The uniforms are drawn in the same order as all at
  # once.
  per_chunk <- max(1L, as.integer(2^20 %/% max(p - 1L, 1L)))
  for (first in if (n > 0L) seq(1L, n, by = per_chunk) else integer(0)) {
    count <- min(n, first + per_chunk - 1L) - first + 1L
    uniforms <- matrix(stats::runif((p - 1L) * count), p - 1L, count)
    mallows_draws_into_cpp(out, first - 1, uniforms, consensus_order, theta, threads)
  }
  dimnames(out) <- list(names(consensus), NULL)
  out
}

#' @rdname rmallows
#' @export
dmallows <- function(x, consensus, theta, log = FALSE) {
  consensus <- check_consensus_ranking(consensus)
  theta <- check_number(theta, "theta", lower = 0)
  log <- check_flag(log, "log")
  r <- check_full_rankings(x, length(consensus))
  consensus <- align_items(consensus, rownames(r))
  d <- kendall_distances_cpp(r, as.double(consensus), 1L)
  out <- -theta * d - mallows_log_normalizer_cpp(length(consensus), theta)
  names(out) <- colnames(r)
  if (log) out else exp(out)
}

#' @rdname rmallows
#' @export
mallows_model <- function(x, consensus = NULL, threads = diffrank_threads(), ...) {
  check_dots_empty(...)
  threads <- check_threads(threads)
  r <- check_full_rankings(x, NULL)
  p <- nrow(r)
  consensus <- if (is.null(consensus)) {
    local_kemeny(r)
  } else {
    align_items(check_consensus_ranking(consensus, p), rownames(r))
  }
  if (!is.null(rownames(r))) names(consensus) <- rownames(r)
  d <- kendall_distances_cpp(r, as.double(consensus), threads)
  theta <- mallows_theta_cpp(p, mean(d))
  if (is.infinite(theta)) {
    warning(structure(class = c("diffrank_infinite_dispersion", "warning", "condition"), list(
      message = paste0("Every ranking equals the consensus: the maximum-likelihood theta is ",
                       "infinite (the model puts all its mass on the consensus)."),
      call = NULL)))
  }
  log_likelihood <- if (is.infinite(theta)) 0 else {
    -theta * sum(d) - ncol(r) * mallows_log_normalizer_cpp(p, theta)
  }
  structure(
    list(consensus = consensus, theta = theta, distance = d, log_likelihood = log_likelihood,
         expected_distance = if (is.infinite(theta)) 0 else mallows_expected_distance_cpp(p, theta),
         n_items = p, n_rankings = ncol(r), call = match.call()),
    class = "mallows_model"
  )
}

#' @rdname rmallows
#' @export
print.mallows_model <- function(x, ...) {
  check_dots_empty(...)
  cat(sprintf("<mallows_model> Mallows model (Kendall distance) of %d rankings of %d items\n",
              x$n_rankings, x$n_items))
  top <- order(x$consensus)
  labels <- names(x$consensus)[top] %||% as.character(top)
  shown <- utils::head(labels, 10L)
  cat("Centre:", paste(shown, collapse = " > "), if (length(labels) > 10L) "> ..." else "", "\n")
  cat(sprintf("theta = %s; mean distance to the consensus %.3f (%.3f of the %s pairs)\n",
              format(signif(x$theta, 4)), mean(x$distance),
              mean(x$distance) / (x$n_items * (x$n_items - 1) / 2),
              format(x$n_items * (x$n_items - 1) / 2)))
  cat(sprintf("log-likelihood %s\n", format(signif(x$log_likelihood, 6))))
  invisible(x)
}

# A ranking of 1:p without ties (p = length when NULL), as a double vector.
check_consensus_ranking <- function(consensus, p = NULL, arg = "consensus") {
  if (!is.numeric(consensus) || is.object(consensus) || !is.null(dim(consensus)) ||
        length(consensus) < 1L || anyNA(consensus) ||
        any(sort(consensus) != seq_along(consensus))) {
    abort("`%s` must be a ranking of the items, 1:p in any order (1 for the top item, no ties), not %s.",
          arg, describe(consensus))
  }
  if (!is.null(p) && length(consensus) != p) {
    abort("`%s` must rank the %d items (rows) of `x`, not %d.", arg, p, length(consensus))
  }
  stats::setNames(as.double(consensus), names(consensus))
}

# The consensus in the order of the rows of x when both name their items
# (the same items, perhaps in another order).
align_items <- function(consensus, items) {
  if (is.null(items) || is.null(names(consensus)) || identical(names(consensus), items)) {
    return(consensus)
  }
  if (!setequal(names(consensus), items) || anyDuplicated(items)) {
    abort("`consensus` and the rows of `x` name different items (for example \"%s\").",
          setdiff(union(names(consensus), items), intersect(names(consensus), items))[1L] %||%
            items[anyDuplicated(items)])
  }
  consensus[items]
}

# Rankings (items x rankings) of 1:p without ties or missing values, as a
# double matrix; p = nrow when NULL.
check_full_rankings <- function(x, p, arg = "x") {
  if (is.numeric(x) && is.null(dim(x)) && !is.object(x)) {
    x <- matrix(x, ncol = 1L, dimnames = list(names(x), NULL))
  }
  m <- as_numeric_matrix(x, arg)
  if (!is.null(p) && nrow(m) != p) {
    abort("`%s` must have one row per item of `consensus` (%d), not %d.", arg, p, nrow(m))
  }
  if (nrow(m) < 1L || ncol(m) < 1L) {
    abort("`%s` must hold at least one ranking of at least one item, not %d x %d.", arg,
          nrow(m), ncol(m))
  }
  if (anyNA(m)) {
    abort("`%s` has missing values: the Mallows model here takes complete rankings only.", arg)
  }
  sorted <- apply(m, 2L, sort)
  if (any(matrix(sorted, nrow(m)) != seq_len(nrow(m)))) {
    bad <- which(colSums(matrix(sorted, nrow(m)) != seq_len(nrow(m))) > 0)[1L]
    abort("Each column of `%s` must be a ranking of 1:%d without ties; column %d is not.", arg,
          nrow(m), bad)
  }
  m
}

# The Borda ranking of the columns of r (items by mean rank, ties by item),
# then swaps of neighbours while more rankings order them the other way.
local_kemeny <- function(r) {
  p <- nrow(r)
  top <- order(rowMeans(r), seq_len(p))
  if (p < 2L) return(1)
  if (p > 2000L) {
    consensus <- numeric(p)
    consensus[top] <- seq_len(p)
    return(consensus)
  }
  # above[a, b]: the rankings that put item a above item b
  above <- matrix(0, p, p)
  for (k in seq_len(ncol(r))) above <- above + outer(r[, k], r[, k], "<")
  repeat {
    swapped <- FALSE
    for (i in seq_len(p - 1L)) {
      a <- top[i]
      b <- top[i + 1L]
      if (above[b, a] > above[a, b]) {
        top[i] <- b
        top[i + 1L] <- a
        swapped <- TRUE
      }
    }
    if (!swapped) break
  }
  consensus <- numeric(p)
  consensus[top] <- seq_len(p)
  consensus
}
