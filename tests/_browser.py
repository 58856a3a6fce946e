"""A real browser for the tests: Debian's chromium driven through chromium-driver (Selenium), headless.

Without chromium, chromium-driver or selenium the browser tests skip, saying which is missing, except under
``CI=true`` where they fail (CI installs the Debian packages, .ci/run). Screenshots go to the test's folder, and to
``docs/images`` when ``SEQDANCE_UPDATE_SCREENSHOTS=1`` (how the pictures of docs/browser.md are made).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS_IMAGES = REPO_ROOT / "docs" / "images"
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver",)


def _first(paths: tuple[str, ...], name: str) -> str | None:
    return next((p for p in paths if Path(p).is_file()), None) or shutil.which(name)


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests may not skip under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser_downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="session")
def browser(browser_downloads):
    """A headless chromium (one per test session), its console log kept, downloads into ``browser_downloads``."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (test extra)")
    binary = _first(CHROMIUM, "chromium")
    driver_path = _first(CHROMEDRIVER, "chromedriver")
    if binary is None or driver_path is None:
        _unavailable("Debian's chromium and chromium-driver are not installed (apt-get install chromium "
                     "chromium-driver; .ci/run does it)")
    options = Options()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,2000", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option("prefs", {"download.default_directory": str(browser_downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def console_errors(driver) -> list[str]:
    """The page's console errors since the last call (SEVERE entries of the browser log)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def wait_for(driver, script: str, timeout: float = 60.0):
    """Wait until ``script`` (JavaScript returning a value) returns something truthy; returns it."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(script))


def hover_point(driver, plot, trace: int, point: int, *, axis: str = "") -> str:
    """Move the mouse onto point ``point`` of trace ``trace`` of a plotly plot element; the hover label's text."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", plot)
    offset = driver.execute_script(
        """
        const gd = arguments[0], data = gd._fullData[arguments[1]], k = arguments[2], L = gd._fullLayout;
        const xa = L[(data.xaxis || 'x').replace('x', 'xaxis')], ya = L[(data.yaxis || 'y').replace('y', 'yaxis')];
        const box = gd.getBoundingClientRect();
        const x = xa._offset + xa.d2p(data.x[k]), y = ya._offset + ya.d2p(data.y[k]);
        return [x - box.width / 2, y - box.height / 2];
        """, plot, trace, point)
    ActionChains(driver).move_to_element_with_offset(plot, round(offset[0]), round(offset[1])).perform()
    wait_for(driver, "return document.querySelectorAll('.hoverlayer .hovertext').length > 0", 10)
    return driver.find_element(By.CSS_SELECTOR, ".hoverlayer .hovertext").text


def hover_cell(driver, plot, row: int, column: int) -> str:
    """Move the mouse onto cell (row, column) of a plotly heat map (trace 0); the hover label's text."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", plot)
    offset = driver.execute_script(
        """
        const gd = arguments[0], data = gd._fullData[0], L = gd._fullLayout;
        const box = gd.getBoundingClientRect();
        const x = L.xaxis._offset + L.xaxis.d2p(data.x[arguments[2]]);
        const y = L.yaxis._offset + L.yaxis.d2p(data.y[arguments[1]]);
        return [x - box.width / 2, y - box.height / 2];
        """, plot, row, column)
    ActionChains(driver).move_to_element_with_offset(plot, round(offset[0]), round(offset[1])).perform()
    wait_for(driver, "return document.querySelectorAll('.hoverlayer .hovertext').length > 0", 10)
    return driver.find_element(By.CSS_SELECTOR, ".hoverlayer .hovertext").text


def screenshot(driver, path: Path, docs_name: str) -> Path:
    """Save a screenshot of the whole page to ``path`` (and to docs/images/``docs_name`` when
    SEQDANCE_UPDATE_SCREENSHOTS=1)."""
    driver.execute_script("window.scrollTo(0, 0)")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(int(height) + 40, 800), 4000))
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 2000)
    if os.environ.get("SEQDANCE_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMAGES / docs_name)
    return path


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
