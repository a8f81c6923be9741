// ops.h — every differentiable op of the engine (and the few in-place, non-differentiable helpers optimizers need).
// Not the kernels: each op's forward/backward pair and its autograd wrapper live in engine/ops/<area>.cpp, the CPU
// kernels in engine/cpu/, the CUDA kernels in engine/cuda/, declared together in engine/ops/<area>_kernels.h.
// Dimensions: N = batch, C = channels, H/W = spatial, T = tokens, D = hidden.
// Errors: ShapeError / DTypeError / DeviceError whose message starts with "[op]" and names the shapes involved.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "engine/autograd.h"
#include "engine/tensor.h"

namespace ep {

struct Generator;

// ---- element-wise (engine/ops/binary.cpp, engine/ops/unary.cpp) -------------------------------------------------
// Binary ops broadcast NumPy-style; both inputs must share dtype and device.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor neg(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor pow(const Tensor& a, double exponent);
Tensor relu(const Tensor& a);
Tensor relu6(const Tensor& a);
Tensor gelu(const Tensor& a);  // exact (erf) GELU, as PyTorch's default and HF RoBERTa
Tensor tanh(const Tensor& a);
Tensor sigmoid(const Tensor& a);
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, double s) { return add(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return add(a, -s); }
inline Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return mul(a, 1.0 / s); }
inline Tensor operator+(double s, const Tensor& a) { return add(a, s); }
inline Tensor operator-(double s, const Tensor& a) { return add(neg(a), s); }
inline Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);
// Sums a broadcast gradient back down to `shape` (the inverse of broadcasting).
Tensor sum_to(const Tensor& g, const Shape& shape);

// In place, never recorded by autograd (optimizer and accumulation helpers). Same shape, dtype and device.
void add_(Tensor& a, const Tensor& b, double alpha = 1.0);  // a += alpha * b
void mul_(Tensor& a, double s);                             // a *= s
void fill_(Tensor& a, double v);
void copy_(Tensor& dst, const Tensor& src);                 // dst <- src, any devices, same shape and dtype

// ---- reductions (engine/ops/reduce.cpp: sum/mean; engine/ops/reduce_minmax.cpp: max/min/argmax) ------------------
Tensor sum(const Tensor& a);  // all elements -> shape []
bool all_finite(const Tensor& a);  // no NaN or ±Inf; true for undefined, empty and integer tensors (not recorded)
Tensor sum(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& a);
Tensor mean(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor max(const Tensor& a, int64_t dim, bool keepdim = false);  // values; gradient to the first maximal element
Tensor min(const Tensor& a, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& a, int64_t dim, bool keepdim = false);  // i64, first index of the maximum

// ---- softmax family, losses, normalization (engine/ops/softmax.cpp, loss.cpp, layer_norm.cpp, batch_norm.cpp) ----
Tensor softmax(const Tensor& a);      // over the last dim
Tensor log_softmax(const Tensor& a);  // over the last dim
// logits [N, K], targets [N] (i64 or i32). Mean over the non-ignored rows, as torch.nn.functional.cross_entropy.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, double label_smoothing = 0.0,
                     int64_t ignore_index = -100);
// Normalizes over the last dim; weight and bias [D] (either may be undefined).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
// x [N, C, *]; weight/bias [C] (may be undefined). Training uses batch statistics and updates running_mean/var in
// place (unbiased variance, PyTorch's momentum convention); eval uses the running statistics.
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                  Tensor& running_var, bool training, double momentum = 0.1, double eps = 1e-5);
// relu(batch_norm(...)) and relu6(batch_norm(...)) as one op each (torchvision's Conv2dNormActivation after its
// conv): the same values, running statistics and gradients bit for bit, in fewer passes over memory, and without the
// normalized intermediate, which is neither written nor kept for the backward.
Tensor batch_norm_relu(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                       Tensor& running_var, bool training, double momentum = 0.1, double eps = 1e-5);
Tensor batch_norm_relu6(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                        Tensor& running_var, bool training, double momentum = 0.1, double eps = 1e-5);
// The signature the three share, for callers that choose among them (BatchNorm2d::forward).
using BatchNormFn = Tensor (*)(const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&, bool, double, double);
// Deferred BatchNorm's bookkeeping (no autograd), one launch each. merge: folds a group of n values per channel, with
// batch mean mean_b and unbiased variance var_b [C] (f32 or f64), into the f64 [C] accumulators mean and m2 (the
// centred sum of squares) over `count` values before it, in place (Chan et al.; count 0 starts them). commit:
// running = (1 - momentum) * running + momentum * stat in place, with stat = mean and m2 / (count - 1).
void batch_norm_merge_stats_(Tensor& mean, Tensor& m2, int64_t count, const Tensor& mean_b, const Tensor& var_b,
                             int64_t n);
void batch_norm_commit_stats_(Tensor& running_mean, Tensor& running_var, const Tensor& mean, const Tensor& m2,
                              int64_t count, double momentum);

// ---- linear algebra (engine/ops/matmul.cpp) -------------------------------------------------------------------
// a [M,K] (or [K,M] with trans_a), b [K,N] (or [N,K] with trans_b) -> [M,N]. 3-D inputs are batched: [B,M,K] with
// [B,K,N], or with a 2-D b shared across the batch.
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
// x [..., in], weight [out, in], bias [out] or undefined -> [..., out]
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

// ---- convolution and pooling (engine/ops/conv2d.cpp, engine/ops/pool.cpp) --------------------------------------
struct Conv2dOptions {
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
};
// x [N, Cin, H, W], weight [Cout, Cin/groups, kH, kW], bias [Cout] or undefined.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& opt = {});
struct Pool2dOptions {
  std::array<int64_t, 2> kernel{2, 2};
  std::array<int64_t, 2> stride{2, 2};
  std::array<int64_t, 2> padding{0, 0};
};
Tensor max_pool2d(const Tensor& x, const Pool2dOptions& opt);
Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& opt);  // count_include_pad = true, as PyTorch's default
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w);

// ---- attention (engine/ops/attention.cpp) -------------------------------------------------------------------------
// The fused middle of scaled dot-product attention: probs = dropout(softmax(scale * scores + mask_bias)) over the last
// dim. scores [B, H, Tq, Tk]; key_mask [B, Tk] (u8, i32, i64 or float; nonzero = attend, zero = padding) or undefined.
// Masked keys get probability exactly 0, as HF's additive finfo.min mask gives. The dropout mask is the one
// dropout(softmax(...), p, training, gen) would draw from the same generator state, so fused and unfused agree.
Tensor attention_softmax(const Tensor& scores, const Tensor& key_mask, double scale, double dropout_p, bool training,
                         Generator& gen);

// ---- embedding and dropout (engine/ops/embedding.cpp, engine/ops/dropout.cpp) -----------------------------------
// weight [V, D], indices any shape (i64 or i32) -> [..., D]. Rows equal to padding_idx get no gradient (-1: none).
Tensor embedding(const Tensor& weight, const Tensor& indices, int64_t padding_idx = -1);
// HF's create_position_ids_from_input_ids: cumsum(ids != pad) * (ids != pad) + pad, i64 [B, T] on the ids' device
// (not differentiable). On a GPU it runs there, so a forward never waits to read its ids back.
Tensor padded_position_ids(const Tensor& ids, int64_t pad);
// Inverted dropout; the mask is Philox(seed, offset) so it can be replayed. Identity when !training or p == 0.
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen);

// ---- shape and data movement (engine/ops/shape.cpp: reshape/flatten; layout.cpp; select.cpp: where/masked_fill) ---
Tensor reshape(const Tensor& a, const Shape& shape);  // one dim may be -1; shares storage
Tensor flatten(const Tensor& a, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor transpose(const Tensor& a, int64_t dim0, int64_t dim1);  // copies
Tensor permute(const Tensor& a, const std::vector<int64_t>& dims);  // copies
Tensor slice(const Tensor& a, int64_t dim, int64_t start, int64_t end, int64_t step = 1);  // copies; python-like clamping
Tensor concat(const std::vector<Tensor>& parts, int64_t dim);
std::vector<Tensor> split(const Tensor& a, const std::vector<int64_t>& sizes, int64_t dim);
std::vector<Tensor> split(const Tensor& a, int64_t chunk_size, int64_t dim);  // last chunk may be smaller
// cond is u8 (nonzero = true), broadcast against a and b.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& a, const Tensor& mask, double value);
// Casts and device copies are Tensor::to(DType) and Tensor::to(Device); both are differentiable.

}  // namespace ep
