// init.cpp — torch.nn.init's formulas (fans, gains, Kaiming, Xavier, constants) over random.h's fills.
// Not a kernel file: every draw goes through uniform_/normal_, every constant through fill_, on the tensor's device.
#include "engine/init.h"

#include <cmath>

#include "engine/ops.h"

namespace ep {

Fans calculate_fan_in_and_fan_out(const Shape& shape) {
  EP_CHECK(shape.size() >= 2, ValueError,
           "[calculate_fan_in_and_fan_out] fan in and fan out can not be computed for a tensor with fewer than 2 "
           "dimensions, got ",
           shape_str(shape));
  int64_t receptive = 1;
  for (size_t i = 2; i < shape.size(); ++i) receptive *= shape[i];
  return Fans{shape[1] * receptive, shape[0] * receptive};
}

double calculate_gain(const std::string& nl, std::optional<double> param) {
  for (const char* unit : {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                           "conv_transpose3d", "sigmoid"})
    if (nl == unit) return 1.0;
  if (nl == "tanh") return 5.0 / 3.0;
  if (nl == "relu") return std::sqrt(2.0);
  if (nl == "leaky_relu") {
    const double slope = param.value_or(0.01);
    EP_CHECK(std::isfinite(slope), ValueError, "[calculate_gain] negative_slope ", slope, " is not a valid number");
    return std::sqrt(2.0 / (1.0 + slope * slope));
  }
  // 3/4 rather than 1 keeps SELU networks' gradients stable (PyTorch's value, see torch.nn.init.calculate_gain).
  if (nl == "selu") return 3.0 / 4.0;
  EP_THROW(ValueError, "[calculate_gain] unsupported nonlinearity '", nl, "'");
}

static void check_init_tensor(const char* op, const Tensor& t) {
  EP_CHECK(t.defined(), ValueError, "[", op, "] undefined tensor");
  EP_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64, DTypeError, "[", op, "] unsupported dtype ",
           dtype_name(t.dtype()), " (expected f32 or f64)");
}

// gain / sqrt(fan) for the chosen mode; fan 0 cannot happen for a tensor with elements.
static double kaiming_std(const char* op, const Tensor& t, double a, const std::string& mode,
                          const std::string& nonlinearity) {
  EP_CHECK(mode == "fan_in" || mode == "fan_out", ValueError, "[", op, "] mode '", mode,
           "' not supported, use fan_in or fan_out");
  const Fans f = calculate_fan_in_and_fan_out(t.shape());
  const double fan = double(mode == "fan_in" ? f.fan_in : f.fan_out);
  return calculate_gain(nonlinearity, a) / std::sqrt(fan);
}

Tensor& kaiming_uniform_(Tensor& t, double a, const std::string& mode, const std::string& nonlinearity,
                         Generator& gen) {
  check_init_tensor("kaiming_uniform_", t);
  if (t.numel() == 0) return t;  // PyTorch: "Initializing zero-element tensors is a no-op"
  const double bound = std::sqrt(3.0) * kaiming_std("kaiming_uniform_", t, a, mode, nonlinearity);
  uniform_(t, -bound, bound, gen);
  return t;
}

Tensor& kaiming_normal_(Tensor& t, double a, const std::string& mode, const std::string& nonlinearity,
                        Generator& gen) {
  check_init_tensor("kaiming_normal_", t);
  if (t.numel() == 0) return t;
  normal_(t, 0.0, kaiming_std("kaiming_normal_", t, a, mode, nonlinearity), gen);
  return t;
}

static double xavier_std(const Tensor& t, double gain) {
  const Fans f = calculate_fan_in_and_fan_out(t.shape());
  return gain * std::sqrt(2.0 / double(f.fan_in + f.fan_out));
}

Tensor& xavier_uniform_(Tensor& t, double gain, Generator& gen) {
  check_init_tensor("xavier_uniform_", t);
  const double std_ = xavier_std(t, gain);  // first, so a 1-D tensor throws even when empty
  if (t.numel() == 0) return t;
  const double bound = std::sqrt(3.0) * std_;
  uniform_(t, -bound, bound, gen);
  return t;
}

Tensor& xavier_normal_(Tensor& t, double gain, Generator& gen) {
  check_init_tensor("xavier_normal_", t);
  const double std_ = xavier_std(t, gain);
  if (t.numel() == 0) return t;
  normal_(t, 0.0, std_, gen);
  return t;
}

Tensor& constant_(Tensor& t, double value) {
  EP_CHECK(t.defined(), ValueError, "[constant_] undefined tensor");  // any dtype, as PyTorch
  fill_(t, value);
  return t;
}

Tensor& zeros_(Tensor& t) { return constant_(t, 0.0); }
Tensor& ones_(Tensor& t) { return constant_(t, 1.0); }

}  // namespace ep
