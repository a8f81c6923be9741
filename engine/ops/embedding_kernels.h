// embedding_kernels.h — row gather (forward), scatter-add (backward) and the index min/max used to range-check
// indices (before any kernel on the CPU; judged later on CUDA, see engine/device_check.h). CPU and CUDA. Not autograd
// (engine/ops/embedding.cpp).
#pragma once
#include <cstddef>
#include <cstdint>

#include "engine/device.h"
#include "engine/dispatch.h"

namespace ep {

// out[t, :] = weight[indices[t], :] for t < n; rows have `dim` elements of `elem` bytes (any dtype).
void embedding_forward_cpu(size_t elem, DType index_dt, const void* weight, const void* indices, void* out, int64_t n,
                           int64_t dim);
// dweight[indices[t], :] += dout[t, :] for every t whose index is not padding_idx (-1: none); dweight [rows, dim]
// must be zeroed by the caller. `dt` is f32 or f64. Both backends add each row's tokens in increasing t order onto
// the zeros (CUDA: a stable sort by row, no atomics), so CPU and CUDA gradients are equal bit for bit and run-to-run.
void embedding_backward_cpu(DType dt, DType index_dt, const void* dout, const void* indices, void* dweight, int64_t n,
                            int64_t dim, int64_t rows, int64_t padding_idx);
// The smallest and largest of n > 0 indices.
void index_minmax_cpu(DType index_dt, const void* indices, int64_t n, int64_t* lo, int64_t* hi);

// HF's create_position_ids_from_input_ids for one row of T ids: pos[t] = pad for a padding token, else pad + the
// number of non-padding tokens in ids[0..t]. A running count, so one thread walks a row on either backend.
EP_HD void padded_positions_row(const int64_t* ids, int64_t* pos, int64_t T, int64_t pad) {
  int64_t count = 0;
  for (int64_t t = 0; t < T; ++t) {
    const bool token = ids[t] != pad;
    count += token ? 1 : 0;
    pos[t] = token ? count + pad : pad;
  }
}
// padded_positions_row over B rows of [B, T] i64 ids.
void padded_position_ids_cpu(const int64_t* ids, int64_t* pos, int64_t B, int64_t T, int64_t pad);

// The CUDA kernels run before the range check is judged, so they stay in bounds on bad input: the forward writes
// zeros for an index outside [0, rows), the backward writes nothing out of bounds for it. The backward's gradient for
// the valid rows is not to be trusted then (its sort keys only the low bits, where a bad index can tie with a good
// one); the step raises the range error either way.
EP_CUDA_API void embedding_forward_cuda(size_t elem, DType index_dt, const void* weight, const void* indices,
                                        void* out, int64_t n, int64_t dim, int64_t rows, cudaStream_t st)
    EP_CUDA_BODY("embedding")
// Everything (scratch included, from the stream-ordered pool) is ordered on `st`; n is limited to INT_MAX (CUB).
EP_CUDA_API void embedding_backward_cuda(DType dt, DType index_dt, const void* dout, const void* indices,
                                         void* dweight, int64_t n, int64_t dim, int64_t rows, int64_t padding_idx,
                                         cudaStream_t st) EP_CUDA_BODY("embedding backward")
// padded_positions_row, one thread per row (B is a batch, T a sequence: one pass, no host copy of the ids).
EP_CUDA_API void padded_position_ids_cuda(const int64_t* ids, int64_t* pos, int64_t B, int64_t T, int64_t pad,
                                          cudaStream_t st) EP_CUDA_BODY("padded_position_ids")
// Writes {min, max} of n > 0 indices to the device buffer out2 (two int64).
EP_CUDA_API void index_minmax_cuda(DType index_dt, const void* indices, int64_t n, int64_t* out2, cudaStream_t st)
    EP_CUDA_BODY("embedding")

}  // namespace ep
