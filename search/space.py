"""The define-by-run Optuna space: the loss type first, then only that loss's parameters.

ce: none; aauc: δ; apauc: α, β (α < β), δ; aaucsum: γ, λ, δ. A parameter given as one value
in the spec is fixed (returned, not sampled). Grid studies sample from categorical
distributions built from the grid and get their points enqueued, once each.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import optuna

from musicdet.losses import LossConfig

from .spec import LOSS_PARAMS, MIN_BAND, Param, ParamRange, SearchSpec, SpaceSpec

LOSS = "loss"
"""Optuna parameter name of the loss type."""
PARAM_NAMES = tuple(f.name for f in fields(SpaceSpec))
INACTIVE = "NA"


def sample(trial: optuna.Trial, search: SearchSpec) -> dict[str, Any]:
    """Sample one loss configuration: ``{"loss": type, <that type's parameters>}``."""
    space = _grid_space(search) if search.grid is not None else search.space
    losses = _grid_losses(search) if search.grid is not None else search.losses
    loss = losses[0] if len(losses) == 1 else trial.suggest_categorical(LOSS, losses)
    params: dict[str, Any] = {LOSS: loss}
    names = LOSS_PARAMS[loss]
    if loss == "apauc" and _beta_first(space):
        names = ("beta", "alpha", "delta")
    for name in names:
        params[name] = _suggest(trial, name, getattr(space, name), params)
    return params


def _beta_first(space: SpaceSpec) -> bool:
    """β is chosen before α when β is fixed or categorical and α a range (α's range shrinks)."""
    beta_range = isinstance(space.beta, ParamRange) and space.beta.choices is None
    alpha_range = isinstance(space.alpha, ParamRange) and space.alpha.choices is None
    return alpha_range and not beta_range


def _suggest(trial: optuna.Trial, name: str, param: Param, chosen: dict[str, Any]) -> float:
    """One value of ``param``; a range shrinks so that α < β holds with what is ``chosen``."""
    if isinstance(param, float):
        return param
    if param.choices is not None:
        return trial.suggest_categorical(name, sorted(set(param.choices)))
    low, high = float(param.low), float(param.high)  # type: ignore[arg-type]
    if name == "beta" and "alpha" in chosen:
        low = max(low, chosen["alpha"] + MIN_BAND)
    if name == "alpha" and "beta" in chosen:
        high = min(high, chosen["beta"] - MIN_BAND)
    return trial.suggest_float(name, low, high, log=param.log)


def _grid_losses(search: SearchSpec) -> list[str]:
    assert search.grid is not None
    return list(dict.fromkeys(loss.type for loss in search.grid))


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
    space, multi_loss = _grid_space(search), len(_grid_losses(search)) > 1
    points = []
    for loss in search.grid:
        point: dict[str, Any] = {LOSS: loss.type} if multi_loss else {}
        for name in LOSS_PARAMS[loss.type]:
            if not isinstance(getattr(space, name), float):
                point[name] = getattr(loss, name)
        points.append(point)
    return points


def complete_params(search: SearchSpec, sampled: dict[str, Any]) -> dict[str, Any]:
    """An Optuna trial's params plus what was not sampled (fixed values, a single loss type)."""
    space = _grid_space(search) if search.grid is not None else search.space
    losses = _grid_losses(search) if search.grid is not None else search.losses
    return {LOSS: losses[0], **space.fixed(), **sampled}


def loss_config(params: dict[str, Any]) -> LossConfig:
    """The `LossConfig` of sampled ``params`` (inactive parameters keep their defaults)."""
    active = {name: float(params[name]) for name in LOSS_PARAMS[params[LOSS]]}
    return LossConfig(type=params[LOSS], **active)


def logged_params(params: dict[str, Any]) -> dict[str, Any]:
    """Every loss parameter, inactive ones as "NA", so all trials share the same columns."""
    active = LOSS_PARAMS[params[LOSS]]
    return {LOSS: params[LOSS],
            **{name: params[name] if name in active else INACTIVE for name in PARAM_NAMES}}


def describe(params: dict[str, Any]) -> str:
    """Short label of a configuration, e.g. ``apauc(alpha=0, beta=0.25, delta=10)``."""
    inner = ", ".join(f"{n}={params[n]:.4g}" for n in LOSS_PARAMS[params[LOSS]])
    return f"{params[LOSS]}({inner})"
