"""Training networks: the bundled U-Nets, retraining some layers (after inserted dropout, for
last-layer fine-tuning), dropout retraining."""
