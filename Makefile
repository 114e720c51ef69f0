# bagelpipe — one entry point.
#
#   make             libraries and executables into build/ (CUDA=auto|0|1)
#   make test        every test on this machine; ends with "N passed, N failed"
#   make test-gpu    the tests under tests/gpu (skipped, saying so, without a GPU)
#   make asan        the tests under AddressSanitizer and UBSan (build-asan/)
#   make fuzz        each fuzz target for FUZZ_SECONDS (build-fuzz/)
#   make bench       every benchmark; make bench-ipc for the record stream alone
#   make demo        the main job on the embedded default
#
# Warnings are errors when CI is set (CI=true make ...) or WERROR=1. Error
# messages are bounded on purpose, so -Wformat-truncation is off.

BUILD ?= build
CC ?= gcc
CUDA ?= auto
# FUZZ_SEED=N repeats a run (CI fixes it, so a failure there is one anyone can
# replay); empty, each run draws its own
FUZZ_SEED ?=
FUZZ_SECONDS ?= 60
# the supervisor and its fuzz harness want Debian 12's own Python (3.11, tomllib)
PYTHON3 ?= $(if $(wildcard /usr/bin/python3),/usr/bin/python3,python3)
VERSION := $(shell cat VERSION)

# ---- dependencies, found with pkg-config; each missing one named with the
# Debian package that provides it
DEPS_BUILD := libzmq:libzmq3-dev msgpack:libmsgpack-dev jansson:libjansson-dev vips:libvips-dev libutf8proc:libutf8proc-dev openblas:libopenblas-dev libdeflate:libdeflate-dev
DEPS_TEST := cmocka:libcmocka-dev

pc_missing = $(strip $(foreach d,$(1),$(if $(shell pkg-config --exists $(word 1,$(subst :, ,$(d))) && echo y),,$(word 2,$(subst :, ,$(d))))))
# On a fresh machine the first make installs what is missing (so that
# `make demo` and `make test` are the whole set-up); NO_INSTALL=1 only names it.
MISSING_BUILD := $(call pc_missing,$(DEPS_BUILD) $(DEPS_TEST)) $(if $(shell command -v bats),,bats)
# bagel-eval's METEOR reads WordNet 3.0 from Debian's wordnet-base
MISSING_BUILD += $(if $(wildcard /usr/share/wordnet/data.noun),,wordnet-base)
ifneq ($(strip $(MISSING_BUILD)),)
ifeq ($(filter clean,$(MAKECMDGOALS))$(NO_INSTALL),)
$(info bagelpipe: missing $(MISSING_BUILD): running scripts/install-deps.sh)
ifneq ($(shell scripts/install-deps.sh >&2; echo $$?),0)
$(error scripts/install-deps.sh failed: install $(MISSING_BUILD) by hand)
endif
else ifeq ($(filter clean,$(MAKECMDGOALS)),)
$(error missing libraries: apt-get install $(MISSING_BUILD) (or run scripts/install-deps.sh))
endif
endif
PKGS := libzmq msgpack jansson vips libutf8proc openblas
# bagel-image inflates PNGs with libdeflate
PKGS += libdeflate

WERROR ?= $(if $(CI),1,0)
SAN ?= 0
CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -fopenmp -Wall -Wextra -Wno-missing-field-initializers -Wno-format-truncation -fno-strict-aliasing
CFLAGS += -DBAGEL_VERSION='"$(VERSION)"' $(shell pkg-config --cflags $(PKGS))
ifeq ($(WERROR),1)
CFLAGS += -Werror
endif
ifeq ($(SAN),1)
CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
# each binary keeps only the libraries it uses
LDFLAGS += -Wl,--as-needed -fopenmp
LDLIBS += $(shell pkg-config --libs $(PKGS)) -lpthread -lm

# ---- CUDA: auto builds the CUDA backend when nvcc is found
NVCC ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
ifeq ($(CUDA),auto)
CUDA_ON := $(if $(NVCC),1,0)
else
CUDA_ON := $(CUDA)
endif
ifeq ($(CUDA_ON),1)
ifeq ($(NVCC),)
$(error CUDA=1 but nvcc is not found: install the CUDA toolkit or build with CUDA=0)
endif
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_ARCH ?= -gencode arch=compute_90a,code=sm_90a
NVCCFLAGS ?= -O2 -g -std=c++17 $(CUDA_ARCH) -Xcompiler -Wall,-Wextra$(if $(filter 1,$(WERROR)),$(comma)-Werror)
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -lcudart -lcublasLt -lcublas -lcudnn -lnccl -lstdc++
endif
comma := ,

# ---- sources
IPC_SRC := $(wildcard ipc/*.c)
STAGE_COMMON_SRC := $(wildcard stages/common/*.c)
# every folder under stages/ but common/ is one executable, bagel-<folder>
STAGE_NAMES := $(filter-out common,$(notdir $(patsubst %/,%,$(wildcard stages/*/))))
STAGE_LIB_SRC := $(filter-out %/main.c,$(foreach n,$(STAGE_NAMES),$(wildcard stages/$(n)/*.c)))
CUDA_SRC := $(wildcard kernels/cuda/*.cu)
# the compute library: the CPU backend of the op table and the models
MODEL_SRC := $(wildcard kernels/cpu/*.c) kernels/ops.c kernels/prof.c $(wildcard models/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
LIB_IPC := $(BUILD)/lib/libbagelipc.a
LIB_STAGE := $(BUILD)/lib/libbagelstage.a
LIB_CUDA := $(BUILD)/lib/libbagelcuda.a
LIB_MODEL := $(BUILD)/lib/libbagelmodel.a
BINS := $(patsubst %,$(BUILD)/bin/bagel-%,$(STAGE_NAMES))

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
GPU_SRC := $(wildcard tests/gpu/test_*.c)
GPU_BINS := $(if $(filter 1,$(CUDA_ON)),$(patsubst tests/gpu/%.c,$(BUILD)/tests/gpu/%,$(GPU_SRC)))
TOOLS := $(BUILD)/tools/bench-ipc $(BUILD)/tools/bench-model $(BUILD)/tools/bench-generate $(BUILD)/tests/tools/gen-records $(BUILD)/tests/tools/make-ae

.SECONDARY:
.PHONY: bench-eval
.PHONY: all test test-gpu asan fuzz bench bench-ipc bench-read bench-tokenize bench-image bench-model demo clean tests-build
.DEFAULT_GOAL := all

all: $(BINS) $(TOOLS) $(LIB_MODEL) $(if $(filter 1,$(CUDA_ON)),$(LIB_CUDA) $(GPU_BINS) $(BUILD)/tools/bench-attn)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(LIB_IPC): $(call obj,$(IPC_SRC))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(LIB_STAGE): $(call obj,$(STAGE_COMMON_SRC))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(LIB_MODEL): $(call obj,$(MODEL_SRC))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(LIB_CUDA): $(patsubst %.cu,$(BUILD)/obj/%.o,$(CUDA_SRC))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

.SECONDEXPANSION:
$(BUILD)/bin/bagel-%: $$(call obj,$$(wildcard stages/$$*/*.c)) $(LIB_STAGE) $(LIB_MODEL) $(LIB_IPC)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# bagel-generate reads records as the trainer does, tokenizes prompts and
# resizes input images as bagel-tokenize and bagel-image do
GENERATE_EXTRA := stages/train/data.c $(filter-out %/main.c,$(wildcard stages/tokenize/*.c stages/image/*.c))
$(BUILD)/bin/bagel-generate: $(call obj,$(GENERATE_EXTRA))
# (they come after the libraries on the link line: the libraries again after them)
$(BUILD)/bin/bagel-generate: LDLIBS += $(LIB_STAGE) $(LIB_MODEL) $(LIB_IPC) $(shell pkg-config --libs $(PKGS)) -lm

# bagel-train's sample generations (stages/train/sample.c) run bagel-generate's
# jobs and turn ids into text
TRAIN_EXTRA := stages/generate/gen.c $(filter-out %/main.c,$(wildcard stages/tokenize/*.c))
$(BUILD)/bin/bagel-train: $(call obj,$(TRAIN_EXTRA))
$(BUILD)/bin/bagel-train: LDLIBS += $(LIB_STAGE) $(LIB_MODEL) $(LIB_IPC) $(shell pkg-config --libs $(PKGS)) -lm

$(BUILD)/tools/bench-ipc: $(call obj,scripts/bench/bench_ipc.c) $(LIB_IPC)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# the compute executables run on CUDA too when it is built
ifeq ($(CUDA_ON),1)
CUDA_EXES := $(BUILD)/bin/bagel-train $(BUILD)/bin/bagel-encode $(BUILD)/bin/bagel-decode $(BUILD)/bin/bagel-generate $(BUILD)/tools/bench-model $(BUILD)/tools/bench-generate
$(CUDA_EXES): $(LIB_CUDA)
$(CUDA_EXES): LDLIBS += $(CUDA_LIBS)
# compute_env.c picks the op table for --device; only these executables use it
$(call obj,stages/common/compute_env.c): CFLAGS += -DBAGEL_CUDA
# bench-model reads the device memory in use (cudaMemGetInfo)
$(call obj,scripts/bench/bench_model.c): CFLAGS += -DBAGEL_CUDA -I$(CUDA_HOME)/include
$(call obj,scripts/bench/bench_generate.c): CFLAGS += -DBAGEL_CUDA -I$(CUDA_HOME)/include
endif

$(BUILD)/tools/bench-model: $(call obj,scripts/bench/bench_model.c tests/support/refcase.c) $(LIB_STAGE) $(LIB_MODEL) $(LIB_IPC)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tools/bench-generate: $(call obj,scripts/bench/bench_generate.c) $(LIB_STAGE) $(LIB_MODEL) $(LIB_IPC)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/tools/make-ae: $(call obj,tests/tools/make_ae.c) $(LIB_MODEL) $(LIB_IPC)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/tools/gen-records: $(call obj,tests/tools/gen_records.c) $(LIB_IPC)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

TEST_SUPPORT_OBJ := $(call obj,$(wildcard tests/support/*.c))

# a unit test of code compiled into a stage's executable links those objects
# too: TEST_OBJ_<name> for build/tests/test_<name>
TEST_OBJ_tb := $(call obj,stages/train/tb.c)
# bagel-eval's metric library (stages/eval/ but its main)
EVAL_LIB_OBJ := $(call obj,$(filter-out %/main.c,$(wildcard stages/eval/*.c)))
TEST_OBJ_eval := $(EVAL_LIB_OBJ)
TEST_OBJ_eval_golden := $(EVAL_LIB_OBJ)

$(BUILD)/tests/test_%: $(BUILD)/obj/tests/unit/test_%.o $$(TEST_OBJ_$$*) $(TEST_SUPPORT_OBJ) $(LIB_STAGE) $(LIB_MODEL) $(LIB_IPC)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) $(shell pkg-config --libs cmocka) -o $@

$(BUILD)/tests/gpu/test_%: $(BUILD)/obj/tests/gpu/test_%.o $(TEST_SUPPORT_OBJ) $(LIB_CUDA) $(LIB_MODEL) $(LIB_IPC)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) $(CUDA_LIBS) -o $@

$(BUILD)/obj/tests/gpu/%.o: CFLAGS += -I$(CUDA_HOME)/include

# the attention and linear kernels in TFLOP/s (CUDA only; scripts/bench/attn-gpu.sh)
$(BUILD)/tools/bench-attn: $(call obj,scripts/bench/bench_attn.c) $(LIB_CUDA) $(LIB_MODEL) $(LIB_IPC)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) $(CUDA_LIBS) -o $@
$(call obj,scripts/bench/bench_attn.c): CFLAGS += -I$(CUDA_HOME)/include

tests-build: all $(UNIT_BINS)
	@missing="$(call pc_missing,$(DEPS_TEST))"; if [ -n "$$missing" ]; then \
	  echo "missing test libraries: apt-get install $$missing (or run scripts/install-deps.sh)"; exit 1; fi

test: tests-build
	@BUILD=$(BUILD) tests/run.sh

test-gpu: all
	@BUILD=$(BUILD) CUDA_ON=$(CUDA_ON) tests/gpu/run.sh

asan:
	BAGEL_SANITIZED=1 $(MAKE) BUILD=build-asan SAN=1 CUDA=0 test

FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,build-fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_CFLAGS := -O1 -g -std=gnu11 -fopenmp -fsanitize=fuzzer,address,undefined $(shell pkg-config --cflags $(PKGS))

# a fuzz target links the libraries and every stage's code but its main
FUZZ_LINK_SRC := $(IPC_SRC) $(STAGE_COMMON_SRC) $(STAGE_LIB_SRC) $(MODEL_SRC)
# every source is compiled once with the fuzzing flags (-fsanitize=fuzzer-no-link
# keeps libFuzzer's main out of the objects); each target links them
FUZZ_OBJ := $(patsubst %.c,build-fuzz/obj/%.o,$(FUZZ_LINK_SRC))
FUZZ_OBJ_CFLAGS := $(subst -fsanitize=fuzzer$(comma),-fsanitize=fuzzer-no-link$(comma),$(FUZZ_CFLAGS))
build-fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_OBJ_CFLAGS) -MMD -MP -c $< -o $@

build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_OBJ)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) $< $(FUZZ_OBJ) $(shell pkg-config --libs $(PKGS)) -lpthread -lm -o $@

-include $(shell find build-fuzz/obj -name '*.d' 2>/dev/null)

fuzz: $(FUZZ_TARGETS)
	@for t in $(FUZZ_TARGETS); do \
	  name=$$(basename $$t); mkdir -p build-fuzz/corpus/$$name; \
	  echo "fuzz: $$name for $(FUZZ_SECONDS)s"; \
	  $$t -max_total_time=$(FUZZ_SECONDS) $(if $(FUZZ_SEED),-seed=$(FUZZ_SEED)) -rss_limit_mb=2048 -max_len=65536 -artifact_prefix=build-fuzz/$$name- \
	    build-fuzz/corpus/$$name tests/fuzz/corpus/$$name 2>build-fuzz/$$name.log \
	    || { tail -40 build-fuzz/$$name.log; echo "fuzz: $$name FAILED"; exit 1; }; \
	  grep -E '^Done [0-9]+ runs' build-fuzz/$$name.log | tail -1; \
	done
	@echo "fuzz: fuzz_pipeline (scripts/bagel-supervise's file reader) for $(FUZZ_SECONDS)s"; \
	  $(PYTHON3) tests/fuzz/fuzz_pipeline.py --seconds $(FUZZ_SECONDS) $(if $(FUZZ_SEED),--seed $(FUZZ_SEED)) --out build-fuzz tests/fuzz/corpus/fuzz_pipeline \
	    >build-fuzz/fuzz_pipeline.log 2>&1 || { tail -40 build-fuzz/fuzz_pipeline.log; echo "fuzz: fuzz_pipeline FAILED"; exit 1; }; \
	  tail -1 build-fuzz/fuzz_pipeline.log

bench: bench-ipc bench-read bench-tokenize bench-image bench-model bench-eval bench-supervise

bench-ipc: all
	@BUILD=$(BUILD) scripts/bench/ipc.sh

bench-read: all
	@BUILD=$(BUILD) scripts/bench/read.sh

bench-tokenize: all
	@BUILD=$(BUILD) scripts/bench/tokenize.sh

bench-image: all
	@BUILD=$(BUILD) scripts/bench/image.sh

bench-model: all
	@BUILD=$(BUILD) scripts/bench/model.sh

# read | tokenize | image under bagel-supervise beside the slowest stage alone
.PHONY: bench-supervise
bench-supervise: all
	@BUILD=$(BUILD) scripts/bench/supervise.sh

# bagel-eval's metrics beside sacrebleu, rouge-score and NLTK (scripts/bench/eval.sh)
$(BUILD)/tools/bench-eval: $(call obj,scripts/bench/bench_eval.c) $(filter-out %/rows.o,$(EVAL_LIB_OBJ))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

bench-eval: $(BUILD)/tools/bench-eval
	@BUILD=$(BUILD) scripts/bench/eval.sh

DEMO := $(BUILD)/demo
DEMO_STEPS ?= 200
demo: all
	@echo "make demo: a tiny BAGEL-shaped model (models/configs/tiny.json: 4 layers, hidden 256, the real"
	@echo "Qwen2 vocabulary, pixel-space autoencoder) learns to caption, answer about, edit and draw the"
	@echo "synthetic shapes dataset, on the CPU: bagel-read | bagel-tokenize | bagel-image | bagel-train."
	@rm -rf $(DEMO)/run
	$(BUILD)/bin/bagel-synth -q --out $(DEMO)/shapes --seed 1 --count 64
	@# held-out prompts the trainer generates from as it goes (report.html): two of each task
	$(BUILD)/bin/bagel-synth -q --out $(DEMO)/held --seed 2 --count 8
	for f in t2i i2t edit vqa; do head -2 $(DEMO)/held/$$f.jsonl; done > $(DEMO)/held/prompts.jsonl
	$(BUILD)/bin/bagel-read -q --root $(DEMO)/held $(DEMO)/held/prompts.jsonl \
	  | $(BUILD)/bin/bagel-tokenize -q --tokenizer $$(scripts/fetch-tokenizer.sh) \
	  | $(BUILD)/bin/bagel-image -q --root $(DEMO)/held --vae-max 128 --vae-min 64 --vit-max 112 --vit-min 56 \
	  > $(DEMO)/held/prompts.msgpack
	$(BUILD)/bin/bagel-read -q --root $(DEMO)/shapes --check-images --epochs 20 --shuffle --seed 1 $(DEMO)/shapes/*.jsonl \
	  | $(BUILD)/bin/bagel-tokenize -q --tokenizer $$(scripts/fetch-tokenizer.sh) \
	  | $(BUILD)/bin/bagel-image -q --root $(DEMO)/shapes --vae-max 128 --vae-min 64 --vit-max 112 --vit-min 56 \
	  | $(BUILD)/bin/bagel-train --config tiny --out $(DEMO)/run --steps $(DEMO_STEPS) --tokens 1024 --max-tokens 1536 \
	      --tokenizer $$(scripts/fetch-tokenizer.sh) \
	      --max-sample-tokens 1024 --lr 1e-3 --warmup 20 --save-every 100 --log-every 5 \
	      --ema 0.95 --sample-every 100 --sample-prompts $(DEMO)/held/prompts.msgpack --sample-count 8
	@scripts/demo-summary.sh $(DEMO)/run

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
