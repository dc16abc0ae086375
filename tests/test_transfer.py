"""Re-hosting a Slack file at a provider (here JoggAI), against the fake Slack and JoggAI over real HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from bot.jobs.files import SlackFile
from bot.providers.base import ErrorKind, ProviderError
from bot.providers.jogg import JoggProvider
from bot.slack.transfer import Transfer, TransferError, is_slack_host
from tests.fakes.jogg_api import FakeJogg, Fault
from tests.fakes.slack_api import Download, FakeSlack
from tests.harness import free_port

MB = 1_000_000


def rehost(
    slack: FakeSlack,
    jogg: FakeJogg,
    file: SlackFile,
    *,
    token: str | None = None,
    slack_api_url: str | None = None,
    max_bytes: int = 50 * MB,
    timeout_s: float = 10.0,
    digests: list[str] | None = None,
) -> str:
    digests = [] if digests is None else digests

    async def go() -> str:
        client = JoggProvider(SecretStr(jogg.api_key), base_url=jogg.base_url)
        transfer = Transfer(
            slack_token=SecretStr(token or slack.bot_token),
            slack_api_url=slack_api_url or slack.api_url,
            max_bytes=max_bytes,
            timeout_s=timeout_s,
        )
        try:
            reference, digest = await transfer.rehost(file, client)
            digests.append(digest)
            return reference
        finally:
            await transfer.aclose()
            await client.aclose()

    return asyncio.run(go())


def add_file(slack: FakeSlack, file_id: str = "F1", name: str = "clip.mp4", **fields: Any) -> SlackFile:
    fields.setdefault("mimetype", "video/mp4")
    fields.setdefault("filetype", "mp4")
    file = SlackFile.from_slack(slack.add_file(file_id, name, **fields))
    assert file is not None
    return file


def transfer_error(slack: FakeSlack, jogg: FakeJogg, file: SlackFile, **options: Any) -> TransferError:
    with pytest.raises(TransferError) as caught:
        rehost(slack, jogg, file, **options)
    return caught.value


def upload_requests(jogg: FakeJogg) -> list[Any]:
    return [r.json for r in jogg.requests if r.path == "/v2/upload/asset"]


def test_bytes_arrive_intact_with_type_and_size_and_no_credential_leaks(
    slack: FakeSlack, jogg: FakeJogg
) -> None:
    content = os.urandom(3 * 256 * 1024 + 123)  # several chunks, the last one short
    file = add_file(slack, content=content)

    digests: list[str] = []
    asset_url = rehost(slack, jogg, file, digests=digests)

    upload = jogg.uploads[-1]
    assert upload.sha256 == hashlib.sha256(content).hexdigest()
    assert digests == [upload.sha256]  # hashed while streaming, for the result cache
    assert upload.size == len(content) == upload.declared_size
    assert upload_requests(jogg) == [
        {"filename": "clip.mp4", "content_type": "video/mp4", "file_size": len(content)}
    ]
    assert upload.headers["content-type"] == "video/mp4"
    assert upload.headers["content-length"] == str(len(content))
    assert "transfer-encoding" not in upload.headers
    # The API key stays off the storage host, the Slack token off JoggAI altogether.
    assert jogg.put_had_api_key is False
    assert "x-api-key" not in upload.headers
    assert jogg.authorization_headers_seen == []
    for request in jogg.requests:
        assert all(slack.bot_token not in value for value in request.headers.values())
    assert asset_url == f"{jogg.base_url}/assets/{upload.asset_id}/clip.mp4"
    assert not asset_url.startswith(slack.base_url)
    assert slack.downloads == [Download("/files-pri/T0TEST-F1/download/clip.mp4", True)]


def test_octet_stream_mp3_is_uploaded_as_audio_mpeg(slack: FakeSlack, jogg: FakeJogg) -> None:
    file = add_file(
        slack, name="voice.mp3", mimetype="application/octet-stream", filetype="mp3", content=b"ID3"
    )

    rehost(slack, jogg, file)

    assert upload_requests(jogg)[-1] == {
        "filename": "voice.mp3",
        "content_type": "audio/mpeg",
        "file_size": 3,
    }
    assert jogg.uploads[-1].content_type == "audio/mpeg"
    assert jogg.uploads[-1].headers["content-type"] == "audio/mpeg"


def test_storage_that_refuses_chunked_uploads_gets_a_content_length(slack: FakeSlack, jogg: FakeJogg) -> None:
    jogg.require_content_length = True
    content = os.urandom(300_000)
    file = add_file(slack, content=content)

    rehost(slack, jogg, file)

    assert jogg.uploads[-1].sha256 == hashlib.sha256(content).hexdigest()


@pytest.mark.parametrize("how", ["wrong token", "html served as the file"])
def test_sign_in_page_is_a_permanent_access_error_and_nothing_is_uploaded(
    slack: FakeSlack, jogg: FakeJogg, how: str
) -> None:
    if how == "wrong token":  # the fake answers HTTP 200 text/html, as Slack does
        file = add_file(slack, content=b"\x00\x00\x00\x18ftypmp42")
        error = transfer_error(slack, jogg, file, token="xoxb-wrong")
    else:  # a sign-in page whose Content-Type claims to be the file: caught by its first bytes
        file = add_file(slack, content=b"\n  <!DOCTYPE html><html><body>Sign in</body></html>")
        error = transfer_error(slack, jogg, file)

    assert (error.code, error.permanent) == ("slack_file_access", True)
    assert jogg.requests == []  # not even an upload request (it would cost one of 20 POSTs/min)
    assert jogg.uploads == []


def test_oversized_file_is_refused_before_any_request(slack: FakeSlack, jogg: FakeJogg) -> None:
    file = add_file(slack, content=b"x" * 2_500_000)

    error = transfer_error(slack, jogg, file, max_bytes=2 * MB)

    assert (error.code, error.permanent) == ("file_too_large", True)
    assert error.detail == "it is 2.5 MB; the limit is 2 MB"
    assert slack.downloads == []
    assert jogg.requests == []


def test_unknown_size_over_the_limit_is_refused_from_the_download_headers(
    slack: FakeSlack, jogg: FakeJogg
) -> None:
    file = dataclasses.replace(add_file(slack, content=b"x" * 2_500_000), size=0)  # Slack said nothing

    error = transfer_error(slack, jogg, file, max_bytes=2 * MB)

    assert error.code == "file_too_large"
    assert jogg.requests == []


def test_unknown_slack_size_takes_the_size_from_the_download(slack: FakeSlack, jogg: FakeJogg) -> None:
    content = os.urandom(70_000)
    file = dataclasses.replace(add_file(slack, content=content), size=0)

    rehost(slack, jogg, file)

    assert upload_requests(jogg)[-1]["file_size"] == len(content)
    assert jogg.uploads[-1].sha256 == hashlib.sha256(content).hexdigest()


def test_chunked_download_is_declared_with_slacks_file_size(slack: FakeSlack, jogg: FakeJogg) -> None:
    content = os.urandom(600_000)
    slack.chunked_downloads.add("F1")  # no Content-Length from Slack
    file = add_file(slack, size=len(content), content_factory=lambda: [content[:100_000], content[100_000:]])

    rehost(slack, jogg, file)

    assert jogg.uploads[-1].size == jogg.uploads[-1].declared_size == len(content)
    assert jogg.uploads[-1].sha256 == hashlib.sha256(content).hexdigest()


@pytest.mark.parametrize("how", ["connection closed", "connection stalls"])
def test_truncated_download_is_transient_and_never_uploaded_as_complete(
    slack: FakeSlack, jogg: FakeJogg, how: str
) -> None:
    declared = 1_000_000
    if how == "connection closed":
        slack.cut_downloads.add("F1")
    # Otherwise the fake keeps the connection open after the short body: the read times out.
    file = add_file(slack, size=declared, content_factory=lambda: [b"v" * 600_000])

    error = transfer_error(slack, jogg, file, timeout_s=0.5)

    assert (error.code, error.permanent) == ("slack_download", False)
    assert "of 1000000 bytes" in error.detail
    assert len(upload_requests(jogg)) == 1  # the PUT was started, then aborted mid-body
    assert jogg.uploads == []


def test_body_longer_than_announced_is_never_uploaded(slack: FakeSlack, jogg: FakeJogg) -> None:
    slack.chunked_downloads.add("F1")
    file = add_file(slack, size=300_000, content_factory=lambda: [b"v" * 200_000, b"w" * 200_000])

    error = transfer_error(slack, jogg, file)

    assert (error.code, error.permanent) == ("slack_download", False)
    assert jogg.uploads == []


def test_redirect_within_slack_keeps_the_token(slack: FakeSlack, jogg: FakeJogg) -> None:
    content = os.urandom(10_000)
    file = add_file(slack, content=content)
    url = file.url
    for _ in range(5):  # the most hops allowed
        url = slack.add_redirect(url)

    rehost(slack, jogg, dataclasses.replace(file, url=url))

    assert jogg.uploads[-1].sha256 == hashlib.sha256(content).hexdigest()
    assert len(slack.downloads) == 6 and all(d.had_valid_token for d in slack.downloads)


def test_too_many_redirects_is_a_download_error(slack: FakeSlack, jogg: FakeJogg) -> None:
    file = add_file(slack, content=b"data")
    url = file.url
    for _ in range(6):
        url = slack.add_redirect(url)

    error = transfer_error(slack, jogg, dataclasses.replace(file, url=url))

    assert error.code == "slack_download"
    assert len(slack.downloads) == 6  # the file itself was never requested
    assert jogg.requests == []


@pytest.fixture
def other_host() -> Iterator[FakeSlack]:
    """Another origin serving the same file to the same token: it would hand the file to a leaked token."""
    with FakeSlack() as server:
        yield server


def test_redirect_to_another_host_never_carries_the_token(
    slack: FakeSlack, jogg: FakeJogg, other_host: FakeSlack
) -> None:
    foreign = add_file(other_host, content=b"\x00\x00\x00\x18ftypmp42")
    file = add_file(slack, content=b"unused")

    error = transfer_error(slack, jogg, dataclasses.replace(file, url=slack.add_redirect(foreign.url)))

    assert slack.downloads[0].had_valid_token  # the first hop, on Slack, had it
    assert other_host.downloads == [Download("/files-pri/T0TEST-F1/download/clip.mp4", False)]
    assert error.code == "slack_file_access"  # the foreign host answered its sign-in page
    assert jogg.requests == []

    # A redirect straight to JoggAI's host: JoggAI records any Authorization header it receives.
    with pytest.raises(TransferError):
        rehost(
            slack, jogg, dataclasses.replace(file, url=slack.add_redirect(f"{jogg.base_url}/assets/x/y.mp4"))
        )
    assert jogg.authorization_headers_seen == []


@pytest.mark.parametrize(
    "change",
    [
        {"external": True},
        {"url": ""},
        {"url": "https://files.example.com/files-pri/T0TEST-F1/download/clip.mp4"},
    ],
)
def test_files_not_stored_in_slack_are_refused_without_a_request(
    slack: FakeSlack, jogg: FakeJogg, change: dict[str, Any]
) -> None:
    file = dataclasses.replace(add_file(slack, content=b"data"), **change)

    error = transfer_error(slack, jogg, file)

    assert (error.code, error.permanent) == ("external_file", True)
    assert slack.downloads == []
    assert jogg.requests == []


def test_deleted_file_is_missing(slack: FakeSlack, jogg: FakeJogg) -> None:
    file = add_file(slack, content=b"data")
    gone = dataclasses.replace(file, url=file.url.replace("T0TEST-F1", "T0TEST-F9"))

    error = transfer_error(slack, jogg, gone)

    assert (error.code, error.permanent) == ("slack_file_missing", True)
    assert jogg.requests == []


def test_empty_file_has_nothing_to_rehost(slack: FakeSlack, jogg: FakeJogg) -> None:
    error = transfer_error(slack, jogg, add_file(slack, content=b""))

    assert (error.code, error.permanent) == ("empty_file", True)
    assert jogg.requests == []


def test_unreachable_slack_is_transient(slack: FakeSlack, jogg: FakeJogg) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    file = SlackFile(
        "F1", "clip.mp4", "video/mp4", "mp4", 10, f"{dead}/files-pri/T0TEST-F1/download/clip.mp4"
    )

    error = transfer_error(slack, jogg, file, slack_api_url=f"{dead}/api/")

    assert (error.code, error.permanent) == ("slack_download", False)


@pytest.mark.parametrize("status", [500, 403])
def test_storage_errors_are_transient_joggai_errors(slack: FakeSlack, jogg: FakeJogg, status: int) -> None:
    jogg.inject("put", Fault("http", status=status))
    file = add_file(slack, content=os.urandom(50_000))

    with pytest.raises(ProviderError) as caught:
        rehost(slack, jogg, file)

    assert caught.value.kind is ErrorKind.TRANSIENT
    assert str(status) in str(caught.value)
    if status == 403:
        assert "refused the upload" in str(caught.value)
    assert jogg.uploads == []


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault("code", code=429), ErrorKind.RATE_LIMITED),
        (Fault("code", code=18020), ErrorKind.ADMIN),
        (Fault("malformed_json"), ErrorKind.TRANSIENT),
        (Fault("http", status=502), ErrorKind.TRANSIENT),
    ],
)
def test_upload_request_errors_are_classified_like_every_joggai_call(
    slack: FakeSlack, jogg: FakeJogg, fault: Fault, kind: ErrorKind
) -> None:
    jogg.inject("upload", fault)
    file = add_file(slack, content=b"data")

    with pytest.raises(ProviderError) as caught:
        rehost(slack, jogg, file)

    assert caught.value.kind is kind
    assert jogg.uploads == []


API = "http://127.0.0.1:8123/api/"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://files.slack.com/files-pri/T1-F1/download/a.mp4", True),
        ("https://files-origin.slack.com/files-pri/T1-F1/a.mp4", True),
        ("https://slack.com/files-pri/T1-F1/a.mp4", True),
        ("https://FILES.Slack.COM/x", True),  # host names are case-insensitive
        ("https://files.slack.com:443/x", True),
        ("http://127.0.0.1:8123/files-pri/T1-F1/a.mp4", True),  # the configured API origin
        ("https://evilslack.com/x", False),
        ("https://slack.com.evil.io/x", False),
        ("https://slack.com@evil.io/x", False),  # userinfo, not the host
        ("https://files.slack.com:8443/x", False),
        ("http://slack.com/x", False),  # clear text: the token would be readable on the wire
        ("http://files.slack.com/x", False),
        ("https://slack-files.com/T1-F1-abc", False),
        ("http://127.0.0.1:8124/x", False),  # another port on the same machine
        ("https://127.0.0.1:8123/x", False),  # another scheme
        ("http://localhost:8123/x", False),
        ("not a url", False),
        ("", False),
    ],
)
def test_is_slack_host(url: str, expected: bool) -> None:
    assert is_slack_host(url, API) is expected


def test_default_api_url_origin_is_slack() -> None:
    assert is_slack_host("https://slack.com/api/files.info", "https://slack.com/api/")
    assert not is_slack_host("https://example.com/x", "https://slack.com/api/")
