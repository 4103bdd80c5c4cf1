"""Stage 1, predict: read a volume, load a model, sample it (softmax, MC dropout, ensembles, TTA,
stochastic models), aggregate probabilities, entropy and mutual information, score segments, write
and read back a prediction folder."""
