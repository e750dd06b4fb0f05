#' Mixtures of Mallows models
#'
#' Fits a mixture of Mallows models (Kendall distance) to rankings or top-k
#' lists by expectation-maximization: rankings that come from several groups,
#' each scattered around its own consensus (voters of different camps, gene
#' rankings from different tissues). With several values of `n_components`,
#' the number of components is chosen by the log-likelihood of held-out
#' rankings.
#'
#' @section Algorithm:
#' The E-step gives each ranking its probability of coming from each
#' component. The M-step is exact for the dispersions and proportions, and
#' for each consensus it is the Kemeny ranking of the rankings weighted by
#' those probabilities (exact for at most 16 items; up to 2,000 items, the
#' local search of [aggregate_rankings()] started from the current
#' consensus, which never lowers the likelihood; beyond, the weighted Borda
#' ranking). The iterations stop when the log-likelihood gains
#' less than `tol` times its size, after `max_iter` at most. EM finds a local
#' maximum: `n_starts` runs from different starts (consensus rankings drawn
#' among the data, R's generator: `set.seed()` reproduces them) keep the
#' best. The dispersions are capped at 30 (a component whose rankings all
#' equal its consensus), so that every ranking keeps a finite likelihood.
#'
#' With several `n_components`, the rankings are split at random into a
#' `1 - holdout` part, to which each number of components is fitted, and a
#' `holdout` part, on which each fit's log-likelihood is computed; the best
#' number is then fitted to all the rankings.
#'
#' @param x Rankings, items x rankings, as for [mallows_model()]: each column
#'   a ranking of `1:nrow(x)` (1 for the top) or a top-k list (ranks `1:k`,
#'   `NA` for the other items).
#' @param n_components The number of components, a whole number >= 1; or
#'   several, to choose among by held-out likelihood.
#' @param n_starts Runs of EM from different starts, a whole number >= 1.
#' @param max_iter Most EM iterations per run.
#' @param tol Relative gain of the log-likelihood below which EM stops.
#' @param holdout The fraction of rankings held out to choose
#'   `n_components`, when several are given (an error otherwise).
#' @param threads Number of threads; see [diffrank_threads()]. The result does
#'   not depend on it.
#' @param object,newdata For `predict()`: a `mallows_mixture` and rankings
#'   of the same items (as `x`).
#' @param ... Must be empty (an error names any argument given there).
#' @return An object of class `mallows_mixture`, a list with `consensus` (a
#'   items x components matrix of consensus rankings, 1 = top), `theta` and
#'   `proportions` (one per component, the components by decreasing
#'   proportion), `responsibilities` (rankings x components: the probability
#'   that each ranking comes from each component), `cluster` (the most likely
#'   component of each ranking), `log_likelihood`, `bic`, `iterations`,
#'   `converged`, `selection` (with several `n_components`: a data frame of
#'   each number's held-out log-likelihood), `n_items` and `n_rankings`.
#'   `predict()` gives the responsibilities of new rankings.
#' @references
#' Murphy TB, Martin D (2003). Mixtures of distance-based models for ranking
#' data. *Computational Statistics and Data Analysis* 41, 645-655.
#'
#' Fligner MA, Verducci JS (1986). Distance based ranking models. *Journal of
#' the Royal Statistical Society B* 48(3), 359-369.
#' @seealso [mallows_model()], a single component; [aggregate_rankings()].
#' @export
#' @examples
#' set.seed(1)
#' a <- rmallows(300, c(1, 2, 3, 4, 5, 6), theta = 1)
#' b <- rmallows(200, c(6, 5, 4, 3, 2, 1), theta = 1)
#' fit <- mallows_mixture(cbind(a, b), n_components = 1:3)
#' fit
#' table(fit$cluster, rep(c("a", "b"), c(300, 200)))
mallows_mixture <- function(x, n_components = 2, n_starts = 5, max_iter = 100, tol = 1e-8,
                            holdout = 0.2, threads = diffrank_threads(), ...) {
  check_dots_empty(...)
  r <- check_top_lists(x, NULL)
  if (!is.numeric(n_components) || length(n_components) < 1L || anyNA(n_components) ||
      any(!is.finite(n_components)) || any(n_components < 1) ||
      any(n_components != round(n_components)) || any(n_components > ncol(r)) ||
      anyDuplicated(n_components)) {
    abort(paste0("`n_components` must be distinct whole numbers from 1 to the number of ",
                 "rankings (%d), not %s."), ncol(r), describe(n_components))
  }
  n_starts <- check_whole(n_starts, "n_starts")
  max_iter <- check_whole(max_iter, "max_iter")
  tol <- check_number(tol, "tol", lower = 0, allow_lower = FALSE)
  threads <- check_threads(threads)
  if (length(n_components) == 1L && !missing(holdout)) {
    abort("`holdout` is used only to choose among several `n_components`; give one number or several.")
  }
  selection <- NULL
  if (length(n_components) > 1L) {
    holdout <- check_number(holdout, "holdout", lower = 0, upper = 1, allow_lower = FALSE)
    n_test <- round(holdout * ncol(r))
    if (n_test < 1L || ncol(r) - n_test < max(n_components)) {
      abort(paste0("`holdout` = %s leaves %d rankings to test and %d to fit: both need at least ",
                   "1, and the fit at least max(n_components) = %d."), format(holdout), n_test,
            ncol(r) - n_test, max(n_components))
    }
    test <- sort(sample.int(ncol(r), n_test))
    scores <- vapply(n_components, function(k) {
      fit <- mixture_em(r[, -test, drop = FALSE], k, n_starts, max_iter, tol, threads)
      sum(mixture_log_densities(r[, test, drop = FALSE], fit, threads)$total)
    }, numeric(1))
    selection <- data.frame(n_components = as.integer(n_components),
                            heldout_log_likelihood = scores)
    n_components <- n_components[which.max(scores)]
  }
  fit <- mixture_em(r, as.integer(n_components), n_starts, max_iter, tol, threads)
  k <- length(fit$theta)
  items <- rownames(r)
  dimnames(fit$consensus) <- list(items, paste0("component", seq_len(k)))
  # free parameters: k dispersions and k - 1 proportions (the consensus
  # rankings are discrete, as in the BIC of Murphy and Martin 2003)
  structure(
    list(consensus = fit$consensus, theta = fit$theta, proportions = fit$proportions,
         responsibilities = fit$responsibilities,
         cluster = max.col(fit$responsibilities, "first"), log_likelihood = fit$log_likelihood,
         bic = -2 * fit$log_likelihood + (2 * k - 1) * log(ncol(r)),
         iterations = fit$iterations, converged = fit$converged, selection = selection,
         n_items = nrow(r), n_rankings = ncol(r), call = match.call()),
    class = "mallows_mixture"
  )
}

#' @rdname mallows_mixture
#' @export
print.mallows_mixture <- function(x, ...) {
  check_dots_empty(...)
  k <- length(x$theta)
  cat(sprintf("<mallows_mixture> %d Mallows component%s of %d rankings of %d items\n", k,
              if (k > 1L) "s" else "", x$n_rankings, x$n_items))
  for (j in seq_len(k)) {
    top <- order(x$consensus[, j])
    labels <- utils::head(rownames(x$consensus)[top] %||% as.character(top), 8L)
    cat(sprintf("  %d: proportion %.3f, theta %s; %s%s\n", j, x$proportions[j],
                format(signif(x$theta[j], 4)), paste(labels, collapse = " > "),
                if (x$n_items > 8L) " > ..." else ""))
  }
  cat(sprintf("log-likelihood %s, BIC %s; %s after %d iterations\n",
              format(signif(x$log_likelihood, 6)), format(signif(x$bic, 6)),
              if (x$converged) "converged" else "not converged", x$iterations))
  if (!is.null(x$selection)) {
    cat("Held-out log-likelihood by number of components:",
        paste(sprintf("%d: %s", x$selection$n_components,
                      format(signif(x$selection$heldout_log_likelihood, 6))), collapse = ", "),
        "\n")
  }
  invisible(x)
}

#' @rdname mallows_mixture
#' @export
predict.mallows_mixture <- function(object, newdata, threads = diffrank_threads(), ...) {
  check_dots_empty(...)
  threads <- check_threads(threads)
  r <- check_top_lists(newdata, object$n_items, arg = "newdata")
  if (!is.null(rownames(r)) && !is.null(rownames(object$consensus)) &&
      !identical(rownames(r), rownames(object$consensus))) {
    if (!setequal(rownames(r), rownames(object$consensus))) {
      abort("The rows of `newdata` must name the items of the fit.")
    }
    r <- r[rownames(object$consensus), , drop = FALSE]
  }
  out <- mixture_log_densities(r, object, threads)$responsibilities
  dimnames(out) <- list(colnames(r), colnames(object$consensus))
  out
}

# The largest dispersion of a component: exp(-30) per discordant pair keeps
# the likelihood of every ranking finite.
mixture_theta_cap <- 30

# log P(ranking | component) for every ranking and component, the log of the
# mixture density of each ranking (total) and the responsibilities.
mixture_log_densities <- function(r, fit, threads) {
  p <- nrow(r)
  k <- length(fit$theta)
  logp <- vapply(seq_len(k), function(j) {
    codes <- mallows_stage_codes_cpp(r, as.double(fit$consensus[, j]), threads)
    log(fit$proportions[j]) + stage_log_likelihoods(codes, rep(fit$theta[j], p - 1L), p)
  }, numeric(ncol(r)))
  logp <- matrix(logp, ncol(r), k)
  top <- apply(logp, 1L, max)
  scaled <- exp(logp - top)
  sums <- rowSums(scaled)
  list(total = top + log(sums), responsibilities = scaled / sums)
}

# The M-step of one component: the weighted Mallows centre (from `start`)
# and the weighted maximum-likelihood dispersion.
mixture_component <- function(r, w, start, threads) {
  p <- nrow(r)
  centre <- as.vector(mallows_centre(r, w, threads, start))
  codes <- mallows_stage_codes_cpp(r, centre, threads)
  reached <- drop((!is.na(codes)) %*% w)
  codes[is.na(codes)] <- 0
  total <- sum(codes %*% w)
  theta <- if (p < 2L) 0 else min(mallows_theta_stages_cpp(p, reached, total), mixture_theta_cap)
  list(centre = centre, theta = theta)
}

# EM with k components, the best of n_starts runs.
mixture_em <- function(r, k, n_starts, max_iter, tol, threads) {
  p <- nrow(r)
  best <- NULL
  for (start in seq_len(n_starts)) {
    # start: k rankings of the data (top lists completed in item order) as
    # the consensus rankings, theta 0.5, equal proportions
    seeds <- sample.int(ncol(r), k)
    fit <- list(consensus = vapply(seeds, function(i) rank(r[, i], ties.method = "first"),
                                   numeric(p)),
                theta = rep(0.5, k), proportions = rep(1 / k, k))
    fit$consensus <- matrix(fit$consensus, p, k)
    previous <- -Inf
    converged <- FALSE
    for (iteration in seq_len(max_iter)) {
      dens <- mixture_log_densities(r, fit, threads)
      ll <- sum(dens$total)
      if (iteration > 1L && ll - previous <= tol * abs(ll)) {
        converged <- TRUE
        break
      }
      previous <- ll
      w <- dens$responsibilities
      for (j in seq_len(k)) {
        if (sum(w[, j]) <= 0) next
        component <- mixture_component(r, w[, j], fit$consensus[, j], threads)
        fit$consensus[, j] <- component$centre
        fit$theta[j] <- component$theta
      }
      fit$proportions <- pmax(colMeans(w), .Machine$double.xmin)
    }
    # the densities of the last M-step's fit (known when the run converged)
    if (!converged) dens <- mixture_log_densities(r, fit, threads)
    fit$log_likelihood <- sum(dens$total)
    fit$responsibilities <- dens$responsibilities
    fit$iterations <- iteration
    fit$converged <- converged
    if (is.null(best) || fit$log_likelihood > best$log_likelihood) best <- fit
  }
  # components by decreasing proportion
  o <- order(-best$proportions)
  best$consensus <- best$consensus[, o, drop = FALSE]
  best$theta <- best$theta[o]
  best$proportions <- best$proportions[o]
  best$responsibilities <- best$responsibilities[, o, drop = FALSE]
  best
}
