# Every differentiable operator checked through the same contract
# (helper-operators.R), one example row per operator of the package's table
# (R/operator_table.R) in operator_examples().

test_that("every operator of the table follows the operator contract", {
  examples <- operator_examples()
  expect_setequal(names(examples), names(operator_table))
  for (name in names(operator_table)) {
    expect_gt(length(examples[[name]]), 0L)
    for (example in examples[[name]]) expect_operator_row(name, example)
  }
})

# The three forms of every row exist with the row's arguments: generated
# forms are the table's own functions, and the forms written by hand (a
# generic, a deprecated call) keep the same arguments.
test_that("the forms of every operator come from its row of the table", {
  ns <- asNamespace("diffrank")
  exports <- getNamespaceExports("diffrank")
  for (name in names(operator_table)) {
    row <- operator_table[[name]]
    for (form in c("value", "fn", "vjp")) {
      fname <- paste0(name, switch(form, value = "", fn = "_fn", vjp = "_vjp"))
      expect_true(fname %in% exports, label = fname)
      f <- get(fname, ns)
      if (form %in% row$forms) {
        expect_identical(f, operator_form(name, form, env = ns), label = fname)
      } else if (form == "value" && name == "sinkhorn_normalize") {
        default <- formals(get("sinkhorn_normalize.default", ns))
        expect_identical(as.list(default)[names(row$args)], row$args, label = fname)
      } else {
        expect_identical(as.list(formals(f)), operator_formals(row, form), label = fname)
      }
    }
  }
  # every operator object the package exports is a row
  fn_forms <- sub("_fn$", "", grep("_fn$", exports, value = TRUE))
  expect_setequal(fn_forms, names(operator_table))
})

# The steps of CONTRIBUTING.md, taken for a toy family defined here (the
# softplus eps * log(1 + exp(x / eps)), elementwise): one builder, one table
# row, one example; the generated forms pass the contract checks.
test_that("a toy operator added by the steps of CONTRIBUTING.md passes the contract", {
  toy_build <- function(kind, x, eps = 1, threads = diffrank_threads()) {
    m <- as_numeric_matrix(x, "x")
    shape <- input_shape(x, m)
    eps <- check_number(eps, "eps", lower = 0, allow_lower = FALSE)
    check_threads(threads)
    slope <- stats::plogis(m / eps)
    new_operator(
      value = shape_like_input(eps * log1p(exp(m / eps)), shape),
      input = shape,
      vjp_impl = function(v, wrt) list(x = shape_like_input(slope * v, shape)),
      jvp_impl = function(u) shape_like_input(slope * u, shape),
      label = sprintf("toy_%s", kind), settings = list(eps = eps))
  }
  table <- list(toy_softplus = operator_row("toy", "softplus",
                                            alist(eps = 1, threads = diffrank_threads())))
  families <- list(toy = list(build = "toy_build"))
  env <- environment()
  toy_softplus <- operator_form("toy_softplus", "value", table, families, env)
  toy_softplus_fn <- operator_form("toy_softplus", "fn", table, families, env)
  toy_softplus_vjp <- operator_form("toy_softplus", "vjp", table, families, env)
  expect_identical(names(formals(toy_softplus_vjp)), c("x", "v", "eps", "threads"))
  expect_operator_row("toy_softplus", operator_example(c(-1, 0.2, 3), list(eps = 0.5)), env)
  # and a wrong derivative is caught
  toy_build <- function(kind, x, eps = 1, threads = 1L) {
    op <- new_operator(
      value = eps * log1p(exp(x / eps)), input = input_shape(x, as.matrix(x)),
      vjp_impl = function(v, wrt) list(x = v), label = "toy_wrong")
    op
  }
  failed <- character()
  withCallingHandlers(
    expect_operator_row("toy_softplus", operator_example(c(-1, 0.2, 3), list(eps = 0.5)), env),
    expectation_failure = function(e) {
      failed <<- c(failed, conditionMessage(e))
      invokeRestart("continue_test")
    })
  expect_match(failed, "vjp vs finite differences", all = FALSE)
})

test_that("an operator's state does not survive saveRDS()", {
  op <- soft_rank_fn(c(0.1, 0.5, 0.3))
  path <- tempfile(fileext = ".rds")
  saveRDS(op, path)
  back <- readRDS(path)
  expect_identical(back$value, op$value)
  expect_error(back$vjp(c(1, 0, 0)), "saved and reloaded")
  op <- sinkhorn_rank_fn(c(0.1, 0.5, 0.3))
  saveRDS(op, path)
  expect_error(readRDS(path)$vjp(c(1, 0, 0)), "saved and reloaded")
})

test_that("a Sinkhorn value can serve as a direction", {
  op <- sinkhorn_rank_fn(c(0.3, 1.2, 1.25, -0.7), eps = 0.05)
  expect_equal(op$vjp(op$value), op$vjp(as.vector(op$value)))
})

# The help pages say what is true of themselves: formulas have a plain-text
# form (text help renders a one-argument \eqn{} or \deqn{} as raw LaTeX, such
# as "lambda<=ft("), every "see the section X" names a section of the page
# (or of the page it names), and every argument named in "when `arg` is
# NULL" (TRUE, FALSE, given) is an argument of the page.
test_that("help pages render formulas as text and refer to what they contain", {
  skip_on_cran()
  db <- tools::Rd_db("diffrank")
  pages <- c("perturbed.Rd", "fy_loss.Rd", "rank_regression.Rd", "soft_topk_loss.Rd", "qmf.Rd",
             "qmf-methods.Rd", "sinkhorn_rank.Rd", "sinkhorn_rank_fn.Rd",
             "sinkhorn_normalize.Rd", "soft_quantile_loss.Rd", "normalize_quantiles_groups.Rd",
             "qsmooth_weights.Rd", "normalize_quantiles_robust.Rd", "robust_weights.Rd",
             "diffrank_operator.Rd", "soft_rank.Rd", "soft_rank_fn.Rd", "spearman_loss.Rd",
             "plot_soft_path.Rd", "suquan.Rd", "cv_suquan.Rd", "quantile_target.Rd",
             "plot_qsmooth_weights.Rd", "rank_svm.Rd")
  expect_true(all(pages %in% names(db)))
  one_argument_formulas <- function(rd) {
    found <- character()
    walk <- function(x) {
      tag <- attr(x, "Rd_tag")
      if (!is.null(tag) && tag %in% c("\\eqn", "\\deqn") && length(x) < 2L) {
        found <<- c(found, paste(unlist(x), collapse = ""))
      }
      if (is.list(x)) for (e in x) walk(e)
    }
    walk(rd)
    found
  }
  tagged <- function(rd, tag) Filter(function(e) identical(attr(e, "Rd_tag"), tag), rd)
  for (page in pages) {
    rd <- db[[page]]
    expect_identical(one_argument_formulas(rd), character(), label = page)
    plain <- list(underline_titles = FALSE)
    text <- paste(utils::capture.output(tools::Rd2txt(rd, options = plain)), collapse = " ")
    text <- gsub("\\s+", " ", text)
    expect_false(grepl("<=ft|\\\\(frac|left|right|varepsilon|theta|lambda|langle)\\b", text),
                 label = page)
    sections <- vapply(tagged(rd, "\\section"), function(e) {
      paste(unlist(e[[1L]]), collapse = "")
    }, "")
    pattern <- "(?i)see the section [A-Z][A-Za-z -]*?[A-Za-z](?=[.,;:)]| of)( of)?"
    refs <- regmatches(text, gregexpr(pattern, text, perl = TRUE))[[1L]]
    own <- sub("(?i)see the section ", "", refs[!grepl(" of$", refs)], perl = TRUE)
    expect_true(all(own %in% sections), label = sprintf("%s: sections %s", page,
                                                        paste(own, collapse = ", ")))
    arguments <- unlist(lapply(tagged(tagged(rd, "\\arguments")[[1L]], "\\item"), function(e) {
      trimws(strsplit(paste(unlist(e[[1L]]), collapse = ""), ",")[[1L]])
    }))
    # (quotes are plain under testthat, curly in a UTF-8 session)
    named <- regmatches(text, gregexpr(
      "when ['\u2018][A-Za-z_.]+['\u2019] is (not )?['\u2018]?(NULL|TRUE|FALSE|given|missing)",
      text))[[1L]]
    named <- gsub("^when ['\u2018]|['\u2019] is .*$", "", named)
    expect_true(all(named %in% arguments), label = sprintf("%s: arguments %s", page,
                                                           paste(named, collapse = ", ")))
  }
})

# Arguments renamed for one vocabulary (?diffrank, section Vocabulary) still
# work under their former names for one release, with a warning; giving both
# names is an error.
test_that("renamed arguments are accepted under their former names, with a warning", {
  set.seed(3)
  pred <- rnorm(20)
  response <- pred + rnorm(20, sd = 0.1)
  expect_warning(old <- soft_quantile_loss(pred, response, tau = 0.3),
                 "`tau` of soft_quantile_loss\\(\\) is now called `probs`",
                 class = "diffrank_deprecated")
  expect_identical(old, soft_quantile_loss(pred, response, probs = 0.3))
  expect_error(soft_quantile_loss(pred, response, probs = 0.3, tau = 0.3), "Give `probs` only")
  expect_error(soft_quantile_loss(pred, response, tua = 0.3), "Unknown argument `tua`")
  ranks <- rank(response)
  expect_warning(old <- withr::with_seed(1, fy_loss(pred, target = ranks, solver = "rank")),
                 class = "diffrank_deprecated")
  expect_identical(old, withr::with_seed(1, fy_loss(pred, ranks, "rank")))
  expect_error(fy_loss(pred, solver = "rank"), "`response` is missing")
  scores <- matrix(rnorm(12), 3)
  expect_warning(old <- soft_topk_loss(scores, labels = c(1, 2, 3, 1)),
                 class = "diffrank_deprecated")
  expect_identical(old, soft_topk_loss(scores, c(1, 2, 3, 1)))
  x <- matrix(rnorm(40), 4)
  r <- apply(matrix(rnorm(30), 3), 2, rank)
  expect_warning(old <- rank_regression(x, rankings = r, loss = "squared"),
                 class = "diffrank_deprecated")
  new <- rank_regression(x, r, loss = "squared")
  expect_identical(coef(old), coef(new))
  expect_warning(old <- summary(new, x, rankings = r), class = "diffrank_deprecated")
  expect_identical(old$spearman, summary(new, x, r)$spearman)
  m <- matrix(rexp(60), 20)
  expect_warning(old <- quantile_target(m, target_length = 7), class = "diffrank_deprecated")
  expect_identical(old$target, quantile_target(m, n_quantiles = 7)$target)
})

# The generics show the arguments of their default method (args(),
# completion, help usage), and their SummarizedExperiment methods take the
# same ones in the same order before their own (R/args_of_generics.R).
test_that("every generic has its default method's arguments, and so do its methods", {
  ns <- asNamespace("diffrank")
  exports <- getNamespaceExports("diffrank")
  generics <- exports[vapply(exports, function(f) {
    exists(paste0(f, ".default"), ns, inherits = FALSE)
  }, TRUE)]
  expect_gte(length(generics), 15L)
  for (g in generics) {
    default <- formals(get(paste0(g, ".default"), ns))
    expect_identical(formals(get(g, ns)), default, label = g)
    se <- paste0(g, ".SummarizedExperiment")
    if (exists(se, ns, inherits = FALSE)) {
      method <- names(formals(get(se, ns)))
      expect_identical(method[seq_along(default)], names(default), label = se)
      expect_true("assay.type" %in% method, label = se)
    }
  }
  expect_length(tools::checkS3methods(package = "diffrank"), 0L)
})

# One rule for the values of every family (?diffrank_operator, section
# Values): plain numbers; the Sinkhorn convergence figures describe the
# result they come with, not values derived from it.
test_that("values are plain, and derived Sinkhorn values drop the convergence figures", {
  x <- c(a = 0.3, b = 1.2, c = 1.25, d = -0.7)
  r <- sinkhorn_rank(x)
  expect_s3_class(r, "sinkhorn_result")
  expect_true(attr(r, "converged"))
  plain <- setNames(as.vector(r), names(x))
  for (derived in list(r * 2, 2 * r, -r, r + r, log(r), round(r, 2), r[1:4], exp(r) / r)) {
    expect_null(attr(derived, "converged"))
    expect_false(inherits(derived, "sinkhorn_result"))
    expect_identical(names(derived), names(x))
  }
  expect_identical(r * 2, plain * 2)
  expect_identical(log(r), log(plain))
  expect_identical(r > 2, plain > 2)
  expect_output(print(r * 2), "^ *a")
  expect_failure(expect_output(print(r * 2), "converged"))
  m <- sinkhorn_normalize(matrix(c(3, 1, 2, 5, 4, 6), 3, dimnames = list(NULL, c("s1", "s2"))))
  expect_identical(dim(m + 1), c(3L, 2L))
  expect_identical(dimnames(m + 1), list(NULL, c("s1", "s2")))
  expect_null(attr(m + 1, "iterations"))
  # the other families return plain values as they are
  expect_identical(attributes(soft_rank(x)), list(names = names(x)))
  expect_identical(attributes(withr::with_seed(1, perturbed(x, "rank", n_samples = 10))),
                   list(names = names(x)))
  expect_named(withr::with_seed(1, perturbed_fn(x, "rank", n_samples = 10))$diagnostics,
               "maximum")
})
