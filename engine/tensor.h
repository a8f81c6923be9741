// tensor.h — the Tensor handle: shared storage, shape, dtype, device and the autograd fields (requires_grad, grad,
// grad_fn). Row-major and always contiguous: reshape shares storage, transpose/permute/slice copy (DESIGN.md §3).
// Not an op library: the differentiable ops live in engine/ops.h; this file has factories and host access only.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "engine/check.h"
#include "engine/device.h"
#include "engine/dtype.h"
#include "engine/storage.h"

namespace ep {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[2,3,4]"
int64_t shape_numel(const Shape& s);
int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op);  // wraps negatives, throws ShapeError "[op] ..."

struct Node;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  DType dtype = DType::f32;
  Device device;
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;  // accumulated gradient of a leaf
  std::shared_ptr<Node> grad_fn;     // the node that produced this tensor (null for leaves)
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  int64_t dim() const { return int64_t(impl().shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return shape_numel(impl().shape); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype()); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().device; }
  bool is_cuda() const { return device().is_cuda(); }
  std::string str() const;  // "f32[2,3] cpu"

  void* raw_data() const { return impl().storage->data(); }
  template <class T> T* data() const {
    EP_CHECK(dtype() == dtype_of<T>::value, DTypeError, "[data] tensor is ", dtype_name(dtype()),
             ", accessed as ", dtype_name(dtype_of<T>::value));
    return static_cast<T*>(raw_data());
  }

  // autograd
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& requires_grad_(bool on = true);  // leaves only, floating dtypes only
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }
  Tensor grad() const { return Tensor(impl().grad); }
  void set_grad(const Tensor& g);
  void zero_grad() { impl().grad.reset(); }
  void backward(const Tensor& grad_output = Tensor()) const;  // default: ones for a one-element tensor
  Tensor detach() const;  // same storage, no autograd history

  // copies
  Tensor to(Device d) const;         // copy to another device (differentiable); same device returns *this
  Tensor to(DType t) const;          // cast (differentiable between floating types); same dtype returns *this
  Tensor clone() const;              // deep copy on the same device (differentiable)
  Tensor cpu() const { return to(Device::cpu()); }

  // host access (copies to the host, waits for the device)
  template <class T> std::vector<T> to_vector() const;
  std::vector<double> to_double_vector() const;  // any dtype, converted
  double item() const;                           // one-element tensors

  TensorImpl& impl() const {
    EP_CHECK(impl_ != nullptr, Error, "[tensor] use of an undefined tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Factories. Memory from `empty` is uninitialized.
Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::cpu());
Tensor arange(int64_t n, DType dtype = DType::f32, Device device = Device::cpu());  // 0..n-1
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
// A tensor made from host values (converted to `dtype`), then placed on `device`. Checks size against shape.
Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype = DType::f32,
                   Device device = Device::cpu());
template <class T> Tensor from_data(const std::vector<T>& values, const Shape& shape, Device device = Device::cpu());
Tensor scalar_tensor(double v, DType dtype = DType::f32, Device device = Device::cpu());  // shape []

// Same-shape checks shared by ops. Messages name the op and both shapes/dtypes/devices.
void check_same_device(const char* op, const Tensor& a, const Tensor& b);
void check_same_dtype(const char* op, const Tensor& a, const Tensor& b);
void check_same_shape(const char* op, const Tensor& a, const Tensor& b);
void check_floating(const char* op, const Tensor& t);  // f32 or f64 (the dtypes ops compute in)

}  // namespace ep
