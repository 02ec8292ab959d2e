"""Multivariate TPE (as the runner builds it) really drives the space: after its startup trials
every loss parameter is taken from its joint proposals, never sampled independently."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from search.runner import make_sampler
from search.space import sample
from search.spec import parse_spec

SPACES = {
    "apauc": {"losses": ["apauc"]},  # α and β both ranges (the spec's defaults)
    "all losses": {},
    "beta discrete": {"losses": ["apauc"], "space": {"beta": {"choices": [0.5, 0.75, 1.0]}}},
}


def _run(search_data: dict, n_trials: int, monkeypatch: pytest.MonkeyPatch
         ) -> tuple[optuna.Study, list[tuple[int, str]]]:
    """A study of ``n_trials`` on a smooth objective; the (trial, parameter) pairs that TPE
    sampled independently although the parameter was already in completed trials."""
    search = parse_spec({"name": "s", "search": search_data}).search
    sampler = make_sampler(search, offset=0)
    independent: list[tuple[int, str]] = []
    original = sampler.sample_independent

    def spy(study: optuna.Study, trial: Any, name: str, distribution: Any) -> Any:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(complete) >= 10 and any(name in t.params for t in complete):  # past startup
            independent.append((trial.number, name))
        return original(study, trial, name, distribution)

    monkeypatch.setattr(sampler, "sample_independent", spy)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    for _ in range(n_trials):
        trial = study.ask()
        params = sample(trial, search)
        study.tell(trial, -sum((params.get(k, 0.5) - 0.4) ** 2 for k in ("alpha", "beta", "gamma")))
    return study, independent


@pytest.mark.parametrize("name", list(SPACES))
def test_tpe_proposals_are_used_for_every_loss_parameter(name: str, monkeypatch) -> None:
    study, independent = _run(SPACES[name], 30, monkeypatch)
    assert independent == []
    distributions: dict[str, set[str]] = {}
    for trial in study.trials:
        for param, distribution in trial.distributions.items():
            distributions.setdefault(param, set()).add(repr(distribution))
    assert all(len(found) == 1 for found in distributions.values()), distributions


def test_alpha_and_beta_are_user_attributes_as_the_user_sees_them(monkeypatch) -> None:
    study, _ = _run(SPACES["apauc"], 12, monkeypatch)
    for trial in study.trials:
        assert set(trial.params) == {"alpha", "beta_fraction"}
        assert 0.0 <= trial.params["alpha"] <= 0.5
        assert max(0.25, trial.params["alpha"] + 0.01) <= trial.user_attrs["beta"] <= 1.0
