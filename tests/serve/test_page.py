"""The web page in a real headless browser (Debian's chromium and chromium-driver, selenium):
upload and compare, enroll, record from a (fake) microphone and identify, diarize and play."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the dev extra)")
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="needs a headless browser: apt-get install chromium chromium-driver",
    ),
]


@pytest.fixture(scope="module")
def microphone(speech: dict[str, list[Path]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the fake microphone plays (in a loop): alice's speech, 16-bit WAV."""
    from voxvec.audio import load

    wav = np.concatenate([load(p, 16000) for p in speech["alice"][10:14]])
    path = tmp_path_factory.mktemp("mic") / "alice.wav"
    sf.write(path, wav, 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def browser(microphone: Path) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={microphone}",
                 "--autoplay-policy=no-user-gesture-required"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 120) -> Any:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def page(browser: Any, server) -> Any:
    browser.get(server.url + "/")
    token = browser.find_element(By.ID, "token")
    token.send_keys(server.token)
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", token)
    wait_for(lambda: "voxvec-default" in browser.find_element(By.ID, "health").text, "health")
    return browser


def _result(page: Any, element: str) -> str:
    box = page.find_element(By.ID, element)
    return wait_for(lambda: box.text if box.text and box.text != "working..." else "", element)


def test_the_page_needs_no_network_and_names_a_missing_token(browser: Any, server) -> None:
    browser.get(server.url + "/")
    sources = browser.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
    )
    assert sources and all(s.startswith(server.url) for s in sources)
    listed = wait_for(lambda: browser.find_element(By.ID, "speakers-list").text, "speakers")
    assert "401" in listed and "bearer token" in listed  # no token typed in yet


def test_upload_and_compare(page: Any, speech) -> None:
    def score() -> float | None:
        shown = page.find_elements(By.CSS_SELECTOR, "#verify-result .score")
        return float(shown[0].text) if shown else None

    scores = []
    for b in (speech["alice"][1], speech["bob"][0]):
        page.find_element(By.ID, "verify-a-file").send_keys(str(speech["alice"][0]))
        page.find_element(By.ID, "verify-b-file").send_keys(str(b))
        page.execute_script("document.getElementById('verify-result').textContent = ''")
        page.find_element(By.ID, "verify-run").click()
        scores.append(wait_for(score, "the score"))
        text = page.find_element(By.ID, "verify-result").text
        assert "same speaker" in text or "different speakers" in text
        for field in ("verify-a-file", "verify-b-file"):
            page.find_element(By.ID, field).clear()
    assert scores[0] > scores[1]  # alice-alice above alice-bob


def test_enroll_then_identify_a_recording(page: Any, speech, server) -> None:
    page.find_element(By.ID, "enroll-name").send_keys("dora")
    page.find_element(By.ID, "enroll-file").send_keys(
        "\n".join(str(p) for p in speech["alice"][:4])
    )
    page.find_element(By.ID, "enroll-run").click()
    assert "enrolled dora: +4, 4 in all" in _result(page, "enroll-result")
    wait_for(lambda: "dora (4)" in page.find_element(By.ID, "speakers-list").text, "the list")
    try:
        record = page.find_element(By.CSS_SELECTOR, "#identify .record")
        record.click()
        status = page.find_element(By.CSS_SELECTOR, "#identify .status")
        wait_for(lambda: status.text == "recording...", "recording")
        time.sleep(4)
        record.click()
        wait_for(lambda: status.text.startswith("recorded"), "the recording")
        assert float(status.text.split()[1]) >= 3.0
        page.find_element(By.ID, "identify-run").click()
        text = _result(page, "identify-result")
        assert "candidates: dora" in text, text  # the recorded voice is dora's (alice's)
        item = next(li for li in page.find_elements(By.CSS_SELECTOR, "#speakers-list li")
                    if li.text.startswith("dora (4)"))  # fmt: skip
        item.find_element(By.TAG_NAME, "button").click()
        wait_for(lambda: "dora" not in page.find_element(By.ID, "speakers-list").text, "removal")
    finally:
        with server.client() as client:
            client.delete("/speakers/dora")


def test_diarize_draws_a_playable_timeline(page: Any, conversation: Path) -> None:
    page.find_element(By.ID, "diarize-file").send_keys(str(conversation))
    page.find_element(By.ID, "diarize-speakers").send_keys("2")
    page.find_element(By.ID, "diarize-names").click()  # plain labels
    page.find_element(By.ID, "diarize-run").click()
    assert "2 speaker(s)" in _result(page, "diarize-result")
    turns = page.find_elements(By.CSS_SELECTOR, "#diarize-timeline .turn")
    assert len(turns) >= 3
    speakers = {t.get_attribute("data-speaker") for t in turns}
    assert speakers == {"SPEAKER_00", "SPEAKER_01"}
    colours = {t.value_of_css_property("background-color") for t in turns}
    assert len(colours) == 2
    legend = page.find_element(By.ID, "diarize-legend").text
    assert "SPEAKER_00" in legend and "SPEAKER_01" in legend
    audio = page.find_element(By.ID, "diarize-audio")
    wait_for(lambda: page.execute_script("return arguments[0].readyState >= 1", audio), "audio")
    assert page.execute_script("return arguments[0].duration", audio) == pytest.approx(
        23.5, abs=0.05
    )
    later = turns[-1]
    start = float(later.get_attribute("data-start"))
    later.click()
    wait_for(lambda: page.execute_script("return !arguments[0].paused", audio), "playback")
    position = page.execute_script("return arguments[0].currentTime", audio)
    assert start <= position < start + 2.0
