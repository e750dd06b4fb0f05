# Rank kernels as kernlab kernel functions (kendall_kernlab() and its
# siblings) and the cross-kernel that predicts new samples with a kernlab SVM
# fitted on a precomputed kernel matrix (support_kernel()). The kernels
# themselves are in kendall.R.

#' Rank kernels as kernlab kernel functions
#'
#' Kernel functions of class `"kernel"` for kernlab (`ksvm()`, `kpca()`,
#' `kernelMatrix()`, ...), computing [kendall_kernel()], [mallows_kernel()]
#' or [weighted_kendall_kernel()].
#'
#' kernlab stores **samples in rows**, whereas [kendall_kernel()] takes samples
#' in columns: the function returned here takes kernlab's orientation. Called
#' with two vectors (two samples) it returns their kernel value, which is how
#' kernlab uses it; called with matrices (samples in rows) it returns the
#' kernel matrix between their rows.
#'
#' kernlab evaluates such a function once per pair of samples from R; for
#' large data, precompute the matrix with [kendall_kernel()] instead (see its
#' section Use with kernlab, and [support_kernel()]). Pass `scaled = FALSE`
#' to `ksvm()`: its default scales every gene across samples, which changes
#' each sample's ranking.
#'
#' @inheritParams kendall_kernel
#' @inheritParams mallows_kernel
#' @inheritParams weighted_kendall_kernel
#' @param type `"full"` (the default) to rank every feature, or `"topk"` to
#'   compare top-`k` lists (see the section Partial rankings of
#'   [kendall_kernel()]).
#' @param k For `type = "topk"`, the length of the top-k lists; for
#'   `weighted_kendall_kernlab(weighting = "top")`, the number of top
#'   positions.
#' @param features `NULL` for all the columns, or the columns (features) to
#'   use: their names (the data given to kernlab must then have column names),
#'   column numbers or a logical vector. Not a number of features: choose
#'   them once on the training data, e.g.
#'   `attr(kendall_kernel(t(data), features = 1000), "features")`.
#' @return A function `function(x, y = NULL)` of class `"diffrank_kernlab"`,
#'   a subclass of kernlab's S4 class `"kernel"` when kernlab is installed,
#'   with the parameters in its `kpar`. Printing it says which kernel it is.
#' @export
#' @examples
#' if (requireNamespace("kernlab", quietly = TRUE)) {
#'   set.seed(1)
#'   # 30 samples in rows, 40 genes in columns; class 2 has genes 1-10 higher
#'   labels <- factor(rep(c("a", "b"), each = 15))
#'   data <- matrix(rnorm(30 * 40), nrow = 30)
#'   data[labels == "b", 1:10] <- data[labels == "b", 1:10] + 1.5
#'   fit <- kernlab::ksvm(data, labels, kernel = kendall_kernlab(),
#'                        scaled = FALSE, C = 1)
#'   mean(kernlab::predict(fit, data) == labels)
#' }
#' kendall_kernlab()
#' weighted_kendall_kernlab(weighting = "top", k = 10, features = 1:20)
kendall_kernlab <- function(variant = c("tau_b", "tau_a"), features = NULL,
                            type = c("full", "topk"), k = NULL) {
  variant <- match_choice(variant, c("tau_b", "tau_a"), "variant")
  check_kernlab_features(features)
  type <- match_choice(type, c("full", "topk"), "type")
  top <- top_k(type, k, "fail")
  make_kernel_fn(
    function(x, y) {
      kendall_kernel(x, y, variant = variant, type = type, k = k, threads = 1L,
                     progress = FALSE)
    },
    kernel = variant, top = top, kpar = list(variant = variant, features = features,
                                             type = type, k = k),
    features = features, label = sprintf("Kendall kernel (%s%s)", variant, top_label(top))
  )
}

#' @rdname kendall_kernlab
#' @export
mallows_kernlab <- function(lambda = 1, normalized = TRUE, features = NULL,
                            type = c("full", "topk"), k = NULL) {
  lambda <- check_number(lambda, "lambda", lower = 0)
  normalized <- check_flag(normalized, "normalized")
  check_kernlab_features(features)
  type <- match_choice(type, c("full", "topk"), "type")
  top <- top_k(type, k, "fail")
  make_kernel_fn(
    function(x, y) {
      mallows_kernel(x, y, lambda = lambda, normalized = normalized, type = type, k = k,
                     threads = 1L, progress = FALSE)
    },
    kernel = "mallows", lambda = lambda, normalized = normalized, top = top,
    kpar = list(lambda = lambda, normalized = normalized, features = features, type = type,
                k = k),
    features = features, label = sprintf("Mallows kernel%s", top_label(top))
  )
}

top_label <- function(top) if (top > 0) sprintf(", top-%d lists", as.integer(top)) else ""

#' @rdname kendall_kernlab
#' @export
weighted_kendall_kernlab <- function(weighting = weightings, k = NULL, u = NULL,
                                     normalized = TRUE, features = NULL) {
  weighting <- match_choice(weighting, weightings, "weighting")
  normalized <- check_flag(normalized, "normalized")
  check_kernlab_features(features)
  # Checked now as far as possible without the data; fully when called.
  weight_spec(weighting, k, u, p = NULL)
  spec <- NULL
  make_kernel_fn(
    function(x, y) {
      weighted_kendall_kernel(x, y, weighting = weighting, k = k, u = u,
                              normalized = normalized, threads = 1L, progress = FALSE)
    },
    kernel = c(top = "product", additive = "additive", multiplicative = "product",
               average = "average")[[weighting]],
    normalized = normalized,
    position_weights = function(p) {
      if (is.null(spec) || spec$p != p) {
        spec <<- c(weight_spec(weighting, k, u, p, normalized), p = p)
      }
      spec$u
    },
    kpar = list(weighting = weighting, k = k, u = u, normalized = normalized,
                features = features),
    features = features, label = sprintf("Weighted Kendall kernel (%s)", weighting)
  )
}

#' Cross-kernel for predicting new samples with a kernlab SVM
#'
#' A kernlab SVM fitted on a precomputed kernel matrix predicts new samples
#' from their kernel with its *support vectors* only, in the order of
#' `kernlab::SVindex()`. `support_kernel()` computes that matrix with the
#' kernel function and settings used for fitting, so that
#' `predict(fit, support_kernel(fit, test, train, kernel = kernel))` is
#' right.
#'
#' @param fit A `ksvm` fit from kernlab, fitted on `kernel(train, ...)`.
#' @param newdata The new samples: features in rows, samples in columns (or a
#'   `SummarizedExperiment`), with the features of `train` in the same order.
#' @param train The training samples the kernel matrix of `fit` was computed
#'   on, in the same orientation and order.
#' @param kernel The kernel function: [kendall_kernel()], [mallows_kernel()]
#'   or [weighted_kendall_kernel()] (named, after the settings).
#' @param ... The kernel's settings (for example `lambda`, `weighting`, `k`,
#'   `threads`), the same as for fitting.
#' @param features As for the kernel: `NULL`, names, row numbers, or a number
#'   n of features, then chosen (the n of largest variance) on `train`, as
#'   `kernel(train, features = n)` chose them for the fit. Names pick the
#'   rows of `newdata` by name.
#' @param centre `NULL`, or the centred training kernel (`kernel(train,
#'   centre = TRUE)`) the fit was computed on: the kernel of `newdata` against
#'   all the training samples is then centred with its means before the
#'   support vectors are taken.
#' @return A kernlab `kernelMatrix`, new samples x support vectors.
#' @export
#' @examples
#' if (requireNamespace("kernlab", quietly = TRUE)) {
#'   set.seed(1)
#'   x <- matrix(rnorm(40 * 60), 40)                  # 40 genes x 60 samples
#'   labels <- factor(rep(c("a", "b"), each = 30))
#'   x[1:8, labels == "b"] <- x[1:8, labels == "b"] + 1
#'   train <- c(1:20, 31:50)
#'   fit <- kernlab::ksvm(mallows_kernel(x[, train], lambda = 2), labels[train],
#'                        type = "C-svc")
#'   k_new <- support_kernel(fit, x[, -train], x[, train], lambda = 2,
#'                           kernel = mallows_kernel)
#'   mean(kernlab::predict(fit, k_new) == labels[-train])
#' }
support_kernel <- function(fit, newdata, train, ..., kernel = kendall_kernel, features = NULL,
                           centre = NULL) {
  if (!requireNamespace("kernlab", quietly = TRUE)) {
    abort("The kernlab package is needed for support_kernel().")
  }
  if (!methods::is(fit, "ksvm")) abort("`fit` must be a kernlab ksvm fit, not %s.", describe(fit))
  if (!is.function(kernel)) abort("`kernel` must be a kernel function, not %s.", describe(kernel))
  if (methods::is(train, "SummarizedExperiment")) train <- se_assay(train, 1L)
  train <- as_numeric_matrix(train, "train")
  if (is_feature_count(features)) {
    # chosen on the training samples, as for the fit's kernel matrix
    na <- list(...)$na
    features <- select_features(features, train, NULL, if (is.null(na)) "fail" else na)$features
  }
  support <- kernlab::SVindex(fit)
  if (length(support) == 0L || max(support) > ncol(train)) {
    abort("`train` has %d samples, but the fit's support vectors go up to sample %d: give the training samples the fit was computed on.",
          ncol(train), max(support, 0L))
  }
  k <- with_arg_names(c(x = "newdata", y = "train"), expr = if (!is.null(centre)) {
    # centring needs the kernel with all the training samples
    k <- if (is.null(features)) {
      kernel(newdata, train, ..., centre = centre)
    } else {
      kernel(newdata, train, ..., features = features, centre = centre)
    }
    as_kernel_matrix(k[, support, drop = FALSE])
  } else if (is.null(features)) {
    kernel(newdata, train[, support, drop = FALSE], ...)
  } else {
    kernel(newdata, train[, support, drop = FALSE], ..., features = features)
  })
  if (!is.matrix(k) || !is.numeric(k) || ncol(k) != length(support)) {
    abort("`kernel` must return a kernel matrix of new samples x training samples (here with %d columns, one per support vector), not %s.",
          length(support), describe(k))
  }
  k
}

# A kernel function in kernlab's orientation (samples in rows) from a kernel
# in diffrank's (samples in columns). kernlab calls it once per pair of
# samples, so two complete numeric vectors of the same length go straight to
# the C++ kernel; anything else goes through the checked R function.
make_kernel_fn <- function(checked, kernel, lambda = 1, normalized = TRUE,
                           position_weights = function(p) double(0), kpar = list(),
                           features = NULL, label = "Rank kernel", top = 0) {
  f <- function(x, y = NULL) {
    if (is.null(y)) y <- x
    if (!is.null(features)) {
      x <- kernlab_columns(x, features, "x")
      y <- kernlab_columns(y, features, "y")
    }
    if (is.null(dim(x)) && is.null(dim(y))) {
      if (is.numeric(x) && is.numeric(y) && !is.object(x) && !is.object(y) &&
            length(x) == length(y) && length(x) >= max(2L, top) && !anyNA(x) && !anyNA(y)) {
        u <- position_weights(length(x))
        value <- rank_kernel_matrix(matrix(as.double(x)), matrix(as.double(y)), kernel, lambda,
                                    normalized, u, 1L, FALSE, top)[1L]
        if (!is.nan(value)) return(value)
      }
      return(checked(x, y))
    }
    checked(t(as_numeric_matrix(x, "x")), t(as_numeric_matrix(y, "y")))
  }
  if (requireNamespace("kernlab", quietly = TRUE)) {
    methods::new(rank_kernlab_class(), .Data = f, kpar = kpar)
  } else {
    structure(f, kpar = kpar, class = c("diffrank_kernlab", "kernel", "function"))
  }
}

# kernlab's kernel functions are S4 objects of its class "kernel", whose show
# method prints nothing for a user-defined kernel (and print() its source):
# diffrank's are of a subclass defined, once kernlab is available, in an
# environment of its own, with a show method (and the S3 print method below).
rank_kernlab_env <- new.env()

rank_kernlab_class <- function() {
  def <- methods::getClassDef("diffrank_kernlab", where = rank_kernlab_env)
  if (is.null(def)) {
    methods::setClass("diffrank_kernlab",
                      contains = methods::getClass("kernel", where = asNamespace("kernlab")),
                      where = rank_kernlab_env)
    methods::setMethod("show", "diffrank_kernlab", function(object) print_rank_kernlab(object),
                       where = rank_kernlab_env)
    def <- methods::getClassDef("diffrank_kernlab", where = rank_kernlab_env)
  }
  def
}

#' @export
print.diffrank_kernlab <- function(x, ...) {
  check_dots_empty(...)
  print_rank_kernlab(x)
}

print_rank_kernlab <- function(x) {
  kpar <- attr(x, "kpar")
  features <- kpar$features
  kpar$features <- NULL
  kpar <- kpar[!vapply(kpar, is.null, logical(1))]
  show_value <- function(v) {
    if (length(v) > 3L) sprintf("<%d values>", length(v)) else paste(format(v), collapse = ", ")
  }
  cat(get0("label", envir = environment(x), inherits = FALSE) %||% "Rank kernel",
      "function for kernlab (samples in rows; see ?kendall_kernlab)\n")
  if (length(kpar) > 0L) {
    cat("Parameters:", paste(names(kpar), vapply(kpar, show_value, ""), sep = " = ",
                             collapse = ", "), "\n")
  }
  if (!is.null(features)) cat(sprintf("Features: %d of the columns\n", length(features)))
  invisible(x)
}

# `features` of a kernlab kernel function: names, column numbers or a logical
# vector (a number of features cannot be chosen one pair of samples at a time).
check_kernlab_features <- function(features) {
  if (is.null(features)) return(invisible())
  if (is_feature_count(features)) {
    abort(paste0(
      "`features` of a kernlab kernel function must give the features by name or column ",
      "number, not a number: choose them once, e.g. with ",
      "attr(kendall_kernel(t(data), features = %s), \"features\")."), format(features))
  }
  feature_index(features, if (is.logical(features)) length(features) else Inf,
                if (is.character(features)) features else NULL, "x")
  invisible()
}

# The columns `features` of kernlab data (samples in rows; a vector is one
# sample).
kernlab_columns <- function(x, features, arg) {
  if (is.null(dim(x))) {
    return(x[feature_index(features, length(x), names(x), arg)])
  }
  x[, feature_index(features, ncol(x), colnames(x), arg), drop = FALSE]
}
