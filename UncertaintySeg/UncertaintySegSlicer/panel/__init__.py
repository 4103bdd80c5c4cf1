"""The panel's Qt-free half: choices derived from the core's registries, run settings, the background
process, the dependency check, sample data."""
