"""Guarantees for run configs, as `musicdet train --config/--set` users meet them: one line naming
the file, key, rule and value, exit status 2, nothing written; YAML only through the safe
loader; and, property-based, the parser never raises anything but a one-line `ConfigError`."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import yaml
from guarantees import assert_one_error_line, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from musicdet.config import RunConfig, apply_overrides, load_run_config
from musicdet.configtools import ConfigError

BAD_CONFIGS = {
    "unknown-key": ("seed: 0\nlearning_rate: 0.1\n",
                    "learning_rate: unknown key; expected one of seed, data, features"),
    "unknown-nested-key": ("loss: {type: aauc, sigma: 2}\n", "loss.sigma: unknown key"),
    "wrong-type": ("training: {epochs: '3'}\n", "training.epochs: expected int, got str '3'"),
    "bool-for-int": ("training: {epochs: true}\n", "training.epochs: expected int, got bool"),
    "section-not-mapping": ("model: 128\n", "model: expected a mapping, got int 128"),
    "not-a-mapping": ("- seed\n- 0\n", "expected a mapping, got list"),
    "alpha-equals-beta": ("loss: {type: apauc, alpha: 0.3, beta: 0.3}\n",
                          "loss.beta: `alpha < beta` must hold, but got {'alpha': 0.3, "),
    "alpha-above-beta": ("loss: {type: apauc, alpha: 0.5, beta: 0.1}\n", "`alpha < beta`"),
    "gamma-zero": ("loss: {type: aaucsum, gamma: 0}\n", "loss.gamma: `0 < gamma < 1` must hold"),
    "gamma-one": ("loss: {type: aaucsum, gamma: 1}\n", "loss.gamma: `0 < gamma < 1` must hold"),
    "lambda-negative": ("loss: {type: aaucsum, lam: -0.001}\n",
                        "loss.lam: `0 <= lam < inf` must hold, but got -0.001"),
    "delta-zero": ("loss: {type: aauc, delta: 0}\n", "loss.delta: `0 < delta < inf` must hold"),
    "delta-negative": ("loss: {type: aauc, delta: -1}\n", "loss.delta: `0 < delta < inf`"),
    "delta-nan": ("loss: {type: aauc, delta: .nan}\n", "loss.delta: `0 < delta < inf`"),
    "unknown-loss": ("loss: {type: focal}\n", "loss.type: expected one of ce, aauc, apauc"),
    "negative-seed": ("seed: -1\n", "seed: `0 <= seed < 2**32` must hold, but got -1"),
    "infinite-corpus": ("data: {synth_hours: .inf}\n", "data.synth_hours: `0 < synth_hours < inf`"),
    "huge-fft": ("features: {n_fft: 1099511627776}\n", "features.n_fft: `win_length <= n_fft <="),
    "infinite-lr": ("training: {lr_start: .inf}\n", "training.lr_end: `0 < lr_end <= lr_start <"),
    "yaml-syntax": ("seed: [0\n", "not valid YAML (line 2)"),
    "bad-tagged-scalar": ("seed: !!int zero\n", "not valid YAML: invalid literal for int()"),
    "impossible-date": ("seed: 2020-13-45\n", "not valid YAML: month must be in 1..12"),
    "binary-zero": ("seed: 0\n\x00\n", "not valid YAML: unacceptable character #x0000"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_bad_config_file_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, case):
    text, message = BAD_CONFIGS[case]
    config = tmp_path / "run.yaml"
    config.write_text(text)
    out = tmp_path / "run"
    assert_one_error_line(run_cli(capsys, "train", "--config", config, "--out", out),
                          f"{config}: ", message)
    assert not out.exists()


BAD_OVERRIDES = {
    "training.epochs=abc": "training.epochs: expected int, got str 'abc'",
    "epochs=3": "epochs: unknown key; expected one of seed, data",
    "training": "training: override must look like key.sub=value",
    "=3": "=3: override must look like key.sub=value",
    "nosuch.x=1": "nosuch.x: unknown section 'nosuch'",
    "training.epochs.x=1": "training.epochs.x: unknown section 'epochs'",
    "seed=[1": "seed: not valid YAML (line 1)",
    "loss.gamma=1.5": "loss.gamma: `0 <= gamma <= 1` must hold, but got 1.5",
    "training.device=tpu": "training.device: expected one of auto, cpu, cuda, got 'tpu'",
}


@pytest.mark.parametrize("override", BAD_OVERRIDES)
def test_bad_set_override_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, override):
    out = tmp_path / "run"
    outcome = run_cli(capsys, "train", "--set", override, "--out", out)
    assert_one_error_line(outcome, BAD_OVERRIDES[override])
    assert not out.exists()


def test_yaml_python_tags_are_refused_not_run(tmp_path, capsys):
    marker = tmp_path / "ran"
    config = tmp_path / "run.yaml"
    config.write_text(f"seed: !!python/object/apply:os.mkdir ['{marker}']\n")
    outcome = run_cli(capsys, "train", "--config", config, "--out", tmp_path / "run")
    assert_one_error_line(outcome, "could not determine a constructor for the tag "
                                   "'tag:yaml.org,2002:python/object/apply:os.mkdir'")
    outcome = run_cli(capsys, "train", "--set", f"seed=!!python/object/apply:os.mkdir ['{marker}']",
                      "--out", tmp_path / "run")
    assert_one_error_line(outcome, "seed: not valid YAML")
    assert not marker.exists()


# ------------------------------------------------------------------ property-based


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-3, 3000),
    st.floats(), st.floats(-2.0, 2.0), st.text(max_size=6),
    st.sampled_from(["ce", "aauc", "apauc", "aaucsum", "synth", "generic", "cpu", "cuda",
                     "music", "no-music"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=6,
)


def config_dicts(cls: type) -> st.SearchStrategy[dict]:
    """Mappings shaped like dataclass ``cls`` (nested sections recursively), with random values,
    an occasional unknown key and wrong-typed sections."""
    hints = typing.get_type_hints(cls)
    fields = {
        field.name: (config_dicts(hints[field.name]) | VALUES
                     if dataclasses.is_dataclass(hints[field.name]) else VALUES)
        for field in dataclasses.fields(cls)
    }
    return st.fixed_dictionaries({}, optional={**fields, "unknown": VALUES})


def assert_valid_or_one_line_error(parse: typing.Callable[[], RunConfig]) -> None:
    try:
        config = parse()
    except ConfigError as error:
        assert str(error) and len(str(error).splitlines()) == 1, str(error)
        return
    assert isinstance(config, RunConfig)
    assert RunConfig.from_dict(yaml.safe_load(config.to_yaml())) == config  # a valid one saves


PROPERTY_SETTINGS = settings(max_examples=300, deadline=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY_SETTINGS
@given(config_dicts(RunConfig))
def test_from_dict_gives_a_config_or_one_line_error(data):
    assert_valid_or_one_line_error(lambda: RunConfig.from_dict(data))


@PROPERTY_SETTINGS
@given(st.one_of(
    config_dicts(RunConfig).map(lambda d: yaml.safe_dump(d, default_flow_style=None)),
    st.text(max_size=40),
    st.lists(st.sampled_from(["seed: 1", "loss:", "  type: apauc", "  alpha: .5", "- 1", "[",
                              "  beta: 0x1", "training: {epochs: 1e3}", "? [a]", ": b", "&a x",
                              "*a", "!!int q", "!!python/name:os.getcwd", "\t", "\"k\\n\": 1"]),
             max_size=6).map("\n".join),
))
def test_yaml_file_gives_a_config_or_one_line_error(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    assert_valid_or_one_line_error(lambda: load_run_config(path))


@PROPERTY_SETTINGS
@given(st.lists(st.one_of(
    st.text(max_size=20),
    st.tuples(st.sampled_from(["seed", "loss.type", "loss.alpha", "loss.beta", "training.epochs",
                               "data.label_map.jingle", "features.n_mels", "model", "x.y.z"]),
              st.text(max_size=8)).map("=".join),
), max_size=3))
def test_overrides_give_a_config_or_one_line_error(overrides):
    assert_valid_or_one_line_error(lambda: apply_overrides(RunConfig(), overrides))


def test_error_messages_stay_one_line_with_line_breaks_in_keys(tmp_path):
    path = Path(tmp_path / "run.yaml")
    path.write_text('data: {label_map: {"a\\nb": 5}}\n"x\\u2028y": 1\n')
    with pytest.raises(ConfigError) as caught:
        load_run_config(path)
    assert str(caught.value) == f"{path}: data.label_map.a\\nb: expected str, got int 5"
