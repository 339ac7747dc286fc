# Two commands on a fresh machine:  make demo   and   make test
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# A CPU build of torch: on these machines pip serves it from local disk (a bare `torch` may pull a CUDA build).
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo test clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test,bench,train]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	mkdir -p demo
	$(VENV)/bin/vcodec encode tests/data/bikes-48.mp4 demo/bikes.hfc -q 4 --psnr -y
	$(VENV)/bin/vcodec decode demo/bikes.hfc demo/bikes.mp4 -y
	$(VENV)/bin/vcodec info demo/bikes.hfc

test: install
	$(PY) -m pytest

clean:
	rm -rf demo .pytest_cache .hypothesis build dist *.egg-info
