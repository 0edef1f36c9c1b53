# `make demo` and `make test` bootstrap everything from python3 alone.
# `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The second environment of `make test`: the package on JAX, without TensorFlow.
JAX_VENV := .venv-jax
JAX_PY := $(JAX_VENV)/bin/python
JAX_STAMP := $(JAX_VENV)/.installed-stamp
# `make test-wheel` builds and installs the wheel here (gitignored, remade each run).
WHEEL_DIR := build/wheel-test
# Every dependency of the three environments, downloaded once: .venv, .venv-jax and the
# wheel test install from here, without the network (pip does not cache downloads here).
WHEELHOUSE := build/wheelhouse
WHEELHOUSE_STAMP := $(WHEELHOUSE)/.downloaded-stamp
LOCAL_PIP := --quiet --no-index --find-links $(WHEELHOUSE)
export TF_CPP_MIN_LOG_LEVEL ?= 2
export KERAS_BACKEND := tensorflow

.PHONY: help install demo test test-tensorflow test-jax test-wheel lint docs benchmarks clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /\1\t/' | expand -t 18

install: $(STAMP) ## Create .venv with the package (editable) and every extra the tests need.

# The build backend is downloaded too: editable installs build the package.
$(WHEELHOUSE_STAMP): pyproject.toml
	$(PYTHON) -m pip download --quiet --dest $(WHEELHOUSE) ".[dev,jax]" "setuptools>=77" wheel
	touch $(WHEELHOUSE_STAMP)

$(STAMP): $(WHEELHOUSE_STAMP)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(LOCAL_PIP) -e ".[dev]"
	touch $(STAMP)

# --no-deps keeps TensorFlow out: the JAX run also proves the import needs none.
$(JAX_STAMP): $(WHEELHOUSE_STAMP)
	$(PYTHON) -m venv $(JAX_VENV)
	$(JAX_PY) -m pip install $(LOCAL_PIP) --no-deps -e .
	$(JAX_PY) -m pip install $(LOCAL_PIP) "keras>=3.15,<4" numpy "jax[cpu]" "pytest>=8" "pytest-xdist>=3"
	touch $(JAX_STAMP)

demo: $(STAMP) ## Train and export the date-translation demo into artifacts/ (DEMO_ARGS=--verbose for bars).
	$(PY) examples/demo.py --output-dir artifacts $(DEMO_ARGS)

# Every stage runs even when an earlier one fails; a table at the end gives each
# stage's result and time, and `make test` fails if any stage failed.
TEST_STAGES := lint docs test-tensorflow test-jax test-wheel

test: $(STAMP) $(JAX_STAMP) ## Lint, the docs site, the suite on TensorFlow and on JAX, the wheel; each reported.
	@$(PY) tools/run_stages.py $(MAKE) $(TEST_STAGES)

# Two workers on two cores, one compute thread each: TensorFlow's and XLA's thread
# pools otherwise start one thread per core in every worker and the workers
# oversubscribe the cores (the same tests took 17% longer in wall time).
# The tests compile hundreds of small XLA programs and run each a few times, so
# compiling costs more than running: XLA's LLVM optimisation passes and its
# newer fusion emitters (code generation through MLIR) cost more than they save
# (docs/results.md gives the times with and without them). Both choose the
# machine code, not the operations (at most the rounding order of a reduction or
# the last bit of a transcendental): every numeric bound of the tests comes from
# the maths, not from one compilation.
TEST_SETTINGS := TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \
	XLA_FLAGS="--xla_cpu_multi_thread_eigen=false --xla_backend_optimization_level=0 \
	--xla_cpu_use_fusion_emitters=false"

# Work stealing: each worker starts on half of the tests and takes tests from the
# other's queue when its own runs out, so no worker idles while a long file runs.
#
# .venv has every extra, so KTL_REQUIRE_EXTRAS=1 (tests/conftest.py) makes a test
# that would skip for a missing extra fail instead: no skip hides a failure here.
test-tensorflow: $(STAMP) ## The test suite on TensorFlow, two workers.
	$(TEST_SETTINGS) KTL_REQUIRE_EXTRAS=1 $(PY) -m pytest -q -n 2 --dist worksteal

# The test files marked `pytestmark = pytest.mark.backend_neutral` on JAX
# (tests/conftest.py collects no other file there); pytest exits 5, a failure,
# if it selects no test at all.
test-jax: $(JAX_STAMP) ## The backend-neutral test files on JAX, without TensorFlow.
	$(TEST_SETTINGS) KERAS_BACKEND=jax $(JAX_PY) -m pytest -q -n 2 --dist worksteal -m backend_neutral

# The HTML site (docs/ pages and the API reference from the docstrings) in site/;
# --strict turns every warning (a broken link, a malformed docstring) into a failure.
docs: $(STAMP) ## Build the HTML site (docs/ pages and the API reference) into site/, strictly.
	$(PY) -m mkdocs build --strict --quiet

# A fresh virtual environment gets the wheel alone (no extras); the check runs
# from $(WHEEL_DIR) so that it imports the installed copy, not the source tree.
# --no-compile only here: one process imports the package once. The test environments
# keep their byte code, which matters where PYTHONDONTWRITEBYTECODE is set (as on CI
# machines here): without it every process would compile TensorFlow again.
test-wheel: $(STAMP) ## Build wheel and sdist, install the wheel without extras, check it.
	rm -rf $(WHEEL_DIR)
	$(PY) -m build --no-isolation --outdir $(WHEEL_DIR)/dist . > /dev/null
	$(PYTHON) -m venv $(WHEEL_DIR)/venv
	$(WHEEL_DIR)/venv/bin/python -m pip install $(LOCAL_PIP) --no-compile $(WHEEL_DIR)/dist/*.whl
	cd $(WHEEL_DIR) && venv/bin/python $(CURDIR)/tests/check_wheel.py dist

lint: $(STAMP) ## ruff check and ruff format --check over the whole tree.
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

benchmarks: $(STAMP) $(JAX_STAMP) ## Run benchmarks/*.py once with small settings (a smoke run, not figures).
	$(PY) benchmarks/decode.py --repeats 1 --batch-sizes 1
	$(PY) benchmarks/export.py --vocabulary-size 64 --model-dim 16 --num-heads 2 \
		--intermediate-dim 32 --num-layers 1 --source-length 8 --target-length 8 \
		--warmup 1 --runs 2
	$(PY) benchmarks/train.py --rounds 1 --warmup 1 --batch 2 --length 8 --no-memory \
		--jit off

clean: ## Remove the environments, build outputs and demo artifacts.
	rm -rf $(VENV) $(JAX_VENV) artifacts site build dist *.egg-info
