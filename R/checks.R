# Argument checks shared by every exported function. Messages name the
# argument and say what was expected and what was given.

# Errors name the user's call to the exported function (not the internal
# helper that found the problem), as R's own errors do.
abort <- function(fmt, ...) {
  stop(simpleError(sprintf(fmt, ...), call = exported_caller()))
}

exported_caller <- function() {
  exports <- getNamespaceExports("diffrank")
  for (call in sys.calls()) {
    fun <- call[[1L]]
    if (is.call(fun) && identical(fun[[1L]], as.name("::"))) fun <- fun[[3L]]
    if (is.name(fun) && as.character(fun) %in% exports) return(call)
  }
  NULL
}

# One of `choices` (the first when `x` is the whole default vector), or an
# error naming the argument and the choices.
match_choice <- function(x, choices, arg) {
  if (identical(x, choices)) return(choices[1L])
  if (!is.character(x) || length(x) != 1L || is.na(x) || !(x %in% choices)) {
    abort("`%s` must be one of %s, not %s.", arg, paste0("\"", choices, "\"", collapse = ", "),
          describe(x))
  }
  x
}

describe <- function(x) {
  if (is.null(x)) return("NULL")
  if (is.data.frame(x)) return(sprintf("a data frame with %d columns", ncol(x)))
  if (is.factor(x)) return("a factor")
  # Objects (Date, POSIXct, difftime, ts, ...) are described by their class,
  # not by the vector they are stored in.
  if (is.object(x)) {
    return(sprintf("an object of class \"%s\"", paste(class(x), collapse = "/")))
  }
  if (is.matrix(x)) return(sprintf("a %s matrix (%d x %d)", typeof(x), nrow(x), ncol(x)))
  if (is.atomic(x) && length(x) == 1L) {
    return(if (is.character(x)) sprintf("\"%s\"", x) else format(x))
  }
  if (is.atomic(x)) return(sprintf("a %s vector of length %d", typeof(x), length(x)))
  sprintf("an object of class \"%s\"", class(x)[1L])
}

check_number <- function(x, arg, lower = -Inf, upper = Inf,
                         allow_lower = TRUE, allow_inf = FALSE) {
  ok <- is.numeric(x) && length(x) == 1L && !is.na(x) &&
    (allow_inf || is.finite(x)) && x <= upper &&
    (if (allow_lower) x >= lower else x > lower)
  if (!ok) {
    bound <- c(if (is.finite(lower)) sprintf("%s %s", if (allow_lower) ">=" else ">", format(lower)),
               if (is.finite(upper)) sprintf("<= %s", format(upper)))
    bound <- if (length(bound)) paste0(" ", paste(bound, collapse = " and ")) else ""
    abort("`%s` must be a single %snumber%s, not %s.", arg,
          if (allow_inf) "" else "finite ", bound, describe(x))
  }
  as.double(x)
}

# A whole number from lower to upper, as an integer; the default upper bound is
# the largest R integer, so that the conversion never gives NA.
check_whole <- function(x, arg, lower = 1, upper = .Machine$integer.max) {
  if (!is.numeric(x) || length(x) != 1L || is.na(x) || !is.finite(x) || x < lower ||
      x > upper || x != round(x)) {
    abort("`%s` must be a whole number from %s to %s, not %s.", arg, format(lower),
          format(upper, scientific = FALSE), describe(x))
  }
  as.integer(x)
}

# A finite numeric vector (a one-column matrix is taken as its column), as
# double with its names.
check_numeric_vector <- function(x, arg) {
  if (is.matrix(x) && ncol(x) == 1L) x <- stats::setNames(x[, 1L], rownames(x))
  if (!(is.numeric(x) || is.logical(x)) || is.object(x) || !is.null(dim(x))) {
    abort("`%s` must be a numeric vector, not %s.", arg, describe(x))
  }
  if (anyNA(x) || any(is.infinite(x))) abort("`%s` must contain only finite values.", arg)
  if (storage.mode(x) != "double") storage.mode(x) <- "double"
  x
}

# The most memory one call may allocate: the option diffrank.memory_limit in
# bytes (its former name, diffrank.dense_limit, is still read), 4 GB when
# unset. Size arguments are checked against it before anything is allocated:
# a typo such as `n_targets = 1e9` must be an error, not the OOM killer
# ending the user's session.
memory_limit <- function() {
  limit <- getOption("diffrank.memory_limit", getOption("diffrank.dense_limit", 4e9))
  check_number(limit, "getOption(\"diffrank.memory_limit\")", lower = 0, allow_inf = TRUE)
}

format_bytes <- function(bytes) {
  units <- c("bytes", "KB", "MB", "GB", "TB", "PB")
  k <- max(0, min(5, floor(log(max(bytes, 1), 1000))))
  sprintf("%.3g %s", bytes / 1000^k, units[k + 1L])
}

# An error naming the size argument when the work it asks for would take more
# than memory_limit(); `bytes` is computed in double precision by the caller
# (an estimate of the buffers the call allocates).
check_memory <- function(bytes, arg, value) {
  limit <- memory_limit()
  if (is.finite(bytes) && bytes <= limit) return(invisible())
  abort(paste0("`%s` = %s would need about %s of memory, more than the limit of %s: ",
               "give a smaller `%s`, or raise the limit with options(diffrank.memory_limit = <bytes>)."),
        arg, format(value, scientific = FALSE, big.mark = ","), format_bytes(bytes),
        format_bytes(limit), arg)
}

# diffrank takes features in rows and samples in columns. An input with far
# more columns than rows is most often samples in rows (t() of an expression
# matrix): a message (class diffrank_orientation) says how it is read, since
# such data can also be legitimate (a few items ranked by many judges).
note_orientation <- function(x, arg = "x") {
  d <- dim(x)
  if (length(d) != 2L || d[2L] < 200 || d[2L] < 4 * d[1L]) return(invisible())
  message(structure(class = c("diffrank_orientation", "message", "condition"), list(
    message = sprintf(paste0("`%s` has %s rows and %s columns: it is read as %s samples (columns) ",
                             "of %s features (rows). If its samples are in rows, pass t(%s).\n"),
                      arg, big(d[1L]), big(d[2L]), big(d[2L]), big(d[1L]), arg),
    call = exported_caller())))
}

# For an error about new data that lack the features of a fit: a hint when
# the new data's column names are the fit's features (transposed data).
transposed_hint <- function(m, features, arg = "newdata") {
  if (!is.character(features) || is.null(colnames(m)) || !any(colnames(m) %in% features)) return("")
  sprintf(" Its column names are features of the fit: it looks transposed (features go in rows); pass t(%s).",
          arg)
}

check_flag <- function(x, arg) {
  if (!is.logical(x) || length(x) != 1L || is.na(x)) {
    abort("`%s` must be TRUE or FALSE, not %s.", arg, describe(x))
  }
  x
}

# Coerces a numeric vector, matrix, time series or all-numeric data frame to a
# double matrix, keeping dimnames; R copies only when the storage mode changes, so
# the caller's object is never modified.
as_numeric_matrix <- function(x, arg = "x") {
  if (isS4(x) && methods::is(x, "eSet")) {
    abort(paste0("`%s` is an ExpressionSet: pass its expression matrix, `Biobase::exprs(%s)`, or ",
                 "convert it with `SummarizedExperiment::makeSummarizedExperimentFromExpressionSet()` ",
                 "(whose colData columns can then name the labels)."), arg, arg)
  }
  if (stats::is.ts(x) && (is.numeric(x) || is.logical(x))) {
    # a time series is taken as its values (one column per series)
    x <- if (is.matrix(x)) matrix(as.vector(x), nrow(x), dimnames = dimnames(x)) else as.vector(x)
  }
  if (is.data.frame(x)) {
    numeric_cols <- vapply(x, function(col) is.numeric(col) || is.logical(col), logical(1))
    if (!all(numeric_cols)) {
      abort("`%s` must have only numeric columns; column %s is %s.", arg,
            names(x)[which(!numeric_cols)[1L]], describe(x[[which(!numeric_cols)[1L]]]))
    }
    x <- as.matrix(x)
  }
  if (!(is.numeric(x) || is.logical(x)) || is.object(x) && !is.matrix(x)) {
    abort("`%s` must be a numeric vector, matrix or data frame, not %s.", arg, describe(x))
  }
  if (is.null(dim(x))) {
    x <- matrix(x, ncol = 1L, dimnames = list(names(x), NULL))
  } else if (length(dim(x)) != 2L) {
    abort("`%s` must have two dimensions, not %d.", arg, length(dim(x)))
  }
  if (storage.mode(x) != "double") storage.mode(x) <- "double"
  x
}

# Every S3 method and function with `...` rejects what it does not use, so
# that a misspelt or misplaced argument is never silently ignored.
check_dots_empty <- function(...) {
  n <- ...length()
  if (n == 0L) return(invisible())
  labels <- names(substitute(list(...)))[-1L]
  if (is.null(labels)) labels <- rep("", n)
  labels <- ifelse(nzchar(labels), sprintf("`%s`", labels), "an unnamed value")
  abort("Unknown argument%s %s: check the spelling (the function does not use %s).",
        if (n > 1L) "s" else "", paste(labels, collapse = ", "), if (n > 1L) "them" else "it")
}

# Arguments renamed for the package's one vocabulary (?diffrank, section
# Vocabulary) are accepted under their former name for one release: when
# the caller's `dots` (list(...)) hold `old`, its value is assigned to `new`
# in the calling function's frame `env`, with a warning of class
# "diffrank_deprecated"; giving both names is an error. Returns `dots`
# without `old`, for the caller's own check of what is left (for example
# do.call(check_dots_empty, rest)). `fun` names the function, e.g.
# "fy_loss()".
take_renamed <- function(dots, old, new, fun, env = parent.frame()) {
  if (!old %in% names(dots)) return(dots)
  if (!eval(call("missing", as.name(new)), env)) {
    abort("Give `%s` only: `%s` is its former name.", new, old)
  }
  warning(warningCondition(
    sprintf("The argument `%s` of %s is now called `%s`; `%s` will stop working in the next release.",
            old, fun, new, old),
    class = c("diffrank_deprecated", "deprecatedWarning"), call = NULL))
  assign(new, dots[[old]], envir = env)
  dots[names(dots) != old]
}

# check_dots_empty() for the fits that need their data whole in memory
# (qmf(), cv_suquan(), rank_regression()): they realize a block input `x`
# (realize_block_input()), so the block arguments of ?diffrank_blocks given
# to them are an error that says why, not the generic unknown argument.
# `fun` names the function, e.g. "qmf()".
check_dots_whole <- function(fun, ...) {
  block_args <- intersect(c("BPPARAM", "filepath"), names(substitute(list(...)))[-1L])
  if (length(block_args) > 0L) {
    abort(paste0("%s fits its data whole in memory and has no %s: a DelayedMatrix `x` is ",
                 "realized as an ordinary matrix (within option diffrank.memory_limit); ",
                 "see ?diffrank_blocks."),
          fun, paste0("`", block_args, "`", collapse = " or "))
  }
  check_dots_empty(...)
}

# One rule for every smoothed operator (soft, Sinkhorn and perturbed ranks and
# sorts, QMF's maps): a result whose spread in some column is below
# `near_constant_fraction` of the spread of the hard (eps = 0) result is at
# its eps -> Inf limit, and the user is told so. `value` and `reference` are
# vectors or matrices of the same number of columns (one vector per column);
# columns whose reference has no spread are not judged.
near_constant_fraction <- 0.01

warn_near_constant <- function(value, reference, what, eps, unit = "column") {
  value <- as.matrix(value)
  reference <- as.matrix(reference)
  spread <- function(m) apply(m, 2L, function(v) if (length(v) > 1L) stats::sd(v) else 0)
  s <- spread(value)
  r <- spread(reference)
  n_bad <- sum(r > 0 & s < near_constant_fraction * r, na.rm = TRUE)
  warn_near_constant_count(n_bad, ncol(value), what, eps, unit)
}

# The warning itself, for callers that counted the columns in C++; a condition
# of class "diffrank_near_constant" that carries its counts, so that a pass
# over blocks can add them up and warn once.
warn_near_constant_count <- function(n_bad, n_col, what, eps, unit = "column") {
  if (isTRUE(n_bad > 0L)) {
    message <- sprintf(paste0(
      "The %s is nearly constant in %d of %d %s(s) (its spread is below %s%% of the ",
      "hard result's): eps = %s is large for these data. Use a smaller `eps`."),
      what, n_bad, n_col, unit, format(100 * near_constant_fraction), format(eps))
    warning(structure(class = c("diffrank_near_constant", "warning", "condition"),
                      list(message = message, call = NULL, n_bad = n_bad, n_col = n_col,
                           what = what, eps = eps, unit = unit)))
  }
  invisible(n_bad)
}

# A result with non-finite entries computed from finite inputs means that an
# intermediate left the double range (values or cotangents near 1e308, or
# subnormal spreads): a warning (class diffrank_overflow) that names the
# inputs to rescale, never a silent Inf or NaN. `inputs` is a character vector
# of argument names.
warn_nonfinite <- function(value, inputs) {
  n_bad <- sum(!is.finite(value))
  if (n_bad == 0L) return(invisible(value))
  message <- sprintf(paste0(
    "%d of %d entries of the result are not finite: an intermediate left the range of ",
    "double precision. Rescale %s (for example divide by a power of two) and scale the result back."),
    n_bad, length(value), paste0("`", inputs, "`", collapse = " or "))
  warning(structure(class = c("diffrank_overflow", "warning", "condition"),
                    list(message = message, call = exported_caller(), n_bad = n_bad)))
  invisible(value)
}

# An exported function that hands a caller's argument to another export under
# that export's name (predict(target, newdata) normalizes `x = newdata`;
# support_kernel() calls kernel(x = newdata, y = train)) must still name the
# caller's argument in its errors, warnings and messages. `names` maps the
# inner names to the caller's, e.g. c(x = "newdata").
with_arg_names <- function(expr, names) {
  rename <- function(cond) {
    msg <- conditionMessage(cond)
    for (from in names(names)) {
      msg <- gsub(sprintf("`%s`", from), sprintf("`%s`", names[[from]]), msg, fixed = TRUE)
      msg <- gsub(sprintf("t(%s)", from), sprintf("t(%s)", names[[from]]), msg, fixed = TRUE)
    }
    cond$message <- msg
    cond
  }
  withCallingHandlers(
    tryCatch(expr, error = function(e) stop(rename(e))),
    warning = function(w) {
      warning(rename(w))
      invokeRestart("muffleWarning")
    },
    message = function(m) {
      message(rename(m))
      invokeRestart("muffleMessage")
    })
}

# A derivative product is linear in its direction: a direction beyond 2^+-256
# is scaled into range by a power of two before the product and the result
# scaled back (exact; other directions take the unchanged path), so that a
# cotangent near 1e308 does not overflow inside. What is still not finite is
# warned (naming `inputs`).
product_in_range <- function(product, direction, inputs) {
  largest <- if (length(direction)) max(abs(direction)) else 0
  if (is.finite(largest) && largest > 0 && (largest > 2^256 || largest < 2^-256)) {
    unit <- 2^floor(log2(largest))
    out <- product(direction / unit) * unit
  } else {
    out <- product(direction)
  }
  warn_nonfinite(out, inputs)
}
