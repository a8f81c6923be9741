// synthetic_data.cpp — `build/synthetic_data --out DIR [--synthetic-size N] [--seed S]`: writes the synthetic shapes
// that `train_cv --data synthetic` trains on (same size and seed, same images and order) as CIFAR-10 binary files, so
// PyTorch (apps/bench/torch_recipe.py) or `train_cv --data DIR` reads exactly them. Not an image exporter: no PNGs.
#include <cstdio>
#include <string>

#include "apps/cli.h"
#include "data/cifar10.h"
#include "data/synthetic.h"

using namespace ep;

namespace {

int run(int argc, char** argv) {
  cli::Options o("synthetic_data");
  o.add("out", "string", "", "folder for data_batch_1..5.bin and test_batch.bin (created if missing)")
      .add("synthetic-size", "int", 5000, "training images, as train_cv's flag (test: a fifth, at least 10)")
      .add("seed", "int", 0, "seed, as train_cv's --seed");
  if (!cli::parse_or_help(o, argc, argv)) return 0;
  if (o.str("out").empty()) o.fail("--out is required");
  if (o.integer("synthetic-size") < 5 || o.integer("synthetic-size") > 1'000'000)
    o.fail("--synthetic-size must be in [5, 1000000]");
  data::SyntheticSplit s = data::make_synthetic_split(o.integer("synthetic-size"), uint64_t(o.integer("seed")));
  data::write_cifar10_dir(o.str("out"), s.train, s.test);
  std::string labels;
  for (size_t k = 0; k < s.train.class_names.size(); ++k)
    labels += (k ? ", " : "") + std::to_string(k) + " " + s.train.class_names[k];
  std::printf("%s: %lld training and %lld test images; labels %s\n", o.str("out").c_str(), (long long)s.train.size(),
              (long long)s.test.size(), labels.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return cli::guarded_main("synthetic_data", [&] { return run(argc, argv); });
}
