"""Settings: one module reads the environment; bad values name their variable."""
from pathlib import Path

import pytest

from app.settings import ENV_PREFIX, Settings, SettingsError
from tests.conftest import clean_env, run_fairq


def embedded(**overrides):
    base = dict(database_url="", broker_url="", redis_url="", s3_bucket="", s3_endpoint_url="")
    base.update(overrides)
    return Settings.load(**base)


def test_no_variable_means_the_embedded_default(tmp_path):
    settings = embedded(data_dir=tmp_path)
    assert settings.embedded == {"database": True, "broker": True, "redis": True, "storage": True}
    assert settings.sqlalchemy_url == f"sqlite:///{(tmp_path / 'fairq.db').resolve()}"


def test_data_dir_defaults_to_dot_fairq(monkeypatch):
    monkeypatch.delenv("FAIRQ_DATA_DIR", raising=False)
    assert Settings.load().data_dir == Path(".fairq")


def test_real_components_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("FAIRQ_DATABASE_URL", "postgres://u@db:5432/x")
    monkeypatch.setenv("FAIRQ_S3_BUCKET", "b")
    settings = Settings.load()
    assert settings.sqlalchemy_url == "postgresql+psycopg2://u@db:5432/x"
    assert settings.embedded["database"] is False
    assert settings.embedded["storage"] is False


@pytest.mark.parametrize(
    "variable, value, expected",
    [
        ("WORKER_THREADS", "abc", "FAIRQ_WORKER_THREADS"),
        ("WORKER_THREADS", "0", "FAIRQ_WORKER_THREADS"),
        ("DATABASE_URL", "mysql://root@x/db", "FAIRQ_DATABASE_URL"),
        ("BROKER_URL", "redis://x", "FAIRQ_BROKER_URL"),
        ("REDIS_URL", "http://x", "FAIRQ_REDIS_URL"),
        ("S3_ENDPOINT_URL", "ftp://x", "FAIRQ_S3_ENDPOINT_URL"),
        ("LOG_LEVEL", "LOUD", "FAIRQ_LOG_LEVEL"),
        ("READINESS_TIMEOUT", "-1", "FAIRQ_READINESS_TIMEOUT"),
    ],
)
def test_a_bad_value_names_its_variable(monkeypatch, variable, value, expected):
    monkeypatch.setenv(ENV_PREFIX + variable, value)
    with pytest.raises(SettingsError, match=expected):
        Settings.load()


def test_an_endpoint_without_a_bucket_is_refused(monkeypatch):
    monkeypatch.setenv("FAIRQ_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.delenv("FAIRQ_S3_BUCKET", raising=False)
    with pytest.raises(SettingsError, match="FAIRQ_S3_BUCKET"):
        Settings.load()


def test_credentials_in_a_bad_url_are_never_echoed(monkeypatch):
    monkeypatch.setenv("FAIRQ_DATABASE_URL", "mysql://admin:hunter2-secret@db/x")
    with pytest.raises(SettingsError) as raised:
        Settings.load()
    assert "hunter2" not in str(raised.value)


def test_every_variable_is_listed_with_a_description():
    variables = Settings.variables()
    assert "FAIRQ_DATABASE_URL" in variables and "FAIRQ_DATA_DIR" in variables
    assert all(name.startswith(ENV_PREFIX) and text for name, text in variables.items())


def test_every_variable_is_documented_in_the_readme():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    missing = [name for name in Settings.variables() if f"`{name}`" not in readme]
    assert not missing, f"README.md does not document {missing}"


def test_only_the_settings_module_reads_the_environment():
    root = Path(__file__).resolve().parent.parent / "app"
    readers = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if path.name != "settings.py"
        and ("os.environ" in path.read_text() or "os.getenv" in path.read_text())
    ]
    assert readers == []


def test_the_cli_stops_with_exit_code_2_naming_the_variable(tmp_path):
    result = run_fairq("db", "current", env=clean_env(FAIRQ_WORKER_THREADS="lots"), cwd=tmp_path)
    assert result.returncode == 2
    assert "FAIRQ_WORKER_THREADS" in result.stderr
    assert "Traceback" not in result.stderr
