# Feature selection, centring and the near-constant check of the rank kernel
# functions (kendall.R): the `features` and `centre` arguments.

# x and y restricted to `features` (NULL: unchanged), with `features` as the
# selected names (or indices when x has no row names) and `p` their number.
# A number chooses the most variable features of x; names pick y's rows by
# name, so that y's features may come in another order.
select_features <- function(features, x, y, na) {
  if (is.null(features)) return(list(x = x, y = y, features = NULL, p = NULL))
  vector_input <- is.null(dim(x)) && !is.data.frame(x)
  if (is_block_input(x)) {
    p <- nrow(x)
    names_x <- rownames(x)
  } else {
    x <- rank_input(x, "x", na)
    if (vector_input) x <- x[, 1L, drop = TRUE]
    p <- if (vector_input) length(x) else nrow(x)
    names_x <- if (vector_input) names(x) else rownames(x)
  }
  if (is_feature_count(features)) {
    if (!is.null(y)) {
      abort(paste0(
        "With `y`, `features` must give the features by name or index (for example ",
        "attr(K, \"features\") of the training kernel K), not a number: a number would ",
        "choose them on the samples of `x` alone."))
    }
    n <- check_whole(features, "features", lower = 2, upper = max(p, 2))
    if (vector_input || ncol(x) < 2L) {
      abort("`features` = %d needs at least 2 samples to measure the features' variance.", n)
    }
    index <- variable_features(x, n)
  } else {
    index <- feature_index(features, p, names_x, "x")
  }
  subset_rows <- function(m, rows) {
    if (is.null(dim(m)) && !is.data.frame(m)) m[rows] else m[rows, , drop = FALSE]
  }
  if (!is.null(y)) {
    names_y <- if (is.null(dim(y)) && !is.data.frame(y)) names(y) else rownames(y)
    p_y <- if (is.null(dim(y)) && !is.data.frame(y)) length(y) else nrow(y)
    if (is.character(features) && !is.null(names_y)) {
      rows_y <- feature_index(features, p_y, names_y, "y")
    } else {
      if (p_y != p) {
        abort("`x` and `y` must have the same number of features (rows), not %d and %d.", p, p_y)
      }
      rows_y <- index
    }
    y <- subset_rows(y, rows_y)
  }
  list(x = subset_rows(x, index), y = y,
       features = if (is.null(names_x)) index else names_x[index], p = length(index))
}

is_feature_count <- function(features) {
  is.numeric(features) && length(features) == 1L && is.null(dim(features)) &&
    !is.object(features)
}

# The row numbers of `features` (names, numbers or a logical vector) among p
# features named `names` (NULL when unnamed) of the argument `arg`.
feature_index <- function(features, p, names, arg) {
  if (is.character(features) && is.null(dim(features))) {
    if (anyNA(features)) abort("`features` must not contain missing names.")
    if (is.null(names)) {
      abort("`features` gives feature names, but `%s` has no row names.", arg)
    }
    index <- match(features, names)
    if (anyNA(index)) {
      abort("`%s` lacks %d of the %d features named in `features`, for example \"%s\".", arg,
            sum(is.na(index)), length(features), features[is.na(index)][1L])
    }
  } else if (is.logical(features) && is.null(dim(features))) {
    if (length(features) != p || anyNA(features)) {
      abort("`features` as a logical vector must have one TRUE or FALSE per feature (%d), not %s.",
            p, describe(features))
    }
    index <- which(features)
  } else if (is.numeric(features) && is.null(dim(features)) && !is.object(features)) {
    if (anyNA(features) || any(features != round(features)) || any(features < 1) ||
          any(features > p)) {
      abort("`features` as row numbers must be whole numbers from 1 to %d, not %s.", p,
            describe(features))
    }
    index <- as.integer(features)
  } else {
    abort(paste0("`features` must be NULL, a number of features, or the features' names, ",
                 "row numbers or a logical vector, not %s."), describe(features))
  }
  if (anyDuplicated(index)) abort("`features` must not name a feature twice.")
  if (length(index) < 2L) {
    abort("`features` must select at least 2 features to rank, not %d.", length(index))
  }
  index
}

# The row numbers (in increasing order) of the n features of largest variance
# across the samples of x (missing values left out); ties go to the first rows.
variable_features <- function(x, n) {
  v <- row_variance(x)
  v[is.na(v)] <- -Inf
  sort(order(v, decreasing = TRUE, method = "radix")[seq_len(n)])
}

row_variance <- function(x) {
  if (is_block_input(x)) {
    need_package("DelayedArray", "`features` with a block input")
    x <- DelayedArray::DelayedArray(x)
    row_sums <- DelayedArray::rowSums
  } else {
    row_sums <- rowSums
  }
  observed <- row_sums(!is.na(x))
  centre <- row_sums(x, na.rm = TRUE) / observed
  ss <- row_sums((x - centre)^2, na.rm = TRUE)
  ifelse(observed >= 2, ss / (observed - 1), NA_real_)
}

# The kernel matrix `out` with the selected features as an attribute, checked
# for a near-constant matrix when it is the kernel between the samples of x.
finish_features <- function(out, sel, symmetric, what, lambda = NULL, centre = FALSE,
                            top_lists = FALSE) {
  if (is.null(dim(out))) return(out)
  if (symmetric) {
    check_near_constant_kernel(out, what, lambda, spread_limit = if (top_lists) {
      near_constant_top_list_spread
    } else {
      near_constant_kernel_spread
    })
  }
  if (!isFALSE(centre)) out <- centre_kernel(out, centre)
  if (!is.null(sel$features)) attr(out, "features") <- sel$features
  out
}

# `centre`: FALSE, TRUE (the kernel between the samples of x) or a centred
# training kernel (the cross-kernel against all its samples, y).
check_centre <- function(centre, y) {
  if (isFALSE(centre)) return(invisible())
  if (isTRUE(centre)) {
    if (!is.null(y)) {
      abort(paste0("With `y`, `centre` must be the centred kernel of the training samples `y` ",
                   "(kernel(y, centre = TRUE)), not TRUE."))
    }
    return(invisible())
  }
  if (is.null(attr(centre, "centring")) || is.null(dim(centre))) {
    abort("`centre` must be TRUE, FALSE or a kernel matrix computed with centre = TRUE, not %s.",
          describe(centre))
  }
  if (is.null(y)) {
    abort("`centre` as a centred training kernel needs `y`: the training samples it was computed on.")
  }
  invisible()
}

# The kernel centred in feature space, K(x, x') - mean_j K(x, x_j) -
# mean_i K(x_i, x') + mean_ij K(x_i, x_j) over the training samples x_i
# (H K H, H = I - 11'/n, for the kernel between them: still positive
# semidefinite), with the training means as the attribute "centring".
centre_kernel <- function(out, centre) {
  m <- out[, , drop = FALSE]
  if (anyNA(m)) abort("`centre` needs a kernel matrix without undefined (NA) values.")
  if (isTRUE(centre)) {
    means <- colMeans(m)
    grand <- mean(means)
    k <- sweep(sweep(m, 1L, means), 2L, means) + grand
    k <- (k + t(k)) / 2
  } else {
    stats <- attr(centre, "centring")
    if (length(stats$means) != ncol(m)) {
      abort(paste0("`centre` was centred on %d training samples, but `y` has %d: the ",
                   "cross-kernel must be against all the training samples."),
            length(stats$means), ncol(m))
    }
    if (!is.null(names(stats$means)) && !is.null(colnames(m)) &&
          !identical(names(stats$means), colnames(m))) {
      abort("`y` must hold the training samples `centre` was centred on, in the same order.")
    }
    k <- sweep(sweep(m, 1L, rowMeans(m)), 2L, stats$means) + stats$mean
    means <- stats$means
    grand <- stats$mean
  }
  dimnames(k) <- dimnames(m)
  k <- as_kernel_matrix(k)
  attr(k, "centring") <- list(means = means, mean = grand)
  k
}

# A kernel matrix whose off-diagonal values vary by less than this fraction
# of its diagonal is reported: the Kendall kernel of pure noise on p features
# has an off-diagonal standard deviation of about 0.67 / sqrt(p) (0.021 for
# p = 1,000, 0.006 for 12,625), that of the 12,625 probe sets of the ALL
# arrays 0.035, that of their 500 to 2,000 most variable ones 0.065 to 0.10.
near_constant_kernel_spread <- 0.05

# The same for the kernels of top-k lists (type = "topk"), whose values vary
# less by construction: most pairs of features compare a top feature with a
# bottom one, and most expressed genes are in every list. On the 12,625 probe
# sets of the ALL arrays, the Kendall kernels of the top 100 to 2,000 have a
# standard deviation of 0.044 to 0.051 and an SVM on them tells B from T
# cells right for 0.95 to 1.00 of the samples at C = 10; on noise, 0.009 for
# any k from 100 to 2,000.
near_constant_top_list_spread <- 0.025

check_near_constant_kernel <- function(k, what, lambda = NULL,
                                       spread_limit = near_constant_kernel_spread) {
  n <- nrow(k)
  if (n < 3L) return(invisible(FALSE))
  m <- k[, , drop = FALSE]
  if (!is.null(lambda)) {
    # The Mallows kernel exp(-lambda d) is judged on 1 - 2 d, Kendall's tau
    # without ties, so that the rule does not depend on lambda.
    if (lambda <= 0) return(invisible(FALSE))
    m <- 1 + 2 * log(m) / lambda
  }
  level <- mean(abs(diag(m)), na.rm = TRUE)
  off <- m[upper.tri(m)]
  off <- off[is.finite(off)]
  if (length(off) < 3L) return(invisible(FALSE))
  spread <- stats::sd(off)
  if (!is.finite(level) || level <= 0 || !is.finite(spread) ||
        spread >= spread_limit * level) {
    return(invisible(FALSE))
  }
  message <- sprintf(paste0(
    "The %s matrix is nearly constant: its off-diagonal values have a standard deviation ",
    "of %s, below %s%% of its diagonal (%s): all samples look about equally alike. Either ",
    "they order most pairs of features the same way, as on whole expression arrays (keep ",
    "the most variable features, e.g. `features = 1000`), or the features carry no signal."),
    what, format(signif(spread, 2)), format(100 * spread_limit),
    format(signif(level, 3)))
  warning(structure(class = c("diffrank_near_constant_kernel", "warning", "condition"),
                    list(message = message, call = NULL)))
  invisible(TRUE)
}
