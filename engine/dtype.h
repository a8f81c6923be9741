// dtype.h — element types, their sizes and names, and bit-exact f16/bf16 <-> f32 conversion shared by CPU and CUDA.
// Not a numeric library: half types are storage formats here; arithmetic happens in f32 (or f64 on the CPU).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

#if defined(__CUDACC__)
#define EP_HD __host__ __device__ __forceinline__
#else
#define EP_HD inline
#endif

namespace ep {

enum class DType : uint8_t { f32, f64, f16, bf16, u8, i8, i16, i32, i64 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::f64: case DType::i64: return 8;
    case DType::f32: case DType::i32: return 4;
    case DType::f16: case DType::bf16: case DType::i16: return 2;
    case DType::u8: case DType::i8: return 1;
  }
  return 0;
}
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32"; case DType::f64: return "f64"; case DType::f16: return "f16";
    case DType::bf16: return "bf16"; case DType::u8: return "u8"; case DType::i8: return "i8";
    case DType::i16: return "i16"; case DType::i32: return "i32"; case DType::i64: return "i64";
  }
  return "?";
}
inline bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f64 || t == DType::f16 || t == DType::bf16;
}

// Maps a C++ type to its DType (used by Tensor::data<T>() checks and templated kernels).
template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::u8; };
template <> struct dtype_of<int8_t> { static constexpr DType value = DType::i8; };
template <> struct dtype_of<int16_t> { static constexpr DType value = DType::i16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };

// Half-precision storage types: raw bits. Conversions round to nearest even, like the hardware.
struct f16_t { uint16_t bits; };
struct bf16_t { uint16_t bits; };
template <> struct dtype_of<f16_t> { static constexpr DType value = DType::f16; };
template <> struct dtype_of<bf16_t> { static constexpr DType value = DType::bf16; };

EP_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u; std::memcpy(&u, &f, 4); return u;
#endif
}
EP_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f; std::memcpy(&f, &u, 4); return f;
#endif
}

EP_HD bf16_t float_to_bf16(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16_t{uint16_t((u >> 16) | 0x40)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16_t{uint16_t(u >> 16)};
}
EP_HD float bf16_to_float(bf16_t h) { return bits_float(uint32_t(h.bits) << 16); }

EP_HD f16_t float_to_f16(float f) {
  uint32_t x = float_bits(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return f16_t{uint16_t(sign | 0x7e00u)};           // NaN
  if (ax >= 0x477ff000u) return f16_t{uint16_t(sign | 0x7c00u)};          // overflow -> inf (incl. inf)
  if (ax < 0x38800000u) {                                                // subnormal or zero in f16
    if (ax < 0x33000000u) return f16_t{uint16_t(sign)};                   // rounds to zero
    uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
    int shift = 126 - int(ax >> 23);                                      // 14 + (113 - e)
    uint32_t half = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return f16_t{uint16_t(sign | half)};
  }
  uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u) - 0x38000000u;             // rebias 127 -> 15, round to even
  return f16_t{uint16_t(sign | (r >> 13))};
}
EP_HD float f16_to_float(f16_t h) {
  uint32_t sign = uint32_t(h.bits & 0x8000u) << 16;
  uint32_t e = (h.bits >> 10) & 0x1fu, m = h.bits & 0x3ffu;
  if (e == 0) {
    if (m == 0) return bits_float(sign);
    float v = float(m) * (1.0f / 16777216.0f);  // m * 2^-24
    return sign ? -v : v;
  }
  if (e == 31) return bits_float(sign | 0x7f800000u | (m << 13));
  return bits_float(sign | ((e + 112u) << 23) | (m << 13));
}

}  // namespace ep

namespace ep {
// Value conversions through double, valid on host and device (half types round to nearest even).
template <class T> EP_HD double to_f64(T v) { return double(v); }
template <> EP_HD double to_f64<f16_t>(f16_t v) { return double(f16_to_float(v)); }
template <> EP_HD double to_f64<bf16_t>(bf16_t v) { return double(bf16_to_float(v)); }
template <class T> EP_HD T from_f64(double v) { return T(v); }
template <> EP_HD f16_t from_f64<f16_t>(double v) { return float_to_f16(float(v)); }
template <> EP_HD bf16_t from_f64<bf16_t>(double v) { return float_to_bf16(float(v)); }
}  // namespace ep
