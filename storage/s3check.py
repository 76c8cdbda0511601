"""The start-up check of an S3 bucket: one clear line for each way a configuration goes wrong."""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)

from jayavatar.errors import Misconfigured

# S3 refuses requests signed more than 15 minutes away from its clock.
MAX_SKEW_S = 15 * 60
MISSING = ("NoSuchKey", "404", "NotFound", "NoSuchBucket")
CREDENTIALS = (
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "403",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
    "InvalidClientTokenId",
)


@dataclass(frozen=True)
class S3Config:
    """Where the bucket is and how to sign requests to it."""

    endpoint_url: str
    bucket: str
    region: str
    access_key_id: str
    secret_access_key: str
    prefix: str = ""
    addressing_style: str = "path"


def is_missing(exc: ClientError) -> bool:
    """Tell whether an error says the key (or bucket) does not exist."""
    return str(exc.response.get("Error", {}).get("Code", "")) in MISSING


def check_bucket(client: Any, config: S3Config, prefix: str) -> None:
    """List one key of the bucket; raise `Misconfigured` naming the setting to fix if that fails."""
    where = config.endpoint_url or "AWS S3"
    try:
        answer = client.list_objects_v2(Bucket=config.bucket, Prefix=prefix, MaxKeys=1)
    except EndpointConnectionError:
        raise Misconfigured(
            f"cannot reach the object store at {where}; check JAYAVATAR_S3_ENDPOINT_URL"
        ) from None
    except NoCredentialsError:
        raise Misconfigured(
            "no object store credentials; set JAYAVATAR_S3_ACCESS_KEY_ID and "
            "JAYAVATAR_S3_SECRET_ACCESS_KEY"
        ) from None
    except ClientError as exc:
        raise Misconfigured(_refusal(exc, config, where)) from None
    except BotoCoreError as exc:
        raise Misconfigured(f"cannot use the object store at {where}: {_short(exc)}") from None
    _check_clock(answer, where)


def _refusal(exc: ClientError, config: S3Config, where: str) -> str:
    code = str(exc.response.get("Error", {}).get("Code", "unknown"))
    if code == "RequestTimeTooSkewed":
        return (
            f"the object store at {where} refused this host's clock as too far off; "
            "set the clock right (e.g. enable NTP)"
        )
    if code in ("NoSuchBucket", "404"):
        return (
            f"the bucket {config.bucket!r} does not exist at {where}; create it or fix "
            "JAYAVATAR_S3_BUCKET"
        )
    if code in CREDENTIALS:
        return (
            f"the object store at {where} refused the credentials for bucket "
            f"{config.bucket!r} ({code}); check JAYAVATAR_S3_ACCESS_KEY_ID and "
            "JAYAVATAR_S3_SECRET_ACCESS_KEY"
        )
    return f"the object store at {where} refused to list bucket {config.bucket!r}: {code}"


def _check_clock(answer: dict[str, Any], where: str) -> None:
    """Refuse a host whose clock is off by more than S3 accepts, before a request fails on it."""
    date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if not date:
        return
    try:
        skew = abs(parsedate_to_datetime(date).timestamp() - time.time())
    except (TypeError, ValueError):
        return
    if skew > MAX_SKEW_S:
        raise Misconfigured(
            f"this host's clock is {skew:.0f} s away from the object store's at {where}; "
            "set the clock right (e.g. enable NTP)"
        )


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
