// quant.cpp — min-max uniform quantization, per tensor or per channel, nearest-even or stochastic rounding.
// Not the seeds' signed codes: levels are unsigned 0..2^b-1 and packed at exactly b bits; a constant tensor (step 0)
// decodes exactly instead of the seeds' NaN.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>

#include "compress/compress_kernels.h"
#include "compress/method_util.h"
#include "compress/methods.h"
#include "engine/dispatch.h"
#include "engine/philox.h"

namespace ep::compress {

std::unique_ptr<Compressor> make_quant(SpecArgs& a) {
  QuantOptions o;
  o.bits = int(a.get_int("bits", 8, 1, 16));
  o.per_channel = a.get_choice("per", "tensor", {"tensor", "channel"}) == "channel";
  o.axis = int(a.get_int("axis", 1, 0, kMaxPayloadDims - 1));
  o.stochastic = a.get_choice("round", "nearest", {"nearest", "stochastic"}) == "stochastic";
  o.seed = uint64_t(a.get_int("seed", 0, 0, std::numeric_limits<int64_t>::max()));
  o.zero_exact = a.get_choice("zero", "free", {"free", "exact"}) == "exact";
  return std::make_unique<QuantCompressor>(o);
}

std::string QuantCompressor::spec() const {
  return "quant:bits=" + std::to_string(opt_.bits) + ",per=" + (opt_.per_channel ? "channel" : "tensor") +
         ",axis=" + std::to_string(opt_.axis) + ",round=" + (opt_.stochastic ? "stochastic" : "nearest") +
         ",seed=" + std::to_string(opt_.seed) + ",zero=" + (opt_.zero_exact ? "exact" : "free");
}

namespace {

// Channel c of flat index i is (i / inner) % channels.
struct ChannelView {
  int64_t channels = 1, inner = 1;
  int64_t of(int64_t i) const { return channels == 1 ? 0 : (i / inner) % channels; }
};

ChannelView channel_view(const Shape& s, uint32_t channels, uint32_t axis) {
  ChannelView v;
  if (channels == 0) return v;
  v.channels = channels;
  for (size_t d = axis + 1; d < s.size(); ++d) v.inner *= s[d];
  return v;
}

typedef double Double2 __attribute__((vector_size(16)));  // two lanes of the level arithmetic

// x[0..2) as doubles.
inline Double2 load_double2(const float* x) {
  typedef float Float2 __attribute__((vector_size(8)));
  Float2 f;
  std::memcpy(&f, x, sizeof f);
  return __builtin_convertvector(f, Double2);
}
inline Double2 load_double2(const double* x) {
  Double2 d;
  std::memcpy(&d, x, sizeof d);
  return d;
}

// The nearest levels of x[0..m) against one table entry (mn, st): quant_level(x, mn, st, levels, -1) for each, with
// rint_half_even and clamp_level as lane selects so that it runs as vector code; the tests hold the two equal code
// for code.
template <class T>
void nearest_levels(const T* x, int64_t m, double mn, double st, uint32_t levels, uint32_t* out) {
  if (st == 0) {
    std::fill(out, out + m, 0u);
    return;
  }
  typedef int32_t Int2 __attribute__((vector_size(8)));
  const double big = 4503599627370496.0, top = double(levels);  // 2^52, as rint_half_even
  int64_t j = 0;
  for (; j + 2 <= m; j += 2) {
    const Double2 t = (load_double2(x + j) - mn) / st;
    const Double2 rounded = (t + big) - big;
    const Double2 r = (t < big / 2 && t > -big / 2) ? rounded : t;  // |t| < 2^51, false for NaN
    const Double2 above = r > 0 ? r : Double2{} + 0.0;               // !(r > 0), NaN included: level 0
    const Int2 level = __builtin_convertvector(above < top ? above : Double2{} + top, Int2);
    std::memcpy(out + j, &level, sizeof level);
  }
  for (; j < m; ++j) out[j] = quant_level(double(x[j]), mn, st, levels, -1.0);
}

// Calls run(j, end, c) for each stretch [j, end) of the block [i0, i0 + m) whose elements share channel c.
template <class Run>
void channel_runs(const ChannelView& cv, int64_t i0, int64_t m, Run&& run) {
  for (int64_t j = 0; j < m;) {
    const int64_t i = i0 + j, c = cv.of(i);
    const int64_t end = cv.channels == 1 ? m : std::min(m, (i / cv.inner + 1) * cv.inner - i0);
    run(j, end, c);
    j = end;
  }
}

template <class T>
void quant_encode(const T* x, int64_t n, const ChannelView& cv, int bits, bool zero_exact, bool stochastic,
                  uint64_t seed, uint64_t offset, std::vector<float>& table, uint8_t* codes) {
  const int64_t C = cv.channels;
  std::vector<double> lo(size_t(C), std::numeric_limits<double>::infinity());
  std::vector<double> hi(size_t(C), -std::numeric_limits<double>::infinity());
  if (C == 1) {
    value_range(x, n, lo[0], hi[0]);
  } else {  // channel c holds the runs x[(o * C + c) * inner ...] of `inner` elements, for each outer index o
    const int64_t outer = n == 0 ? 0 : n / (C * cv.inner);
#pragma omp parallel for if (n > (1 << 16))
    for (int64_t c = 0; c < C; ++c)
      for (int64_t o = 0; o < outer; ++o)
        lane_range(x + (o * C + c) * cv.inner, cv.inner, lo[size_t(c)], hi[size_t(c)]);
  }
  const uint32_t levels = (1u << bits) - 1;
  for (int64_t c = 0; c < C; ++c)
    quant_entry(lo[size_t(c)], hi[size_t(c)], levels, zero_exact, &table[size_t(2 * c)], &table[size_t(2 * c + 1)]);
  if (stochastic) {  // a Philox draw per element: the scalar rule, one code at a time
    pack_parallel(uint64_t(n), bits, codes, [&](uint64_t i) -> uint32_t {
      const int64_t c = cv.of(int64_t(i));
      return quant_level(double(x[i]), table[size_t(2 * c)], table[size_t(2 * c + 1)], levels,
                         double(philox_uniform(seed, offset, i)));
    });
    return;
  }
  encode_blocks(uint64_t(n), bits, codes, [&](int64_t i0, int64_t m, uint32_t* out) {
    channel_runs(cv, i0, m, [&](int64_t j, int64_t end, int64_t c) {
      nearest_levels(x + i0 + j, end - j, table[size_t(2 * c)], table[size_t(2 * c + 1)], levels, out + j);
    });
  });
}

}  // namespace

Payload QuantCompressor::encode(const Tensor& x, cudaStream_t stream) {
  if (x.defined() && x.is_cuda() && x.dtype() == DType::f32 && x.numel() > 0 && !opt_.per_channel) {
    // The GPU twin: the same (min, step) computed from the same exact extremes, the same rounding, the same codes.
    std::optional<StreamGuard> guard;
    if (stream) guard.emplace(x.device(), stream);
    // Nothing waits for the GPU: the extremes, the table, the codes and the non-finite verdict are all computed
    // there; the payload keeps its table and codes there (payload.h) and the verdict is judged at the next
    // synchronization point. Two passes over x, the least a range that depends on every element allows.
    const Tensor xd = x.detach();
    const Device dev = xd.device();
    const cudaStream_t st = current_stream(dev);
    const int64_t n = xd.numel();
    const Tensor partial = range_partials_on_device(xd, "quant");
    Tensor table = empty({2}, DType::f32, dev);
    quant_table_cuda(partial.data<float>(), opt_.bits, opt_.zero_exact, table.data<float>(), st);
    const uint64_t offset = opt_.stochastic ? gen_.advance(uint64_t(n)) : 0;
    Tensor codes = empty({int64_t(packed_bytes(uint64_t(n), opt_.bits))}, DType::u8, dev);
    quant_encode_cuda(xd.data<float>(), n, opt_.bits, table.data<float>(), opt_.stochastic, gen_.seed, offset,
                      codes.data<uint8_t>(), st);
    Payload p;
    p.method = Method::quant;
    p.dtype = DType::f32;
    p.shape = xd.shape();
    p.params = {uint32_t(opt_.bits), 0u, 0u};
    p.table_tensor = table;
    p.codes_tensor = codes;
    p.check_consistent("quant");
    return p;
  }
  if (opt_.per_channel && gpu_path(x, false) && x.dim() >= 1) {
    // Per channel on the GPU: exact channel extremes (integer-key atomics), the CPU's table rule, the same codes.
    std::optional<StreamGuard> guard;
    if (stream) guard.emplace(x.device(), stream);
    const Tensor xd = x.detach();
    const Device dev = xd.device();
    const uint32_t axis = xd.dim() == 1 ? 0 : uint32_t(opt_.axis);
    EP_CHECK(axis < uint32_t(xd.dim()), ShapeError, "[quant] per-channel axis ", opt_.axis, " out of range for input ",
             shape_str(xd.shape()));
    const int64_t channels = xd.shape()[axis];  // > 0: the tensor is not empty
    const ChannelView cv = channel_view(xd.shape(), uint32_t(channels), axis);
    const int64_t n = xd.numel(), outer = n / (channels * cv.inner);
    check_finite_on_device(xd, "quant");
    Tensor lo_key = from_data<int32_t>(std::vector<int32_t>(size_t(channels), INT32_MAX), {channels}, dev);
    Tensor hi_key = from_data<int32_t>(std::vector<int32_t>(size_t(channels), INT32_MIN), {channels}, dev);
    channel_minmax_cuda(xd.data<float>(), outer, channels, cv.inner, lo_key.data<int32_t>(), hi_key.data<int32_t>(),
                        current_stream(dev));
    const std::vector<int32_t> lk = lo_key.to_vector<int32_t>(), hk = hi_key.to_vector<int32_t>();
    Payload p;
    p.method = Method::quant;
    p.dtype = DType::f32;
    p.shape = xd.shape();
    p.params = {uint32_t(opt_.bits), uint32_t(channels), axis};
    p.table.assign(size_t(2 * channels), 0.0f);
    const uint32_t levels = (1u << opt_.bits) - 1;
    for (int64_t c = 0; c < channels; ++c)
      quant_entry(double(float_from_order_key(lk[size_t(c)])), double(float_from_order_key(hk[size_t(c)])), levels,
                  opt_.zero_exact, &p.table[size_t(2 * c)], &p.table[size_t(2 * c + 1)]);
    const uint64_t offset = opt_.stochastic ? gen_.advance(uint64_t(n)) : 0;
    Tensor table = from_data<float>(p.table, {2 * channels}, dev);
    Tensor codes = empty({int64_t(packed_bytes(uint64_t(n), opt_.bits))}, DType::u8, dev);
    quant_channel_encode_cuda(xd.data<float>(), n, channels, cv.inner, table.data<float>(), opt_.bits,
                              opt_.stochastic, gen_.seed, offset, codes.data<uint8_t>(), current_stream(dev));
    p.codes_tensor = codes;  // left on the GPU: a decode there reads it in place (payload.h)
    p.check_consistent("quant");
    return p;
  }
  Tensor h = host_input(x, "quant");
  Payload p;
  p.method = Method::quant;
  p.dtype = h.dtype();
  p.shape = h.shape();
  uint32_t channels = 0, axis = 0;
  if (opt_.per_channel) {
    axis = h.dim() == 1 ? 0 : uint32_t(opt_.axis);
    EP_CHECK(h.dim() >= 1 && axis < uint32_t(h.dim()), ShapeError, "[quant] per-channel axis ", opt_.axis,
             " out of range for input ", shape_str(h.shape()));
    channels = uint32_t(h.shape()[axis]);
    if (channels == 0) axis = 0;  // an empty channel dim: nothing to quantize, keep the header canonical
  }
  p.params = {uint32_t(opt_.bits), channels, axis};
  const int64_t n = h.numel();
  p.table.assign(size_t(2 * std::max<uint32_t>(channels, 1)), 0.0f);
  p.codes.assign(size_t(packed_bytes(uint64_t(n), opt_.bits)), 0);
  const uint64_t offset = opt_.stochastic ? gen_.advance(uint64_t(n)) : 0;
  const ChannelView cv = channel_view(h.shape(), channels, axis);
  dispatch_float(h.dtype(), "quant", [&](auto tag) {
    using T = EP_TYPE(tag);
    quant_encode(h.data<T>(), n, cv, opt_.bits, opt_.zero_exact, opt_.stochastic, gen_.seed, offset, p.table,
                 p.codes.data());
  });
  p.check_consistent("quant");
  return p;
}

template <class T> void decode_quant(const Payload& p, T* out) {
  const int bits = int(p.params[0]);
  const ChannelView cv = channel_view(p.shape, p.params[1], p.params[2]);
  decode_blocks(p.codes.data(), uint64_t(p.numel()), bits, [&](int64_t i0, int64_t m, const uint32_t* q) {
    channel_runs(cv, i0, m, [&](int64_t j, int64_t end, int64_t c) {
      const double mn = p.table[size_t(2 * c)], st = p.table[size_t(2 * c + 1)];
      for (int64_t k = j; k < end; ++k) out[i0 + k] = T(mn + double(q[k]) * st);
    });
  });
}
template void decode_quant<float>(const Payload&, float*);
template void decode_quant<double>(const Payload&, double*);

}  // namespace ep::compress
