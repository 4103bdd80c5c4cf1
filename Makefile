# `make demo`: create the environment and run the default model on a hippocampus test case.
# `make test`: create the environment and run the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench models clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/uncertaintyseg demo --out demo-output --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_predict.py
	$(BIN)/python benchmarks/bench_metrics.py

# Retrain the two shipped 5-member ensembles, both at once on one thread each (about 1.5 h on 2 cores),
# then copy weights, model.json and training logs beside their model cards.
models: $(STAMP)
	for loss in dice ce; do \
	  OMP_NUM_THREADS=1 $(BIN)/uncertaintyseg train --loss $$loss --members 5 --epochs 25 --patience 10 --seed 0 --min-validation-dice 0.7 \
	    --name hippocampus-$$loss --out build/models/hippocampus-$$loss --overwrite --progress none & \
	done; wait
	for loss in dice ce; do cp build/models/hippocampus-$$loss/* UncertaintySeg/Resources/Models/hippocampus-$$loss/; done

clean:
	rm -rf $(VENV) demo-output
