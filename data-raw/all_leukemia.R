# Builds data/all_leukemia.rda from Bioconductor's ALL data package
# (Debian: r-bioc-all, Artistic-2.0). Run from the package root:
#   Rscript data-raw/all_leukemia.R
suppressPackageStartupMessages({
  library(Biobase)
  library(ALL)
})
data(ALL)
expr <- exprs(ALL)
pheno <- pData(ALL)

# The 1,000 probe sets with the largest variance across the 128 samples.
keep <- order(apply(expr, 1, stats::var), decreasing = TRUE)[1:1000]
expr <- expr[sort(keep), ]
storage.mode(expr) <- "double"

mol_biol <- as.character(pheno$mol.biol)
all_leukemia <- list(
  expr = expr,
  pheno = data.frame(
    sample = colnames(expr),
    type = factor(substr(as.character(pheno$BT), 1, 1), levels = c("B", "T")),
    stage = factor(as.character(pheno$BT)),
    sex = factor(as.character(pheno$sex), levels = c("F", "M")),
    age = as.numeric(pheno$age),
    mol_biol = factor(mol_biol),
    row.names = colnames(expr),
    stringsAsFactors = FALSE
  )
)
save(all_leukemia, file = "data/all_leukemia.rda", compress = "xz")
