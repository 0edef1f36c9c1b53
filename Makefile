# `make demo` and `make test` bootstrap everything from python3 alone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The second environment of `make test`: the package on JAX, without TensorFlow.
JAX_VENV := .venv-jax
JAX_PY := $(JAX_VENV)/bin/python
JAX_STAMP := $(JAX_VENV)/.installed-stamp
export TF_CPP_MIN_LOG_LEVEL ?= 2
export KERAS_BACKEND := tensorflow

.PHONY: install demo test test-tensorflow test-jax docs benchmarks clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# --no-deps keeps TensorFlow out: the JAX run also proves the import needs none.
$(JAX_STAMP): pyproject.toml
	$(PYTHON) -m venv $(JAX_VENV)
	$(JAX_PY) -m pip install --quiet --upgrade pip
	$(JAX_PY) -m pip install --quiet --no-deps -e .
	$(JAX_PY) -m pip install --quiet "keras>=3.15,<4" numpy "jax[cpu]" "pytest>=8" "pytest-xdist>=3"
	touch $(JAX_STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py --output-dir artifacts $(DEMO_ARGS)

test: test-tensorflow test-jax docs

test-tensorflow: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

# The backend-neutral test files (`pytestmark = pytest.mark.backend_neutral`)
# on JAX; pytest exits 5, a failure, if it selects no test at all.
test-jax: $(JAX_STAMP)
	KERAS_BACKEND=jax $(JAX_PY) -m pytest -q -n 2 --dist loadfile -m backend_neutral

# The HTML site (docs/ pages and the API reference from the docstrings) in site/;
# --strict turns every warning (a broken link, a malformed docstring) into a failure.
docs: $(STAMP) ## Build the HTML site (docs/ pages and the API reference) into site/, strictly.
	$(PY) -m mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) $(JAX_VENV) artifacts site
