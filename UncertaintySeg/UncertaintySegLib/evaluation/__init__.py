"""Stage 3, evaluate against a reference: calibration histograms and metrics, Dice, ROIs, error
confidence, segment quality, annotator agreement, method comparisons; `reports/` writes them."""
