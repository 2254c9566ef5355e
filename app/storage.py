"""The object store: S3 (boto3) and a local folder behind one small interface.

Keys are ``/``-separated paths such as ``tenants/t1/uploads/x.csv``. Callers
build keys from tenant-scoped prefixes; :func:`check_key` refuses anything that
could climb out of one.
"""
from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

from app.settings import Settings

__all__ = ["ObjectStore", "LocalStore", "S3Store", "ObjectNotFound", "make_store", "check_key", "opened", "opened_version", "READ_BUFFER"]

logger = logging.getLogger(__name__)

#: Bytes read from the object store at a time.
READ_BUFFER = 1024 * 1024


class ObjectNotFound(LookupError):
    """No object under that key."""


def check_key(key: str) -> str:
    """``key`` if it is a plain relative path, else ``ValueError``."""
    path = PurePosixPath(key)
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or "\x00" in key
        or any(part in {"", ".", ".."} for part in key.split("/"))
        or path.is_absolute()
    ):
        raise ValueError(f"not a valid object key: {key!r}")
    return key


class ObjectStore(Protocol):
    """What fairq needs of an object store."""

    def put(self, key: str, stream: BinaryIO) -> int:
        """Store ``stream`` under ``key``, replacing any object there. Returns the size in bytes."""

    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the object. Raises: ObjectNotFound."""

    def open_version(self, key: str) -> tuple[BinaryIO, str]:
        """:meth:`open`, and the version of the object that stream reads (see :meth:`version`)."""

    def version(self, key: str) -> str:
        """A text that changes whenever the object under ``key`` is replaced (S3: its ETag and
        size; a local file: its size and modification time). Raises: ObjectNotFound."""

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""

    def delete(self, key: str) -> None:
        """Remove the object; no error if it is absent."""

    def ensure(self) -> None:
        """Create the folder or bucket if it does not exist yet."""

    def check(self) -> None:
        """Raise if the store cannot be reached (for /readyz)."""


class LocalStore:
    """Objects as files under ``root`` (the embedded default)."""

    name = "local folder"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, stream: BinaryIO) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(stream, out, 1024 * 1024)
            os.replace(tmp, path)  # readers never see half a file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path.stat().st_size

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectNotFound(key) from None

    def open_version(self, key: str) -> tuple[BinaryIO, str]:
        stream = self.open(key)
        return stream, self._version(os.fstat(stream.fileno()))  # the file this stream reads

    def version(self, key: str) -> str:
        try:
            return self._version(self._path(key).stat())
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    @staticmethod
    def _version(stat: os.stat_result) -> str:
        # put() replaces a file by renaming a new one over it: a new mtime, to the nanosecond
        return f"{stat.st_size}-{stat.st_mtime_ns}"

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def check(self) -> None:
        self.ensure()
        if not self.root.is_dir() or not os.access(self.root, os.W_OK):
            raise OSError(f"{self.root} is not a writable folder")


class S3Store:
    """Objects in an S3 bucket through boto3 (AWS, MinIO or any S3-compatible server)."""

    name = "S3"

    def __init__(self, client, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float | None = None) -> S3Store:
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=timeout or 10,
            read_timeout=timeout or 60,
            retries={"max_attempts": 1 if timeout else 3},
            s3={"addressing_style": "path"} if settings.s3_endpoint_url else None,
        )
        secret = settings.s3_secret_access_key
        client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=secret.get_secret_value() if secret else None,
            config=config,
        )
        return cls(client, settings.s3_bucket or "")

    def put(self, key: str, stream: BinaryIO) -> int:
        counter = _CountingReader(stream)
        # upload_fileobj streams in parts: memory stays flat whatever the size
        self.client.upload_fileobj(counter, self.bucket, check_key(key))
        return counter.count

    def open(self, key: str) -> BinaryIO:
        return self.open_version(key)[0]

    def open_version(self, key: str) -> tuple[BinaryIO, str]:
        response = self._call(self.client.get_object, key)
        return response["Body"], self._version(response)

    def version(self, key: str) -> str:
        return self._version(self._call(self.client.head_object, key))

    def exists(self, key: str) -> bool:
        try:
            self._call(self.client.head_object, key)
        except ObjectNotFound:
            return False
        return True

    def _call(self, method, key: str) -> dict:
        """``method(Bucket=, Key=)``; a missing object raises ObjectNotFound."""
        from botocore.exceptions import ClientError

        try:
            return method(Bucket=self.bucket, Key=check_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
                raise ObjectNotFound(key) from None
            raise

    @staticmethod
    def _version(response: dict) -> str:
        return f"{response['ETag'].strip(chr(34))}-{response['ContentLength']}"

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=check_key(key))

    def ensure(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            logger.info("creating bucket %s", self.bucket)
            region = self.client.meta.region_name
            if region and region != "us-east-1":
                self.client.create_bucket(
                    Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": region}
                )
            else:
                self.client.create_bucket(Bucket=self.bucket)

    def check(self) -> None:
        self.client.head_bucket(Bucket=self.bucket)


class _CountingReader:
    """Wraps a stream and counts the bytes read through it."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.count += len(data)
        return data


def make_store(settings: Settings, *, timeout: float | None = None) -> ObjectStore:
    """The object store the settings describe."""
    if settings.s3_bucket:
        return S3Store.from_settings(settings, timeout=timeout)
    return LocalStore(settings.data_dir / "objects")


@contextmanager
def opened(settings: Settings, key: str) -> Iterator[BinaryIO]:
    """The object as a buffered binary stream, read as it is consumed; closed afterwards.

    Raises:
      ObjectNotFound: no object under ``key``.
    """
    with opened_version(make_store(settings), key) as (stream, _version):
        yield stream


@contextmanager
def opened_version(store: ObjectStore, key: str) -> Iterator[tuple[BinaryIO, str]]:
    """:func:`opened`, and the version of the object the stream reads (see ``ObjectStore.version``)."""
    body, version = store.open_version(key)
    try:
        if isinstance(body, io.BufferedIOBase):
            yield body, version  # a local file
        else:
            yield io.BufferedReader(_Raw(body), READ_BUFFER), version  # type: ignore[arg-type]
    finally:
        body.close()


class _Raw(io.RawIOBase):
    """An S3 body as a raw stream, so that reads come in large buffered pieces."""

    def __init__(self, body) -> None:
        self.body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
