// init.h — parameter initializers as torch.nn.init defines them: fans, gains, Kaiming (He) and Xavier (Glorot)
// uniform/normal, constants. Random fills draw through engine/random.h (uniform_/normal_ with a Generator), so a
// seed gives the same values on the CPU and on CUDA.
// Not layer-specific defaults (e.g. nn.Linear's kaiming_uniform_(a=sqrt(5)) plus bias bound): the layers choose.
#pragma once
#include <optional>
#include <string>

#include "engine/random.h"
#include "engine/tensor.h"

namespace ep {

struct Fans {
  int64_t fan_in = 0, fan_out = 0;
};
// shape [out, in, *receptive] (Linear [out, in]; conv [out, in/groups, kh, kw]): fan_in = in * prod(receptive),
// fan_out = out * prod(receptive). ValueError for fewer than 2 dims.
Fans calculate_fan_in_and_fan_out(const Shape& shape);

// The recommended gain for a nonlinearity: linear, conv{1,2,3}d, conv_transpose{1,2,3}d, sigmoid -> 1; tanh -> 5/3;
// relu -> sqrt(2); leaky_relu -> sqrt(2 / (1 + slope^2)) with slope = param or 0.01 when absent; selu -> 3/4.
// ValueError naming an unknown nonlinearity.
double calculate_gain(const std::string& nonlinearity, std::optional<double> param = std::nullopt);

// The in-place initializers return their tensor, as PyTorch's do. The random ones need an f32/f64 tensor. Random ones draw
// t.numel() values from `gen` (advancing its offset by that much); a tensor with no elements is left alone.
// mode is "fan_in" (preserves the forward variance) or "fan_out" (the backward one); `a` is the leaky_relu slope.
// kaiming_uniform_: U(-b, b), b = gain * sqrt(3 / fan).    kaiming_normal_: N(0, gain^2 / fan).
Tensor& kaiming_uniform_(Tensor& t, double a = 0, const std::string& mode = "fan_in",
                         const std::string& nonlinearity = "leaky_relu", Generator& gen = default_generator());
Tensor& kaiming_normal_(Tensor& t, double a = 0, const std::string& mode = "fan_in",
                        const std::string& nonlinearity = "leaky_relu", Generator& gen = default_generator());
// xavier_uniform_: U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)).  xavier_normal_: std = gain*sqrt(2/(in+out)).
Tensor& xavier_uniform_(Tensor& t, double gain = 1.0, Generator& gen = default_generator());
Tensor& xavier_normal_(Tensor& t, double gain = 1.0, Generator& gen = default_generator());
Tensor& zeros_(Tensor& t);
Tensor& ones_(Tensor& t);
Tensor& constant_(Tensor& t, double value);

}  // namespace ep
