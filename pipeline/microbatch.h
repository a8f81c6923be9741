// microbatch.h — splitting a mini-batch [N, ...] into C micro-batches along dim 0 and putting the outputs back in
// order, plus the loss convention that makes the micro-batch gradients add up to the full-batch gradient.
// Not the schedule (pipeline/schedule.h) and not deferred BatchNorm statistics.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace ep::pipeline {

// Exactly `chunks` sizes that differ by at most one, larger first (10 rows in 4 -> 3,3,2,2). Unlike torch.chunk,
// which would cut 5 rows into only 3 chunks of 2,2,1, the count is always the one asked for, and the stages stay as
// balanced as the rows allow. ValueError when chunks < 1 or chunks > rows.
std::vector<int64_t> chunk_sizes(int64_t rows, int chunks);

// x [N, ...] -> C tensors [n_i, ...] (copies; no autograd history is needed for inputs and masks).
std::vector<Tensor> scatter(const Tensor& x, int chunks);
// The micro-batch outputs concatenated along dim 0 in micro-batch order.
Tensor gather(const std::vector<Tensor>& parts);

// Where micro-batch `index` sits in its mini-batch.
struct MicroBatch {
  int index = 0;
  int64_t offset = 0;      // first row in the mini-batch
  int64_t rows = 0;        // n_i
  int64_t batch_rows = 0;  // N
};
std::vector<MicroBatch> micro_batches(int64_t rows, int chunks);

// The loss convention: the mini-batch loss is the mean over its N rows, so micro-batch i contributes its summed loss
// divided by N (not its own mean, which summed over C micro-batches would give C times the gradient, the seeds'
// bug). From a per-micro-batch mean loss this is mean * n_i / N.
Tensor mean_loss_share(const Tensor& micro_mean_loss, const MicroBatch& mb);

}  // namespace ep::pipeline
