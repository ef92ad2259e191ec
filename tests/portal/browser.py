"""Browser-test helpers: fake-webcam clips made with ffmpeg from the test
faces, the Chromium launch line, and a recorder of everything the page sends
and receives.

A clip is 640x480 y4m at 10 fps. A blink clip repeats 0.8 s of open eyes and
0.4 s of painted-over eyes (`biometrics.synthetic.close_eyes`), so a burst
holds a blink with open frames before and after however its frames fall,
as long as they are at most 0.4 s apart (a loaded machine stretches the
capture's 200 ms; with 0.3 s closed, samples 0.4 s apart could step over
every blink, and a clean-clone run once saw "the picture did not move"). Every video frame gets
its own sensor noise from the clip's seed: the service refuses a frame it has
seen in an earlier burst, and Chromium restarts a file at frame 0 whenever a
page opens the camera, so each burst runs in a browser with a clip of its own.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pytest
from PIL import Image
from playwright.async_api import Browser, Page, Playwright, Request, Response

from biometrics.synthetic import close_eyes
from tests.face_images import photo

CHROMIUM: Final = Path("/usr/bin/chromium")
FFMPEG: Final = Path("/usr/bin/ffmpeg")
WIDTH, HEIGHT, FPS = 640, 480, 10
OPEN_FRAMES, CLOSED_FRAMES = 8, 4
REPO: Final = Path(__file__).resolve().parents[2]
ARTIFACTS: Final = REPO / "tests" / "artifacts" / "portal"


def require_tools() -> None:
    """Fail (not skip) with the fix when the system browser or ffmpeg is missing;
    a browser is never downloaded."""
    missing = [str(p) for p in (CHROMIUM, FFMPEG) if not p.exists()]
    if missing:
        pytest.fail(
            f"the portal browser tests need {', '.join(missing)}: install Debian's "
            "`chromium` and `ffmpeg` (scripts/setup.sh does, from scripts/apt-packages.txt)"
        )


def _framed(image: bytes) -> np.ndarray:
    """The photo letterboxed into the camera picture, face in the middle."""
    pic = Image.open(io.BytesIO(image)).convert("RGB")
    scale = min(WIDTH / pic.width, HEIGHT / pic.height)
    pic = pic.resize((round(pic.width * scale), round(pic.height * scale)), Image.LANCZOS)
    canvas = Image.new("RGB", (WIDTH, HEIGHT), (112, 118, 124))
    canvas.paste(pic, ((WIDTH - pic.width) // 2, (HEIGHT - pic.height) // 2))
    return np.asarray(canvas, dtype=np.int16)


def make_clip(path: Path, face: str, *, blink: bool, seed: int, seconds: float = 4.8) -> Path:
    """A y4m clip of `face` (a file in tests/data/faces), blinking or not."""
    opened = _framed(photo(face))
    closed = _framed(close_eyes(photo(face), fmt="PNG")) if blink else opened
    period = OPEN_FRAMES + CLOSED_FRAMES
    rng = np.random.default_rng(seed)
    frames = bytearray()
    for i in range(round(seconds * FPS)):
        base = closed if blink and i % period >= OPEN_FRAMES else opened
        noisy = np.clip(base + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)
        frames += noisy.tobytes()
    subprocess.run(
        [
            str(FFMPEG),
            "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS),
            "-i", "-",
            "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", str(path),
        ],
        input=bytes(frames),
        check=True,
    )  # fmt: skip
    return path


async def launch(pw: Playwright, clip: Path) -> Browser:
    return await pw.chromium.launch(
        executable_path=str(CHROMIUM),
        args=[
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={clip}",
        ],
    )


@dataclass
class Traffic:
    """Every request (URL, headers, body incl. multipart) and response body the pages saw."""

    items: list[tuple[str, bytes]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("request", self._request)
        page.on("response", self._response)
        page.on(
            "console",
            lambda m: (
                m.type == "error"
                and not m.text.startswith("Failed to load resource")  # the statuses, below
                and self.problems.append(m.text)
            ),
        )
        page.on("pageerror", lambda e: self.problems.append(str(e)))

    def _request(self, request: Request) -> None:
        head = "\n".join(f"{k}: {v}" for k, v in request.headers.items())
        body = request.post_data_buffer or b""
        self.items.append((f"> {request.method} {request.url}", request.url.encode()))
        self.items.append((f"> {request.url} headers", head.encode()))
        self.items.append((f"> {request.url} body", body))

    async def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.failures.append(f"{response.status} {response.request.method} {response.url}")
        head = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.items.append((f"< {response.url} headers", head.encode()))
        with contextlib.suppress(Exception):  # redirects and downloads have no body to read
            self.items.append((f"< {response.url} body", await response.body()))

    def bodies(self, url_part: str, direction: str = ">") -> list[bytes]:
        """Request (">") or response ("<") bodies of URLs containing `url_part`."""
        return [
            b
            for name, b in self.items
            if name.startswith(direction) and url_part in name and name.endswith(" body")
        ]


_TOKEN = re.compile(rb"[A-Za-z0-9+/_=-]{16,}")


def encodings(secret: bytes) -> list[bytes]:
    """The secret raw, in hex and in every base64 dialect."""
    b64 = base64.b64encode(secret)
    url = base64.urlsafe_b64encode(secret)
    return [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        b64,
        b64.rstrip(b"="),
        url,
        url.rstrip(b"="),
    ]


def _decoded(token: bytes) -> list[bytes]:
    out = []
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        with contextlib.suppress(binascii.Error, ValueError):
            out.append(decode(token + b"=" * (-len(token) % 4)))
    if len(token) % 2 == 0:
        with contextlib.suppress(ValueError):
            out.append(bytes.fromhex(token.decode()))
    return out


def leaks(traffic: Traffic, secrets: dict[str, bytes]) -> list[str]:
    """Where any secret appears, plainly or inside a base64/hex token."""
    found = []
    for where, data in traffic.items:
        for name, secret in secrets.items():
            if any(form in data for form in encodings(secret)):
                found.append(f"{name} in {where}")
                continue
            if any(secret in d for t in _TOKEN.findall(data) for d in _decoded(t)):
                found.append(f"{name} (decoded) in {where}")
    return found


async def shot(page: Page, name: str, **kw: Any) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True, **kw)
    return path
