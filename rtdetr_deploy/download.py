"""Download a file once: streamed with a progress bar, checked against its SHA-256, written atomically."""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from .atomic import atomic_path
from .version import __version__

__all__ = ["download"]

_CHUNK = 1 << 20


def download(
    url: str, dest: str | os.PathLike[str], *, sha256: str | None = None, progress: bool = True, timeout: float = 30.0
) -> Path:
    """Fetch ``url`` into ``dest``.

    The body is streamed into a temporary file beside ``dest`` and hashed on the way; ``dest`` appears only when
    the whole body arrived and its SHA-256 matches ``sha256`` (when given). Nothing is left behind on failure.

    Args:
        url: ``http(s)://`` address (redirects are followed).
        dest: final path; its folder is created.
        sha256: expected hex digest; ``None`` skips the check.
        progress: show a tqdm bar on stderr (when tqdm is installed and stderr is a terminal).
        timeout: seconds to wait for the connection and for each read.

    Returns:
        ``dest`` as a ``Path``.

    Raises:
        OSError: the download failed (unreachable, HTTP error, cut short) or the checksum does not match.
    """
    dest = Path(dest)
    request = urllib.request.Request(url, headers={"User-Agent": f"rtdetr-deploy/{__version__}"})
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, atomic_path(dest) as tmp:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = _progress_bar(total, dest.name) if progress else None
            try:
                with open(tmp, "wb") as f:
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        f.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
            if total is not None and received != total:
                raise OSError(f"download of {url} was cut short: {received} of {total} bytes")
            if sha256 is not None and digest.hexdigest() != sha256.lower():
                raise OSError(
                    f"download of {url} has SHA-256 {digest.hexdigest()}, expected {sha256.lower()}: "
                    "the file is corrupt or was replaced upstream"
                )
    except urllib.error.HTTPError as exc:
        raise OSError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise OSError(f"cannot download {url}: {exc.reason}") from None
    except (http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        raise OSError(f"cannot download {url}: {type(exc).__name__} {exc}".rstrip()) from None
    return dest


def _progress_bar(total: int | None, name: str):  # noqa: ANN202 - tqdm is optional
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=name, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, disable=None)
