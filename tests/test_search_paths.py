"""A study's paths resolve against its root (the folder holding mlflow.yaml, found upward from
the spec file, else the spec file's folder), never the current directory; verbs that only read
a study never create its database."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from musicdet.errors import UnfinishedError
from search.cli import main as search_main
from search.spec import find_root, load_spec
from search.tracking import StudyTracker, study_settings

MLFLOW_YAML = "tracking_uri: sqlite:///runs/mlflow.db\nartifact_location: runs/mlartifacts\n"


def _project(tmp_path: Path, **spec: object) -> Path:
    """project/mlflow.yaml and project/studies/s.yaml; returns the spec's path."""
    project = tmp_path / "project"
    (project / "studies").mkdir(parents=True)
    (project / "mlflow.yaml").write_text(MLFLOW_YAML)
    path = project / "studies" / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", **spec}))
    return path


def test_paths_resolve_against_the_folder_holding_mlflow_yaml(tmp_path, monkeypatch) -> None:
    path = _project(tmp_path, base={"data": {"format": "generic", "path": "audio"}})
    monkeypatch.chdir(tmp_path)  # anywhere but the project
    spec = load_spec(path)
    project = tmp_path / "project"
    assert spec.root == str(project)
    assert spec.workdir == project / "runs/s"
    assert spec.storage_url == f"sqlite:///{project}/runs/s/optuna.db"
    data = spec.base_config().data
    assert (data.path, data.cache_dir) == (f"{project}/audio", f"{project}/runs/cache")
    assert spec.feature_cache == project / "runs/s/features"  # the shared cache: in workdir
    moved = load_spec(_project(tmp_path / "2", storage={"features": {"cache_dir": "feats"}}))
    assert moved.feature_cache == tmp_path / "2/project/feats"
    settings = study_settings(spec)
    assert settings.tracking_uri == f"sqlite:///{project}/runs/mlflow.db"
    assert settings.artifact_location == f"{project}/runs/mlartifacts"


def test_without_mlflow_yaml_the_root_is_the_spec_folder_or_root_key(tmp_path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert find_root(tmp_path / "a" / "b" / "s.yaml") == tmp_path / "a" / "b"
    assert find_root(tmp_path / "a" / "b" / "s.yaml", "..") == tmp_path / "a"
    (tmp_path / "a" / "mlflow.yaml").write_text("")
    assert find_root(tmp_path / "a" / "b" / "s.yaml") == tmp_path / "a"
    path = tmp_path / "a" / "b" / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "root": ".", "storage": {
        "url": "sqlite:///db/optuna.db", "workdir": "/elsewhere/w"}}))
    spec = load_spec(path)
    assert spec.storage_url == f"sqlite:///{tmp_path}/a/b/db/optuna.db"
    assert spec.workdir == Path("/elsewhere/w")


def test_status_from_another_folder_finds_the_study(tmp_path, monkeypatch, capsys) -> None:
    path = _project(tmp_path)
    spec = load_spec(path)
    spec.workdir.mkdir(parents=True)
    study = optuna.create_study(study_name="s", storage=spec.storage_url)
    study.tell(study.ask(), state=TrialState.PRUNED)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert search_main(["status", str(path)]) == 0
    assert capsys.readouterr().out.startswith("study s: PRUNED 1")
    assert list(elsewhere.iterdir()) == []


def test_reading_a_missing_study_creates_no_database(tmp_path) -> None:
    spec = load_spec(_project(tmp_path))
    with pytest.raises(UnfinishedError, match=r"^no study 's' in sqlite:///.*/runs/s/optuna\.db; "
                                          r"run `musicdet-search run` on its spec first$"):
        spec.existing_storage_url()
    with pytest.raises(UnfinishedError, match=r"^no MLflow store in sqlite:///.*/runs/mlflow\.db"):
        StudyTracker(study_settings(spec), spec.name, create=False)
    assert not (tmp_path / "project" / "runs").exists()
    StudyTracker(study_settings(spec), "other")  # a study that runs creates the store ...
    with pytest.raises(UnfinishedError, match="^no MLflow experiment 'musicdet-s' in sqlite:///"):
        StudyTracker(study_settings(spec), spec.name, create=False)  # ... not its experiment
