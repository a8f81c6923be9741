// embedding.cu — CUDA twins of engine/cpu/embedding.cpp: row gather, a deterministic sorted scatter-add and a min/max
// reduction for the host-side range check. Not atomics in the backward: each row sums its tokens in token order.
#include <cuda_runtime.h>

#include <cub/device/device_radix_sort.cuh>

#include <bit>
#include <climits>

#include "engine/cuda/launch.cuh"
#include "engine/ops/embedding_kernels.h"

namespace ep {

namespace {

template <class U, class I>
__global__ void embedding_forward_kernel(const U* __restrict__ w, const I* __restrict__ ix, U* __restrict__ out,
                                         int64_t n, int64_t dim, int64_t rows) {
  EP_GRID_STRIDE(i, n * dim) {
    const int64_t t = i / dim, j = i - t * dim, r = int64_t(ix[t]);
    out[i] = r >= 0 && r < rows ? w[r * dim + j] : U(0);  // bad input: the deferred range check will report it
  }
}

// keys[t] = indices[t] as an unsigned radix key, tokens[t] = t. An index outside [0, rows) (the deferred range check
// reports it) may sort among valid keys by its low bits; the runs kernel skips it, so nothing is written out of bounds.
template <class I, class K>
__global__ void embedding_sort_input_kernel(const I* __restrict__ ix, int64_t n, K* __restrict__ keys,
                                            uint32_t* __restrict__ tokens) {
  EP_GRID_STRIDE(t, n) {
    keys[t] = K(ix[t]);
    tokens[t] = uint32_t(t);
  }
}

// After a stable sort by row, the tokens of row r form one run of equal keys, in increasing token order. Thread
// (p, j) does work only when p starts a run: it adds column j of the run's gradient rows to dw one by one, so every
// element sees exactly the CPU's additions in the CPU's order (bit-identical sums). The run's end comes from a
// binary search, which keeps a thread's loads independent of its sum (they can be issued ahead) and costs
// O(log n) however long the run is; the total work stays O(n * dim).
template <class T, class K>
__global__ void embedding_backward_runs_kernel(const T* __restrict__ g, const K* __restrict__ keys,
                                               const uint32_t* __restrict__ tokens, T* __restrict__ dw, int64_t n,
                                               int64_t dim, int64_t rows, int64_t padding_idx) {
  EP_GRID_STRIDE(i, n * dim) {
    const int64_t p = i / dim, j = i - p * dim;
    const K r = keys[p];
    if ((p > 0 && keys[p - 1] == r) || int64_t(r) == padding_idx || uint64_t(r) >= uint64_t(rows)) continue;
    int64_t lo = p + 1, hi = n;  // first q > p with keys[q] != r (keys are sorted)
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (keys[mid] == r) lo = mid + 1;
      else hi = mid;
    }
    T* d = dw + int64_t(r) * dim + j;
    T acc = *d;  // the caller's zeros, as on the CPU: 0 + g keeps the CPU's bits (e.g. -0 becomes +0)
#pragma unroll 8
    for (int64_t q = p; q < lo; ++q) acc += g[int64_t(tokens[q]) * dim + j];
    *d = acc;
  }
}

__global__ void minmax_init_kernel(int64_t* out2) {
  out2[0] = LLONG_MAX;
  out2[1] = LLONG_MIN;
}

// Per-thread min/max, a warp shuffle reduction, then one atomic pair per warp (integer min/max: order-free, exact).
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

constexpr size_t align_up(size_t bytes) { return (bytes + 255) / 256 * 256; }

// Sort (key = row, value = token) pairs with CUB's stable radix sort over only the bits a row index can use, then
// sum each row's run. K is uint32_t unless rows exceed 2^32.
template <class T, class I, class K>
void backward_sorted(const T* g, const I* ix, T* dw, int64_t n, int64_t dim, int64_t rows, int64_t padding_idx,
                     cudaStream_t st) {
  const int end_bit = std::max(1, int(std::bit_width(uint64_t(rows - 1))));
  const int items = int(n);
  size_t sort_bytes = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, static_cast<const K*>(nullptr),
                                             static_cast<K*>(nullptr), static_cast<const uint32_t*>(nullptr),
                                             static_cast<uint32_t*>(nullptr), items, 0, end_bit, st));
  const size_t key_bytes = align_up(size_t(n) * sizeof(K)), token_bytes = align_up(size_t(n) * sizeof(uint32_t));
  StreamScratch scratch(2 * key_bytes + 2 * token_bytes + sort_bytes, st);
  char* base = static_cast<char*>(scratch.ptr);
  K* keys_in = reinterpret_cast<K*>(base);
  K* keys = reinterpret_cast<K*>(base + key_bytes);
  uint32_t* tokens_in = reinterpret_cast<uint32_t*>(base + 2 * key_bytes);
  uint32_t* tokens = reinterpret_cast<uint32_t*>(base + 2 * key_bytes + token_bytes);
  void* sort_temp = base + 2 * key_bytes + 2 * token_bytes;

  embedding_sort_input_kernel<<<grid_for(n), kBlock, 0, st>>>(ix, n, keys_in, tokens_in);
  CUDA_CHECK_LAUNCH();
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(sort_temp, sort_bytes, keys_in, keys, tokens_in, tokens, items, 0,
                                             end_bit, st));
  embedding_backward_runs_kernel<<<grid_for(n * dim), kBlock, 0, st>>>(g, keys, tokens, dw, n, dim, rows,
                                                                        padding_idx);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void embedding_forward_cuda(size_t elem, DType index_dt, const void* weight, const void* indices, void* out,
                            int64_t n, int64_t dim, int64_t rows, cudaStream_t st) {
  if (n * dim == 0) return;
  dispatch_index(index_dt, "embedding", [&](auto itag_) {
    using I = EP_TYPE(itag_);
    auto launch = [&](auto utag_) {
      using U = EP_TYPE(utag_);
      embedding_forward_kernel<<<grid_for(n * dim), kBlock, 0, st>>>(
          static_cast<const U*>(weight), static_cast<const I*>(indices), static_cast<U*>(out), n, dim, rows);
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
  // CUB counts items in an int and the tokens travel as uint32.
  EP_CHECK(n <= INT_MAX, ValueError, "[embedding backward] ", n, " indices exceed the GPU sort's limit of ", INT_MAX);
  dispatch_float(dt, "embedding backward", [&](auto tag_) {
    using T = EP_TYPE(tag_);
    dispatch_index(index_dt, "embedding backward", [&](auto itag_) {
      using I = EP_TYPE(itag_);
      const T* g = static_cast<const T*>(dout);
      const I* ix = static_cast<const I*>(indices);
      T* dw = static_cast<T*>(dweight);
      if (uint64_t(rows - 1) <= UINT32_MAX)
        backward_sorted<T, I, uint32_t>(g, ix, dw, n, dim, rows, padding_idx, st);
      else
        backward_sorted<T, I, uint64_t>(g, ix, dw, n, dim, rows, padding_idx, st);
    });
  });
}

namespace {
__global__ void padded_position_ids_kernel(const int64_t* __restrict__ ids, int64_t* __restrict__ pos, int64_t B,
                                           int64_t T, int64_t pad) {
  for (int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; b < B; b += int64_t(gridDim.x) * blockDim.x)
    padded_positions_row(ids + b * T, pos + b * T, T, pad);
}
}  // namespace

void padded_position_ids_cuda(const int64_t* ids, int64_t* pos, int64_t B, int64_t T, int64_t pad, cudaStream_t st) {
  if (B == 0 || T == 0) return;
  padded_position_ids_kernel<<<grid_for(B), kBlock, 0, st>>>(ids, pos, B, T, pad);
  CUDA_CHECK_LAUNCH();
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
