// method_util.h — the parallel packer the CPU encoders share: codes computed on the fly, packed 8 at a time.
// Not public API (include compress/methods.h instead); the rounding rules live in compress/quant_math.h.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "compress/bitpack.h"
#include "compress/quant_math.h"

namespace ep::compress {

// Packs code_of(0..n) into out (packed_bytes(n, bits) bytes), one group of 8 codes per iteration: groups are
// byte-aligned, so the iterations never share a byte and the result does not depend on the thread count.
template <class CodeFn>
void pack_parallel(uint64_t n, int bits, uint8_t* out, CodeFn&& code_of) {
  const int64_t groups = int64_t((n + 7) / 8);
#pragma omp parallel for schedule(static) if (n > (1u << 16))
  for (int64_t g = 0; g < groups; ++g) {
    uint32_t c[8];
    const uint64_t base = uint64_t(g) * 8;
    const int count = int(std::min<uint64_t>(8, n - base));
    for (int j = 0; j < count; ++j) c[j] = code_of(base + uint64_t(j));
    pack_group(c, count, bits, out + uint64_t(g) * uint64_t(bits));
  }
}

}  // namespace ep::compress
