"""Open a page in Debian's headless Chromium with Selenium (no browser download)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def browser_missing() -> str | None:
    """Why no browser test can run here, or None when one can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if not any(shutil.which(n) for n in CHROMIUM_NAMES):
        return "no Chromium binary (apt-get install chromium chromium-driver)"
    if shutil.which("chromedriver") is None:
        return "no chromedriver (apt-get install chromium-driver)"
    return None


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A headless Chromium driven by Selenium, with the machine's own chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = next(shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n))
    profile = tempfile.mkdtemp(prefix="kling-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(binary)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--autoplay-policy=no-user-gesture-required",
        "--allow-file-access-from-files",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def page_report(driver: Any, page: Path, timeout: float = 30.0) -> dict[str, Any]:
    """Load ``page`` and wait (a condition, with a deadline) until its media settled; return
    what the page shows: cards, images with their natural width, videos' readyState."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(page.resolve().as_uri())
    settled = (
        "return [...document.images].every(i => i.complete)"
        " && [...document.querySelectorAll('video, audio')]"
        ".every(v => v.readyState >= 1 || v.error)"
    )
    # Media with preload=metadata may wait for a nudge before loading.
    driver.execute_script("document.querySelectorAll('video, audio').forEach(v => v.load())")
    WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: d.execute_script(settled))
    return driver.execute_script(
        "return {"
        " cards: document.querySelectorAll('.card').length,"
        " images: [...document.images].map(i => [i.getAttribute('src'), i.naturalWidth]),"
        " videos: [...document.querySelectorAll('video')].map(v =>"
        "   [v.getAttribute('src'), v.readyState, v.error ? v.error.code : 0, v.videoWidth]),"
        " audios: [...document.querySelectorAll('audio')].map(a =>"
        "   [a.getAttribute('src'), a.readyState, a.error ? a.error.code : 0]),"
        " prompts: [...document.querySelectorAll('.prompt')].map(p => p.textContent),"
        " scripts: document.querySelectorAll('script').length,"
        " pwned: window.__pwned === true"
        "}"
    )
