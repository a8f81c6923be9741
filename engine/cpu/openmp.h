// openmp.h — OpenMP's thread queries, or their one-thread answers in a build without OpenMP (the ThreadSanitizer
// build: Debian's libgomp is not instrumented, so there the pragmas are ignored and every loop runs serially).
#pragma once
#ifdef _OPENMP
#include <omp.h>
#else
inline int omp_get_max_threads() { return 1; }
inline int omp_get_num_threads() { return 1; }
inline int omp_get_thread_num() { return 0; }
inline void omp_set_num_threads(int) {}
#endif
