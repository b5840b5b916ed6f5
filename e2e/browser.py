#!/usr/bin/env python3
"""The web console in a real browser (headless Chromium through Selenium), against a real
`tessera serve` on a private PostgreSQL. Run `scripts/browser-deps` once, then
`python3 -m e2e.browser` from the repository root (it re-runs itself with .venv-browser's Python).

1. Sign-in: a wrong token is refused with a message; the bootstrap admin's personal token signs
   in and lands on My token.
2. Members: the admin adds `alice` in the UI. Through the API the admin creates a second
   organization `beta`, adds alice there, and mints alice a personal token in acme (token A).
   Alice signs in with token A, switches to beta (one live personal token per member and org:
   her acme token is the one her session rests on), and on My token creates a personal token
   named `<img src=x onerror=alert(1)>`: shown as text (no <img>, no alert), the secret is
   shown once (`tsp_…`, "Done" disabled until "I have securely saved this token" is ticked, gone
   from the page after Done), then deactivate, activate, rotate (a new secret page) and delete
   (confirmation page) it. Token A is then revoked through the API: her next request lands on
   the sign-in page with a message about the token.
3. Organization tokens (admin again): create `deploy` labelled `ci-deploy` (secret page);
   30 more through the API; the Search field finds exactly one; "Next page" pages through 25+6.
4. Members: removing alice (the confirmation says her personal token will be revoked) revokes
   her live acme token (token B): /auth/verify answers 401 and the API shows it revoked.
5. axe-core (wcag2a, wcag2aa) on every page; every violation is a failed check.
6. A screenshot of every page and e2e/browser-results/results.json (checks, axe, timings from
   the Navigation Timing API, console messages).
7. Browser console messages of level SEVERE (CSP violations among them) are failed checks.

Exit status 1 on any failed check."""

import json
import subprocess
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT_DIR = os.path.dirname(HERE)
VENV = os.path.join(ROOT_DIR, ".venv-browser")
VENV_PYTHON = os.path.join(VENV, "bin", "python")
AXE_JS = os.path.join(VENV, "axe.min.js")

# Re-run with the project's browser virtualenv (selenium lives there), installing it if missing.
if os.path.realpath(sys.prefix) != os.path.realpath(VENV):
    import subprocess
    if not (os.access(VENV_PYTHON, os.X_OK) and os.path.exists(AXE_JS)):
        subprocess.run([os.path.join(ROOT_DIR, "scripts", "browser-deps")], check=True)
    os.chdir(ROOT_DIR)
    os.execv(VENV_PYTHON, [VENV_PYTHON, "-m", "e2e.browser", *sys.argv[1:]])

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (NoAlertPresentException, TimeoutException,  # noqa: E402
                                        WebDriverException)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

sys.dont_write_bytecode = True  # no e2e/__pycache__
from harness import (ROOT, Client, Postgres, Tessera, Workdir, check, checks, exit_with_failures, failures, free_port, log,  # noqa: E402
                     migrate_and_bootstrap, random_token)

RESULTS_DIR = os.path.join(ROOT, "e2e", "browser-results")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 10  # seconds, every explicit wait
XSS_NAME = "<img src=x onerror=alert(1)>"
TOKEN_PATTERN = re.compile(r"ts[po]_[0-9a-f]{128}")

notes = []          # things seen that no check covers (not failures)
pages = {}          # page name → url, title, axe, screenshot, timing, console
console_seen = []   # every browser console message, with the step it came in




def note(what):
    log("note " + what)
    notes.append(what)


class Stop(Exception):
    """A step cannot go on (its page is not there): recorded as a failure, the run moves on."""


# ---------------------------------------------------------------------------------------------
# The browser

def start_browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.set_capability("unhandledPromptBehavior", "ignore")  # an alert stays open for us to see
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    driver.implicitly_wait(0)
    return driver


def xpath_literal(text):
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    return "concat(" + ", \"'\", ".join(f"'{part}'" for part in text.split("'")) + ")"


class Page:
    """Finds things by their accessible name (checked with the browser's computed label)."""

    def __init__(self, driver, base):
        self.driver = driver
        self.base = base
        self.step = "start"

    # -- navigation

    def url(self):
        return self.driver.current_url

    def path(self):
        return self.url().split(self.base, 1)[-1]

    def get(self, path):
        self.driver.get(self.base + path)
        self.loaded()

    def loaded(self):
        WebDriverWait(self.driver, WAIT, ignored_exceptions=(WebDriverException,)).until(
            lambda d: d.execute_script("return document.readyState") == "complete")

    def click(self, element):
        """Clicks something that navigates, and waits for the next document to be complete. The
        old document is marked; mid-navigation the driver may answer with any error, so errors
        while polling mean "not yet"."""
        self.driver.execute_script("document.tesseraOldPage = true")
        what = describe(element)
        element.click()
        try:
            WebDriverWait(self.driver, WAIT, poll_frequency=0.05, ignored_exceptions=(WebDriverException,)).until(
                lambda d: d.execute_script("return document.tesseraOldPage !== true && document.readyState === 'complete'"))
        except TimeoutException:
            raise Stop(f"clicking {what} did not load a new page within {WAIT} s (still {self.path()})")

    # -- finding by accessible name

    def _named(self, xpath, name, what, timeout):
        def find(driver):
            for element in driver.find_elements(By.XPATH, xpath):
                try:
                    if element.accessible_name.strip() == name:
                        return element
                except WebDriverException:
                    continue
            return False
        try:
            return WebDriverWait(self.driver, timeout).until(find)
        except TimeoutException:
            raise Stop(f"no {what} named {name!r} on {self.path()} (h1: {self.h1()!r})")

    def field(self, label, timeout=WAIT):
        lit = xpath_literal(label)
        return self._named(f"//*[@id=//label[normalize-space()={lit}]/@for] | //*[@aria-label={lit}]",
                           label, "field", timeout)

    def button(self, name, timeout=WAIT):
        lit = xpath_literal(name)
        return self._named(f"//button[normalize-space()={lit} or @aria-label={lit}]"
                           f" | //input[(@type='submit' or @type='button') and (@value={lit} or @aria-label={lit})]",
                           name, "button", timeout)

    def link(self, name, timeout=WAIT):
        lit = xpath_literal(name)
        return self._named(f"//a[normalize-space()={lit} or @aria-label={lit}]", name, "link", timeout)

    def has_button(self, name):
        try:
            self.button(name, timeout=0.2)
            return True
        except Stop:
            return False

    def has_link(self, name):
        try:
            self.link(name, timeout=0.2)
            return True
        except Stop:
            return False

    # -- reading

    def h1(self):
        found = self.driver.find_elements(By.TAG_NAME, "h1")
        return found[0].text.strip() if found else None

    def flash(self):
        return " | ".join(e.text.strip() for e in self.driver.find_elements(By.CSS_SELECTOR, "main .flash"))

    def source(self):
        return self.driver.page_source

    def main_html(self, limit=1500):
        found = self.driver.find_elements(By.TAG_NAME, "main")
        html = found[0].get_attribute("outerHTML") if found else self.source()
        return TOKEN_PATTERN.sub("[token]", html)[:limit]

    def rows(self):
        """Token table rows: name (text of the row header), state, owner/label cell."""
        out = []
        for row in self.driver.find_elements(By.CSS_SELECTOR, "main table tbody tr"):
            names = row.find_elements(By.CSS_SELECTOR, "th[scope=row] .name")
            states = row.find_elements(By.CSS_SELECTOR, "td .state")
            cells = row.find_elements(By.TAG_NAME, "td")
            codes = row.find_elements(By.CSS_SELECTOR, "td code")
            out.append({"name": names[0].text if names else row.find_element(By.TAG_NAME, "th").text,
                        "state": states[0].text.strip() if states else None,
                        "owner": cells[0].text.strip() if cells else None,
                        "prefix": codes[0].text.strip().rstrip("…") if codes else None,
                        "actions": len(row.find_elements(By.CSS_SELECTOR, "td.actions button, td.actions a"))})
        return out

    def alert_text(self):
        try:
            alert = self.driver.switch_to.alert
            text = alert.text
            alert.dismiss()
            return text
        except NoAlertPresentException:
            return None


def describe(element):
    try:
        return f"<{element.tag_name}> {element.accessible_name!r}"
    except WebDriverException:
        return "an element"


# ---------------------------------------------------------------------------------------------
# Per page: axe-core, a screenshot, navigation timing, console messages

AXE_RUN = """
var done = arguments[arguments.length - 1];
axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']}})
  .then(function (r) {
    done({violations: r.violations.map(function (v) {
      return {id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length,
              target: v.nodes.length ? v.nodes[0].target.join(' ') : null,
              html: v.nodes.length ? v.nodes[0].html.slice(0, 300) : null};
    }), passes: r.passes.length, incomplete: r.incomplete.map(function (v) { return v.id; })});
  }, function (e) { done({error: String(e)}); });
"""

NAV_TIMING = """
var n = performance.getEntriesByType('navigation')[0];
if (!n) return null;
return {duration_ms: n.duration, ttfb_ms: n.responseStart - n.requestStart,
        dom_content_loaded_ms: n.domContentLoadedEventEnd, load_ms: n.loadEventEnd,
        transfer_bytes: n.transferSize, status: n.responseStatus === undefined ? null : n.responseStatus};
"""


def collect_console(page):
    try:
        entries = page.driver.get_log("browser")
    except WebDriverException:
        return []
    for entry in entries:
        entry["step"] = page.step
        entry["message"] = TOKEN_PATTERN.sub("[token]", entry.get("message", ""))
        console_seen.append(entry)
    return entries


def screenshot(page, name):
    path = os.path.join(RESULTS_DIR, f"{name}.png")
    driver = page.driver
    try:  # the whole page, not only the 1280×900 viewport
        metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
        import base64
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
    except WebDriverException:
        driver.save_screenshot(path)
    return os.path.relpath(path, ROOT)


def inspect(page, name, mask_secrets=False):
    """axe-core, a screenshot, timing and console messages of the page the browser is on."""
    driver = page.driver
    record = {"url": page.path(), "title": driver.title, "h1": page.h1()}
    record["timing"] = driver.execute_script(NAV_TIMING)
    with open(AXE_JS) as f:
        driver.execute_script(f.read())
    axe = driver.execute_async_script(AXE_RUN)
    record["axe"] = axe
    if axe.get("error"):
        check(False, f"axe-core ran on {name} ({axe['error']})")
    else:
        violations = axe["violations"]
        detail = "; ".join(f"{v['id']} ({v['impact']}, {v['nodes']} node(s), first {v['target']})" for v in violations)
        check(not violations, f"axe wcag2a/wcag2aa on {name} ({page.path()}): "
              + (f"{len(violations)} violation(s): {detail}" if violations else f"no violation, {axe['passes']} rules pass"))
    if mask_secrets:  # the screenshot must not hold a live secret; the page's text is replaced
        driver.execute_script("""
            document.querySelectorAll('textarea, code, pre').forEach(function (e) {
              var re = /ts[po]_[0-9a-f]{128}/g;
              if (e.value !== undefined && re.test(e.value)) e.value = e.value.replace(re, '[secret hidden in the screenshot]');
              e.childNodes.forEach(function (n) { if (n.nodeType === 3) n.textContent = n.textContent.replace(re, '[secret hidden]'); });
            });""")
    record["screenshot"] = screenshot(page, name)
    record["console"] = [{"level": e["level"], "message": e["message"]} for e in collect_console(page)]
    pages[name] = record
    return record


# ---------------------------------------------------------------------------------------------
# Steps

def sign_in(page, token, expect_ok=True):
    page.get("/console/")
    if "/console/sign-in" not in page.path():
        raise Stop(f"/console/ did not lead to the sign-in page (at {page.path()})")
    page.field("API token").send_keys(token)
    page.click(page.button("Sign in"))
    if expect_ok and not page.path().startswith("/console/my-token"):
        raise Stop(f"signing in did not land on My token: {page.path()}, flash {page.flash()!r}")


def sign_out(page):
    page.click(page.button("Sign out"))


def step_sign_in(page, root):
    page.step = "sign-in"
    log("-- sign in")
    page.get("/console/")
    check(page.path().startswith("/console/sign-in"), f"/console/ sends a visitor to the sign-in page ({page.path()})")
    field = page.field("API token")
    check(field.get_attribute("type") == "password", "the API token field is a password field")
    page.button("Sign in")
    inspect(page, "01-sign-in")

    field.send_keys(random_token("tsp"))
    page.click(page.button("Sign in"))
    check(page.path().startswith("/console/sign-in") and "does not work" in page.flash(),
          f"an unknown token is refused with a message ({page.flash()!r})")
    inspect(page, "02-sign-in-refused")

    page.field("API token").send_keys(root)
    page.click(page.button("Sign in"))
    check(page.path() == "/console/my-token" and page.h1() == "My token",
          f"the bootstrap admin's personal token signs in and lands on My token ({page.path()}, h1 {page.h1()!r})")
    for name in ("My token", "Organization tokens", "Members", "Policy", "Audit log"):
        check(page.has_link(name), f"nav link {name!r}")
    check(page.has_button("Sign out"), "a 'Sign out' button")
    current = page.driver.find_elements(By.CSS_SELECTOR, "nav a[aria-current=page]")
    check([a.text for a in current] == ["My token"], "My token is the current page in the nav")
    rows = page.rows()
    check(len(rows) == 1 and rows[0]["state"] == "active", f"My token lists the admin's bootstrap token ({rows})")
    inspect(page, "03-my-token-admin")
    reach = page.driver.execute_script("""
        var a = document.querySelector('main a[aria-label^="Delete "]'); if (!a) return null;
        var w = a.closest('.table-wrap'), r = a.getBoundingClientRect(), v = w.getBoundingClientRect();
        return {linkRight: r.right, wrapRight: v.right, scrollWidth: w.scrollWidth, clientWidth: w.clientWidth};""")
    if reach and reach["linkRight"] > reach["wrapRight"]:
        note(f"My token at 1280 px: the row's Delete link is cut off by the table's horizontal scroll "
             f"(link right edge {reach['linkRight']:.0f} px, table box right edge {reach['wrapRight']:.0f} px, "
             f"scrollWidth {reach['scrollWidth']} > clientWidth {reach['clientWidth']})")


def step_members_add(page):
    page.step = "members-add"
    log("-- add member alice in the UI")
    page.click(page.link("Members"))
    check(page.h1() == "Members", f"Members page opens from the nav ({page.path()})")
    page.field("Username").send_keys("alice")
    Select(page.field("Role")).select_by_visible_text("member")
    page.field("Groups").send_keys("dev, ops")
    page.click(page.button("Add member"))
    check("alice was added as member" in page.flash(), f"adding alice shows a message ({page.flash()!r})")
    check(page.has_link("Remove alice"), "alice's row has a 'Remove alice' link")
    groups = page.driver.find_elements(By.ID, "groups-alice")
    check(bool(groups) and groups[0].get_attribute("value") == "dev, ops",
          f"alice's groups are kept ({groups[0].get_attribute('value') if groups else None!r})")
    inspect(page, "04-members")


def step_personal_token(page, api, root):
    page.step = "alice-setup"
    log("-- alice: a personal token created, managed and deleted in the UI")
    status, _, _, text = api.request("POST", "/orgs", root, {"slug": "beta", "displayName": "Beta"})
    check(status == 201, f"API: create organization beta ({status})")
    status, _, _, _ = api.request("PUT", "/orgs/beta/members/alice", root, {"role": "member"})
    check(status == 200, f"API: add alice to beta ({status})")
    status, _, token_a, _ = api.request("POST", "/orgs/acme/api-tokens/alice", root, {"name": "alice-sign-in"})
    if not check(status == 201, f"API: mint alice's personal token A in acme ({status})"):
        raise Stop("no token for alice")
    secret_a, id_a = token_a["token"], token_a["tokenUUID"]

    sign_out(page)
    check(page.path().startswith("/console/sign-in") and "signed out" in page.flash(),
          f"Sign out leads to the sign-in page saying so ({page.path()}, {page.flash()!r})")
    page.step = "alice-sign-in"
    page.field("API token").send_keys(secret_a)
    page.click(page.button("Sign in"))
    check(page.path() == "/console/my-token", f"alice signs in with token A ({page.path()}, {page.flash()!r})")
    check(not page.has_link("Members"), "alice (a member) has no Members link")

    page.step = "alice-switch-org"
    Select(page.field("Organization")).select_by_value("beta")
    page.click(page.button("Switch"))
    check(page.path() == "/console/my-token" and "Beta" in page.driver.find_element(By.TAG_NAME, "main").text,
          f"alice switches to beta ({page.path()})")
    check(not page.rows(), f"alice has no token in beta yet ({page.rows()})")
    inspect(page, "05-my-token-member-empty")

    page.step = "alice-create"
    page.field("Name").send_keys(XSS_NAME)
    page.field("Description").send_keys("made by the browser suite")
    Select(page.field("Expires")).select_by_visible_text("30 days")
    scopes = page.driver.find_elements(By.XPATH, "//fieldset[legend[normalize-space()='Scopes']]")
    check(len(scopes) == 1 and scopes[0].accessible_name == "Scopes", "a 'Scopes' fieldset")
    boxes = scopes[0].find_elements(By.CSS_SELECTOR, "input[type=checkbox]") if scopes else []
    check(len(boxes) >= 1 and any(b.is_selected() for b in boxes),
          f"Scopes offers checkboxes, the defaults ticked ({sum(b.is_selected() for b in boxes)}/{len(boxes)})")
    page.click(page.button("Create token"))
    secret = secret_page(page, "06-secret-created", "tsp_", api, back="/console/my-token")

    page.step = "alice-xss-name"
    alert = page.alert_text()
    check(alert is None, f"no alert fired ({alert!r})")
    names = [r["name"] for r in page.rows()]
    check(XSS_NAME in names, f"the name is shown as text in the row ({names})")
    check(not page.driver.find_elements(By.CSS_SELECTOR, "img[src='x'], img[src$='/x'], [onerror]"),
          "no <img src=x> (nor any onerror attribute) in the page")
    check("&lt;img src=x onerror=alert(1)&gt;" in page.source(), "the name is HTML-escaped in the source")

    if secret:
        check(api.get("/auth/verify", token=secret)[0] == 200, "API: the new token verifies")

    page.step = "alice-deactivate"
    page.click(page.button(f"Deactivate {XSS_NAME}"))
    state = state_of(page, XSS_NAME)
    check(state == "inactive", f"Deactivate: status shows inactive ({state}; {page.flash()!r})")
    if secret:
        check(api.get("/auth/verify", token=secret)[0] == 401, "API: the inactive token is refused")
    page.step = "alice-activate"
    page.click(page.button(f"Activate {XSS_NAME}"))
    state = state_of(page, XSS_NAME)
    check(state == "active", f"Activate: status shows active ({state}; {page.flash()!r})")

    page.step = "alice-rotate"
    page.click(page.button(f"Rotate {XSS_NAME}"))
    check(page.h1() == "Token rotated", f"Rotate leads to a new secret page (h1 {page.h1()!r})")
    rotated = secret_page(page, "07-secret-rotated", "tsp_", api, back="/console/my-token")
    check(bool(rotated) and rotated != secret, "the rotated secret is a new one")
    if rotated and secret:
        check(api.get("/auth/verify", token=rotated)[0] == 200, "API: the rotated secret verifies")
        check(api.get("/auth/verify", token=secret)[0] == 401, "API: the old secret stops at once (no overlap chosen)")
    rows = {r["prefix"]: r for r in page.rows()}
    new_row = rows.get((rotated or "")[:12]) or {}
    old_row = rows.get((secret or "")[:12]) or {}
    check(new_row.get("name") == XSS_NAME and new_row.get("state") == "active",
          f"after rotation the new token is listed, same name, active ({new_row})")
    check(not old_row, f"the rotated-away token is no longer listed on My token ({old_row})")

    page.step = "alice-delete"
    page.click(page.link(f"Delete {XSS_NAME}"))
    check(page.h1() == "Delete token", f"Delete leads to a confirmation page (h1 {page.h1()!r})")
    check(XSS_NAME in page.driver.find_element(By.TAG_NAME, "main").text, "the confirmation names the token")
    check(not page.driver.find_elements(By.CSS_SELECTOR, "img[src='x'], [onerror]"), "no <img src=x> on the confirmation")
    inspect(page, "08-confirm-delete")
    page.click(page.button("Delete"))
    check(page.path().startswith("/console/my-token") and "was deleted" in page.flash(),
          f"Delete confirmed: back on My token with a message ({page.path()}, {page.flash()!r})")
    left = [r for r in page.rows() if r["prefix"] == (rotated or "")[:12]]
    check(rotated and not left, f"the deleted token's row is gone ({left})")
    if rotated:
        check(api.get("/auth/verify", token=rotated)[0] == 401, "API: the deleted token is refused")

    page.step = "alice-session-ends"
    status, _, _, _ = api.request("DELETE", f"/api-tokens/{id_a}", root)
    check(status == 200, f"API: revoke token A, the one alice signed in with ({status})")
    page.driver.refresh()
    page.loaded()
    flash = page.flash()
    check(page.path().startswith("/console/sign-in") and "token you signed in with" in flash,
          f"alice's next request ends her session: sign-in page with a message ({page.path()}, {flash!r})")
    inspect(page, "09-sign-in-session-ended")
    page.get("/console/my-token")
    check(page.path().startswith("/console/sign-in"), f"the ended session stays ended ({page.path()})")


def state_of(page, name):
    for row in page.rows():
        if row["name"] == name:
            return row["state"]
    return None


def secret_page(page, shot, prefix, api, back):
    """The page showing a new secret once; returns the secret (None if there was none)."""
    fields = page.driver.find_elements(By.ID, "secret")
    try:
        textarea = page.field("Token")
    except Stop:
        check(False, f"{shot}: a 'Token' field (h1 {page.h1()!r}, flash {page.flash()!r}): {page.main_html(600)}")
        return None
    secret = (textarea.get_attribute("value") or "").strip()
    check(textarea.tag_name == "textarea" and textarea.get_attribute("readonly") is not None,
          f"{shot}: the secret is in a read-only textarea labelled 'Token'")
    check(secret.startswith(prefix) and TOKEN_PATTERN.fullmatch(secret) is not None,
          f"{shot}: the secret starts with {prefix} ({secret[:8]}…)")
    saved = page.field("I have securely saved this token")
    done = page.button("Done")
    check(saved.get_attribute("type") == "checkbox" and not saved.is_selected(), f"{shot}: the checkbox starts unticked")
    check(saved.get_attribute("required") is not None, f"{shot}: the checkbox is required (works without JavaScript)")
    check(not done.is_enabled(), f"{shot}: Done is disabled until the checkbox is ticked")
    looks = "var s = getComputedStyle(arguments[0]); return [s.backgroundColor, s.color, s.opacity, s.cursor].join(' ');"
    disabled_look = page.driver.execute_script(looks, done)
    check(page.driver.execute_script("return document.documentElement.classList.contains('js')"),
          f"{shot}: console.js ran (CSP let it)")
    inspect(page, shot, mask_secrets=True)
    saved.click()
    check(done.is_enabled(), f"{shot}: ticking the checkbox enables Done")
    if page.driver.execute_script(looks, done) == disabled_look and shot.startswith("06"):
        note(f"{shot}: Done looks the same disabled and enabled ({disabled_look}): console.css has no :disabled style")
    saved.click()
    check(not done.is_enabled(), f"{shot}: unticking disables Done again")
    saved.click()
    page.click(done)
    check(page.path().split("?")[0] == back, f"{shot}: Done leads back to {back} ({page.path()})")
    check(secret not in page.source(), f"{shot}: after Done the secret is not in the page source")
    return secret or None


def step_org_tokens(page, api, root, results):
    page.step = "org-token-create"
    log("-- organization tokens")
    sign_in(page, root)
    page.click(page.link("Organization tokens"))
    check(page.h1() == "Organization tokens", f"Organization tokens opens from the nav ({page.path()})")
    section = page.driver.find_elements(By.XPATH, "//section[h2[normalize-space()='New organization token']]")
    check(len(section) == 1 and section[0].accessible_name == "New organization token",
          "a 'New organization token' section")
    page.field("Label").send_keys("ci-deploy")
    page.field("Name").send_keys("deploy")
    page.click(page.button("Create organization token"))
    check(page.h1() == "Organization token created", f"creating it shows the secret page (h1 {page.h1()!r})")
    secret = secret_page(page, "10-secret-org-token", "tso_", api, back="/console/org-tokens")
    rows = page.rows()
    check(any(r["name"] == "deploy" and r["owner"].startswith("ci-deploy") for r in rows),
          f"the 'deploy' token labelled ci-deploy is listed ({rows[:3]})")
    if secret:
        check(api.get("/auth/verify", token=secret)[0] == 200, "API: the org token verifies")

    page.step = "org-token-bulk"
    started = time.perf_counter()
    created = 0
    for i in range(30):
        status, _, _, _ = api.request("POST", f"/api-tokens/svc-{i:03d}", root,
                                      {"name": f"batch-{i:03d}", "isSystemToken": True, "scopes": ["api:read"]})
        created += status == 201
    check(created == 30, f"API: 30 more organization tokens in {time.perf_counter() - started:.2f} s ({created} created)")

    page.step = "org-token-list"
    page.get("/console/org-tokens")
    first = page.rows()
    timing = page.driver.execute_script(NAV_TIMING)
    results["org_tokens_list"] = {"page1": timing}
    check(len(first) == 25, f"page 1 shows 25 tokens ({len(first)})")
    check(first and first[0]["name"] == "batch-029", f"newest first ({first[0]['name'] if first else None})")
    inspect(page, "11-org-tokens")
    check(page.has_link("Next page"), "a 'Next page' link")
    page.click(page.link("Next page"))
    second = page.rows()
    results["org_tokens_list"]["page2"] = page.driver.execute_script(NAV_TIMING)
    check(len(second) == 6, f"page 2 shows the other 6 ({len(second)})")
    names = [r["name"] for r in first + second]
    expected = {f"batch-{i:03d}" for i in range(30)} | {"deploy"}
    check(len(names) == 31 and set(names) == expected, f"the two pages hold all 31, each once ({len(set(names))} distinct)")
    check(not page.has_link("Next page"), "no 'Next page' on the last page")
    check(page.has_link("First page"), "a 'First page' link on page 2")
    inspect(page, "12-org-tokens-page-2")

    page.step = "org-token-search"
    search = page.field("Search")
    search.clear()
    search.send_keys("batch-017")
    page.click(page.button("Apply"))
    found = page.rows()
    results["org_tokens_list"]["search"] = page.driver.execute_script(NAV_TIMING)
    check([r["name"] for r in found] == ["batch-017"], f"Search 'batch-017' shows exactly it ({[r['name'] for r in found]})")
    check(page.field("Search").get_attribute("value") == "batch-017", "the Search field keeps the query")
    check("search=batch-017" in page.path(), f"the search is in the URL ({page.path()})")
    inspect(page, "13-org-tokens-search")
    t = results["org_tokens_list"]
    log("org tokens list navigation duration: page 1 {:.0f} ms, page 2 {:.0f} ms, search {:.0f} ms".format(
        *[(t[k] or {}).get("duration_ms") or -1 for k in ("page1", "page2", "search")]))


def step_remove_member(page, api, root):
    page.step = "remove-member"
    log("-- remove alice")
    status, _, token_b, _ = api.request("POST", "/orgs/acme/api-tokens/alice", root, {"name": "alice-laptop"})
    if not check(status == 201, f"API: mint alice's personal token B in acme ({status})"):
        raise Stop("no token B")
    check(api.get("/auth/verify", token=token_b["token"])[0] == 200, "API: token B verifies")
    page.click(page.link("Members"))
    page.click(page.link("Remove alice"))
    check(page.h1() == "Remove member", f"'Remove alice' leads to a confirmation page (h1 {page.h1()!r})")
    warning = " ".join(e.text for e in page.driver.find_elements(By.CSS_SELECTOR, "main .warning"))
    check("1 active personal token(s)" in warning and "revoked" in warning,
          f"the confirmation says her personal token will be revoked ({warning!r})")
    inspect(page, "14-confirm-remove")
    page.click(page.button("Remove"))
    check(page.path() == "/console/members" and "alice was removed" in page.flash(),
          f"Remove confirmed: back on Members with a message ({page.path()}, {page.flash()!r})")
    check(not page.has_link("Remove alice"), "alice's row is gone")
    status = api.get("/auth/verify", token=token_b["token"])[0]
    check(status == 401, f"API: /auth/verify with alice's token B answers 401 ({status})")
    status, _, info, _ = api.request("GET", f"/api-tokens/{token_b['tokenUUID']}", root)
    check(status == 200 and (info or {}).get("status") == "revoked",
          f"API: token B is revoked ({status}, {(info or {}).get('status')}, {(info or {}).get('revokedReason')})")


# A long URL with nothing to break at: it must wrap, not widen the page or the table.
HOOK_URL = "http://127.0.0.1:9/hook/" + "x" * 150


def fits_sideways(page):
    """Neither the page nor any table scrolls sideways."""
    return page.driver.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth && "
        "[...document.querySelectorAll('.table-wrap')].every(e => e.scrollWidth <= e.clientWidth + 1)")


def step_webhooks(page):
    page.step = "webhooks"
    log("-- webhooks: add one (the secret shown once), its delivery log")
    page.click(page.link("Webhooks"))
    check(page.h1() == "Webhooks", f"Webhooks opens from the nav ({page.path()})")
    page.field("URL").send_keys(HOOK_URL)
    page.field("Description").send_keys("<b>alerts</b>")
    page.field("token.expiring").click()  # a checkbox: no new page
    page.field("token.leaked").click()
    page.click(page.button("Add webhook"))
    check(page.h1() == "Webhook added", f"adding a webhook shows its secret page (h1 {page.h1()!r}, flash {page.flash()!r})")
    secret = (page.field("Secret").get_attribute("value") or "").strip()
    check(secret.startswith("whsec_"), f"the signing secret is shown (whsec_…: {secret[:6]!r})")
    inspect(page, "14a-webhook-secret")
    page.field("I have saved this secret").click()
    page.click(page.button("Done"))
    check(page.path().split("?")[0] == "/console/webhooks", f"Done leads back to the webhooks ({page.path()})")
    source = page.source()
    check(secret and secret not in source, "after Done the webhook secret is not in the page")
    check("<b>alerts</b>" not in source and "&lt;b&gt;alerts&lt;/b&gt;" in source, "the description is escaped")
    check("token.expiring, token.leaked" in source, "the chosen events are listed")
    inspect(page, "14b-webhooks")
    check(fits_sideways(page), "a 174-character URL wraps in the webhooks table (no sideways scroll)")
    page.click(page.link(HOOK_URL))
    check(page.h1() == "Deliveries", f"a webhook's delivery log opens ({page.path()})")
    inspect(page, "14c-webhook-deliveries")
    check(fits_sideways(page), "and on its delivery log")
    page.click(page.link("All webhooks"))
    page.click(page.button(f"Pause {HOOK_URL}"))
    check("paused" in page.flash(), f"pausing shows a message ({page.flash()!r})")


def step_trust_policies(page):
    page.step = "trust-policies"
    log("-- trust policies: add one with two conditions, its page, 420 px, delete it")
    page.click(page.link("Trust policies"))
    check(page.h1() == "Trust policies", f"Trust policies opens from the nav ({page.path()})")
    inspect(page, "14d-trust-policies-empty")
    page.field("Name").send_keys("deploy <main>")
    page.field("Issuer").send_keys("http://127.0.0.1:9/a-rather-long-issuer-path/" + "y" * 90)
    page.field("Audience").send_keys("https://tessera.example.com")
    page.field("Claim 1").send_keys("repository")
    page.field("Pattern 1").send_keys("acme/app")
    page.field("Claim 2").send_keys("ref")
    page.field("Pattern 2").send_keys("refs/heads/*")
    page.driver.find_element(By.ID, "scope-api-read").click()
    lifetime = page.field("Token lifetime (minutes, 1 to 60)")
    lifetime.clear()
    lifetime.send_keys("10")
    page.click(page.button("Add trust policy"))
    check(page.h1() == "Trust policy deploy <main>", f"adding a policy opens its page (h1 {page.h1()!r}, {page.flash()!r})")
    source = page.source()
    check("deploy &lt;main&gt;" in source and "refs/heads/*" in source and "10 min" in source,
          "its page shows the escaped name, the conditions and the lifetime")
    inspect(page, "14e-trust-policy")
    check(fits_sideways(page), "a 136-character issuer wraps on the policy's page")
    page.click(page.link("All trust policies"))
    inspect(page, "14f-trust-policies")
    check(fits_sideways(page), "and in the policies table")
    page.driver.set_window_size(420, 900)
    try:
        inspect(page, "14g-trust-policies-420px")
        check(fits_sideways(page), "at 420 px the trust policies page does not scroll sideways")
    finally:
        page.driver.set_window_size(1280, 900)
    page.click(page.link("deploy <main>"))
    page.click(page.button("Delete trust policy deploy <main>"))
    check(page.path() == "/console/trust-policies" and "deleted" in page.flash(),
          f"Delete leads back with a message ({page.path()}, {page.flash()!r})")


def step_usage(page, api, root):
    page.step = "usage"
    log("-- a token's page (rules, addresses, its chart) and the Usage page, at 1280 and 420 px")
    status, _, made, _ = api.request("POST", "/api-tokens/deployer", root, {
        "name": "deploy iris", "isSystemToken": True, "scopes": ["api:read"],
        "accessRules": [{"method": "GET", "path": "/deployments/iris/**"},
                        {"method": "POST", "path": "/deployments/iris/*/restart", "host": "api.example.com"}],
        "allowedCidrs": ["10.0.0.0/8", "2001:db8::/32"]})
    if not check(status == 201, f"API: a token with rules and address limits ({status})"):
        raise Stop("no token")
    for i, (address, uri) in enumerate([("10.0.0.7", "/deployments/iris/v1")] * 5 + [("10.0.0.8", "/deployments/rose")]
                                       + [("192.168.1.1", "/deployments/iris/v1")]):
        api.get("/auth/verify", token=made["token"], headers={"X-Real-IP": address, "X-Original-Method": "GET",
                                                              "X-Original-URI": uri})
    time.sleep(1.5)  # the server flushes usage every second here
    page.get(f"/console/tokens/{made['tokenUUID']}")
    check(page.h1() == "deploy iris", f"the token's page opens ({page.h1()!r})")
    source = page.source()
    check("GET /deployments/iris/**" in source and "10.0.0.0/8, 2001:db8::/32" in source and "10.0.0.7" in source,
          "it shows the rules, the address limits and the last address")
    check("usage-chart" in source, "and the chart")
    inspect(page, "14h-token-page")
    check(fits_sideways(page), "the token's page does not scroll sideways at 1280 px")
    page.click(page.link("Usage"))
    check(page.h1() == "Usage", f"Usage opens from the nav ({page.path()})")
    inspect(page, "14i-usage")
    page.driver.set_window_size(420, 900)
    try:
        page.get(f"/console/tokens/{made['tokenUUID']}")
        inspect(page, "14j-token-page-420px")
        check(fits_sideways(page), "at 420 px the token's page does not scroll sideways")
        page.get("/console/usage")
        inspect(page, "14k-usage-420px")
        check(fits_sideways(page), "at 420 px the Usage page does not scroll sideways")
        page.get("/console/org-tokens")
        inspect(page, "14l-org-tokens-420px")
    finally:
        page.driver.set_window_size(1280, 900)


def step_policy_audit(page):
    page.step = "policy"
    log("-- policy and audit log")
    page.click(page.link("Policy"))
    check(page.h1() == "Policy", f"Policy opens from the nav ({page.path()})")
    inspect(page, "15-policy")
    page.step = "provisioning"
    section = page.driver.find_element(By.ID, "provisioning").find_element(By.XPATH, "..").text
    check("/scim/v2/acme" in section, f"the Provisioning section shows the SCIM base URL ({section[:160]!r})")
    page.click(page.button("Create SCIM token"))
    check(page.h1() == "SCIM token created", f"Create SCIM token shows the secret once ({page.h1()!r}, {page.flash()!r})")
    secret = secret_page(page, "15b-scim-token", "tso_", None, "/console/policy")
    if secret:
        status = Client(page.base.split("//")[1]).get("/scim/v2/acme/ServiceProviderConfig", token=secret)[0]
        check(status == 200, f"the console's SCIM token opens /scim/v2/acme ({status})")
    page.step = "audit"
    page.click(page.link("Audit log"))
    check(page.h1() == "Audit log", f"Audit log opens from the nav ({page.path()})")
    actions = [e.text for e in page.driver.find_elements(By.CSS_SELECTOR, "main tbody th[scope=row]")]
    check("member.removed" in actions or any("removed" in a for a in actions),
          f"the audit log shows the removal ({sorted(set(actions))[:12]})")
    inspect(page, "16-audit-log")
    page.step = "sign-out"
    sign_out(page)
    check(page.path().startswith("/console/sign-in"), "the admin signs out")


# ---------------------------------------------------------------------------------------------

def start_oidc_provider(work):
    """oidc-provider-mock (a real OpenID Connect provider process) on a free loopback port."""
    port = free_port()
    binary = os.path.join(ROOT, ".venv-browser/bin/oidc-provider-mock")
    log_path = os.path.join(work.path, "oidc.log")
    # dana's ID token carries groups (DESIGN §12): her membership follows them at each sign-in.
    process = subprocess.Popen([binary, "--port", str(port), "--require-nonce", "true",
                                "--user-claims", json.dumps({"sub": "dana", "groups": ["idp-admins", "elsewhere"]})],
                               stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)
    work.on_close(process.terminate)
    issuer = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if Client(f"127.0.0.1:{port}").get("/.well-known/openid-configuration")[0] == 200:
                return issuer
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"oidc-provider-mock did not start; see {log_path}")


def step_oidc(page, api, root):
    """Sign in with SSO: the provider's page, back to the console as that user; a denial is a message."""
    page.step = "oidc"
    sign_out_if_needed(page)
    page.get("/console/sign-in")
    page.click(page.link("Sign in with SSO"))
    WebDriverWait(page.driver, WAIT).until(lambda d: "/oauth2/authorize" in d.current_url)
    check("code_challenge_method=S256" in page.url() and "nonce=" in page.url() and "state=" in page.url(),
          "the provider is asked with PKCE S256, a state and a nonce")
    sub = page.driver.find_element(By.NAME, "sub")
    sub.send_keys("alice")
    page.click(page.driver.find_element(By.XPATH, "//button[normalize-space()='Authorize']"))
    WebDriverWait(page.driver, WAIT).until(lambda d: "/console/" in d.current_url and "/oauth2/" not in d.current_url)
    check(page.path() == "/console/my-token", f"Sign in with SSO as alice lands on My token ({page.path()}, {page.flash()!r})")
    check("alice" in page.driver.find_element(By.CSS_SELECTOR, ".me").text, "the console shows alice signed in")
    screenshot(page, "17-oidc-signed-in")
    sign_out(page)
    # Denied at the provider: back on the sign-in page with the provider's reason.
    page.get("/console/sign-in")
    page.click(page.link("Sign in with SSO"))
    WebDriverWait(page.driver, WAIT).until(lambda d: "/oauth2/authorize" in d.current_url)
    page.click(page.driver.find_element(By.XPATH, "//button[normalize-space()='Deny']"))
    WebDriverWait(page.driver, WAIT).until(lambda d: "/console/" in d.current_url)
    check(page.path().startswith("/console/oidc/callback") and "refused the sign-in" in page.flash(),
          f"a denial at the provider is a message on the sign-in page ({page.path()}, {page.flash()!r})")
    inspect(page, "sign-in-oidc-denied")


def step_sso_groups(page, api, root):
    """SSO brings the groups: an org mapping idp-admins to admin, just-in-time membership on."""
    page.step = "sso-groups"
    sign_out_if_needed(page)
    status = api.request("POST", "/orgs", token=root, body={"slug": "idp", "displayName": "IdP-run org"})[0]
    check(status == 201, f"a platform admin creates org idp ({status})")
    status = api.request("PATCH", "/orgs/idp", token=root, body={"adminGroup": "idp-admins"})[0]
    check(status == 200, f"idp maps the IdP group idp-admins to admin ({status})")
    page.get("/console/sign-in")
    page.click(page.link("Sign in with SSO"))
    WebDriverWait(page.driver, WAIT).until(lambda d: "/oauth2/authorize" in d.current_url)
    page.driver.find_element(By.NAME, "sub").send_keys("dana")
    page.click(page.driver.find_element(By.XPATH, "//button[normalize-space()='Authorize']"))
    WebDriverWait(page.driver, WAIT).until(lambda d: "/console/" in d.current_url and "/oauth2/" not in d.current_url)
    check(page.path() == "/console/my-token", f"dana, new to Tessera, signs in with SSO ({page.path()}, {page.flash()!r})")
    page.get("/console/members")
    check(page.path() == "/console/members" and "dana" in page.main_html(),
          "her groups made her a member and an admin of idp: she sees Members")
    screenshot(page, "18-sso-groups-admin")
    sign_out(page)
    status, _, members, _ = api.request("GET", "/orgs/idp/members", token=root)
    dana = [m for m in (members or {}).get("members", []) if m.get("username") == "dana"]
    check(dana and dana[0].get("role") == "admin" and dana[0].get("groups") == ["idp-admins"],
          f"the membership holds the org's known group only, role admin ({dana})")


def sign_out_if_needed(page):
    if page.has_button("Sign out"):
        sign_out(page)


def main():
    started = time.monotonic()
    os.makedirs(RESULTS_DIR, exist_ok=True)
    for old in os.listdir(RESULTS_DIR):
        if old.endswith(".png"):
            os.remove(os.path.join(RESULTS_DIR, old))
    work = Workdir("browser")
    pg = Postgres(work)
    boot = migrate_and_bootstrap(pg.url)
    root = boot["token"]
    issuer = start_oidc_provider(work)
    server = Tessera(work, pg.url, name="tessera", env={
        "TESSERA_OIDC_ISSUER": issuer, "TESSERA_OIDC_CLIENT_ID": "tessera-console", "TESSERA_OIDC_CLIENT_SECRET": "browser-suite",
        "TESSERA_OIDC_JIT": "true",
        "TESSERA_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true", "TESSERA_FEDERATION_ALLOW_HTTP_ISSUERS": "true",
        "TESSERA_USAGE_FLUSH_SECONDS": "1"})
    api = Client(server.base)
    base = f"http://{server.base}"
    log(f"tessera at {base}/console/, setup {time.monotonic() - started:.1f} s")

    driver = start_browser()
    work.on_close(driver.quit)
    log(f"chromium {driver.capabilities.get('browserVersion')}, "
        f"chromedriver {driver.capabilities.get('chrome', {}).get('chromedriverVersion', '?').split(' ')[0]}")
    page = Page(driver, base)
    results = {}
    steps = [("sign in", lambda: step_sign_in(page, root)),
             ("members", lambda: step_members_add(page)),
             ("personal token", lambda: step_personal_token(page, api, root)),
             ("organization tokens", lambda: step_org_tokens(page, api, root, results)),
             ("remove member", lambda: step_remove_member(page, api, root)),
             ("webhooks", lambda: step_webhooks(page)),
             ("trust policies", lambda: step_trust_policies(page)),
             ("usage", lambda: step_usage(page, api, root)),
             ("policy and audit", lambda: step_policy_audit(page)),
             ("sign in with SSO", lambda: step_oidc(page, api, root)),
             ("SSO brings the groups", lambda: step_sso_groups(page, api, root))]
    for name, run in steps:
        try:
            run()
        except (Stop, WebDriverException) as error:
            message = error.msg if isinstance(error, WebDriverException) else str(error)
            check(False, f"step '{name}' stopped at {page.step}: {str(message).splitlines()[0] if message else error!r}")
            try:
                log("page main:", page.main_html())
                screenshot(page, f"zz-stopped-{page.step}")
            except WebDriverException:
                pass
            if name == "sign in":
                break
        collect_console(page)

    page.step = "end"
    collect_console(page)
    for entry in console_seen:  # the refused sign-in is answered 401, which Chrome logs: expected
        if entry["step"] == "sign-in" and "/console/sign-in - " in entry["message"] and "status of 401" in entry["message"]:
            entry["expected"] = True
    for entry in console_seen:  # the identity provider's own page (its CDN stylesheet, its favicon), and the
        # 400 of the sign-in page answering a denied SSO sign-in, are not the console's
        if entry["step"] in ("oidc", "sso-groups") and (not entry["message"].startswith(base) or "/console/oidc/callback?error=" in entry["message"]):
            entry["expected"] = True
    unexpected = [e for e in console_seen if e["level"] == "SEVERE" and not e.get("expected")]
    check(not unexpected, f"no SEVERE browser console message ({len(unexpected)}"
          + (": " + "; ".join(f"[{e['step']}] {e['message'][:200]}" for e in unexpected) if unexpected else "") + ")")
    csp = [e for e in console_seen if "Content Security Policy" in e["message"]]
    check(not csp, f"no CSP violation reported by the browser ({len(csp)})")

    logs = server.logs()
    check(root not in logs and not TOKEN_PATTERN.search(logs), "the server log holds no token")
    elapsed = time.monotonic() - started
    results.update({
        "run_seconds": round(elapsed, 1),
        "browser": driver.capabilities.get("browserVersion"),
        "pages": pages,
        "console": console_seen,
        "checks": checks,
        "failures": failures,
        "notes": notes,
    })
    with open(os.path.join(RESULTS_DIR, "results.json"), "w") as f:
        json.dump(results, f, indent=2)

    print()
    log(f"{len(checks) - len(failures)} of {len(checks)} checks passed in {elapsed:.0f} s; "
        f"{len(pages)} pages, screenshots and results.json in {os.path.relpath(RESULTS_DIR, ROOT)}/")
    for name, record in pages.items():
        axe = record.get("axe") or {}
        violations = axe.get("violations") or []
        log(f"  {name:28} axe: {len(violations)} violation(s)"
            + ("".join(f" [{v['id']} {v['impact']} ×{v['nodes']}]" for v in violations))
            + (f", {record['timing']['duration_ms']:.0f} ms" if record.get("timing") else ""))
    for what in notes:
        log("note: " + what)
    if failures:
        exit_with_failures([("tessera.log", logs)])
    log("all browser checks passed")


if __name__ == "__main__":
    main()
