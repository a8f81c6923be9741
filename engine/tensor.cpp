// tensor.cpp — Tensor handle methods, factories, host access, and the differentiable copies (to, clone).
// Not arithmetic: engine/ops/*.cpp.
#include "engine/tensor.h"

#include <sstream>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/op_registry.h"
#include "engine/ops/convert_kernels.h"

namespace ep {

EP_DIFFERENTIABLE_OPS("to_device", "cast", "clone");

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? "," : "") << s[i];
  os << ']';
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t d = dim < 0 ? dim + ndim : dim;
  EP_CHECK(d >= 0 && d < ndim, ShapeError, "[", op, "] dim ", dim, " out of range for a ", ndim, "-D tensor");
  return d;
}

int64_t Tensor::size(int64_t d) const { return shape()[size_t(normalize_dim(d, dim(), "size"))]; }

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  return std::string(dtype_name(dtype())) + shape_str(shape()) + " " + device().str();
}

Tensor& Tensor::requires_grad_(bool on) {
  EP_CHECK(is_leaf(), Error, "[requires_grad] only leaves can change requires_grad");
  EP_CHECK(!on || dtype() == DType::f32 || dtype() == DType::f64, DTypeError,
           "[requires_grad] only f32/f64 tensors can require gradients, got ", dtype_name(dtype()));
  impl().requires_grad = on;
  return *this;
}

void Tensor::set_grad(const Tensor& g) {
  if (g.defined()) check_same_shape("set_grad", *this, g);
  impl().grad = g.impl_ptr();
}

void Tensor::backward(const Tensor& grad_output) const {
  Tensor g = grad_output;
  if (!g.defined()) {
    EP_CHECK(numel() == 1, ShapeError, "[backward] an implicit gradient needs a one-element tensor, got ",
             shape_str(shape()));
    g = ones(shape(), dtype(), device());
  }
  run_backward(*this, g);
}

Tensor Tensor::detach() const {
  auto t = std::make_shared<TensorImpl>();
  t->storage = impl().storage;
  t->shape = impl().shape;
  t->dtype = impl().dtype;
  t->device = impl().device;
  return Tensor(t);
}

static Tensor raw_copy(const Tensor& src, Device d) {
  Tensor out = empty(src.shape(), src.dtype(), d);
  copy_bytes(out.raw_data(), d, src.raw_data(), src.device(), src.nbytes());
  return out;
}

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  Tensor out = raw_copy(*this, d);
  Device from = device();
  record(out, "to_device", {*this}, [from](const Tensor& dout, const NeedsGrad&) {
    return std::vector<Tensor>{dout.to(from)};
  });
  return out;
}

Tensor Tensor::to(DType t) const {
  if (t == dtype()) return *this;
  Tensor out = empty(shape(), t, device());
  if (device().is_cpu())
    cast_cpu(raw_data(), dtype(), out.raw_data(), t, numel());
  else
    cast_cuda(raw_data(), dtype(), out.raw_data(), t, numel(), current_stream(device()));
  if (is_floating(dtype()) && is_floating(t)) {
    DType from = dtype();
    record(out, "cast", {*this}, [from](const Tensor& dout, const NeedsGrad&) {
      return std::vector<Tensor>{dout.to(from)};
    });
  }
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = raw_copy(*this, device());
  record(out, "clone", {*this}, [](const Tensor& dout, const NeedsGrad&) { return std::vector<Tensor>{dout}; });
  return out;
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  EP_CHECK(dtype() == dtype_of<T>::value, DTypeError, "[to_vector] tensor is ", dtype_name(dtype()),
           ", requested ", dtype_name(dtype_of<T>::value));
  std::vector<T> v(static_cast<size_t>(numel()));
  copy_bytes(v.data(), Device::cpu(), raw_data(), device(), nbytes());
  return v;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;
template std::vector<int8_t> Tensor::to_vector<int8_t>() const;
template std::vector<int16_t> Tensor::to_vector<int16_t>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<f16_t> Tensor::to_vector<f16_t>() const;
template std::vector<bf16_t> Tensor::to_vector<bf16_t>() const;

std::vector<double> Tensor::to_double_vector() const {
  Tensor host = detach().to(Device::cpu()).to(DType::f64);
  return host.to_vector<double>();
}

double Tensor::item() const {
  EP_CHECK(numel() == 1, ShapeError, "[item] needs a one-element tensor, got ", shape_str(shape()));
  return to_double_vector()[0];
}

// ---- factories -----------------------------------------------------------------------------------------------------
Tensor empty(const Shape& shape, DType dtype, Device device) {
  // numel() multiplies unchecked (it is on every hot path); here, before the allocation, a product past int64 or a
  // byte count past size_t is an error instead of a wrapped, too-small buffer.
  int64_t n = 1;
  for (int64_t d : shape) {
    EP_CHECK(d >= 0, ShapeError, "[empty] negative dimension in shape ", shape_str(shape));
    EP_CHECK(!__builtin_mul_overflow(n, d, &n) && n <= INT64_MAX / 8, ShapeError, "[empty] shape ", shape_str(shape),
             " has too many elements to address");
  }
  auto t = std::make_shared<TensorImpl>();
  t->shape = shape;
  t->dtype = dtype;
  t->device = device;
  t->storage = std::make_shared<Storage>(size_t(shape_numel(shape)) * dtype_size(dtype), device);
  return Tensor(t);
}

Tensor zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  fill_bytes_zero(t.raw_data(), device, t.nbytes());
  return t;
}

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  fill_(t, value);
  return t;
}
Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.dtype(), t.device()); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype(), t.device()); }
Tensor scalar_tensor(double v, DType dtype, Device device) { return full({}, v, dtype, device); }

Tensor arange(int64_t n, DType dtype, Device device) {
  std::vector<double> v(size_t(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = double(i);
  return from_vector(v, {int64_t(v.size())}, dtype, device);
}

Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype, Device device) {
  EP_CHECK(int64_t(values.size()) == shape_numel(shape), ShapeError, "[from_vector] ", values.size(),
           " values do not fill shape ", shape_str(shape));
  Tensor host = empty(shape, dtype, Device::cpu());
  cast_cpu(values.data(), DType::f64, host.raw_data(), dtype, int64_t(values.size()));
  return device.is_cpu() ? host : raw_copy(host, device);
}

template <class T>
Tensor from_data(const std::vector<T>& values, const Shape& shape, Device device) {
  EP_CHECK(int64_t(values.size()) == shape_numel(shape), ShapeError, "[from_data] ", values.size(),
           " values do not fill shape ", shape_str(shape));
  Tensor out = empty(shape, dtype_of<T>::value, device);
  copy_bytes(out.raw_data(), device, values.data(), Device::cpu(), out.nbytes());
  return out;
}
template Tensor from_data<float>(const std::vector<float>&, const Shape&, Device);
template Tensor from_data<double>(const std::vector<double>&, const Shape&, Device);
template Tensor from_data<uint8_t>(const std::vector<uint8_t>&, const Shape&, Device);
template Tensor from_data<int8_t>(const std::vector<int8_t>&, const Shape&, Device);
template Tensor from_data<int16_t>(const std::vector<int16_t>&, const Shape&, Device);
template Tensor from_data<int32_t>(const std::vector<int32_t>&, const Shape&, Device);
template Tensor from_data<int64_t>(const std::vector<int64_t>&, const Shape&, Device);

// ---- shared checks -------------------------------------------------------------------------------------------------
void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  EP_CHECK(a.device() == b.device(), DeviceError, "[", op, "] tensors on different devices: ", a.device().str(),
           " and ", b.device().str());
}
void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  EP_CHECK(a.dtype() == b.dtype(), DTypeError, "[", op, "] dtype mismatch: ", dtype_name(a.dtype()), " and ",
           dtype_name(b.dtype()));
}
void check_same_shape(const char* op, const Tensor& a, const Tensor& b) {
  EP_CHECK(a.shape() == b.shape(), ShapeError, "[", op, "] shape mismatch: ", shape_str(a.shape()), " and ",
           shape_str(b.shape()));
}
void check_floating(const char* op, const Tensor& t) {
  EP_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64, DTypeError, "[", op,
           "] expected an f32 or f64 tensor, got ", dtype_name(t.dtype()));
}

}  // namespace ep
