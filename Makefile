# `make demo`: create the environment and run the default model on a hippocampus test case.
# `make test`: create the environment and run the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench models install-models clean

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

# Retrain the shipped models: the two 5-member ensembles, the single DiceCE model and the Probabilistic
# U-Net, all 12 networks at once (5 + 5 + 1 + 1 processes). Meant for a CUDA GPU (an H100: about 5 min); the same
# recipe on a 2-core CPU would take about 10 h (MODEL_DEVICE=cpu). Results land in build/models/;
# `make install-models` copies them beside their model cards.
MODEL_DEVICE ?= auto
MODEL_RECIPE := --epochs 300 --patience 150 --seed 0 --device $(MODEL_DEVICE) --overwrite --progress none

models: $(STAMP)
	for loss in dice ce; do \
	  $(BIN)/uncertaintyseg train --loss $$loss --members 5 --workers 5 --min-validation-dice 0.7 $(MODEL_RECIPE) \
	    --name hippocampus-$$loss --out build/models/hippocampus-$$loss & \
	done; \
	$(BIN)/uncertaintyseg train --loss dice_ce $(MODEL_RECIPE) --name hippocampus --out build/models/hippocampus & \
	$(BIN)/uncertaintyseg train --architecture probabilistic_unet --channels 8,16,32,64 $(MODEL_RECIPE) \
	  --name hippocampus-punet --out build/models/hippocampus-punet & \
	wait

install-models:
	for name in hippocampus hippocampus-dice hippocampus-ce hippocampus-punet; do cp build/models/$$name/* UncertaintySeg/Resources/Models/$$name/; done

clean:
	rm -rf $(VENV) demo-output
