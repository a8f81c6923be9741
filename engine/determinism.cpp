// determinism.cpp — set_deterministic: flips the conv algorithm filter and, in CUDA builds, turns TF32 off.
// Not where the deterministic kernels live (engine/cuda/*.cu) nor the conv algorithm choice (cudnn_conv.cpp).
#include "engine/determinism.h"

#include "engine/ops/conv2d_kernels.h"
#if EP_CUDA
#include "engine/cuda/context.h"
#endif

namespace ep {

void set_deterministic(bool on) {
  set_conv_deterministic(on);
#if EP_CUDA
  if (on) cuda::set_allow_tf32(false);
#endif
}

bool deterministic() { return conv_deterministic(); }

}  // namespace ep
