"""Study spec: one YAML file → typed, validated dataclasses, checked before any worker starts.

```yaml
name: smoke                      # study name: Optuna study, MLflow experiment, runs/<name>/
seed: 0                          # base RunConfig (everything but the loss) ...
data: {synth_hours: 0.05}
model: {hidden_size: 32}
training: {epochs: 3}
search:                          # ... and the loss search over it
  sampler: tpe                   # tpe | random | grid
  n_trials: 6
  losses: [ce, aauc, apauc, aaucsum]
  space: {delta: 10.0, lam: {low: 1.0e-4, high: 1.0, log: true}}
pruner: {type: asha, grace_epochs: 1}
resources: {cpus: 1, max_concurrent: 2}
storage: {url: postgresql://user@host/db}   # default sqlite under runs/<name>/
mlflow: {tracking_uri: postgresql://user@host/mlflow}   # overrides mlflow.yaml
```
Every error is one line ``FILE: key: rule, got value``.

Database passwords: leave them out of the URL and libpq (under psycopg) takes them from the
environment, ``PGPASSWORD`` or ``~/.pgpass``, so the spec holds no secret. A URL that does hold
one (in the spec, or ``--storage``) is used as given and shown only through `hide_password`:
the password never reaches MLflow params or tags, logs, exported configs or Optuna attrs.
The study ``name`` names folders and the MLflow experiment, so it cannot hold a path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import sqlalchemy.engine
import sqlalchemy.exc

from musicdet.config import DataConfig, RunConfig, TrainingConfig
from musicdet.configtools import ConfigError, from_dict, load_yaml, require, to_dict
from musicdet.features import FeatureConfig
from musicdet.losses import LossConfig
from musicdet.model import ModelConfig

LOSS_TYPES = ("ce", "aauc", "apauc", "aaucsum")
LOSS_PARAMS: dict[str, tuple[str, ...]] = {
    "ce": (),
    "aauc": ("delta",),
    "apauc": ("alpha", "beta", "delta"),
    "aaucsum": ("gamma", "lam", "delta"),
}
"""The parameters each loss type uses, in the order they are sampled."""
OBJECTIVE_METRICS = ("val_auc", "val_eer", "val_loss", "val_recall", "val_f1", "train_loss")
MIN_BAND = 0.01
"""Smallest β − α sampled: an apAUC band keeps at least 1 % of the negatives."""
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = ("name is 1-64 letters, digits, '_', '.', '-', starting with a letter or digit "
             "(it names folders: no '/' or '..')")
PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]*@|([?&]password=)[^&#\s]*", re.IGNORECASE)
"""A password in a URL: after ``user:`` (as sqlalchemy reads it: up to the ``@``) or a query
parameter ``password=``."""


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
    """Where each loss parameter is sampled (paper symbols: α, β, γ, λ, δ)."""

    alpha: Param = field(default_factory=lambda: ParamRange(low=0.0, high=0.5))
    beta: Param = field(default_factory=lambda: ParamRange(low=0.25, high=1.0))
    gamma: Param = field(default_factory=lambda: ParamRange(low=0.5, high=0.95))
    lam: Param = field(default_factory=lambda: ParamRange(low=1e-4, high=1.0, log=True))
    delta: Param = 10.0

    def __post_init__(self) -> None:
        alpha, beta = _bounds(self.alpha), _bounds(self.beta)
        require(alpha[0] >= 0, "alpha", "alpha >= 0", self.alpha)
        require(beta[1] <= 1, "beta", "beta <= 1", self.beta)
        require(_alpha_below_beta(self.alpha, self.beta), "alpha",
                f"alpha < beta for every sampled pair (bands of at least {MIN_BAND})",
                (self.alpha, self.beta))
        gamma = _bounds(self.gamma)
        require(gamma[0] > 0 and gamma[1] < 1, "gamma", "0 < gamma < 1", self.gamma)
        require(_bounds(self.lam)[0] >= 0, "lam", "lam >= 0", self.lam)
        require(_bounds(self.delta)[0] > 0, "delta", "delta > 0", self.delta)

    def fixed(self) -> dict[str, float]:
        """Parameters given as one value (not sampled)."""
        return {f.name: v for f in fields(self) if isinstance(v := getattr(self, f.name), float)}


def _alpha_below_beta(alpha: Param, beta: Param) -> bool:
    """Whether sampling (see search.space) always gives α < β with a band of MIN_BAND."""
    alpha_low, alpha_high = _bounds(alpha)
    if isinstance(beta, ParamRange) and beta.choices is None:  # β's low follows α
        return alpha_high + MIN_BAND <= float(beta.high)  # type: ignore[arg-type]
    if isinstance(alpha, ParamRange) and alpha.choices is None:  # α's high follows β
        return alpha_low + MIN_BAND <= _bounds(beta)[0]
    return alpha_high < _bounds(beta)[0]


def _bounds(param: Param) -> tuple[float, float]:
    return (param, param) if isinstance(param, float) else (param.lowest, param.highest)


@dataclass
class ObjectiveSpec:
    """What a trial is ranked by: the best value of ``metric`` over its epochs."""

    metric: str = "val_auc"
    direction: Literal["maximize", "minimize"] = "maximize"

    def __post_init__(self) -> None:
        require(self.metric in OBJECTIVE_METRICS, "metric",
                f"metric in {{{', '.join(OBJECTIVE_METRICS)}}}", self.metric)

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
    objective: ObjectiveSpec = field(default_factory=ObjectiveSpec)

    def __post_init__(self) -> None:
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
            for i, loss in enumerate(self.grid):
                check_loss(loss, f"grid[{i}]")
            self.n_trials = len(self.grid) if self.n_trials is None else self.n_trials
            require(self.n_trials == len(self.grid), "n_trials",
                    "n_trials == number of grid entries", (self.n_trials, len(self.grid)))
        self.n_trials = 20 if self.n_trials is None else self.n_trials
        require(self.n_trials >= 1, "n_trials", "n_trials >= 1", self.n_trials)


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
    gpus: float = 0.0  # fractional GPUs share a card
    max_concurrent: int = 2
    max_failures: int = 1  # Ray retries of a crashed trial (from its last checkpoint)

    def __post_init__(self) -> None:
        require(self.cpus > 0, "cpus", "cpus > 0", self.cpus)
        require(self.gpus >= 0, "gpus", "gpus >= 0", self.gpus)
        require(self.max_concurrent >= 1, "max_concurrent", "max_concurrent >= 1",
                self.max_concurrent)
        require(self.max_failures >= 0, "max_failures", "max_failures >= 0", self.max_failures)


@dataclass
class StorageSpec:
    """Optuna storage (a sqlalchemy URL) and the folder for trial outputs (shared across nodes)."""

    url: str | None = None  # default sqlite:///<workdir>/optuna.db
    workdir: str | None = None  # default runs/<name>
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
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    search: SearchSpec = field(default_factory=SearchSpec)
    pruner: PrunerSpec = field(default_factory=PrunerSpec)
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    storage: StorageSpec = field(default_factory=StorageSpec)
    mlflow: MlflowSpec = field(default_factory=MlflowSpec)

    def __post_init__(self) -> None:
        require(bool(NAME_PATTERN.fullmatch(self.name)), "name", NAME_RULE, self.name)
        self.base_config()  # model/feature consistency, checked now rather than in a worker

    @property
    def workdir(self) -> Path:
        return Path(self.storage.workdir or f"runs/{self.name}")

    @property
    def storage_url(self) -> str:
        return self.storage.url or f"sqlite:///{self.workdir / 'optuna.db'}"

    def base_config(self, loss: LossConfig | None = None) -> RunConfig:
        """The run config every trial trains, with ``loss`` (default CE)."""
        return RunConfig(seed=self.seed, data=self.data, features=self.features,
                         model=self.model, loss=loss or LossConfig(), training=self.training)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def check_loss(loss: LossConfig, key: str) -> None:
    """The paper's rules for one loss configuration (``key`` names it in errors)."""
    require(loss.type in LOSS_TYPES, f"{key}.type", f"type in {{{', '.join(LOSS_TYPES)}}}",
            loss.type)
    require(0 <= loss.alpha < loss.beta <= 1, f"{key}.alpha", "0 <= alpha < beta <= 1",
            (loss.alpha, loss.beta))
    require(0 < loss.gamma < 1, f"{key}.gamma", "0 < gamma < 1", loss.gamma)
    require(loss.lam >= 0, f"{key}.lam", "lam >= 0", loss.lam)
    require(loss.delta > 0, f"{key}.delta", "delta > 0", loss.delta)


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


def hide_password(text: str) -> str:
    """``text`` (a URL, or a message holding URLs) with every password replaced by ***."""
    return PASSWORD_IN_URL.sub(lambda m: f"{m[1]}***@" if m[1] else f"{m[2]}***", text)


def parse_spec(data: Any, source: str = "") -> StudySpec:
    """Build a `StudySpec` from plain data; errors name ``source`` (a file) and the key."""
    try:
        if isinstance(data, dict) and "loss" in data:
            raise ConfigError("loss", "the loss is what the study searches; "
                                      "set search.losses / search.space instead")
        if isinstance(data, dict) and "name" not in data:
            raise ConfigError("name", "missing; every study needs a name")
        return from_dict(StudySpec, data)
    except ConfigError as error:
        if not source:
            raise
        raise ConfigError(f"{source}: {error.key}" if error.key else source,
                          error.message) from None


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study YAML file."""
    return parse_spec(load_yaml(path), str(path))
