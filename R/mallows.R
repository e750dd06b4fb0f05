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
#' A ranking is built from the top, one position at a time: at stage j the
#' item placed is the \eqn{(S_j + 1)}{(S_j + 1)}-th, in the consensus order, of
#' the items not placed yet. \eqn{S_j}{S_j} counts the pairs (the item placed,
#' an item placed later) that the consensus orders the other way, so the
#' distance to the consensus is \eqn{\sum_j S_j}{sum S_j}, and under the model
#' the \eqn{S_j}{S_j} are independent truncated geometric variables on
#' \eqn{0, \ldots, p - j}{0..p-j} (the multistage representation of Fligner
#' and Verducci 1986). This gives the normalizing constant
#' \eqn{\psi(\theta) = \prod_{j=1}^{p} (1 - e^{-j\theta}) / (1 - e^{-\theta})}{psi(theta) = prod_j (1 - exp(-j theta)) / (1 - exp(-theta))},
#' the expected distance in closed form, and exact draws from p - 1 uniforms
#' each (R's generator: `set.seed()` reproduces them), placed in
#' O(p log p) per draw.
#'
#' With one dispersion \eqn{\theta_j}{theta_j} per stage, \eqn{P(\sigma)
#' \propto \exp(-\sum_j \theta_j S_j)}{P(sigma) proportional to exp(-sum_j
#' theta_j S_j)}, this is the generalized Mallows model (`theta` a vector of
#' p - 1 values; `model = "generalized"`): large \eqn{\theta_j}{theta_j} for
#' the first stages say that the rankings agree on the top items and less
#' below.
#'
#' @section Top-k lists:
#' A top-k list ranks its first k items and leaves the others unordered below
#' them (`NA` in `x`). Its probability, the sum over the full rankings that
#' extend it, is that of its first k stages (Fligner and Verducci 1986; Meila
#' and Bao 2010), so `dmallows()` and `mallows_model()` take top-k lists
#' and full rankings together. Other partial rankings (ties, or missing items
#' above listed ones) have no closed-form likelihood; [aggregate_rankings()]
#' takes them.
#'
#' @section Fitting:
#' `mallows_model()` takes the consensus given, or estimates it by its
#' maximum likelihood, the ranking closest to the rankings in summed Kendall
#' distance (a Kemeny ranking; unlisted items of top lists count as tied
#' below the listed ones): exact for at most 16 items, up to 2,000 items the
#' Borda ranking improved by moves of single items (a local optimum), beyond
#' the Borda ranking; see [aggregate_rankings()]. For `model = "generalized"`, the centre maximizes
#' the profile likelihood (each stage's dispersion at its maximum): over
#' every ranking for at most 6 items; up to 100 items, the Kemeny ranking
#' improved by swaps of neighbouring items while the profile likelihood
#' rises (a local maximum: the landscape is rugged, and an exact search
#' needs branch and bound, Mandhani and Meila 2009); beyond, the Kemeny
#' ranking. For a given consensus, the
#' maximum-likelihood dispersion solves \eqn{E_\theta[\sum_j S_j] = \sum_j
#' S_j}{E_theta[sum S_j] = observed sum}, which has one solution (0 when the
#' rankings are farther from the consensus than random rankings; infinite,
#' with a warning, when every ranking agrees with it), and each stage's
#' dispersion of the generalized model the same equation for its stage (`NA`
#' for stages no top list reaches).
#'
#' @param n Number of rankings to draw, a whole number >= 0.
#' @param consensus The consensus ranking (the model's centre, the most
#'   likely ranking): a ranking of the p items, 1 for the top item (as
#'   `rank(-score)` gives), without ties. Its names, if any, name the items;
#'   when the rows of `x` are named too, they are matched by name.
#'   For `mallows_model()`, `NULL` (the default) to estimate it.
#' @param theta The dispersion, a finite number >= 0; or, for the generalized
#'   model, one per stage (p - 1 values, the first for the top position).
#' @param x Rankings, items x rankings: each column a ranking of
#'   `1:nrow(x)`, 1 for the top item, without ties, or a top-k list (ranks
#'   `1:k` and `NA` for the other items); a vector for one ranking. For
#'   `print()`, a `mallows_model`.
#' @param model `"mallows"` (the default; one dispersion) or `"generalized"`
#'   (one per stage).
#' @param log Whether to return log-probabilities.
#' @param threads Number of threads; see [diffrank_threads()]. The result does
#'   not depend on it.
#' @param ... Must be empty (an error names any argument given there).
#' @return `rmallows()`: a p x n matrix of rankings (1 = top), with the item
#'   names of `consensus` as row names. `dmallows()`: one probability per
#'   ranking (of a top-k list: that of the set of rankings that extend it).
#'   `mallows_model()`: an object of class `mallows_model`, a list with
#'   `consensus` (a ranking of the items, 1 = top), `theta` (one value, or
#'   one per stage), `model`, `distance` (each ranking's distance to the
#'   consensus, over the pairs a top list orders), `log_likelihood`,
#'   `expected_distance` (of a full ranking under the fit), `exact` (whether
#'   the estimated consensus is an exact maximum of the likelihood: an exact
#'   Kemeny ranking of the Mallows model; `NA` when given),
#'   `list_length` (the stages each ranking fixes, p - 1 for a full ranking),
#'   `n_items` and `n_rankings`.
#' @references
#' Mallows CL (1957). Non-null ranking models. I. *Biometrika* 44, 114-130.
#'
#' Fligner MA, Verducci JS (1986). Distance based ranking models. *Journal of
#' the Royal Statistical Society B* 48(3), 359-369.
#'
#' Mandhani B, Meila M (2009). Tractable search for learning exponential
#' models of rankings. *Proceedings of AISTATS*, 392-399.
#'
#' Meila M, Bao L (2010). An exponential model for infinite rankings.
#' *Journal of Machine Learning Research* 11, 3481-3518.
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
#' # top-3 lists: the other items NA
#' top3 <- ifelse(r <= 3, r, NA)
#' mallows_model(top3)
#' # the generalized model: agreement on the top, less below
#' g <- rmallows(500, consensus, theta = c(2, 1, 0.3, 0.1))
#' mallows_model(g, model = "generalized")$theta
rmallows <- function(n, consensus, theta, threads = diffrank_threads()) {
  n <- check_whole(n, "n", lower = 0)
  consensus <- check_consensus_ranking(consensus)
  p <- length(consensus)
  theta <- check_dispersion(theta, p)
  threads <- check_threads(threads)
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
  p <- length(consensus)
  theta <- check_dispersion(theta, p)
  log <- check_flag(log, "log")
  r <- check_top_lists(x, p)
  consensus <- align_items(consensus, rownames(r))
  codes <- mallows_stage_codes_cpp(r, consensus, 1L)
  out <- stage_log_likelihoods(codes, theta, p)
  names(out) <- colnames(r)
  if (log) out else exp(out)
}

#' @rdname rmallows
#' @export
mallows_model <- function(x, consensus = NULL, model = c("mallows", "generalized"),
                          threads = diffrank_threads(), ...) {
  check_dots_empty(...)
  model <- match_choice(model, c("mallows", "generalized"), "model")
  threads <- check_threads(threads)
  r <- check_top_lists(x, NULL)
  p <- nrow(r)
  exact <- NA
  if (is.null(consensus)) {
    consensus <- mallows_centre(r, NULL, threads)
    exact <- attr(consensus, "exact")
    attributes(consensus) <- NULL
  } else {
    consensus <- align_items(check_consensus_ranking(consensus, p), rownames(r))
  }
  if (!is.null(rownames(r))) names(consensus) <- rownames(r)
  dispersion <- fit_dispersions(r, unname(consensus), model, threads)
  if (model == "generalized" && !is.na(exact) && p > 2L && p <= generalized_search_max_items) {
    # the generalized model's own maximum-likelihood centre: over every
    # ranking of a few items, else from the Kemeny ranking by swaps of
    # neighbours that raise the profile likelihood
    moved <- generalized_centre_search(r, unname(consensus), dispersion, threads)
    exact <- moved$exact
    if (!identical(moved$consensus, unname(consensus))) {
      consensus[] <- moved$consensus
      dispersion <- moved$dispersion
    }
  }
  codes <- dispersion$codes
  theta <- dispersion$theta
  if (any(is.infinite(theta))) {
    warning(structure(class = c("diffrank_infinite_dispersion", "warning", "condition"), list(
      message = if (model == "mallows") {
        paste0("Every ranking agrees with the consensus: the maximum-likelihood theta is ",
               "infinite (the model puts all its mass on the consensus).")
      } else {
        sprintf(paste0("At stage%s %s every ranking picks the consensus' next item: ",
                       "the maximum-likelihood dispersion there is infinite."),
                if (sum(is.infinite(theta)) > 1L) "s" else "",
                paste(utils::head(which(is.infinite(theta)), 10L), collapse = ", "))
      },
      call = NULL)))
  }
  log_likelihood <- dispersion$log_likelihood
  expected <- stage_expectations(dispersion$stage_theta, p)
  structure(
    list(consensus = consensus, theta = theta, model = model,
         distance = colSums(codes, na.rm = TRUE), log_likelihood = log_likelihood,
         expected_distance = if (anyNA(expected)) NA_real_ else sum(expected),
         exact = exact, list_length = pmin(colSums(!is.na(r)), p - 1L), n_items = p,
         n_rankings = ncol(r), call = match.call()),
    class = "mallows_model"
  )
}

#' @rdname rmallows
#' @export
print.mallows_model <- function(x, ...) {
  check_dots_empty(...)
  partial <- any(x$list_length < x$n_items - 1L)
  cat(sprintf("<mallows_model> %sMallows model (Kendall distance) of %d %s of %d items\n",
              if (x$model == "generalized") "generalized " else "", x$n_rankings,
              if (partial) "rankings (top lists among them)" else "rankings", x$n_items))
  top <- order(x$consensus)
  labels <- names(x$consensus)[top] %||% as.character(top)
  shown <- utils::head(labels, 10L)
  cat("Centre:", paste(shown, collapse = " > "), if (length(labels) > 10L) "> ..." else "",
      if (isTRUE(x$exact)) "(exact)" else if (identical(x$exact, FALSE)) "(local search)" else "",
      "\n")
  if (x$model == "mallows") {
    cat(sprintf("theta = %s; ", format(signif(x$theta, 4))))
  } else {
    shown <- utils::head(x$theta, 6L)
    cat(sprintf("theta by stage: %s%s\n", paste(format(signif(shown, 3)), collapse = " "),
                if (length(x$theta) > 6L) " ..." else ""))
  }
  # the pairs a ranking orders: (p - 1) + ... + (p - L) for L stages, all
  # p (p - 1) / 2 pairs for a full ranking
  stages <- x$list_length
  pairs <- stages * x$n_items - stages * (stages + 1) / 2
  share <- if (mean(pairs) > 0) {
    sprintf(" (%.3f of the %s pairs %s)", mean(x$distance) / mean(pairs),
            format(signif(mean(pairs), 4)),
            if (partial) "a ranking orders, on average" else "of items")
  } else {
    ""
  }
  cat(sprintf("mean distance to the consensus %.3f%s\n", mean(x$distance), share))
  cat(sprintf("log-likelihood %s\n", format(signif(x$log_likelihood, 6))))
  invisible(x)
}

# The maximum-likelihood dispersions for a given centre (one, or one per
# stage), with the stage codes and the log-likelihood.
fit_dispersions <- function(r, centre, model, threads) {
  p <- nrow(r)
  codes <- mallows_stage_codes_cpp(r, centre, threads)
  reached <- rowSums(!is.na(codes))
  totals <- rowSums(codes, na.rm = TRUE)
  theta <- if (model == "mallows") {
    mallows_theta_stages_cpp(p, reached, sum(totals))
  } else {
    vapply(seq_along(reached), function(j) {
      if (reached[j] == 0) return(NA_real_)
      mallows_theta_stages_cpp(p, replace(numeric(length(reached)), j, reached[j]), totals[j])
    }, numeric(1))
  }
  stage_theta <- if (model == "mallows") rep(theta, p - 1L) else theta
  list(codes = codes, theta = theta, stage_theta = stage_theta,
       log_likelihood = sum(stage_log_likelihoods(codes, stage_theta, p)))
}

# Items up to which the generalized model's centre is searched, and over
# every ranking (6! = 720 profile likelihoods).
generalized_search_max_items <- 100L
generalized_exhaustive_max_items <- 6L

# The centre of the generalized model with the largest profile
# log-likelihood (each stage's dispersion at its maximum for the centre):
# over every ranking of at most generalized_exhaustive_max_items items (the
# first best in the order of the rankings, from the Kemeny one), else a
# local maximum by swaps of neighbours from the Kemeny ranking.
generalized_centre_search <- function(r, centre, dispersion, threads) {
  p <- length(centre)
  tol <- 1e-10 * max(1, abs(dispersion$log_likelihood))
  if (p <= generalized_exhaustive_max_items) {
    for (order in all_orders(p)) {
      candidate <- numeric(p)
      candidate[order] <- seq_len(p)
      trial <- fit_dispersions(r, candidate, "generalized", threads)
      if (trial$log_likelihood > dispersion$log_likelihood + tol) {
        centre <- candidate
        dispersion <- trial
      }
    }
    return(list(consensus = centre, dispersion = dispersion, exact = TRUE))
  }
  repeat {
    improved <- FALSE
    for (i in seq_len(p - 1L)) {
      a <- which(centre == i)
      b <- which(centre == i + 1L)
      swapped <- centre
      swapped[c(a, b)] <- c(i + 1, i)
      trial <- fit_dispersions(r, swapped, "generalized", threads)
      if (trial$log_likelihood > dispersion$log_likelihood + tol) {
        centre <- swapped
        dispersion <- trial
        improved <- TRUE
      }
    }
    if (!improved) break
  }
  list(consensus = centre, dispersion = dispersion, exact = FALSE)
}

# Every ordering of 1:p, as a list.
all_orders <- function(p) {
  if (p == 1L) return(list(1L))
  shorter <- all_orders(p - 1L)
  unlist(lapply(seq_len(p), function(first) {
    lapply(shorter, function(o) c(first, setdiff(seq_len(p), first)[o]))
  }), recursive = FALSE)
}

# log P of each column of stage codes ((p - 1) x rankings, NA beyond a list's
# last stage) under the stage dispersions theta (p - 1 of them).
stage_log_likelihoods <- function(codes, theta, p) {
  if (p < 2L) return(numeric(ncol(codes)))
  reached <- !is.na(codes)
  m <- p - seq_len(p - 1L)
  theta[is.na(theta)] <- 0  # stages that no ranking reaches contribute nothing
  # an infinite theta where the code is 0 contributes 0 (probability 1)
  log_norm <- mallows_stage_log_normalizers_cpp(m, theta)
  penalty <- ifelse(codes == 0, 0, codes * theta)
  penalty[!reached] <- 0
  -colSums(penalty) - colSums(reached * log_norm)
}

# E[S_j] for each stage (NA where theta is NA).
stage_expectations <- function(theta, p) {
  if (p < 2L) return(numeric(0))
  out <- rep(NA_real_, p - 1L)
  known <- !is.na(theta)
  m <- p - seq_len(p - 1L)
  out[known] <- ifelse(is.infinite(theta[known]), 0,
                       mallows_stage_means_cpp(m[known], pmin(theta[known], 1e300)))
  out
}

# One dispersion >= 0, or one per stage (p - 1) for the generalized model.
check_dispersion <- function(theta, p) {
  stages <- max(p - 1L, 0L)
  ok <- is.numeric(theta) && !is.object(theta) && is.null(dim(theta)) &&
    length(theta) %in% unique(c(1L, stages)) && !anyNA(theta) && all(is.finite(theta)) &&
    all(theta >= 0)
  if (!ok) {
    abort(paste0("`theta` must be one finite dispersion >= 0, or one per stage (%d, the ",
                 "generalized model), not %s."), stages, describe(theta))
  }
  rep_len(as.double(theta), stages)
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

# Rankings or top-t lists (items x rankings) as a double matrix: each column
# ranks 1..t (t >= 1) of its items without ties and has NA for the others
# (t = p for a full ranking); p = nrow when NULL.
check_top_lists <- function(x, p, arg = "x") {
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
  listed <- colSums(!is.na(m))
  # each column sorted, NAs last: position i must hold i up to the list length
  sorted <- matrix(m[order(col(m), m, na.last = TRUE)], nrow(m))
  wanted <- ifelse(row(sorted) <= listed[col(sorted)], row(sorted), NA)
  bad <- which(colSums(xor(is.na(sorted), is.na(wanted)) | (!is.na(sorted) & sorted != wanted),
                       na.rm = TRUE) > 0 | listed == 0)
  if (length(bad)) {
    abort(paste0("Each column of `%s` must be a ranking of 1:%d, or a top-k list (ranks 1:k, ",
                 "NA for the other items), without ties; column %d is not. (Rankings with ties ",
                 "or other missing items: aggregate_rankings().)"), arg, nrow(m), bad[1L])
  }
  m
}
