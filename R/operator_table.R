# The differentiable operators of the package, one row each. A row gives the
# operator's family, its kind within the family and its arguments after `x`
# with their defaults; its user-facing forms <op>(), <op>_fn() and <op>_vjp()
# are made from the row by operator_form(), so the three share one argument
# list and one body. CONTRIBUTING.md lists the steps of a new operator, and
# tests/testthat/test-operators.R runs the contract checks of
# helper-operators.R on every row.
#
# A family (operator_families) names the functions of its R glue:
# * build(kind, x = x, <args>): checks the arguments, runs the forward pass
#   and returns the diffrank_operator (R/operator.R);
# * value(kind, x = x, <args>) and vjp(kind, x = x, v = v, <args>), optional:
#   one-call paths that keep no state and give the same results as
#   build(...)$value and build(...)$vjp(v). Without them the forms call build.
operator_families <- list(
  soft = list(build = "soft_operator", value = "soft_forward", vjp = "soft_vjp"),
  sinkhorn = list(build = "sinkhorn_operator"),
  sinkhorn_plan = list(build = "sinkhorn_plan_operator"),
  perturbed = list(build = "perturbed_build", vjp = "perturbed_build_vjp"),
  birkhoff = list(build = "birkhoff_operator"),
  network = list(build = "network_operator")
)

# The arguments every Sinkhorn operator ends with.
sinkhorn_solver_args <- alist(scale = c("squash", "none"), power = 2, tol = 1e-6,
                              max_iter = 1000L, threads = diffrank_threads(),
                              progress = interactive())
sinkhorn_grid_args <- c(alist(eps = 0.01, n_targets = NULL, weights = NULL,
                              target_weights = NULL, decreasing = FALSE),
                        sinkhorn_solver_args)

# The arguments of the L2 Birkhoff projections (R/permutation_birkhoff.R): those of the
# Sinkhorn plan, with a Newton solver's tolerance and iterations.
birkhoff_args <- alist(eps = 1e-4, n_targets = NULL, weights = NULL, target_weights = NULL,
                       decreasing = FALSE, scale = c("squash", "none"), power = 2, tol = 1e-9,
                       max_iter = 100L, threads = diffrank_threads())
# The arguments of the sorting networks (R/sorting_network.R).
network_args <- alist(eps = 0.25, network = c("bitonic", "odd_even"),
                      relaxation = c("logistic", "cauchy"), decreasing = FALSE,
                      scale = c("spacing", "sd", "none"), threads = diffrank_threads())

# `forms`: the forms made from the row; the others are written by hand (with
# the same arguments, which test-operators.R checks): sinkhorn_normalize() is
# a generic with methods for Bioconductor containers, and perturbed() keeps
# the deprecated call of diffrank 0.x.
operator_row <- function(family, kind, args, forms = c("value", "fn", "vjp")) {
  list(family = family, kind = kind, args = args, forms = forms)
}

operator_table <- list(
  soft_rank = operator_row("soft", "rank", alist(
    eps = 0.5, reg = c("l2", "kl"), decreasing = FALSE,
    scale = c("local", "spacing", "sd", "none"), threads = diffrank_threads())),
  soft_sort = operator_row("soft", "sort", alist(
    eps = 0.01, reg = c("l2", "kl"), decreasing = FALSE, scale = c("spacing", "sd", "none"),
    threads = diffrank_threads())),
  sinkhorn_rank = operator_row("sinkhorn", "rank", sinkhorn_grid_args),
  sinkhorn_cdf = operator_row("sinkhorn", "cdf", sinkhorn_grid_args),
  sinkhorn_sort = operator_row("sinkhorn", "sort", sinkhorn_grid_args),
  sinkhorn_plan = operator_row("sinkhorn", "plan", sinkhorn_grid_args),
  sinkhorn_sort_by = operator_row("sinkhorn_plan", "sort_by", c(alist(by = ), sinkhorn_grid_args)),
  sinkhorn_quantize = operator_row("sinkhorn_plan", "quantize", c(
    alist(n_targets = 4, eps = 0.01, weights = NULL, target_weights = NULL), sinkhorn_solver_args)),
  sinkhorn_quantile = operator_row("sinkhorn", "quantile", c(
    alist(probs = 0.5, width = 0.05, eps = 0.01, weights = NULL), sinkhorn_solver_args)),
  soft_topk = operator_row("sinkhorn", "topk", c(
    alist(k = , eps = 0.01, weights = NULL), sinkhorn_solver_args)),
  sinkhorn_normalize = operator_row("sinkhorn", "normalize", c(
    alist(target = NULL, eps = 0.01, weights = NULL, target_weights = NULL),
    sinkhorn_solver_args), forms = c("fn", "vjp")),
  birkhoff_plan = operator_row("birkhoff", "plan", birkhoff_args),
  birkhoff_rank = operator_row("birkhoff", "rank", birkhoff_args),
  birkhoff_sort = operator_row("birkhoff", "sort", birkhoff_args),
  network_sort = operator_row("network", "sort", network_args),
  network_rank = operator_row("network", "rank", network_args),
  network_plan = operator_row("network", "plan", network_args),
  perturbed = operator_row("perturbed", NULL, alist(
    solver = , eps = 1, n_samples = 100, noise = c("normal", "gumbel"), antithetic = TRUE,
    ... = , threads = diffrank_threads()), forms = c("fn", "vjp"))
)

# The formals of an operator's form: x, then v for the one-call VJP, then
# the row's arguments.
operator_formals <- function(row, form) {
  c(alist(x = ), if (form == "vjp") alist(v = ), row$args)
}

# The function <name>() (form "value"), <name>_fn() or <name>_vjp() of a row
# of `table`, defined in `env` (the namespace when the package is built). Its
# body is the call the hand-written wrapper would make, for example
#   sinkhorn_operator("rank", x = x, eps = eps, ...)$vjp(v)
# so that printing the function shows what it does. An argument without a
# default other than x and v (`k` of soft_topk()) is passed as NULL when
# missing, for the builder to report.
operator_form <- function(name, form, table = operator_table, families = operator_families,
                          env = parent.frame()) {
  row <- table[[name]]
  family <- families[[row$family]]
  passed <- lapply(names(row$args), function(arg) {
    if (arg == "...") return(quote(...))
    sym <- as.symbol(arg)
    if (identical(row$args[[arg]], quote(expr = ))) bquote(if (!missing(.(sym))) .(sym)) else sym
  })
  names(passed) <- ifelse(names(row$args) == "...", "", names(row$args))
  call_of <- function(fun, extra = list()) {
    as.call(c(list(as.symbol(fun)), if (!is.null(row$kind)) list(row$kind),
              list(x = quote(x)), extra, passed))
  }
  body <- switch(form,
    value = if (is.null(family$value)) {
      call("$", call_of(family$build), quote(value))
    } else {
      call_of(family$value)
    },
    fn = call_of(family$build),
    vjp = if (is.null(family$vjp)) {
      as.call(list(call("$", call_of(family$build), quote(vjp)), quote(v)))
    } else {
      call_of(family$vjp, list(v = quote(v)))
    })
  f <- function() NULL
  formals(f) <- operator_formals(row, form)
  body(f) <- body
  environment(f) <- env
  f
}
