"""A 300 MB Slack file re-hosted by the real `Transfer.rehost` in a separate process stays in bounded memory.

The file is generated chunk by chunk by the fake Slack (never stored on disk or in memory whole); the
subprocess reports its peak RSS (VmHWM) before and after the transfer.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.fakes.jogg_api import FakeJogg
from tests.fakes.slack_api import FakeSlack
from tests.harness import REPO

MIB = 1024 * 1024
CHUNKS = 300  # 300 MiB
MAX_GROWTH_MB = 64
PATTERN = bytes(range(256)) * (MIB // 256)

# Runs in the child: imports first, so the baseline includes the code, then one rehost.
SCRIPT = """
import asyncio, json, os, sys
from pydantic import SecretStr
from bot.providers.jogg import JoggProvider
from bot.jobs.files import SlackFile
from bot.slack.transfer import Transfer

def hwm_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

async def main(cfg):
    jogg = JoggProvider(SecretStr(cfg["jogg_key"]), base_url=cfg["jogg_url"])
    token = SecretStr(os.environ["TEST_SLACK_TOKEN"])
    transfer = Transfer(slack_token=token, slack_api_url=cfg["slack_api_url"], max_bytes=cfg["max_bytes"])
    try:
        reference, _ = await transfer.rehost(SlackFile(**cfg["file"]), jogg)
        return reference
    finally:
        await transfer.aclose()
        await jogg.aclose()

cfg = json.loads(sys.argv[1])
before = hwm_kb()
asset_url = asyncio.run(main(cfg))
print(json.dumps({"hwm_before_kb": before, "hwm_after_kb": hwm_kb(), "asset_url": asset_url}))
"""


def chunks() -> Iterator[bytes]:
    for index in range(CHUNKS):  # each MiB numbered, so a lost or repeated chunk changes the hash
        yield index.to_bytes(8, "big") + PATTERN[8:]


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc for VmHWM")
@pytest.mark.timeout(30)
def test_300_mb_file_is_streamed_with_bounded_memory(slack: FakeSlack, jogg: FakeJogg) -> None:
    size = CHUNKS * MIB
    expected = hashlib.sha256()
    for chunk in chunks():
        expected.update(chunk)
    file = slack.add_file("FBIG", "big.mp4", "video/mp4", "mp4", size=size, content_factory=chunks)
    jogg.require_content_length = True
    cfg = {
        "jogg_url": jogg.base_url,
        "jogg_key": jogg.api_key,
        "slack_api_url": slack.api_url,
        "max_bytes": 500 * 1_000_000,
        "file": {
            "id": file["id"],
            "name": file["name"],
            "mimetype": file["mimetype"],
            "filetype": file["filetype"],
            "size": size,
            "url": file["url_private_download"],
        },
    }
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "TEST_SLACK_TOKEN": slack.bot_token}

    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(cfg)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=25,
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    growth_mb = (report["hwm_after_kb"] - report["hwm_before_kb"]) / 1024
    upload = jogg.uploads[-1]
    assert (upload.size, upload.declared_size) == (size, size)
    assert upload.sha256 == expected.hexdigest()
    assert report["asset_url"].startswith(f"{jogg.base_url}/assets/{upload.asset_id}/")
    figures = f"peak RSS {report['hwm_before_kb'] / 1024:.1f} → {report['hwm_after_kb'] / 1024:.1f} MB"
    assert growth_mb < MAX_GROWTH_MB, f"peak RSS grew {growth_mb:.1f} MB for a 300 MiB file ({figures})"
    # Record the measurement in the report even when the test passes (pytest -rA shows it).
    print(f"peak RSS growth {growth_mb:.1f} MB ({figures})")
