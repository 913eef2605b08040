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
        " posters: [...document.querySelectorAll('video')].map(v => v.getAttribute('poster')),"
        " audios: [...document.querySelectorAll('audio')].map(a =>"
        "   [a.getAttribute('src'), a.readyState, a.error ? a.error.code : 0]),"
        " prompts: [...document.querySelectorAll('.prompt')].map(p => p.textContent),"
        " scripts: document.querySelectorAll('script').length,"
        " pwned: window.__pwned === true"
        "}"
    )


def screenshot(page: Path, target: Path, width: int = 1280, height: int = 820) -> Path:
    """Save a PNG of ``page`` once its media settled (`page_report`); return ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with chromium(width, height) as driver:
        page_report(driver, page)
        # Posters and first frames are painted after readyState 1: wait until videos have
        # a frame to show (or failed), so the picture shows them.
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(driver, 30, poll_frequency=0.05).until(
            lambda d: d.execute_script(
                "return [...document.querySelectorAll('video')]"
                ".every(v => v.readyState >= 2 || v.error || v.poster)"
            )
        )
        driver.save_screenshot(str(target))
    return target


def demo_gallery_screenshot(target: Path, jobs: int = 5) -> Path:
    """Run ``kling-async demo`` (the built-in simulator) in a temporary folder and save a
    screenshot of its gallery (``index.html``) as ``target``: README's picture."""
    from kling_async import cli

    with tempfile.TemporaryDirectory(prefix="kling-demo-") as folder:
        out = Path(folder) / "kling-demo"
        if cli.main(["demo", "--out", str(out), "--jobs", str(jobs)]) != 0:
            raise RuntimeError("kling-async demo failed")
        return screenshot(out / "index.html", target)


if __name__ == "__main__":
    # python tests/browser.py docs/img/gallery.png
    import sys

    print(demo_gallery_screenshot(Path(sys.argv[1] if len(sys.argv) > 1 else "gallery.png")))
