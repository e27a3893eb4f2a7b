"""The validator page's time charts in a real browser (headless Chromium, as tests/test_browser.py):
a simulated chain whose validator 0 is late (LateVotes), offline for a few heights and fails every
third proposal, runs through the whole pipeline (subscriber, stream consumer, analyzer judging as
the heights come, so they are judged over time); a team member signs in through the form and opens
its page: three charts, each drawn at a real size with tooltips. Screenshots go to artifacts/."""

from __future__ import annotations

import threading

import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import LiveServerTestCase, override_settings

from analysis.models import AlertSettings, HeightHistory
from analysis.runner import MissingVoteAnalyzer
from consensus.ingest import StreamConsumer
from consensus.models import Chain, Endpoint, Validator
from consensus.simulator import SimChain, SimulatorThread
from consensus.simulator.scenario import FailedProposals, LateVotes, Scenario, Window
from validators.indexer import ChainIndexer

from .conftest import ROOT
from .simhelpers import wait_for_height
from .subscriberhelpers import running, target, wait_until
from .test_browser import CHROMEDRIVER, CHROMIUM, browser

HEIGHTS = 36

# Each chart's size on the page and its tooltips, read in one script.
MEASURE = """
return ['participation', 'delays', 'proposals'].map(id => {
  const svg = document.getElementById(id);
  if (!svg) return null;
  const box = svg.getBoundingClientRect();
  return {id, width: box.width, height: box.height, titles: svg.querySelectorAll('title').length,
          first: (svg.querySelector('title') || {}).textContent || ''};
});
"""


@pytest.mark.slow
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="apt install chromium chromium-driver (.ci/run does)")
@override_settings(SESSION_COOKIE_SECURE=False, CSRF_COOKIE_SECURE=False)  # plain http on loopback
class ValidatorChartsInABrowser(LiveServerTestCase):
    host = "127.0.0.1"

    def test_the_three_charts_are_drawn_with_tooltips(self):
        client = redis.Redis.from_url(settings.REDIS_URL)
        client.flushdb()
        scenario = Scenario(
            offline=[Window(0, start=14, end=17)],
            late_votes=[LateVotes(0, start=1, end=HEIGHTS, from_ms=50, to_ms=450)],
            failed_proposals=[FailedProposals(0)],
        )
        sim_chain = SimChain("sim-charts", validators=4, block_time=0.8, scenario=scenario)
        sim = SimulatorThread()
        (node,) = sim.add_chain(sim_chain)
        sim.start()
        stop = threading.Event()
        driver = pipeline = None
        try:
            wait_for_height(node.url, 2)
            chain = Chain.objects.create(name="sim-charts", chain_id="sim-charts")
            Endpoint.objects.create(chain=chain, url=node.url)
            AlertSettings.objects.create(chain=chain, grace_seconds=0)
            ChainIndexer(chain).run_once()
            consumer = StreamConsumer([chain], client=client, consumer="charts-test", block_ms=50)
            consumer.ensure_groups()
            analyzer = MissingVoteAnalyzer([chain], lookup_workers=0, fetch_commits=False)

            def run_pipeline() -> None:
                # Judged as they come (as the main job does), so judged_at spreads over the run.
                from django.db import connection

                try:
                    while not stop.is_set():
                        consumer.run_once()
                        analyzer.run_once()
                        stop.wait(0.3)
                finally:
                    connection.close()

            pipeline = threading.Thread(target=run_pipeline, daemon=True)
            with running([target("sim-charts", node)], client):
                pipeline.start()
                wait_until(
                    lambda: HeightHistory.objects.filter(chain=chain).count() >= HEIGHTS,
                    timeout=HEIGHTS * 3,
                    interval=0.5,
                    message=f"{HEIGHTS} judged heights",
                )
            stop.set()
            pipeline.join(20)
            slow = Validator.objects.get(chain=chain, address=sim_chain.genesis[0].address)

            get_user_model().objects.create_user("viewer", password="pw-for-tests-42")
            driver = browser()
            driver.set_window_size(1100, 1000)
            base = self.live_server_url
            driver.get(f"{base}/chains/sim-charts/validators/{slow.address}/")
            driver.find_element("id", "id_username").send_keys("viewer")
            driver.find_element("id", "id_password").send_keys("pw-for-tests-42")
            driver.find_element("css selector", "form.account button").click()
            wait_until(lambda: "participation" in driver.page_source, timeout=20, message="the validator page")

            charts = driver.execute_script(MEASURE)
            assert all(charts), charts
            for chart in charts:
                assert chart["width"] > 300 and chart["height"] > 80, chart
                assert chart["titles"] >= 1 and " · " in chart["first"], chart
            by_id = {c["id"]: c for c in charts}
            assert "without a miss" in by_id["participation"]["first"]
            assert "ms · p95" in by_id["delays"]["first"]
            assert "turns" in by_id["proposals"]["first"]
            # Its misses (offline 14-17) and failed proposals are on the page as bars of their colour.
            assert driver.execute_script("return document.querySelectorAll('#participation rect.bad').length") >= 1
            assert driver.execute_script("return document.querySelectorAll('#proposals rect.bad').length") >= 1
            artifacts = ROOT / "artifacts"
            artifacts.mkdir(exist_ok=True)
            assert driver.save_screenshot(str(artifacts / "validator-charts.png"))

            # Another range: the last hour, the same heights in wider buckets; a bogus one falls back.
            driver.get(f"{base}/chains/sim-charts/validators/{slow.address}/?range=1h")
            assert all(driver.execute_script(MEASURE))
            driver.get(f"{base}/chains/sim-charts/validators/{slow.address}/?range=nonsense")
            assert 'range=all" class="on"' in driver.page_source
        finally:
            stop.set()
            if pipeline is not None and pipeline.is_alive():
                pipeline.join(10)
            if driver is not None:
                driver.quit()
            sim.stop()
            client.flushdb()
            client.close()
