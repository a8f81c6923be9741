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

// A kernel's void* argument as a T pointer, keeping its constness (null stays null).
template <class T> const T* typed(const void* p) { return static_cast<const T*>(p); }
template <class T> T* typed(void* p) { return static_cast<T*>(p); }

}  // namespace ep
