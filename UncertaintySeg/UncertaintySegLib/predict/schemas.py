"""Schemas of the JSON files UncertaintySeg reads: `model.json`, `calibrator.json` and a MONAI bundle's
`configs/metadata.json`.

    spec = validate(ModelSpecSchema, data, "model.json", ModelError)      # a ModelSpecSchema, or ModelError
    # model.json: class_names: expected a list of unique names, found 'abc'
    # model.json: roi_size: expected a list of 3 positive integers, found 32

Why pydantic v2 (not jsonschema, not hand-written checks): every error comes located by field (`loc`)
with the value found, so one line per field can say what is wrong where; strict mode refuses what
Python would quietly coerce ("1" is not an int, "abc" is not a list of names, true is not 1); the
rules live in one declarative place per file instead of checks scattered over the loaders; and it
is widely used and kept (FastAPI, MONAI Label, many others), with wheels for every platform Slicer runs on.

`validate` turns pydantic's `ValidationError` into the project's own error (InputError or ModelError),
one line per field: "<source>: <field>: expected <what is allowed>, found <value>". What each field
allows is written once, in the schema's `EXPECTED` map, so the message does not depend on
pydantic's own wording (which changes between releases).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Optional, Union  # Optional, not X | None: pydantic evaluates
# the fields' annotations, and Slicer 5.8 runs the core on Python 3.9

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..common.errors import InputError

PositiveInt = Annotated[int, Field(strict=True, ge=1)]
Name = Annotated[str, Field(strict=True, min_length=1)]
FiniteNumber = Annotated[float, Field(allow_inf_nan=False)]  # strict: an int or a float, never a string or a bool
NORMALIZATION_FIELDS = {"zscore": ("nonzero",), "range": ("a_min", "a_max", "b_min", "b_max", "clip"), "none": ()}


class FieldProblem(ValueError):
    """A rule across fields broken, reported at `field` (below the validator's own location; None: there)."""

    def __init__(self, field: str | None, text: str):
        super().__init__(text)
        self.field, self.text = field, text


class Schema(BaseModel):
    """Strict (no coercion), closed (unknown fields refused), finite numbers only."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)
    EXPECTED: ClassVar[dict[str, str]] = {}  # dotted field path -> what is allowed, for the messages


# ---- model.json --------------------------------------------------------------------------------

class NormalizationSchema(Schema):
    kind: Literal["zscore", "range", "none"]
    nonzero: Optional[bool] = None
    a_min: Optional[FiniteNumber] = None
    a_max: Optional[FiniteNumber] = None
    b_min: Optional[FiniteNumber] = None
    b_max: Optional[FiniteNumber] = None
    clip: Optional[bool] = None

    @model_validator(mode="after")
    def _fields_of_the_kind(self):
        allowed = NORMALIZATION_FIELDS[self.kind]
        for name in ("nonzero", "a_min", "a_max", "b_min", "b_max", "clip"):
            if getattr(self, name) is not None and name not in allowed:
                raise FieldProblem(name, f"not a field of kind '{self.kind}' (it takes {', '.join(allowed) or 'no other field'})")
        if self.kind == "range":
            for name in ("a_min", "a_max"):
                if getattr(self, name) is None:
                    raise FieldProblem(name, "required for kind 'range' (a_min, a_max; optional b_min, b_max, clip: "
                                             "as MONAI's ScaleIntensityRange)")
            if self.a_max == self.a_min:
                raise FieldProblem(None, f"a_max must differ from a_min, found {self.a_min:g} and {self.a_max:g}")
        return self

    def to_dict(self) -> dict:
        return self.model_dump(exclude_none=True)


class NetworkSchema(Schema):
    name: Name
    args: dict[str, Any] = {}


class InsertedDropoutSchema(Schema):
    placement: Literal["decoder", "center"]
    p: FiniteNumber = Field(ge=0, lt=1)
    retrained: bool = False


class ModelSpecSchema(Schema):
    """`model.json`: what a segmentation network expects and returns (see `models.ModelSpec`)."""

    name: Name
    description: str = ""
    class_names: list[str]
    input_channels: PositiveInt = 1
    spatial_dims: PositiveInt = 3
    roi_size: Annotated[list[PositiveInt], Field(min_length=2, max_length=3)] = [96, 96, 96]
    normalization: NormalizationSchema = NormalizationSchema(kind="zscore")
    output: Literal["logits", "probabilities"] = "logits"
    activation: Literal["softmax", "sigmoid"] = "softmax"
    format: Literal["monai_network", "torchscript"] = "monai_network"
    network: Optional[NetworkSchema] = None
    weights: Union[Name, Annotated[list[Name], Field(min_length=1)]] = "model.pt"
    inserted_dropout: Optional[InsertedDropoutSchema] = None
    flip_axes: Optional[list[Annotated[int, Field(strict=True, ge=0, le=2)]]] = None
    stochastic: bool = False

    EXPECTED: ClassVar[dict[str, str]] = {
        "name": "a non-empty string", "description": "a string",
        "class_names": "a list of unique names", "input_channels": "a positive integer",
        "spatial_dims": "3 (a 3-D model)", "roi_size": "a list of 3 positive integers",
        "normalization": 'an object {"kind": "zscore" | "range" | "none", ...}',
        "normalization.kind": "one of 'zscore', 'range', 'none'",
        "normalization.nonzero": "true or false", "normalization.clip": "true or false",
        **{f"normalization.{name}": "a finite number" for name in ("a_min", "a_max", "b_min", "b_max")},
        "output": "one of 'logits', 'probabilities'", "activation": "'softmax' or 'sigmoid'",
        "format": "one of 'monai_network', 'torchscript'",
        "network": 'an object {"name": <MONAI network class>, "args": {...}} or null',
        "network.name": "a non-empty string (a class of monai.networks.nets)",
        "network.args": "an object (the network's constructor arguments)",
        "weights": "a file name or a non-empty list of file names (ensemble members)",
        "inserted_dropout": 'an object {"placement": "decoder" | "center", "p": <0..1>, "retrained": true | false} or null',
        "inserted_dropout.placement": "'decoder' or 'center'", "inserted_dropout.p": "a probability in [0, 1)",
        "inserted_dropout.retrained": "true or false",
        "flip_axes": "a list of axes among 0, 1, 2", "stochastic": "true or false",
    }

    @field_validator("class_names")
    @classmethod
    def _class_names(cls, names: list[str]) -> list[str]:
        if len(names) < 2:
            raise FieldProblem(None, f"expected at least 2 classes including background, found {names}")
        for name in names:
            if not name.strip():
                raise FieldProblem(None, f"names must be non-empty, found {name!r} in {names}")
            if names.count(name) > 1:
                raise FieldProblem(None, f"names must be unique, found {name!r} twice in {names}")
        return names

    @model_validator(mode="after")
    def _consistent(self):
        if self.spatial_dims != 3:
            raise FieldProblem("spatial_dims", f"expected 3 (a 3-D model), found {self.spatial_dims}")
        if len(self.roi_size) != self.spatial_dims:
            raise FieldProblem("roi_size", f"expected a list of 3 positive integers for a 3-D model, found {self.roi_size}")
        if self.activation == "sigmoid" and len(self.class_names) != 2:
            raise FieldProblem("activation", f"'sigmoid' takes one foreground channel, so class_names must be [background, "
                                             f"foreground], found {len(self.class_names)} names; use 'softmax' (one channel "
                                             "per class) for more classes")
        if self.format == "monai_network" and self.network is None:
            raise FieldProblem("network", "format 'monai_network' needs 'network': {\"name\": <MONAI network class>, \"args\": {...}}")
        if self.inserted_dropout is not None and self.format != "monai_network":
            raise FieldProblem("inserted_dropout", f"only a monai_network model can have dropout inserted, found format '{self.format}'")
        return self


# ---- calibrator.json ------------------------------------------------------------------------------

class ModelFingerprintSchema(Schema):
    """`fingerprint.model_fingerprint`: which model (classes, weights) a calibrator was fitted for."""

    name: str
    class_names: Annotated[list[Name], Field(min_length=2)]
    activation: Optional[Literal["softmax", "sigmoid"]] = None
    source: Optional[str] = None
    members: PositiveInt = 1
    weights_sha256: Annotated[list[Annotated[str, Field(strict=True, pattern=r"^[0-9a-f]{64}$")]], Field(min_length=1)]

    @model_validator(mode="after")
    def _one_checksum_per_member(self):
        if len(self.weights_sha256) != self.members:
            raise FieldProblem("weights_sha256", f"expected one checksum per member ({self.members}), found {len(self.weights_sha256)}")
        return self


class FitSchema(Schema):
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False, frozen=True)  # families add their summaries

    n_classes: Annotated[int, Field(strict=True, ge=2)]
    cases: PositiveInt
    voxels: PositiveInt
    nll_before: FiniteNumber = Field(ge=0)
    nll_after: FiniteNumber = Field(ge=0)


class CalibratorRecordSchema(Schema):
    """`calibrator.json` as `Calibrator.to_json` writes it. `model` must be there: null only for a calibrator
    fitted without a model (Python API), which `check_model` then refuses to apply to one."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True, populate_by_name=True)

    format: Literal["uncertaintyseg-calibrator"]
    format_version: PositiveInt
    method: Name
    class_: Optional[str] = Field(default=None, alias="class")
    description: str = ""
    class_names: Optional[list[Name]] = None
    model: Optional[ModelFingerprintSchema]
    settings: dict[str, Any]
    fit: FitSchema
    tensors: Annotated[str, Field(strict=True, pattern=r"^[^/\\]+$")] = "calibrator.pt"

    EXPECTED: ClassVar[dict[str, str]] = {
        "format": "'uncertaintyseg-calibrator'", "format_version": "an integer", "method": "a calibration method name",
        "class": "a class name", "description": "a string", "class_names": "a list of names or null",
        "model": "the model it was fitted for (name, class_names, members, weights_sha256), as `calibrate` writes it",
        "model.name": "a string", "model.class_names": "a list of at least 2 names", "model.members": "a positive integer",
        "model.weights_sha256": "a list of SHA-256 hex digests, one per member",
        "model.activation": "'softmax' or 'sigmoid'", "model.source": "a string",
        "settings": "an object (the calibrator's constructor arguments)",
        "fit": "an object (n_classes, cases, voxels, nll_before, nll_after)",
        "fit.n_classes": "an integer of at least 2", "fit.cases": "a positive integer", "fit.voxels": "a positive integer",
        "fit.nll_before": "a finite number >= 0", "fit.nll_after": "a finite number >= 0",
        "tensors": "a file name in the calibrator's folder",
    }

    @model_validator(mode="after")
    def _consistent(self):
        if self.model is not None and len(self.model.class_names) != self.fit.n_classes:
            raise FieldProblem("fit.n_classes", f"expected {len(self.model.class_names)} (the classes of model "
                                                f"'{self.model.name}'), found {self.fit.n_classes}")
        return self


# ---- a MONAI bundle's configs/metadata.json -------------------------------------------------------

class BundleTensorSchema(BaseModel):
    """One entry of `network_data_format.inputs` / `.outputs` (MONAI's bundle metadata spec); other keys kept."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)

    num_channels: Optional[PositiveInt] = None
    spatial_shape: Optional[list[Union[PositiveInt, str]]] = None  # MONAI allows "16*n"-style strings
    channel_def: Optional[dict[str, Name]] = None

    @field_validator("channel_def")
    @classmethod
    def _channel_keys(cls, channel_def):
        if channel_def is not None:
            bad = [key for key in channel_def if not key.isdigit()]
            if bad:
                raise FieldProblem(None, f"keys must be channel indices \"0\", \"1\", ..., found {bad}")
            names = list(channel_def.values())
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise FieldProblem(None, f"names must be unique, found {repeated} more than once")
        return channel_def


class BundleDataFormatSchema(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)

    inputs: dict[str, BundleTensorSchema] = {}
    outputs: dict[str, BundleTensorSchema] = {}


class BundleMetadataSchema(BaseModel):
    """What this project reads from `configs/metadata.json`; the many other keys of MONAI's metadata are allowed."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)

    name: Optional[Name] = None
    description: Optional[str] = None
    version: Optional[str] = None
    network_data_format: BundleDataFormatSchema = BundleDataFormatSchema()

    EXPECTED: ClassVar[dict[str, str]] = {
        "name": "a non-empty string", "description": "a string", "version": "a string",
        "network_data_format": 'an object {"inputs": {...}, "outputs": {...}}',
        "network_data_format.inputs": 'an object {"image": {"num_channels": ..., ...}}',
        "network_data_format.outputs": 'an object {"pred": {"num_channels": ..., "channel_def": {...}}}',
        **{f"network_data_format.{side}.{key}.num_channels": "a positive integer"
           for side, key in (("inputs", "image"), ("outputs", "pred"))},
        **{f"network_data_format.{side}.{key}.spatial_shape": "a list of positive integers"
           for side, key in (("inputs", "image"), ("outputs", "pred"))},
        "network_data_format.outputs.pred.channel_def": 'an object {"0": "background", "1": <name>, ...}',
    }


# ---- turning errors into one line per field ---------------------------------------------------------

def validate(schema: type[BaseModel], data, source: str, error_type: type[InputError] = InputError):
    """`schema.model_validate(data)`, or `error_type` with one line per bad field: '<source>: <field>: ...'."""
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise error_type("\n".join(f"{source}: {line}" for line in problems(error, data, schema))) from None


def problems(error: ValidationError, data, schema: type[BaseModel]) -> list[str]:
    """One line per field from a pydantic `ValidationError`, first problem of each field kept."""
    expected = getattr(schema, "EXPECTED", {})
    lines: dict[str, str] = {}
    for item in error.errors():
        loc = tuple(str(part) for part in item["loc"] if not isinstance(part, int))
        loc = tuple(part for part in loc if not part.startswith(("function-", "union[", "list[", "str", "int")))
        problem = item.get("ctx", {}).get("error")
        if isinstance(problem, FieldProblem):
            path = loc + tuple(problem.field.split(".")) if problem.field else loc
            text = problem.text
        elif item["type"] == "missing":
            path, text = loc, "required field missing" + (f" (expected {expected['.'.join(loc)]})" if ".".join(loc) in expected else "")
        elif item["type"] == "extra_forbidden":
            siblings = _fields_at(schema, loc[:-1])
            path, text = loc, f"unknown field; expected only {siblings}" if siblings else "unknown field"
        elif item["type"] in ("model_type", "dict_type") and not loc:
            path, text = loc, f"expected a JSON object, found {type(data).__name__}"
        else:
            path = next((loc[:n] for n in range(len(loc), 0, -1) if ".".join(loc[:n]) in expected), loc)
            found = _value_at(data, path, item.get("input"))
            allowed = expected.get(".".join(path))
            text = f"expected {allowed}, found {found!r}" if allowed else f"{item['msg']}, found {found!r}"
        key = ".".join(path)
        lines.setdefault(key, f"{key}: {text}" if key else text)
    if not lines:  # not expected: keep pydantic's own text rather than nothing
        lines[""] = str(error)
    return list(lines.values())


def _value_at(data, path: tuple[str, ...], default):
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return default
        data = data[part]
    return data


def _fields_at(schema: type[BaseModel], path: tuple[str, ...]) -> list[str]:
    """The field names (by alias) of the sub-schema at `path`, for 'expected only [...]'."""
    current = schema
    for part in path:
        field = getattr(current, "model_fields", {}).get(part)
        annotation = getattr(field, "annotation", None)
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if current is None:
            return []
    return sorted(field.alias or name for name, field in current.model_fields.items())
