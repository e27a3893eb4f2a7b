"""A real browser on the team's pages: headless Chromium (Debian's chromium and chromium-driver)
signs in as a team member (not staff) through the sign-in form, sees the overview and the alerts,
opens /chains/<name>/ served by Daphne (HTTP and websocket) while the simulator produces blocks
through the real pipeline, and sees the height advance without a reload. The admin refuses the
same account, and signing out in another tab ends the live page's socket: the page goes to the
sign-in form. The test saves a screenshot to artifacts/live-view.png."""

from __future__ import annotations

import shutil
import signal
import threading

import pytest
import redis
from channels.testing import ChannelsLiveServerTestCase
from daphne.testing import DaphneProcess
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import override_settings

from consensus.ingest import LivePublisher, StreamConsumer
from consensus.models import Chain, Endpoint
from consensus.simulator import SimChain, SimulatorThread
from consensus.subscriber import ChainTarget
from validators.indexer import ChainIndexer

from .conftest import ROOT
from .simhelpers import wait_for_height
from .subscriberhelpers import running, wait_until

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"):
        options.add_argument(flag)
    options.add_argument("--window-size=1100,900")
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


class DaphneOnTheTestDatabase(DaphneProcess):
    """Daphne in a forked child that keeps the parent's database settings: under pytest-django they
    already name the test database (Channels' default set-up would prefix "test_" a second time).
    The child also drops signal handlers an earlier test installed in this pytest process (the
    commands' graceful SIGTERM handling), so that terminate() at tear-down really stops it."""

    def __init__(self, host, get_application, setup=None, **kwargs):
        super().__init__(host, get_application, setup=None, **kwargs)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        super().run()


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="apt install chromium chromium-driver (.ci/run does)")
@override_settings(SESSION_COOKIE_SECURE=False, CSRF_COOKIE_SECURE=False)  # plain http on loopback
class LiveViewInABrowser(ChannelsLiveServerTestCase):
    host = "127.0.0.1"
    ProtocolServerProcess = DaphneOnTheTestDatabase

    def test_the_height_advances_without_a_reload(self):
        client = redis.Redis.from_url(settings.REDIS_URL)
        client.flushdb()
        sim = SimulatorThread()
        (node,) = sim.add_chain(SimChain("sim-live", validators=5, block_time=0.7))
        sim.start()
        stop = threading.Event()
        driver = streamer = None
        try:
            wait_for_height(node.url, 2)
            chain = Chain.objects.create(name="sim-live", chain_id="sim-live")
            Endpoint.objects.create(chain=chain, url=node.url, priority=0)
            ChainIndexer(chain).run_once()
            publisher = LivePublisher()
            publisher.start()
            consumer = StreamConsumer([chain], client=client, consumer="browser-test", block_ms=50, publisher=publisher)
            consumer.ensure_groups()

            def stream_events() -> None:
                from django.db import connection

                try:
                    while not stop.is_set():
                        consumer.run_once()
                finally:
                    connection.close()

            streamer = threading.Thread(target=stream_events, daemon=True)
            streamer.start()
            get_user_model().objects.create_user("viewer", password="pw-for-tests-42")  # a team member
            with running([ChainTarget("sim-live", "sim-live", [(node.url, 0)])], client):
                driver = browser()
                base = self.live_server_url
                driver.get(base + "/chains/sim-live/")
                assert "/accounts/login/" in driver.current_url  # anonymous: the sign-in form
                driver.find_element("id", "id_username").send_keys("viewer")
                driver.find_element("id", "id_password").send_keys("pw-for-tests-42")
                driver.find_element("css selector", "form.account button").click()
                wait_until(
                    lambda: "live-state" in driver.page_source, timeout=20, message="the live page after sign-in"
                )
                assert driver.current_url == base + "/chains/sim-live/"

                # The page swaps its round in as the chain moves, so elements are read in one script
                # (an element found first and read later may already have been replaced).
                def read(script: str):
                    return driver.execute_script(script)

                height_js = "const e = document.getElementById('height'); return e ? Number(e.textContent) : 0;"
                wait_until(
                    lambda: read("return document.getElementById('live-state').textContent;") == "live",
                    timeout=20,
                    interval=0.2,
                    message="the page's websocket to connect",
                )
                read("window.ctopNotReloaded = true;")
                first = wait_until(lambda: read(height_js), timeout=20, interval=0.2, message="a height")
                later = wait_until(
                    lambda: read(height_js) >= first + 3 and read(height_js),
                    timeout=30,
                    interval=0.2,
                    message="the height to advance",
                )
                assert later >= first + 3
                assert read("return window.ctopNotReloaded === true;")  # the same page: no reload happened
                assert read("return document.querySelectorAll('#validators tbody tr').length;") == 5
                artifacts = ROOT / "artifacts"
                artifacts.mkdir(exist_ok=True)
                assert driver.save_screenshot(str(artifacts / "live-view.png"))

                # The other pages, and the admin's refusal, in a second tab.
                live_tab = driver.current_window_handle
                driver.switch_to.new_window("tab")
                driver.get(base + "/")
                assert "sim-live" in driver.page_source and "viewer" in driver.page_source
                driver.get(base + "/alerts/")
                assert "alerts" in driver.title
                driver.get(base + "/admin/")
                assert "/admin/login/" in driver.current_url and "not authorized" in driver.page_source
                # Signing out there ends the live page's socket here: it goes to the sign-in form.
                driver.get(base + "/")
                driver.find_element("id", "sign-out").click()
                wait_until(lambda: "Signed out" in driver.page_source, timeout=10, message="the signed-out page")
                driver.switch_to.window(live_tab)
                wait_until(
                    lambda: "/accounts/login/" in driver.current_url,
                    timeout=10,
                    interval=0.2,
                    message="the live page to leave for the sign-in form",
                )
            publisher.stop()
        finally:
            stop.set()
            if streamer is not None:
                streamer.join(10)  # its last read ends before the stream it reads is flushed
            if driver is not None:
                driver.quit()
            sim.stop()
            client.flushdb()
            client.close()
