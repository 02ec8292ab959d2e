"""The define-by-run Optuna space: the loss type first, then only that loss's parameters.

ce: none; aauc: δ; apauc: α, β (α < β), δ; aaucsum: γ, λ, δ (`musicdet.losses.LOSS_PARAMS`).
A parameter given as one value in the spec is fixed (returned, not sampled). Every parameter
has the same distribution in every trial, as multivariate TPE needs (its group decomposition
keeps the first distribution it sees): α < β holds because the dependent one of them (β, or α
when β is discrete; `SpaceSpec.dependent`) is sampled as ``<name>_fraction`` in [0, 1], its
position in the range the other one leaves it. The value itself is the trial's user attribute
and what MLflow logs. Grid studies sample from categorical distributions built from the grid
and get their points enqueued, once each.

``search.augment`` options (`musicdet.augment.AugmentConfig`) are sampled after the loss as
Optuna parameters ``augment.<option>``, in every trial: a range of an integer option as an
integer, choices as categories, one value fixed. They replace those options of the base config.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import optuna

from musicdet.config import RunConfig
from musicdet.losses import LOSS_PARAMS, LossConfig

from .spec import AUGMENT_TYPES, Param, ParamRange, SearchSpec, SpaceSpec, augment_value

LOSS = "loss"
"""Optuna parameter name of the loss type."""
FRACTION = "_fraction"
"""Suffix of the Optuna parameter that places the dependent one of α, β in its free range."""
PARAM_NAMES = tuple(f.name for f in fields(SpaceSpec))
INACTIVE = "NA"
AUGMENT = "augment."
"""Prefix of the Optuna parameters (and trial config keys) of ``search.augment`` options."""


def sample(trial: optuna.Trial, search: SearchSpec) -> dict[str, Any]:
    """Sample one loss configuration: ``{"loss": type, <that type's parameters>}``."""
    space = _space(search)
    losses = search.loss_types()
    loss = losses[0] if len(losses) == 1 else trial.suggest_categorical(LOSS, losses)
    dependent = space.dependent()
    for name in LOSS_PARAMS[loss]:
        param = getattr(space, name)
        if name == dependent:
            trial.suggest_float(f"{name}{FRACTION}", 0.0, 1.0)
        elif isinstance(param, ParamRange) and param.choices is not None:
            trial.suggest_categorical(name, sorted(set(param.choices)))
        elif isinstance(param, ParamRange):
            trial.suggest_float(name, float(param.low), float(param.high),  # type: ignore[arg-type]
                                log=param.log)
    for name, param in search.augment.items():
        _suggest_augment(trial, name, param)
    params = complete_params(search, trial.params)
    if dependent in params:
        trial.set_user_attr(dependent, params[dependent])
    return params


def _suggest_augment(trial: optuna.Trial, name: str, param: Param) -> None:
    """Sample augment option ``name`` as ``augment.<name>`` (a fixed value is not sampled)."""
    key = f"{AUGMENT}{name}"
    if isinstance(param, ParamRange) and param.choices is not None:
        trial.suggest_categorical(key, sorted({augment_value(name, c) for c in param.choices}))
    elif isinstance(param, ParamRange) and AUGMENT_TYPES[name] is int:
        trial.suggest_int(key, int(param.lowest), int(param.highest), log=param.log)
    elif isinstance(param, ParamRange):
        trial.suggest_float(key, param.lowest, param.highest, log=param.log)


def _space(search: SearchSpec) -> SpaceSpec:
    return _grid_space(search) if search.grid is not None else search.space


def _grid_space(search: SearchSpec) -> SpaceSpec:
    """Categorical (or fixed) values per parameter: exactly those the grid uses."""
    assert search.grid is not None
    values: dict[str, list[float]] = {}
    for loss in search.grid:
        for name in LOSS_PARAMS[loss.type]:
            values.setdefault(name, []).append(getattr(loss, name))
    space = SpaceSpec()
    for name, found in values.items():
        unique = sorted(set(found))
        setattr(space, name, unique[0] if len(unique) == 1 else ParamRange(choices=unique))
    return space


def grid_points(search: SearchSpec) -> list[dict[str, Any]]:
    """The grid's configurations as Optuna parameter dicts, in spec order (for enqueue_trial)."""
    assert search.grid is not None
    space, multi_loss = _grid_space(search), len(search.loss_types()) > 1
    points = []
    for loss in search.grid:
        point: dict[str, Any] = {LOSS: loss.type} if multi_loss else {}
        for name in LOSS_PARAMS[loss.type]:
            if not isinstance(getattr(space, name), float):
                point[name] = getattr(loss, name)
        points.append(point)
    return points


def complete_params(search: SearchSpec, sampled: dict[str, Any]) -> dict[str, Any]:
    """The configuration an Optuna trial's params stand for: its loss type and that type's
    parameters (fixed values filled in, α or β computed from its fraction)."""
    space = _space(search)
    loss = sampled.get(LOSS, search.loss_types()[0])
    params = {LOSS: loss, **{name: sampled.get(name, getattr(space, name))
                             for name in LOSS_PARAMS[loss]}}
    dependent = space.dependent()
    if f"{dependent}{FRACTION}" in sampled:
        assert dependent is not None
        other = params["alpha" if dependent == "beta" else "beta"]
        low, high = space.free_range(dependent, other)
        fraction = sampled[f"{dependent}{FRACTION}"]
        value = low * (high / low) ** fraction if getattr(space, dependent).log else \
            low + fraction * (high - low)
        params[dependent] = min(high, max(low, value))  # no rounding past the range's ends
    for name, param in search.augment.items():
        key = f"{AUGMENT}{name}"
        params[key] = augment_value(name, sampled.get(key, param))
    return params


def loss_config(params: dict[str, Any]) -> LossConfig:
    """The `LossConfig` of sampled ``params`` (inactive parameters keep their defaults)."""
    active = {name: float(params[name]) for name in LOSS_PARAMS[params[LOSS]]}
    return LossConfig(type=params[LOSS], **active)


def run_config_of(base: RunConfig, params: dict[str, Any]) -> RunConfig:
    """The run config a trial of ``params`` trains: ``base`` with their loss and augment
    options."""
    augment = {k.removeprefix(AUGMENT): v for k, v in params.items() if k.startswith(AUGMENT)}
    return replace(base, loss=loss_config(params), augment=replace(base.augment, **augment))


def logged_params(params: dict[str, Any]) -> dict[str, Any]:
    """Every loss parameter, inactive ones as "NA", so all trials share the same columns;
    then the sampled augment options, if the study has any."""
    active = LOSS_PARAMS[params[LOSS]]
    return {LOSS: params[LOSS],
            **{name: params[name] if name in active else INACTIVE for name in PARAM_NAMES},
            **{k: v for k, v in params.items() if k.startswith(AUGMENT)}}


def describe(params: dict[str, Any]) -> str:
    """Short label of a configuration, e.g. ``apauc(alpha=0, beta=0.25, delta=10)``, then
    its augment options if the study samples any: ``ce() augment(gain_db=3)``."""
    inner = ", ".join(f"{n}={params[n]:.4g}" for n in LOSS_PARAMS[params[LOSS]])
    augment = ", ".join(f"{k.removeprefix(AUGMENT)}={v:.4g}" for k, v in params.items()
                        if k.startswith(AUGMENT))
    return f"{params[LOSS]}({inner})" + (f" augment({augment})" if augment else "")
