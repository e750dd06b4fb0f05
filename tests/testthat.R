library(testthat)
library(diffrank)

test_check("diffrank")
