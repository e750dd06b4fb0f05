#' Aggregate several rankings into one
#'
#' Combines rankings of the same items by several judges, studies or
#' statistics (for example genes ranked by several tests, or by several
#' studies each reporting a top list) into one consensus ranking. Rankings may
#' have ties and missing items.
#'
#' @section Methods:
#' * `"borda"`: items by their mean rank (Borda 1781). Linear in the data: the
#'   choice for tens of thousands of items.
#' * `"copeland"`: items by their number of pairwise majority wins (half a
#'   win for a draw), ties broken by the Borda ranking (Copeland 1951).
#' * `"kemeny"`: the ranking that disagrees with the fewest pairwise
#'   preferences of the rankings (Kemeny 1959), the sum of its Kendall
#'   distances to them. Exact (a shortest path over the subsets of items,
#'   Held and Karp 1962's recursion) for at most 16 items; beyond, the Borda
#'   ranking improved by moving one item at a time to where it lowers the
#'   disagreement most, until no move does (locally optimal; the problem is
#'   NP-hard, Bartholdi et al. 1989).
#' * `"mallows"`: the maximum-likelihood centre of a Mallows model fitted to
#'   the rankings ([mallows_model()]), which is a Kemeny ranking (the same
#'   search), with the fitted model, whose dispersion `theta` says how
#'   strongly the rankings agree. The rankings must be complete or top-k
#'   lists (ranks 1 to k, the other items missing), the partial rankings
#'   whose likelihood is known in closed form.
#'
#' `"copeland"`, `"kemeny"` and `"mallows"` hold a table of the p x p pairwise
#' preferences (16 p^2 bytes while it is built) and take O(p^2) time per
#' ranking; the local search takes O(p^2) per pass over the items, and many
#' passes on long rankings: 4,000 items take about 5 s, 12,625 items (a
#' whole array) about 5 minutes. The default, `"auto"`, is therefore Kemeny
#' up to 2,000 items and Borda (linear) beyond; the result's `method` says
#' which.
#'
#' @section Missing items:
#' With `missing = "bottom"` (the default), an item missing from a ranking
#' counts as tied below every item it ranks: the reading of a top list (a
#' gene a study does not report is not among its top genes), and the one
#' under which the Mallows model's centre of top-k lists is the Kemeny
#' ranking. With `missing = "ignore"`, a ranking says nothing about the items
#' it misses: pairs with a missing item are left out, and the Borda score is
#' the mean of the normalized ranks `(rank - 1/2) / (items ranked)` over the
#' rankings that rank the item.
#'
#' @param x The rankings: a numeric matrix, items x rankings (one column per
#'   judge or study), smaller values ranked higher (1 for the top, as
#'   `rank(-score)` gives), ties allowed, `NA` for an item a ranking misses;
#'   or a list of character vectors, each the items of one ranking from the
#'   top (a gene list), the items it does not list missing. Row names (or the
#'   list's items) name the items.
#' @param method `"auto"` (the default: `"kemeny"` for at most 2,000
#'   items, `"borda"` beyond), `"kemeny"`, `"borda"`, `"copeland"` or
#'   `"mallows"`; see Methods.
#' @param missing How an item missing from a ranking counts: `"bottom"` (the
#'   default) or `"ignore"`; see Missing items.
#' @param weights `NULL` (every ranking counts once) or one weight >= 0 per
#'   ranking, for example a study's size.
#' @param threads Number of threads; see [diffrank_threads()]. The result does
#'   not depend on it.
#' @param ... Must be empty (an error names any argument given there).
#' @return An object of class `rank_aggregation`, a list with `method` (the
#'   method used), `ranking` (the
#'   consensus rank of each item, 1 for the top, without ties, named by item),
#'   `items` (the items from the top), `score` (the Borda mean rank, or the
#'   Copeland score, by item; `NULL` for Kemeny), `disagreement` (the summed
#'   weight of the pairwise preferences the consensus contradicts; `NA` for
#'   Borda beyond 2,000 items, where the table is not built), `exact`
#'   (whether the Kemeny ranking is the exact optimum), `model` (the
#'   [mallows_model()] fit for `"mallows"`), `missing`, `n_items`
#'   and `n_rankings`.
#' @references
#' Kemeny JG (1959). Mathematics without numbers. *Daedalus* 88, 577-591.
#'
#' Held M, Karp RM (1962). A dynamic programming approach to sequencing
#' problems. *Journal of the SIAM* 10(1), 196-210.
#'
#' Bartholdi J, Tovey CA, Trick MA (1989). Voting schemes for which it can be
#' difficult to tell who won the election. *Social Choice and Welfare* 6,
#' 157-165.
#'
#' Dwork C, Kumar R, Naor M, Sivakumar D (2001). Rank aggregation methods for
#' the web. *Proceedings of WWW10*, 613-622.
#' @seealso [mallows_model()]; [kendall_kernel()] to compare the rankings.
#' @export
#' @examples
#' # four studies' top lists of genes
#' lists <- list(c("TP53", "MYC", "EGFR", "KRAS"), c("MYC", "TP53", "KRAS"),
#'               c("TP53", "EGFR", "MYC", "PTEN"), c("MYC", "TP53", "PTEN", "EGFR"))
#' aggregate_rankings(lists)
#' aggregate_rankings(lists, method = "borda")$items
#'
#' # ranks of 5 items by 3 judges, with a tie and a missing item
#' r <- cbind(judge1 = c(1, 2, 3, 4, 5), judge2 = c(2, 1, 3, 3, NA),
#'            judge3 = c(1, 3, 2, 5, 4))
#' rownames(r) <- letters[1:5]
#' aggregate_rankings(r, method = "copeland")$ranking
aggregate_rankings <- function(x, method = c("auto", "kemeny", "borda", "copeland", "mallows"),
                               missing = c("bottom", "ignore"), weights = NULL,
                               threads = diffrank_threads(), ...) {
  check_dots_empty(...)
  method <- match_choice(method, c("auto", "kemeny", "borda", "copeland", "mallows"), "method")
  missing <- match_choice(missing, c("bottom", "ignore"), "missing")
  threads <- check_threads(threads)
  r <- rankings_matrix(x)
  weights <- check_ranking_weights(weights, ncol(r))
  p <- nrow(r)
  if (method == "auto") method <- if (p <= auto_kemeny_max_items) "kemeny" else "borda"
  if (method == "mallows") {
    if (missing != "bottom") {
      abort(paste0("`missing` must be \"bottom\" for method = \"mallows\": the Mallows likelihood ",
                   "of a top-k list counts its unlisted items as below the listed ones."))
    }
    if (!is.null(weights)) abort("`weights` cannot be given for method = \"mallows\".")
    model <- mallows_model(r, threads = threads)
    out <- list(ranking = model$consensus, score = NULL,
                disagreement = sum(model$distance), exact = model$exact, model = model)
  } else {
    values <- if (missing == "bottom") replace(r, is.na(r), Inf) else r
    borda <- borda_scores(r, weights, missing)
    borda_ranking <- rank(borda, ties.method = "first")
    above <- if (method != "borda" || p <= auto_kemeny_max_items) {
      preference_table(values, weights, threads)
    }
    out <- switch(method,
      borda = list(ranking = borda_ranking, score = borda),
      copeland = {
        wins <- rowSums(above > t(above)) + 0.5 * (rowSums(above == t(above)) - 1)
        ranking <- numeric(p)
        ranking[order(-wins, borda_ranking)] <- seq_len(p)
        list(ranking = ranking, score = wins)
      },
      kemeny = {
        ranking <- kemeny_search(values, weights, borda_ranking, threads, above)
        list(ranking = as.vector(ranking), score = NULL, exact = attr(ranking, "exact"))
      }
    )
    out$disagreement <- if (is.null(above)) NA_real_ else {
      kemeny_disagreement_cpp(above, as.double(out$ranking))
    }
    out$exact <- out$exact %||% NA
  }
  ranking <- stats::setNames(as.double(out$ranking), rownames(r))
  structure(
    list(ranking = ranking, items = rownames(r)[order(ranking)],
         score = if (!is.null(out$score)) stats::setNames(out$score, rownames(r)),
         disagreement = out$disagreement, exact = out$exact, model = out$model,
         method = method, missing = missing, n_items = p, n_rankings = ncol(r)),
    class = "rank_aggregation"
  )
}

#' @rdname aggregate_rankings
#' @export
print.rank_aggregation <- function(x, ...) {
  check_dots_empty(...)
  cat(sprintf("<rank_aggregation> %s consensus of %d rankings of %d items (missing items: %s)\n",
              switch(x$method, kemeny = "Kemeny", borda = "Borda", copeland = "Copeland",
                     mallows = "Mallows"),
              x$n_rankings, x$n_items, x$missing))
  shown <- utils::head(x$items, 10L)
  cat("Top:", paste(shown, collapse = " > "), if (x$n_items > 10L) "> ..." else "", "\n")
  if (!is.na(x$disagreement)) {
    cat(sprintf("Pairwise preferences contradicted: %s%s\n", format(signif(x$disagreement, 6)),
                if (isTRUE(x$exact)) " (the exact minimum)" else
                  if (identical(x$exact, FALSE)) " (a local minimum)" else ""))
  }
  if (!is.null(x$model)) {
    cat(sprintf("Mallows dispersion theta = %s\n", format(signif(x$model$theta, 4))))
  }
  invisible(x)
}

# Items the exact Kemeny search takes (aggregation.hpp).
kemeny_exact_max_items <- 16L
# Items up to which method = "auto" is Kemeny (about a second), Borda above.
auto_kemeny_max_items <- 2000L

# The rankings as a double matrix, items x rankings, named items, NA for a
# missing item: from a matrix (or vector, data frame) of ranks, or a list of
# character vectors of items from the top.
rankings_matrix <- function(x, arg = "x") {
  if (is.list(x) && !is.data.frame(x) && !is.object(x)) {
    ok <- vapply(x, function(l) is.character(l) && !anyNA(l) && !anyDuplicated(l) && length(l) > 0,
                 logical(1))
    if (length(x) == 0L || !all(ok)) {
      abort(paste0("`%s` as a list must hold rankings, each a character vector of distinct items ",
                   "from the top; element %d is %s."), arg, which(!ok)[1L] %||% 1L,
            if (length(x)) describe(x[[which(!ok)[1L]]]) else "missing (the list is empty)")
    }
    items <- unique(unlist(x, use.names = FALSE))
    r <- matrix(NA_real_, length(items), length(x), dimnames = list(items, names(x)))
    for (k in seq_along(x)) r[match(x[[k]], items), k] <- seq_along(x[[k]])
    return(r)
  }
  r <- as_numeric_matrix(x, arg)
  if (nrow(r) < 1L || ncol(r) < 1L) {
    abort("`%s` must hold at least one ranking of at least one item, not %d x %d.", arg,
          nrow(r), ncol(r))
  }
  if (any(is.infinite(r))) {
    abort("`%s` has infinite values: give ranks, with NA for an item a ranking misses.", arg)
  }
  empty <- which(colSums(!is.na(r)) == 0L)
  if (length(empty)) abort("Ranking %d of `%s` ranks no item (all NA).", empty[1L], arg)
  unranked <- which(rowSums(!is.na(r)) == 0L)
  if (length(unranked)) {
    abort("Item %s of `%s` is ranked by no ranking (all NA): leave it out.",
          rownames(r)[unranked[1L]] %||% unranked[1L], arg)
  }
  if (is.null(rownames(r))) rownames(r) <- as.character(seq_len(nrow(r)))
  if (anyDuplicated(rownames(r)) || any(rownames(r) == "")) {
    abort("The rows of `%s` must name distinct items (row names empty or repeated).", arg)
  }
  r
}

check_ranking_weights <- function(weights, count) {
  if (is.null(weights)) return(NULL)
  weights <- check_numeric_vector(weights, "weights")
  if (length(weights) != count || any(weights < 0) || !any(weights > 0)) {
    abort("`weights` must hold one weight >= 0 per ranking (%d), not all 0; got %s.", count,
          describe(weights))
  }
  as.double(weights)
}

# Mean rank of each item (ties averaged), missing items at the mean of the
# positions below the ranked ones; or, with missing = "ignore", the mean over
# the rankings that rank the item of (rank - 1/2) / (items ranked).
borda_scores <- function(r, weights, missing) {
  p <- nrow(r)
  w <- weights %||% rep(1, ncol(r))
  ranked <- colSums(!is.na(r))
  ranks <- apply(r, 2L, rank, ties.method = "average", na.last = "keep")
  ranks <- matrix(ranks, p)
  if (missing == "bottom") {
    filler <- matrix((ranked + 1 + p) / 2, p, ncol(r), byrow = TRUE)
    ranks[is.na(ranks)] <- filler[is.na(ranks)]
    return(drop(ranks %*% w) / sum(w))
  }
  normalized <- sweep(ranks - 0.5, 2L, ranked, "/")
  present <- !is.na(normalized)
  normalized[!present] <- 0
  counted <- drop(present %*% w)
  if (any(counted == 0)) {
    abort("Item %s is ranked only by rankings of weight 0.", rownames(r)[counted == 0][1L])
  }
  drop(normalized %*% w) / counted
}

preference_table <- function(values, weights, threads) {
  p <- nrow(values)
  check_memory(16 * as.double(p)^2, "x", sprintf("%d items", p))
  pairwise_preferences_cpp(values, weights %||% numeric(0), threads)
}

# A Kemeny ranking of `values` (items x rankings, NA ordering nothing) with
# weights (or NULL), searched from the ranking `start`: exact for at most
# kemeny_exact_max_items items, else the local search; `above`, their
# preference table, when already built. Attributes `exact` and
# `disagreement`.
kemeny_search <- function(values, weights, start, threads, above = NULL) {
  above <- above %||% preference_table(values, weights, threads)
  exact <- nrow(values) <= kemeny_exact_max_items
  ranking <- kemeny_ranking_cpp(above, as.double(start), exact)
  structure(as.vector(ranking), exact = exact, disagreement = attr(ranking, "disagreement"))
}

# The centre of a Mallows model of rankings or top lists (unlisted items tied
# at the bottom) with weights (or NULL): the Kemeny ranking searched from
# `start` (the Borda ranking when NULL); beyond auto_kemeny_max_items items,
# as aggregate_rankings() does by default, the Borda ranking. Attribute
# `exact`.
mallows_centre <- function(r, weights, threads, start = NULL) {
  if (is.null(start) || nrow(r) > auto_kemeny_max_items) {
    start <- rank(borda_scores(r, weights, "bottom"), ties.method = "first")
    if (nrow(r) > auto_kemeny_max_items) return(structure(as.double(start), exact = FALSE))
  }
  kemeny_search(replace(r, is.na(r), Inf), weights, start, threads)
}
