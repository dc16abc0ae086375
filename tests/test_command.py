from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from bot.parsing.command import (
    DEFAULT_PLAYBACK_TYPE,
    MAX_TEXT_LENGTH,
    MAX_URL_LENGTH,
    PLAYBACK_TYPES,
    BudgetCommand,
    InvalidCommand,
    LipSyncRequest,
    parse_lipsync_text,
    public_url_problem,
)

VIDEO = "https://cdn.example.com/v.mp4"
AUDIO = "https://cdn.example.com/a.mp3"


def refusal(text: str) -> str:
    with pytest.raises(InvalidCommand) as excinfo:
        parse_lipsync_text(text)
    reason = excinfo.value.reason
    assert reason
    assert str(excinfo.value) == reason
    return reason


# --- public API shape -------------------------------------------------------------------------------


def test_constants() -> None:
    assert PLAYBACK_TYPES == ("normal", "normal_reverse", "normal_reverse_by_audio")
    assert DEFAULT_PLAYBACK_TYPE == "normal"
    assert MAX_TEXT_LENGTH == 2000
    assert MAX_URL_LENGTH == 2048


def test_request_is_frozen_with_default_playback() -> None:
    request = LipSyncRequest(VIDEO, AUDIO)
    assert request.playback_type == "normal"
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.video_url = AUDIO  # type: ignore[misc]


def test_invalid_command_is_value_error_with_reason() -> None:
    error = InvalidCommand("Nope.")
    assert isinstance(error, ValueError)
    assert error.reason == "Nope."


# --- accepted forms ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{VIDEO} {AUDIO}", LipSyncRequest(VIDEO, AUDIO, "normal")),
        (f"<{VIDEO}> <{AUDIO}>", LipSyncRequest(VIDEO, AUDIO)),
        (f"<{VIDEO}|cdn.example.com/v.mp4> <{AUDIO}|my audio file>", LipSyncRequest(VIDEO, AUDIO)),
        (f"<{VIDEO}> {AUDIO}", LipSyncRequest(VIDEO, AUDIO)),
        (
            "<https://cdn.example.com/v.mp4?x=1&amp;y=2|v> https://cdn.example.com/a.mp3?sig=a&amp;exp=9",
            LipSyncRequest(
                "https://cdn.example.com/v.mp4?x=1&y=2", "https://cdn.example.com/a.mp3?sig=a&exp=9"
            ),
        ),
        (f"{VIDEO} {AUDIO} normal", LipSyncRequest(VIDEO, AUDIO, "normal")),
        (f"{VIDEO} {AUDIO} normal_reverse", LipSyncRequest(VIDEO, AUDIO, "normal_reverse")),
        (f"{VIDEO} {AUDIO} NORMAL_REVERSE_BY_AUDIO", LipSyncRequest(VIDEO, AUDIO, "normal_reverse_by_audio")),
        (f"{VIDEO} {AUDIO} Normal_Reverse", LipSyncRequest(VIDEO, AUDIO, "normal_reverse")),
        (f"\t{VIDEO}\n\n{AUDIO}\t \r\nnormal_reverse  ", LipSyncRequest(VIDEO, AUDIO, "normal_reverse")),
        (f"{VIDEO}\u00a0{AUDIO}", LipSyncRequest(VIDEO, AUDIO)),
        (f"{VIDEO} {VIDEO}", LipSyncRequest(VIDEO, VIDEO)),
        (
            "http://93.184.216.34/v.mp4 https://[2606:4700::1111]/a.wav",
            LipSyncRequest("http://93.184.216.34/v.mp4", "https://[2606:4700::1111]/a.wav"),
        ),
    ],
)
def test_accepted(text: str, expected: LipSyncRequest) -> None:
    assert parse_lipsync_text(text) == expected


def test_accepted_url_is_returned_unchanged() -> None:
    video = "HTTPS://CDN.Example.com:8443/Path/To%20Clip.MP4?A=1&b=%2F#frag"
    audio = "http://cdn.example.com./a.wav"
    request = parse_lipsync_text(f"<{video.replace('&', '&amp;')}> {audio}")
    assert request == LipSyncRequest(video, audio)


def test_text_at_max_length_is_accepted() -> None:
    padding = " " * (MAX_TEXT_LENGTH - len(VIDEO) - len(AUDIO) - 1)
    text = f"{VIDEO} {AUDIO}{padding}"
    assert len(text) == MAX_TEXT_LENGTH
    assert parse_lipsync_text(text) == LipSyncRequest(VIDEO, AUDIO)


# --- help ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["", " ", "\t\n ", "help", "HELP", "Help", " help ", "-h", "--help", "?", "--HELP", "help me"]
)
def test_help(text: str) -> None:
    assert parse_lipsync_text(text) is None


# --- refusals -----------------------------------------------------------------------------------------


def test_too_long_text_is_checked_first() -> None:
    # Would otherwise be help (whitespace only); the length check must win.
    reason = refusal(" " * (MAX_TEXT_LENGTH + 1))
    assert "2,000" in reason or "2000" in reason


def test_too_long_text_with_urls() -> None:
    reason = refusal(f"{VIDEO} {AUDIO} " + "x" * MAX_TEXT_LENGTH)
    assert "2,000" in reason or "2000" in reason


@pytest.mark.parametrize("text", [VIDEO, f"<{VIDEO}>", f"{VIDEO} normal_reverse"])
def test_missing_audio(text: str) -> None:
    reason = refusal(text)
    assert "audio" in reason.lower()
    assert "missing" in reason.lower()


@pytest.mark.parametrize(
    ("text", "word", "which"),
    [
        (f"foo {AUDIO}", "foo", "video"),
        ("foo", "foo", "video"),
        (f"{VIDEO} bar", "bar", "audio"),
        (f"cdn.example.com/v.mp4 {AUDIO}", "cdn.example.com/v.mp4", "video"),
        (f"{VIDEO} mailto:a@example.com", "mailto:a@example.com", "audio"),
        (f"<@U123ABC> {AUDIO}", "@U123ABC", "video"),
    ],
)
def test_word_where_url_expected(text: str, word: str, which: str) -> None:
    reason = refusal(text)
    assert f"`{word}`" in reason
    assert "not a link" in reason
    assert which in reason


@pytest.mark.parametrize("word", ["fast", "reverse", "normal-reverse"])
def test_unknown_playback_type_lists_valid_ones(word: str) -> None:
    reason = refusal(f"{VIDEO} {AUDIO} {word}")
    assert f"`{word}`" in reason
    for playback_type in PLAYBACK_TYPES:
        assert f"`{playback_type}`" in reason


def test_third_link_is_refused() -> None:
    reason = refusal(f"{VIDEO} {AUDIO} https://cdn.example.com/extra.mp4")
    assert "https://cdn.example.com/extra.mp4" in reason


@pytest.mark.parametrize(
    ("text", "word"),
    [
        (f"{VIDEO} {AUDIO} normal please", "please"),
        (f"{VIDEO} {AUDIO} normal_reverse x y z", "x"),
        (f"{VIDEO} {AUDIO} normal {VIDEO}", VIDEO),
    ],
)
def test_extra_words_name_the_first(text: str, word: str) -> None:
    reason = refusal(text)
    assert f"`{word}`" in reason


@pytest.mark.parametrize(
    ("text", "which", "mention"),
    [
        (f"ftp://cdn.example.com/v.mp4 {AUDIO}", "video", "ftp"),
        (f"{VIDEO} http://localhost/a.mp3", "audio", "localhost"),
        (f"<https://files.slack.com/files-pri/T1-F1/v.mp4> {AUDIO}", "video", "Slack"),
        (f"{VIDEO} <http://10.0.0.1/a.mp3|a.mp3>", "audio", "10.0.0.1"),
    ],
)
def test_url_problems_surface_as_invalid_command(text: str, which: str, mention: str) -> None:
    reason = refusal(text)
    assert f"{which} link" in reason
    assert mention in reason


def test_user_text_cannot_inject_slack_markup() -> None:
    reason = refusal(f"{VIDEO} {AUDIO} &lt;!channel&gt;`x`")
    assert "<!channel>" not in reason
    assert "&lt;!channel&gt;" in reason
    assert reason.count("`") % 2 == 0


def test_echoed_words_are_truncated() -> None:
    reason = refusal("z" * 500)
    assert "z" * 100 not in reason


# --- public_url_problem: accepted -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example.com/a.mp4?x=1&y=2",
        "http://93.184.216.34/v.mp4",
        "https://[2606:4700::1111]/a.wav",
        "https://[::ffff:93.184.216.34]/a.wav",
        "HTTPS://CDN.EXAMPLE.COM/A.MP4",
        "https://cdn.example.com:8443/a.mp4",
        "https://cdn.example.com./a.mp4",
        "https://my_bucket.s3.amazonaws.com/a.mp4",
        "https://bücher.example/a.mp4",
        "https://notslack.com/a.mp4",
        "https://slack.com.example.com/a.mp4",
        "https://123.example.com/a.mp4",
        "https://example.com/" + "a" * (MAX_URL_LENGTH - len("https://example.com/")),
    ],
)
def test_public_urls_pass(url: str) -> None:
    assert public_url_problem(url) is None


# --- public_url_problem: refused ------------------------------------------------------------------


def assert_refused(url: str, *mentions: str) -> str:
    problem = public_url_problem(url)
    assert problem is not None, url
    for mention in mentions:
        assert mention in problem, (url, problem)
    return problem


def test_too_long_url() -> None:
    url = "https://example.com/" + "a" * (MAX_URL_LENGTH + 1 - len("https://example.com/"))
    assert len(url) == MAX_URL_LENGTH + 1
    problem = assert_refused(url)
    assert "2,048" in problem or "2048" in problem


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("ftp://example.com/v.mp4", "ftp"),
        ("file:///etc/passwd", "file"),
        ("gopher://example.com/x", "gopher"),
        ("javascript:alert(1)", "javascript"),
        ("s3://bucket/v.mp4", "s3"),
        ("data:audio/wav;base64,AAAA", "data"),
    ],
)
def test_other_schemes(url: str, scheme: str) -> None:
    problem = assert_refused(url, f"`{scheme}`")
    assert "http" in problem


def test_missing_scheme() -> None:
    assert_refused("example.com/v.mp4", "https://")


@pytest.mark.parametrize(
    "url", ["http:///v.mp4", "https://", "http://:80/v.mp4", "http://./v.mp4", "http:v.mp4"]
)
def test_no_host(url: str) -> None:
    problem = public_url_problem(url)
    assert problem is not None
    assert "host" in problem


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2@example.com/v.mp4",
        "https://user@example.com/v.mp4",
        "https://:hunter2@example.com/v.mp4",
        "https://example.com@127.0.0.1/v.mp4",
    ],
)
def test_credentials(url: str) -> None:
    problem = assert_refused(url, "password")
    assert "hunter2" not in problem


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/a b.mp4",
        "https://example.com/a\tb.mp4",
        "https://exam\nple.com/a.mp4",
        "https://example.com/a.mp4\r",
        "https://example.com/\x00a.mp4",
        "https://example.com/\x7fa.mp4",
        "https://example.com/\u200ba.mp4",
        "https://example.com/\u202ea.mp4",
        " https://example.com/a.mp4",
    ],
)
def test_whitespace_and_control_characters(url: str) -> None:
    assert_refused(url, "control characters")


def test_backslash() -> None:
    assert_refused("http://localhost\\@example.com/a.mp4", "backslash")


def test_bad_port() -> None:
    assert_refused("https://example.com:99999/a.mp4", "port")
    assert_refused("https://example.com:http/a.mp4", "port")


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://localhost/v.mp4", "localhost"),
        ("http://localhost:8080/v.mp4", "localhost"),
        ("http://LOCALHOST/v.mp4", "localhost"),
        ("http://localhost./v.mp4", "localhost."),
        ("http://api.localhost/v.mp4", "api.localhost"),
        ("http://FOO.LOCAL/v.mp4", "foo.local"),
        ("http://printer.local./v.mp4", "printer.local."),
        ("http://metadata.google.internal/v.mp4", "metadata.google.internal"),
        ("http://box.localdomain/v.mp4", "box.localdomain"),
        ("http://nas.lan/v.mp4", "nas.lan"),
        ("http://router.home.arpa/v.mp4", "router.home.arpa"),
        ("http://wiki.intranet/v.mp4", "wiki.intranet"),
        ("http://files.acme.corp/v.mp4", "files.acme.corp"),
        ("http://fileserver/x.mp4", "fileserver"),
        ("http://fileserver./x.mp4", "fileserver."),
        ("http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/x.mp4", ""),  # full-width "localhost"
        ("http://localhost\u3002/x.mp4", ""),  # ideographic full stop
        ("http://nas\u3002lan/x.mp4", ""),
        ("http://nas.\uff4c\uff41\uff4e/x.mp4", ""),  # full-width "lan"
        ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/x.mp4", ""),  # full-width 127.0.0.1
    ],
)
def test_non_public_names(url: str, host: str) -> None:
    problem = assert_refused(url, f"`{host}" if host else "")
    assert "public" in problem


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://10.0.0.1/v.mp4", "10.0.0.1"),
        ("http://172.16.0.1/v.mp4", "172.16.0.1"),
        ("http://192.168.1.1/v.mp4", "192.168.1.1"),
        ("http://127.0.0.1/v.mp4", "127.0.0.1"),
        ("http://127.0.0.1:8000/v.mp4", "127.0.0.1"),
        ("http://127.0.0.1./v.mp4", "127.0.0.1."),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://100.64.0.1/v.mp4", "100.64.0.1"),
        ("http://0.0.0.0/v.mp4", "0.0.0.0"),
        ("http://224.0.0.1/v.mp4", "224.0.0.1"),
        ("http://240.0.0.1/v.mp4", "240.0.0.1"),
        ("http://255.255.255.255/v.mp4", "255.255.255.255"),
        ("http://192.0.2.1/v.mp4", "192.0.2.1"),
        ("http://[::1]/v.mp4", "::1"),
        ("http://[::1]:8080/v.mp4", "::1"),
        ("http://[::]/v.mp4", "::"),
        ("http://[::ffff:127.0.0.1]/v.mp4", "::ffff:127.0.0.1"),
        ("http://[::ffff:7f00:1]/v.mp4", "::ffff:7f00:1"),
        ("http://[::ffff:10.0.0.1]/v.mp4", "::ffff:10.0.0.1"),
        ("http://[::7f00:1]/v.mp4", "::7f00:1"),
        ("http://[64:ff9b::a9fe:a9fe]/v.mp4", "64:ff9b::a9fe:a9fe"),
        ("http://[2002:7f00:1::]/v.mp4", "2002:7f00:1::"),
        ("http://[fe80::1]/v.mp4", "fe80::1"),
        ("http://[fe80::1%25eth0]/v.mp4", "fe80::1%25eth0"),
        ("http://[fc00::1]/v.mp4", "fc00::1"),
        ("http://[fd12:3456::1]/v.mp4", "fd12:3456::1"),
        ("http://[ff02::1]/v.mp4", "ff02::1"),
        ("http://[2001:db8::1]/v.mp4", "2001:db8::1"),
    ],
)
def test_non_public_ip_literals(url: str, host: str) -> None:
    problem = assert_refused(url, f"`{host}`")
    assert "public" in problem


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://2130706433/v.mp4", "2130706433"),
        ("http://0x7f000001/v.mp4", "0x7f000001"),
        ("http://0x7f.0.0.1/v.mp4", "0x7f.0.0.1"),
        ("http://0X7F.0.0.1/v.mp4", "0x7f.0.0.1"),
        ("http://0177.0.0.1/v.mp4", "0177.0.0.1"),
        ("http://127.1/v.mp4", "127.1"),
        ("http://127.0.1/v.mp4", "127.0.1"),
        ("http://10.1/v.mp4", "10.1"),
        ("http://0/v.mp4", "0"),
        ("http://1.2.3.4.5/v.mp4", "1.2.3.4.5"),
        ("http://256.1.1.1/v.mp4", "256.1.1.1"),
        ("http://093.184.216.34/v.mp4", "093.184.216.34"),
        ("http://1572395042/v.mp4", "1572395042"),  # 93.184.216.34 in decimal: still refused
        ("http://\uff11\uff12\uff17.1/v.mp4", ""),  # full-width digits
    ],
)
def test_unusual_numeric_hosts(url: str, host: str) -> None:
    problem = assert_refused(url, f"`{host}" if host else "")
    assert "normal public address" in problem


@pytest.mark.parametrize(
    "url",
    [
        "https://files.slack.com/files-pri/T0123-F0456/clip.mp4",
        "https://files.slack.com/files-pri/T0123-F0456/download/clip.mp4",
        "https://acme.slack.com/files/U0123/F0456/clip.mp4",
        "https://slack.com/files/x",
        "https://FILES.SLACK.COM./files-pri/T1-F1/a.mp3",
        "https://slack-files.com/T0123-F0456-abcdef",
        "https://files.slack-files.com/x",
        "https://a.slack-edge.com/x.mp4",
        "https://slack-edge.com/x.mp4",
    ],
)
def test_slack_file_links(url: str) -> None:
    assert_refused(url, "Slack", "login", "public")


@pytest.mark.parametrize(
    ("url", "mention"),
    [
        ("http://%6c%6fcalhost/v.mp4", "percent"),
        ("http://local host/v.mp4", "control characters"),
        ("http://a..example.com/v.mp4", "valid host"),
        ("http://exa$mple.com/v.mp4", "not allowed"),
        ("http://[not-an-ip]/v.mp4", "valid"),
    ],
)
def test_malformed_hosts(url: str, mention: str) -> None:
    assert_refused(url, mention)


def test_problem_names_the_argument_in_commands() -> None:
    assert "The link" in (public_url_problem("ftp://example.com/a") or "")
    reason = refusal(f"{VIDEO} ftp://example.com/a.mp3")
    assert "The audio link" in reason


# ------------------------------------------------------------------------------------------------ budgets


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("budget", BudgetCommand()),
        # What Slack sends with should_escape: true, for a channel and a person picked from its suggestions.
        ("budget <#C0DUB|dubbing> 50", BudgetCommand("channel", "C0DUB", Decimal(50))),
        ("budget <@U0BOB> 12.5 usd", BudgetCommand("user", "U0BOB", Decimal("12.5"), "usd")),
        ("budget <@W0ENT|bob> $20", BudgetCommand("user", "W0ENT", Decimal(20), "USD")),
        (
            "BUDGET <#G0PRIV> 1,000 LipSync.dev credits",
            BudgetCommand("channel", "G0PRIV", Decimal(1000), "LipSync.dev credits"),
        ),
        ("budget <#C0DUB|dubbing> off", BudgetCommand("channel", "C0DUB", None)),
        ("budget <#C0DUB> 0", BudgetCommand("channel", "C0DUB", Decimal(0))),
    ],
)
def test_budget_commands(text: str, expected: BudgetCommand) -> None:
    assert parse_lipsync_text(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("budget #dubbing 50", "not a channel or a person"),  # typed without picking (no id)
        ("budget general 50", "not a channel or a person"),
        ("budget <#C0DUB|dubbing>", "Say how much"),
        ("budget <#C0DUB> lots", "not an amount"),
        ("budget <#C0DUB> -5", "not an amount"),
        ("budget <#C0DUB> 1e12", "not an amount"),
        ("budget <#C0DUB> NaN", "not an amount"),
    ],
)
def test_budget_commands_refused_say_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidCommand) as caught:
        parse_lipsync_text(text)
    assert reason in caught.value.reason
