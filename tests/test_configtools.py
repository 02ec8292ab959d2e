"""Typed config parsing: keys, types, rules, YAML files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from musicdet.configtools import (
    ConfigError,
    from_dict,
    load_config,
    require,
    to_dict,
    with_overrides,
)


@dataclass
class Inner:
    rate: float = 1.0
    kind: Literal["a", "b"] = "a"
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        require(self.rate > 0, "rate", "rate > 0", self.rate)


@dataclass
class Outer:
    name: str = "x"
    count: int | None = None
    inner: Inner = field(default_factory=Inner)
    extra: list[Inner] | None = None


def test_nested_values_round_trip() -> None:
    config = from_dict(Outer, {"name": "y", "count": 3, "inner": {"rate": 2, "tags": ["t"]}})
    assert config == Outer("y", 3, Inner(2.0, "a", ["t"]))
    assert isinstance(config.inner.rate, float)
    assert from_dict(Outer, to_dict(config)) == config


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"inner": {"rate": -1}}, "inner.rate: `rate > 0` must hold, but got -1.0"),
        ({"inner": {"speed": 1}}, "inner.speed: unknown key; expected one of rate, kind, tags"),
        ({"count": "3"}, "count: expected int, got str '3'"),
        ({"count": True}, "count: expected int, got bool True"),
        ({"inner": {"kind": "c"}}, "inner.kind: expected one of a, b, got 'c'"),
        ({"inner": {"tags": [1]}}, "inner.tags[0]: expected str, got int 1"),
        ({"inner": 5}, "inner: expected a mapping, got int 5"),
        ({"extra": [{}, {"rate": 0}]}, "extra[1].rate: `rate > 0` must hold, but got 0.0"),
    ],
)
def test_errors_name_key_and_rule(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(Outer, data)
    assert str(info.value) == message


def test_yaml_file_errors_name_the_file(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  rate: 0\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: inner\.rate: `rate > 0` must hold"):
        load_config(Outer, path)
    path.write_text("inner: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: not valid YAML \(line \d+\)"):
        load_config(Outer, path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(Outer, tmp_path / "missing.yaml")


def test_yaml_is_parsed_safely(tmp_path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Outer, path)


def test_overrides_apply_dotted_keys_as_yaml_and_check_the_rules_again() -> None:
    config = with_overrides(Outer(), ["inner.rate=2", "count=7", "inner.tags=[a, b]"])
    assert config == Outer("x", 7, Inner(2.0, "a", ["a", "b"]))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("inner.rate=-1", "top.inner.rate: `rate > 0` must hold, but got -1.0"),
        ("name.first=a", "top.name.first: unknown section 'name'"),
        ("inner.rate", "top.inner.rate: override must look like key.sub=value"),
        ("inner.speed=1", "top.inner.speed: unknown key; expected one of rate, kind, tags"),
    ],
)
def test_override_errors_name_the_key_under_where(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        with_overrides(Outer(), [override], "top")
    assert str(info.value) == message
