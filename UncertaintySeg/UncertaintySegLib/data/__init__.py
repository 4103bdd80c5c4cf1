"""Labelled cases and cohorts: where a data set lives, its fixed splits, its cases."""
