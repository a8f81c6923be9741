// sort_methods.cu — the GPU halves of the sort-based encoders: top-k by radix selection, exact sortquant buckets and
// kmeans on CUB's stable radix sort, plus the packing kernels. Not the host logic (topk.cpp, sortquant.cpp, kmeans.cpp
// decide sizes and tables); every code rule comes from the EP_HD helpers the CPU encoders use.
#include <cuda_runtime.h>

#include <cub/block/block_load.cuh>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
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

// The radix-sort keys of x by value (sort_keys.h) and, when `iota` is given, the indices 0..n-1.
template <class T, class K>
__global__ void value_keys_kernel(const T* __restrict__ x, int64_t n, K* __restrict__ keys,
                                  uint32_t* __restrict__ iota) {
  EP_GRID_STRIDE(i, n) {
    keys[i] = value_key(x[i]);
    if (iota) iota[i] = uint32_t(i);
  }
}

// ---- top-k by radix selection (sort_keys.h has the steps' arithmetic) ----
// Where the selection stands, in device memory: the digits chosen so far (prefix, under mask) and the rank still
// sought among the keys that match them. The host never reads it.
struct SelectState {
  uint64_t prefix, mask, remaining;
};

__global__ void select_init_kernel(SelectState* __restrict__ state, uint32_t* __restrict__ hist, int bins,
                                   uint64_t k) {
  for (int b = threadIdx.x; b < bins; b += blockDim.x) hist[b] = 0;
  if (threadIdx.x == 0) *state = SelectState{0, 0, k};
}

// One pass's histogram of the digit at `shift` over the keys matching the chosen prefix. Every lane of a warp runs
// the same number of iterations (the loop steps by whole blocks), so __match_any_sync can group the lanes holding one
// digit and let one of them add the group's count: magnitudes crowd into a few exponent digits, and one shared atomic
// per lane would serialize on them.
template <class T, class K>
__global__ void radix_histogram_kernel(const T* __restrict__ x, int64_t n, const SelectState* __restrict__ state,
                                       int shift, uint32_t* __restrict__ hist) {
  __shared__ uint32_t s_hist[kRadixBins];
  for (int b = threadIdx.x; b < kRadixBins; b += blockDim.x) s_hist[b] = 0;
  __syncthreads();
  const K prefix = K(state->prefix), mask = K(state->mask);
  for (int64_t base = int64_t(blockIdx.x) * blockDim.x; base < n; base += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = base + threadIdx.x;
    int digit = kRadixBins;  // not counted
    if (i < n) {
      const K key = magnitude_key(x[i]);
      if ((key & mask) == prefix) digit = int((key >> shift) & K(kRadixBins - 1));
    }
    const unsigned peers = __match_any_sync(0xffffffffu, digit);
    if (digit < kRadixBins && int(threadIdx.x & 31) == __ffs(peers) - 1)
      atomicAdd(&s_hist[digit], uint32_t(__popc(peers)));
  }
  __syncthreads();
  for (int b = threadIdx.x; b < kRadixBins; b += blockDim.x)
    if (s_hist[b] != 0) atomicAdd(&hist[b], s_hist[b]);
}

__global__ void radix_pick_kernel(const uint32_t* __restrict__ hist, int shift, SelectState* __restrict__ state) {
  uint64_t remaining = state->remaining;
  const int digit = radix_pick_digit(hist, &remaining);
  state->prefix |= uint64_t(digit) << shift;
  state->mask |= uint64_t(kRadixBins - 1) << shift;
  state->remaining = remaining;
}

// The selection's last two steps work on tiles of kSelectTile elements. Counts are packed as
// (keys above t) << 32 | (keys equal to t): neither total reaches 2^31 (n < 2^31), so sums never carry across.
constexpr int kSelectItems = 8, kSelectTile = kBlock * kSelectItems;
constexpr uint64_t kAboveOne = uint64_t(1) << 32;

template <class T, class K>
__global__ void select_count_kernel(const T* __restrict__ x, int64_t n, const SelectState* __restrict__ state,
                                    uint64_t* __restrict__ tile_counts) {
  using Reduce = cub::BlockReduce<uint64_t, kBlock>;
  __shared__ typename Reduce::TempStorage tmp;
  const K t = K(state->prefix);
  const int64_t base = int64_t(blockIdx.x) * kSelectTile;
  uint64_t mine = 0;
  for (int j = 0; j < kSelectItems; ++j) {  // striped, so reads coalesce; a count does not depend on the order
    const int64_t i = base + int64_t(j) * kBlock + threadIdx.x;
    if (i < n) {
      const K key = magnitude_key(x[i]);
      mine += key > t ? kAboveOne : (key == t ? 1u : 0u);
    }
  }
  const uint64_t sum = Reduce(tmp).Sum(mine);
  if (threadIdx.x == 0) tile_counts[blockIdx.x] = sum;
}

// Each thread takes kSelectItems consecutive elements (loaded through shared memory so reads still coalesce); a block
// scan of their packed counts plus the tile's offset gives every element its counts before it in index order, and
// topk_slot its place among the ascending kept positions.
template <class T, class K>
__global__ void select_write_kernel(const T* __restrict__ x, int64_t n, const SelectState* __restrict__ state,
                                    const uint64_t* __restrict__ tile_offsets, uint32_t* __restrict__ kept) {
  using Load = cub::BlockLoad<T, kBlock, kSelectItems, cub::BLOCK_LOAD_TRANSPOSE>;
  using Scan = cub::BlockScan<uint64_t, kBlock>;
  __shared__ typename Load::TempStorage load_tmp;
  __shared__ typename Scan::TempStorage scan_tmp;
  const K t = K(state->prefix);
  const uint64_t take_eq = state->remaining;
  const int64_t base = int64_t(blockIdx.x) * kSelectTile;
  const int valid = int(n - base < kSelectTile ? n - base : kSelectTile);
  T v[kSelectItems];
  Load(load_tmp).Load(x + base, v, valid, T(0));
  K keys[kSelectItems];
  uint64_t mine = 0;
  for (int j = 0; j < kSelectItems; ++j) {
    keys[j] = magnitude_key(v[j]);
    if (int(threadIdx.x) * kSelectItems + j < valid) mine += keys[j] > t ? kAboveOne : (keys[j] == t ? 1u : 0u);
  }
  uint64_t before;
  Scan(scan_tmp).ExclusiveSum(mine, before);
  before += tile_offsets[blockIdx.x];
  uint64_t above = before >> 32, equal = before & 0xffffffffu;
  for (int j = 0; j < kSelectItems; ++j) {
    const int local = int(threadIdx.x) * kSelectItems + j;
    if (local >= valid) break;
    if (keys[j] > t) {
      kept[topk_slot(above, equal, take_eq)] = uint32_t(base + local);
      ++above;
    } else if (keys[j] == t) {
      if (equal < take_eq) kept[topk_slot(above, equal, take_eq)] = uint32_t(base + local);
      ++equal;
    }
  }
}

template <class T, class K>
void launch_topk_select(const T* x, int64_t n, int64_t k, SelectState* state, uint32_t* hist, uint64_t* tile_counts,
                        uint64_t* tile_offsets, void* scan_temp, size_t scan_bytes, uint32_t* kept, cudaStream_t st) {
  constexpr int passes = int(sizeof(K)) * 8 / kRadixBits;
  const int64_t tiles = (n + kSelectTile - 1) / kSelectTile;
  // At most kReduceBlocks blocks, each adding its (at most 256) non-zero bins to global memory once, at the end.
  const unsigned hist_blocks = std::min(grid_for(n), unsigned(kReduceBlocks));
  select_init_kernel<<<1, kBlock, 0, st>>>(state, hist, passes * kRadixBins, uint64_t(k));
  CUDA_CHECK_LAUNCH();
  for (int p = 0; p < passes; ++p) {
    const int shift = (passes - 1 - p) * kRadixBits;
    radix_histogram_kernel<T, K><<<hist_blocks, kBlock, 0, st>>>(x, n, state, shift, hist + p * kRadixBins);
    CUDA_CHECK_LAUNCH();
    radix_pick_kernel<<<1, 1, 0, st>>>(hist + p * kRadixBins, shift, state);
    CUDA_CHECK_LAUNCH();
  }
  select_count_kernel<T, K><<<unsigned(tiles), kBlock, 0, st>>>(x, n, state, tile_counts);
  CUDA_CHECK_LAUNCH();
  CUDA_CHECK(cub::DeviceScan::ExclusiveSum(scan_temp, scan_bytes, tile_counts, tile_offsets, int(tiles), st));
  select_write_kernel<T, K><<<unsigned(tiles), kBlock, 0, st>>>(x, n, state, tile_offsets, kept);
  CUDA_CHECK_LAUNCH();
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
__global__ void kmeans_assign_kernel(const T* __restrict__ x, int64_t n, const double* __restrict__ cuts, int bits,
                                     uint8_t* __restrict__ codes) {
  const int64_t groups = (n + 7) / 8;
  EP_GRID_STRIDE(g, groups) {
    uint32_t c[8];
    const int64_t base = g * 8;
    const int count = n - base < 8 ? int(n - base) : 8;
    for (int j = 0; j < count; ++j) c[j] = nearest_centroid(cuts, bits, double(x[base + j]));  // the CPU's rule
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
  EP_CHECK(n >= 0 && n < (int64_t(1) << 31), ValueError, "[", what,
           "] the GPU sort and selection take fewer than 2^31 elements, got ", n);
}

}  // namespace

void nonfinite_f64_cuda(const double* x, int64_t n, int* flag, cudaStream_t st) {
  if (n == 0) return;
  nonfinite_f64_kernel<<<grid_for(n), kBlock, 0, st>>>(x, n, flag);
  CUDA_CHECK_LAUNCH();
}

void value_keys_cuda(const void* x, bool f64, int64_t n, void* keys, uint32_t* iota, cudaStream_t st) {
  if (n == 0) return;
  if (f64)
    value_keys_kernel<<<grid_for(n), kBlock, 0, st>>>(static_cast<const double*>(x), n, static_cast<uint64_t*>(keys),
                                                      iota);
  else
    value_keys_kernel<<<grid_for(n), kBlock, 0, st>>>(static_cast<const float*>(x), n, static_cast<uint32_t*>(keys),
                                                      iota);
  CUDA_CHECK_LAUNCH();
}

void topk_select_cuda(void* temp, size_t* temp_bytes, const void* x, bool f64, int64_t n, int64_t k, uint32_t* kept,
                      cudaStream_t st) {
  check_items(n, "topk");
  EP_CHECK(k >= 1 && k <= n, ValueError, "[topk] the GPU selection keeps 1..", n, " elements, got ", k);
  const int64_t tiles = (n + kSelectTile - 1) / kSelectTile;
  size_t scan_bytes = 0;
  CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, scan_bytes, static_cast<uint64_t*>(nullptr),
                                           static_cast<uint64_t*>(nullptr), int(tiles), st));
  // temp holds, each 256-byte aligned: the state, one histogram per pass (8 for u64 keys), the tile counts, their
  // offsets and the scan's own temporary storage.
  auto aligned = [](size_t b) { return (b + 255) / 256 * 256; };
  const size_t state_bytes = aligned(sizeof(SelectState)), hist_bytes = aligned(8 * kRadixBins * sizeof(uint32_t));
  const size_t tile_bytes = aligned(size_t(tiles) * sizeof(uint64_t));
  const size_t total = state_bytes + hist_bytes + 2 * tile_bytes + scan_bytes;
  if (temp == nullptr) {
    *temp_bytes = total;
    return;
  }
  EP_CHECK(*temp_bytes >= total, ValueError, "[topk] selection scratch of ", *temp_bytes, " bytes, ", total,
           " needed");
  auto* base = static_cast<char*>(temp);
  auto* state = reinterpret_cast<SelectState*>(base);
  auto* hist = reinterpret_cast<uint32_t*>(base + state_bytes);
  auto* tile_counts = reinterpret_cast<uint64_t*>(base + state_bytes + hist_bytes);
  auto* tile_offsets = reinterpret_cast<uint64_t*>(base + state_bytes + hist_bytes + tile_bytes);
  void* scan_temp = base + state_bytes + hist_bytes + 2 * tile_bytes;
  if (f64)
    launch_topk_select<double, uint64_t>(static_cast<const double*>(x), n, k, state, hist, tile_counts, tile_offsets,
                                         scan_temp, scan_bytes, kept, st);
  else
    launch_topk_select<float, uint32_t>(static_cast<const float*>(x), n, k, state, hist, tile_counts, tile_offsets,
                                        scan_temp, scan_bytes, kept, st);
}

void sort_pairs_cuda(void* temp, size_t* temp_bytes, const void* keys_in, void* keys_out, const uint32_t* values_in,
                     uint32_t* values_out, int64_t n, bool wide, cudaStream_t st) {
  check_items(n, "compress sort");
  const int items = int(n);
  if (wide)
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, *temp_bytes, static_cast<const uint64_t*>(keys_in),
                                               static_cast<uint64_t*>(keys_out), values_in, values_out, items, 0, 64,
                                               st));
  else
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, *temp_bytes, static_cast<const uint32_t*>(keys_in),
                                               static_cast<uint32_t*>(keys_out), values_in, values_out, items, 0, 32,
                                               st));
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

void kmeans_assign_cuda(const void* x, bool f64, int64_t n, const double* cuts, int bits, uint8_t* codes,
                        cudaStream_t st) {
  if (n == 0) return;
  const unsigned blocks = grid_for((n + 7) / 8);
  if (f64)
    kmeans_assign_kernel<<<blocks, kBlock, 0, st>>>(static_cast<const double*>(x), n, cuts, bits, codes);
  else
    kmeans_assign_kernel<<<blocks, kBlock, 0, st>>>(static_cast<const float*>(x), n, cuts, bits, codes);
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
