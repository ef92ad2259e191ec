"""Fixtures of the operator tests: the portal's browser fixtures (one
Playwright driver over Debian's Chromium, browsers each watching their own
fake-webcam clip, a recorder of the pages' traffic) for the console."""

from tests.portal.conftest import open_browser, playwright_driver, traffic

__all__ = ["open_browser", "playwright_driver", "traffic"]
