#!/usr/bin/env python3
"""`make scim`: SCIM 2.0 provisioning (issue #21) against a real `tessera serve`.

1. scim2-tester (PyPI, pinned; the conformance checker built on scim2-client and scim2-models,
   installed into .venv-scim when missing) drives the whole service provider of one org:
   discovery, then creation, reads, filters, attribute projection, PUT, PATCH add/replace/remove
   and deletion of Users and Groups, with the resource models it builds from our Schemas.
2. The request sequences Okta and Entra ID document for their SCIM clients, replayed byte for
   byte: create, lookups by filter, update, deactivate, reactivate, group push, delete.
3. Concurrent PATCHes of one group (no lost update), a push of 1,000 members and the
   deprovisioning of a member holding 1,000 tokens, each timed (one transaction, < 1 s).

Writes e2e/scim-results.json; exit status 1 if any check fails."""

import concurrent.futures
import json
import os
import subprocess
import sys
import time

from harness import (ROOT, Client, Postgres, Tessera, Workdir, check, exit_with_failures, failures, log,
                     migrate_and_bootstrap)

SCIM2_TESTER = ["scim2-tester==0.5.2", "scim2-client[httpx2]==0.13.2"]
VENV = os.path.join(ROOT, ".venv-scim")
PYTHON = os.path.join(VENV, "bin", "python")
results = {}

# What the tester runs, in the virtualenv: every check, results as JSON on stdout.
TESTER = r"""
import json, sys
from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import check_server
base, token = sys.argv[1], sys.argv[2]
client = SyncSCIMClient(Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30))
out = []
for r in check_server(client):
    out.append({"status": r.status.name, "title": r.title, "reason": r.reason, "resource_type": r.resource_type})
print(json.dumps(out))
"""


def ensure_tester():
    probe = [PYTHON, "-c", "import httpx2, importlib.metadata as m, sys; sys.exit(m.version('scim2-tester') != '0.5.2')"]
    if os.path.exists(PYTHON) and subprocess.run(probe, capture_output=True).returncode == 0:
        return
    log(f"installing {' '.join(SCIM2_TESTER)} into {os.path.relpath(VENV, ROOT)}")
    if not os.path.exists(PYTHON):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", "--disable-pip-version-check", *SCIM2_TESTER],
                   check=True, timeout=900)


def scim(client, token):
    def call(method, path, body=None, headers=None):
        status, response_headers, parsed, text = client.request(
            method, "/scim/v2/acme" + path, token=token, body=body,
            headers={"Content-Type": "application/scim+json", **(headers or {})})
        return status, parsed or {}, response_headers
    return call


def run_tester(base, token):
    log("== scim2-tester 0.5.2: the whole service provider")
    out = subprocess.run([PYTHON, "-c", TESTER, base, token], capture_output=True, text=True, timeout=600)
    check(out.returncode == 0, f"scim2-tester ran ({out.stderr[-500:]})")
    if out.returncode != 0:
        return
    checks = json.loads(out.stdout)
    by_status = {}
    for item in checks:
        by_status.setdefault(item["status"], []).append(item)
    summary = {status: len(items) for status, items in by_status.items()}
    log(f"   {len(checks)} checks: {summary}")
    for item in by_status.get("SKIPPED", []):
        log(f"   skipped {item['title']} [{item['resource_type']}]: {item['reason']}")
    for item in by_status.get("ERROR", []) + by_status.get("CRITICAL", []):
        log(f"   ERROR {item['title']} [{item['resource_type']}]: {item['reason']}")
    results["scim2_tester"] = {"checks": len(checks), "by_status": summary,
                               "errors": [f"{i['title']}: {i['reason']}" for i in by_status.get("ERROR", [])],
                               "skipped": [f"{i['title']}: {i['reason']}" for i in by_status.get("SKIPPED", [])],
                               "titles": sorted({i["title"] for i in checks})}
    check(not by_status.get("ERROR") and not by_status.get("CRITICAL"), "scim2-tester finds no error")
    check(len(by_status.get("SUCCESS", [])) >= 20, "scim2-tester's checks mostly succeed")


def okta(call):
    """Okta's documented SCIM 2.0 flow (developer.okta.com, "SCIM 2.0 protocol reference")."""
    log("== Okta's request sequence")
    status, body, _ = call("GET", '/Users?filter=userName%20eq%20%22dana%40example.com%22&startIndex=1&count=100')
    check(status == 200 and body.get("totalResults") == 0 and body.get("Resources") == [], "Okta: lookup of a new user is empty")
    status, user, headers = call("POST", "/Users", {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "dana@example.com",
        "name": {"givenName": "Dana", "familyName": "Okta"},
        "emails": [{"primary": True, "value": "dana@example.com", "type": "work"}],
        "displayName": "Dana Okta", "locale": "en-US", "externalId": "00u1dana", "groups": [], "password": "1mz050nq",
        "active": True})
    check(status == 201 and user.get("id") and user.get("active") is True, f"Okta: create answers 201 ({status})")
    check(headers.get("Content-Type", headers.get("content-type")) == "application/scim+json", "Okta: scim+json")
    uid = user.get("id")
    status, body, _ = call("GET", f"/Users/{uid}")
    check(status == 200 and body.get("userName") == "dana@example.com", "Okta: get by id")
    status, body, _ = call("PUT", f"/Users/{uid}", {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": uid, "userName": "dana@example.com",
        "name": {"givenName": "Dana", "familyName": "Renamed"}, "emails": [{"primary": True, "value": "dana@example.com", "type": "work"}],
        "active": True})
    check(status == 200 and body.get("name", {}).get("familyName") == "Renamed", "Okta: PUT replaces the profile")
    status, body, _ = call("PATCH", f"/Users/{uid}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"active": False}}]})
    check(status == 200 and body.get("active") is False, "Okta: deactivate (path-less replace)")
    status, body, _ = call("PATCH", f"/Users/{uid}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"active": True}}]})
    check(status == 200 and body.get("active") is True, "Okta: reactivate")
    status, group, _ = call("POST", "/Groups", {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Okta Engineers",
        "members": [{"value": uid, "display": "dana@example.com"}]})
    check(status == 201 and len(group.get("members", [])) == 1, "Okta: group push creates the group with its member")
    gid = group.get("id")
    status, body, _ = call("PATCH", f"/Groups/{gid}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"id": gid, "displayName": "Okta Engineering"}}]})
    check(status == 200 and body.get("displayName") == "Okta Engineering", "Okta: group rename")
    status, body, _ = call("PATCH", f"/Groups/{gid}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "remove", "path": f'members[value eq "{uid}"]'}]})
    check(status == 200 and body.get("members") == [], "Okta: remove a member from the group")
    status, body, _ = call("PATCH", f"/Groups/{gid}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": uid, "display": "dana@example.com"}]}]})
    check(status == 200 and len(body.get("members", [])) == 1, "Okta: add a member to the group")
    status, _, _ = call("DELETE", f"/Groups/{gid}")
    check(status == 204, "Okta: delete the group")
    return uid


def entra(call):
    """Entra ID's documented sequence (learn.microsoft.com, "Tutorial: Develop a sample SCIM endpoint":
    the requests its provisioning service sends)."""
    log("== Entra ID's request sequence")
    status, body, _ = call("GET", "/Users?filter=userName+eq+%22Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1%22")
    check(status == 200 and body.get("totalResults") == 0, "Entra: lookup of a new user is empty")
    status, user, _ = call("POST", "/Users", {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef", "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
        "active": True, "emails": [{"primary": True, "type": "work", "value": "Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com"}],
        "meta": {"resourceType": "User"}, "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": []})
    check(status == 201, f"Entra: create answers 201 ({status}: {user})")
    uid = user.get("id")
    status, body, _ = call("GET", "/Users?filter=externalId+eq+%220a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef%22")
    check(status == 200 and body.get("totalResults") == 1, "Entra: lookup by externalId")
    status, body, _ = call("GET", "/Users?filter=userName+eq+%22non-existent%22")
    check(status == 200 and body.get("totalResults") == 0, "Entra: unknown userName gives an empty list")
    status, body, _ = call("PATCH", f"/Users/{uid}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
                       {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}]})
    check(status == 200 and body.get("emails", [{}])[0].get("value") == "updatedEmail@microsoft.com"
          and body.get("name", {}).get("familyName") == "updatedFamilyName", "Entra: Replace with value paths")
    status, body, _ = call("PATCH", f"/Users/{uid}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "active", "value": "False"}]})
    check(status == 200 and body.get("active") is False, "Entra: disable with the string \"False\"")
    status, group, _ = call("POST", "/Groups", {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group", "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
        "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159", "displayName": "displayName", "meta": {"resourceType": "Group"}})
    check(status == 201 and group.get("members") == [], "Entra: create an empty group")
    gid = group.get("id")
    status, body, _ = call("GET", f"/Groups/{gid}?excludedAttributes=members")
    check(status == 200 and "members" not in body, "Entra: get the group without members")
    status, body, _ = call("GET", "/Groups?excludedAttributes=members&filter=displayName+eq+%22displayName%22")
    check(status == 200 and body.get("totalResults") == 1, "Entra: filter groups by displayName")
    status, body, _ = call("PATCH", f"/Groups/{gid}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Add", "path": "members", "value": [{"$ref": None, "value": uid}]}]})
    check(status == 200 and len(body.get("members", [])) == 1, "Entra: Add a member")
    status, body, _ = call("PATCH", f"/Groups/{gid}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Remove", "path": "members", "value": [{"$ref": None, "value": uid}]}]})
    check(status == 200 and body.get("members") == [], "Entra: Remove a member with a value list")
    status, body, _ = call("PATCH", f"/Groups/{gid}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "displayName", "value": "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"}]})
    check(status == 200 and body.get("displayName", "").endswith("updatedDisplayName"), "Entra: Replace the group's displayName")
    status, _, _ = call("DELETE", f"/Users/{uid}")
    check(status == 204, "Entra: delete the user")
    status, body, _ = call("GET", f"/Users/{uid}")
    check(status == 404 and body.get("status") == "404", "Entra: a deleted user is 404 in SCIM's error shape")
    status, _, _ = call("DELETE", f"/Groups/{gid}")
    check(status == 204, "Entra: delete the group")


def concurrency_and_scale(tessera, token, root):
    log("== concurrent PATCHes, a push of 1,000 members, deprovisioning 1,000 tokens")
    call = scim(Client(tessera.base, timeout=60), token)
    ids = []
    for i in range(1000):
        status, user, _ = call("POST", "/Users", {"userName": f"bulk{i:04d}@example.com", "active": True})
        if status != 201:
            check(False, f"bulk user {i} created ({status} {user})")
            return
        ids.append(user["id"])
    # An IdP's import: every user, 100 a page, in a stable order.
    started = time.perf_counter()
    seen, start, total = [], 1, None
    while total is None or start <= total:
        status, page, _ = call("GET", f"/Users?startIndex={start}&count=100")
        total = page.get("totalResults", 0)
        seen += [r["id"] for r in page.get("Resources", [])]
        start += 100
    pages = time.perf_counter() - started
    check(len(seen) == total == len(set(seen)) and set(ids) <= set(seen),
          f"paging through {total} users sees each once ({len(seen)} seen, {len(set(seen))} distinct)")
    results["import_all_users_ms"] = {"users": total, "ms": round(pages * 1000)}
    log(f"   paged through {total} users in {pages * 1000:.0f} ms")
    status, group, _ = call("POST", "/Groups", {"displayName": "everyone"})
    gid = group["id"]

    def add(uid):
        return scim(Client(tessera.base, timeout=60), token)("PATCH", f"/Groups/{gid}", {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": uid}]}]})[0]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(add, ids[:32]))
    status, body, _ = call("GET", f"/Groups/{gid}")
    check(all(s == 200 for s in statuses) and len(body.get("members", [])) == 32,
          f"32 concurrent PATCHes of one group: all 32 members kept ({len(body.get('members', []))})")

    started = time.perf_counter()
    status, body, _ = call("PATCH", f"/Groups/{gid}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": uid} for uid in ids]}]})
    push = time.perf_counter() - started
    check(status == 200 and len(body.get("members", [])) == 1000, f"a push of 1,000 members ({status})")
    check(push < 1.0, f"the push takes under a second ({push * 1000:.0f} ms)")
    results["group_push_1000_ms"] = round(push * 1000)

    # bulk0000 holds 1,000 personal tokens (the org allows it), then is deactivated.
    admin = Client(tessera.base, timeout=60)
    status, _, _, _ = admin.request("PATCH", "/orgs/acme", token=root, body={"personalTokenLimit": 1000})
    for i in range(1000):
        status, _, created, _ = admin.request("POST", "/api-tokens/bulk0000@example.com", token=root, body={"name": f"t{i}"})
        if status != 201:
            check(False, f"token {i} for bulk0000 ({status})")
            return
    started = time.perf_counter()
    status, body, _ = call("PATCH", f"/Users/{ids[0]}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "active", "value": False}]})
    deprovision = time.perf_counter() - started
    check(status == 200 and body.get("active") is False, "deprovisioning the member with 1,000 tokens")
    check(deprovision < 1.0, f"it takes under a second ({deprovision * 1000:.0f} ms)")
    results["deprovision_1000_tokens_ms"] = round(deprovision * 1000)
    status, _, listed, _ = admin.request("GET", "/api-tokens?limit=1000&status=active&kind=personal", token=root)
    live = [t for t in (listed or {}).get("tokens", []) if t.get("username") == "bulk0000@example.com"]
    check(not live, f"none of the 1,000 tokens is live ({len(live)})")


def authority_across_replicas(work, pg, a, token, root):
    """A demotion by the IdP (out of the admin group, over SCIM on replica A) reaches replica B's
    verification cache at once: B stops granting org:admin to the member's personal token."""
    log("== roles from groups: a demotion on A, seen by B's cache")
    b = Tessera(work, pg.url, name="tessera-b")
    call = scim(Client(a.base), token)
    admin = Client(a.base)
    status, user, _ = call("POST", "/Users", {"userName": "gina", "active": True})
    gid_status, group, _ = call("POST", "/Groups", {"displayName": "acme-admins", "members": [{"value": user.get("id")}]})
    check(status == 201 and gid_status == 201, "gina is provisioned into acme-admins")
    status, _, created, text = admin.request("POST", "/api-tokens/gina", token=root,
                                             body={"name": "gina-admin", "scopes": ["org:admin", "tokens:read"]})
    check(status == 201, f"an admin gives gina a personal token with org:admin ({status} {text[:200]})")
    gina = created["token"]
    verify_b = Client(b.base)
    status = verify_b.get("/auth/verify?scope=org:admin", token=gina)[0]
    check(status == 403, f"before the mapping, gina (a member) has no admin power on B ({status})")
    status = admin.request("PATCH", "/orgs/acme", token=root, body={"adminGroup": "acme-admins"})[0]
    check(status == 200, f"acme maps acme-admins to admin ({status})")
    deadline = time.time() + 2
    while time.time() < deadline and verify_b.get("/auth/verify?scope=org:admin", token=gina)[0] != 200:
        time.sleep(0.002)
    check(verify_b.get("/auth/verify?scope=org:admin", token=gina)[0] == 200, "in the admin group, gina is admin on B")
    started = time.perf_counter()
    status, _, _ = call("PATCH", f"/Groups/{group.get('id')}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "remove", "path": f'members[value eq "{user.get("id")}"]'}]})
    answered = time.perf_counter()
    while time.perf_counter() - answered < 2 and verify_b.get("/auth/verify?scope=org:admin", token=gina)[0] != 403:
        time.sleep(0.001)
    seen = time.perf_counter()
    check(status == 200 and verify_b.get("/auth/verify?scope=org:admin", token=gina)[0] == 403,
          "out of the group over SCIM on A: B refuses gina's admin power")
    check(verify_b.get("/auth/verify?scope=tokens:read", token=gina)[0] == 200, "her token still works as a member's")
    results["demotion_to_replica_b_ms"] = {"patch": round((answered - started) * 1000, 1),
                                           "after_answer": round((seen - answered) * 1000, 1)}
    log(f"   the PATCH took {results['demotion_to_replica_b_ms']['patch']} ms; B refused "
        f"{results['demotion_to_replica_b_ms']['after_answer']} ms after it answered")


def main():
    ensure_tester()
    work = Workdir("scim")
    pg = Postgres(work)
    root = migrate_and_bootstrap(pg.url)["token"]
    tessera = Tessera(work, pg.url)
    admin = Client(tessera.base)
    status, _, created, text = admin.request("POST", "/orgs/acme/api-tokens/scim-tester", token=root, body={
        "name": "SCIM conformance", "isSystemToken": True, "scopes": ["scim:provision"]})
    check(status == 201, f"an organization token with scim:provision ({status} {text[:200]})")
    token = created["token"]
    run_tester(f"http://{tessera.base}/scim/v2/acme", token)
    call = scim(Client(tessera.base), token)
    okta(call)
    entra(call)
    concurrency_and_scale(tessera, token, root)
    authority_across_replicas(work, pg, tessera, token, root)
    check(not [line for line in tessera.logs().splitlines() if token in line], "no log line holds the SCIM token")
    results["failures"] = failures
    with open(os.path.join(ROOT, "e2e/scim-results.json"), "w") as f:
        json.dump(results, f, indent=2)
    if failures:
        exit_with_failures([("tessera serve", tessera.logs())])
    log(f"all {len(results)} result groups written to e2e/scim-results.json")


if __name__ == "__main__":
    main()
