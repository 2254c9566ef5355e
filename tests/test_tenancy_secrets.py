"""The JWT signing key: required and strong on the real path, kept in the data dir on the embedded default."""
import stat

import pytest

from app.settings import Settings, SettingsError
from app.tenancy.tokens import jwt_secret


def real(**overrides):
    return Settings.load(database_url="postgresql://u@127.0.0.1/x", **overrides)


def test_the_real_path_refuses_to_start_without_a_secret():
    with pytest.raises(SettingsError, match="FAIRQ_JWT_SECRET must be set"):
        jwt_secret(real(jwt_secret=None))


@pytest.mark.parametrize("weak", ["short-but-random-Xy7", "changeme", "your-256-bit-secret", "a" * 64,
                                  "change-me-to-a-long-random-secret-value"])
def test_weak_or_known_secrets_are_refused(weak):
    with pytest.raises(SettingsError, match="FAIRQ_JWT_SECRET"):
        jwt_secret(real(jwt_secret=weak))


def test_a_strong_secret_is_used_as_given():
    key = "k9Qx2Lm7Vb4Nc8Zr1Ts6Yp3Wd5Hf0Jg-Ae"
    assert jwt_secret(real(jwt_secret=key)) == key


def test_create_app_refuses_a_weak_secret_naming_the_variable(real_settings):
    from app import create_app

    with pytest.raises(SettingsError, match="FAIRQ_JWT_SECRET"):
        create_app(Settings.load(**{**real_settings.model_dump(), "jwt_secret": "secret"}))


def test_the_embedded_default_keeps_a_random_key_in_the_data_dir(tmp_path):
    embedded = Settings.load(
        data_dir=tmp_path, database_url="", database_owner_url="", broker_url="", redis_url="",
        s3_bucket="", jwt_secret=None,
    )
    first = jwt_secret(embedded)
    path = tmp_path / "jwt-secret"
    assert len(first) >= 32 and path.read_text().strip() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert jwt_secret(embedded) == first  # the same key after a restart: tokens stay valid
