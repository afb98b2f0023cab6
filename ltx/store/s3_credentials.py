"""Where an S3 store's credentials, region and CA bundle come from.

The environment first, read without botocore (its import and session cost ~250 ms, most of a
cold open): `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (`AWS_SESSION_TOKEN` optional), each
falling back to `LITESTREAM_ACCESS_KEY_ID` / `LITESTREAM_SECRET_ACCESS_KEY` as the litestream
binary does (s3/replica_client.go reads the AWS variable, then the LITESTREAM one). Otherwise
botocore's credential chain (profiles, SSO, container and instance roles), loaded on first use;
its credentials may be temporary, so they are asked for at every request.

The region: the URL's, then `AWS_REGION` / `AWS_DEFAULT_REGION`, then the AWS profile's (botocore
is loaded for that only when an AWS config file exists), then Litestream's default us-east-1.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ltx.store.base import StoreAuthError
from ltx.store.sigv4 import Credentials

#: Region when neither the URL nor the AWS configuration names one (Litestream's default).
DEFAULT_REGION = "us-east-1"
#: Environment variables for the key pair, in the order they are looked at.
ACCESS_KEY_VARIABLES = ("AWS_ACCESS_KEY_ID", "LITESTREAM_ACCESS_KEY_ID")
SECRET_KEY_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "LITESTREAM_SECRET_ACCESS_KEY")
NO_CREDENTIALS = ("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                  "(or LITESTREAM_ACCESS_KEY_ID and LITESTREAM_SECRET_ACCESS_KEY) or configure an AWS profile")

CredentialSource = Callable[[], Credentials]
T = TypeVar("T")


def _first(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def env_credentials() -> Credentials | None:
    """The key pair from the environment, or None."""
    access, secret = _first(ACCESS_KEY_VARIABLES), _first(SECRET_KEY_VARIABLES)
    if not access or not secret:
        return None
    return Credentials(access, secret, os.environ.get("AWS_SESSION_TOKEN") or None)


def env_region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def ca_bundle() -> str | None:
    """The CA bundle botocore would use from the environment (`AWS_CA_BUNDLE`), or None."""
    return os.environ.get("AWS_CA_BUNDLE") or None


def _aws_config_exists() -> bool:
    path = os.environ.get("AWS_CONFIG_FILE") or str(Path.home() / ".aws" / "config")
    return Path(path).expanduser().is_file()


def resolve_region(region: str | None, url: str = "") -> str:
    """The region to sign for (see the module docstring); StoreAuthError for a broken profile."""
    region = region or env_region()
    if region is None and _aws_config_exists():
        from ltx.store import s3_session  # botocore: only when a profile may name the region

        region = _from_botocore(url, s3_session.config_region)
    return region or DEFAULT_REGION


def resolve_credentials(url: str) -> tuple[CredentialSource, bool]:
    """A source of the current credentials, and whether they came from the environment (False:
    botocore's chain, which a multipart upload's client then resolves again itself).
    StoreAuthError when there are none."""
    found = env_credentials()
    if found is not None:
        fixed = found
        return (lambda: fixed), True
    from ltx.store import s3_session  # the chain: profiles, SSO, roles

    chain: Any = _from_botocore(url, s3_session.credentials)
    if chain is None:
        raise StoreAuthError(url, "", NO_CREDENTIALS)

    def current() -> Credentials:
        frozen = _from_botocore(url, chain.get_frozen_credentials)
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token or None)

    return current, False


def _from_botocore(url: str, call: Callable[[], T]) -> T:
    """`call()`, with botocore's configuration and credential errors (a missing profile, an
    expired SSO session, a role that cannot be assumed) as StoreAuthError."""
    import botocore.exceptions

    try:
        return call()
    except botocore.exceptions.BotoCoreError as exc:
        raise StoreAuthError(url, "", f"AWS configuration: {type(exc).__name__}: {exc}") from exc


__all__ = ["DEFAULT_REGION", "CredentialSource", "ca_bundle", "env_credentials", "env_region",
           "resolve_credentials", "resolve_region"]
