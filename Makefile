# edgepipe — the one build. `make` builds build/libedgepipe.a, every app and the test binary.
#   make test            the doctest suite (DEVICE=cuda make test runs it on the GPU)
#   make run             the main job on the embedded default data
#   make bench           build/bench ops
#   make deps            installs missing Debian packages (root) or prints the apt-get line
#   make data            CIFAR-10 into data/ (unpacks ../shared/data, else downloads the binary release)
#   make device-bundle   build/device-bundle/: binaries + non-CUDA shared libraries for a GPU machine
#   CUDA ?= auto|0|1     auto builds the CUDA backend when nvcc and cuDNN headers are found
#   MPI ?= auto|0|1      auto builds the multi-process pipeline transport when mpicxx (OpenMPI) is found
#   OPT ?= -O3           the C++ optimization flags (a change of any compile flag rebuilds the objects)
#   TEST_OPT ?= -O1      the test files' optimization flags (the library keeps OPT)
#   SANITIZE ?= address|thread   a CPU-only build under AddressSanitizer+UBSan or ThreadSanitizer, in build-<name>/
#                        (make SANITIZE=address test; see README "Sanitizers")
#   make fuzz            libFuzzer on every reader of outside bytes (clang, build-fuzz/); FUZZ_SECONDS per target
SHELL := /bin/bash
.DEFAULT_GOAL := all
SANITIZE ?=
ifneq ($(SANITIZE),)
  BUILD ?= build-$(SANITIZE)
  CUDA := 0
endif
ifeq ($(SANITIZE),fuzzer)  # the library instrumented for libFuzzer's coverage, under ASan + UBSan (make fuzz)
  CXX := clang++
  OPT ?= -O1
  MPI := 0
endif
BUILD ?= build
CXX ?= g++
OPT ?= -O3
# OpenMP, except under ThreadSanitizer: Debian's libgomp is not instrumented, so TSan cannot see its barriers and
# reports the work they order as races (reliability.md §6). There the pragmas are ignored and the loops run serially;
# the threads TSan checks are ours (pipeline workers, the loader's producer, the tokenizer's cache).
OPENMP := $(if $(filter thread,$(SANITIZE)),-Wno-unknown-pragmas,-fopenmp)
CXXFLAGS ?= $(OPT) -g -std=c++20 -Wall -Wextra -Wno-unused-parameter $(OPENMP) -I. -MMD -MP
LDLIBS := -lopenblas $(filter -fopenmp,$(OPENMP)) -lpthread
ifeq ($(SANITIZE),address)
  CXXFLAGS += -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
  LDLIBS += -fsanitize=address,undefined
else ifeq ($(SANITIZE),thread)
  CXXFLAGS += -fsanitize=thread
  LDLIBS += -fsanitize=thread
else ifeq ($(SANITIZE),fuzzer)
  CXXFLAGS += -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
              -Wno-pass-failed  # an omp simd loop left scalar at -O1 is not a problem here
  LDLIBS += -fsanitize=fuzzer,address,undefined
else ifneq ($(SANITIZE),)
  $(error SANITIZE=$(SANITIZE): expected address, thread or fuzzer)
endif

# ---- CUDA detection --------------------------------------------------------------------------------------------
CUDA ?= auto
NPROC := $(shell nproc 2>/dev/null || echo 2)
CUDA_HOME ?= $(shell dirname $$(dirname $$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)))
NVCC := $(CUDA_HOME)/bin/nvcc
# cuDNN: CUDNN_HOME, else the toolkit, else /usr/local, /usr, or the copy a PyTorch install ships in site-packages.
CUDNN_PY := $(shell python3 -c 'import nvidia.cudnn,os;print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null)
CUDNN_HOME ?= $(firstword $(foreach d,$(CUDA_HOME) /usr/local /usr $(CUDNN_PY),$(if $(wildcard $(d)/include/cudnn.h),$(d))) \
                $(if $(wildcard /usr/include/x86_64-linux-gnu/cudnn.h),/usr))
ifeq ($(CUDA),auto)
  CUDA := $(if $(and $(wildcard $(NVCC)),$(CUDNN_HOME)),1,0)
endif
CUDA_ARCHS ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
              -gencode arch=compute_90,code=compute_90
NVCCFLAGS ?= -O3 -std=c++20 -I. $(CUDA_ARCHS) --expt-relaxed-constexpr -Xcompiler -fopenmp -MMD -MP \
             -DEP_CUDA=1 -Xcudafe --diag_suppress=177

# ---- MPI (pipelines across processes: mpirun -np S ... --distributed mpi) -----------------------------------------
MPI ?= auto
ifeq ($(MPI),auto)
  MPI := $(if $(shell command -v mpicxx 2>/dev/null),1,0)
endif
ifeq ($(MPI),1)
  CXXFLAGS += -DEP_MPI=1 -DOMPI_SKIP_MPICXX=1 $(shell mpicxx --showme:compile)
  LDLIBS += $(filter-out -lmpi_cxx,$(shell mpicxx --showme:link))
endif

ENGINE_CPP := $(wildcard engine/*.cpp engine/ops/*.cpp engine/cpu/*.cpp layers/*.cpp compress/*.cpp \
                         pipeline/*.cpp data/*.cpp)
ifeq ($(CUDA),1)
  CXXFLAGS += -DEP_CUDA=1 -I$(CUDA_HOME)/include -I$(CUDNN_HOME)/include \
              $(if $(wildcard $(CUDA_HOME)/extras/CUPTI/include),-I$(CUDA_HOME)/extras/CUPTI/include)
  ENGINE_CPP += $(filter-out engine/cuda/runtime_stub.cpp,$(wildcard engine/cuda/*.cpp))
  ENGINE_CU := $(wildcard engine/cuda/*.cu compress/*.cu)
  LDLIBS += -L$(CUDA_HOME)/lib64 -L$(CUDNN_HOME)/lib -L$(CUDNN_HOME)/lib64 -lcudnn -lcublasLt -lcublas -lcudart \
            -Wl,-rpath,$(CUDA_HOME)/lib64
else
  ENGINE_CPP += engine/cuda/runtime_stub.cpp
  ENGINE_CU :=
endif

ENGINE_OBJ := $(ENGINE_CPP:%.cpp=$(BUILD)/obj/%.o) $(ENGINE_CU:%.cu=$(BUILD)/obj/%.cu.o)
TEST_OBJ := $(patsubst %.cpp,$(BUILD)/obj/%.o,$(wildcard tests/*.cpp))
APPS := $(patsubst apps/%.cpp,$(BUILD)/%,$(wildcard apps/*.cpp))
LIB := $(BUILD)/libedgepipe.a

all: $(LIB) $(APPS) $(BUILD)/tests
	@echo "built with CUDA=$(CUDA) MPI=$(MPI)"

$(LIB): $(ENGINE_OBJ)
	@rm -f $@
	ar rcs $@ $^

# Objects depend on the flags they were compiled with (one stamp per compiler): a changed OPT, CUDA or MPI setting
# rebuilds them instead of linking objects of two configurations.
define flags_stamp
$(BUILD)/$(1): FORCE
	@mkdir -p $(BUILD)
	@echo '$(2)' | cmp -s - $$@ || echo '$(2)' > $$@
endef
# The flags of the one file built apart (stb_image's, below) are part of the stamp too, so a change rebuilds it.
STB_CXXFLAGS := -fwrapv $(if $(SANITIZE),-fno-sanitize=signed-integer-overflow)
# The test files compile at TEST_OPT (GCC takes the last -O): the suite's time is spent in the library, built at OPT,
# and -O1 builds the 45 test files in about 60% of -O3's time (464 against about 290 s of one core's compiling).
TEST_OPT ?= -O1
$(TEST_OBJ): CXXFLAGS += $(TEST_OPT)
$(eval $(call flags_stamp,cxx-flags,$(CXX) $(CXXFLAGS) $(STB_CXXFLAGS) $(TEST_OPT)))
$(eval $(call flags_stamp,nvcc-flags,$(NVCC) $(NVCCFLAGS)))
FORCE:

$(BUILD)/obj/%.o: %.cpp $(BUILD)/cxx-flags
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@
# stb_image 2.27 (Debian's, compiled in image_folder.cpp) overflows int arithmetic on hostile JPEGs: a DC prediction
# that grew without bound times the quantizer (found by libFuzzer; stb 2.28 rejects such files). There, signed
# overflow wraps (-fwrapv), so it is defined and yields only a garbage image of a corrupt file; the sanitizers are
# told not to report what -fwrapv defines.
$(BUILD)/obj/data/image_folder.o: CXXFLAGS += $(STB_CXXFLAGS)

$(BUILD)/obj/%.cu.o: %.cu $(BUILD)/nvcc-flags
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

# --whole-archive: every op file links in, so the op registry the tests check is complete.
$(BUILD)/tests: $(TEST_OBJ) $(LIB)
	$(CXX) $(CXXFLAGS) -o $@ $(TEST_OBJ) -Wl,--whole-archive $(LIB) -Wl,--no-whole-archive $(LDLIBS)

# A static pattern rule: its objects are explicit prerequisites, so make keeps them. A chain of implicit rules
# deleted them as intermediate files after the first build, and the next build, reading their .d files, rebuilt them.
$(APPS): $(BUILD)/%: $(BUILD)/obj/apps/%.o $(LIB)
	$(CXX) $(CXXFLAGS) -o $@ $< $(LIB) $(LDLIBS)

# ---- the README's commands ---------------------------------------------------------------------------------------
DEB_PACKAGES := libopenblas-dev libstb-dev nlohmann-json3-dev doctest-dev
# Optional: without them MPI=auto builds without the multi-process pipeline transport, and its tests skip.
DEB_OPTIONAL := libopenmpi-dev openmpi-bin
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	optional=$$(for p in $(DEB_OPTIONAL); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing$$optional" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq || true; \
	  if [ -n "$$missing" ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing || exit 1; fi; \
	  if [ -n "$$optional" ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$optional || \
	    echo "deps: could not install" $$optional "(optional): building without MPI"; fi; \
	elif [ -n "$$missing" ]; then echo "missing Debian packages; run: sudo apt-get install -y" $$missing $$optional; exit 1; \
	else echo "deps: optional packages missing (sudo apt-get install -y" $$optional"): building without MPI"; fi

test: deps
	@$(MAKE) --no-print-directory -j$(NPROC) all
	$(BUILD)/tests $(TEST_ARGS)

# The main job, the seeds' setup: MobileNetV2 (CIFAR variant, width 0.5) split edge | cloud | edge, 8-bit sort
# quantization (6 bits + 2 split bits) at both boundaries, a 3-stage pipeline of 4 micro-batches, for a few minutes
# on 2 CPU cores: on CIFAR-10 when `make data` has put a copy in data/ (5,000 training and 2,000 test images, strided
# so classes stay balanced), else on the embedded synthetic shapes (apps/configs/make_run.json). RUN_ARGS adds flags,
# e.g. RUN_ARGS="--device cuda".
RUN_DATA := $(if $(wildcard data/cifar10-jpeg/test),--data data/cifar10-jpeg --train-subset 5000 --test-subset 2000 \
              --epochs 3 --lr 0.05 --out runs/make_run_cifar)
run: deps
	@$(MAKE) --no-print-directory -j$(NPROC) all
	$(BUILD)/train_cv --config apps/configs/make_run.json $(RUN_DATA) $(RUN_ARGS)

bench: deps
	@$(MAKE) --no-print-directory -j$(NPROC) all
	$(BUILD)/bench ops

# CIFAR-10 for the trainers: the JPEG copy in ../shared/data unpacked to data/cifar10-jpeg/{train,test}/<class>/, or,
# without it, the official binary release downloaded to data/cifar-10-batches-bin/ (both ignored by git).
CIFAR_TGZ ?= ../shared/data/cifar10/cifar10-jpeg.tar.gz
CIFAR_URL ?= https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz
data:
	@if [ -d data/cifar10-jpeg/test ] || [ -f data/cifar-10-batches-bin/test_batch.bin ]; then echo "data: CIFAR-10 already present"; \
	elif [ -f $(CIFAR_TGZ) ]; then echo "data: unpacking $(CIFAR_TGZ)"; tar xzf $(CIFAR_TGZ) -C data; \
	else echo "data: $(CIFAR_TGZ) not found, downloading $(CIFAR_URL)"; \
	     curl -fL --retry 2 -o data/cifar-10-binary.tar.gz $(CIFAR_URL) && tar xzf data/cifar-10-binary.tar.gz -C data && \
	     rm data/cifar-10-binary.tar.gz || { echo "data: download failed; pass --data DIR to the trainer"; exit 1; }; fi

# A folder that runs on a GPU machine with the CUDA runtime, cuBLAS and cuDNN but no Debian packages, and the same
# folder as a tarball (a quarter of the size) for carrying it there.
device-bundle: all
	rm -rf $(BUILD)/device-bundle && mkdir -p $(BUILD)/device-bundle/lib
	cp $(BUILD)/tests $(APPS) $(BUILD)/device-bundle/
	for lib in $$(ldd $(BUILD)/tests $(APPS) | awk '/=>/ {print $$3}' | sort -u | \
	    grep -E 'openblas|gfortran|gomp|quadmath|libmpi|open-rte|open-pal|hwloc|libevent|libudev|libz\.so'); do cp -L $$lib $(BUILD)/device-bundle/lib/; done
	# CUPTI for --profile-kernels, searched after the GPU machine's own (run puts lib/cupti last on the path)
	for d in $(CUDA_HOME)/lib64 $(CUDA_HOME)/extras/CUPTI/lib64; do if [ -f $$d/libcupti.so.13 ]; then \
	  mkdir -p $(BUILD)/device-bundle/lib/cupti && \
	  cp -L $$d/libcupti.so.13 $(BUILD)/device-bundle/lib/cupti/; break; fi; done
	strip --strip-debug $(BUILD)/device-bundle/tests $(patsubst $(BUILD)/%,$(BUILD)/device-bundle/%,$(APPS))
	cp apps/bench/bundle_run.sh $(BUILD)/device-bundle/run
	cp apps/bench/torch_*.py $(BUILD)/device-bundle/
	chmod +x $(BUILD)/device-bundle/run
	tar czf $(BUILD)/device-bundle.tar.gz -C $(BUILD) device-bundle
	du -sh $(BUILD)/device-bundle $(BUILD)/device-bundle.tar.gz

# ---- coverage-guided fuzzing (clang's libFuzzer) -----------------------------------------------------------------
# `make fuzz` builds build-fuzzer/ (the library under libFuzzer coverage + ASan + UBSan) and runs every target of
# tests/fuzz_targets.h for FUZZ_SECONDS, starting from the target's seeds and the inputs kept in
# tests/fuzz/regressions/<target>/. A crash, leak, timeout, sanitizer report or Finding is saved in
# build-fuzzer/findings/<target>/ and fails the run. FUZZ_TARGETS="glue image" picks targets.
FUZZ_TARGETS ?= safetensors checkpoint cifar10 image glue bpe_files bpe_text json_config cli_config wire payload \
                boundary
FUZZ_SECONDS ?= 60
FUZZ_BUILD := build-fuzzer
ifeq ($(SANITIZE),fuzzer)
$(BUILD)/fuzz: $(BUILD)/obj/tests/fuzz/fuzz_main.o $(BUILD)/obj/tests/fuzz_targets.o $(LIB)
	$(CXX) $(CXXFLAGS) -o $@ $^ $(LDLIBS)
# One binary; its name picks the target (fuzz_main.cpp), so each target is a hard link.
$(BUILD)/fuzz_%: $(BUILD)/fuzz
	ln -f $< $@
fuzz-binaries: $(FUZZ_TARGETS:%=$(BUILD)/fuzz_%)
endif
fuzz:
	@command -v clang++ >/dev/null || { echo "make fuzz: clang++ not found (sudo apt-get install -y clang)"; exit 1; }
	@$(MAKE) --no-print-directory SANITIZE=fuzzer BUILD=$(FUZZ_BUILD) -j$(NPROC) fuzz-binaries
	@failed=""; for t in $(FUZZ_TARGETS); do \
	  corpus=$(FUZZ_BUILD)/corpus/$$t; findings=$(FUZZ_BUILD)/findings/$$t; mkdir -p $$corpus $$findings; \
	  EP_FUZZ_WRITE_SEEDS=$$corpus $(FUZZ_BUILD)/fuzz_$$t || exit 1; \
	  echo "== fuzz $$t: $(FUZZ_SECONDS) s"; \
	  OMP_NUM_THREADS=1 $(FUZZ_BUILD)/fuzz_$$t $$corpus $$(ls -d tests/fuzz/regressions/$$t 2>/dev/null) \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
	    -artifact_prefix=$$findings/ $(FUZZ_ARGS) 2>$(FUZZ_BUILD)/fuzz_$$t.log || failed="$$failed $$t"; \
	  grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' $(FUZZ_BUILD)/fuzz_$$t.log | tr '\n' ' '; \
	  echo "corpus $$(ls $$corpus | wc -l) inputs"; \
	done; \
	if [ -n "$$failed" ]; then echo "make fuzz: findings in$$failed (see $(FUZZ_BUILD)/fuzz_<target>.log and" \
	  "$(FUZZ_BUILD)/findings/)"; exit 1; fi; echo "make fuzz: no findings"

clean:
	rm -rf $(BUILD)

.PHONY: all deps test run bench data device-bundle fuzz fuzz-binaries clean FORCE
-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
