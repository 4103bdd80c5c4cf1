"""Cohort analyses built on the stages: out-of-distribution detection, uncertainty ranking,
active learning, comparing calibration and sampling methods."""
