#!/usr/bin/env python3
"""The real BentoML client against a real `tessera serve` (issue #13), run by `make bentoml` (and
so by `.ci/run`). bentoml is pinned (BENTOML_VERSION) and installed into .venv-bentoml when missing:
a later bentoml whose schemas drift fails here, loudly.

CLI: `cloud login --api-token`, `api-token list` (table, `-o json`, `--search`), `create` with
`-d`, `-s`, `--expires 30d` and with none, `get`, `delete`, configuration by environment variables,
a revoked token (a clean "log in" message, no traceback), and the interactive browser login
(`cloud login` with no token, in a pseudo-terminal, approved through the console over HTTP).
Python SDK: `bentoml.api_token.list`, `create`, `get`, `delete`. Exit status 1 on any failed check."""

import http.cookiejar
import json
import os
import pty
import re
import select
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.dont_write_bytecode = True
from harness import Client, Postgres, ROOT, Tessera, Workdir, check, failures, log, migrate_and_bootstrap  # noqa: E402

# 1.4.40 asks for a certifi newer than the package index holds here; 1.4.39 is the newest that installs.
BENTOML_VERSION = "1.4.39"
VENV = os.path.join(ROOT, ".venv-bentoml")




def ensure_bentoml():
    python = os.path.join(VENV, "bin", "python")
    probe = [python, "-c", "import importlib.metadata as m, sys; sys.exit(m.version('bentoml') != sys.argv[1])", BENTOML_VERSION]
    if os.path.exists(python) and subprocess.run(probe, capture_output=True).returncode == 0:
        return
    log(f"installing bentoml=={BENTOML_VERSION} into {os.path.relpath(VENV, ROOT)}")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", "--disable-pip-version-check", f"bentoml=={BENTOML_VERSION}"],
                   check=True, timeout=900)


def approve_in_console(endpoint, token, code):
    """What a person does in the browser: sign in (landing back on the code's page), approve."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def csrf(html):
        return re.search(r'name="csrf" value="([^"]*)"', html).group(1)

    page = opener.open(f"{endpoint}/api_tokens?code={code}", timeout=10)  # → console → sign-in?next=
    html = page.read().decode()
    check("/console/sign-in" in page.geturl() and 'name="next"' in html, f"the client's page leads to sign-in ({page.geturl()})")
    next_path = re.search(r'name="next" value="([^"]*)"', html).group(1).replace("&amp;", "&")
    form = urllib.parse.urlencode({"csrf": csrf(html), "token": token, "next": next_path}).encode()
    page = opener.open(f"{endpoint}/console/sign-in", data=form, timeout=10)  # → back to the code's page
    html = page.read().decode()
    check("/console/cli-login" in page.geturl() and code in html, f"after sign-in, the approval page shows the code ({page.geturl()})")
    form = urllib.parse.urlencode({"csrf": csrf(html), "code": code, "name": "bentoml cli", "decision": "approve"}).encode()
    page = opener.open(f"{endpoint}/console/cli-login", data=form, timeout=10)
    check("Approved" in page.read().decode(), "Approve")


def browser_login(bentoml, base_env, endpoint, token, work):
    """`bentoml cloud login` with no token: its menu (web browser), "open the page?" (no), then it
    polls while the page is approved in the console; it must end logged in."""
    home = tempfile.mkdtemp(prefix="bentoml-web.", dir=work.path)
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(bentoml, [bentoml, "cloud", "login", "--endpoint", endpoint], {**base_env, "BENTOML_HOME": home, "TERM": "xterm"})
    output, code, deadline = "", None, time.monotonic() + 120
    sent = {}  # prompt -> when we last answered it: a key pressed before the menu reads input is lost, so answer again
    status = None
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.3)
            if ready:
                try:
                    chunk = os.read(fd, 4096).decode(errors="replace")
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
            plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)
            now = time.monotonic()
            if "How would you like" in plain and "in your browser?" not in plain and now - sent.get("menu", 0) > 1.5:
                sent["menu"] = now
                os.write(fd, b"\r")  # the first choice: create a new API token with a web browser
            if "in your browser?" in plain and "Waiting for authentication" not in plain and now - sent.get("open", 0) > 1.5:
                sent["open"] = now
                os.write(fd, b"n\r")
            match = re.search(r"api_tokens\?code=([A-Z2-9-]+)", plain)
            if match and code is None:
                code = match.group(1)
                approve_in_console(endpoint, token, code)
            if "Logged in as" in plain:
                break
        for _ in range(50):  # let it exit by itself (it just saved its configuration)
            finished, raw = os.waitpid(pid, os.WNOHANG)
            if finished == pid:
                status = os.waitstatus_to_exitcode(raw)
                break
            time.sleep(0.1)
    finally:
        if status is None:
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(fd)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)
    check(code is not None, "bentoml cloud login (browser) printed the page with a code")
    check("Logged in as root at acme organization" in plain and status == 0,
          f"bentoml cloud login (browser): approved in the console, logged in ({plain.strip()[-200:]!r})")


def main():
    started = time.monotonic()
    ensure_bentoml()
    work = Workdir("bentoml")
    pg = Postgres(work)
    root = migrate_and_bootstrap(pg.url)["token"]
    server = Tessera(work, pg.url, env={"TESSERA_LOG_LEVEL": "warning"})
    api = Client(server.base)
    endpoint = f"http://{server.base}"
    status = api.request("PATCH", "/orgs/acme", token=root, body={"personalTokenLimit": 10})[0]
    check(status == 200, f"the org allows 10 personal tokens per member, as BentoCloud users expect ({status})")
    home = tempfile.mkdtemp(prefix="bentoml-home.", dir=work.path)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("BENTO_CLOUD_")}
    base_env.update(BENTOML_HOME=home, BENTOML_DO_NOT_TRACK="True", NO_COLOR="1", COLUMNS="200", PYTHONWARNINGS="ignore")
    bentoml = os.path.join(VENV, "bin", "bentoml")

    def run(*args, env=None):
        out = subprocess.run([bentoml, *args], env={**base_env, **(env or {})}, capture_output=True, text=True, timeout=120)
        return out.returncode, out.stdout + out.stderr

    code, out = run("cloud", "login", "--api-token", root, "--endpoint", endpoint)
    check(code == 0 and "Logged in as root at acme organization" in out, f"cloud login --api-token ({code}: {out.strip()[-200:]})")

    code, out = run("api-token", "create", "ci-one", "-d", "for ci", "-s", "api:read", "-s", "tokens:read", "--expires", "30d")
    secret = next((word for word in out.replace("│", " ").split() if word.startswith("tsp_")), "")
    check(code == 0 and "Token ci-one created successfully" in out and "Description: for ci" in out,
          f"api-token create with -d, -s, --expires 30d ({code})")
    # The boxed secret may wrap: take it from the JSON form instead when needed.
    code, out = run("api-token", "create", "plain", "-o", "json")
    created = json.loads(out[out.index("{"):]) if code == 0 and "{" in out else {}
    check(code == 0 and created.get("name") == "plain" and created.get("token", "").startswith("tsp_"),
          f"api-token create with no options, -o json ({code}: {out.strip()[-200:]})")
    plain_secret, plain_uid = created.get("token", ""), created.get("uid", "")
    if plain_secret:
        check(api.get("/auth/verify", token=plain_secret)[0] == 200, "the created token verifies")

    code, out = run("api-token", "list")
    check(code == 0 and "ci-one" in out and "plain" in out and "bootstrap" in out, f"api-token list, table ({code})")
    code, out = run("api-token", "list", "-o", "json")
    items = json.loads(out[out.index("["):]) if code == 0 and "[" in out else []
    names = sorted(item.get("name") for item in items)
    check(code == 0 and names == ["bootstrap", "ci-one", "plain"], f"api-token list -o json ({names})")
    ci = next((item for item in items if item.get("name") == "ci-one"), {})
    check(ci.get("scopes") == ["api:read", "tokens:read"] and ci.get("description") == "for ci", f"scopes and description kept ({ci.get('scopes')})")
    expires = ci.get("expired_at") or ""
    check(expires[:10] == time.strftime("%Y-%m-%d", time.gmtime(time.time() + 30 * 86400)), f"--expires 30d is 30 days out ({expires})")
    code, out = run("api-token", "list", "--search", "ci-one")
    check(code == 0 and "ci-one" in out and "plain" not in out, f"api-token list --search ({code})")

    code, out = run("api-token", "get", ci.get("uid", "-"))
    check(code == 0 and "ci-one" in out, f"api-token get ({code}: {out.strip()[-200:]})")
    code, out = run("api-token", "get", "00000000-0000-0000-0000-000000000000")
    check(code != 0 and "Traceback" not in out, f"api-token get of an unknown uid fails cleanly ({code}: {out.strip()[-160:]})")
    code, out = run("api-token", "delete", plain_uid or "-")
    check(code == 0, f"api-token delete ({code}: {out.strip()[-200:]})")
    if plain_secret:
        check(api.get("/auth/verify", token=plain_secret)[0] == 401, "the deleted token is refused")

    # Configuration by environment variables, in a home with no login file.
    env_home = tempfile.mkdtemp(prefix="bentoml-env.", dir=work.path)
    env = {"BENTOML_HOME": env_home, "BENTO_CLOUD_API_KEY": root, "BENTO_CLOUD_API_ENDPOINT": endpoint}
    code, out = run("api-token", "list", "-o", "json", env=env)
    check(code == 0 and "ci-one" in out, f"BENTO_CLOUD_API_KEY + BENTO_CLOUD_API_ENDPOINT ({code})")
    # A revoked token: a clean message, not a traceback.
    env["BENTO_CLOUD_API_KEY"] = plain_secret or "tsp_revoked"
    code, out = run("api-token", "list", env=env)
    check(code != 0 and "Traceback" not in out and "login" in out.lower(), f"a revoked token: clean 401 message ({code}: {out.strip()[-200:]})")

    # The Python SDK, on the same server.
    sdk = f"""
import json, bentoml
created = bentoml.api_token.create(name="sdk", description="from python", scopes=["api:read"])
assert created.token.startswith("tsp_"), created
listed = bentoml.api_token.list()
got = bentoml.api_token.get(created.uid)
bentoml.api_token.delete(created.uid)
after = [t.name for t in bentoml.api_token.list()]
print(json.dumps({{"created": created.name, "listed": sorted(t.name for t in listed), "got": got.name, "after": sorted(after)}}))
"""
    out = subprocess.run([os.path.join(VENV, "bin", "python"), "-c", sdk], env={**base_env, "BENTO_CLOUD_API_KEY": root,
                         "BENTO_CLOUD_API_ENDPOINT": endpoint, "BENTOML_HOME": env_home}, capture_output=True, text=True, timeout=120)
    result = {}
    try:
        result = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        pass
    check(out.returncode == 0 and result.get("got") == "sdk" and "sdk" in result.get("listed", []) and "sdk" not in result.get("after", ["sdk"]),
          f"Python SDK: bentoml.api_token.create, list, get, delete ({out.returncode}: {(out.stdout + out.stderr).strip()[-300:]})")

    browser_login(bentoml, base_env, endpoint, root, work)

    logs = server.logs()
    check(root not in logs and (not secret or secret not in logs), "the server log holds no token")
    log(f"bentoml {BENTOML_VERSION}: {len(failures)} failed checks in {time.monotonic() - started:.0f} s")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
