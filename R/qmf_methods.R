# The qmf object and its methods.

# The fit of data divided by `unit` (a power of two, see qmf.default()):
# everything is computed in that unit, and the data, the reconstruction and
# the targets are returned in the data's units (`data` is the data itself;
# the others are multiplied by the power of two, exactly). `baseline` is the
# truncated SVD's share of the variance left (qmf_svd_unexplained()).
qmf_result <- function(prob, run, settings, seconds, unit, data, baseline) {
  par <- run$par
  final <- qmf_rows(prob, par, gradient = FALSE, fitted = TRUE)
  x <- prob$x
  features <- rownames(x)
  factors <- paste0("factor", seq_len(settings$rank))
  m <- settings$n_quantiles
  levels <- paste0("q", seq_len(m))
  q <- t(qmf_quantiles_cpp(par$theta, prob$center, prob$scale, prob$positive))
  b <- if (is.null(par$beta)) matrix(1 / m, prob$d, m) else t(apply(par$beta, 2L, softmax))
  dimnames(q) <- dimnames(b) <- list(features, levels)
  fitted <- final$fitted
  mapped <- NULL
  p <- NULL
  if (!is.null(par$phi)) {
    # QMFQ: T(U V) approximates S(X); the reconstruction in the data's units
    # is S^-1(T(U V))
    mapped <- final$mapped
    dimnames(mapped) <- dimnames(x)
    fitted <- qmfq_unmap(x, mapped, fitted)
    p <- t(qmfq_data_targets_cpp(par$phi, prob$positive)) * prob$scale + prob$center
    dimnames(p) <- list(features, levels)
  }
  dimnames(fitted) <- dimnames(x)
  history <- as.data.frame(run$history)
  history$epoch <- as.integer(history$epoch)
  objective <- sum(final$loss) / prob$norm +
    prob$lambda * (sum(par$U^2) / prob$d + sum(par$V^2) / prob$n)
  fit <- structure(list(
    unexplained = qmf_unexplained(x, fitted), svd_unexplained = baseline,
    kl_unexplained = if (prob$positive) qmf_kl_unexplained(x, fitted),
    nmf_kl_unexplained = if (prob$positive) {
      qmf_nmf_kl_unexplained(x, settings$rank, threads = settings$threads)
    },
    U = matrix(par$U, dimnames = list(features, factors), nrow = prob$d),
    V = matrix(par$V, dimnames = list(factors, colnames(x)), ncol = prob$n),
    q = q, b = b, p = p, potentials = `dimnames<-`(t(final$potentials), list(features, levels)),
    fitted = fitted, mapped = mapped,
    fitted_mapped = if (!is.null(mapped)) `dimnames<-`(final$fitted, dimnames(x)),
    objective = objective,
    relative_error = sqrt(sum((x - fitted)^2, na.rm = TRUE) / sum(x^2, na.rm = TRUE)),
    history = history, iterations = nrow(history),
    change = history$change[nrow(history)], converged = run$converged,
    seconds = seconds, optimizer_message = run$message,
    sinkhorn = list(unconverged = final$unconverged, error = final$error),
    x = x, par = par, problem = prob[setdiff(names(prob), c("x", "scores"))],
    settings = settings[setdiff(names(settings), c("verbose", "progress"))], unit = unit
  ), class = "qmf")
  if (unit != 1) {
    fit$x <- data
    fit$fitted <- fit$fitted * unit
    fit$q <- fit$q * unit
    if (!is.null(mapped)) {
      fit$p <- fit$p * unit
      fit$mapped <- fit$mapped * unit
      fit$fitted_mapped <- fit$fitted_mapped * unit
    }
  }
  fit
}

# QMFQ's reconstruction in the data's units: each row's values `fitted` on
# the scale of its map S (whose values at the observed data are `mapped`)
# carried back through the inverse of S, the increasing interpolation from
# S(x) to x (constant beyond the ends; a row that S maps to one value gives
# its mean).
qmfq_unmap <- function(x, mapped, fitted) {
  out <- fitted
  for (r in seq_len(nrow(x))) {
    seen <- !is.na(x[r, ])
    s <- mapped[r, seen]
    v <- x[r, seen]
    out[r, ] <- if (length(unique(s)) < 2L) {
      mean(v)
    } else {
      stats::approx(s, v, xout = fitted[r, ], rule = 2, ties = mean)$y
    }
  }
  out
}

# The fit's unit: 1 for data of ordinary scale, and for fits made before it
# was stored.
qmf_unit <- function(object) object$unit %||% 1

# The fraction of the variance of the row-centred data (observed entries)
# left unexplained by `fitted`.
qmf_unexplained <- function(x, fitted) {
  seen <- !is.na(x)
  centred <- x - rowMeans(x, na.rm = TRUE)
  sum((x - fitted)[seen]^2) / sum(centred[seen]^2)
}

# The same for the rank-k truncated SVD of the row-centred data (missing
# entries set to the row's mean): the linear baseline of a fit.
qmf_svd_unexplained <- function(x, k) {
  centred <- x - rowMeans(x, na.rm = TRUE)
  filled <- centred
  filled[is.na(filled)] <- 0
  s <- svd(filled, nu = k, nv = k)
  approx <- s$u %*% (s$d[seq_len(k)] * t(s$v))
  qmf_unexplained(x, approx + rowMeans(x, na.rm = TRUE))
}

# The generalized Kullback-Leibler divergence of the observed entries of x
# from `fitted` (0 log 0 = 0), divided by that from the row means (the
# rank-0 model): the fraction of the divergence a KL fit leaves unexplained.
qmf_kl_unexplained <- function(x, fitted) {
  seen <- !is.na(x)
  means <- matrix(rowMeans(x, na.rm = TRUE), nrow(x), ncol(x))
  generalized_kl(x[seen], fitted[seen]) / generalized_kl(x[seen], means[seen])
}

generalized_kl <- function(x, y) {
  terms <- y - x
  positive <- x > 0
  terms[positive] <- terms[positive] + x[positive] * log(x[positive] / y[positive])
  sum(terms)
}

# The same for a rank-k KL-divergence NMF of x, the baseline of a KL fit:
# multiplicative updates (Lee and Seung 2001) over the observed entries from
# the deterministic NNDSVD start of Boutsidis and Gallopoulos (2008), so that
# the baseline does not use the random number generator.
qmf_nmf_kl_unexplained <- function(x, k, iterations = 300L, threads = 1L) {
  seen <- !is.na(x)
  filled <- x
  filled[!seen] <- rep(rowMeans(x, na.rm = TRUE), ncol(x))[!seen]
  start <- nndsvd(filled, k)
  # without missing values, the masses are the column and row sums of the factors
  mask <- if (all(seen)) NULL else seen + 0
  factors <- kl_nmf_updates(if (is.null(mask)) filled else filled * mask, start$w, start$h,
                            iterations, mask, threads)
  qmf_kl_unexplained(x, factors$w %*% factors$h)
}

# Non-negative factors w (d x k) and h (k x n) from the leading singular
# triplets of x, each split into the positive or negative parts of its
# vectors, whichever carries more of the triplet (Boutsidis and Gallopoulos
# 2008); zeros are raised to 1% of the typical size of an entry,
# sqrt(mean(x) / k), so that multiplicative updates can move them.
nndsvd <- function(x, k) {
  s <- svd(x, nu = k, nv = k)
  w <- matrix(0, nrow(x), k)
  h <- matrix(0, k, ncol(x))
  for (j in seq_len(k)) {
    u <- s$u[, j]
    v <- s$v[, j]
    up <- pmax(u, 0); un <- pmax(-u, 0)
    vp <- pmax(v, 0); vn <- pmax(-v, 0)
    positive <- sqrt(sum(up^2) * sum(vp^2))
    negative <- sqrt(sum(un^2) * sum(vn^2))
    if (positive >= negative) {
      a <- up; b <- vp; size <- positive
    } else {
      a <- un; b <- vn; size <- negative
    }
    scale <- sqrt(s$d[j] * size)
    if (size > 0) {
      w[, j] <- scale * a / sqrt(sum(a^2))
      h[j, ] <- scale * b / sqrt(sum(b^2))
    }
  }
  floor <- 0.01 * sqrt(mean(x) / k)
  list(w = pmax(w, floor), h = pmax(h, floor))
}

softmax <- function(v) {
  e <- exp(v - max(v))
  e / sum(e)
}

# The relative decrease per epoch over the last 5 epochs, as reported; it is
# NA before 6 epochs.
qmf_change_text <- function(change) {
  if (is.na(change)) return("relative decrease not measured before 6 epochs")
  sprintf("relative decrease %.3g", change)
}

qmf_warn <- function(fit) {
  s <- fit$settings
  if (!fit$converged) {
    warning(sprintf(paste0("QMF did not converge within %d epochs (%s, ",
                           "tol = %.3g); increase `max_epochs` or loosen `tol`."),
                    fit$iterations, qmf_change_text(fit$change), s$tol), call. = FALSE)
  }
  if (fit$sinkhorn$unconverged > 0L) {
    warning(sprintf(paste0("The transport of %d of %d rows did not converge within %d ",
                           "iterations (marginal error %.3g); increase ",
                           "`control$sinkhorn_max_iter` or `eps`."),
                    fit$sinkhorn$unconverged, nrow(fit$x), s$control$sinkhorn_max_iter,
                    fit$sinkhorn$error), call. = FALSE)
  }
  qmf_warn_near_constant(fit)
}

# The near-constant rule of warn_near_constant() (R/checks.R) for a fit: as
# eps grows, every row's map T tends to a constant (the mean of its targets),
# whatever U V, so each row of the reconstruction T(U V) is judged against the
# same row of the data (its spread at a hard, eps -> 0, quantile map onto the
# row's own quantiles), once per fit. Missing entries of the data are left
# out (set to the row's observed mean in both).
qmf_warn_near_constant <- function(fit) {
  unit <- qmf_unit(fit)
  x <- fit$x / unit
  fitted <- fit$fitted / unit
  if (anyNA(x)) {
    means <- rowMeans(x, na.rm = TRUE)
    missing <- which(is.na(x), arr.ind = TRUE)
    x[missing] <- means[missing[, 1L]]
    fitted[missing] <- rowMeans(replace(fitted, is.na(fit$x), NA), na.rm = TRUE)[missing[, 1L]]
  }
  warn_near_constant(t(fitted), t(x), "QMF reconstruction T(UV)", fit$settings$eps,
                     unit = "row")
}

#' Methods for quantile matrix factorizations
#'
#' `coef()` gives the factors and the row maps, `fitted()` the reconstruction
#' `T(U V)` (for QMFQ, `S^-1(T(U V))`, in the data's units) and `residuals()`
#' the data minus it (features x samples, with the data's dimnames),
#' `predict()` places new samples in the factorization,
#' [sample_coordinates()] gives the samples' coordinates, and `plot()` shows
#' the objective across epochs and the learned quantile functions of chosen
#' rows against the rows' empirical quantiles.
#'
#' @section Prediction:
#' New samples are placed in the fit with `U`, the targets and the weights
#' fixed. For QMF, each row's map is kept as a function of a new value `z`:
#' the out-of-sample extension of the fit's entropic map (Pooladian and
#' Niles-Weed 2021), `T_r(z) = sum_j q_rj w_j(z)` with `w(z)` the softmax of
#' `(g_rj - (z - y_j)^2) / eps` over the targets, `g_r` the potentials of the
#' targets in the fit's transport of row `r` (stored in the fit as
#' `potentials`). At the training samples it gives the fitted values
#' exactly. Each new sample's coordinates minimize its own loss plus the
#' fit's penalty on a column of `V` (projected Levenberg-Marquardt on the
#' Gauss-Newton model, from a ridge regression of the training `V` on the
#' standardized data), so a sample gets the same coordinates alone or with
#' others, and the fit does not change. On the training samples this
#' reproduces `V` up to the effect each sample had on the maps it was fitted
#' with. For QMFQ, whose data map `S` depends on the ranks of each row,
#' `predict()` minimizes the objective of [qmf()] over the training and new
#' samples together, over the new columns of `V` only (L-BFGS-B): each
#' row's maps are those of the pooled row, with the targets `q` and `p`
#' fixed, and `type = "fitted"` carries `T(U V)` back through `S`.
#'
#' @param object,x A `qmf` fit.
#' @param newdata New samples: features x samples, the same features as in
#'   fitting (matched by row name when both have row names, else by
#'   position). Missing values are left out of the loss. New data so far
#'   beyond the scale of the training data that their loss leaves the range
#'   of double precision are an error. A `DelayedMatrix` or
#'   sparse matrix is realized in memory, within the limit of
#'   [diffrank_blocks].
#' @param type `"coordinates"` (the new columns of `V`, transposed: new
#'   samples x `rank`, the orientation of [sample_coordinates()] and
#'   `prcomp()$x`) or `"fitted"` (their reconstruction `T(U V)`, features x
#'   new samples, the orientation of the data). Without `newdata`, the same
#'   for the training samples.
#' @param tol,max_iter Relative tolerance on the objective and largest number
#'   of iterations of the fit of each new sample (QMF) or of the new samples
#'   together (QMFQ).
#' @param threads Number of threads (over new samples for QMF, over rows for QMFQ);
#'   see [diffrank_threads()].
#' @param which What to plot: `"loss"` (the objective by epoch) and/or
#'   `"quantiles"` (the learned target values `q` of `rows` at the levels of
#'   their weights, with the rows' empirical quantiles at the same levels).
#' @param rows The rows whose quantile functions are plotted (names or
#'   indices); by default the four with the largest variance.
#' @param ... Must be empty.
#' @return `coef()`: a list with `U`, `V`, `q`, `b` (and `p` for QMFQ). `fitted()`,
#'   `residuals()`: matrices of the data's shape. `predict()`: a matrix
#'   (coordinates: samples x `rank`, as [sample_coordinates()]; fitted:
#'   features x samples), with the attributes `iterations` (for QMF, the
#'   most any new sample took) and `converged` (for every new sample).
#'   `summary()`: an object whose
#'   print method reports the fit. `plot()`: `x`, invisibly.
#' @references Pooladian AA, Niles-Weed J (2021). Entropic estimation of
#'   optimal transport maps. \doi{10.48550/arXiv.2109.12004}
#' @name qmf-methods
#' @examples
#' set.seed(1)
#' x <- exp(matrix(rnorm(30 * 2), 30) %*% matrix(rnorm(2 * 40), 2))
#' fit <- qmf(x[, 1:30], rank = 2)
#' summary(fit)
#' dim(predict(fit, x[, 31:40]))         # 10 new samples x 2 factors
#' plot(fit)
NULL

#' @rdname qmf-methods
#' @export
coef.qmf <- function(object, ...) {
  check_dots_empty(...)
  object[c("U", "V", "q", "b", if (!is.null(object$p)) "p")]
}

#' @rdname qmf-methods
#' @export
fitted.qmf <- function(object, ...) {
  check_dots_empty(...)
  object$fitted
}

#' @rdname qmf-methods
#' @export
residuals.qmf <- function(object, ...) {
  check_dots_empty(...)
  object$x - object$fitted
}

#' @rdname qmf-methods
#' @export
print.qmf <- function(x, ...) {
  check_dots_empty(...)
  s <- x$settings
  qmfq <- identical(s$model, "qmfq")
  cat(sprintf("<qmf> %srank %d factorization of a %d x %d matrix, %d learned quantiles per row\n",
              if (qmfq) "QMFQ, S(X) ~ T(UV): " else "", s$rank, nrow(x$x), ncol(x$x),
              s$n_quantiles))
  if (identical(s$loss, "kl") && !is.null(x$kl_unexplained)) {
    cat(sprintf("  KL divergence left unexplained %.4g (KL-divergence NMF at rank %d: %.4g)\n",
                x$kl_unexplained, s$rank, x$nmf_kl_unexplained))
  } else {
    cat(sprintf("  variance left unexplained %.4g (truncated SVD at rank %d: %.4g)\n",
                x$unexplained, s$rank, x$svd_unexplained))
  }
  cat(sprintf("  loss \"%s\", eps = %s, lambda = %s%s, %s weights, optimizer \"%s\"%s%s\n",
              s$loss, format(s$eps), format(s$lambda, digits = 3),
              if (isTRUE(s$lambda_from_data)) " (from the data)" else "",
              if (s$learn_weights) "learned" else "equal", s$optimizer,
              if (s$optimizer == "adam") sprintf(" (batches of %d rows)", s$batch_size) else "",
              if (!is.null(x$start)) sprintf(", start \"%s\"", x$start) else ""))
  cat(sprintf("  %s after %d epoch(s) (%s, tol = %s), %.1f s\n",
              if (x$converged) "converged" else "NOT converged", x$iterations,
              qmf_change_text(x$change), format(s$tol), x$seconds))
  if (qmfq) {
    cat(sprintf(paste0("  objective %.6g (of S(X), the learned map of the data); relative error ",
                       "||X - S^-1(T(UV))|| / ||X|| = %.4g\n"), x$objective, x$relative_error))
  } else {
    cat(sprintf("  objective %.6g; relative error ||X - T(UV)|| / ||X|| = %.4g\n", x$objective,
                x$relative_error))
  }
  invisible(x)
}

#' @rdname qmf-methods
#' @export
summary.qmf <- function(object, ...) {
  check_dots_empty(...)
  unit <- qmf_unit(object)
  res <- (object$x - object$fitted) / unit
  row_error <- sqrt(rowMeans(res^2, na.rm = TRUE)) * unit
  structure(list(
    fit = object,
    explained = 1 - object$unexplained,
    row_error = stats::quantile(row_error, c(0, 0.25, 0.5, 0.75, 1)),
    factor_norms = sqrt(colSums(object$U^2)) * sqrt(rowSums(object$V^2)),
    missing = sum(is.na(object$x))
  ), class = "summary.qmf")
}

#' @export
print.summary.qmf <- function(x, ...) {
  check_dots_empty(...)
  print(x$fit)
  cat(sprintf("  variance explained (of the row-centred data): %.4f\n", x$explained))
  if (x$missing > 0L) cat(sprintf("  %d missing entries left out of the loss\n", x$missing))
  cat("  root mean squared error of the rows (quantiles):\n")
  print(signif(x$row_error, 4))
  cat("  norms of the factors, ||U[, j]|| ||V[j, ]||:\n")
  print(signif(x$factor_norms, 4))
  cat("  objective by epoch (last rows):\n")
  print(utils::tail(x$fit$history, 5L), row.names = FALSE, digits = 6)
  invisible(x)
}

#' @rdname qmf-methods
#' @export
predict.qmf <- function(object, newdata, type = c("coordinates", "fitted"), tol = 1e-8,
                        max_iter = 500L, threads = diffrank_threads(), ...) {
  check_dots_empty(...)
  type <- match_choice(type, c("coordinates", "fitted"), "type")
  if (missing(newdata) || is.null(newdata)) {
    return(if (type == "coordinates") t(object$V) else object$fitted)
  }
  newdata <- realize_block_input(newdata, "newdata", paste0(
    "the new samples are placed in the fit in memory (see ?diffrank_blocks)."))
  xnew <- qmf_match_features(qmf_data(newdata, object$settings$loss, "newdata"), object)
  tol <- check_number(tol, "tol", lower = 0)
  max_iter <- check_whole(max_iter, "max_iter")
  threads <- check_threads(threads)
  solved <- if (is.null(object$par$phi)) {
    qmf_place(object, xnew, tol, max_iter, threads)
  } else {
    qmf_predict_solve(object, xnew, tol, max_iter, threads)
  }
  if (!solved$converged) {
    warning(sprintf(paste0("The fit of %s did not converge within %d ",
                           "iterations; increase `max_iter` or loosen `tol`."),
                    if (is.null(solved$unconverged)) {
                      "the new samples"
                    } else {
                      sprintf("%d of the %d new samples", solved$unconverged, ncol(xnew))
                    }, max_iter),
            call. = FALSE)
  }
  out <- if (type == "coordinates") t(solved$V) else solved$fitted
  attr(out, "iterations") <- solved$iterations
  attr(out, "converged") <- solved$converged
  out
}

qmf_match_features <- function(xnew, object) {
  d <- nrow(object$x)
  features <- rownames(object$x)
  if (!is.null(features) && !is.null(rownames(xnew))) {
    missing <- setdiff(features, rownames(xnew))
    if (length(missing) > 0L) {
      abort("`newdata` lacks %d of the fit's features (the first is %s).%s", length(missing),
            missing[1L], transposed_hint(xnew, features))
    }
    return(xnew[features, , drop = FALSE])
  }
  if (nrow(xnew) != d) {
    abort("`newdata` must have the fit's %d features in rows, not %d.", d, nrow(xnew))
  }
  xnew
}

# QMF: places each new sample on its own, with every row's map fixed as a
# function (QmfRowMap in qmf.hpp), by minimizing its data term plus the
# fit's penalty on a column of V (see qmf_evaluate(): the objective times
# prob$norm).
qmf_place <- function(object, xnew, tol, max_iter, threads) {
  prob <- object$problem
  par <- object$par
  unit <- qmf_unit(object)
  q <- qmf_quantiles_cpp(par$theta, prob$center, prob$scale, prob$positive)
  start <- matrix(qmf_predict_start(object, object$x / unit, xnew / unit), nrow(par$V))
  placed <- qmf_place_cpp(xnew / unit, par$U, q, t(qmf_potentials(object, threads)),
                          prob$options$eps, prob$options$loss,
                          prob$lambda * prob$norm / prob$n, start, tol, max_iter, threads)
  if (!all(is.finite(placed$objective))) qmf_beyond(object$x, xnew)
  V <- placed$V
  dimnames(V) <- list(rownames(object$V), colnames(xnew))
  fitted <- placed$fitted * unit
  dimnames(fitted) <- dimnames(xnew)
  list(V = V, fitted = fitted, iterations = max(placed$iterations, 0L),
       unconverged = sum(!placed$converged), converged = all(placed$converged))
}

# The potentials of the rows' targets (d x m) at the fit; fits made before
# they were stored solve the rows' transports again.
qmf_potentials <- function(object, threads) {
  if (!is.null(object$potentials)) return(object$potentials)
  prob <- object$problem
  prob$x <- object$x / qmf_unit(object)
  prob$threads <- threads
  t(qmf_rows(prob, object$par, gradient = FALSE, fitted = TRUE)$potentials)
}

# New data far beyond the scale of the training data (whose targets the
# maps are fixed to) make the loss, or the transports of the extrapolated
# start, overflow: no coordinates can represent them.
qmf_beyond <- function(x, xnew) {
  abort(paste0("`newdata` has values up to %s, far beyond those of the data the fit was made on ",
               "(up to %s): the fit cannot represent them (the objective of the new samples is ",
               "not finite). Give new data on the scale of the training data."),
        format(max(abs(xnew), na.rm = TRUE), digits = 3),
        format(max(abs(x), na.rm = TRUE), digits = 3))
}

# QMFQ: minimizes the objective of the training and new samples together
# over the new columns of V, everything else fixed (the data map S depends
# on the ranks of the pooled rows).
qmf_predict_solve <- function(object, xnew, tol, max_iter, threads, fitted = TRUE) {
  prob <- object$problem
  n <- ncol(object$x)
  # in the fit's unit (see qmf_result())
  unit <- qmf_unit(object)
  train <- object$x / unit
  xnew_data <- xnew
  xnew <- xnew / unit
  pool <- cbind(train, xnew)
  prob$norm <- prob$norm / sum(!is.na(object$x)) * sum(!is.na(pool))
  prob$x <- pool
  if (isTRUE(prob$options$map_data)) prob$scores <- qmf_normal_scores(pool, missing = NA_real_)
  prob$n <- ncol(pool)
  prob$threads <- threads
  par <- object$par
  k <- nrow(par$V)
  new <- n + seq_len(ncol(xnew))
  cache <- new.env(parent = emptyenv())
  evaluate <- function(v) {
    if (!identical(v, cache$v)) {
      cache$v <- v
      par$V <- cbind(object$par$V, matrix(v, k))
      cache$ev <- qmf_evaluate(prob, par)
    }
    cache$ev
  }
  start <- qmf_predict_start(object, train, xnew)
  beyond <- function() qmf_beyond(object$x, xnew_data)
  f0 <- evaluate(start)$value
  if (!is.finite(f0)) beyond()
  opt <- tryCatch(
    stats::optim(start, function(v) evaluate(v)$value,
                 function(v) as.vector(evaluate(v)$V[, new, drop = FALSE]),
                 method = "L-BFGS-B", lower = if (prob$positive) 0 else -Inf,
                 control = qmf_lbfgs_control(f0, max_iter, tol)),
    error = function(e) {
      if (!is.finite(cache$ev$value)) beyond()
      stop(e)
    })
  V <- matrix(opt$par, k, dimnames = list(rownames(object$V), colnames(xnew)))
  out <- list(V = V, iterations = unname(opt$counts[["function"]]),
              converged = opt$convergence != 1L)
  if (fitted) {
    par$V <- cbind(object$par$V, V)
    rows <- qmf_rows(prob, par, gradient = FALSE, fitted = TRUE)
    fitted <- rows$fitted
    if (!is.null(par$phi)) fitted <- qmfq_unmap(pool, rows$mapped, fitted)
    out$fitted <- fitted[, new, drop = FALSE] * unit
    dimnames(out$fitted) <- dimnames(xnew)
  }
  out
}

# The new columns of V by ridge regression of the training V on the
# standardized data (a linear kernel between samples).
qmf_predict_start <- function(object, x, xnew) {
  center <- rowMeans(x, na.rm = TRUE)
  scale <- apply(x, 1L, stats::sd, na.rm = TRUE)
  scale[!(scale > 0) | is.na(scale)] <- 1
  standardize <- function(a) {
    a <- (a - center) / scale
    a[is.na(a)] <- 0
    a
  }
  xs <- standardize(x)
  kernel <- crossprod(xs)
  ridge <- 1e-6 * mean(diag(kernel)) + 1e-12
  # rank x features, without a samples x features intermediate
  weights <- tcrossprod(object$par$V %*% solve(kernel + diag(ridge, ncol(x))), xs)
  # one matrix-vector product per new sample, so that a sample starts from
  # the same coordinates alone or with others
  new <- standardize(xnew)
  start <- vapply(seq_len(ncol(new)), function(j) as.vector(weights %*% new[, j]),
                  numeric(nrow(weights)))
  if (object$problem$positive) start <- pmax(start, 0)
  as.vector(start)
}

#' Sample coordinates of a factorization
#'
#' The low-dimensional coordinates of the samples: for a [qmf()] fit, the
#' columns of `V`, one row per sample (as `prcomp()$x` or `reducedDim()`
#' expect), for the training samples or for new ones (see [predict.qmf()],
#' whose coordinates have the same orientation).
#'
#' @param object A fit, for example from [qmf()].
#' @param newdata `NULL` for the training samples, or new samples (features x
#'   samples) to place in the factorization.
#' @param threads Number of threads; see [diffrank_threads()].
#' @param ... Must be empty.
#' @return A samples x `rank` matrix with the samples' names.
#' @export
#' @examples
#' set.seed(1)
#' x <- exp(matrix(rnorm(30 * 2), 30) %*% matrix(rnorm(2 * 40), 2))
#' fit <- qmf(x, rank = 2)
#' head(sample_coordinates(fit))
sample_coordinates <- function(object, ...) {
  UseMethod("sample_coordinates")
}

#' @rdname sample_coordinates
#' @export
sample_coordinates.default <- function(object, ...) {
  abort("`object` must be a fitted factorization (a qmf fit made by qmf()), not %s.",
        describe(object))
}

#' @rdname sample_coordinates
#' @export
sample_coordinates.qmf <- function(object, newdata = NULL, threads = diffrank_threads(), ...) {
  check_dots_empty(...)
  if (is.null(newdata)) return(t(object$V))
  stats::predict(object, newdata, threads = threads)
}

#' @rdname qmf-methods
#' @export
plot.qmf <- function(x, which = c("loss", "quantiles"), rows = NULL, ...) {
  check_dots_empty(...)
  if (!is.character(which) || length(which) == 0L || !all(which %in% c("loss", "quantiles"))) {
    abort("`which` must be \"loss\", \"quantiles\" or both, not %s.", describe(which))
  }
  rows <- qmf_plot_rows(x, rows)
  if (length(which) == 2L) {
    old <- graphics::par(mfrow = c(1L, 2L))
    on.exit(graphics::par(old))
  }
  if ("loss" %in% which) {
    h <- x$history
    graphics::plot(h$epoch, h$objective, type = "o", pch = 20, log = "y", xlab = "Epoch",
                   ylab = "Objective", main = sprintf("QMF, rank %d", x$settings$rank))
  }
  if ("quantiles" %in% which) qmf_plot_quantiles(x, rows)
  invisible(x)
}

qmf_plot_rows <- function(x, rows) {
  d <- nrow(x$x)
  if (is.null(rows)) {
    spread <- apply(x$x / qmf_unit(x), 1L, stats::var, na.rm = TRUE)
    return(order(spread, decreasing = TRUE)[seq_len(min(4L, d))])
  }
  index <- if (is.character(rows)) match(rows, rownames(x$x)) else rows
  if (!is.numeric(index) || length(index) == 0L || anyNA(index) || any(index < 1) ||
      any(index > d) || any(index != round(index))) {
    abort("`rows` must be names or indices of rows of the data (1 to %d), not %s.", d,
          describe(rows))
  }
  as.integer(index)
}

qmf_plot_quantiles <- function(x, rows) {
  levels <- t(apply(x$b[rows, , drop = FALSE], 1L, function(b) cumsum(b) - b / 2))
  learned <- x$q[rows, , drop = FALSE]
  empirical <- t(vapply(seq_along(rows), function(i) {
    stats::quantile(x$x[rows[i], ], levels[i, ], na.rm = TRUE, names = FALSE)
  }, numeric(ncol(levels))))
  colours <- rep_len(c("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"),
                     length(rows))
  graphics::matplot(t(levels), t(learned), type = "l", lty = 1, lwd = 2, col = colours,
                    xlab = "Quantile level", ylab = "Value", ylim = range(learned, empirical),
                    main = "Learned (lines) and empirical (points) quantiles")
  graphics::matpoints(t(levels), t(empirical), pch = 1, col = colours)
  labels <- if (!is.null(rownames(x$x))) rownames(x$x)[rows] else paste("row", rows)
  graphics::legend("topleft", labels, col = colours, lty = 1, lwd = 2, bty = "n", cex = 0.8)
}
