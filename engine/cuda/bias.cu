// bias.cu — CUDA twins of bias_add_cpu / bias_grad_cpu (engine/cpu/gemm.cpp): the bias epilogue of linear and its
// gradient. Not fused into the GEMM (no cuBLASLt epilogue): one extra pass over y is cheap next to the product.
#include <cuda_runtime.h>

#include "engine/cuda/launch.cuh"
#include "engine/ops/gemm_kernels.h"

namespace ep {

template <class T>
__global__ void bias_add_kernel(T* __restrict__ y, const T* __restrict__ bias, int64_t n, int64_t cols) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] += bias[i % cols];
}

void bias_add_cuda(DType dt, void* y, const void* bias, int64_t rows, int64_t cols, cudaStream_t st) {
  int64_t n = rows * cols;
  if (n == 0) return;
  dispatch_float(dt, "linear", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    bias_add_kernel<<<grid_for(n), kBlock, 0, st>>>(static_cast<T*>(y), static_cast<const T*>(bias), n, cols);
  });
  CUDA_CHECK_LAUNCH();
}

// Pass 1: block (32, 8) sums a 32-column tile over one chunk of rows; threads along x read consecutive columns
// (coalesced), threads along y interleave rows, then the 8 partial sums per column are added in a fixed order.
constexpr int kTileCols = 32, kTileRows = 8;

template <class T>
__global__ void bias_grad_partial_kernel(const T* __restrict__ dy, T* __restrict__ out, int64_t rows, int64_t cols,
                                         int64_t rows_per_chunk) {
  __shared__ T buf[kTileRows][kTileCols + 1];
  int64_t c = int64_t(blockIdx.x) * kTileCols + threadIdx.x;
  int64_t r0 = int64_t(blockIdx.y) * rows_per_chunk;
  int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  T acc = 0;
  if (c < cols)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kTileRows) acc += dy[r * cols + c];
  buf[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    T s = 0;
    for (int k = 0; k < kTileRows; ++k) s += buf[k][threadIdx.x];
    out[int64_t(blockIdx.y) * cols + c] = s;
  }
}

// Pass 2: each column adds its chunk partials in chunk order.
template <class T>
__global__ void bias_grad_final_kernel(const T* __restrict__ partial, T* __restrict__ dbias, int64_t chunks,
                                       int64_t cols) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < cols; c += int64_t(gridDim.x) * blockDim.x) {
    T s = 0;
    for (int64_t k = 0; k < chunks; ++k) s += partial[k * cols + c];
    dbias[c] = s;
  }
}

void bias_grad_cuda(DType dt, const void* dy, void* dbias, int64_t rows, int64_t cols, cudaStream_t st) {
  if (cols == 0) return;
  size_t esize = dtype_size(dt);
  if (rows == 0) {
    CUDA_CHECK(cudaMemsetAsync(dbias, 0, size_t(cols) * esize, st));
    return;
  }
  // About 256 rows per chunk, at most 256 chunks: enough blocks to fill the GPU for tall dy, and a short pass 2.
  int64_t chunks = std::min<int64_t>(256, (rows + 255) / 256);
  int64_t rows_per_chunk = (rows + chunks - 1) / chunks;
  int64_t col_tiles = (cols + kTileCols - 1) / kTileCols;
  EP_CHECK(col_tiles <= INT32_MAX, ValueError, "[linear backward] ", cols, " output features are too many");
  dispatch_float(dt, "linear backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    dim3 grid{unsigned(col_tiles), unsigned(chunks)}, block{kTileCols, kTileRows};
    if (chunks == 1) {
      bias_grad_partial_kernel<<<grid, block, 0, st>>>(static_cast<const T*>(dy), static_cast<T*>(dbias), rows, cols,
                                                       rows_per_chunk);
      CUDA_CHECK_LAUNCH();
      return;
    }
    // Stream-ordered scratch from the device pool (engine/cuda/runtime.cpp keeps freed blocks cached).
    void* partial = nullptr;
    CUDA_CHECK(cudaMallocAsync(&partial, size_t(chunks * cols) * esize, st));
    bias_grad_partial_kernel<<<grid, block, 0, st>>>(static_cast<const T*>(dy), static_cast<T*>(partial), rows, cols,
                                                     rows_per_chunk);
    bias_grad_final_kernel<<<grid_for(cols), kBlock, 0, st>>>(static_cast<const T*>(partial), static_cast<T*>(dbias),
                                                              chunks, cols);
    cudaError_t launched = cudaGetLastError();  // checked after the free, so a failed launch does not leak
    CUDA_CHECK(cudaFreeAsync(partial, st));
    CUDA_CHECK(launched);
  });
}

}  // namespace ep
