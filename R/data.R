#' Acute lymphoblastic leukaemia expression profiles (ALL)
#'
#' Gene expression of 128 adults with acute lymphoblastic leukaemia (ALL),
#' measured on Affymetrix HG-U95Av2 arrays at the Ritz laboratory (Chiaretti
#' et al. 2004), restricted to the 1,000 probe sets with the largest variance
#' across samples. Samples are in columns, as in Bioconductor.
#'
#' @format A list with two elements:
#' \describe{
#'   \item{`expr`}{a 1000 x 128 numeric matrix of log2 expression values,
#'     probe sets in rows (Affymetrix identifiers) and samples in columns.}
#'   \item{`pheno`}{a data frame with one row per sample (in the column order
#'     of `expr`): `sample` (identifier), `type` (factor, `"B"` or `"T"`: the
#'     lineage of the leukaemic cells, 95 B and 33 T), `stage` (B, B1-B4, T,
#'     T1-T4), `sex`, `age` (years; some missing) and `mol_biol` (molecular
#'     subtype: BCR/ABL, NEG, ALL1/AF4, E2A/PBX1, NUP-98, p15/p16).}
#' }
#' @source The Bioconductor data package ALL 1.40.0 (Li X, Artistic-2.0
#'   licence; Debian package r-bioc-all). The subset is made by
#'   `data-raw/all_leukemia.R` in diffrank's source repository. These data
#'   keep the ALL package's Artistic-2.0 licence, the rest of diffrank is MIT
#'   (`system.file("COPYRIGHTS", package = "diffrank")`).
#' @references Chiaretti S, Li X, Gentleman R, Vitale A, Vignetti M, Mandelli
#'   F, Ritz J, Foa R (2004). Gene expression profile of adult T-cell acute
#'   lymphocytic leukemia identifies distinct subsets of patients with
#'   different response to therapy and survival. *Blood* 103(7), 2771-2778.
#' @examples
#' dim(all_leukemia$expr)
#' table(all_leukemia$pheno$type)
#' boxplot(all_leukemia$expr[, 1:10], las = 2, ylab = "log2 expression")
"all_leukemia"
