# The S3 generics of the package (normalize_quantiles(), qmf(), ...) show the
# arguments of their default method where users look (args(), completion,
# the usage of their help page), and every method takes them in the same
# order, as R CMD check asks of S3 methods. Each generic gets the default
# method's formals right after that method is defined:
#   formals(normalize_quantiles) <- formals(normalize_quantiles.default)
# and its SummarizedExperiment method is made by assay_method() (or, for
# the kernels and rank_svm(), by se_method() with a body of their own).
# (This file's name sorts before every file that calls them.)

# The SummarizedExperiment method of a generic whose default method is
# `default`: the default's formals (`...` last), then the method's own
# `extra` ones (assay.type, name), and the body `body_of(args)`, where `args`
# are the default's arguments other than x, each passed on by name as
# itself, and `...` last. Its body reads as a hand-written method would, for
# example
#   se_add_assay(x, name, normalize_quantiles.default(
#     se_assay(x, assay.type, blocks = TRUE), target = target, ..., ...))
se_method <- function(default, extra, body_of, env = parent.frame()) {
  fmls <- formals(default)
  stopifnot(identical(utils::tail(names(fmls), 1L), "..."))
  passed <- setdiff(names(fmls), c("x", "..."))
  args <- c(stats::setNames(lapply(passed, as.symbol), passed), list(quote(...)))
  f <- function() NULL
  formals(f) <- c(fmls, extra)
  body(f) <- body_of(args)
  environment(f) <- env
  f
}

# The SummarizedExperiment method of a kernel (R/kendall.R) whose default
# method is named `default`: the kernel of the assays of x, and of y when it
# is a SummarizedExperiment too (kernel_on_assays()).
kernel_se_method <- function(default, env = parent.frame()) {
  se_method(get(default, env), alist(assay.type = 1L), function(args) {
    args$y <- NULL
    bquote(kernel_on_assays(..(args), .kernel = .(as.symbol(default)), .x = x, .y = y,
                            .assay.type = assay.type), splice = TRUE)
  }, env)
}

# The usual SummarizedExperiment method: the default method named `default`
# on the assay `assay.type` (read block by block when it is a
# DelayedMatrix); the arguments named in `columns` may be a column of
# colData(x) (se_column()); with `name`, the result is added to x as the
# assay of that name.
assay_method <- function(default, name = NULL, columns = character(), env = parent.frame()) {
  extra <- c(alist(assay.type = 1L), if (!is.null(name)) list(name = name))
  se_method(get(default, env), extra, function(args) {
    for (column in columns) args[[column]] <- call("se_column", quote(x), as.symbol(column), column)
    result <- bquote(.(as.symbol(default))(se_assay(x, assay.type, blocks = TRUE), ..(args)),
                     splice = TRUE)
    if (is.null(name)) result else bquote(se_add_assay(x, name, .(result)))
  }, env)
}
