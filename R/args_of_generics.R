# The S3 generics of the package (normalize_quantiles(), qmf(), ...) show the
# arguments of their default method where users look (args(), completion,
# the usage of their help page), and every method takes them in the same
# order, as R CMD check asks of S3 methods. Each generic gets the default
# method's formals right after that method is defined:
#   formals(normalize_quantiles) <- formals(normalize_quantiles.default)
# and its SummarizedExperiment method is made by se_method(). (This file's
# name sorts before every file that calls se_method().)

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
