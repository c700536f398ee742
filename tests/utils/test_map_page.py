"""The map page opened in a real browser (Chromium, headless, through Selenium), with no network."""

import os
import re
import shutil

import cv2
import numpy as np
import pytest

from utils.map_page import Backdrop, MapLayer, map_page, write_map

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def square(lat, lon, half=0.0004):
    return np.array([[lat + half, lon - half], [lat + half, lon + half], [lat - half, lon + half],
                     [lat - half, lon - half]])


def layers():
    first = MapLayer("pano_a.jpg", np.array([37.9461, -122.9955]), 0.08,
                     np.stack([square(37.9462, -122.9956), square(37.9458, -122.9950), square(37.9470, -122.9940)]),
                     ["r0_c0", "r0_c32", "r32_c64"], [0.91, 0.90, 0.85], np.array([37.9460, -122.9954]), 14.2)
    second = MapLayer("pano_<b>.jpg", np.array([37.9450, -122.9930]), 0.01,
                      np.stack([square(37.9450, -122.9930), square(37.9440, -122.9960)]), ["r64_c0", "r0_c96"],
                      [0.7, 0.69])
    return [first, second]


def backdrop():
    image = np.zeros((60, 80, 3), np.uint8)
    image[..., 1] = 180
    return Backdrop(image, (37.943, -122.998, 37.948, -122.992))


def test_the_page_holds_every_layer_and_no_link_to_the_network():
    page = map_page(layers(), backdrop(), "two panoramas")
    assert '"pano_\\u0026lt;b\\u0026gt;.jpg"' in page and "pano_<b>" not in page  # a name is text, not markup
    assert "<title>two panoramas</title>" in page
    assert "data:image/png;base64," in page
    assert not re.search(r"<script[^>]*src=.https?:", page)  # Leaflet and its styles are inlined, not fetched
    assert not re.search(r"<link[^>]*href=.https?:", page)


@pytest.mark.skipif((CHROMIUM is None or CHROMEDRIVER is None) and not os.environ.get("CVGL_REQUIRE_BROWSER"),
                    reason="needs Chromium and ChromeDriver (Debian: apt install chromium chromium-driver); "
                           ".ci/run installs them and sets CVGL_REQUIRE_BROWSER")
def test_the_page_renders_in_a_headless_browser_offline(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    path = write_map(tmp_path / "map.html", layers(), backdrop(), "two panoramas")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.html"]
    options = Options()
    for flag in ("--headless=new", "--no-sandbox", "--window-size=900,700", "--disable-gpu",
                 "--proxy-server=http://127.0.0.1:9", "--disable-dev-shm-usage"):  # the proxy: nothing from the net
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    browser = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        browser.get(path.as_uri())
        WebDriverWait(browser, 20).until(lambda b: b.execute_script(
            "return document.querySelectorAll('.leaflet-image-layer').length") == 1)
        assert browser.execute_script("return typeof L") == "object"
        assert browser.title == "two panoramas"
        shown = browser.execute_script("return document.querySelectorAll('path.leaflet-interactive').length")
        assert shown == 3 + 1 + 1  # the first layer: three footprints, the estimate and the true position
        browser.find_element("xpath", "//label[contains(., 'pano_<b>.jpg')]//input").click()
        shown = browser.execute_script("return document.querySelectorAll('path.leaflet-interactive').length")
        assert shown == 5 + 2 + 1  # with the second layer: two footprints and an estimate, no truth
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []
        browser.save_screenshot(str(tmp_path / "map.png"))
    finally:
        browser.quit()
    shot = cv2.cvtColor(cv2.imread(str(tmp_path / "map.png")), cv2.COLOR_BGR2RGB).reshape(-1, 3).astype(int)
    near = lambda colour: (np.abs(shot - colour).sum(1) < 40).mean()  # noqa: E731
    assert near((0, 180, 0)) > 0.2  # the backdrop, drawn under the layers
    assert near((0xD7, 0x19, 0x1C)) > 0.0005  # the best footprint's red outline
