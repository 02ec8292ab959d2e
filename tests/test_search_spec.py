"""Study specs and the search space: errors before any worker starts, conditional parameters."""

from __future__ import annotations

import optuna
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import musicdet.config
import musicdet.losses
import search.space
import search.spec
from musicdet.configtools import ConfigError
from search.space import INACTIVE, complete_params, grid_points, logged_params, loss_config, sample
from search.spec import LOSS_PARAMS, load_spec, parse_spec
from search.tracking import MlflowSettings, load_settings

STUDIES = ["smoke", "paper-table1", "paper-table2", "paper-table3", "joint", "pareto"]


@pytest.mark.parametrize("name", STUDIES)
def test_shipped_studies_parse(name: str) -> None:
    spec = load_spec(f"studies/{name}.yaml")
    assert spec.name == name
    assert spec.search.n_trials >= 1


def test_paper_grids_are_the_papers_tables() -> None:
    table1 = load_spec("studies/paper-table1.yaml").search.grid
    assert [g.type for g in table1] == ["ce", "aauc"]
    table2 = load_spec("studies/paper-table2.yaml").search.grid
    assert [(g.alpha, g.beta) for g in table2] == [
        (0, .25), (0, .5), (0, .75), (.25, .5), (.25, .75), (.25, 1)]
    table3 = load_spec("studies/paper-table3.yaml").search.grid
    assert {g.gamma for g in table3} == {0.75}
    assert [g.lam for g in table3] == [1, .1, .01, .001, .0001]


BAD = [
    ({"bogus": 1}, "bogus: unknown key"),
    ({"search": {"n_trials": "ten"}}, "search.n_trials: expected int"),
    ({"search": {"n_trials": 0}}, "search.n_trials: `n_trials >= 1`"),
    ({"search": {"space": {"alpha": 0.5, "beta": 0.4}}},
     "search.space.alpha: `alpha + 0.01 <= beta"),
    ({"search": {"space": {"alpha": {"low": 0.0, "high": 0.9}, "beta": {"low": 0.2, "high": 0.5}}}},
     "search.space.alpha: `alpha + 0.01 <= beta"),
    ({"search": {"space": {"alpha": {"choices": [0.0, 0.5]}, "beta": {"choices": [0.5, 1.0]}}}},
     "search.space.alpha: `alpha + 0.01 <= beta"),
    ({"search": {"space": {"alpha": {"low": -0.1, "high": 0.3}}}},
     "search.space.alpha: `0 <= alpha <= 1`"),
    ({"search": {"space": {"beta": {"low": 0.5, "high": 1.5}}}},
     "search.space.beta: `0 <= beta <= 1`"),
    ({"search": {"space": {"lam": -0.1}}}, "search.space.lam: `0 <= lam < inf`"),
    ({"search": {"space": {"gamma": 1.0}}}, "search.space.gamma: `0 < gamma < 1`"),
    ({"search": {"space": {"gamma": {"low": 0.0, "high": 0.5}}}}, "search.space.gamma"),
    ({"search": {"space": {"delta": 0.0}}}, "search.space.delta: `0 < delta < inf`"),
    ({"search": {"space": {"delta": {"choices": []}}}}, "choices is not empty"),
    ({"search": {"space": {"lam": {"low": 0.0, "high": 1.0, "log": True}}}}, "low > 0 on a log"),
    ({"search": {"space": {"zeta": 1.0}}}, "search.space.zeta: unknown key"),
    ({"search": {"losses": []}}, "search.losses: `losses is not empty`"),
    ({"search": {"losses": ["ce", "focal"]}}, "search.losses[1]"),
    ({"search": {"sampler": "grid"}}, "search.grid: `grid is given exactly when sampler is grid`"),
    ({"search": {"sampler": "grid", "grid": []}}, "search.grid: `grid is not empty`"),
    ({"search": {"sampler": "grid", "grid": [{"type": "apauc", "alpha": 0.5, "beta": 0.5}]}},
     "search.grid[0].beta: `alpha < beta`"),
    ({"search": {"sampler": "grid", "n_trials": 3, "grid": [{"type": "ce"}]}},
     "search.n_trials: `n_trials == number of grid entries`"),
    ({"search": {"sampler": "bayes"}}, "search.sampler: expected one of tpe, random, grid"),
    ({"search": {"objective": {"metric": "accuracy"}}}, "search.objective.metric"),
    ({"search": {"objective": {"metric": "val_eer", "direction": "maximize"}}},
     "search.objective.direction: `direction == minimize for val_eer"),
    ({"search": {"objective": {"metric": "val_auc", "direction": "minimize"}}},
     "search.objective.direction: `direction == maximize for val_auc"),
    ({"search": {"losses": ["ce", "apauc"], "objective": {"metric": "val_loss"}}},
     "search.objective.metric: `a loss objective"),
    ({"search": {"sampler": "grid", "grid": [{"type": "ce"}, {"type": "aauc"}],
                 "objective": {"metric": "train_loss"}}}, "search.objective.metric: `a loss"),
    ({"search": {"objective": []}}, "search.objective: `at least one objective`"),
    ({"search": {"objective": [{"metric": "val_auc"}, {"metric": "val_pauc"}]}},
     "search.objective[1].metric: `metric in {val_auc, val_pauc_low_fpr,"),
    ({"search": {"objective": [{"metric": "val_auc"},
                               {"metric": "val_pauc_low_fpr", "direction": "minimize"}]}},
     "search.objective[1].direction: `direction == maximize for val_pauc_low_fpr"),
    ({"search": {"objective": [{"metric": "val_auc"},
                               {"metric": "training_seconds", "direction": "maximize"}]}},
     "search.objective[1].direction: `direction == minimize for training_seconds"),
    ({"search": {"objective": [{"metric": "val_auc"}, {"metric": "val_eer"},
                               {"metric": "val_auc"}]}},
     "search.objective[2].metric: `no metric repeated` must hold, but got 'val_auc'"),
    ({"search": {"objective": [{"metric": "training_seconds"}, {"metric": "val_auc"}]}},
     "search.objective[0].metric: `the first objective picks each trial's kept epoch"),
    ({"search": {"objective": {"metric": "training_seconds"}}},
     "search.objective.metric: `the first objective picks each trial's kept epoch"),
    ({"search": {"losses": ["ce", "aauc"],
                 "objective": [{"metric": "val_auc"}, {"metric": "val_loss"}]}},
     "search.objective[1].metric: `a loss objective"),
    ({"search": {"objective": [{"metric": "val_auc"}, "val_eer"]}},
     "search.objective[1]: expected a mapping"),
    ({"search": {"repeats": 0}}, "search.repeats: `repeats >= 1 (seeds per configuration)`"),
    ({"search": {"repeats": -2}}, "search.repeats: `repeats >= 1"),
    ({"search": {"repeats": 1.5}}, "search.repeats: expected int"),
    ({"search": {"objective": {"aggregate": "lcb"}}},
     "search.objective.aggregate: `aggregate lcb only with repeats >= 2"),
    ({"search": {"objective": {"aggregate": "median"}}},
     "search.objective.aggregate: expected one of mean, lcb"),
    ({"pruner": {"type": "hyperband"}}, "pruner.type"),
    ({"pruner": {"grace_epochs": 0}}, "pruner.grace_epochs"),
    ({"resources": {"cpus": 0}}, "resources.cpus: `cpus > 0`"),
    ({"resources": {"gpus": -0.5}}, "resources.gpus"),
    ({"resources": {"require_gpu": True}},
     "resources.require_gpu: `require_gpu only with gpus > 0`"),
    ({"base": {"training": {"device": "cuda"}}},
     "base.training.device: a study's trials train on cuda exactly when resources.gpus > 0"),
    ({"storage": {"features": {"transport": "nfs"}}},
     "storage.features.transport: expected one of auto, object_store, shared_cache"),
    ({"storage": {"features": {"cache": "x"}}}, "storage.features.cache: unknown key"),
    ({"storage": {"url": "mysql://u@h/db"}}, "storage.url: `a sqlite:/// or postgresql:// URL`"),
    ({"storage": {"url": "not a url"}}, "storage.url: expected a database URL"),
    ({"storage": {"url": "postgresql://u:hunter2@h:5432"}}, "names a database"),
    ({"base": {"loss": {"type": "ce"}}}, "base.loss: the loss is what the study searches"),
    ({"loss": {"type": "ce"}}, "loss: belongs under base:"),
    ({"training": {"epochs": 3}}, "training: belongs under base:"),
    ({"base": {"training": {"select_metric": "val_eer"}}},
     "base.training.select_metric: a study keeps each trial's best epoch by search.objective"),
    ({"name": "bad name!"}, "name: `name is 1-64"),
    ({"base": {"training": {"epochs": 0}}}, "base.training.epochs: `epochs >= 1`"),
    ({"base": {"model": {"input_dim": 12}}}, "base.model.input_dim"),
    ({"base": {"data": {"bogus": 1}}}, "base.data.bogus: unknown key"),
    ({"root": 3}, "root: expected str"),
    ({"search": {"objective": {"metric": "train_val_auc"}}},
     "search.objective.metric: `train_val_* objectives only with a base.validation: section`"),
    ({"validation": {"format": "generic", "path": "x"}}, "validation: belongs under base:"),
    ({"base": {"validation": {"format": "mp3"}}}, "base.validation.format: expected one of"),
    ({"base": {"validation": {"format": "generic"}}},
     "base.validation.path: `path is given for a non-synth format`"),
]


@pytest.mark.parametrize(("patch", "expected"), BAD)
def test_bad_spec_gives_one_line_naming_key(tmp_path, patch: dict, expected: str) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "s", **patch}))
    with pytest.raises(ConfigError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message
    assert "hunter2" not in message


def test_a_validation_set_resolves_against_the_root_and_may_be_the_objective(tmp_path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "base": {"validation": {
        "format": "generic", "path": "sets/mine", "cache_dir": "cache"}},
        "search": {"objective": {"metric": "train_val_eer"}}}))
    config = load_spec(path).base_config()
    assert config.validation.path == str(tmp_path / "sets/mine")
    assert config.validation.cache_dir == str(tmp_path / "cache")
    assert config.training.select_metric == "train_val_eer"
    assert load_spec(path).search.objective.direction == "minimize"


def test_each_metric_has_its_direction_and_picks_the_epoch_kept() -> None:
    spec = parse_spec({"name": "s", "search": {"objective": {"metric": "val_eer"}}})
    assert (spec.search.objective.direction, spec.search.objective.mode) == ("minimize", "min")
    assert spec.base_config().training.select_metric == "val_eer"
    assert parse_spec({"name": "s"}).search.objective.direction == "maximize"


def test_a_list_of_objectives_is_a_multi_objective_study_whose_first_picks_the_epoch() -> None:
    search_spec = parse_spec({"name": "s", "search": {"objective": [
        {"metric": "val_eer"}, {"metric": "val_pauc_low_fpr", "direction": "maximize"},
        {"metric": "training_seconds"}]}})
    objectives = search_spec.search.objectives
    assert [(o.metric, o.direction) for o in objectives] == [
        ("val_eer", "minimize"), ("val_pauc_low_fpr", "maximize"),
        ("training_seconds", "minimize")]
    assert search_spec.search.multi_objective and search_spec.search.primary is objectives[0]
    assert search_spec.base_config().training.select_metric == "val_eer"
    single = parse_spec({"name": "s", "search": {"objective": [{"metric": "val_eer"}]}}).search
    assert not single.multi_objective and single.primary.metric == "val_eer"
    assert musicdet.config.METRIC_DIRECTIONS["val_pauc_low_fpr"] == "maximize"
    assert musicdet.config.LOW_FPR == (0.0, 0.1)


@pytest.mark.parametrize("losses", [["ce"], ["aauc", "apauc", "aaucsum"]])
def test_a_loss_objective_is_allowed_when_all_losses_share_units(losses: list[str]) -> None:
    search = parse_spec({"name": "s", "search": {
        "losses": losses, "objective": {"metric": "val_loss"}}}).search
    assert search.objective.direction == "minimize"


def test_loss_types_and_rules_come_from_musicdet_losses() -> None:
    assert search.spec.LOSS_PARAMS is musicdet.losses.LOSS_PARAMS
    assert search.space.LOSS_PARAMS is musicdet.losses.LOSS_PARAMS
    types = musicdet.losses.LOSS_TYPES
    assert types == tuple(musicdet.losses.LOSS_PARAMS) == ("ce", "aauc", "apauc", "aaucsum")
    # a grid entry is a LossConfig: its rules, no stricter copy (α, β are inactive for ce)
    grid = parse_spec({"name": "s", "search": {"sampler": "grid", "grid": [
        {"type": "ce", "alpha": 0.9, "beta": 0.1}]}}).search.grid
    assert grid == [musicdet.losses.LossConfig("ce", alpha=0.9, beta=0.1)]


def test_missing_name_and_bad_yaml(tmp_path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text("search: {n_trials: 3}\n")
    with pytest.raises(ConfigError, match="name: missing"):
        load_spec(path)
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_spec(path)


def test_mlflow_yaml_and_overrides(tmp_path) -> None:
    (tmp_path / "mlflow.yaml").write_text("tracking_uri: sqlite:///x.db\nregistered_model: m\n")
    spec = parse_spec({"name": "s", "mlflow": {"registered_model": "other"}})
    settings = load_settings(spec.mlflow, tmp_path / "mlflow.yaml")
    assert settings == MlflowSettings(tracking_uri="sqlite:///x.db", registered_model="other")
    (tmp_path / "mlflow.yaml").write_text("tracking_uri: ftp://nowhere\n")
    with pytest.raises(ConfigError, match="mlflow.yaml: tracking_uri"):
        load_settings(spec.mlflow, tmp_path / "mlflow.yaml")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-2, 2) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=3),
    max_leaves=8,
)
sections = st.sampled_from(["search", "pruner", "resources", "storage", "base", "root"])


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(sections, json_values, max_size=3))
def test_spec_parser_never_tracebacks(data: dict) -> None:
    try:
        spec = parse_spec({"name": "s", **data})
    except ConfigError as error:
        assert "\n" not in str(error)
    else:
        assert spec.search.n_trials >= 1


# ---------------------------------------------------------------- the space


def _samples(spec_data: dict, n: int = 40) -> list[dict]:
    search = parse_spec({"name": "s", "search": spec_data}).search
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append((sample(trial, search), trial.params))
        study.tell(trial, 0.5)
    return out


def test_only_the_chosen_losss_parameters_are_sampled() -> None:
    seen = set()
    for params, optuna_params in _samples({}, 60):
        loss = params["loss"]
        seen.add(loss)
        assert set(params) == {"loss", *LOSS_PARAMS[loss]}
        sampled = set(optuna_params) - {"loss"}
        expected = {"ce": set(), "aauc": set(), "apauc": {"alpha", "beta_fraction"},
                    "aaucsum": {"gamma", "lam"}}[loss]  # delta is fixed (10) by default
        assert sampled == expected
        if loss == "apauc":
            assert params["alpha"] + 0.01 <= params["beta"] <= 1.0
        if loss == "aaucsum":
            assert 0 < params["gamma"] < 1 and params["lam"] > 0
        logged = logged_params(params)
        assert set(logged) == {"loss", "alpha", "beta", "gamma", "lam", "delta"}
        assert [k for k, v in logged.items() if v == INACTIVE] == [
            k for k in ("alpha", "beta", "gamma", "lam", "delta") if k not in LOSS_PARAMS[loss]]
        assert loss_config(params).type == loss
    assert seen == {"ce", "aauc", "apauc", "aaucsum"}


@pytest.mark.parametrize(("space", "fraction"), [
    ({"alpha": {"low": 0.0, "high": 0.5}, "beta": {"choices": [0.25, 0.75, 1.0]}}, "alpha"),
    ({"alpha": {"choices": [0.0, 0.25]}, "beta": {"low": 0.5, "high": 1.0}}, "beta"),
    ({"alpha": {"low": 0.0, "high": 0.7}, "beta": 0.75}, "alpha"),
    ({"alpha": 0.1, "beta": {"low": 0.05, "high": 0.9, "log": True}}, "beta"),
    ({"alpha": {"choices": [0.0, 0.25]}, "beta": {"choices": [0.5, 1.0]}}, None),
])
def test_alpha_below_beta_within_the_specs_ranges(space: dict, fraction: str | None) -> None:
    """Every shape of space: α + 0.01 <= β, both within the ranges the spec gives them, and
    the dependent one is sampled as a fraction (its value a user attribute)."""
    bounds = {name: _extent(space[name]) for name in ("alpha", "beta")}
    samples = _samples({"losses": ["apauc"], "space": space})
    for params, optuna_params in samples:
        assert params["alpha"] + 0.01 <= params["beta"] + 1e-12
        for name in ("alpha", "beta"):
            assert bounds[name][0] <= params[name] <= bounds[name][1]
        assert (f"{fraction}_fraction" in optuna_params) == (fraction is not None)
    for name, (low, high) in bounds.items():  # each range is used, not one corner of it
        values = [params[name] for params, _ in samples]
        assert max(values) - min(values) >= (high - low) / 3


def _extent(param: dict | float) -> tuple[float, float]:
    """(lowest, highest) value of a spec parameter: a range, choices or one value."""
    if not isinstance(param, dict):
        return param, param
    values = param.get("choices") or [param["low"], param["high"]]
    return min(values), max(values)


def test_a_log_scale_fraction_maps_to_the_log_range() -> None:
    search = parse_spec({"name": "s", "search": {"losses": ["apauc"], "space": {
        "alpha": 0.0, "beta": {"low": 0.01, "high": 1.0, "log": True}}}}).search
    values = [complete_params(search, {"beta_fraction": f})["beta"] for f in (0.0, 0.5, 1.0)]
    assert values == pytest.approx([0.01, 0.1, 1.0])


def test_fixed_values_are_not_sampled_and_come_back_in_exports() -> None:
    search = {"losses": ["aaucsum"], "space": {"gamma": 0.75, "delta": 5.0}}
    for params, optuna_params in _samples(search, 5):
        assert params["gamma"] == 0.75 and params["delta"] == 5.0
        assert set(optuna_params) == {"lam"}
        spec_search = parse_spec({"name": "s", "search": search}).search
        assert complete_params(spec_search, optuna_params) == params


def test_grid_points_enqueue_exactly_the_grid() -> None:
    search = load_spec("studies/paper-table2.yaml").search
    study = optuna.create_study()
    for point in grid_points(search):
        study.enqueue_trial(point)
    got = []
    for _ in range(6):
        trial = study.ask()
        got.append(loss_config(sample(trial, search)))
        study.tell(trial, 0.5)
    assert got == search.grid
