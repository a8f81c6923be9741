// split_cli.h — the split-learning flags both trainers share (--split K,M, --split-fine, --compress*) and the
// SplitModel they build from them. Not the split logic itself (compress/split.h) nor the pipeline's flags.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "apps/cli.h"
#include "compress/split.h"

namespace ep::cli {

inline void add_split_flags(Options& o, const std::string& fine_help) {
  o.add("split", "string", "", "K,M: the first K and last M units on the edge, the middle on the cloud (empty: no split)")
      .add("split-fine", "bool", false, fine_help)
      .add("compress", "string", "", "compressor at both boundaries, both directions: METHOD[:key=value,...]")
      .add("compress-fwd", "string", "", "compressor of the activations at both boundaries (overrides --compress)")
      .add("compress-bwd", "string", "", "compressor of the gradients at both boundaries (overrides --compress)")
      .add("compress-b1", "string", "", "boundary 1 (edge -> cloud): SPEC, or FWD|BWD to set the directions apart")
      .add("compress-b2", "string", "", "boundary 2 (cloud -> edge): SPEC, or FWD|BWD");
}

// The --compress* flags as given.
inline compress::CompressFlags compress_flags(const Options& o) {
  return {o.str("compress"), o.str("compress-fwd"), o.str("compress-bwd"), o.str("compress-b1"), o.str("compress-b2")};
}

// The split model the flags ask for, or nothing without --split (then --compress* flags are an error: they would
// silently do nothing). `units` are the model's units (with --split-fine applied by the caller).
inline std::optional<compress::SplitModel> make_split(const Options& o, std::vector<nn::Unit> units,
                                                      std::shared_ptr<compress::CompressionLog> log) {
  const compress::CompressFlags f = compress_flags(o);
  if (o.str("split").empty()) {
    if (!f.all.empty() || !f.fwd.empty() || !f.bwd.empty() || !f.b1.empty() || !f.b2.empty())
      o.fail("--compress flags need --split K,M (where the boundaries are)");
    return std::nullopt;
  }
  try {
    auto [k, m] = compress::parse_split(o.str("split"), int64_t(units.size()));
    if (m == 0 && !f.b2.empty()) o.fail("--compress-b2: --split " + o.str("split") + " has no second boundary (M = 0)");
    return compress::SplitModel(std::move(units), k, m, compress::resolve_boundary_specs(f), std::move(log));
  } catch (const UsageError&) {
    throw;
  } catch (const Error& e) {
    o.fail(e.what());  // one line naming the flag, exit 2
  }
}

}  // namespace ep::cli
