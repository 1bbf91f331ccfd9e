"""Blobs in an Azure Blob Storage container: hive state for agents on several machines.

Agents in several Container Apps share no filesystem and (by choice) no Redis; one storage
container holds their ring view, liveness and checkpoints. Blob ETags give compare-and-set
for free (``If-Match`` / ``If-None-Match: *``), so :class:`AzureBlobs` is a thin mapping of
the :class:`~hive_core.state.blobs.Blobs` primitives onto the SDK's sync ``ContainerClient``:

* a failed condition (412, or 409 for ``If-None-Match``) is ``PreconditionFailed``;
* a missing blob is ``None`` / ``False``; a missing container is created on the first write
  (so a read-only observer never needs the right to create one);
* any other Azure error is ``ConnectionLost``, its text redacted and not chained (SDK errors
  can quote request URLs, which carry SAS signatures).

Every call is bounded: ``connection_timeout`` and ``read_timeout`` per HTTP attempt and at
most ``retries`` quick retries (the SDK's default policy waits 15 s and more between tries,
longer than a liveness TTL). Worst case per call: ``(retries + 1) * (connection_timeout +
read_timeout) + retries * 0.75`` seconds. A retried conditional write whose first attempt
landed reports PreconditionFailed; callers above re-read and recognise their own write.

The SDK is imported when an ``AzureBlobs`` is made, and only here.
"""

from __future__ import annotations

import functools
import re
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from hive_core.errors import ConfigError, ConnectionLost
from hive_core.redact import redact_secret
from hive_core.state.blobs import (
    Blob,
    BlobInfo,
    PreconditionFailed,
    check_conditions,
    check_name,
)

_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
@functools.cache
def _sdk() -> SimpleNamespace:
    try:
        from azure.core import MatchConditions
        from azure.core import exceptions as errors
        from azure.storage.blob import ContainerClient, LinearRetry
    except ImportError as exc:
        raise ConfigError("the 'blob' state store needs azure-storage-blob: "
                          "pip install 'amplihack-hive[azure]'") from exc
    return SimpleNamespace(ContainerClient=ContainerClient, LinearRetry=LinearRetry,
                           MatchConditions=MatchConditions, errors=errors)


def _quoted(etag: str) -> str:
    """Listings return etags bare, downloads quoted; one form, so they compare equal."""
    return etag if etag.startswith('"') else f'"{etag}"'


class AzureBlobs:
    """:class:`~hive_core.state.blobs.Blobs` in one Azure Blob container (see module doc)."""

    def __init__(self, connection_string: str, container: str, *,
                 connection_timeout: float = 5.0, read_timeout: float = 10.0,
                 retries: int = 2) -> None:
        if not connection_string or not isinstance(connection_string, str):
            raise ConfigError("an Azure Storage connection string is required")
        if not isinstance(container, str) or not _CONTAINER.match(container):
            raise ConfigError(f"invalid Azure container name {container!r}: use 3-63 "
                              "lowercase letters, digits and single hyphens")
        if connection_timeout <= 0 or read_timeout <= 0 or retries < 0:
            raise ConfigError("Azure timeouts must be > 0 seconds and retries >= 0")
        self._sdk = sdk = _sdk()
        self._timeout = max(1, int(read_timeout))  # server-side limit, whole seconds
        try:
            self._client = sdk.ContainerClient.from_connection_string(
                connection_string, container,
                connection_timeout=connection_timeout, read_timeout=read_timeout,
                retry_policy=sdk.LinearRetry(backoff=0.5, random_jitter_range=0.25,
                                             retry_total=retries))
        except (ValueError, sdk.errors.AzureError) as exc:
            raise ConfigError(f"invalid Azure Storage connection string "
                              f"{redact_secret(connection_string)!r}: "
                              f"{redact_secret(str(exc))}") from None
        url = urlsplit(self._client.url)  # no query: a SAS would be there
        self.where = f"{url.scheme}://{url.netloc}{url.path}"

    def _lost(self, op: str, name: str, exc: Exception) -> ConnectionLost:
        code = getattr(exc, "error_code", None)
        first = redact_secret(str(exc)).strip().splitlines()[:1]
        detail = f"{type(exc).__name__}{f' {code}' if code else ''}: {first[0] if first else ''}"
        return ConnectionLost(f"Azure Blob Storage {self.where}: {op} {name!r} failed: {detail}")

    def _container_missing(self, exc: Exception) -> bool:
        return str(getattr(exc, "error_code", "") or "") == "ContainerNotFound"

    def _create_container(self) -> None:
        errors = self._sdk.errors
        try:
            self._client.create_container(timeout=self._timeout)
        except errors.ResourceExistsError:
            pass  # another agent created it first
        except errors.AzureError as exc:
            raise self._lost("create container", self.where, exc) from None

    # -- Blobs ----------------------------------------------------------------------------------
    def read(self, name: str) -> Blob | None:
        check_name(name)
        errors = self._sdk.errors
        try:
            download = self._client.download_blob(name, timeout=self._timeout)
            data = download.readall()
        except errors.ResourceNotFoundError:
            return None
        except errors.AzureError as exc:
            raise self._lost("read", name, exc) from None
        props = download.properties
        return Blob(bytes(data), _quoted(props.etag), props.last_modified.timestamp())

    def write(self, name: str, data: bytes, *, if_match: str | None = None,
              if_none_match: bool = False) -> str:
        check_name(name)
        check_conditions(if_match, if_none_match)
        errors, match = self._sdk.errors, self._sdk.MatchConditions
        cond: dict[str, Any] = {}
        if if_match is not None:
            cond = {"etag": if_match, "match_condition": match.IfNotModified}
        elif if_none_match:
            cond = {"match_condition": match.IfMissing}
        blob = self._client.get_blob_client(name)
        for attempt in range(2):
            try:
                result = blob.upload_blob(bytes(data), overwrite=True, timeout=self._timeout,
                                          **cond)
                return _quoted(result["etag"])
            except errors.ResourceModifiedError:
                raise PreconditionFailed(f"blob {name!r} was changed by another writer "
                                         "or does not exist") from None
            except errors.ResourceExistsError as exc:
                if if_none_match:
                    raise PreconditionFailed(f"blob {name!r} exists already") from None
                raise self._lost("write", name, exc) from None
            except errors.ResourceNotFoundError as exc:
                if attempt == 0 and self._container_missing(exc):
                    self._create_container()
                    continue
                if if_match is not None:
                    raise PreconditionFailed(f"blob {name!r} does not exist") from None
                raise self._lost("write", name, exc) from None
            except errors.AzureError as exc:
                raise self._lost("write", name, exc) from None
        raise ConnectionLost(f"Azure Blob Storage {self.where}: write {name!r} failed: "
                             "the container vanished again after it was created")

    def delete(self, name: str, *, if_match: str | None = None) -> bool:
        check_name(name)
        errors, match = self._sdk.errors, self._sdk.MatchConditions
        cond: dict[str, Any] = {}
        if if_match is not None:
            cond = {"etag": if_match, "match_condition": match.IfNotModified}
        try:
            self._client.delete_blob(name, timeout=self._timeout, **cond)
        except errors.ResourceModifiedError:
            raise PreconditionFailed(f"blob {name!r} was changed by another writer "
                                     "or does not exist") from None
        except errors.ResourceNotFoundError:
            if if_match is not None:
                raise PreconditionFailed(f"blob {name!r} does not exist") from None
            return False
        except errors.AzureError as exc:
            raise self._lost("delete", name, exc) from None
        return True

    def list(self, prefix: str) -> list[BlobInfo]:
        errors = self._sdk.errors
        try:
            found = [BlobInfo(p.name, _quoted(p.etag), p.last_modified.timestamp())
                     for p in self._client.list_blobs(name_starts_with=prefix or None,
                                                      timeout=self._timeout)]
        except errors.ResourceNotFoundError as exc:
            if self._container_missing(exc):
                return []
            raise self._lost("list", prefix, exc) from None
        except errors.AzureError as exc:
            raise self._lost("list", prefix, exc) from None
        return sorted(found, key=lambda info: info.name)

    def close(self) -> None:
        self._client.close()
