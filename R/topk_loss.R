#' Soft top-k classification loss
#'
#' The top-k classification loss of Cuturi, Teboul and Vert (2019), built on
#' the optimal-transport soft ranks of [sinkhorn_rank()]: for an observation
#' with scores \eqn{\theta}{theta} over \eqn{L}{L} classes and true class \eqn{l}{l},
#' \deqn{J_k(L - R_l(\theta)), \quad J_k(u) = \max(0, u - k + 1),}{
#' J_k(L - R_l(theta)),  J_k(u) = max(0, u - k + 1),}
#' where \eqn{R_l}{R_l} is the soft rank of the true class's score among the
#' \eqn{L}{L} scores (about \eqn{L}{L} for the largest score, 1 for the smallest).
#' The loss is zero when the true class is (softly) among the `k` best
#' scores, and grows with the number of classes ranked above it otherwise;
#' `k = 1` penalizes every class ranked above the true one. Its gradient comes
#' from the vector-Jacobian product of [sinkhorn_rank_fn()].
#'
#' The scores of each observation are standardized and squashed before
#' transport (the default of [sinkhorn_rank()]), so the loss does not change
#' when an observation's scores are shifted or multiplied by a positive
#' constant, and `eps` is unit-free; with scores all equal the soft ranks are
#' all equal too.
#'
#' @param pred Class scores: a matrix with one row per class and one column
#'   per observation (the orientation of the package: each column one
#'   problem), or a vector for a single observation. Higher is better.
#' @param response The true class of each observation (column of `pred`):
#'   whole numbers from 1 to `nrow(pred)`; class names (a character vector
#'   or a factor) matched to the row names of `pred`; or, when `pred` has no
#'   row names, a factor whose levels are the rows in order. Formerly
#'   `labels`, still accepted with a warning for one release.
#' @param ... Only the former name `labels` of `response`; anything else is
#'   an error.
#' @param k The loss is zero when the true class is among the `k` highest
#'   scores: a whole number from 1 to `nrow(pred) - 1`.
#' @inheritParams sinkhorn_rank
#' @return A list with `value`, the loss averaged over the observations, and
#'   `gradient`, its gradient with respect to `pred` (shaped like `pred`, with
#'   its dimnames).
#' @references Cuturi M, Teboul O, Vert JP (2019). Differentiable ranking and
#'   sorting using optimal transport. *Advances in Neural Information
#'   Processing Systems 32 (NeurIPS 2019)*. \doi{10.48550/arXiv.1905.11885}
#' @seealso [fy_loss()] for the perturbed Fenchel-Young losses.
#' @export
#' @examples
#' scores <- cbind(obs1 = c(a = 2, b = 1, c = 0), obs2 = c(a = 0, b = 1, c = 2))
#' soft_topk_loss(scores, c("a", "a"), k = 1)   # obs2 ranks its class last
#' soft_topk_loss(scores, c("a", "a"), k = 2)    # obs1 is fine, obs2 is one too low
#' # a linear classifier of iris trained with the top-1 loss
#' x <- rbind(1, t(scale(iris[, 1:4])))            # 5 x 150
#' loss <- function(w) soft_topk_loss(matrix(w, 3) %*% x, iris$Species, eps = 0.05)
#' set.seed(1)
#' fit <- optim(rnorm(15, sd = 0.1), function(w) loss(w)$value,
#'              function(w) as.vector(loss(w)$gradient %*% t(x)), method = "BFGS",
#'              control = list(maxit = 15))
#' mean(max.col(t(matrix(fit$par, 3) %*% x)) == as.integer(iris$Species))
soft_topk_loss <- function(pred, response, k = 1, eps = 0.01, scale = c("squash", "none"),
                           power = 2, tol = 1e-6, max_iter = 1000L,
                           threads = diffrank_threads(), progress = interactive(), ...) {
  do.call(check_dots_empty, take_renamed(list(...), "labels", "response", "soft_topk_loss()"))
  if (missing(response)) abort("`response` is missing: give the true class of each observation.")
  m <- as_numeric_matrix(pred, "pred")
  n_classes <- nrow(m)
  n_obs <- ncol(m)
  if (n_classes < 2L || n_obs < 1L) {
    abort("`pred` must have at least 2 classes (rows) and 1 observation (column), not %d x %d.",
          n_classes, n_obs)
  }
  if (anyNA(m) || any(is.infinite(m))) abort("`pred` must contain only finite values.")
  class_index <- topk_labels(response, m)
  k <- check_whole(k, "k")
  if (k >= n_classes) {
    abort("`k` must be below the number of classes (%d), not %d: the loss would always be zero.",
          n_classes, k)
  }
  op <- sinkhorn_rank_fn(m, eps = eps, scale = scale, power = power, tol = tol,
                         max_iter = max_iter, threads = threads, progress = progress)
  cells <- cbind(class_index, seq_len(n_obs))
  excess <- n_classes - op$value[cells] - (k - 1)
  active <- excess > 0
  v <- matrix(0, n_classes, n_obs)
  v[cells[active, , drop = FALSE]] <- -1 / n_obs
  gradient <- vjp_naming(op, v, "pred")
  gradient <- if (is.null(dim(pred)) && !is.data.frame(pred)) {
    stats::setNames(as.vector(gradient), names(pred))
  } else {
    matrix(gradient, n_classes, n_obs, dimnames = dimnames(m))
  }
  list(value = sum(excess[active]) / n_obs, gradient = gradient)
}

# The row of each observation's true class.
topk_labels <- function(response, m) {
  n_obs <- ncol(m)
  if (is.null(response) || length(response) != n_obs || !is.null(dim(response))) {
    abort("`response` must have one class per observation (column of `pred`): %d, not %s.",
          n_obs, describe(response))
  }
  if (anyNA(response)) abort("`response` must not contain missing values.")
  if (is.factor(response) && is.null(rownames(m))) {
    if (nlevels(response) != nrow(m)) {
      abort("`response` has %d levels but `pred` has %d rows (classes); give `pred` row names to match them by name.",
            nlevels(response), nrow(m))
    }
    return(as.integer(response))
  }
  if (is.factor(response) || is.character(response)) {
    classes <- rownames(m)
    if (is.null(classes)) {
      abort("`response` gives class names, so `pred` must have row names (the classes).")
    }
    index <- match(as.character(response), classes)
    if (anyNA(index)) {
      abort("`response` has classes that are not row names of `pred`, for example \"%s\".",
            as.character(response)[is.na(index)][1L])
    }
    return(index)
  }
  if (!is.numeric(response) || any(response != round(response)) || any(response < 1) ||
      any(response > nrow(m))) {
    abort("`response` must be whole numbers from 1 to %d (rows of `pred`) or class names, not %s.",
          nrow(m), describe(response))
  }
  as.integer(response)
}
