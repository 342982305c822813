"""The report in a real headless browser, opened from disk with no network."""

from __future__ import annotations

from ..support import require_tool


def test_report_renders_in_headless_chromium(tiny_run, tmp_path):
    chromium = require_tool("chromium", "the browser test needs Debian's chromium package")
    driver_path = require_tool("chromedriver", "the browser test needs Debian's chromium-driver package")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    flags = [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--proxy-server=127.0.0.1:9",
    ]  # fmt: skip
    flags += ["--window-size=1280,2000", f"--user-data-dir={tmp_path / 'profile'}"]
    for flag in flags:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get((tiny_run / "report.html").as_uri())
        assert driver.title == "benloss report: run tiny"
        assert driver.execute_script("return document.querySelectorAll('table').length") >= 8
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.id, i.complete && i.naturalWidth > 0])"
        )
        scored = len((tiny_run / "kbranch/tables/lrp_scores.csv").read_text().splitlines()) > 1  # with reference maps
        # the seven figures, the LRP scores' chart where scored, the ranking across architectures, two landscapes
        assert len(images) == 7 + scored + 1 + 2 and all(ok for _, ok in images), images
        banner = driver.execute_script("return document.getElementById('demo-banner').innerText")
        assert "not BigEarthNet results" in banner
        screenshot = tmp_path / "report.png"
        assert driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    from PIL import Image

    pixels = Image.open(screenshot).convert("L")
    assert pixels.size[0] >= 1000 and pixels.getextrema()[0] < 100  # not a blank page
