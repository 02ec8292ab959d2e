"""Study spec: one YAML file → typed, validated dataclasses, checked before any worker starts.

```yaml
name: smoke                      # study name: Optuna study, MLflow experiment, runs/<name>/
base:                            # the run config every trial trains (musicdet train --config),
  seed: 0                        # all but the loss, which the study searches
  data: {synth_hours: 0.05}
  model: {hidden_size: 32}
  training: {epochs: 3}
  validation: {format: generic, path: data/my-broadcasts}   # optional: trials are validated,
                                 # kept, pruned and ranked on this set (musicdet.config)
search:
  sampler: tpe                   # tpe | random | grid
  n_trials: 6
  losses: [ce, aauc, apauc, aaucsum]
  space: {delta: 10.0, lam: {low: 1.0e-4, high: 1.0, log: true}}
  objective: {metric: val_auc}   # its direction is the metric's own (maximize here); a list
                                 # [{metric: val_auc}, {metric: training_seconds}]: Pareto front
  repeats: 1                     # seeds per configuration (base.seed + 0 .. repeats - 1)
  augment: {time_masks: {low: 0, high: 2}}   # optional: augment options sampled per trial
pruner: {type: asha, grace_epochs: 1}
resources: {cpus: 1, max_concurrent: 2}   # gpus: 0.5 trains each trial on half a GPU
storage: {url: postgresql://user@host/db}   # default sqlite under runs/<name>/
# storage.features: {transport: auto | object_store | shared_cache, cache_dir: PATH}
mlflow: {tracking_uri: postgresql://user@host/mlflow}   # overrides mlflow.yaml
```
Every error is one line ``FILE: key: rule, got value``.

Relative paths (``runs/``, ``mlflow.yaml``, ``storage.workdir``, ``storage.features.cache_dir``,
a ``sqlite:///`` file, the MLflow artifact location, ``base.data.path``,
``base.validation.path`` and their ``cache_dir``) resolve against the study's *root*, never
the current directory: the nearest folder holding ``mlflow.yaml``, from the spec file's folder
upward, else the spec file's folder (``root:`` sets it, relative to the spec file).

Database passwords: leave them out of the URL and libpq (under psycopg) takes them from the
environment, ``PGPASSWORD`` or ``~/.pgpass``, so the spec holds no secret. A URL that does hold
one (in the spec, or ``--storage``) is used as given and shown only through `hide_password`:
the password never reaches MLflow params or tags, logs, exported configs or Optuna attrs.
The study ``name`` names folders and the MLflow experiment, so it cannot hold a path.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import sqlalchemy.engine
import sqlalchemy.exc

from musicdet.augment import AugmentConfig
from musicdet.config import METRIC_DIRECTIONS, SPLIT_PREFIX, DataConfig, RunConfig
from musicdet.configtools import ConfigError, from_dict, load_yaml, require
from musicdet.configtools import to_dict as config_to_dict
from musicdet.errors import UnfinishedError
from musicdet.losses import AUC_FAMILY, LOSS_PARAMS, LOSS_TYPES, LossConfig

LOSS_METRICS = ("train_loss", "val_loss", "train_val_loss")
"""Objectives in the units of the trial's own loss."""
MIN_BAND = 0.01
"""Smallest β − α sampled: an apAUC band keeps at least 1 % of the negatives."""
SETTINGS_FILE = "mlflow.yaml"
"""MLflow settings at the study's root; the folder holding it is the root."""
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = ("name is 1-64 letters, digits, '_', '.', '-', starting with a letter or digit "
             "(it names folders: no '/' or '..')")
PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]*@|([?&]password=)[^&#\s]*", re.IGNORECASE)
"""A password in a URL: after ``user:`` (as sqlalchemy reads it: up to the ``@``) or a query
parameter ``password=``."""
AUGMENT_TYPES: dict[str, type] = typing.get_type_hints(AugmentConfig)
"""Each `AugmentConfig` option's type (int or float), which ``search.augment`` can sample."""


@dataclass
class ParamRange:
    """A sampled parameter: a float range (optionally log-scale) or a list of choices."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[float] | None = None

    def __post_init__(self) -> None:
        if self.choices is not None:
            require(len(self.choices) > 0, "choices", "choices is not empty", self.choices)
            require(self.low is None and self.high is None, "choices",
                    "choices without low/high", (self.low, self.high))
            return
        require(self.low is not None and self.high is not None, "low",
                "low and high are both given (or choices)", (self.low, self.high))
        assert self.low is not None and self.high is not None
        require(self.low < self.high, "low", "low < high", (self.low, self.high))
        require(not self.log or self.low > 0, "low", "low > 0 on a log scale", self.low)

    @property
    def lowest(self) -> float:
        return min(self.choices) if self.choices is not None else float(self.low)  # type: ignore[arg-type]

    @property
    def highest(self) -> float:
        return max(self.choices) if self.choices is not None else float(self.high)  # type: ignore[arg-type]


Param = float | ParamRange
"""A fixed value, or a range/choices to sample."""


@dataclass
class SpaceSpec:
    """Where each loss parameter is sampled (paper symbols: α, β, γ, λ, δ).

    Every value a parameter can take must pass `LossConfig`'s rule for it, and every sampled
    apAUC pair keeps a band of at least `MIN_BAND`: the dependent one of α, β (see
    `dependent`) is sampled within the range the other leaves it (`free_range`).
    """

    alpha: Param = field(default_factory=lambda: ParamRange(low=0.0, high=0.5))
    beta: Param = field(default_factory=lambda: ParamRange(low=0.25, high=1.0))
    gamma: Param = field(default_factory=lambda: ParamRange(low=0.5, high=0.95))
    lam: Param = field(default_factory=lambda: ParamRange(low=1e-4, high=1.0, log=True))
    delta: Param = 10.0

    def __post_init__(self) -> None:
        for f in fields(self):
            for value in _bounds(getattr(self, f.name)):
                check_loss_param(f.name, value)
        require(self._band_holds(), "alpha",
                f"alpha + {MIN_BAND} <= beta for every sampled pair", (self.alpha, self.beta))

    def dependent(self) -> Literal["alpha", "beta"] | None:
        """The one of α, β whose range follows the other's value: β if it is a float range,
        else α if it is one, else neither (then every pair of their values is valid)."""
        return next((name for name in ("beta", "alpha") if _is_range(getattr(self, name))), None)

    def free_range(self, name: Literal["alpha", "beta"], other: float) -> tuple[float, float]:
        """The part of ``name``'s range that keeps a band of `MIN_BAND` with the other's value."""
        low, high = _bounds(getattr(self, name))
        return (max(low, other + MIN_BAND), high) if name == "beta" else \
            (low, min(high, other - MIN_BAND))

    def _band_holds(self) -> bool:
        """Whether every value of the independent parameter leaves the dependent one a range."""
        dependent = self.dependent()
        if dependent is None:
            return _bounds(self.alpha)[1] + MIN_BAND <= _bounds(self.beta)[0]
        other = _bounds(self.alpha)[1] if dependent == "beta" else _bounds(self.beta)[0]
        low, high = self.free_range(dependent, other)
        return low <= high


def check_loss_param(name: str, value: float) -> None:
    """Raise `ConfigError` naming ``name`` unless `LossConfig` accepts ``value`` for it (with
    the defaults of the other parameters) in the first loss type that uses it."""
    loss_type = next(t for t, names in LOSS_PARAMS.items() if name in names)
    try:
        LossConfig(type=loss_type, **{name: value})
    except ConfigError as error:
        raise ConfigError(name, error.message) from None


def check_augment_param(name: str, param: Param) -> None:
    """Raise `ConfigError` naming ``augment.NAME`` unless ``name`` is an `AugmentConfig`
    option that accepts every value ``param`` can take (integers for integer options)."""
    key = f"augment.{name}"
    if name not in AUGMENT_TYPES:
        raise ConfigError(key, f"unknown option; expected one of {', '.join(AUGMENT_TYPES)}")
    values = param.choices if isinstance(param, ParamRange) and param.choices is not None \
        else _bounds(param)
    if AUGMENT_TYPES[name] is int:
        require(all(float(v).is_integer() for v in values), key, "integer values", param)
    for value in values:
        try:
            AugmentConfig(**{name: augment_value(name, value)})
        except ConfigError as error:
            raise ConfigError(key, error.message) from None


def augment_value(name: str, value: float) -> float | int:
    """``value`` of augment option ``name`` as the option's type (an integer for an integer)."""
    return AUGMENT_TYPES[name](value)


def _is_range(param: Param) -> bool:
    return isinstance(param, ParamRange) and param.choices is None


def _bounds(param: Param) -> tuple[float, float]:
    return (param, param) if isinstance(param, float) else (param.lowest, param.highest)


TRAINING_SECONDS = "training_seconds"
STUDY_METRICS: dict[str, Literal["maximize", "minimize"]] = {TRAINING_SECONDS: "minimize"}
"""Objectives that are not per-epoch metrics, so only a later objective of several (the first
picks each trial's kept epoch): ``training_seconds`` is the wall time of the epochs up to and
including the kept one (training and validation, the history's per-epoch ``seconds`` summed)."""
OBJECTIVE_DIRECTIONS = {**METRIC_DIRECTIONS, **STUDY_METRICS}


@dataclass
class ObjectiveSpec:
    """What a trial is ranked by: the value of ``metric`` at the trial's kept epoch (the best
    epoch by the study's first objective), in the one direction the metric improves in
    (`METRIC_DIRECTIONS`, `STUDY_METRICS`; ``direction`` may repeat it).

    With ``search.repeats`` k > 1 each seed keeps its own epoch and values, and the objective
    is their ``aggregate``: ``mean``, or ``lcb``, the pessimistic end of a one-sided 95 %
    Student-t interval of that mean: mean − t(0.95, k − 1)·sd/√k for a maximised metric,
    mean + t(0.95, k − 1)·sd/√k for a minimised one (sd with k − 1 degrees of freedom).
    """

    metric: str = "val_auc"
    direction: Literal["maximize", "minimize"] | None = None
    aggregate: Literal["mean", "lcb"] = "mean"

    def __post_init__(self) -> None:
        require(self.metric in OBJECTIVE_DIRECTIONS, "metric",
                f"metric in {{{', '.join(OBJECTIVE_DIRECTIONS)}}}", self.metric)
        expected = OBJECTIVE_DIRECTIONS[self.metric]
        require(self.direction in (None, expected), "direction",
                f"direction == {expected} for {self.metric} (or leave it out)", self.direction)
        self.direction = expected

    @property
    def mode(self) -> Literal["max", "min"]:
        return "max" if self.direction == "maximize" else "min"


@dataclass
class SearchSpec:
    """The sampler, trial budget, loss types and parameter space (or an explicit grid)."""

    sampler: Literal["tpe", "random", "grid"] = "tpe"
    n_trials: int | None = None  # default: the grid's size, or 20
    seed: int = 0
    losses: list[str] = field(default_factory=lambda: list(LOSS_TYPES))
    space: SpaceSpec = field(default_factory=SpaceSpec)
    grid: list[LossConfig] | None = None  # sampler grid: the configurations to run, once each
    # one objective, or a list of them: a multi-objective study (its result: a Pareto front)
    objective: ObjectiveSpec | list[ObjectiveSpec] = field(default_factory=ObjectiveSpec)
    augment: dict[str, Param] = field(default_factory=dict)  # sampled `AugmentConfig` options
    repeats: int = 1  # seeds each configuration trains: base.seed + 0 .. repeats - 1

    def __post_init__(self) -> None:
        require(self.repeats >= 1, "repeats", "repeats >= 1 (seeds per configuration)",
                self.repeats)
        require(len(self.losses) > 0, "losses", "losses is not empty", self.losses)
        for i, loss in enumerate(self.losses):
            require(loss in LOSS_TYPES, f"losses[{i}]", f"loss in {{{', '.join(LOSS_TYPES)}}}",
                    loss)
        require(len(set(self.losses)) == len(self.losses), "losses", "no repeated loss type",
                self.losses)
        require((self.sampler == "grid") == (self.grid is not None), "grid",
                "grid is given exactly when sampler is grid", self.sampler)
        if self.grid is not None:
            require(len(self.grid) > 0, "grid", "grid is not empty", self.grid)
            self.n_trials = len(self.grid) if self.n_trials is None else self.n_trials
            require(self.n_trials == len(self.grid), "n_trials",
                    "n_trials == number of grid entries", (self.n_trials, len(self.grid)))
        self.n_trials = 20 if self.n_trials is None else self.n_trials
        require(self.n_trials >= 1, "n_trials", "n_trials >= 1", self.n_trials)
        require(self.grid is None or not self.augment, "augment",
                "no search.augment in a grid study (fix the options in base.augment)",
                self.augment)
        for name, param in self.augment.items():
            check_augment_param(name, param)
        self._check_objectives()

    def _check_objectives(self) -> None:
        """At least one objective, no metric twice, the first a per-epoch metric, no loss
        objective in a study that mixes ce with the AUC family."""
        single = isinstance(self.objective, ObjectiveSpec)
        require(single or len(self.objectives) > 0, "objective", "at least one objective", [])
        types = set(self.loss_types())
        mixed = "ce" in types and bool(types & set(AUC_FAMILY))
        seen: set[str] = set()
        for i, objective in enumerate(self.objectives):
            key = "objective.metric" if single else f"objective[{i}].metric"
            require(objective.metric not in seen, key, "no metric repeated", objective.metric)
            seen.add(objective.metric)
            require(i > 0 or objective.metric in METRIC_DIRECTIONS, key,
                    "the first objective picks each trial's kept epoch, so it is a per-epoch "
                    f"metric in {{{', '.join(METRIC_DIRECTIONS)}}}", objective.metric)
            require(objective.metric not in LOSS_METRICS or not mixed, key,
                    "a loss objective (train_loss, val_loss) only in a study without both ce "
                    "and the AUC family (their losses have different units)", objective.metric)
            require(objective.aggregate == "mean" or self.repeats >= 2,
                    key.replace(".metric", ".aggregate"),
                    "aggregate lcb only with repeats >= 2 (a bound needs two seeds)",
                    objective.aggregate)

    @property
    def objectives(self) -> list[ObjectiveSpec]:
        """The study's objectives in spec order (one for a single-objective study)."""
        return [self.objective] if isinstance(self.objective, ObjectiveSpec) else self.objective

    @property
    def primary(self) -> ObjectiveSpec:
        """The first objective: it picks each trial's kept epoch, ASHA and median stopping act
        on it, and it alone ranks a single-objective study."""
        return self.objectives[0]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def loss_types(self) -> list[str]:
        """The loss types the study trains, in spec order (the grid's, for a grid)."""
        if self.grid is not None:
            return list(dict.fromkeys(loss.type for loss in self.grid))
        return self.losses


@dataclass
class PrunerSpec:
    """Early stopping of poor trials on the per-epoch objective (a Ray Tune scheduler)."""

    type: Literal["asha", "median", "none"] = "asha"
    grace_epochs: int = 1  # epochs every trial runs before it may be stopped
    reduction_factor: int = 2  # ASHA: keep 1 / reduction_factor at each rung

    def __post_init__(self) -> None:
        require(self.grace_epochs >= 1, "grace_epochs", "grace_epochs >= 1", self.grace_epochs)
        require(self.reduction_factor >= 2, "reduction_factor", "reduction_factor >= 2",
                self.reduction_factor)


@dataclass
class ResourcesSpec:
    """What one trial reserves, how many run at once, how often a crashed trial is retried."""

    cpus: float = 1.0
    gpus: float = 0.0  # fractional GPUs share a card; > 0: trials train on cuda (search.resources)
    require_gpu: bool = False  # refuse to run where the Ray cluster has no GPU (else: cpu)
    max_concurrent: int = 2
    max_failures: int = 1  # Ray retries of a crashed trial (from its last checkpoint)

    def __post_init__(self) -> None:
        require(self.cpus > 0, "cpus", "cpus > 0", self.cpus)
        require(self.gpus >= 0, "gpus", "gpus >= 0", self.gpus)
        require(not self.require_gpu or self.gpus > 0, "require_gpu",
                "require_gpu only with gpus > 0", (self.require_gpu, self.gpus))
        require(self.max_concurrent >= 1, "max_concurrent", "max_concurrent >= 1",
                self.max_concurrent)
        require(self.max_failures >= 0, "max_failures", "max_failures >= 0", self.max_failures)


@dataclass
class FeaturesSpec:
    """How trials get the features (see `search.resources`): ``object_store`` (Ray copies them
    into every node's object store), ``shared_cache`` (each trial memory-maps them from the
    feature cache at ``cache_dir``, a path every node reads) or ``auto`` (shared_cache when
    the features would exceed `search.resources.AUTO_LIMIT_BYTES`)."""

    transport: Literal["auto", "object_store", "shared_cache"] = "auto"
    cache_dir: str | None = None  # default <workdir>/features


@dataclass
class StorageSpec:
    """Optuna storage (a sqlalchemy URL), the folder for trial outputs (shared across nodes) and
    how trials get the features."""

    url: str | None = None  # default sqlite:///<workdir>/optuna.db
    workdir: str | None = None  # default runs/<name>
    features: FeaturesSpec = field(default_factory=FeaturesSpec)
    heartbeat_seconds: int = 10  # a driver marks its trials alive this often
    grace_seconds: int = 60  # a RUNNING trial silent this long belonged to a dead driver

    def __post_init__(self) -> None:
        if self.url is not None:
            check_database_url(self.url, "url")
        require(self.heartbeat_seconds >= 1, "heartbeat_seconds", "heartbeat_seconds >= 1",
                self.heartbeat_seconds)
        require(self.grace_seconds > self.heartbeat_seconds, "grace_seconds",
                "grace_seconds > heartbeat_seconds", self.grace_seconds)


@dataclass
class MlflowSpec:
    """MLflow settings; unset fields come from mlflow.yaml (see search.tracking)."""

    tracking_uri: str | None = None
    artifact_location: str | None = None
    experiment_prefix: str | None = None
    registered_model: str | None = None


@dataclass
class StudySpec:
    """A whole study: the base run config (all but the loss) and how to search the loss."""

    name: str
    root: str | None = None  # default (load_spec): see the module docstring; else the cwd
    base: RunConfig = field(default_factory=RunConfig)
    search: SearchSpec = field(default_factory=SearchSpec)
    pruner: PrunerSpec = field(default_factory=PrunerSpec)
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    storage: StorageSpec = field(default_factory=StorageSpec)
    mlflow: MlflowSpec = field(default_factory=MlflowSpec)

    def __post_init__(self) -> None:
        require(bool(NAME_PATTERN.fullmatch(self.name)), "name", NAME_RULE, self.name)
        self.root = str(Path(self.root or ".").resolve())
        for i, objective in enumerate(self.search.objectives):
            key = "search.objective.metric" if not self.search.multi_objective else \
                f"search.objective[{i}].metric"
            require(self.base.validation is not None or
                    not objective.metric.startswith(SPLIT_PREFIX), key,
                    f"{SPLIT_PREFIX}* objectives only with a base.validation: section",
                    objective.metric)
        try:  # the base config takes the highest value of every sampled augment option
            replace(self.base, augment=replace(self.base.augment, **{
                name: augment_value(name, _bounds(param)[1])
                for name, param in self.search.augment.items()}))
        except ConfigError as error:
            raise error.within("search") from None

    def resolve(self, path: str | Path) -> Path:
        """``path`` relative to the study's root (an absolute path is kept)."""
        return Path(self.root or ".") / path

    def resolve_url(self, url: str) -> str:
        """A ``sqlite:///relative.db`` URL made absolute against the root; others unchanged."""
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            return f"sqlite:///{self.resolve(url.removeprefix('sqlite:///'))}"
        return url

    @property
    def workdir(self) -> Path:
        return self.resolve(self.storage.workdir or f"runs/{self.name}")

    @property
    def feature_cache(self) -> Path:
        """The shared feature cache (``storage.features.cache_dir``, default <workdir>/features)."""
        folder = self.storage.features.cache_dir
        return self.resolve(folder) if folder else self.workdir / "features"

    @property
    def storage_url(self) -> str:
        return self.resolve_url(self.storage.url or f"sqlite:///{self.workdir / 'optuna.db'}")

    def existing_storage_url(self) -> str:
        """`storage_url` for a verb that only reads the study (status, best, export, ui): a
        SQLite file that does not exist raises `ConfigError` instead of being created."""
        url = self.storage_url
        refuse_missing_sqlite(url, f"no study {self.name!r}")
        return url

    def base_config(self, loss: LossConfig | None = None) -> RunConfig:
        """The run config a trial trains: ``base`` with ``loss`` (default CE), the epoch kept
        chosen by the study's first objective, and data paths resolved against the root."""
        validation = self.base.validation
        training = replace(self.base.training, select_metric=self.search.primary.metric)
        return replace(self.base, data=self._resolved(self.base.data), training=training,
                       validation=None if validation is None else self._resolved(validation),
                       loss=loss or LossConfig())

    def _resolved(self, data: DataConfig) -> DataConfig:
        """``data`` with its path and cache_dir relative to the root."""
        return replace(data, cache_dir=str(self.resolve(data.cache_dir)),
                       path=str(self.resolve(data.path)) if data.path else None)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)


def check_database_url(url: str, key: str) -> None:
    """Raise `ConfigError` unless ``url`` is a sqlalchemy URL of a sqlite or postgresql database."""
    shown = hide_password(url)
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise ConfigError(key, "expected a database URL such as sqlite:///runs/optuna.db "
                               f"or postgresql://user@host:5432/db, got {shown!r}") from None
    backend = parsed.get_backend_name()
    require(backend in ("sqlite", "postgresql"), key, "a sqlite:/// or postgresql:// URL", shown)
    require(bool(parsed.database), key, "the URL names a database (file)", shown)


RUN_IT_FIRST = "run `musicdet-search run` on its spec first"


def refuse_missing_sqlite(url: str, what: str) -> None:
    """Raise `UnfinishedError` "WHAT in URL; run ... first" if ``url`` names a SQLite file
    that does not exist (opening it would create it)."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise UnfinishedError(f"{what} in {hide_password(url)}; {RUN_IT_FIRST}")


def hide_password(text: str) -> str:
    """``text`` (a URL, or a message holding URLs) with every password replaced by ***."""
    return PASSWORD_IN_URL.sub(lambda m: f"{m[1]}***@" if m[1] else f"{m[2]}***", text)


def parse_spec(data: Any, source: str | Path = "") -> StudySpec:
    """Build a `StudySpec` from plain data; errors name ``source`` (a file) and the key.

    A spec read from file ``source`` gets its root from there (see the module docstring).
    """
    try:
        if isinstance(data, dict):
            _refuse_misplaced(data)
            if source and (data.get("root") is None or isinstance(data["root"], str)):
                data = {**data, "root": str(find_root(Path(source), data.get("root")))}
        return from_dict(StudySpec, data)
    except ConfigError as error:
        if not source:
            raise
        raise ConfigError(f"{source}: {error.key}" if error.key else str(source),
                          error.message) from None


def _refuse_misplaced(data: dict[str, Any]) -> None:
    """One line for run-config keys outside ``base:`` and for what the study itself sets."""
    if "name" not in data:
        raise ConfigError("name", "missing; every study needs a name")
    for key in (f.name for f in fields(RunConfig)):
        if key in data:
            raise ConfigError(key, f"belongs under base: (the run config every trial trains), "
                                   f"as base.{key}")
    base = data.get("base")
    if isinstance(base, dict) and "loss" in base:
        raise ConfigError("base.loss", "the loss is what the study searches; "
                                       "set search.losses / search.space instead")
    training = base.get("training") if isinstance(base, dict) else None
    if isinstance(training, dict) and "select_metric" in training:
        raise ConfigError("base.training.select_metric",
                          "a study keeps each trial's best epoch by search.objective.metric "
                          "(the first objective's, if several); set that instead")
    if isinstance(training, dict) and "device" in training:
        raise ConfigError("base.training.device",
                          "a study's trials train on cuda exactly when resources.gpus > 0 "
                          "(and the Ray cluster has a GPU), else on cpu; set that instead")


def find_root(spec_file: Path, root: str | None = None) -> Path:
    """The study's root: ``root`` relative to the spec file's folder, else the nearest folder
    holding `SETTINGS_FILE` from there upward, else the spec file's folder."""
    folder = spec_file.resolve().parent
    if root is not None:
        return (folder / root).resolve()
    return next((f for f in (folder, *folder.parents) if (f / SETTINGS_FILE).is_file()), folder)


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study YAML file."""
    return parse_spec(load_yaml(path), path)
