// layer_norm.cu — CUDA twins of engine/cpu/layer_norm.cpp: a warp (D <= 1024) or a block per row for the forward and
// the input gradient; weight/bias gradients in two deterministic passes (per-chunk partials over 32-column tiles,
// then the chunks summed in order per column), never atomics. Not a fused kernel for the three gradients.
#include <cuda_runtime.h>

#include <cstdio>

#include "engine/cuda/row_reduce.cuh"
#include "engine/ops/layer_norm_kernels.h"
#include "engine/ops/scalar_ops.h"

namespace ep {

namespace {

constexpr int kTileCols = 32;       // dw/db partials: a block covers 32 columns ...
constexpr int kTileRows = 8;        // ... with 8 threads down the rows of its chunk
constexpr int64_t kChunkRows = 64;  // target rows per chunk
constexpr int64_t kMaxChunks = 256;

template <bool kBlockRow, class T>
__global__ void layer_norm_forward_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                                          T* __restrict__ y, T* __restrict__ mean, T* __restrict__ rstd, int64_t rows,
                                          int64_t d, T eps) {
  __shared__ T smem[32];
  RowGroup<kBlockRow> g;
  for (int64_t r = g.row0; r < rows; r += g.step) {
    const T* xr = x + r * d;
    T* yr = y + r * d;
    T s = 0;
    for (int64_t c = g.tid; c < d; c += g.group) s += xr[c];
    const T mu = row_sum<kBlockRow>(s, smem) / T(d);
    T v = 0;
    for (int64_t c = g.tid; c < d; c += g.group) v += (xr[c] - mu) * (xr[c] - mu);  // two-pass: no cancellation
    const T rs = T(1) / m_sqrt(row_sum<kBlockRow>(v, smem) / T(d) + eps);
    if (g.tid == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
    for (int64_t c = g.tid; c < d; c += g.group) {
      T o = (xr[c] - mu) * rs;
      if (w) o *= w[c];
      if (b) o += b[c];
      yr[c] = o;
    }
  }
}

template <bool kBlockRow, class T>
__global__ void layer_norm_dx_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ mean,
                                     const T* __restrict__ rstd, const T* __restrict__ dy, T* __restrict__ dx,
                                     int64_t rows, int64_t d) {
  __shared__ T smem[32];
  RowGroup<kBlockRow> g;
  for (int64_t r = g.row0; r < rows; r += g.step) {
    const T* xr = x + r * d;
    const T* gr = dy + r * d;
    T* dr = dx + r * d;
    const T mu = mean[r], rs = rstd[r];
    T sg = 0, sgx = 0;
    for (int64_t c = g.tid; c < d; c += g.group) {
      const T gg = w ? gr[c] * w[c] : gr[c];
      sg += gg;
      sgx += gg * (xr[c] - mu) * rs;
    }
    sg = row_sum<kBlockRow>(sg, smem) / T(d);
    sgx = row_sum<kBlockRow>(sgx, smem) / T(d);
    for (int64_t c = g.tid; c < d; c += g.group) {
      const T gg = w ? gr[c] * w[c] : gr[c];
      dr[c] = rs * (gg - sg - (xr[c] - mu) * rs * sgx);
    }
  }
}

// Block (kTileCols, kTileRows) at (column tile, chunk): partial[chunk, c] = sum over the chunk's rows.
template <class T>
__global__ void layer_norm_dwdb_partial_kernel(const T* __restrict__ x, const T* __restrict__ mean,
                                               const T* __restrict__ rstd, const T* __restrict__ dy,
                                               T* __restrict__ pw, T* __restrict__ pb, int64_t rows, int64_t d,
                                               int64_t chunk_rows) {
  __shared__ T s_w[kTileRows][kTileCols];
  __shared__ T s_b[kTileRows][kTileCols];
  const int64_t c = int64_t(blockIdx.x) * kTileCols + threadIdx.x;
  const int64_t chunk = blockIdx.y;
  const int64_t begin = chunk * chunk_rows;
  const int64_t end = min(rows, begin + chunk_rows);
  T aw = 0, ab = 0;
  if (c < d)
    for (int64_t r = begin + threadIdx.y; r < end; r += kTileRows) {
      const T gg = dy[r * d + c];
      aw += gg * (x[r * d + c] - mean[r]) * rstd[r];
      ab += gg;
    }
  s_w[threadIdx.y][threadIdx.x] = aw;
  s_b[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && c < d) {
    for (int k = 1; k < kTileRows; ++k) {
      aw += s_w[k][threadIdx.x];
      ab += s_b[k][threadIdx.x];
    }
    pw[chunk * d + c] = aw;
    pb[chunk * d + c] = ab;
  }
}

template <class T>
__global__ void layer_norm_dwdb_final_kernel(const T* __restrict__ pw, const T* __restrict__ pb, T* __restrict__ dw,
                                             T* __restrict__ db, int64_t chunks, int64_t d) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < d; c += int64_t(gridDim.x) * blockDim.x) {
    T sw = 0, sb = 0;
    for (int64_t k = 0; k < chunks; ++k) {
      sw += pw[k * d + c];
      sb += pb[k * d + c];
    }
    if (dw) dw[c] = sw;
    if (db) db[c] = sb;
  }
}

}  // namespace

void layer_norm_forward_cuda(DType dt, const void* x, const void* w, const void* b, void* y, void* mean, void* rstd,
                             int64_t rows, int64_t d, double eps, cudaStream_t st) {
  if (rows * d == 0) return;
  dispatch_float(dt, "layer_norm", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    launch_rows(rows, d, [&](auto block_row, unsigned grid) {
      constexpr bool B = decltype(block_row)::value;
      layer_norm_forward_kernel<B><<<grid, kBlock, 0, st>>>(
          static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b), static_cast<T*>(y),
          static_cast<T*>(mean), static_cast<T*>(rstd), rows, d, T(eps));
    });
  });
  CUDA_CHECK_LAUNCH();
}

void layer_norm_backward_cuda(DType dt, const void* x, const void* w, const void* mean, const void* rstd,
                              const void* dy, void* dx, void* dw, void* db, int64_t rows, int64_t d,
                              cudaStream_t st) {
  if (d == 0) return;
  dispatch_float(dt, "layer_norm backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    const T* xp = static_cast<const T*>(x);
    const T* mp = static_cast<const T*>(mean);
    const T* rp = static_cast<const T*>(rstd);
    const T* gp = static_cast<const T*>(dy);
    if (dx && rows > 0) {
      launch_rows(rows, d, [&](auto block_row, unsigned grid) {
        constexpr bool B = decltype(block_row)::value;
        layer_norm_dx_kernel<B><<<grid, kBlock, 0, st>>>(xp, static_cast<const T*>(w), mp, rp, gp,
                                                         static_cast<T*>(dx), rows, d);
      });
      CUDA_CHECK_LAUNCH();
    }
    if (!dw && !db) return;
    if (rows == 0) {  // nothing to sum: zero gradients
      if (dw) CUDA_CHECK(cudaMemsetAsync(dw, 0, size_t(d) * sizeof(T), st));
      if (db) CUDA_CHECK(cudaMemsetAsync(db, 0, size_t(d) * sizeof(T), st));
      return;
    }
    const int64_t chunks = std::min(kMaxChunks, (rows + kChunkRows - 1) / kChunkRows);
    const int64_t chunk_rows = (rows + chunks - 1) / chunks;
    StreamScratch scratch(size_t(2 * chunks * d) * sizeof(T), st);
    T* pw = static_cast<T*>(scratch.ptr);
    T* pb = pw + chunks * d;
    const dim3 grid(unsigned((d + kTileCols - 1) / kTileCols), unsigned(chunks));
    layer_norm_dwdb_partial_kernel<<<grid, dim3(kTileCols, kTileRows), 0, st>>>(xp, mp, rp, gp, pw, pb, rows, d,
                                                                               chunk_rows);
    CUDA_CHECK_LAUNCH();
    layer_norm_dwdb_final_kernel<<<grid_for(d), kBlock, 0, st>>>(pw, pb, static_cast<T*>(dw), static_cast<T*>(db),
                                                                 chunks, d);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ep
