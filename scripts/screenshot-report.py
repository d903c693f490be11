#!/usr/bin/env python3
"""Render a PNG screenshot of a report.html in headless Chromium (the README's images/report.png).

    python scripts/screenshot-report.py runs/quickstart/report/report.html images/report.png
    python scripts/screenshot-report.py report.html out.png --cause wrong_literal --width 1400

Opens the file from disk (file://), applies the filters given (``--cause``, ``--verdict``, ``--evaluation``, ...,
the page's own #fragment keys), opens the first example listed, scrolls to the explorer and saves the window.
Needs Debian's chromium and chromium-driver (``apt-get install chromium chromium-driver``) and the dev extra's
selenium; nothing is downloaded: Selenium Manager stays offline and the driver is /usr/bin/chromedriver
($SQLMASTER_CHROMIUM and $SQLMASTER_CHROMEDRIVER name others).
tests/test_html_report.py starts its browser with :func:`start_chromium` from here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

CHROMIUM = os.environ.get("SQLMASTER_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SQLMASTER_CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL = "apt-get install chromium chromium-driver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--hide-scrollbars",
)


def missing() -> str | None:
    """Why the browser cannot start here (None: it can)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() and os.access(path, os.X_OK)):
            return f"{path} is missing: install Debian's browser and driver ({INSTALL})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[dev]'"
    return None


def start_chromium(profile: Path, width: int = 1400, height: int = 1000) -> Any:
    """Headless Chromium with an empty profile in ``profile``, driven by /usr/bin/chromedriver, downloading
    nothing (SE_OFFLINE: Selenium Manager does not look for a driver or a browser)."""
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console, for tests
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def screenshot(driver: Any, report: Path, out: Path, filters: dict[str, str], full_page: bool = False) -> int:
    """Open ``report`` with ``filters``, open the first listed example, save the window (scrolled to the
    explorer) or the whole page as ``out``; returns how many examples the filters list."""
    from selenium.webdriver.common.by import By

    driver.get(report.resolve().as_uri() + ("#" + urlencode(filters) if filters else ""))
    rows = driver.find_elements(By.CSS_SELECTOR, "#examples tbody tr")
    if rows:
        rows[0].click()
    if full_page:  # the window as tall as the page
        chrome = driver.execute_script("return window.outerHeight - window.innerHeight")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(driver.get_window_size()["width"], height + chrome)
        driver.execute_script("window.scrollTo(0, 0)")
    else:
        driver.execute_script("document.getElementById('explorer').scrollIntoView()")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(out)):
        raise SystemExit(f"error: Chromium wrote no screenshot to {out}.")
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="a report.html (sqlmaster eval report's or quickstart's)")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--full-page", action="store_true", help="the whole page, not the window at the explorer")
    for key in ("evaluation", "dataset", "verdict", "cause", "database", "family", "search"):
        parser.add_argument(f"--{key}", help=f"show only examples whose {key} is this")
    args = parser.parse_args(argv)
    problem = missing() or (None if args.report.is_file() else f"{args.report} is not a file. Pass a report.html")
    if problem:
        print(f"error: {problem}.", file=sys.stderr)
        return 2
    filters = {
        k: v
        for k in ("evaluation", "dataset", "verdict", "cause", "database", "family", "search")
        if (v := getattr(args, k)) is not None
    }
    profile = Path(tempfile.mkdtemp(prefix="sqlmaster-chromium-"))
    driver = start_chromium(profile, args.width, args.height)
    try:
        listed = screenshot(driver, args.report, args.out, filters, args.full_page)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"{args.out}: {listed} examples listed, the first one open")
    return 0


if __name__ == "__main__":
    sys.exit(main())
