// select.cpp (cpu) — the broadcasting select of select_kernels.h; the reference for engine/cuda/select.cu.
// Not specialized per pattern: one offset computation per element (merged dims keep it to 1-3 divisions).
#include "engine/ops/select_kernels.h"

namespace ep {

static constexpr int64_t kSelectParallelMin = 65536;

void where_cpu(size_t elem, const uint8_t* cond, const void* a, const void* b, void* out, int64_t n,
               const WhereIndex& idx, uint64_t a_bits, uint64_t b_bits) {
  if (n == 0) return;
  dispatch_elem_size(elem, "where", [&](auto tag_) {
    using U = EP_TYPE(tag_);
    const U* ap = static_cast<const U*>(a);
    const U* bp = static_cast<const U*>(b);
    U* o = static_cast<U*>(out);
    const U av = U(a_bits), bv = U(b_bits);  // low bytes: the constant's bit pattern (little-endian)
#pragma omp parallel for if (n > kSelectParallelMin)
    for (int64_t i = 0; i < n; ++i) {
      int64_t oc, oa, ob;
      idx.offsets(i, oc, oa, ob);
      o[i] = cond[oc] ? (ap ? ap[oa] : av) : (bp ? bp[ob] : bv);
    }
  });
}

}  // namespace ep
