// test_core.cpp — tensors, dtypes, devices, factories, host access and the typed errors of the core.
#include <doctest/doctest.h>

#include <cmath>
#include <thread>

#include "tests/test_util.h"

using namespace ep;

TEST_CASE("device strings parse and bad ones name the string") {
  CHECK(Device::parse("cpu") == Device::cpu());
  CHECK(Device::parse("cuda:1") == Device::cuda(1));
  CHECK(Device::parse("cuda").index == 0);
  CHECK_THROWS_AS(Device::parse("gpu0"), ValueError);
  CHECK_THROWS_WITH(Device::parse("cuda:x"), doctest::Contains("cuda:x"));
}

TEST_CASE("dtype sizes and half conversions against published bit patterns") {
  CHECK(dtype_size(DType::bf16) == 2);
  CHECK(dtype_size(DType::i64) == 8);
  // IEEE binary16 reference values (Wikipedia "Half-precision floating-point format" table).
  CHECK(float_to_f16(1.0f).bits == 0x3c00);
  CHECK(float_to_f16(-2.0f).bits == 0xc000);
  CHECK(float_to_f16(65504.0f).bits == 0x7bff);
  CHECK(float_to_f16(65520.0f).bits == 0x7c00);           // rounds to +inf
  CHECK(float_to_f16(5.960464477539063e-08f).bits == 0x0001);  // smallest subnormal
  CHECK(float_to_f16(0.333251953125f).bits == 0x3555);
  CHECK(f16_to_float(f16_t{0x3555}) == 0.333251953125f);
  CHECK(f16_to_float(f16_t{0x0001}) == 5.960464477539063e-08f);
  CHECK(std::isnan(f16_to_float(float_to_f16(NAN))));
  // bfloat16: the upper 16 bits of the f32 pattern, rounded to nearest even.
  CHECK(float_to_bf16(1.0f).bits == 0x3f80);
  CHECK(float_to_bf16(3.140625f).bits == 0x4049);
  CHECK(float_to_bf16(bits_float(0x3f808000u)).bits == 0x3f80);  // tie -> even
  CHECK(float_to_bf16(bits_float(0x3f818000u)).bits == 0x3f82);  // tie -> even (up)
  CHECK(bf16_to_float(bf16_t{0x4049}) == 3.140625f);
}

TEST_CASE("factories, host round trips and casts between every dtype") {
  Tensor t = from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(t.shape() == Shape{2, 3});
  CHECK(t.numel() == 6);
  CHECK(t.to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5, 6});
  CHECK(zeros({3}).to_vector<float>() == std::vector<float>{0, 0, 0});
  CHECK(full({2}, 2.5, DType::f64).to_vector<double>() == std::vector<double>{2.5, 2.5});
  CHECK(arange(4, DType::i64).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3});
  for (DType dt : {DType::f64, DType::f16, DType::bf16, DType::u8, DType::i8, DType::i16, DType::i32, DType::i64})
    CHECK(t.to(dt).to(DType::f32).to_vector<float>() == t.to_vector<float>());
  CHECK(from_vector({-1.7, 2.9}, {2}).to(DType::i32).to_vector<int32_t>() == std::vector<int32_t>{-1, 2});
  CHECK(scalar_tensor(3).shape().empty());
  CHECK(scalar_tensor(3).item() == 3.0);
  Tensor e = empty({0, 5});
  CHECK(e.numel() == 0);
  CHECK(e.to_vector<float>().empty());
}

TEST_CASE("typed errors name the op and the shapes") {
  CHECK_THROWS_AS(from_vector({1, 2, 3}, {2, 2}), ShapeError);
  CHECK_THROWS_AS(empty({-1, 2}), ShapeError);
  Tensor a = zeros({2, 3}), b = zeros({4, 3});
  CHECK_THROWS_WITH_AS(add(a, b), "[add] shapes [2,3] and [4,3] cannot be broadcast", ShapeError);
  CHECK_THROWS_WITH_AS(add(a, zeros({2, 3}, DType::f64)), "[add] dtype mismatch: f32 and f64", DTypeError);
  CHECK_THROWS_WITH_AS(reshape(a, {5}), doctest::Contains("[reshape]"), ShapeError);
  CHECK_THROWS_AS(a.data<double>(), DTypeError);
  CHECK_THROWS_AS(zeros({2}, DType::i32).requires_grad_(), DTypeError);
  if (!cuda_built()) CHECK_THROWS_WITH_AS(zeros({2}, DType::f32, Device::cuda()), "[storage] built without CUDA", DeviceError);
}

TEST_CASE("CUDA: streams, events, stream guard, device copies and wrong-device errors") {
  if (!test::have_cuda()) return;
  Device g = Device::cuda();
  Tensor a = from_vector({1, 2, 3}, {3}, DType::f32, g);
  CHECK(a.device() == g);
  CHECK(a.cpu().to_vector<float>() == std::vector<float>{1, 2, 3});
  Stream s(g);
  Event start(g), stop(g);
  {
    StreamGuard guard(s);
    CHECK(current_stream(g) == s.handle());
    start.record(s.handle());
    Tensor b = mul(a, 2.0);  // runs on s
    stop.record(s.handle());
    stop.synchronize();
    CHECK(b.cpu().to_vector<float>() == std::vector<float>{2, 4, 6});
    CHECK(start.elapsed_ms(stop) >= 0.0f);
  }
  CHECK(current_stream(g) != s.handle());
  Tensor c = from_vector({1, 2, 3}, {3});
  CHECK_THROWS_WITH_AS(add(a, c), "[add] tensors on different devices: cuda:0 and cpu", DeviceError);
  CHECK_THROWS_AS(zeros({1}, DType::f32, Device::cuda(cuda_device_count())), DeviceError);
  // A large allocation round trip through the stream-ordered pool.
  Tensor big = zeros({int64_t(1) << 26}, DType::f32, g);
  CHECK(sum(big).item() == 0.0);
}

TEST_CASE("peak tensor memory: counts live tensor storage, reset to what is in use, per device") {
  for (Device d : {Device::cpu(), Device::cuda(0)}) {
    if (d.is_cuda() && !test::have_cuda()) continue;
    INFO(d.str());
    synchronize(d);
    reset_peak_tensor_bytes(d);
    const uint64_t base = peak_tensor_bytes(d);
    {
      Tensor big = empty({1 << 20}, DType::f32, d);  // 4 MiB
      synchronize(d);
      CHECK(peak_tensor_bytes(d) >= base + (4u << 20));
    }
    synchronize(d);
    // Freed: the mark stays until a reset, which brings it back to what is still in use (not the 4 MiB).
    CHECK(peak_tensor_bytes(d) >= base + (4u << 20));
    reset_peak_tensor_bytes(d);
    CHECK(peak_tensor_bytes(d) < base + (4u << 20));
    {
      Tensor a = empty({1 << 18}, DType::f32, d), b = empty({1 << 18}, DType::f32, d);  // two MiB at once
      synchronize(d);
    }
    Tensor c = empty({1 << 18}, DType::f32, d);  // one MiB after they were freed
    synchronize(d);
    const uint64_t two = peak_tensor_bytes(d);
    CHECK(two >= base + (2u << 20));
    CHECK(two < base + (3u << 20));
  }
}

TEST_CASE("host memory: a freed large block is reused for the next request of its size, from any thread") {
  // glibc would unmap such a block when a worker thread frees it and map fresh pages for the next one (the data
  // loader's 224x224 batches); the engine keeps it. Threads as the loader's prefetch thread uses them.
  const void* first = nullptr;
  const void* second = nullptr;
  std::thread([&] {
    Tensor big = empty({int64_t(20) << 20}, DType::f32);  // 80 MiB
    first = big.raw_data();
  }).join();
  std::thread([&] {
    Tensor again = empty({int64_t(20) << 20}, DType::f32);
    second = again.raw_data();
    Tensor other = empty({int64_t(20) << 20}, DType::f32);  // the cached block is taken: a new one
    CHECK(other.raw_data() != second);
  }).join();
  CHECK(first == second);
  // A much smaller request does not take a large cached block (it would waste most of it).
  Tensor small = empty({int64_t(9) << 20}, DType::f32);  // 36 MiB
  CHECK(small.raw_data() != first);
}
