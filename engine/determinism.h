// determinism.h — the switch behind the trainers' --deterministic: cuDNN restricted to deterministic algorithms and
// TF32 off, so a GPU run repeats bit for bit. Not needed on the CPU, whose kernels repeat with any thread count.
#pragma once

namespace ep {

// On: conv algorithms with CUDNN_DETERMINISTIC only (set_conv_deterministic) and strict fp32 GEMMs and convolutions
// (TF32 off, whatever EP_ALLOW_TF32 said). The other CUDA kernels never depend on scheduling order (no floating-point
// atomics: the embedding backward sums each row in token order). Off: conv algorithms by speed again; TF32 stays off.
void set_deterministic(bool on);
bool deterministic();

}  // namespace ep
