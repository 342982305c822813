"""Download a large archive: HTTP Range resumption, bounded retries with backoff, md5 while streaming.

Snakemake's HTTP storage plugin fetches a file in one go; for a 66 GB archive on flaky links we need to
continue an interrupted transfer where it stopped and to checksum in the same pass, so this stage does
it itself. The transfer goes to ``<out>.part``; only a complete file with the expected md5 is renamed to
``<out>``. A file with a wrong md5 is kept as ``<out>.md5-mismatch`` for inspection, never as the output.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from benloss.errors import BenlossError

log = logging.getLogger(__name__)
CHUNK = 1 << 20


class DownloadError(BenlossError, RuntimeError):
    """The download failed for good: the message says why and what to do."""


def _md5_of(path: Path):
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest


def _attempt(url: str, part: Path, state: list, timeout: float) -> None:
    """One request from where ``part`` ends; ``state[0]`` always holds the md5 of what ``part`` holds."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # nothing left to send: the part is complete
            return
        raise
    with response:
        if have and response.status != 206:
            log.warning("%s ignored the Range request; downloading from the start", url)
            have = 0
            state[0] = hashlib.md5()
            part.unlink(missing_ok=True)
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with open(part, "ab") as handle, tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                                              desc=part.name, mininterval=2) as progress:  # fmt: skip
            while block := response.read(CHUNK):
                handle.write(block)
                state[0].update(block)
                progress.update(len(block))
        received = part.stat().st_size
        if total is not None and received < total:
            raise ConnectionError(f"connection closed after {received} of {total} bytes")


def download(url: str, out: Path, md5: str, retries: int = 8, backoff: float = 2.0, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``out``, resuming ``out.part`` and checking ``md5``; returns ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    if out.exists():
        log.info("%s already present; nothing to download", out)
        return out
    state = [_md5_of(part) if part.exists() else hashlib.md5()]
    if part.exists():
        log.info("resuming %s from %d bytes", part, part.stat().st_size)
    for attempt in range(1, retries + 1):
        try:
            _attempt(url, part, state, timeout)
            break
        except urllib.error.HTTPError as error:
            if 400 <= error.code < 500 and error.code not in (408, 429):
                raise DownloadError(f"{url}: HTTP {error.code} {error.reason}; check data.download.url") from None
            reason = f"HTTP {error.code}"
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
            reason = str(error)
        if attempt == retries:
            raise DownloadError(
                f"{url}: giving up after {retries} tries ({reason}); {part} keeps the bytes received so far "
                "and the next run resumes from them"
            )
        wait = backoff * 2 ** (attempt - 1)
        log.warning("try %d of %d failed (%s); retrying in %.1f s", attempt, retries, reason, wait)
        time.sleep(wait)
    actual = state[0].hexdigest()
    if actual != md5.lower():
        kept = out.with_name(out.name + ".md5-mismatch")
        os.replace(part, kept)
        raise DownloadError(f"{url}: md5 mismatch, expected {md5}, got {actual}; the file is kept as {kept}")
    os.replace(part, out)
    log.info("downloaded %s (md5 %s verified)", out, actual)
    return out
