// microbatch.cpp — chunk sizes, scatter/gather along dim 0, and the per-micro-batch share of a mean loss.
// Not an autograd-aware split: inputs are scattered before any graph exists.
#include "pipeline/microbatch.h"

#include "engine/ops.h"

namespace ep::pipeline {

std::vector<int64_t> chunk_sizes(int64_t rows, int chunks) {
  EP_CHECK(chunks >= 1, ValueError, "--chunks ", chunks, ": need at least one micro-batch");
  EP_CHECK(rows >= chunks, ValueError, "--chunks ", chunks, ": more micro-batches than the ", rows,
           " rows of the mini-batch");
  std::vector<int64_t> sizes(size_t(chunks), rows / chunks);
  for (int64_t i = 0; i < rows % chunks; ++i) ++sizes[size_t(i)];
  return sizes;
}

std::vector<Tensor> scatter(const Tensor& x, int chunks) {
  EP_CHECK(x.dim() >= 1, ShapeError, "[scatter] expected a batch [N, ...], got ", shape_str(x.shape()));
  NoGradGuard no_grad;
  return split(x.detach(), chunk_sizes(x.size(0), chunks), 0);
}

Tensor gather(const std::vector<Tensor>& parts) {
  EP_CHECK(!parts.empty(), ValueError, "[gather] no micro-batch outputs");
  return parts.size() == 1 ? parts[0] : concat(parts, 0);
}

std::vector<MicroBatch> micro_batches(int64_t rows, int chunks) {
  std::vector<MicroBatch> mbs;
  int64_t offset = 0;
  for (int64_t n : chunk_sizes(rows, chunks)) {
    mbs.push_back({int(mbs.size()), offset, n, rows});
    offset += n;
  }
  return mbs;
}

Tensor mean_loss_share(const Tensor& micro_mean_loss, const MicroBatch& mb) {
  return mb.rows == mb.batch_rows ? micro_mean_loss : mul(micro_mean_loss, double(mb.rows) / double(mb.batch_rows));
}

}  // namespace ep::pipeline
