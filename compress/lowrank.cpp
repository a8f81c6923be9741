// lowrank.cpp — per-matrix low-rank factors by warm-started power (subspace) iteration, PowerSGD-style, as the seeds'
// "power iteration 3D": x̂ = Q Pᵀ with Q orthonormal. Not a randomized SVD (no singular values are sent) and no
// GEMM library: the matrices at split points are small per sample, and plain loops in f64 keep the CPU reference
// simple and deterministic.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "compress/compress_kernels.h"
#include "compress/methods.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/dispatch.h"
#include "engine/philox.h"

namespace ep::compress {

std::unique_ptr<Compressor> make_lowrank(SpecArgs& a) {
  LowrankOptions o;
  o.rank = int(a.get_int("rank", 4, 1, 1 << 20));
  o.iters = int(a.get_int("iters", 2, 1, 1000));
  o.warm = a.get_int("warm", 1, 0, 1) == 1;
  o.seed = uint64_t(a.get_int("seed", 0, 0, std::numeric_limits<int64_t>::max()));
  return std::make_unique<LowrankCompressor>(o);
}

std::string LowrankCompressor::spec() const {
  return "lowrank:rank=" + std::to_string(opt_.rank) + ",iters=" + std::to_string(opt_.iters) +
         ",warm=" + (opt_.warm ? "1" : "0") + ",seed=" + std::to_string(opt_.seed);
}

namespace {

// Column j of a row-major [rows, r] matrix A.
double col_dot(const double* A, int64_t rows, int64_t r, int64_t i, int64_t j) {
  double s = 0;
  for (int64_t k = 0; k < rows; ++k) s += A[k * r + i] * A[k * r + j];
  return s;
}

// Orthonormalizes the columns of A [rows, r] in place (modified Gram-Schmidt, applied twice for accuracy: the Q of a
// thin QR). A column that is (numerically) in the span of the previous ones becomes zero, so a rank-deficient input
// keeps an orthonormal set of the columns that carry information.
void orthonormalize(double* A, int64_t rows, int64_t r) {
  for (int64_t j = 0; j < r; ++j) {
    const double before = std::sqrt(col_dot(A, rows, r, j, j));
    for (int pass = 0; pass < 2; ++pass)
      for (int64_t i = 0; i < j; ++i) {
        const double d = col_dot(A, rows, r, i, j);
        for (int64_t k = 0; k < rows; ++k) A[k * r + j] -= d * A[k * r + i];
      }
    const double after = std::sqrt(col_dot(A, rows, r, j, j));
    const bool keep = after > 1e-10 * before && after > 0;
    for (int64_t k = 0; k < rows; ++k) A[k * r + j] = keep ? A[k * r + j] / after : 0.0;
  }
}

// Unit-norm columns (a zero column stays zero): same subspace, bounded magnitudes between iterations.
void normalize_columns(double* A, int64_t rows, int64_t r) {
  for (int64_t j = 0; j < r; ++j) {
    const double nrm = std::sqrt(col_dot(A, rows, r, j, j));
    if (nrm > 0)
      for (int64_t k = 0; k < rows; ++k) A[k * r + j] /= nrm;
  }
}

}  // namespace

Payload LowrankCompressor::encode(const Tensor& x, cudaStream_t stream) {
  const bool on_gpu = gpu_path(x, true);
  std::optional<StreamGuard> guard;
  if (on_gpu && stream) guard.emplace(x.device(), stream);
  Tensor h = on_gpu ? x.detach() : host_input(x, "lowrank");  // on the GPU path h stays on the device
  if (on_gpu) check_finite_on_device(h, "lowrank");
  const LowrankGeometry g = lowrank_geometry(h.shape());
  const int64_t r = std::min<int64_t>(opt_.rank, std::min(g.rows, g.cols));
  const int64_t B = g.matrices, m = g.rows, c = g.cols;
  Payload p;
  p.method = Method::lowrank;
  p.dtype = h.dtype();
  p.shape = h.shape();
  p.params = {uint32_t(r)};
  p.table.assign(size_t(B * (m + c) * r), 0.0f);
  if (r == 0) {
    p.check_consistent("lowrank");
    return p;
  }
  // P [B, c, r]: the warm start when the shape is unchanged, else Philox normals. A zero column (from a zero
  // matrix last time) is redrawn, or the iteration could never leave the zero subspace again.
  const bool warm = opt_.warm && warm_shape_ == h.shape() && warm_p_.size() == size_t(B * c * r);
  std::vector<double> P = warm ? warm_p_ : std::vector<double>(size_t(B * c * r));
  const uint64_t offset = gen_.advance(uint64_t(B * c * r));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < r; ++j) {
      double* Pb = P.data() + b * c * r;
      if (warm && col_dot(Pb, c, r, j, j) > 0) continue;
      for (int64_t k = 0; k < c; ++k)
        Pb[k * r + j] = philox_normal(gen_.seed, offset, uint64_t((b * c + k) * r + j));
    }
  if (on_gpu) {
    // The GPU twin: the same P start, the GEMMs through the engine's (cuBLAS) matmul in f64 and the Gram-Schmidt on the
    // GPU. Its dot products and GEMM sums associate differently from the CPU loops, so the factors agree with the
    // CPU's to rounding, not bit for bit (the tests compare decoded tensors with a tolerance).
    const Device dev = h.device();
    NoGradGuard no_grad;
    const Tensor M = reshape(h.to(DType::f64), {B, m, c});
    Tensor Pd = from_data<double>(P, {B, c, r}, dev), Q;
    for (int it = 0; it < opt_.iters; ++it) {
      const bool last = it + 1 == opt_.iters;
      orthonormalize_cuda(Pd.data<double>(), B, c, r, last, current_stream(dev));
      Q = matmul(M, Pd);  // [B, m, r]
      if (last) orthonormalize_cuda(Q.data<double>(), B, m, r, true, current_stream(dev));
      Pd = matmul(M, Q, /*trans_a=*/true);  // [B, c, r]
    }
    const std::vector<double> qh = Q.to_vector<double>();
    P = Pd.to_vector<double>();
    for (int64_t b = 0; b < B; ++b) {
      float* out = p.table.data() + b * (m + c) * r;
      for (int64_t k = 0; k < m * r; ++k) out[k] = float(qh[size_t(b * m * r + k)]);
      for (int64_t k = 0; k < c * r; ++k) out[m * r + k] = float(P[size_t(b * c * r + k)]);
    }
  } else dispatch_float(h.dtype(), "lowrank", [&](auto tag) {
    using T = EP_TYPE(tag);
    const T* xs = h.data<T>();
#pragma omp parallel for schedule(dynamic)
    for (int64_t b = 0; b < B; ++b) {
      const T* M = xs + b * m * c;  // [m, c] row-major
      double* Pb = P.data() + b * c * r;
      std::vector<double> Q(size_t(m * r));
      for (int it = 0; it < opt_.iters; ++it) {
        const bool last = it + 1 == opt_.iters;
        if (last) orthonormalize(Pb, c, r);
        else normalize_columns(Pb, c, r);
        for (int64_t i = 0; i < m; ++i)  // Q = M P
          for (int64_t j = 0; j < r; ++j) {
            double s = 0;
            for (int64_t k = 0; k < c; ++k) s += double(M[i * c + k]) * Pb[k * r + j];
            Q[size_t(i * r + j)] = s;
          }
        if (last) orthonormalize(Q.data(), m, r);
        for (int64_t k = 0; k < c * r; ++k) Pb[k] = 0;  // P = Mᵀ Q
        for (int64_t i = 0; i < m; ++i)
          for (int64_t k = 0; k < c; ++k) {
            const double v = double(M[i * c + k]);
            for (int64_t j = 0; j < r; ++j) Pb[k * r + j] += v * Q[size_t(i * r + j)];
          }
      }
      float* out = p.table.data() + b * (m + c) * r;
      for (int64_t k = 0; k < m * r; ++k) out[k] = float(Q[size_t(k)]);
      for (int64_t k = 0; k < c * r; ++k) out[m * r + k] = float(Pb[k]);
    }
  });
  for (float v : p.table)  // a finite input can still overflow f32 in P = Mᵀ Q (|x| near FLT_MAX)
    EP_CHECK(std::isfinite(v), ValueError, "[lowrank] factors overflow f32 for input ", shape_str(h.shape()));
  warm_shape_ = h.shape();
  warm_p_ = std::move(P);
  p.check_consistent("lowrank");
  return p;
}

template <class T> void decode_lowrank(const Payload& p, T* out) {
  const LowrankGeometry g = lowrank_geometry(p.shape);
  const int64_t r = p.params[0], m = g.rows, c = g.cols;
  if (r == 0) {
    std::fill(out, out + p.numel(), T(0));
    return;
  }
  // Each P transposed to [r, c] first, so a row of x̂ accumulates a block of columns at a time, term j = 0..r-1 in
  // order from 0 as the per-element dot product did (the same bits), in loops over columns that vectorize.
  std::vector<float> pt(size_t(g.matrices * r * c));
  for (int64_t b = 0; b < g.matrices; ++b) {
    const float* P = p.table.data() + b * (m + c) * r + m * r;
    for (int64_t k = 0; k < c; ++k)
      for (int64_t j = 0; j < r; ++j) pt[size_t((b * r + j) * c + k)] = P[k * r + j];
  }
  constexpr int64_t kCols = 256;
#pragma omp parallel for collapse(2) if (p.numel() > (1 << 16))
  for (int64_t b = 0; b < g.matrices; ++b)
    for (int64_t i = 0; i < m; ++i) {
      const float* Q = p.table.data() + b * (m + c) * r + i * r;
      for (int64_t k0 = 0; k0 < c; k0 += kCols) {
        const int64_t cols = std::min(kCols, c - k0);
        double acc[kCols] = {};
        for (int64_t j = 0; j < r; ++j) {
          const double q = Q[j];
          const float* row = pt.data() + (b * r + j) * c + k0;
          for (int64_t k = 0; k < cols; ++k) acc[k] += q * double(row[k]);
        }
        T* o = out + (b * m + i) * c + k0;
        for (int64_t k = 0; k < cols; ++k) o[k] = T(acc[k]);
      }
    }
}
template void decode_lowrank<float>(const Payload&, float*);
template void decode_lowrank<double>(const Payload&, double*);

}  // namespace ep::compress
