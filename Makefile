# duet — build, test, demo.
#
#   make            library (static + shared) and the duet CLI
#   make test       build and run the whole test suite
#   make asan       the test suite under ASan + UBSan (separate build dir)
#   make demo       build, then a story and a picture from the built-in models
#   make bench      benchmarks (never part of the tests; run on a quiet machine)
#   make fixtures   regenerate tests/fixtures with PyTorch (/usr/bin/python3)
#
# Options (plain variables):
#   NATIVE=1    compile everything with -march=native (not portable)
#   OPENBLAS=1  link OpenBLAS for an optional extra GEMM path (off by default)
#   BUILD=dir   build directory (default build)
#
# Portability: the base code is compiled for plain x86-64 (or the host arch);
# only src/kernels/*_avx2.c and *_avx512.c get ISA flags, and the right kernel is
# picked at start-up from CPUID, so one binary runs on CPUs without AVX-512.

CC      ?= cc
BUILD   ?= build
# -fvect-cost-model=dynamic: GCC 12's -O2 default ("very cheap") leaves loops
# that need an aliasing check scalar — the nn ops' elementwise backward loops,
# AdamW, the bias and norm gradients (~10% of a GPT-2 training step, perf).
# Vectorising them reorders no float operation (no reductions are
# vectorised without -ffast-math), so results keep their bits. Only where
# the compiler knows the flag (clang does not). Asked once, when the first
# compile expands it — after `deps` has installed the compiler on a fresh
# machine, not when make reads this file.
VECT     = $(eval VECT := $(shell $(CC) -fvect-cost-model=dynamic -x c -c /dev/null \
             -o /dev/null 2>/dev/null && echo -fvect-cost-model=dynamic))$(VECT)
OPT     ?= -O2 $(VECT)
WARN    := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
           -Wdouble-promotion -Wno-unused-parameter -Wvla -Wformat=2
CFLAGS  += -std=c11 -D_GNU_SOURCE $(OPT) -g $(WARN) -fopenmp -fPIC -Iinclude -Isrc
LDLIBS  += -lm -lz -fopenmp
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ARCH    := $(shell uname -m)

ifeq ($(SAN),1)
CFLAGS  += $(SAN_FLAGS)
LDFLAGS += $(SAN_FLAGS)
endif
ifeq ($(NATIVE),1)
CFLAGS  += -march=native
endif
ifeq ($(OPENBLAS),1)
CFLAGS  += -DDUET_OPENBLAS
LDLIBS  += -lopenblas
endif


LIB_SRC := $(filter-out src/cli/%,$(wildcard src/*/*.c))
CLI_SRC := $(wildcard src/cli/*.c)
ifneq ($(ARCH),x86_64)
LIB_SRC := $(filter-out %_avx2.c %_avx512.c,$(LIB_SRC))
endif
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_UTIL := $(BUILD)/tests/testutil.o
BENCH_SRC := $(wildcard bench/bench_*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

# ISA-specific kernel files; the hot loops get -O3.
$(BUILD)/src/kernels/%_avx2.o:   XFLAGS := -O3 -mavx2 -mfma -mf16c
$(BUILD)/src/kernels/%_avx512.o: XFLAGS := -O3 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c -mavx512bf16
$(BUILD)/src/kernels/%.o:        XFLAGS ?= -O3

.PHONY: all lib test asan demo bench fixtures clean data models deps
all: lib $(BUILD)/duet

deps:
	@sh tools/deps.sh

lib: $(BUILD)/libduet.a $(BUILD)/libduet.so

$(BUILD)/%.o: %.c $(wildcard include/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XFLAGS) -c $< -o $@

$(BUILD)/libduet.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libduet.so: $(LIB_OBJ)
	$(CC) -shared -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(BUILD)/duet: $(CLI_OBJ) $(BUILD)/libduet.a
	$(CC) -o $@ $(CLI_OBJ) $(BUILD)/libduet.a $(LDFLAGS) $(LDLIBS)

$(BUILD)/tests/testutil.o: tests/testutil.c tests/testutil.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -c $< -o $@

$(BUILD)/tests/%: tests/%.c $(TEST_UTIL) $(BUILD)/libduet.a tests/testutil.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(TEST_UTIL) $(BUILD)/libduet.a $(LDFLAGS) $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libduet.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libduet.a $(LDFLAGS) $(LDLIBS)

# The test command README gives: builds everything, runs every test binary,
# and ends with one "N passed, N failed" line; non-zero exit on any failure.
test: deps all $(TEST_BIN)
	@BUILD=$(BUILD) sh tests/run_all.sh $(TEST_BIN)

asan:
	$(MAKE) BUILD=build-asan OPT=-O1 SAN=1 test

bench: all $(BENCH_BIN)
	@echo "benchmarks built in $(BUILD)/bench; run bench/run.sh (quiet machine please)"

demo: deps all
	./$(BUILD)/duet version
	./$(BUILD)/duet demo

fixtures:
	/usr/bin/python3 tests/ref/gen_all.py

# Retrains the built-in models from scratch (fixed seeds; ~45 min on 2 cores).
models: data
	sh tools/train_models.sh

clean:
	rm -rf build build-asan

# Training texts from Debian packages (bible-kjv, bible-kjv-text, fortunes):
# data/kjv.txt (one verse a line under book headings) and data/fortunes.txt.
data: deps all
	./$(BUILD)/duet data kjv --out data/kjv.txt
	./$(BUILD)/duet data fortunes --out data/fortunes.txt

# ---- fuzzing (clang + libFuzzer; Debian: clang, libclang-rt-14-dev) ----
#   make fuzz    builds build-fuzz/fuzz/fuzz_gguf and fuzz_safetensors with
#                -fsanitize=fuzzer,address,undefined (library objects with
#                fuzzer-no-link); how to run them: fuzz/README.md
FUZZ_CC ?= clang
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%)
ifeq ($(FUZZ),1)
CFLAGS  += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=fuzzer,address,undefined
endif
.PHONY: fuzz fuzz-bins
fuzz:
	$(MAKE) BUILD=build-fuzz CC=$(FUZZ_CC) OPT=-O1 FUZZ=1 fuzz-bins
fuzz-bins: $(FUZZ_BIN)
$(BUILD)/fuzz/%: fuzz/%.c $(BUILD)/libduet.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libduet.a $(LDFLAGS) $(LDLIBS)
