#' Support vector machine on a rank kernel, with cross-validated settings
#'
#' Fits a kernlab SVM (`kernlab::ksvm(type = "C-svc")`) on a precomputed rank
#' kernel between samples ([kendall_kernel()], [mallows_kernel()] or
#' [weighted_kendall_kernel()]), choosing by cross-validation the number of
#' features to rank (the most variable ones) and the cost `C`, so that it
#' works on whole expression arrays as they come.
#'
#' The features of `x` are ordered once by their variance across the samples
#' (the unsupervised filter of the section Features of [kendall_kernel()]: it
#' does not look at `y`). For each number of features in `n_features` the
#' kernel matrix between all samples is computed once; for each cost in
#' `cost` an SVM is fitted on the training samples of every fold (the kernel
#' restricted to them) and predicts the fold's samples. The pair with the
#' largest cross-validated accuracy is kept (ties go to the fewest features,
#' then to the smallest cost) and the final SVM is fitted on all samples.
#'
#' The folds are drawn with R's random number generator, stratified by class
#' (call [set.seed()] first: the fit is then the same at every call), unless
#' `folds` gives them. kernlab's C-svc solver is deterministic, and so are
#' the kernels (for any number of threads).
#'
#' To estimate the accuracy of the whole procedure, run it inside an outer
#' cross-validation (on each outer training set, predicting the outer test
#' set), as `bench/kernel_svm.R` does on the ALL arrays: the cross-validated
#' accuracy reported here is that of the chosen settings and is optimistic.
#'
#' @param x A numeric matrix with features (genes) in rows and samples in
#'   columns, with row names to predict new samples by feature name, or a
#'   `SummarizedExperiment`; for `print()`, a `rank_svm` fit.
#' @param y The classes of the samples: a factor or character vector with
#'   one value per sample and at least two classes (for a
#'   `SummarizedExperiment`, also the name of a column of its `colData`).
#' @param kernel `"kendall"` (the default), `"mallows"` or
#'   `"weighted_kendall"`.
#' @param n_features The numbers of most variable features among which the
#'   cross-validation chooses; numbers above the number of rows of `x` are
#'   taken as all of them, so that on small data all features are among the
#'   candidates (add `Inf` to try all of them on whole arrays, at the cost of
#'   the largest kernel).
#' @param cost The costs `C` of the SVM among which the cross-validation
#'   chooses.
#' @param nfolds Number of folds, from 2 to the size of the smallest class.
#' @param folds `NULL`, or the fold (1, 2, ..., K) of every sample.
#' @param centre Whether to centre the kernel in feature space on the
#'   training samples (of each fold, and of the final fit; see the section
#'   Centring of [kendall_kernel()]), which helps kernlab's solver on kernels
#'   whose values vary little, such as those of all the genes of whole arrays.
#'   Not the default: with the features chosen it is not needed on the ALL
#'   arrays, and kernlab's solver can take up to a second or more on a
#'   centred kernel whose SVM predicts a single class (small costs), which
#'   made `rank_svm()` about 10 times slower there. With `centre = TRUE` new
#'   samples are compared with all the training samples, not only the support
#'   vectors.
#' @param kernel_args A list of settings of the kernel, for example
#'   `list(lambda = 5)` for `"mallows"` or `list(weighting = "top", k = 100)`
#'   for `"weighted_kendall"` (`k` must then be at most the smallest number
#'   of features).
#' @param threads Number of threads of the kernel; see [diffrank_threads()].
#' @param ... Must be empty (an error names any argument given there).
#' @param assay.type For a `SummarizedExperiment`, the assay to use.
#' @return An object of class `"rank_svm"`: a list with `fit` (the kernlab
#'   `ksvm` fit), `features` (the features used, by name or row number),
#'   `n_features` and `cost` (the chosen settings), `cv` (a data frame of the
#'   cross-validated accuracy of every pair of settings), `folds`, `kernel`,
#'   `kernel_args`, `centring` (the training kernel's means, or `NULL`),
#'   `levels` (the classes) and `support` (the samples new ones are compared
#'   with, restricted to the features: the support vectors, or all training
#'   samples with `centre = TRUE`). It has `print()`,
#'   `summary()`, `predict()` and `coef()` methods.
#' @seealso [kendall_kernel()] (section Features), [support_kernel()] to do
#'   the same by hand.
#' @references
#' Jiao Y, Vert J-P (2018). The Kendall and Mallows kernels for permutations.
#' *IEEE Transactions on Pattern Analysis and Machine Intelligence* 40(7),
#' 1755-1769.
#'
#' Karatzoglou A, Smola A, Hornik K, Zeileis A (2004). kernlab - an S4
#' package for kernel methods in R. *Journal of Statistical Software* 11(9).
#' @export
#' @examples
#' if (requireNamespace("kernlab", quietly = TRUE)) {
#'   set.seed(1)
#'   # 300 genes x 40 samples; genes 1-10 are higher in class "b"
#'   x <- matrix(rnorm(300 * 40), 300,
#'               dimnames = list(paste0("g", 1:300), paste0("s", 1:40)))
#'   y <- rep(c("a", "b"), each = 20)
#'   x[1:10, y == "b"] <- x[1:10, y == "b"] + 2
#'   fit <- rank_svm(x[, -(1:4)], y[-(1:4)], n_features = c(20, 300), cost = c(1, 100))
#'   fit
#'   predict(fit, x[, 1:4])
#' }
rank_svm <- function(x, ...) {
  UseMethod("rank_svm")
}

#' @rdname rank_svm
#' @export
rank_svm.default <- function(x, y, kernel = c("kendall", "mallows", "weighted_kendall"),
                             n_features = c(250, 500, 1000, 2000, 5000),
                             cost = 10^(-1:3), nfolds = 5L, folds = NULL, centre = FALSE,
                             kernel_args = list(), threads = diffrank_threads(), ...) {
  check_dots_empty(...)
  centre <- check_flag(centre, "centre")
  if (!requireNamespace("kernlab", quietly = TRUE)) {
    abort("The kernlab package is needed for rank_svm(); install it with install.packages(\"kernlab\").")
  }
  kernel <- match_choice(kernel, c("kendall", "mallows", "weighted_kendall"), "kernel")
  if (is_block_input(x)) x <- realize_block_input(x, "x", "rank_svm() needs it in memory.")
  m <- rank_input(x, "x", "fail")
  n <- ncol(m)
  if (n < 4L) {
    abort("`x` must have at least 4 samples (columns) for a cross-validated SVM, not %d.", n)
  }
  labels <- svm_labels(y, n)
  if (!is.numeric(n_features) || length(n_features) < 1L || anyNA(n_features) ||
        any(n_features < 2) || any(is.finite(n_features) & n_features != round(n_features))) {
    abort("`n_features` must be whole numbers of features, each at least 2, not %s.",
          describe(n_features))
  }
  n_features <- sort(unique(pmin(n_features, nrow(m))))
  if (!is.numeric(cost) || length(cost) < 1L || anyNA(cost) || any(!is.finite(cost)) ||
        any(cost <= 0)) {
    abort("`cost` must be positive numbers, not %s.", describe(cost))
  }
  cost <- sort(unique(as.double(cost)))
  if (!is.list(kernel_args) || is.object(kernel_args) ||
        (length(kernel_args) > 0L && (is.null(names(kernel_args)) || any(!nzchar(names(kernel_args)))))) {
    abort("`kernel_args` must be a named list of the kernel's settings, not %s.",
          describe(kernel_args))
  }
  reserved <- intersect(names(kernel_args), c("x", "y", "features", "threads", "progress"))
  if (length(reserved) > 0L) {
    abort("`kernel_args` must not set `%s`: rank_svm() sets it.", reserved[1L])
  }
  threads <- check_threads(threads)
  folds <- svm_folds(folds, nfolds, labels)

  v <- row_variance(m)
  v[is.na(v)] <- -Inf
  ranked <- order(v, decreasing = TRUE, method = "radix")
  kernels <- lambda_kernels(kernel)
  accuracy <- matrix(NA_real_, length(n_features), length(cost))
  kernel_matrices <- vector("list", length(n_features))
  for (i in seq_along(n_features)) {
    rows <- sort(ranked[seq_len(n_features[i])])
    k <- svm_kernel(kernels, m[rows, , drop = FALSE], NULL, kernel_args, threads)
    kernel_matrices[[i]] <- rows
    for (j in seq_along(cost)) {
      correct <- 0
      for (f in seq_len(max(folds))) {
        train <- folds != f
        pred <- svm_fit_predict(k[train, train, drop = FALSE], labels[train], cost[j],
                                k[!train, train, drop = FALSE], centre)
        correct <- correct + sum(pred == labels[!train])
      }
      accuracy[i, j] <- correct / n
    }
  }
  best <- which(accuracy == max(accuracy), arr.ind = TRUE)
  best <- best[order(best[, 1L], best[, 2L]), , drop = FALSE][1L, ]
  rows <- kernel_matrices[[best[[1L]]]]
  k <- svm_kernel(kernels, m[rows, , drop = FALSE], NULL, kernel_args, threads)
  centring <- if (centre) kernel_means(k) else NULL
  if (centre) k <- centre_matrix(k, centring)
  fit <- kernlab::ksvm(kernlab::as.kernelMatrix(k), labels, type = "C-svc", C = cost[best[[2L]]])
  # the samples new ones are compared with: the support vectors, or all the
  # training samples when the kernel is centred on them
  support <- if (centre) seq_len(n) else kernlab::SVindex(fit)
  cv <- data.frame(n_features = rep(n_features, times = length(cost)),
                   cost = rep(cost, each = length(n_features)),
                   accuracy = as.vector(accuracy))
  structure(list(
    fit = fit,
    features = if (is.null(rownames(m))) rows else rownames(m)[rows],
    n_features = length(rows), cost = cost[best[[2L]]], cv = cv,
    cv_accuracy = max(accuracy), folds = folds, kernel = kernel, kernel_args = kernel_args,
    centring = centring, samples = colnames(m),
    levels = levels(labels), n_samples = n, class_counts = table(labels),
    n_rows = nrow(m), named = !is.null(rownames(m)),
    support = m[rows, support, drop = FALSE], threads = threads, call = match.call()
  ), class = "rank_svm")
}

# the generic shows the default method's arguments (R/args_of_generics.R)
formals(rank_svm) <- formals(rank_svm.default)

#' @rdname rank_svm
#' @export
rank_svm.SummarizedExperiment <- se_method(
  rank_svm.default, alist(assay.type = 1L),
  function(args) {
    args$y <- quote(rank_svm_classes(x, y))
    bquote(rank_svm.default(se_assay(x, assay.type), ..(args)), splice = TRUE)
  })

# The classes of an SE's samples: `y` itself, or the colData column it names.
rank_svm_classes <- function(x, y) {
  if (is.character(y) && length(y) == 1L && ncol(x) != 1L) {
    cd <- SummarizedExperiment::colData(x)
    if (!y %in% colnames(cd)) {
      abort("`y` must be the classes of the samples or a column of colData(x) (%s), not \"%s\".",
            paste(colnames(cd), collapse = ", "), y)
    }
    y <- cd[[y]]
  }
  y
}

#' @param object A `rank_svm` fit.
#' @param newdata The new samples: features in rows (matched by name with
#'   those of the fit; they may come in another order and include others),
#'   samples in columns; or a `SummarizedExperiment`.
#' @param type `"class"` (the default) for the predicted classes, or
#'   `"decision"` for kernlab's decision values (one column per pair of
#'   classes).
#' @rdname rank_svm
#' @export
predict.rank_svm <- function(object, newdata, type = c("class", "decision"), ...,
                             assay.type = 1L) {
  check_dots_empty(...)
  type <- match_choice(type, c("class", "decision"), "type")
  if (methods::is(newdata, "SummarizedExperiment")) newdata <- se_assay(newdata, assay.type)
  new <- rank_input(newdata, "newdata", "fail")
  if (object$named) {
    if (is.null(rownames(new))) {
      abort("`newdata` has no row names: give it the features' names (the fit's features are named, e.g. \"%s\").",
            object$features[1L])
    }
    rows <- match(object$features, rownames(new))
    if (all(is.na(rows))) {
      abort("`newdata` has none of the fit's %d features by name (e.g. \"%s\"); its row names must be feature names.%s",
            length(object$features), object$features[1L], transposed_hint(new, object$features))
    }
    if (anyNA(rows)) {
      abort("`newdata` lacks %d of the fit's %d features, for example \"%s\".", sum(is.na(rows)),
            length(rows), object$features[is.na(rows)][1L])
    }
  } else {
    if (nrow(new) != object$n_rows) {
      abort("`newdata` must have the %d features (rows) of the training data, not %d.",
            object$n_rows, nrow(new))
    }
    rows <- object$features
  }
  new <- new[rows, , drop = FALSE]
  rownames(new) <- rownames(object$support)
  k <- svm_kernel(lambda_kernels(object$kernel), new, object$support, object$kernel_args,
                  object$threads, "newdata")
  if (!is.null(object$centring)) {
    k <- centre_matrix(k, object$centring)[, kernlab::SVindex(object$fit), drop = FALSE]
  }
  k <- kernlab::as.kernelMatrix(k)
  if (type == "decision") {
    out <- kernlab::predict(object$fit, k, type = "decision")
    rownames(out) <- colnames(new)
    return(out)
  }
  out <- factor(as.character(kernlab::predict(object$fit, k)), levels = object$levels)
  names(out) <- colnames(new)
  out
}

#' @rdname rank_svm
#' @export
print.rank_svm <- function(x, ...) {
  check_dots_empty(...)
  cat(sprintf("Rank-kernel SVM (%s kernel), %d samples, classes %s\n", x$kernel, x$n_samples,
              paste(sprintf("%s (%d)", names(x$class_counts), as.vector(x$class_counts)),
                    collapse = ", ")))
  cat(sprintf("Chosen by %d-fold cross-validation: %d of %d features (largest variance), C = %s\n",
              max(x$folds), x$n_features, x$n_rows, format(x$cost)))
  cat(sprintf("Cross-validated accuracy of these settings: %.3f (optimistic: chosen on the same folds)\n",
              x$cv_accuracy))
  cat(sprintf("Support vectors: %d%s\n", length(kernlab::SVindex(x$fit)),
              if (is.null(x$centring)) "" else "; kernel centred on the training samples"))
  invisible(x)
}

#' @rdname rank_svm
#' @export
summary.rank_svm <- function(object, ...) {
  check_dots_empty(...)
  table <- stats::xtabs(accuracy ~ n_features + cost, data = object$cv)
  structure(list(model = object, accuracy = unclass(table)), class = "summary.rank_svm")
}

#' @export
print.summary.rank_svm <- function(x, ...) {
  check_dots_empty(...)
  print(x$model)
  cat("\nCross-validated accuracy (rows: number of features, columns: cost C):\n")
  acc <- x$accuracy
  names(dimnames(acc)) <- c("features", "C")
  print(round(acc, 3))
  invisible(x)
}

#' @return `coef()`: the dual coefficients of the support samples (alpha_i
#'   y_i, named by sample), a list of them per pair of classes for more than
#'   two classes, as `kernlab::coef()`; the intercept is
#'   `-kernlab::b(object$fit)`.
#' @rdname rank_svm
#' @export
coef.rank_svm <- function(object, ...) {
  check_dots_empty(...)
  alpha <- kernlab::coef(object$fit)
  index <- kernlab::alphaindex(object$fit)
  sample_names <- function(idx) {
    if (is.null(object$samples)) as.character(idx) else object$samples[idx]
  }
  out <- Map(function(a, idx) stats::setNames(a, sample_names(idx)), alpha, index)
  if (length(out) == 1L) out[[1L]] else out
}

# The classes of the samples as a factor of at least 2 levels.
svm_labels <- function(y, n) {
  if (!(is.factor(y) || is.character(y) || is.logical(y)) || !is.null(dim(y))) {
    abort("`y` must be a factor or character vector of classes, not %s.", describe(y))
  }
  if (length(y) != n) {
    abort("`y` must have one class per sample (column of `x`): %d, not %d.", n, length(y))
  }
  if (anyNA(y)) abort("`y` must not contain missing classes.")
  y <- droplevels(factor(y))
  if (nlevels(y) < 2L) abort("`y` must have at least 2 classes, not %d.", nlevels(y))
  y
}

svm_folds <- function(folds, nfolds, labels) {
  n <- length(labels)
  if (is.null(folds)) {
    smallest <- min(table(labels))
    nfolds <- check_whole(nfolds, "nfolds", lower = 2)
    if (nfolds > smallest) {
      abort("`nfolds` must be at most the size of the smallest class (%d), not %d.", smallest,
            nfolds)
    }
    return(draw_folds(labels, nfolds, stratify = TRUE))
  }
  if (!is.numeric(folds) || length(folds) != n || anyNA(folds) || any(folds != round(folds)) ||
        any(folds < 1) || length(unique(folds)) < 2L || max(folds) != length(unique(folds))) {
    abort("`folds` must give each of the %d samples a fold 1, 2, ..., K (K >= 2, none empty), not %s.",
          n, describe(folds))
  }
  folds <- as.integer(folds)
  for (f in seq_len(max(folds))) {
    if (length(unique(labels[folds != f])) < 2L) {
      abort("The training samples of fold %d have only one class; use other folds.", f)
    }
  }
  folds
}

lambda_kernels <- function(kernel) {
  switch(kernel, kendall = kendall_kernel.default, mallows = mallows_kernel.default,
         weighted_kendall = weighted_kendall_kernel.default)
}

# The kernel matrix (plain) between the samples of a and b, without the
# near-constant warning (rank_svm() chooses among several feature counts).
# Undefined values (a sample constant on the features, or sharing fewer than
# 2 observed features with another) are an error naming the samples of `a`,
# the argument `arg` of the user's call.
svm_kernel <- function(kernel, a, b, kernel_args, threads, arg = "x") {
  k <- withCallingHandlers(
    do.call(kernel, c(list(a, b), kernel_args, list(threads = threads, progress = FALSE))),
    diffrank_near_constant_kernel = function(w) invokeRestart("muffleWarning"),
    diffrank_undefined_kernel = function(w) invokeRestart("muffleWarning"))
  if (anyNA(k)) {
    # a constant sample is undefined against every other: name those first
    bad <- which(rowSums(is.na(k)) == ncol(k))
    if (length(bad) == 0L) bad <- which(rowSums(is.na(k)) > 0L)
    names <- if (is.null(colnames(a))) bad else colnames(a)[bad]
    abort(paste0("The rank kernel is undefined for %d sample(s) of `%s` (%s): they are constant on ",
                 "the %d features compared, or share fewer than 2 observed features with another ",
                 "sample. Remove them, or compare more features."),
          length(bad), arg, paste(utils::head(names, 5L), collapse = ", "), nrow(a))
  }
  k[, , drop = FALSE]
}

# The column means and grand mean of a training kernel, and a kernel (the
# training kernel itself, or new samples against all training samples)
# centred with them (see the section Centring of ?kendall_kernel).
kernel_means <- function(k) {
  means <- colMeans(k)
  list(means = means, mean = mean(means))
}

centre_matrix <- function(k, centring) {
  out <- sweep(sweep(k, 1L, rowMeans(k)), 2L, centring$means) + centring$mean
  if (nrow(k) == ncol(k) && identical(rownames(k), colnames(k))) out <- (out + t(out)) / 2
  out
}

svm_fit_predict <- function(k_train, labels, cost, k_test, centre = FALSE) {
  if (centre) {
    centring <- kernel_means(k_train)
    k_train <- centre_matrix(k_train, centring)
    k_test <- centre_matrix(k_test, centring)
  }
  fit <- kernlab::ksvm(kernlab::as.kernelMatrix(k_train), labels, type = "C-svc", C = cost)
  support <- kernlab::SVindex(fit)
  as.character(kernlab::predict(fit, kernlab::as.kernelMatrix(k_test[, support, drop = FALSE])))
}
