// The tie rule of the quantile normalizers, parsed once for every glue file
// that takes one.
#pragma once

#include <diffrank/quantile.hpp>
#include <string>

#include "glue.h"

namespace diffrank_glue {

inline diffrank::Ties parse_ties(const std::string& ties) {
  return parse_choice<diffrank::Ties>(ties, "ties",
                                      {{"midrank", diffrank::Ties::midrank},
                                       {"average", diffrank::Ties::average},
                                       {"first", diffrank::Ties::first}});
}

}  // namespace diffrank_glue
