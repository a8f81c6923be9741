// layout.cpp — copying layout ops (transpose, permute, slice, concat, split) and their backward: permute -> inverse
// permute, slice -> scatter into zeros, concat -> slices of the gradient. Not views: every op copies (DESIGN.md §3).
// Kernels: engine/cpu/layout.cpp, engine/cuda/layout.cu (byte movers, so every dtype works).
#include <algorithm>
#include <numeric>

#include "engine/ops.h"
#include "engine/op_registry.h"
#include "engine/ops/layout_kernels.h"

namespace ep {

// transpose records "permute"; split records one "slice" per part.
EP_DIFFERENTIABLE_OPS("permute", "slice", "concat");

static std::vector<int64_t> contiguous_strides(const Shape& s) {
  std::vector<int64_t> st(s.size());
  int64_t stride = 1;
  for (size_t k = s.size(); k-- > 0;) {
    st[k] = stride;
    stride *= s[k];
  }
  return st;
}

// The index space `size` over a tensor with strides `stride`, size-1 dims dropped and dim d merged into d+1 where
// stride[d] == stride[d+1] * size[d+1]: a permute of contiguous blocks or a slice along one dim becomes 1-3 dims.
static StridedIndex make_strided_index(const char* op, const Shape& size, const std::vector<int64_t>& stride) {
  std::vector<int64_t> sz, st;
  for (size_t d = 0; d < size.size(); ++d) {
    if (size[d] == 1) continue;
    if (!sz.empty() && st.back() == stride[d] * size[d]) {
      sz.back() *= size[d];
      st.back() = stride[d];
    } else {
      sz.push_back(size[d]);
      st.push_back(stride[d]);
    }
  }
  if (sz.empty()) {
    sz = {1};
    st = {1};
  }
  EP_CHECK(sz.size() <= size_t(kMaxDims), ShapeError, "[", op, "] shape ", shape_str(size), " needs more than ",
           kMaxDims, " dims after merging");
  StridedIndex idx{};
  idx.ndim = int(sz.size());
  for (size_t d = 0; d < sz.size(); ++d) {
    idx.size[d] = sz[d];
    idx.stride[d] = st[d];
  }
  return idx;
}

// out (contiguous, n elements) <- in[base + idx.offset(i)]
static void gather(const Tensor& in, Tensor& out, int64_t base, const StridedIndex& idx) {
  size_t elem = dtype_size(in.dtype());
  if (in.is_cuda())
    strided_gather_cuda(elem, in.raw_data(), out.raw_data(), out.numel(), base, idx, current_stream(in.device()));
  else
    strided_gather_cpu(elem, in.raw_data(), out.raw_data(), out.numel(), base, idx);
}

// out[base + idx.offset(i)] <- in (contiguous, n elements)
static void scatter(const Tensor& in, Tensor& out, int64_t base, const StridedIndex& idx) {
  size_t elem = dtype_size(in.dtype());
  if (in.is_cuda())
    strided_scatter_cuda(elem, in.raw_data(), out.raw_data(), in.numel(), base, idx, current_stream(in.device()));
  else
    strided_scatter_cpu(elem, in.raw_data(), out.raw_data(), in.numel(), base, idx);
}

// ---- permute / transpose -------------------------------------------------------------------------------------------
static std::vector<int64_t> check_permutation(const char* op, const Tensor& a, const std::vector<int64_t>& dims) {
  auto list = [&] {
    std::string s = "[";
    for (size_t k = 0; k < dims.size(); ++k) s += (k ? "," : "") + std::to_string(dims[k]);
    return s + "]";
  };
  EP_CHECK(int64_t(dims.size()) == a.dim(), ShapeError, "[", op, "] dims ", list(), " do not match a ", a.dim(),
           "-D tensor ", shape_str(a.shape()));
  std::vector<int64_t> p(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t k = 0; k < dims.size(); ++k) {
    p[k] = normalize_dim(dims[k], a.dim(), op);
    EP_CHECK(!seen[size_t(p[k])], ShapeError, "[", op, "] dims ", list(), " repeat dim ", p[k]);
    seen[size_t(p[k])] = true;
  }
  return p;
}

// Output dim k is input dim p[k]. Not recorded.
static Tensor permute_raw(const Tensor& a, const std::vector<int64_t>& p) {
  const Shape& s = a.shape();
  std::vector<int64_t> in_st = contiguous_strides(s);
  Shape os(p.size());
  std::vector<int64_t> st(p.size());
  for (size_t k = 0; k < p.size(); ++k) {
    os[k] = s[size_t(p[k])];
    st[k] = in_st[size_t(p[k])];
  }
  Tensor out = empty(os, a.dtype(), a.device());
  if (out.numel() == 0) return out;
  StridedIndex idx = make_strided_index("permute", os, st);
  size_t elem = dtype_size(a.dtype());
  // A (batched) swap of the last two merged dims reads along columns: the tiled transpose keeps both sides
  // contiguous. Any other permute keeps the innermost dim contiguous on the input side, so the gather is fine.
  int64_t batch = 0, rows = 0, cols = 0;
  if (idx.ndim == 2 && idx.stride[0] == 1 && idx.stride[1] == idx.size[0]) {
    batch = 1; rows = idx.size[1]; cols = idx.size[0];
  } else if (idx.ndim == 3 && idx.stride[1] == 1 && idx.stride[2] == idx.size[1] &&
             idx.stride[0] == idx.size[1] * idx.size[2]) {
    batch = idx.size[0]; rows = idx.size[2]; cols = idx.size[1];
  }
  if (batch > 0) {
    if (a.is_cuda())
      transpose_cuda(elem, a.raw_data(), out.raw_data(), batch, rows, cols, current_stream(a.device()));
    else
      transpose_cpu(elem, a.raw_data(), out.raw_data(), batch, rows, cols);
  } else {
    gather(a, out, 0, idx);
  }
  return out;
}

static Tensor permute_recorded(const Tensor& a, const std::vector<int64_t>& p) {
  Tensor out = permute_raw(a, p);
  std::vector<int64_t> inv(p.size());
  for (size_t k = 0; k < p.size(); ++k) inv[size_t(p[k])] = int64_t(k);
  record(out, "permute", {a}, [inv](const Tensor& dout, const NeedsGrad&) {
    return std::vector<Tensor>{permute_raw(dout, inv)};
  });
  return out;
}

Tensor permute(const Tensor& a, const std::vector<int64_t>& dims) {
  return permute_recorded(a, check_permutation("permute", a, dims));
}

Tensor transpose(const Tensor& a, int64_t dim0, int64_t dim1) {
  int64_t d0 = normalize_dim(dim0, a.dim(), "transpose"), d1 = normalize_dim(dim1, a.dim(), "transpose");
  std::vector<int64_t> p(static_cast<size_t>(a.dim()));
  std::iota(p.begin(), p.end(), 0);
  std::swap(p[size_t(d0)], p[size_t(d1)]);
  return permute_recorded(a, p);
}

// ---- slice ---------------------------------------------------------------------------------------------------------
Tensor slice(const Tensor& a, int64_t dim, int64_t start, int64_t end, int64_t step) {
  int64_t d = normalize_dim(dim, a.dim(), "slice");
  EP_CHECK(step >= 1, ValueError, "[slice] step must be >= 1, got ", step);
  const int64_t size = a.shape()[size_t(d)];
  // Python semantics: negative indices count from the end, then both ends clamp to [0, size].
  auto clamp = [size](int64_t i) { return std::clamp(i < 0 ? i + size : i, int64_t(0), size); };
  start = clamp(start);
  end = clamp(end);
  const int64_t len = end > start ? (end - start + step - 1) / step : 0;
  Shape os = a.shape();
  os[size_t(d)] = len;
  std::vector<int64_t> st = contiguous_strides(a.shape());
  const int64_t base = start * st[size_t(d)];
  st[size_t(d)] *= step;
  Tensor out = empty(os, a.dtype(), a.device());
  StridedIndex idx{};
  if (out.numel() > 0) {
    idx = make_strided_index("slice", os, st);
    gather(a, out, base, idx);
  }
  record(out, "slice", {a}, [in = a.shape(), base, idx](const Tensor& dout, const NeedsGrad&) {
    Tensor g = zeros(in, dout.dtype(), dout.device());
    if (dout.numel() > 0) scatter(dout, g, base, idx);
    return std::vector<Tensor>{g};
  });
  return out;
}

// ---- concat / split ------------------------------------------------------------------------------------------------
Tensor concat(const std::vector<Tensor>& parts, int64_t dim) {
  EP_CHECK(!parts.empty(), ValueError, "[concat] needs at least one tensor");
  const Tensor& p0 = parts[0];
  const int64_t d = normalize_dim(dim, p0.dim(), "concat");
  Shape os = p0.shape();
  os[size_t(d)] = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Tensor& p = parts[i];
    EP_CHECK(p.dtype() == p0.dtype(), DTypeError, "[concat] part ", i, " is ", dtype_name(p.dtype()),
             " but part 0 is ", dtype_name(p0.dtype()));
    EP_CHECK(p.device() == p0.device(), DeviceError, "[concat] part ", i, " is on ", p.device().str(),
             " but part 0 is on ", p0.device().str());
    bool ok = p.dim() == p0.dim();
    for (int64_t k = 0; ok && k < p.dim(); ++k) ok = k == d || p.shape()[size_t(k)] == p0.shape()[size_t(k)];
    EP_CHECK(ok, ShapeError, "[concat] part ", i, " has shape ", shape_str(p.shape()), " but part 0 has ",
             shape_str(p0.shape()), ": shapes must match except in dim ", d);
    os[size_t(d)] += p.shape()[size_t(d)];
  }
  Tensor out = empty(os, p0.dtype(), p0.device());
  const std::vector<int64_t> ost = contiguous_strides(os);
  // Part i lands at offset off_i along d: its index space with the output's strides, shifted by off_i * stride.
  std::vector<int64_t> bases(parts.size());
  std::vector<StridedIndex> idxs(parts.size());
  int64_t off = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    bases[i] = off * ost[size_t(d)];
    off += parts[i].shape()[size_t(d)];
    if (parts[i].numel() == 0) continue;
    idxs[i] = make_strided_index("concat", parts[i].shape(), ost);
    scatter(parts[i], out, bases[i], idxs[i]);
  }
  std::vector<Shape> shapes;
  for (const Tensor& p : parts) shapes.push_back(p.shape());
  record(out, "concat", parts, [shapes, bases, idxs](const Tensor& dout, const NeedsGrad& need) {
    std::vector<Tensor> g(shapes.size());
    for (size_t i = 0; i < shapes.size(); ++i) {
      if (!need[i]) continue;
      g[i] = empty(shapes[i], dout.dtype(), dout.device());
      if (g[i].numel() > 0) gather(dout, g[i], bases[i], idxs[i]);
    }
    return g;
  });
  return out;
}

std::vector<Tensor> split(const Tensor& a, const std::vector<int64_t>& sizes, int64_t dim) {
  const int64_t d = normalize_dim(dim, a.dim(), "split");
  auto list = [&] {
    std::string s = "[";
    for (size_t k = 0; k < sizes.size(); ++k) s += (k ? "," : "") + std::to_string(sizes[k]);
    return s + "]";
  };
  int64_t total = 0;
  for (int64_t s : sizes) {
    EP_CHECK(s >= 0, ValueError, "[split] negative size in ", list());
    total += s;
  }
  EP_CHECK(total == a.shape()[size_t(d)], ShapeError, "[split] sizes ", list(), " sum to ", total, " but dim ", d,
           " of ", shape_str(a.shape()), " has size ", a.shape()[size_t(d)]);
  std::vector<Tensor> parts;
  int64_t off = 0;
  for (int64_t s : sizes) {
    parts.push_back(slice(a, d, off, off + s, 1));
    off += s;
  }
  return parts;
}

std::vector<Tensor> split(const Tensor& a, int64_t chunk_size, int64_t dim) {
  const int64_t d = normalize_dim(dim, a.dim(), "split");
  EP_CHECK(chunk_size >= 1, ValueError, "[split] chunk_size must be >= 1, got ", chunk_size);
  const int64_t size = a.shape()[size_t(d)];
  std::vector<int64_t> sizes;
  for (int64_t off = 0; off < size; off += chunk_size) sizes.push_back(std::min(chunk_size, size - off));
  if (sizes.empty()) sizes.push_back(0);  // an empty dim splits into one empty part, as torch.split
  return split(a, sizes, d);
}

}  // namespace ep
