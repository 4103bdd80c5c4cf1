"""Errors meant for people: what was expected, what was found, what to do."""


class InputError(ValueError):
    """Bad input from the user (file, image, model, option). The CLI exits with code 2."""


class ModelError(InputError):
    """A model file or model spec that cannot be used."""


class NonFiniteOutputError(RuntimeError):
    """A network or a calibrator produced NaN/Inf values: a failure of the model (the CLI exits with code 1), not bad input.
    Raised before anything is written."""


class OutputWriteError(RuntimeError):
    """An output file could not be written whole (a full disk, a read-only folder): a failure of the machine (the CLI
    exits with code 1), not bad input. The partial file is removed."""
