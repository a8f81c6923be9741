// methods.h — the compression methods (one .cpp each) with their options, spec keys and defaults.
// Not the wire format (compress/payload.h) nor the autograd op (compress/compression_layer.h).
//
// Spec keys (defaults in parentheses), all optional:
//   none
//   quant      bits (8) 1..16, per=tensor|channel (tensor), axis (1; channels along this dim, 0 for 1-D input),
//              round=nearest|stochastic (nearest), seed (0), zero=free|exact (free: the seeds' min-max grid; exact:
//              0 is a level when the range straddles it, so exact zeros decode to 0)
//   sortquant  bits (6) per bucket, split (2) bits -> 2^split buckets, bits+split <= 16, mode=exact|sampled (exact),
//              sample (65536) elements drawn for the sampled thresholds, seed (0)
//   topk       ratio (0.5) kept fraction in (0, 1], mask=reuse|own (reuse: as a backward compressor of a layer whose
//              forward is topk, keep the forward's positions, as the seeds do; own: select on the gradient itself)
//   kmeans     bits (4) 1..16 -> 2^bits centroids, iters (20) Lloyd iterations, 0 = quantile init only
//   lowrank    rank (4), iters (2) power iterations >= 1, warm=1|0 (1: keep P across calls), seed (0)
//   fp8        format=e4m3|e5m2 (e4m3), round=nearest|stochastic (nearest), seed (0)
// The seeds' "Sort Quantization 8bits (6bits 4split)" is sortquant:bits=6,split=2 (4 buckets, 8-bit codes).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "compress/compressor.h"
#include "engine/random.h"

namespace ep::compress {

class NoneCompressor final : public Compressor {
 public:
  Method method() const override { return Method::none; }
  std::string spec() const override { return "none"; }
  Payload encode(const Tensor& x, cudaStream_t stream = nullptr) override;
  std::unique_ptr<Compressor> fresh() const override { return std::make_unique<NoneCompressor>(); }
};

// Min-max uniform quantization: step = (max - min) / (2^b - 1), level = rint((x - min) / step) (half to even),
// x̂ = min + level * step. A constant tensor (or channel) has step 0 and decodes exactly. Stochastic rounding takes
// level = floor((x - min) / step + u), u ~ U[0,1) from Philox(seed, offset), so E[x̂] = x.
struct QuantOptions {
  int bits = 8;
  bool per_channel = false;
  int axis = 1;
  bool stochastic = false;
  uint64_t seed = 0;
  bool zero_exact = false;  // zero=exact: 0 is a level of the grid (quant_entry in quant_math.h)
};
class QuantCompressor final : public Compressor {
 public:
  explicit QuantCompressor(QuantOptions o) : opt_(o), gen_(o.seed) {}
  Method method() const override { return Method::quant; }
  std::string spec() const override;
  Payload encode(const Tensor& x, cudaStream_t stream = nullptr) override;
  std::unique_ptr<Compressor> fresh() const override { return std::make_unique<QuantCompressor>(opt_); }
  const QuantOptions& options() const { return opt_; }

 private:
  QuantOptions opt_;
  Generator gen_;
};

// The seeds' multi-split quantizer: 2^s buckets, each quantized min-max with b bits. `exact` sorts and cuts the
// sorted values into equal-count buckets (the first n mod 2^s get one extra element, as torch.tensor_split);
// `sampled` takes 2^s - 1 thresholds at the quantiles of a Philox sample of the whole tensor (not the seeds' first
// sample only) and buckets each element by binary search (x <= T_i goes to the first such bucket i). Either way each
// bucket's min/max come from its actual members, so every element decodes within its bucket's step/2.
struct SortquantOptions {
  int bits = 6;
  int split = 2;
  bool sampled = false;
  int64_t sample = 65536;
  uint64_t seed = 0;
};
// Sampled mode's K-1 thresholds: T_i is the sample's order statistic at ceil((i+1) m / K) - 1 (m = sample size;
// all 0 when m = 0). Found by selection around the wanted positions, O(m log K), not a full sort.
std::vector<double> sample_thresholds(std::vector<double> sample, int64_t K);

class SortquantCompressor final : public Compressor {
 public:
  explicit SortquantCompressor(SortquantOptions o) : opt_(o), gen_(o.seed) {}
  Method method() const override { return Method::sortquant; }
  std::string spec() const override;
  Payload encode(const Tensor& x, cudaStream_t stream = nullptr) override;
  std::unique_ptr<Compressor> fresh() const override { return std::make_unique<SortquantCompressor>(opt_); }

 private:
  Payload encode_cuda(const Tensor& x, cudaStream_t stream);
  Payload encode_exact_cuda(const Tensor& x, cudaStream_t stream);
  SortquantOptions opt_;
  Generator gen_;
};

// Keeps the k = ceil(ratio * n) elements of largest |x| (ties: the lower index wins, so the set is deterministic).
// The payload holds the kept values in index order plus their positions as packed indices or as a bitmap, whichever
// is smaller (a tie goes to the bitmap).
struct TopkOptions {
  double ratio = 0.5;
  bool reuse_mask = true;
};
class TopkCompressor final : public Compressor {
 public:
  explicit TopkCompressor(TopkOptions o) : opt_(o) {}
  Method method() const override { return Method::topk; }
  std::string spec() const override;
  Payload encode(const Tensor& x, cudaStream_t stream = nullptr) override;
  std::unique_ptr<Compressor> fresh() const override { return std::make_unique<TopkCompressor>(opt_); }
  const TopkOptions& options() const { return opt_; }
  // The positions (ascending flat indices) the last encode() kept: the mask the layer reuses for the gradient. A GPU
  // encode leaves them on the GPU; the first call after it copies them over (waiting for the GPU), so an encode whose
  // mask nobody asks for never waits.
  const std::vector<uint32_t>& last_indices() const;
  // The same positions where a GPU encode left them (i32 [k] on its GPU); undefined after a CPU encode or when k = 0.
  const Tensor& last_positions_on_device() const { return last_indices_device_; }
  // A topk payload of x restricted to `indices` (ascending, < numel): the seeds' g * mask with the forward's mask.
  static Payload encode_at(const Tensor& x, const std::vector<uint32_t>& indices);
  // The same with the positions on x's GPU as last_positions_on_device() gives them (a GPU encode's own, so not
  // checked again); elsewhere they are copied to the host and checked.
  static Payload encode_at(const Tensor& x, const Tensor& positions);
  // The positions a topk payload keeps (ascending), checked like decode checks them.
  static std::vector<uint32_t> positions(const Payload& p);

 private:
  TopkOptions opt_;
  mutable std::vector<uint32_t> last_indices_;
  Tensor last_indices_device_;  // a GPU encode's positions (i32 holding u32); copied by last_indices() when asked
  // Recorded on the encode's stream after the selection: the copy in last_indices() runs on the caller's stream, which
  // a non-blocking encode stream does not order.
  std::shared_ptr<Event> last_encode_done_;
};

// 1-D Lloyd k-means with 2^b centroids initialized at the quantiles (i + 0.5) / 2^b of the data. The data are sorted
// once; each iteration then costs O(2^b log n) through prefix sums, since 1-D clusters are contiguous runs of the
// sorted values. An empty cluster keeps its centroid, so the squared error never increases across iterations.
struct KmeansOptions {
  int bits = 4;
  int iters = 20;
};
class KmeansCompressor final : public Compressor {
 public:
  explicit KmeansCompressor(KmeansOptions o) : opt_(o) {}
  Method method() const override { return Method::kmeans; }
  std::string spec() const override;
  Payload encode(const Tensor& x, cudaStream_t stream = nullptr) override;
  std::unique_ptr<Compressor> fresh() const override { return std::make_unique<KmeansCompressor>(opt_); }

 private:
  KmeansOptions opt_;
};

// PowerSGD-style warm-started subspace iteration per matrix (lowrank_geometry() in payload.h says which matrices):
// for it in 0..iters-1: [last: P <- orth(P)]; Q <- M P; [last: Q <- orth(Q)]; P <- Mᵀ Q; then x̂ = Q Pᵀ = Q Qᵀ M.
// Orthonormalization (modified Gram-Schmidt, the thin QR's Q) runs on the last iteration as in the seeds; earlier
// iterations only rescale P's columns to unit norm (same subspace, no overflow: the seeds' values grew by σ₁² per
// iteration). P starts as Philox normals and, with warm=1, persists to the next call while the shape is unchanged.
// The rank used is min(rank, rows, cols).
struct LowrankOptions {
  int rank = 4;
  int iters = 2;
  bool warm = true;
  uint64_t seed = 0;
};
class LowrankCompressor final : public Compressor {
 public:
  explicit LowrankCompressor(LowrankOptions o) : opt_(o), gen_(o.seed) {}
  Method method() const override { return Method::lowrank; }
  std::string spec() const override;
  Payload encode(const Tensor& x, cudaStream_t stream = nullptr) override;
  std::unique_ptr<Compressor> fresh() const override { return std::make_unique<LowrankCompressor>(opt_); }

 private:
  LowrankOptions opt_;
  Generator gen_;
  Shape warm_shape_;
  std::vector<double> warm_p_;  // [matrices, cols, r] from the last call
};

// OCP FP8 (e4m3: bias 7, max 448, no infinities; e5m2: bias 15, max 57344) of x / scale, scale the smallest power
// of two with amax / scale <= max (1 for an all-zero tensor); nearest-even or stochastic rounding, saturating at
// ±max. Codes: compress/fp8.h.
struct Fp8Options {
  bool e5m2 = false;
  bool stochastic = false;
  uint64_t seed = 0;
};
class Fp8Compressor final : public Compressor {
 public:
  explicit Fp8Compressor(Fp8Options o) : opt_(o), gen_(o.seed) {}
  Method method() const override { return Method::fp8; }
  std::string spec() const override;
  Payload encode(const Tensor& x, cudaStream_t stream = nullptr) override;
  std::unique_ptr<Compressor> fresh() const override { return std::make_unique<Fp8Compressor>(opt_); }

 private:
  Fp8Options opt_;
  Generator gen_;
};

// Per-method factories (parse_compressor dispatches to them) and decoders (decode_payload dispatches to them). The
// decoders write p.numel() values of T; p has passed check_consistent().
std::unique_ptr<Compressor> make_none(SpecArgs& a);
std::unique_ptr<Compressor> make_quant(SpecArgs& a);
std::unique_ptr<Compressor> make_sortquant(SpecArgs& a);
std::unique_ptr<Compressor> make_topk(SpecArgs& a);
std::unique_ptr<Compressor> make_kmeans(SpecArgs& a);
std::unique_ptr<Compressor> make_lowrank(SpecArgs& a);
std::unique_ptr<Compressor> make_fp8(SpecArgs& a);
void decode_none(const Payload& p, void* out);
template <class T> void decode_quant(const Payload& p, T* out);
template <class T> void decode_sortquant(const Payload& p, T* out);
template <class T> void decode_topk(const Payload& p, T* out);
template <class T> void decode_kmeans(const Payload& p, T* out);
template <class T> void decode_lowrank(const Payload& p, T* out);
template <class T> void decode_fp8(const Payload& p, T* out);
void check_fp8_codes(const Payload& p);  // CompressError for a NaN/inf code (fp8 payloads)
// The codes of nearest rounding for f32 x[0..n) at a power-of-two scale: fp8_encode_f32(x[i] / scale, e5m2, false, 0)
// each, computed by vector code (the CPU encoder's path; tested against the scalar rule).
void encode_fp8_nearest(const float* x, int64_t n, float scale, bool e5m2, uint8_t* codes);
// CompressError unless a topk payload's positions are ascending, in range and exactly k (bitmap padding clear).
void check_topk_positions(const Payload& p);

}  // namespace ep::compress
