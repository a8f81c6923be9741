// elementwise.cu — CUDA twins of engine/cpu/elementwise.cpp over the same functors (scalar_ops.h).
// Not tuned per op: grid-stride loops; contiguous paths use 16-byte vector loads where the pointers allow.
#include <cuda_runtime.h>

#include "engine/cuda/launch.cuh"
#include "engine/cuda/row_reduce.cuh"
#include "engine/ops/elementwise_kernels.h"

namespace ep {

template <class T, class F>
__global__ void unary_forward_kernel(F f, const T* __restrict__ x, T* __restrict__ y, int64_t n, T s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = f(x[i], s);
}

// float4 path: 4 elements per thread, n4 = n / 4 vectors; the tail is done by the scalar kernel.
template <class F>
__global__ void unary_forward_vec4_kernel(F f, const float4* __restrict__ x, float4* __restrict__ y, int64_t n4,
                                          float s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4; i += int64_t(gridDim.x) * blockDim.x) {
    float4 v = x[i];
    y[i] = make_float4(f(v.x, s), f(v.y, s), f(v.z, s), f(v.w, s));
  }
}

template <class T, class F>
__global__ void unary_backward_kernel(F f, const T* __restrict__ x, const T* __restrict__ y,
                                      const T* __restrict__ dy, T* __restrict__ dx, int64_t n, T s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = dy[i] * f.grad(x[i], y[i], s);
}

template <class T, class F>
__global__ void binary_contiguous_kernel(F f, const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out,
                                         int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = f(a[i], b[i]);
}

template <class F>
__global__ void binary_vec4_kernel(F f, const float4* __restrict__ a, const float4* __restrict__ b,
                                   float4* __restrict__ out, int64_t n4) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4; i += int64_t(gridDim.x) * blockDim.x) {
    float4 u = a[i], v = b[i];
    out[i] = make_float4(f(u.x, v.x), f(u.y, v.y), f(u.z, v.z), f(u.w, v.w));
  }
}

template <class T, class I, class F>
__global__ void binary_broadcast_kernel(F f, const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out,
                                        I n, BroadcastIndex idx) {
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) {
    I oa, ob;
    idx.offsets<I>(i, oa, ob);
    out[i] = f(a[oa], b[ob]);
  }
}

// out[r, c] = f(a[r, c], b[c]) (a bias over the last dim) or f(b[c], a[r, c]) when kBFirst: no index division, and
// float4 along the row when the row length allows.
template <bool kBFirst, class F>
__global__ void binary_row_vec4_kernel(F f, const float4* __restrict__ a, const float4* __restrict__ b,
                                       float4* __restrict__ out, uint32_t n4, uint32_t inner4) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += gridDim.x * blockDim.x) {
    float4 u = a[i], v = b[i % inner4];
    out[i] = kBFirst ? make_float4(f(v.x, u.x), f(v.y, u.y), f(v.z, u.z), f(v.w, u.w))
                     : make_float4(f(u.x, v.x), f(u.y, v.y), f(u.z, v.z), f(u.w, v.w));
  }
}

template <class T>
__global__ void axpy_kernel(T* __restrict__ a, const T* __restrict__ b, T alpha, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    a[i] += alpha * b[i];
}

static bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

void unary_forward_cuda(UnaryOp op, DType dt, const void* x, void* y, int64_t n, double s, cudaStream_t st) {
  if (n == 0) return;
  dispatch_float(dt, "unary", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    visit_unary(op, [&](auto f) {
      const T* xp = static_cast<const T*>(x);
      T* yp = static_cast<T*>(y);
      int64_t done = 0;
      if constexpr (std::is_same_v<T, float>) {
        if (aligned16(xp) && aligned16(yp) && n >= 4) {
          int64_t n4 = n / 4;
          unary_forward_vec4_kernel<<<grid_for(n4), kBlock, 0, st>>>(f, reinterpret_cast<const float4*>(xp),
                                                                      reinterpret_cast<float4*>(yp), n4, float(s));
          done = n4 * 4;
        }
      }
      if (done < n)
        unary_forward_kernel<<<grid_for(n - done), kBlock, 0, st>>>(f, xp + done, yp + done, n - done, T(s));
    });
  });
  CUDA_CHECK_LAUNCH();
}

void unary_backward_cuda(UnaryOp op, DType dt, const void* x, const void* y, const void* dy, void* dx, int64_t n,
                         double s, cudaStream_t st) {
  if (n == 0) return;
  dispatch_float(dt, "unary backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    visit_unary(op, [&](auto f) {
      unary_backward_kernel<<<grid_for(n), kBlock, 0, st>>>(f, static_cast<const T*>(x), static_cast<const T*>(y),
                                                             static_cast<const T*>(dy), static_cast<T*>(dx), n, T(s));
    });
  });
  CUDA_CHECK_LAUNCH();
}

void binary_forward_cuda(BinaryOp op, DType dt, const void* a, const void* b, void* out, int64_t n,
                         const BroadcastIndex& idx, cudaStream_t st) {
  if (n == 0) return;
  dispatch_float(dt, "binary", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    visit_binary(op, [&](auto f) {
      const T* ap = static_cast<const T*>(a);
      const T* bp = static_cast<const T*>(b);
      T* op_ = static_cast<T*>(out);
      if (idx.ndim == 1 && idx.stride_a[0] == 1 && idx.stride_b[0] == 1) {
        int64_t done = 0;
        if constexpr (std::is_same_v<T, float>) {
          if (aligned16(ap) && aligned16(bp) && aligned16(op_) && n >= 4) {
            int64_t n4 = n / 4;
            binary_vec4_kernel<<<grid_for(n4), kBlock, 0, st>>>(f, reinterpret_cast<const float4*>(ap),
                                                                 reinterpret_cast<const float4*>(bp),
                                                                 reinterpret_cast<float4*>(op_), n4);
            done = n4 * 4;
          }
        }
        if (done < n)
          binary_contiguous_kernel<<<grid_for(n - done), kBlock, 0, st>>>(f, ap + done, bp + done, op_ + done,
                                                                          n - done);
      } else {
        // A full [rows, inner] operand against an [inner] row (bias adds): the row pattern without index division.
        if constexpr (std::is_same_v<T, float>) {
          if (idx.ndim == 2 && n < (int64_t(1) << 31) && idx.size[1] % 4 == 0 && aligned16(ap) && aligned16(bp) &&
              aligned16(op_)) {
            const int64_t inner = idx.size[1];
            const bool b_row = idx.stride_a[0] == inner && idx.stride_a[1] == 1 && idx.stride_b[0] == 0 &&
                               idx.stride_b[1] == 1;
            const bool a_row = idx.stride_b[0] == inner && idx.stride_b[1] == 1 && idx.stride_a[0] == 0 &&
                               idx.stride_a[1] == 1;
            if (b_row || a_row) {
              const float4* full = reinterpret_cast<const float4*>(b_row ? ap : bp);
              const float4* row = reinterpret_cast<const float4*>(b_row ? bp : ap);
              uint32_t n4 = uint32_t(n / 4), inner4 = uint32_t(inner / 4);
              if (b_row)
                binary_row_vec4_kernel<false><<<grid_for(n4), kBlock, 0, st>>>(f, full, row,
                                                                              reinterpret_cast<float4*>(op_), n4, inner4);
              else
                binary_row_vec4_kernel<true><<<grid_for(n4), kBlock, 0, st>>>(f, full, row,
                                                                             reinterpret_cast<float4*>(op_), n4, inner4);
              return;
            }
          }
        }
        // Outputs (and so both inputs' offsets) below 2^31: 32-bit index math. The grid-stride bound keeps
        // i + stride below 2^32.
        if (n < (int64_t(1) << 31))
          binary_broadcast_kernel<<<grid_for(n), kBlock, 0, st>>>(f, ap, bp, op_, uint32_t(n), idx);
        else
          binary_broadcast_kernel<<<grid_for(n), kBlock, 0, st>>>(f, ap, bp, op_, n, idx);
      }
    });
  });
  CUDA_CHECK_LAUNCH();
}

void axpy_cuda(DType dt, void* a, const void* b, double alpha, int64_t n, cudaStream_t st) {
  if (n == 0) return;
  dispatch_float(dt, "add_", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    axpy_kernel<<<grid_for(n), kBlock, 0, st>>>(static_cast<T*>(a), static_cast<const T*>(b), T(alpha), n);
  });
  CUDA_CHECK_LAUNCH();
}

// inner == 1: one block per output row, tree reduction in shared memory.
template <class T>
__global__ void sum_rows_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t r) {
  __shared__ T smem[32];
  const T* row = x + blockIdx.x * r;
  T acc = 0;
  for (int64_t k = threadIdx.x; k < r; k += blockDim.x) acc += row[k];
  acc = row_sum<true>(acc, smem);
  if (threadIdx.x == 0) out[blockIdx.x] = acc;
}

// inner == 1, f32 rows of a multiple of 4 elements on 16-byte boundaries: the same with float4 loads (a quarter of the
// load instructions, which is what limits one-block-per-row sums of rows a few thousand long).
__global__ void sum_rows_vec4_kernel(const float4* __restrict__ x, float* __restrict__ out, int64_t r4) {
  __shared__ float smem[32];
  const float4* row = x + blockIdx.x * r4;
  float acc = 0;
  for (int64_t k = threadIdx.x; k < r4; k += blockDim.x) {
    float4 v = row[k];
    acc += (v.x + v.y) + (v.z + v.w);
  }
  acc = row_sum<true>(acc, smem);
  if (threadIdx.x == 0) out[blockIdx.x] = acc;
}

// Partial sums of row blockIdx.y over the chunk blockIdx.x: partial[row * gridDim.x + chunk].
template <class T>
__global__ void sum_chunks_kernel(const T* __restrict__ x, T* __restrict__ partial, int64_t r, int64_t chunk) {
  __shared__ T smem[32];
  int64_t begin = int64_t(blockIdx.x) * chunk, end = begin + chunk < r ? begin + chunk : r;
  const T* row = x + int64_t(blockIdx.y) * r;
  T acc = 0;
  for (int64_t k = begin + threadIdx.x; k < end; k += blockDim.x) acc += row[k];
  acc = row_sum<true>(acc, smem);
  if (threadIdx.x == 0) partial[int64_t(blockIdx.y) * gridDim.x + blockIdx.x] = acc;
}

// inner > 1: one thread per (outer, inner) output, reading coalesced along inner.
template <class T>
__global__ void sum_strided_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t outer, int64_t r,
                                   int64_t inner) {
  int64_t n = outer * inner;
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < n; j += int64_t(gridDim.x) * blockDim.x) {
    int64_t o = j / inner, i = j - o * inner;
    const T* base = x + o * r * inner + i;
    T acc = 0;
    for (int64_t k = 0; k < r; ++k) acc += base[k * inner];
    out[j] = acc;
  }
}

// Slab blockIdx.y of the reduction: partial[slab * outer*inner + j] = sum over k in the slab of x[o, k, i].
template <class T>
__global__ void sum_strided_split_kernel(const T* __restrict__ x, T* __restrict__ partial, int64_t outer, int64_t r,
                                         int64_t inner, int64_t chunk) {
  const int64_t n = outer * inner;
  const int64_t k0 = int64_t(blockIdx.y) * chunk, k1 = k0 + chunk < r ? k0 + chunk : r;
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < n; j += int64_t(gridDim.x) * blockDim.x) {
    int64_t o = j / inner, i = j - o * inner;
    const T* base = x + o * r * inner + i;
    T acc = 0;
    for (int64_t k = k0; k < k1; ++k) acc += base[k * inner];
    partial[int64_t(blockIdx.y) * n + j] = acc;
  }
}

void sum_dim_cuda(DType dt, const void* x, void* out, int64_t outer, int64_t r, int64_t inner, cudaStream_t st) {
  if (outer * inner == 0) return;
  dispatch_float(dt, "sum", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    if (inner == 1 && outer < 1024 && r >= (int64_t(1) << 16)) {
      // Few long rows: one block per row would leave most SMs idle. Split each row into `splits` chunks, sum the
      // chunks into a temporary [outer, splits] buffer, then sum that (two passes, no atomics: deterministic).
      int64_t splits = std::min<int64_t>(1024 / outer + 1, r / 4096);
      int64_t chunk = (r + splits - 1) / splits;
      splits = (r + chunk - 1) / chunk;
      T* partial = nullptr;
      CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&partial), size_t(outer * splits) * sizeof(T), st));
      sum_chunks_kernel<<<dim3(unsigned(splits), unsigned(outer)), kBlock, 0, st>>>(static_cast<const T*>(x), partial,
                                                                                 r, chunk);
      sum_rows_kernel<<<unsigned(outer), kBlock, 0, st>>>(partial, static_cast<T*>(out), splits);
      CUDA_CHECK(cudaFreeAsync(partial, st));
    } else if (inner > 1 && outer * inner < 65536 && r >= 64) {
      // Few columns, long reductions: one thread per output would leave the GPU nearly empty. Split r into
      // `splits` slabs, sum each into partial[split, outer*inner], then sum the slabs (deterministic, no atomics).
      const int64_t outputs = outer * inner;
      int64_t splits = std::min<int64_t>({(131072 + outputs - 1) / outputs, r / 16, 32768});
      int64_t chunk = (r + splits - 1) / splits;
      splits = (r + chunk - 1) / chunk;
      T* partial = nullptr;
      CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&partial), size_t(outputs * splits) * sizeof(T), st));
      sum_strided_split_kernel<<<dim3(grid_for(outputs), unsigned(splits)), kBlock, 0, st>>>(
          static_cast<const T*>(x), partial, outer, r, inner, chunk);
      sum_strided_kernel<<<grid_for(outputs), kBlock, 0, st>>>(partial, static_cast<T*>(out), 1, splits, outputs);
      CUDA_CHECK(cudaFreeAsync(partial, st));
    } else if (inner == 1 && outer <= (int64_t(1) << 31) - 1) {
      if constexpr (std::is_same_v<T, float>) {
        if (r % 4 == 0 && aligned16(x)) {
          sum_rows_vec4_kernel<<<unsigned(outer), kBlock, 0, st>>>(static_cast<const float4*>(x),
                                                                   static_cast<float*>(out), r / 4);
          return;
        }
      }
      sum_rows_kernel<<<unsigned(outer), kBlock, 0, st>>>(static_cast<const T*>(x), static_cast<T*>(out), r);
    }
    else
      sum_strided_kernel<<<grid_for(outer * inner), kBlock, 0, st>>>(static_cast<const T*>(x), static_cast<T*>(out),
                                                                     outer, r, inner);
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace ep
