"""The SigV4 signer (ltx/store/sigv4.py) against AWS's published S3 examples and against
botocore's S3SigV4Auth on random requests."""

from __future__ import annotations

import calendar
import hashlib
import hmac
import time
from urllib.parse import quote

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials as BotoCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from ltx.store.sigv4 import UNSIGNED_PAYLOAD, Credentials, Signer, canonical_query, encode_path, hmac_sha256

#: The example identity and moment of AWS's "Examples: Signature Calculations in AWS Signature
#: Version 4" (Amazon S3 API reference, header-based authentication).
EXAMPLE = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
EXAMPLE_TIME = calendar.timegm((2013, 5, 24, 0, 0, 0))
EXAMPLE_HOST = "examplebucket.s3.amazonaws.com"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def signature(headers: dict[str, str]) -> str:
    return headers["authorization"].rsplit("Signature=", 1)[1]


def test_aws_example_get_object() -> None:
    headers = Signer(EXAMPLE, "us-east-1").headers(
        "GET", EXAMPLE_HOST, "/test.txt", "", now=EXAMPLE_TIME,
        signed={"range": "bytes=0-9", "x-amz-content-sha256": EMPTY_SHA256})
    assert "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date," in headers["authorization"]
    assert signature(headers) == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"


def test_aws_example_put_object() -> None:
    body = b"Welcome to Amazon S3."
    headers = Signer(EXAMPLE, "us-east-1").headers(
        "PUT", EXAMPLE_HOST, encode_path("/test$file.text"), "", now=EXAMPLE_TIME,
        signed={"date": "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY",
                "x-amz-content-sha256": hashlib.sha256(body).hexdigest()})
    assert signature(headers) == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"


def test_aws_example_get_bucket_lifecycle_and_list_objects() -> None:
    signer = Signer(EXAMPLE, "us-east-1")
    lifecycle = signer.headers("GET", EXAMPLE_HOST, "/", canonical_query({"lifecycle": ""}), now=EXAMPLE_TIME,
                               signed={"x-amz-content-sha256": EMPTY_SHA256})
    assert signature(lifecycle) == "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
    listing = signer.headers("GET", EXAMPLE_HOST, "/", canonical_query({"max-keys": "2", "prefix": "J"}),
                             now=EXAMPLE_TIME, signed={"x-amz-content-sha256": EMPTY_SHA256})
    assert signature(listing) == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"


def test_changed_credentials_are_used_at_the_next_request() -> None:
    current = [EXAMPLE]
    signer = Signer(lambda: current[0], "us-east-1")
    first = signer.headers("GET", EXAMPLE_HOST, "/k", "", now=EXAMPLE_TIME)
    current[0] = Credentials("AKIDOTHERKEY", "another-secret", "a-session-token")
    second = signer.headers("GET", EXAMPLE_HOST, "/k", "", now=EXAMPLE_TIME)
    assert signature(first) != signature(second)
    assert second["x-amz-security-token"] == "a-session-token" and "AKIDOTHERKEY/" in second["authorization"]
    assert signature(second) == signature(Signer(current[0], "us-east-1").headers(
        "GET", EXAMPLE_HOST, "/k", "", now=EXAMPLE_TIME))


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=20)
_VALUE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    method=st.sampled_from(["GET", "HEAD", "PUT", "DELETE"]),
    bucket=st.from_regex(r"[a-z0-9][a-z0-9-]{2,20}", fullmatch=True),
    key=st.lists(_TEXT, min_size=1, max_size=4).map("/".join),
    query=st.dictionaries(st.sampled_from(["list-type", "prefix", "start-after", "max-keys",
                                           "continuation-token"]), _TEXT, max_size=4),
    meta=st.dictionaries(st.from_regex(r"x-amz-meta-[a-z0-9-]{1,12}", fullmatch=True), _VALUE, max_size=3),
    byte_range=st.none() | st.builds(lambda a, b: f"bytes={a}-{a + b}", st.integers(0, 10**9),
                                     st.integers(0, 10**6)),
    body=st.binary(max_size=64),
    token=st.none() | _VALUE,
    region=st.sampled_from(["us-east-1", "eu-west-3", "ap-southeast-2"]),
    port=st.none() | st.integers(1, 65535),
)
def test_matches_botocore(method: str, bucket: str, key: str, query: dict[str, str], meta: dict[str, str],
                          byte_range: str | None, body: bytes, token: str | None, region: str,
                          port: int | None) -> None:
    creds = Credentials("AKIDRANDOMTEST", "secret/with+chars=", token)
    host = f"{bucket}.s3.{region}.amazonaws.com" + (f":{port}" if port else "")
    path = encode_path("/" + key)
    qs = canonical_query(query)
    signed: dict[str, str] = dict(meta)
    if byte_range:
        signed["range"] = byte_range
    put = method == "PUT"
    if put:
        signed["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    # botocore hashes the payload (a PUT's, as ours) or leaves it unsigned (as ours for the rest).
    url = f"https://{host}{path}" + (f"?{qs}" if qs else "")
    request = AWSRequest(method=method, url=url, data=body if put else None,
                         headers={k: v for k, v in signed.items() if k != "x-amz-content-sha256"})
    request.context["client_config"] = Config(s3={"payload_signing_enabled": put})
    request.headers["host"] = host
    S3SigV4Auth(BotoCredentials(creds.access_key, creds.secret_key, creds.token), "s3", region).add_auth(request)
    stamp = request.headers["X-Amz-Date"]
    ours = Signer(creds, region).headers(method, host, path, qs, signed=signed,
                                         now=calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ")))
    assert request.headers["X-Amz-Content-SHA256"] == (signed["x-amz-content-sha256"] if put else UNSIGNED_PAYLOAD)
    assert ours["authorization"].replace(", ", ",") == request.headers["Authorization"].replace(", ", ",")
    assert quote("/" + key, safe="/~") == path  # the path sent is the canonical one


@pytest.mark.parametrize("key_length", [0, 1, 32, 63, 64, 65, 200])
def test_hmac_sha256_is_the_standard_hmac(key_length: int) -> None:
    """The signer's HMAC (no hashlib, hence no OpenSSL loaded before a first request) is RFC 2104's."""
    key = bytes(i % 256 for i in range(key_length))
    for message in (b"", b"abc", bytes(1000)):
        assert hmac_sha256(key, message) == hmac.new(key, message, hashlib.sha256).digest()
