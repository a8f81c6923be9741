// sort_methods.cu — the GPU halves of the sort-based encoders: top-k selection, exact sortquant buckets and kmeans on
// CUB's stable radix sort, plus the packing kernels. Not the host logic (topk.cpp, sortquant.cpp, kmeans.cpp decide
// sizes and tables); every code rule comes from the EP_HD helpers the CPU encoders use.
#include <cuda_runtime.h>

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include <cmath>
#include <cstdint>

#include "compress/bitpack.h"
#include "compress/compress_kernels.h"
#include "compress/quant_math.h"
#include "compress/sort_keys.h"
#include "engine/check.h"
#include "engine/cuda/launch.cuh"

namespace ep::compress {

namespace {

__global__ void nonfinite_f64_kernel(const double* __restrict__ x, int64_t n, int* __restrict__ flag) {
  bool bad = false;
  EP_GRID_STRIDE(i, n) bad = bad || !isfinite(x[i]);
  if (bad) atomicExch(flag, 1);
}

// The radix-sort keys of x (by magnitude or by value, sort_keys.h) and, when `iota` is given, the indices 0..n-1.
struct MagnitudeKey {
  template <class T> __device__ auto operator()(T v) const { return magnitude_key(v); }
};
struct ValueKey {
  template <class T> __device__ auto operator()(T v) const { return value_key(v); }
};
template <class Key, class T, class K>
__global__ void keys_kernel(const T* __restrict__ x, int64_t n, K* __restrict__ keys, uint32_t* __restrict__ iota) {
  EP_GRID_STRIDE(i, n) {
    keys[i] = Key()(x[i]);
    if (iota) iota[i] = uint32_t(i);
  }
}

template <class T>
__global__ void gather_values_kernel(const T* __restrict__ x, const uint32_t* __restrict__ idx, int64_t k,
                                     float* __restrict__ out) {
  EP_GRID_STRIDE(j, k) out[j] = float(x[idx[j]]);
}

// One thread per group of 8 values: a group spans exactly `bits` whole bytes.
__global__ void pack_u32_kernel(const uint32_t* __restrict__ v, int64_t k, int bits, uint8_t* __restrict__ codes) {
  const int64_t groups = (k + 7) / 8;
  EP_GRID_STRIDE(g, groups) {
    const int64_t base = g * 8;
    const int count = k - base < 8 ? int(k - base) : 8;
    uint32_t c[8];
    for (int j = 0; j < count; ++j) c[j] = v[base + j];
    pack_group(c, count, bits, codes + uint64_t(g) * uint64_t(bits));
  }
}

// Byte b of the bitmap: the sorted indices inside [8b, 8b + 8) are found by binary search, so each byte has one writer.
__global__ void bitmap_kernel(const uint32_t* __restrict__ idx, int64_t k, int64_t nbytes,
                              uint8_t* __restrict__ bitmap) {
  EP_GRID_STRIDE(b, nbytes) {
    int64_t lo = 0, hi = k;  // first j with idx[j] >= 8b
    const uint64_t first = uint64_t(b) * 8;
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (uint64_t(idx[mid]) < first) lo = mid + 1;
      else hi = mid;
    }
    uint32_t byte = 0;
    for (int64_t j = lo; j < k && uint64_t(idx[j]) < first + 8; ++j) byte |= 1u << (idx[j] - first);
    bitmap[b] = uint8_t(byte);
  }
}

template <class K>
__global__ void exact_buckets_kernel(const K* __restrict__ keys, const uint32_t* __restrict__ idx, int64_t n, int Kb,
                                     uint16_t* __restrict__ bucket, double* __restrict__ lo_hi) {
  EP_GRID_STRIDE(j, n) bucket[idx[j]] = uint16_t(bucket_of_position(n, Kb, j));
  EP_GRID_STRIDE(b, int64_t(Kb)) {
    const int64_t s = bucket_start(n, Kb, b), e = bucket_start(n, Kb, b + 1);
    lo_hi[2 * b] = e > s ? value_of_key(keys[s]) : 1.0;
    lo_hi[2 * b + 1] = e > s ? value_of_key(keys[e - 1]) : 0.0;
  }
}

template <class T>
__global__ void sortquant_buckets_encode_kernel(const T* __restrict__ x, int64_t n,
                                                const uint16_t* __restrict__ bucket, const float* __restrict__ table,
                                                int bits, int split, uint8_t* __restrict__ codes) {
  const uint32_t levels = (1u << bits) - 1;
  const int64_t groups = (n + 7) / 8;
  EP_GRID_STRIDE(g, groups) {
    uint32_t c[8];
    const int64_t base = g * 8;
    const int count = n - base < 8 ? int(n - base) : 8;
    for (int j = 0; j < count; ++j) {
      const uint32_t b = bucket[base + j];
      c[j] = (b << bits) |
             quant_level(double(x[base + j]), double(table[2 * b]), double(table[2 * b + 1]), levels, -1.0);
    }
    pack_group(c, count, bits + split, codes + uint64_t(g) * uint64_t(bits + split));
  }
}

template <class K>
__global__ void keys_to_values_kernel(const K* __restrict__ keys, int64_t n, double* __restrict__ out) {
  EP_GRID_STRIDE(i, n) out[i] = value_of_key(keys[i]);
}

// The sampled sortquant's thresholds from the sorted sample: the same positions as sample_thresholds() on the host.
__global__ void sample_thresholds_kernel(const uint32_t* __restrict__ keys, int64_t m, int K,
                                         double* __restrict__ thresholds) {
  EP_GRID_STRIDE(i, int64_t(K - 1)) {
    int64_t pos = ((i + 1) * m + K - 1) / K - 1;
    if (pos < 0) pos = 0;
    thresholds[i] = value_of_key(keys[pos]);
  }
}

__global__ void kmeans_init_kernel(const double* __restrict__ sorted, int64_t n, int K, float* __restrict__ c) {
  EP_GRID_STRIDE(j, int64_t(K)) {
    const double pos = (double(j) + 0.5) / double(K) * double(n);  // the CPU's expression, operation by operation
    int64_t qi = int64_t(pos);
    if (qi > n - 1) qi = n - 1;
    c[j] = float(sorted[qi]) + 0.0f;
  }
}

// Index of the first element > v in sorted[0..n) (std::upper_bound).
__device__ __forceinline__ int64_t upper_bound_of(const double* sorted, int64_t n, double v) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (!(v < sorted[mid])) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

__global__ void kmeans_update_kernel(const double* __restrict__ sorted, const double* __restrict__ prefix, int64_t n,
                                     const double* __restrict__ cuts, const float* __restrict__ c, int K,
                                     float* __restrict__ next) {
  EP_GRID_STRIDE(j, int64_t(K)) {
    // cuts are non-decreasing, so upper_bound over the whole array equals the CPU's search from the previous end
    const int64_t begin = j == 0 ? 0 : upper_bound_of(sorted, n, cuts[j - 1]);
    const int64_t end = j + 1 < K ? upper_bound_of(sorted, n, cuts[j]) : n;
    if (end > begin) {
      double mean = __ddiv_rn(__dsub_rn(prefix[end], prefix[begin]), double(end - begin));
      mean = mean < sorted[begin] ? sorted[begin] : (sorted[end - 1] < mean ? sorted[end - 1] : mean);
      next[j] = float(mean) + 0.0f;
    } else {
      next[j] = c[j];
    }
  }
}

template <class T>
__global__ void kmeans_assign_kernel(const T* __restrict__ x, int64_t n, const double* __restrict__ cuts, int K,
                                     int bits, uint8_t* __restrict__ codes) {
  const int64_t groups = (n + 7) / 8;
  EP_GRID_STRIDE(g, groups) {
    uint32_t c[8];
    const int64_t base = g * 8;
    const int count = n - base < 8 ? int(n - base) : 8;
    for (int j = 0; j < count; ++j) {
      const double v = double(x[base + j]);
      int lo = 0, hi = K - 1;  // first cut >= v (std::lower_bound), K - 1 when none
      while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (cuts[mid] < v) lo = mid + 1;
        else hi = mid;
      }
      c[j] = uint32_t(lo);
    }
    pack_group(c, count, bits, codes + uint64_t(g) * uint64_t(bits));
  }
}

__global__ void kmeans_decode_kernel(const uint8_t* __restrict__ codes, uint64_t nbytes, int64_t n, int bits,
                                     const float* __restrict__ table, float* __restrict__ out) {
  EP_GRID_STRIDE(i, n) out[i] = table[unpack_code(codes, nbytes, uint64_t(i), bits)];
}

__global__ void topk_scatter_indices_kernel(const uint8_t* __restrict__ codes, uint64_t nbytes, int64_t k, int bits,
                                            const float* __restrict__ values, float* __restrict__ out) {
  EP_GRID_STRIDE(j, k) out[unpack_code(codes, nbytes, uint64_t(j), bits)] = values[j];
}

__global__ void popcount_bytes_kernel(const uint8_t* __restrict__ bitmap, int64_t nbytes, int32_t* __restrict__ counts) {
  EP_GRID_STRIDE(b, nbytes) counts[b] = __popc(uint32_t(bitmap[b]));
}

__global__ void topk_scatter_bitmap_kernel(const uint8_t* __restrict__ bitmap, int64_t nbytes,
                                           const int32_t* __restrict__ offsets, const float* __restrict__ values,
                                           float* __restrict__ out) {
  EP_GRID_STRIDE(b, nbytes) {
    int64_t j = offsets[b];
    const uint32_t byte = bitmap[b];
    for (int bit = 0; bit < 8; ++bit)
      if (byte >> bit & 1u) out[b * 8 + bit] = values[j++];
  }
}

void check_items(int64_t n, const char* what) {
  EP_CHECK(n >= 0 && n < (int64_t(1) << 31), ValueError, "[", what, "] the GPU sort takes fewer than 2^31 elements, got ",
           n);
}

}  // namespace

void nonfinite_f64_cuda(const double* x, int64_t n, int* flag, cudaStream_t st) {
  if (n == 0) return;
  nonfinite_f64_kernel<<<grid_for(n), kBlock, 0, st>>>(x, n, flag);
  CUDA_CHECK_LAUNCH();
}

namespace {
template <class Key> void launch_keys(const void* x, bool f64, int64_t n, void* keys, uint32_t* iota, cudaStream_t st) {
  if (n == 0) return;
  if (f64)
    keys_kernel<Key><<<grid_for(n), kBlock, 0, st>>>(static_cast<const double*>(x), n, static_cast<uint64_t*>(keys),
                                                     iota);
  else
    keys_kernel<Key><<<grid_for(n), kBlock, 0, st>>>(static_cast<const float*>(x), n, static_cast<uint32_t*>(keys),
                                                     iota);
  CUDA_CHECK_LAUNCH();
}
}  // namespace

void magnitude_keys_cuda(const void* x, bool f64, int64_t n, void* keys, uint32_t* iota, cudaStream_t st) {
  launch_keys<MagnitudeKey>(x, f64, n, keys, iota, st);
}

void value_keys_cuda(const void* x, bool f64, int64_t n, void* keys, uint32_t* iota, cudaStream_t st) {
  launch_keys<ValueKey>(x, f64, n, keys, iota, st);
}

void sort_pairs_cuda(void* temp, size_t* temp_bytes, const void* keys_in, void* keys_out, const uint32_t* values_in,
                     uint32_t* values_out, int64_t n, bool wide, bool descending, cudaStream_t st) {
  check_items(n, "compress sort");
  const int items = int(n);
  if (wide) {
    const auto* ki = static_cast<const uint64_t*>(keys_in);
    auto* ko = static_cast<uint64_t*>(keys_out);
    CUDA_CHECK(descending ? cub::DeviceRadixSort::SortPairsDescending(temp, *temp_bytes, ki, ko, values_in,
                                                                      values_out, items, 0, 64, st)
                          : cub::DeviceRadixSort::SortPairs(temp, *temp_bytes, ki, ko, values_in, values_out, items,
                                                            0, 64, st));
  } else {
    const auto* ki = static_cast<const uint32_t*>(keys_in);
    auto* ko = static_cast<uint32_t*>(keys_out);
    CUDA_CHECK(descending ? cub::DeviceRadixSort::SortPairsDescending(temp, *temp_bytes, ki, ko, values_in,
                                                                      values_out, items, 0, 32, st)
                          : cub::DeviceRadixSort::SortPairs(temp, *temp_bytes, ki, ko, values_in, values_out, items,
                                                            0, 32, st));
  }
}

void sort_keys_cuda(void* temp, size_t* temp_bytes, const void* keys_in, void* keys_out, int64_t n, bool wide,
                    int end_bit, cudaStream_t st) {
  check_items(n, "compress sort");
  const int items = int(n);
  if (wide)
    CUDA_CHECK(cub::DeviceRadixSort::SortKeys(temp, *temp_bytes, static_cast<const uint64_t*>(keys_in),
                                              static_cast<uint64_t*>(keys_out), items, 0, end_bit, st));
  else
    CUDA_CHECK(cub::DeviceRadixSort::SortKeys(temp, *temp_bytes, static_cast<const uint32_t*>(keys_in),
                                              static_cast<uint32_t*>(keys_out), items, 0, end_bit, st));
}

void gather_values_cuda(const void* x, bool f64, const uint32_t* idx, int64_t k, float* out, cudaStream_t st) {
  if (k == 0) return;
  if (f64) gather_values_kernel<<<grid_for(k), kBlock, 0, st>>>(static_cast<const double*>(x), idx, k, out);
  else gather_values_kernel<<<grid_for(k), kBlock, 0, st>>>(static_cast<const float*>(x), idx, k, out);
  CUDA_CHECK_LAUNCH();
}

void pack_u32_cuda(const uint32_t* values, int64_t k, int bits, uint8_t* codes, cudaStream_t st) {
  if (k == 0) return;
  pack_u32_kernel<<<grid_for((k + 7) / 8), kBlock, 0, st>>>(values, k, bits, codes);
  CUDA_CHECK_LAUNCH();
}

void bitmap_of_sorted_cuda(const uint32_t* idx, int64_t k, int64_t n, uint8_t* bitmap, cudaStream_t st) {
  const int64_t nbytes = (n + 7) / 8;
  if (nbytes == 0) return;
  bitmap_kernel<<<grid_for(nbytes), kBlock, 0, st>>>(idx, k, nbytes, bitmap);
  CUDA_CHECK_LAUNCH();
}

void exact_buckets_cuda(const void* sorted_keys, const uint32_t* sorted_idx, bool wide, int64_t n, int K,
                        uint16_t* bucket, double* lo_hi, cudaStream_t st) {
  EP_CHECK(K >= 1 && K <= (1 << 15), ValueError, "[sortquant] 1..2^15 buckets, got ", K);
  if (n == 0) return;
  const unsigned blocks = grid_for(n > K ? n : K);
  if (wide)
    exact_buckets_kernel<<<blocks, kBlock, 0, st>>>(static_cast<const uint64_t*>(sorted_keys), sorted_idx, n, K,
                                                      bucket, lo_hi);
  else
    exact_buckets_kernel<<<blocks, kBlock, 0, st>>>(static_cast<const uint32_t*>(sorted_keys), sorted_idx, n, K,
                                                      bucket, lo_hi);
  CUDA_CHECK_LAUNCH();
}

void sortquant_encode_buckets_cuda(const void* x, bool f64, int64_t n, const uint16_t* bucket, const float* table,
                                   int bits, int split, uint8_t* codes, cudaStream_t st) {
  if (n == 0) return;
  const unsigned blocks = grid_for((n + 7) / 8);
  if (f64)
    sortquant_buckets_encode_kernel<<<blocks, kBlock, 0, st>>>(static_cast<const double*>(x), n, bucket, table,
                                                                 bits, split, codes);
  else
    sortquant_buckets_encode_kernel<<<blocks, kBlock, 0, st>>>(static_cast<const float*>(x), n, bucket, table,
                                                                 bits, split, codes);
  CUDA_CHECK_LAUNCH();
}

void keys_to_values_cuda(const void* keys, bool wide, int64_t n, double* out, cudaStream_t st) {
  if (n == 0) return;
  if (wide) keys_to_values_kernel<<<grid_for(n), kBlock, 0, st>>>(static_cast<const uint64_t*>(keys), n, out);
  else keys_to_values_kernel<<<grid_for(n), kBlock, 0, st>>>(static_cast<const uint32_t*>(keys), n, out);
  CUDA_CHECK_LAUNCH();
}

void prefix_sum_cuda(void* temp, size_t* temp_bytes, const double* in, double* prefix, int64_t n, cudaStream_t st) {
  check_items(n, "kmeans");
  if (temp != nullptr) CUDA_CHECK(cudaMemsetAsync(prefix, 0, sizeof(double), st));
  CUDA_CHECK(cub::DeviceScan::InclusiveSum(temp, *temp_bytes, in, prefix + 1, int(n), st));
}

void sample_thresholds_cuda(const void* sorted_keys, int64_t m, int K, double* thresholds, cudaStream_t st) {
  if (K < 2 || m == 0) return;
  sample_thresholds_kernel<<<grid_for(K - 1), kBlock, 0, st>>>(static_cast<const uint32_t*>(sorted_keys), m, K,
                                                               thresholds);
  CUDA_CHECK_LAUNCH();
}

void kmeans_init_cuda(const double* sorted, int64_t n, int K, float* c, cudaStream_t st) {
  if (n == 0) return;
  kmeans_init_kernel<<<grid_for(K), kBlock, 0, st>>>(sorted, n, K, c);
  CUDA_CHECK_LAUNCH();
}

void kmeans_update_cuda(const double* sorted, const double* prefix, int64_t n, const double* cuts, const float* c,
                        int K, float* next, cudaStream_t st) {
  kmeans_update_kernel<<<grid_for(K), kBlock, 0, st>>>(sorted, prefix, n, cuts, c, K, next);
  CUDA_CHECK_LAUNCH();
}

void kmeans_assign_cuda(const void* x, bool f64, int64_t n, const double* cuts, int K, int bits, uint8_t* codes,
                        cudaStream_t st) {
  if (n == 0) return;
  const unsigned blocks = grid_for((n + 7) / 8);
  if (f64)
    kmeans_assign_kernel<<<blocks, kBlock, 0, st>>>(static_cast<const double*>(x), n, cuts, K, bits, codes);
  else
    kmeans_assign_kernel<<<blocks, kBlock, 0, st>>>(static_cast<const float*>(x), n, cuts, K, bits, codes);
  CUDA_CHECK_LAUNCH();
}

void kmeans_decode_cuda(const uint8_t* codes, uint64_t nbytes, int64_t n, int bits, const float* table, float* out,
                        cudaStream_t st) {
  if (n == 0) return;
  kmeans_decode_kernel<<<grid_for(n), kBlock, 0, st>>>(codes, nbytes, n, bits, table, out);
  CUDA_CHECK_LAUNCH();
}

void topk_scatter_indices_cuda(const uint8_t* codes, uint64_t nbytes, int64_t k, int index_bits, const float* values,
                               float* out, cudaStream_t st) {
  if (k == 0) return;
  topk_scatter_indices_kernel<<<grid_for(k), kBlock, 0, st>>>(codes, nbytes, k, index_bits, values, out);
  CUDA_CHECK_LAUNCH();
}

void topk_scatter_bitmap_cuda(void* temp, size_t* temp_bytes, const uint8_t* bitmap, int64_t nbytes,
                              const float* values, int32_t* counts, int32_t* offsets, float* out, cudaStream_t st) {
  check_items(nbytes, "topk");
  if (temp == nullptr) {
    CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temp, *temp_bytes, counts, offsets, int(nbytes), st));
    return;
  }
  if (nbytes == 0) return;
  popcount_bytes_kernel<<<grid_for(nbytes), kBlock, 0, st>>>(bitmap, nbytes, counts);
  CUDA_CHECK_LAUNCH();
  CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temp, *temp_bytes, counts, offsets, int(nbytes), st));
  topk_scatter_bitmap_kernel<<<grid_for(nbytes), kBlock, 0, st>>>(bitmap, nbytes, offsets, values, out);
  CUDA_CHECK_LAUNCH();
}

}  // namespace ep::compress
