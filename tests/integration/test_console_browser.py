"""The agents' console in a real browser (SPEC §12, issue 14 item 1): headless Debian
chromium driven by selenium (chromium-driver, python3-selenium; run with /usr/bin/python3).

An agent signs in, orders a STOP from the form on an account whose bank says the money moved
on (the sim's S002: 90% on to S001, 10% to T000, S001 on to S000 and T000, SPEC §2b), sees the
case's money trail drawn as it grows - every node, each one's state changing when its bank
answers (the sim answers after a second here) - and the final states equal to STATUS over
RESP; the account look-up says FROZEN; the case reopens from its bookmarkable address
/case/<case>; a CONFIRM (supervisors only) is refused with the gateway's NOPERM, shown on the
page. A wrong secret is refused.

Skips (exit 77) only when chromium cannot start on this machine. CONSOLE_SCREENSHOT=path saves
the page with the tree (docs/img/console-tree.png is made so, docs/console.md)."""
import os
import sys
import tempfile
import time

import sgtest
from sgtest import GatewayCase, todict

try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as e:  # a missing package is a failure, not a skip: ops/lib.sh installs it
    sys.exit("test_console_browser: python3-selenium is missing (%s): run ./ops/quickstart, and run this "
             "with /usr/bin/python3" % e)

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
BANK_LATENCY_US = 1000000  # one second per bank answer: every state is on screen for a while


def new_driver():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1500,940", "--force-device-scale-factor=1", "--no-first-run",
              "--user-data-dir=" + tempfile.mkdtemp(prefix="sgtest-chromium-")):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


class ConsoleBrowser(GatewayCase):
    GW_ARGS = dict(sections="[plugin sim]\nlatency_us = %d\n" % BANK_LATENCY_US)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.driver = new_driver()
        cls.base = "http://127.0.0.1:%d" % cls.gw.console_port

    @classmethod
    def tearDownClass(cls):
        cls.driver.quit()
        super().tearDownClass()

    def wait(self, fn, timeout=20, what="the page"):
        return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(lambda d: fn(d), what)

    def sign_in(self, agent, secret):
        d = self.driver
        d.delete_all_cookies()
        t0 = time.monotonic()
        d.get(self.base + "/")
        self.wait(lambda d: d.find_element(By.ID, "login-view").is_displayed(), what="the sign-in form")
        load_ms = (time.monotonic() - t0) * 1000
        d.find_element(By.ID, "login-agent").send_keys(agent)
        d.find_element(By.ID, "login-secret").send_keys(secret)
        d.find_element(By.CSS_SELECTOR, "#login-form button").click()
        return load_ms

    def nodes(self):
        """The drawn nodes, read in one script run (the page redraws the tree on every event)."""
        got = self.driver.execute_script(
            "return [...document.querySelectorAll('#tree g.node')].map(g => [g.dataset.orderId, g.dataset.state,"
            " g.dataset.level, [...g.querySelectorAll('text')].map(t => t.textContent)]);")
        return {oid: {"state": st, "level": int(lv), "texts": texts} for oid, st, lv, texts in got}

    def test_wrong_secret_refused(self):
        self.sign_in("alice", "not-her-secret")
        err = self.wait(lambda d: (lambda e: e if e.is_displayed() and e.text else None)(
            d.find_element(By.ID, "login-error")), what="the refusal")
        self.assertIn("WRONGPASS", err.text)
        self.assertFalse(self.driver.find_element(By.ID, "app-view").is_displayed())

    def test_money_trail(self):
        d = self.driver
        load_ms = self.sign_in("alice", "alice-s3cret")
        self.wait(lambda d: d.find_element(By.ID, "app-view").is_displayed(), what="the console after sign-in")
        self.assertEqual(d.find_element(By.ID, "who-name").text, "alice")
        self.assertEqual(d.find_element(By.ID, "who-role").text, "agent")
        self.wait(lambda d: "gateway running" in d.find_element(By.ID, "health").text, what="the health strip")
        self.assertNotIn("javascript", d.get_cookies()[0].get("name", ""))  # (the cookie is HttpOnly:)
        self.assertEqual(d.execute_script("return document.cookie"), "", "the session cookie is HttpOnly")

        # Order a STOP from the form.
        case = self.rid("TRAIL")
        form = d.find_element(By.ID, "stop-form")
        for name, value in (("bank", "SGTB"), ("account", "TRAIL-0000-S002"), ("amount", "800000")):
            form.find_element(By.NAME, name).send_keys(value)
        case_in = form.find_element(By.NAME, "case")
        case_in.clear()
        case_in.send_keys(case)
        t_order = time.monotonic()
        d.find_element(By.ID, "do-stop").click()
        msg = self.wait(lambda d: (lambda e: e if e.is_displayed() and e.text else None)(d.find_element(By.ID, "msg")),
                        what="the STOP answer")
        self.assertIn("STOP ACCEPTED", msg.text)
        self.assertIn("ok", msg.get_attribute("class"))
        self.wait(lambda d: d.current_url.endswith("/case/" + case), what="the case's address")

        # Watch the trail grow: record every (order, state) the page shows.
        seen = {}

        def settled(d):
            n = self.nodes()
            for oid, v in n.items():
                seen.setdefault(oid, [])
                if not seen[oid] or seen[oid][-1] != v["state"]:
                    seen[oid].append(v["state"])
            final = sorted((v["level"], v["state"]) for v in n.values())
            return final == [(0, "FUNDS_MOVED"), (1, "CONFIRMED"), (1, "FUNDS_MOVED"), (2, "CONFIRMED")]

        self.wait(settled, timeout=30, what="the whole trail, answered")
        trail_ms = (time.monotonic() - t_order) * 1000
        nodes = self.nodes()
        root = [k for k, v in nodes.items() if v["level"] == 0][0]
        # The root was on screen before its bank answered, and changed when it did.
        self.assertIn(seen[root][0], ("ACCEPTED", "SENT"), seen)
        self.assertEqual(seen[root][-1], "FUNDS_MOVED", seen)
        self.assertTrue(any(len(v) >= 2 for k, v in seen.items() if k != root), "children changed state too: %s" % seen)
        # What the page shows is the gateway's truth.
        with self.gw.client("alice") as c:
            for oid, v in nodes.items():
                st = todict(c.ok("STATUS", oid))
                self.assertEqual((v["state"], v["level"]), (st["state"], st["level"]), oid)
                self.assertIn(st["bank"] + " \u00b7 " + st["account"], v["texts"])
        root_texts = " ".join(nodes[root]["texts"])
        self.assertIn("asked 8,000.00", root_texts)
        self.assertIn("moved on 8,000.00 CNY", root_texts)
        frozen = sorted(t for v in nodes.values() for t in v["texts"] if t.startswith("asked"))
        self.assertEqual(frozen, ["asked 6,480.00  \u00b7  frozen 6,480.00 CNY", "asked 7,200.00  \u00b7  frozen 0.00 CNY",
                                  "asked 8,000.00  \u00b7  frozen 0.00 CNY", "asked 800.00  \u00b7  frozen 800.00 CNY"])
        # Three cascade edges, and S001's 10% drawn dashed into T000's live order (MERGED).
        self.assertEqual(len(d.find_elements(By.CSS_SELECTOR, "#tree path.edge:not(.merged)")), 3)
        self.assertEqual(len(d.find_elements(By.CSS_SELECTOR, "#tree path.edge.merged")), 1)
        if os.environ.get("CONSOLE_SCREENSHOT"):
            d.save_screenshot(os.environ["CONSOLE_SCREENSHOT"])

        # A role that lacks CONFIRM is refused by the gateway, and the page says so.
        d.find_element(By.CSS_SELECTOR, '#tree g.node[data-order-id="%s"]' % root).click()
        self.assertEqual(d.find_element(By.CSS_SELECTOR, "#order-form [name=order_id]").get_attribute("value"), root)
        d.find_element(By.ID, "do-confirm").click()
        msg = self.wait(lambda d: (lambda e: e if "CONFIRM" in e.text else None)(d.find_element(By.ID, "msg")),
                        what="the CONFIRM refusal")
        self.assertIn("CONFIRM refused: NOPERM", msg.text)
        self.assertIn("err", msg.get_attribute("class"))

        # The account look-up on the lists: the leaf's account is FROZEN by its order.
        leaf = [k for k, v in nodes.items() if v["level"] == 2][0]
        check = d.find_element(By.ID, "check-form")
        check.find_element(By.NAME, "bank").send_keys("SGTB")
        check.find_element(By.NAME, "account").send_keys("TRAIL 0000 S000")
        d.find_element(By.ID, "do-check").click()
        res = self.wait(lambda d: (lambda e: e if e.is_displayed() and e.text else None)(
            d.find_element(By.ID, "check-result")), what="the look-up")
        self.assertEqual(res.text, "FROZEN by order " + leaf)

        # The address is bookmarkable: a fresh load draws the same trail.
        t0 = time.monotonic()
        d.get(self.base + "/case/" + case)
        self.wait(lambda d: len(self.nodes()) == 4, what="the trail after a reload")
        reload_ms = (time.monotonic() - t0) * 1000
        self.assertEqual(sorted(v["state"] for v in self.nodes().values()),
                         ["CONFIRMED", "CONFIRMED", "FUNDS_MOVED", "FUNDS_MOVED"])
        nav = d.execute_script("const t = performance.getEntriesByType('navigation')[0];"
                               "return [t.domContentLoadedEventEnd, t.loadEventEnd];")
        print("console page: sign-in form shown %.0f ms after get; /case/<case> load->trail drawn %.0f ms "
              "(DOMContentLoaded %.0f ms, load %.0f ms); trail of 4 accounts complete %.0f ms after the STOP "
              "(3 bank answers of %d ms each)" % (load_ms, reload_ms, nav[0], nav[1], trail_ms,
                                                  BANK_LATENCY_US // 1000))


def chromium_starts():
    try:
        new_driver().quit()
        return True, ""
    except (WebDriverException, OSError) as e:
        return False, str(e).strip().splitlines()[0] if str(e).strip() else repr(e)


if __name__ == "__main__":
    ok, why = chromium_starts()
    if not ok:
        print("SKIP: chromium cannot start here: %s" % why)
        sys.exit(77)
    sgtest.main()
