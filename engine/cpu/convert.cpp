// convert.cpp — CPU dtype casts and fills (the reference for engine/cuda/convert.cu).
#include "engine/ops/convert_kernels.h"

namespace ep {

void cast_cpu(const void* src, DType src_t, void* dst, DType dst_t, int64_t n) {
  dispatch_all(src_t, [&](auto tag_S) {
    using S = EP_TYPE(tag_S);
    dispatch_all(dst_t, [&](auto tag_D) {
    using D = EP_TYPE(tag_D);
      const S* s = static_cast<const S*>(src);
      D* d = static_cast<D*>(dst);
#pragma omp parallel for if (n > 65536)
      for (int64_t i = 0; i < n; ++i) d[i] = from_f64<D>(to_f64<S>(s[i]));
    });
  });
}

void fill_cpu(void* dst, DType t, double value, int64_t n) {
  dispatch_all(t, [&](auto tag_T) {
    using T = EP_TYPE(tag_T);
    T v = from_f64<T>(value);
    T* d = static_cast<T*>(dst);
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i) d[i] = v;
  });
}

}  // namespace ep
