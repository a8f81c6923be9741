// test_layout.cpp — transpose, permute, slice, concat, split, where and masked_fill: hand-computed values, a host
// reference for random permutes, every dtype for the byte movers, float64 gradchecks, CPU-vs-CUDA parity on awkward
// shapes (empty, size-1 dims, odd sizes, a 1029x917 transpose) and the exact error messages.
#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "tests/test_util.h"

using namespace ep;

namespace {

// Host reference: output element at multi-index o reads the input at sum_k o[k] * stride_in[p[k]].
std::vector<double> ref_permute(const std::vector<double>& v, const Shape& s, const std::vector<int64_t>& p) {
  std::vector<int64_t> st(s.size(), 1);
  for (size_t k = s.size(); k-- > 1;) st[k - 1] = st[k] * s[k];
  Shape os(p.size());
  for (size_t k = 0; k < p.size(); ++k) os[k] = s[size_t(p[k])];
  std::vector<double> out(v.size());
  for (int64_t i = 0; i < int64_t(v.size()); ++i) {
    int64_t rem = i, off = 0;
    for (size_t k = os.size(); k-- > 0;) {
      off += (rem % os[k]) * st[size_t(p[k])];
      rem /= os[k];
    }
    out[size_t(i)] = v[size_t(off)];
  }
  return out;
}

Tensor arange_f(int64_t n, const Shape& shape, DType dt = DType::f32, Device d = Device::cpu()) {
  std::vector<double> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0.0);
  return from_vector(v, shape, dt, d);
}

Tensor grad_input(const Shape& s, uint64_t seed) {
  Tensor t = test::randn(s, seed, DType::f64, test::test_device());
  t.requires_grad_();
  return t;
}

Tensor mask_tensor(const std::vector<double>& v, const Shape& s, Device d = Device::cpu()) {
  return from_vector(v, s, DType::u8, d);
}

}  // namespace

// ---- transpose / permute -------------------------------------------------------------------------------------------
TEST_CASE("transpose and permute: hand values") {
  Device d = test::test_device();
  // [[0,1,2],[3,4,5]]^T = [[0,3],[1,4],[2,5]]
  Tensor t = transpose(arange_f(6, {2, 3}, DType::f32, d), 0, 1);
  CHECK(t.shape() == Shape{3, 2});
  CHECK(t.to_vector<float>() == std::vector<float>{0, 3, 1, 4, 2, 5});
  // [2,3,4] with dims (2,0,1): out[k][i][j] = in[i][j][k] = 12i + 4j + k
  Tensor p = permute(arange_f(24, {2, 3, 4}, DType::f32, d), {2, 0, 1});
  CHECK(p.shape() == Shape{4, 2, 3});
  std::vector<float> pv = p.to_vector<float>();
  CHECK(pv[0] == 0);               // [0][0][0]
  CHECK(pv[1] == 4);               // [0][0][1] = in[0][1][0]
  CHECK(pv[3] == 12);              // [0][1][0] = in[1][0][0]
  CHECK(pv[6] == 1);               // [1][0][0] = in[0][0][1]
  CHECK(pv[23] == 23);             // [3][1][2] = in[1][2][3]
  // negative dims, identity permutes and 0-D tensors copy
  CHECK(transpose(arange_f(6, {2, 3}, DType::f32, d), -1, -2).to_vector<float>() == t.to_vector<float>());
  CHECK(permute(arange_f(6, {2, 3}, DType::f32, d), {0, 1}).to_vector<float>() == std::vector<float>{0, 1, 2, 3, 4, 5});
  Tensor s = scalar_tensor(4.5, DType::f32, d);
  CHECK(permute(s, {}).item() == 4.5);
}

TEST_CASE("permute matches a host reference for random shapes and permutations, every dtype") {
  Device d = test::test_device();
  std::mt19937_64 rng(31);
  for (int trial = 0; trial < 60; ++trial) {
    const int rank = 1 + int(rng() % 5);
    Shape s(static_cast<size_t>(rank));
    for (auto& x : s) x = int64_t(1 + rng() % 5);
    if (trial % 7 == 0) s[rng() % size_t(rank)] = 1;
    std::vector<int64_t> p(static_cast<size_t>(rank));
    std::iota(p.begin(), p.end(), 0);
    std::shuffle(p.begin(), p.end(), rng);
    const int64_t n = shape_numel(s);
    std::vector<double> v(static_cast<size_t>(n));
    for (auto& x : v) x = double(rng() % 100);
    std::vector<double> want = ref_permute(v, s, p);
    for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::u8, DType::i8, DType::i16, DType::i32,
                     DType::i64}) {
      INFO("shape " << shape_str(s) << " dtype " << dtype_name(dt) << " trial " << trial);
      Tensor out = permute(from_vector(v, s, dt, d), p);
      CHECK(out.dtype() == dt);
      CHECK(out.to_double_vector() == want);
    }
  }
  // Batched last-two-dim swaps take the tiled transpose path; sizes straddle the 32-wide tiles.
  for (Shape s : {Shape{3, 33, 65}, Shape{1, 70, 31}, Shape{2, 5, 1, 40, 33}}) {
    const int64_t n = shape_numel(s);
    std::vector<double> v(static_cast<size_t>(n));
    std::iota(v.begin(), v.end(), 0.0);
    std::vector<int64_t> p(s.size());
    std::iota(p.begin(), p.end(), 0);
    std::swap(p[s.size() - 1], p[s.size() - 2]);
    for (DType dt : {DType::f32, DType::f64, DType::i16, DType::u8}) {
      INFO("shape " << shape_str(s) << " dtype " << dtype_name(dt));
      std::vector<double> want = ref_permute(v, s, p);
      if (dt == DType::u8)
        for (auto& x : want) x = double(uint8_t(int64_t(x) & 255));
      std::vector<double> in = v;
      if (dt == DType::u8)
        for (auto& x : in) x = double(uint8_t(int64_t(x) & 255));
      CHECK(permute(from_vector(in, s, dt, d), p).to_double_vector() == want);
    }
  }
  // An 8-D reversal merges nothing and still fits the kernel's index.
  Shape s8(8, 2);
  std::vector<int64_t> rev{7, 6, 5, 4, 3, 2, 1, 0};
  std::vector<double> v8(256);
  std::iota(v8.begin(), v8.end(), 0.0);
  CHECK(permute(from_vector(v8, s8, DType::f32, d), rev).to_double_vector() == ref_permute(v8, s8, rev));
}

TEST_CASE("transpose/permute: gradcheck and parity") {
  test::gradcheck([](const std::vector<Tensor>& in) { return transpose(in[0], 0, 2); }, {grad_input({3, 4, 5}, 1)});
  test::gradcheck([](const std::vector<Tensor>& in) { return permute(in[0], {1, 3, 0, 2}); },
                  {grad_input({2, 3, 4, 2}, 2)});
  test::gradcheck([](const std::vector<Tensor>& in) { return transpose(in[0], 0, 1); }, {grad_input({7, 9}, 3)});

  auto tr = [](const std::vector<Tensor>& in) { return transpose(in[0], 0, 1); };
  Tensor big = test::randn({1029, 917}, 4, DType::f32);
  big.requires_grad_();
  test::check_parity(tr, {big});
  for (Shape s : {Shape{0, 5}, Shape{1, 1}, Shape{1, 7}, Shape{33, 1}, Shape{31, 65}}) {
    Tensor x = test::randn(s, 5, DType::f32);
    x.requires_grad_();
    test::check_parity(tr, {x});
  }
  auto pm = [](const std::vector<Tensor>& in) { return permute(in[0], {2, 0, 3, 1}); };
  for (Shape s : {Shape{3, 5, 7, 2}, Shape{1, 9, 1, 13}, Shape{2, 0, 3, 4}, Shape{17, 3, 33, 5}}) {
    Tensor x = test::randn(s, 6, DType::f32);
    x.requires_grad_();
    test::check_parity(pm, {x});
  }
  auto bt = [](const std::vector<Tensor>& in) { return transpose(in[0], -1, -2); };
  Tensor b = test::randn({5, 67, 45}, 7, DType::f32);
  b.requires_grad_();
  test::check_parity(bt, {b});
  // integer data takes the same byte movers on the GPU
  test::check_parity(pm, {test::randint({3, 5, 7, 2}, 8, -100, 100, DType::i64)});
  test::check_parity(bt, {test::randint({3, 37, 41}, 9, 0, 255, DType::u8)});
}

TEST_CASE("transpose/permute: errors name the dims and shapes") {
  Tensor a = zeros({2, 3, 4});
  CHECK_THROWS_WITH_AS(permute(a, {0, 1}), "[permute] dims [0,1] do not match a 3-D tensor [2,3,4]", ShapeError);
  CHECK_THROWS_WITH_AS(permute(a, {0, 1, 1}), "[permute] dims [0,1,1] repeat dim 1", ShapeError);
  CHECK_THROWS_WITH_AS(permute(a, {0, 2, -1}), "[permute] dims [0,2,-1] repeat dim 2", ShapeError);
  CHECK_THROWS_WITH_AS(permute(a, {0, 1, 3}), "[permute] dim 3 out of range for a 3-D tensor", ShapeError);
  CHECK_THROWS_WITH_AS(transpose(a, 0, 3), "[transpose] dim 3 out of range for a 3-D tensor", ShapeError);
}

// ---- slice ---------------------------------------------------------------------------------------------------------
TEST_CASE("slice: python semantics for negative indices, clamping and steps") {
  Device d = test::test_device();
  Tensor a = arange_f(10, {10}, DType::f32, d);
  // Each line is what a[start:end:step] gives in Python for a = list(range(10)).
  CHECK(slice(a, 0, 2, 5).to_vector<float>() == std::vector<float>{2, 3, 4});
  CHECK(slice(a, 0, -3, 100, 2).to_vector<float>() == std::vector<float>{7, 9});       // a[-3:100:2]
  CHECK(slice(a, 0, -100, 3).to_vector<float>() == std::vector<float>{0, 1, 2});       // a[-100:3]
  CHECK(slice(a, 0, 1, 10, 3).to_vector<float>() == std::vector<float>{1, 4, 7});      // a[1:10:3]
  CHECK(slice(a, 0, 1, -1, 4).to_vector<float>() == std::vector<float>{1, 5});         // a[1:-1:4]
  CHECK(slice(a, 0, 8, 2).numel() == 0);                                                // a[8:2] == []
  CHECK(slice(a, 0, 12, 20).numel() == 0);                                              // a[12:20] == []
  CHECK(slice(a, 0, 0, INT64_MAX).to_vector<float>() == a.to_vector<float>());
  // 2-D: columns 1..3 of [[0..4],[5..9]], and rows with a step
  Tensor m = arange_f(10, {2, 5}, DType::f32, d);
  Tensor c = slice(m, 1, 1, 4);
  CHECK(c.shape() == Shape{2, 3});
  CHECK(c.to_vector<float>() == std::vector<float>{1, 2, 3, 6, 7, 8});
  Tensor r = slice(m, -2, 1, 2);
  CHECK(r.shape() == Shape{1, 5});
  CHECK(r.to_vector<float>() == std::vector<float>{5, 6, 7, 8, 9});
  CHECK(slice(m, 1, 0, 5, 2).to_vector<float>() == std::vector<float>{0, 2, 4, 5, 7, 9});
  // integer dtypes move too
  CHECK(slice(arange(6, DType::i64, d), 0, 1, 6, 2).to_vector<int64_t>() == std::vector<int64_t>{1, 3, 5});
}

TEST_CASE("slice: backward scatters into zeros") {
  Tensor x = arange_f(10, {2, 5}, DType::f64, test::test_device());
  x.requires_grad_();
  Tensor y = slice(x, 1, 1, 5, 2);  // columns 1 and 3
  y.backward(from_vector({1, 2, 3, 4}, {2, 2}, DType::f64, x.device()));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 1, 0, 2, 0, 0, 3, 0, 4, 0});
}

TEST_CASE("slice: gradcheck and parity") {
  test::gradcheck([](const std::vector<Tensor>& in) { return slice(in[0], 1, 1, -1, 2); }, {grad_input({3, 7, 4}, 11)});
  test::gradcheck([](const std::vector<Tensor>& in) { return slice(in[0], -1, -3, 100); }, {grad_input({4, 5}, 12)});
  test::gradcheck([](const std::vector<Tensor>& in) { return slice(in[0], 0, 2, 3); }, {grad_input({4, 5}, 13)});
  struct Case { Shape s; int64_t dim, start, end, step; };
  for (const Case& c : {Case{{1029, 917}, 1, 3, 900, 3}, Case{{1029, 917}, 0, -500, 1029, 1},
                        Case{{5, 0, 3}, 2, 0, 2, 1}, Case{{5, 4, 3}, 1, 3, 1, 1}, Case{{1, 1, 9}, 2, 1, 9, 4},
                        Case{{6, 7, 1}, 0, 1, 6, 5}}) {
    INFO("shape " << shape_str(c.s));
    Tensor x = test::randn(c.s, 14, DType::f32);
    x.requires_grad_();
    test::check_parity([c](const std::vector<Tensor>& in) { return slice(in[0], c.dim, c.start, c.end, c.step); },
                       {x});
  }
}

TEST_CASE("slice: errors") {
  Tensor a = zeros({2, 3});
  CHECK_THROWS_WITH_AS(slice(a, 0, 0, 1, 0), "[slice] step must be >= 1, got 0", ValueError);
  CHECK_THROWS_WITH_AS(slice(a, 2, 0, 1), "[slice] dim 2 out of range for a 2-D tensor", ShapeError);
}

// ---- concat / split ------------------------------------------------------------------------------------------------
TEST_CASE("concat and split: hand values") {
  Device d = test::test_device();
  Tensor a = arange_f(4, {2, 2}, DType::f32, d);             // [[0,1],[2,3]]
  Tensor b = add(arange_f(2, {2, 1}, DType::f32, d), 10.0);  // [[10],[11]]
  Tensor c = concat({a, b}, 1);
  CHECK(c.shape() == Shape{2, 3});
  CHECK(c.to_vector<float>() == std::vector<float>{0, 1, 10, 2, 3, 11});
  Tensor r = concat({a, transpose(b, 0, 1), a}, 0);
  CHECK(r.shape() == Shape{5, 2});
  CHECK(r.to_vector<float>() == std::vector<float>{0, 1, 2, 3, 10, 11, 0, 1, 2, 3});
  // empty parts are allowed and contribute nothing
  CHECK(concat({a, zeros({2, 0}, DType::f32, d), b}, -1).to_vector<float>() == c.to_vector<float>());
  // integer concat
  Tensor i = concat({arange(3, DType::i32, d), arange(2, DType::i32, d)}, 0);
  CHECK(i.to_vector<int32_t>() == std::vector<int32_t>{0, 1, 2, 0, 1});

  std::vector<Tensor> parts = split(arange_f(10, {2, 5}, DType::f32, d), std::vector<int64_t>{2, 0, 3}, 1);
  REQUIRE(parts.size() == 3);
  CHECK(parts[0].to_vector<float>() == std::vector<float>{0, 1, 5, 6});
  CHECK(parts[1].shape() == Shape{2, 0});
  CHECK(parts[2].to_vector<float>() == std::vector<float>{2, 3, 4, 7, 8, 9});
  std::vector<Tensor> chunks = split(arange_f(7, {7}, DType::f32, d), 3, 0);
  REQUIRE(chunks.size() == 3);
  CHECK(chunks[0].to_vector<float>() == std::vector<float>{0, 1, 2});
  CHECK(chunks[2].to_vector<float>() == std::vector<float>{6});
  CHECK(split(zeros({0, 3}, DType::f32, d), 2, 0).size() == 1);  // torch.split of an empty dim: one empty part
  CHECK(split(arange_f(4, {4}, DType::f32, d), 10, 0).size() == 1);
}

TEST_CASE("concat and split: backward routes each slice to its part") {
  Device d = test::test_device();
  Tensor a = zeros({2, 1}, DType::f64, d), b = zeros({2, 2}, DType::f64, d);
  a.requires_grad_();
  b.requires_grad_();
  concat({a, b}, 1).backward(from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64, d));
  CHECK(a.grad().to_vector<double>() == std::vector<double>{1, 4});
  CHECK(b.grad().to_vector<double>() == std::vector<double>{2, 3, 5, 6});
  Tensor x = zeros({5}, DType::f64, d);
  x.requires_grad_();
  std::vector<Tensor> p = split(x, std::vector<int64_t>{2, 3}, 0);
  add(sum(mul(p[0], 2.0)), sum(mul(p[1], 3.0))).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2, 2, 3, 3, 3});
}

TEST_CASE("concat and split: gradcheck and parity") {
  test::gradcheck([](const std::vector<Tensor>& in) { return concat(in, 1); },
                  {grad_input({2, 3, 2}, 21), grad_input({2, 1, 2}, 22), grad_input({2, 4, 2}, 23)});
  test::gradcheck([](const std::vector<Tensor>& in) { return concat(in, 0); },
                  {grad_input({3}, 24), grad_input({0}, 25), grad_input({5}, 26)});
  test::gradcheck(
      [](const std::vector<Tensor>& in) {
        std::vector<Tensor> p = split(in[0], std::vector<int64_t>{1, 3, 2}, -1);
        return concat({p[2], p[0], p[1]}, -1);  // reordered, so each part's gradient is distinct
      },
      {grad_input({3, 6}, 27)});
  test::gradcheck(
      [](const std::vector<Tensor>& in) {
        std::vector<Tensor> p = split(in[0], 2, 0);
        return concat({mul(p[1], 2.0), p[0], mul(p[2], -1.0)}, 0);
      },
      {grad_input({5, 3}, 28)});

  auto cat3 = [](const std::vector<Tensor>& in) { return concat(in, 1); };
  std::vector<Tensor> big = {test::randn({1029, 400}, 29, DType::f32), test::randn({1029, 0}, 30, DType::f32),
                             test::randn({1029, 517}, 31, DType::f32)};
  for (auto& t : big) t.requires_grad_();
  test::check_parity(cat3, big);
  std::vector<Tensor> small = {test::randn({1, 1, 1}, 32, DType::f32), test::randn({1, 5, 1}, 33, DType::f32),
                               test::randn({1, 2, 1}, 34, DType::f32)};
  for (auto& t : small) t.requires_grad_();
  test::check_parity(cat3, small);
  test::check_parity(cat3, {test::randint({3, 2}, 35, 0, 9, DType::i64), test::randint({3, 7}, 36, 0, 9, DType::i64)});
  Tensor x = test::randn({7, 917}, 37, DType::f32);
  x.requires_grad_();
  test::check_parity(
      [](const std::vector<Tensor>& in) {
        std::vector<Tensor> p = split(in[0], 300, 1);
        return concat({p[3], p[1], p[0], p[2]}, 1);
      },
      {x});
}

TEST_CASE("concat and split: errors name the part and the shapes") {
  Tensor a = zeros({2, 3});
  CHECK_THROWS_WITH_AS(concat({}, 0), "[concat] needs at least one tensor", ValueError);
  CHECK_THROWS_WITH_AS(concat({a, zeros({3, 3})}, 1),
                       "[concat] part 1 has shape [3,3] but part 0 has [2,3]: shapes must match except in dim 1",
                       ShapeError);
  CHECK_THROWS_WITH_AS(concat({a, a, zeros({2})}, 0),
                       "[concat] part 2 has shape [2] but part 0 has [2,3]: shapes must match except in dim 0",
                       ShapeError);
  CHECK_THROWS_WITH_AS(concat({a, zeros({2, 3}, DType::f64)}, 0), "[concat] part 1 is f64 but part 0 is f32",
                       DTypeError);
  CHECK_THROWS_WITH_AS(concat({a}, 2), "[concat] dim 2 out of range for a 2-D tensor", ShapeError);
  CHECK_THROWS_WITH_AS(split(a, std::vector<int64_t>{1, 1}, 1),
                       "[split] sizes [1,1] sum to 2 but dim 1 of [2,3] has size 3", ShapeError);
  CHECK_THROWS_WITH_AS(split(a, std::vector<int64_t>{4, -1}, 1), "[split] negative size in [4,-1]", ValueError);
  CHECK_THROWS_WITH_AS(split(a, 0, 1), "[split] chunk_size must be >= 1, got 0", ValueError);
  if (test::have_cuda())
    CHECK_THROWS_WITH_AS(concat({a, zeros({2, 3}, DType::f32, Device::cuda())}, 0),
                         "[concat] part 1 is on cuda:0 but part 0 is on cpu", DeviceError);
}

// ---- where / masked_fill -------------------------------------------------------------------------------------------
TEST_CASE("where and masked_fill: hand values with broadcasting") {
  Device d = test::test_device();
  // cond [2,1] = [[1],[0]], a [3] = [1,2,3], b [] = -1 -> [[1,2,3],[-1,-1,-1]]
  Tensor w = where(mask_tensor({1, 0}, {2, 1}, d), from_vector({1, 2, 3}, {3}, DType::f32, d),
                   full({}, -1, DType::f32, d));
  CHECK(w.shape() == Shape{2, 3});
  CHECK(w.to_vector<float>() == std::vector<float>{1, 2, 3, -1, -1, -1});
  // cond [3] = [0,1,7] (nonzero is true), a [2,1] = [[10],[20]], b [2,3] = 0..5 -> [[0,10,10],[3,20,20]]
  Tensor w2 = where(mask_tensor({0, 1, 7}, {3}, d), from_vector({10, 20}, {2, 1}, DType::f32, d),
                    arange_f(6, {2, 3}, DType::f32, d));
  CHECK(w2.to_vector<float>() == std::vector<float>{0, 10, 10, 3, 20, 20});
  // integer and half dtypes select too
  Tensor wi = where(mask_tensor({1, 0}, {2}, d), full({2}, 5, DType::i64, d), full({2}, -7, DType::i64, d));
  CHECK(wi.to_vector<int64_t>() == std::vector<int64_t>{5, -7});
  Tensor wh = where(mask_tensor({0, 1}, {2}, d), full({2}, 1.5, DType::bf16, d), full({2}, -2, DType::bf16, d));
  CHECK(wh.to_double_vector() == std::vector<double>{-2, 1.5});

  // masked_fill: a [2,3] = 0..5, mask [3] = [1,0,1] -> [[9,1,9],[9,4,9]]; with -inf as attention masks use
  Tensor m = masked_fill(arange_f(6, {2, 3}, DType::f32, d), mask_tensor({1, 0, 1}, {3}, d), 9);
  CHECK(m.to_vector<float>() == std::vector<float>{9, 1, 9, 9, 4, 9});
  Tensor inf = masked_fill(arange_f(4, {2, 2}, DType::f32, d), mask_tensor({0, 1}, {2, 1}, d), -INFINITY);
  std::vector<float> iv = inf.to_vector<float>();
  CHECK(iv[0] == 0);
  CHECK(iv[1] == 1);
  CHECK(std::isinf(iv[2]));
  CHECK(iv[2] < 0);
  Tensor mi = masked_fill(full({3}, 4, DType::u8, d), mask_tensor({0, 1, 0}, {3}, d), 255);
  CHECK(mi.to_vector<uint8_t>() == std::vector<uint8_t>{4, 255, 4});
  Tensor mh = masked_fill(full({2}, 1, DType::f16, d), mask_tensor({1, 0}, {2}, d), 0.5);
  CHECK(mh.to_double_vector() == std::vector<double>{0.5, 1});
  CHECK(masked_fill(zeros({0, 3}, DType::f32, d), mask_tensor({1, 0, 1}, {3}, d), 1).numel() == 0);
}

TEST_CASE("where and masked_fill: backward masks dout and sums broadcast dims") {
  Device d = test::test_device();
  Tensor a = from_vector({1, 2, 3}, {3}, DType::f64, d), b = full({2, 1}, 0, DType::f64, d);
  a.requires_grad_();
  b.requires_grad_();
  // cond [2,3]; dout = 1..6: a gets the column sums of dout where cond, b the row sums where !cond
  Tensor cond = mask_tensor({1, 0, 1, 1, 1, 0}, {2, 3}, d);
  where(cond, a, b).backward(from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64, d));
  CHECK(a.grad().to_vector<double>() == std::vector<double>{1 + 4, 5, 3});
  CHECK(b.grad().to_vector<double>() == std::vector<double>{2, 6});
  Tensor x = zeros({2, 2}, DType::f64, d);
  x.requires_grad_();
  masked_fill(x, mask_tensor({1, 0}, {2}, d), 3).backward(from_vector({1, 2, 3, 4}, {2, 2}, DType::f64, d));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 2, 0, 4});
}

TEST_CASE("where and masked_fill: gradcheck and parity") {
  Device d = test::test_device();
  Tensor cond = test::randint({3, 4, 5}, 41, 0, 2, DType::u8, d);
  test::gradcheck([cond](const std::vector<Tensor>& in) { return where(cond, in[0], in[1]); },
                  {grad_input({3, 4, 5}, 42), grad_input({3, 4, 5}, 43)});
  Tensor cond2 = test::randint({4, 1}, 44, 0, 2, DType::u8, d);
  test::gradcheck([cond2](const std::vector<Tensor>& in) { return where(cond2, in[0], in[1]); },
                  {grad_input({3, 1, 5}, 45), grad_input({5}, 46)});
  Tensor mask = test::randint({1, 5}, 47, 0, 2, DType::u8, d);
  test::gradcheck([mask](const std::vector<Tensor>& in) { return masked_fill(in[0], mask, -2.5); },
                  {grad_input({4, 5}, 48)});

  auto wf = [](const std::vector<Tensor>& in) { return where(in[0], in[1], in[2]); };
  struct Case { Shape c, a, b; };
  for (const Case& k : {Case{{1029, 917}, {1029, 917}, {1029, 917}}, Case{{1029, 1}, {917}, {1029, 917}},
                        Case{{1}, {3, 1, 5}, {4, 1}}, Case{{0, 3}, {3}, {1, 3}},
                        Case{{7, 1, 1}, {1, 9, 1}, {1, 1, 11}}}) {
    INFO("cond " << shape_str(k.c) << " a " << shape_str(k.a) << " b " << shape_str(k.b));
    Tensor a = test::randn(k.a, 49, DType::f32), b = test::randn(k.b, 50, DType::f32);
    a.requires_grad_();
    b.requires_grad_();
    test::check_parity(wf, {test::randint(k.c, 51, 0, 2, DType::u8), a, b});
  }
  test::check_parity(wf, {test::randint({5, 3}, 52, 0, 2, DType::u8), test::randint({5, 3}, 53, -9, 9, DType::i32),
                          test::randint({3}, 54, -9, 9, DType::i32)});
  auto mf = [](const std::vector<Tensor>& in) { return masked_fill(in[0], in[1], -1e4); };
  for (auto [s, ms] : {std::pair<Shape, Shape>{{1029, 917}, {1, 917}}, {{2, 3, 4, 5}, {2, 1, 1, 5}}, {{0, 4}, {4}},
                       {{1, 1}, {1, 1}}}) {
    Tensor x = test::randn(s, 55, DType::f32);
    x.requires_grad_();
    test::check_parity(mf, {x, test::randint(ms, 56, 0, 2, DType::u8)});
  }
}

TEST_CASE("where and masked_fill: errors") {
  Tensor a = zeros({2, 3});
  CHECK_THROWS_WITH_AS(where(zeros({2, 3}), a, a), "[where] cond must be u8, got f32", DTypeError);
  CHECK_THROWS_WITH_AS(where(zeros({2, 3}, DType::u8), a, zeros({2, 3}, DType::f64)),
                       "[where] dtype mismatch: f32 and f64", DTypeError);
  CHECK_THROWS_WITH_AS(where(zeros({4}, DType::u8), a, a), "[where] shapes [4] and [2,3] cannot be broadcast",
                       ShapeError);
  CHECK_THROWS_WITH_AS(masked_fill(a, zeros({3}, DType::i32), 0), "[masked_fill] mask must be u8, got i32",
                       DTypeError);
  CHECK_THROWS_WITH_AS(masked_fill(a, zeros({4, 2, 3}, DType::u8), 0),
                       "[masked_fill] mask [4,2,3] cannot be broadcast to [2,3]", ShapeError);
  CHECK_THROWS_WITH_AS(masked_fill(a, zeros({2}, DType::u8), 0),
                       "[masked_fill] shapes [2] and [2,3] cannot be broadcast", ShapeError);
  CHECK_THROWS_WITH_AS(masked_fill(zeros({2}, DType::u8), zeros({2}, DType::u8), 256),
                       "[masked_fill] value 256 does not fit u8", ValueError);
  if (test::have_cuda())
    CHECK_THROWS_WITH_AS(masked_fill(a, zeros({3}, DType::u8, Device::cuda()), 0),
                         "[masked_fill] mask is on cuda:0 but the values are on cpu", DeviceError);
}
