// embedding.cu — CUDA twins of engine/cpu/embedding.cpp: row gather, atomicAdd scatter-add (f64 atomics need
// sm_60+, we build for sm_80/90) and a min/max reduction for the host-side range check. Not deterministic in the
// backward's summation order (atomics); the CPU path is.
#include <cuda_runtime.h>

#include <climits>

#include "engine/cuda/launch.cuh"
#include "engine/ops/embedding_kernels.h"

namespace ep {

template <class U, class I>
__global__ void embedding_forward_kernel(const U* __restrict__ w, const I* __restrict__ ix, U* __restrict__ out,
                                         int64_t n, int64_t dim) {
  const int64_t total = n * dim;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / dim, j = i - t * dim;
    out[i] = w[int64_t(ix[t]) * dim + j];
  }
}

template <class T, class I>
__global__ void embedding_backward_kernel(const T* __restrict__ g, const I* __restrict__ ix, T* __restrict__ dw,
                                          int64_t n, int64_t dim, int64_t padding_idx) {
  const int64_t total = n * dim;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / dim, j = i - t * dim;
    const int64_t r = int64_t(ix[t]);
    if (r != padding_idx) atomicAdd(dw + r * dim + j, g[i]);
  }
}

__global__ void minmax_init_kernel(int64_t* out2) {
  out2[0] = LLONG_MAX;
  out2[1] = LLONG_MIN;
}

// Per-thread min/max, a warp shuffle reduction, then one atomic pair per warp.
template <class I>
__global__ void minmax_kernel(const I* __restrict__ ix, int64_t n, int64_t* out2) {
  long long mn = LLONG_MAX, mx = LLONG_MIN;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    long long v = (long long)ix[i];
    mn = v < mn ? v : mn;
    mx = v > mx ? v : mx;
  }
  for (int s = 16; s > 0; s >>= 1) {
    long long a = __shfl_down_sync(0xffffffffu, mn, s), b = __shfl_down_sync(0xffffffffu, mx, s);
    mn = a < mn ? a : mn;
    mx = b > mx ? b : mx;
  }
  if ((threadIdx.x & 31) == 0) {
    atomicMin(reinterpret_cast<long long*>(out2), mn);
    atomicMax(reinterpret_cast<long long*>(out2) + 1, mx);
  }
}

void embedding_forward_cuda(size_t elem, DType index_dt, const void* weight, const void* indices, void* out,
                            int64_t n, int64_t dim, cudaStream_t st) {
  if (n * dim == 0) return;
  dispatch_index(index_dt, "embedding", [&](auto itag_) {
    using I = EP_TYPE(itag_);
    auto launch = [&](auto utag_) {
      using U = EP_TYPE(utag_);
      embedding_forward_kernel<<<grid_for(n * dim), kBlock, 0, st>>>(
          static_cast<const U*>(weight), static_cast<const I*>(indices), static_cast<U*>(out), n, dim);
    };
    switch (elem) {
      case 1: launch(type_tag<uint8_t>{}); break;
      case 2: launch(type_tag<uint16_t>{}); break;
      case 4: launch(type_tag<uint32_t>{}); break;
      case 8: launch(type_tag<uint64_t>{}); break;
      default: EP_THROW(DTypeError, "[embedding] unsupported element size ", elem);
    }
  });
  CUDA_CHECK_LAUNCH();
}

void embedding_backward_cuda(DType dt, DType index_dt, const void* dout, const void* indices, void* dweight,
                             int64_t n, int64_t dim, int64_t rows, int64_t padding_idx, cudaStream_t st) {
  if (n * dim == 0) return;
  dispatch_float(dt, "embedding backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    dispatch_index(index_dt, "embedding backward", [&](auto itag_) {
      using I = EP_TYPE(itag_);
      embedding_backward_kernel<<<grid_for(n * dim), kBlock, 0, st>>>(
          static_cast<const T*>(dout), static_cast<const I*>(indices), static_cast<T*>(dweight), n, dim, padding_idx);
    });
  });
  CUDA_CHECK_LAUNCH();
  (void)rows;
}

void index_minmax_cuda(DType index_dt, const void* indices, int64_t n, int64_t* out2, cudaStream_t st) {
  minmax_init_kernel<<<1, 1, 0, st>>>(out2);
  CUDA_CHECK_LAUNCH();
  if (n == 0) return;
  dispatch_index(index_dt, "embedding", [&](auto itag_) {
    using I = EP_TYPE(itag_);
    // A few blocks per SM are plenty for a read-once reduction, and keep the atomics few.
    minmax_kernel<<<std::min(grid_for(n), 1024u), kBlock, 0, st>>>(static_cast<const I*>(indices), n, out2);
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace ep
