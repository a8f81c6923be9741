// row_kernels.h — what the CPU row kernels (softmax, layer_norm, loss, batch_norm) share: the OpenMP loop over
// independent rows and their void* arguments seen as typed pointers. Not kernels: each op's math stays in its file.
#pragma once
#include <cstdint>

namespace ep {

inline constexpr int64_t kRowParallelMin = 32768;  // below this many elements, threads cost more than they save

// f(r) for every r < rows, spread over OpenMP threads once rows * cols elements are worth it. Each row belongs to one
// thread and is summed in order, so results do not depend on the thread count.
template <class F> void for_each_row(int64_t rows, int64_t cols, F&& f) {
#pragma omp parallel for if (rows * cols > kRowParallelMin)
  for (int64_t r = 0; r < rows; ++r) f(r);
}

// Double-precision sums kept in kLanes lanes: element i of a run goes to lane i % kLanes, so the loop is plain vector
// adds (no horizontal reduction per call, which dominated short runs such as a 4x4 BatchNorm plane), several runs can
// feed the same lanes, and `total` folds them in a fixed order: deterministic, whatever the thread count.
inline constexpr int kLanes = 8;
struct LaneSum {
  double lane[kLanes] = {};
  double total() const {
    double t = 0;
    for (int j = 0; j < kLanes; ++j) t += lane[j];
    return t;
  }
};

// For i < n: a.lane[i % kLanes] += fa(i) and b.lane[i % kLanes] += fb(i) (two sums from one pass over the data).
template <class FA, class FB> void add_lanes(LaneSum& a, FA&& fa, LaneSum& b, FB&& fb, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      a.lane[j] += fa(i + j);
      b.lane[j] += fb(i + j);
    }
  for (int j = 0; i + j < n; ++j) {
    a.lane[j] += fa(i + j);
    b.lane[j] += fb(i + j);
  }
}
template <class F> void add_lanes(LaneSum& a, F&& f, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) a.lane[j] += f(i + j);
  for (int j = 0; i + j < n; ++j) a.lane[j] += f(i + j);
}

// A kernel's void* argument as a T pointer, keeping its constness (null stays null).
template <class T> const T* typed(const void* p) { return static_cast<const T*>(p); }
template <class T> T* typed(void* p) { return static_cast<T*>(p); }

}  // namespace ep
