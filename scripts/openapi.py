#!/usr/bin/env python3
"""Writes Sources/TesseraHTTP/OpenAPIDocument.swift from the description below.

The OpenAPI 3.1 document is the contract of the HTTP API; `OpenAPITests` holds the routes to it.
Edit this file, run `python3 scripts/openapi.py`, commit both.
"""
import json, pathlib

WEBHOOK_EVENTS = ["token.created", "token.revoked", "token.expiring", "token.expired", "token.leaked", "member.removed"]
def ref(name): return {"$ref": f"#/components/schemas/{name}"}
def problem(desc): return {"description": desc, "content": {"application/problem+json": {"schema": ref("Problem")}}}
def ok(desc, schema, status="200"): return {status: {"description": desc, "content": {"application/json": {"schema": schema}}}}
AUTH = {"401": problem("Missing or invalid credential (WWW-Authenticate: Bearer)")}
def errors(*codes):
    text = {"400": "Validation failed (LISA messages)", "401": "Missing or invalid credential, or not an admin (LISA)",
            "403": "Not allowed (scope, API group, policy, role)", "404": "Not found or not visible",
            "409": "Already exists", "413": "Body larger than 1 MiB", "422": "Malformed body; `errors` lists the fields",
            "429": "Too many requests from this address; see Retry-After",
            "503": "Database unreachable or migrations pending"}
    return {c: problem(text[c]) for c in codes}
def param(name, desc, schema=None): return {"name": name, "in": "path", "required": True, "description": desc, "schema": schema or {"type": "string"}}
ORG = param("org", "Organization slug")
TOKEN_ID = param("tokenUUID", "Token id", {"type": "string", "format": "uuid"})
# OpenAPI allows one template per path position, so POST's username lives in {tokenUUID}.
USERNAME = param("tokenUUID", "For POST: the username (or, with isSystemToken, the organization token's service label)")
def body(schema): return {"required": True, "content": {"application/json": {"schema": schema}}}
SEC = [{"bearer": []}, {"apiKey": []}]

def op(summary, responses, params=(), request=None, secured=True, tags=(), strict=False):
    responses = dict(responses)
    # Any route may refuse a malformed URI (control characters, invalid UTF-8, a repeated or
    # invalid query parameter) with 400; /auth/verify (strict) answers only 200/401/403.
    if not strict and "400" not in responses:
        responses["400"] = problem("Malformed request URI or query parameter")
    o = {"summary": summary, "responses": responses, "tags": list(tags)}
    if params: o["parameters"] = list(params)
    if request: o["requestBody"] = request
    if secured: o["security"] = SEC
    else: o["security"] = []
    return o

def query(name, desc, schema): return {"name": name, "in": "query", "required": False, "description": desc, "schema": schema}
LIST_PARAMS = [
    query("limit", "Page size, 1-1000 (default 100)", {"type": "integer", "minimum": 1, "maximum": 1000}),
    query("cursor", "The nextCursor of the previous page", {"type": "string"}),
    query("search", "Substring of name, username, createdBy or groups (case-insensitive)", {"type": "string", "maxLength": 200}),
    query("kind", "Only this kind", {"type": "string", "enum": ["personal", "organization"]}),
    query("status", "Only this status", {"type": "string", "enum": ["active", "inactive", "revoked"]}),
    query("sort", "-createdDate (newest first, default) or createdDate", {"type": "string", "enum": ["-createdDate", "createdDate"]}),
]

token_ops = lambda prefix_params, tag: {
    "": {
        "get": op("List tokens: admins see all, members their own plus organization tokens",
                  {**ok("Tokens", ref("TokenList")), **AUTH, **errors("400", "403", "404")}, prefix_params + LIST_PARAMS, tags=[tag]),
        "post": op("Create your own personal token (groups = your current groups)",
                   {**ok("Created; `token` is shown once", ref("CreatedToken"), "201"), **AUTH, **errors("400", "403", "404", "413", "422")},
                   prefix_params, body(ref("CreateTokenRequest")), tags=[tag]),
    },
    "/self": {
        "get": op("The calling token's own metadata", {**ok("Token", ref("TokenInfo")), **AUTH, **errors("400", "403", "404")}, prefix_params, tags=[tag]),
    },
    "/{tokenUUID}": {
        "get": op("Get a token's metadata", {**ok("Token", ref("TokenInfo")), **AUTH, **errors("403", "404")}, prefix_params + [TOKEN_ID], tags=[tag]),
        "patch": op("Change name, description or status (active|inactive); owner or admin, organization tokens admin only. Scopes never change; revoked is final",
                    {**ok("Token", ref("TokenInfo")), **AUTH, **errors("400", "403", "404", "409", "413", "422")},
                    prefix_params + [TOKEN_ID], body(ref("TokenPatch")), tags=[tag]),
        "post": op("Admin: create a member's personal token, or with isSystemToken an organization token labelled {tokenUUID}. "
                   "LISA documents this as POST /api-tokens/{username}: the same path position holds a username here",
                   {**ok("Created; `token` is shown once", ref("CreatedToken"), "201"), **AUTH, **errors("400", "403", "404", "413", "422")},
                   prefix_params + [USERNAME], body(ref("CreateTokenRequest")), tags=[tag]),
        "delete": op("Delete a token (owner or admin; organization tokens: admin)",
                     {**ok("Deleted", ref("Deleted")), **AUTH, **errors("403", "404")}, prefix_params + [TOKEN_ID], tags=[tag]),
    },
    "/{tokenUUID}/rotate": {
        "post": op("New secret and tokenUUID, same metadata; the old secret stops at once or after overlapSeconds (<= 86400). Rotating a token already rotated away revokes its whole family (409)",
                   {**ok("Rotated; `token` is shown once", ref("CreatedToken"), "201"), **AUTH, **errors("400", "403", "404", "409", "413", "422")},
                   prefix_params + [TOKEN_ID], {"required": False, "content": {"application/json": {"schema": ref("RotateRequest")}}}, tags=[tag]),
    },
}

HTML = {"text/html": {"schema": {"type": "string"}}}
paths = {
    "/": {"get": op("What this service is: browsers (Accept: text/html) go to the console, everything else gets this JSON index",
                    {"200": {"description": "HTML page (console off) or JSON index", "content": {**HTML, "application/json": {"schema": ref("Index")}}},
                     "303": {"description": "A browser (Accept: text/html) is sent to the console, /console/"}},
                    secured=False, tags=["ops"])},
    "/docs": {"get": op("The API reference as an HTML page, made from this document",
                        {"200": {"description": "HTML page", "content": HTML}}, secured=False, tags=["ops"])},
    "/healthz": {"get": op("The process answers", ok("Up", ref("Status")), secured=False, tags=["ops"])},
    "/readyz": {"get": op("Database reachable, migrations applied", {**ok("Ready", ref("Status")), **errors("503")}, secured=False, tags=["ops"])},
    "/metrics": {"get": op("Prometheus metrics of this process", {"200": {"description": "Prometheus text exposition format",
                                                                            "content": {"text/plain": {"schema": {"type": "string"}}}}},
                           secured=False, tags=["ops"])},
    "/auth/verify": {method: op(
        "Forward-auth for gateways (nginx auth_request, Traefik ForwardAuth, Envoy ext_authz; any method, also under /auth/verify/...). "
        "Only 200, 401 and 403, also when the database is down (cache, else fail closed)",
        {"200": {"description": "The token verifies and holds the required scopes", "headers": {
            h: {"description": d, "schema": {"type": "string"}} for h, d in [
                ("X-Tessera-Org", "Organization slug"), ("X-Tessera-Token-Id", "tokenUUID"),
                ("X-Tessera-Kind", "personal or organization"), ("X-Tessera-Username", "Owner, or the organization token's label"),
                ("X-Tessera-Scopes", "Effective scopes, space-separated")]}},
         "401": {**problem("No credential, or a token that does not verify"), "headers": {"WWW-Authenticate": {
             "description": 'Bearer realm="tessera", error="invalid_token", error_description="..." (malformed, unknown, expired, inactive, revoked, owner inactive, idle, unavailable)',
             "schema": {"type": "string"}}}},
         "403": {**problem("A required scope is missing"), "headers": {"WWW-Authenticate": {
             "description": 'Bearer error="insufficient_scope", scope="..."', "schema": {"type": "string"}}}}},
        [query("scope", "A required scope (repeatable; implications count)", {"type": "string"}),
         {"name": "X-Tessera-Required-Scopes", "in": "header", "required": False,
          "description": "Required scopes, comma- or space-separated", "schema": {"type": "string"}}],
        tags=["verification"], strict=True)
        # Envoy ext_authz forwards the original method: every method answers the same.
        for method in ("get", "head", "post", "put", "patch", "delete", "options")},
    "/oauth/introspect": {"post": op(
        "RFC 7662 token introspection; the caller's token needs tokens:read. Active only for a verifying token of the caller's organization",
        {**ok("Introspection response; exactly {\"active\": false} when not active", ref("Introspection")), **AUTH,
         "400": problem("Missing form field token"), "403": problem("The caller's token lacks tokens:read"),
         "415": problem("Not application/x-www-form-urlencoded"), **errors("503")},
        request={"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "required": ["token"], "properties": {"token": {"type": "string", "minLength": 1}, "token_type_hint": {"type": "string"}}}}}},
        tags=["verification"])},
    "/openapi.json": {"get": op("This document", ok("OpenAPI 3.1", {"type": "object"}), secured=False, tags=["ops"])},
    "/api-tokens/openapi.json": {"get": op("This document (LISA path)", ok("OpenAPI 3.1", {"type": "object"}), secured=False, tags=["ops"])},
}
for suffix, ops in token_ops([], "api-tokens").items():
    paths["/api-tokens" + suffix] = ops
for suffix, ops in token_ops([ORG], "org api-tokens").items():
    paths["/orgs/{org}/api-tokens" + suffix] = ops
paths["/orgs"] = {
    "get": op("Organizations you can see (platform admins: all)", {**ok("Organizations", ref("OrganizationList")), **AUTH, **errors("400", "404")}, tags=["orgs"]),
    "post": op("Platform admin: create an organization", {**ok("Created", ref("Organization"), "201"), **AUTH, **errors("403", "409", "413", "422")},
               request=body(ref("CreateOrganizationRequest")), tags=["orgs"]),
}
paths["/orgs/{org}"] = {
    "get": op("Organization, policy and scope catalog", {**ok("Organization", ref("Organization")), **AUTH, **errors("403", "404")}, [ORG], tags=["orgs"]),
    "patch": op("Admin: update policy and scope catalog (JSON merge-patch)", {**ok("Updated", ref("Organization")), **AUTH, **errors("400", "403", "404", "413", "422")},
                [ORG], body(ref("OrganizationPatch")), tags=["orgs"]),
    "delete": op("Admin: delete the organization and all its tokens", {**ok("Deleted", ref("Message")), **AUTH, **errors("403", "404")}, [ORG], tags=["orgs"]),
}
paths["/orgs/{org}/members"] = {"get": op("Members", {**ok("Members", ref("MemberList")), **AUTH, **errors("403", "404")}, [ORG], tags=["members"])}
paths["/orgs/{org}/members/{username}"] = {
    "put": op("Admin: add or update a member (creates the user if new)", {**ok("Member", ref("Member")), **AUTH, **errors("400", "403", "404", "413", "422")},
              [ORG, param("username", "Username")], body(ref("MemberRequest")), tags=["members"]),
    "delete": op("Admin removes a member, or a member leaves; their personal tokens are revoked", {**ok("Removed", ref("Message")), **AUTH, **errors("403", "404")},
                 [ORG, param("username", "Username")], tags=["members"]),
}
paths["/orgs/{org}/audit-events"] = {"get": op(
    "Admin: who did what to which token or member, newest first",
    {**ok("Events", ref("AuditPage")), **AUTH, **errors("400", "403", "404")},
    [ORG, query("limit", "Page size, 1-1000 (default 100)", {"type": "integer", "minimum": 1, "maximum": 1000}),
     query("cursor", "The nextCursor of the previous page", {"type": "string"}),
     query("actor", "Only events by this username", {"type": "string"}),
     query("action", "Only this action, e.g. token.created", {"type": "string"}),
     query("token", "Only events about (or by) this token", {"type": "string", "format": "uuid"}),
     query("since", "From this time (epoch seconds)", {"type": "integer"}),
     query("until", "Before this time (epoch seconds)", {"type": "integer"})], tags=["audit"])}
WEBHOOK = param("webhook", "Webhook id", {"type": "string", "format": "uuid"})
paths["/orgs/{org}/webhooks"] = {
    "get": op("Admin: the organization's webhooks (never their secrets)", {**ok("Webhooks", ref("WebhookList")), **AUTH, **errors("403", "404")},
              [ORG], tags=["webhooks"]),
    "post": op("Admin: add a webhook; `secret` (whsec_…) is shown once. Targets on loopback, link-local or private addresses are refused",
               {**ok("Created", ref("Webhook"), "201"), **AUTH, **errors("400", "403", "404", "413", "422")},
               [ORG], body(ref("CreateWebhookRequest")), tags=["webhooks"]),
}
paths["/orgs/{org}/webhooks/{webhook}"] = {
    "get": op("Admin: a webhook", {**ok("Webhook", ref("Webhook")), **AUTH, **errors("403", "404")}, [ORG, WEBHOOK], tags=["webhooks"]),
    "patch": op("Admin: change a webhook; `rotateSecret: true` makes a new secret, shown once in this answer",
                {**ok("Webhook", ref("Webhook")), **AUTH, **errors("400", "403", "404", "413", "422")},
                [ORG, WEBHOOK], body(ref("WebhookPatch")), tags=["webhooks"]),
    "delete": op("Admin: remove a webhook and its delivery log", {**ok("Removed", ref("Message")), **AUTH, **errors("403", "404")},
                 [ORG, WEBHOOK], tags=["webhooks"]),
}
paths["/orgs/{org}/webhooks/{webhook}/deliveries"] = {"get": op(
    "Admin: the delivery log, newest first: status, attempts, last status or error, next attempt",
    {**ok("Deliveries", ref("WebhookDeliveryList")), **AUTH, **errors("400", "403", "404")},
    [ORG, WEBHOOK, query("limit", "How many, 1-500 (default 50)", {"type": "integer", "minimum": 1, "maximum": 500})], tags=["webhooks"])}
paths["/orgs/{org}/webhooks/{webhook}/deliveries/{delivery}/redeliver"] = {"post": op(
    "Admin: send a delivery again (same webhook-id)", {**ok("Queued", ref("Message"), "202"), **AUTH, **errors("403", "404")},
    [ORG, WEBHOOK, param("delivery", "Delivery id", {"type": "string", "format": "uuid"})], tags=["webhooks"])}
paths["/credentials/revoke"] = {"post": op(
    "Report leaked Tessera tokens (no credential needed, as GitHub's): every live one is revoked with reason `leaked` and its "
    "organization told (`token.leaked`). The answer is the same whatever the list holds",
    {**ok("Accepted", ref("Message"), "202"), **errors("400", "413", "422", "429", "503")},
    request=body(ref("CredentialsReport")), secured=False, tags=["leaks"])}
paths["/users"] = {"post": op("Platform admin: create a user", {**ok("Created", ref("User"), "201"), **AUTH, **errors("403", "409", "413", "422")},
                              request=body(ref("CreateUserRequest")), tags=["users"])}
paths["/users/{username}"] = {
    "get": op("Platform admin: a user", {**ok("User", ref("User")), **AUTH, **errors("403", "404")}, [param("username", "Username")], tags=["users"]),
    "patch": op("Platform admin: disable (revokes their personal tokens everywhere) or re-enable a user", {**ok("User", ref("User")), **AUTH, **errors("403", "404", "413", "422")},
                [param("username", "Username")], body(ref("UserPatch")), tags=["users"]),
    "delete": op("Platform admin: delete a user (their personal tokens are revoked first)", {**ok("Deleted", ref("Message")), **AUTH, **errors("403", "404")},
                 [param("username", "Username")], tags=["users"]),
}
# BentoCloud's API-token surface (DESIGN §9), for the unmodified bentoml client: always 200.
BENTO = ["bentocloud"]
UID = param("uid", "Token id", {"type": "string", "format": "uuid"})
paths["/api/v1/auth/current"] = {"get": op("BentoCloud: the caller (email carries the username: Tessera keeps no addresses)",
                                           {**ok("User", ref("BentoUser")), **AUTH, **errors("404")}, tags=BENTO)}
paths["/api/v1/current_org"] = {"get": op("BentoCloud: the caller's organization (uid: its id, name: its slug)",
                                          {**ok("Organization", ref("BentoOrganization")), **AUTH, **errors("404")}, tags=BENTO)}
paths["/api/v1/api_tokens"] = {
    "get": op("BentoCloud: the caller's visible live tokens, newest first",
              {**ok("Tokens", ref("BentoTokenList")), **AUTH, **errors("400", "403", "404")},
              [query("start", "Offset (default 0)", {"type": "integer", "minimum": 0, "maximum": 100000}),
               query("count", "Page size, 1-1000 (default 20)", {"type": "integer", "minimum": 1, "maximum": 1000}),
               query("search", "Substring of name, username, createdBy or groups", {"type": "string", "maxLength": 200})], tags=BENTO),
    "post": op("BentoCloud: create your personal token; expired_at is UTC (naive date-times too), null means the org's default lifetime. "
               "Answers 200 (the client refuses 201)",
               {**ok("Created; `token` is shown once", ref("BentoToken")), **AUTH, **errors("400", "403", "404", "413", "422")},
               request=body(ref("BentoCreateRequest")), tags=BENTO),
}
paths["/api/v1/api_tokens/{uid}"] = {
    "get": op("BentoCloud: a visible live token", {**ok("Token", ref("BentoToken")), **AUTH, **errors("403", "404")}, [UID], tags=BENTO),
    "delete": op("BentoCloud: delete (revoke) a token; answers it with 200 (the client refuses 204)",
                 {**ok("Deleted", ref("BentoToken")), **AUTH, **errors("403", "404")}, [UID], tags=BENTO),
}
paths["/api/v1/auth/code"] = {"get": op(
    "Browser login for command-line clients: a new single-use code (10 minutes); open /api_tokens?code=CODE to approve it",
    ok("A code", ref("LoginCode")), secured=False, tags=BENTO)}
paths["/api/v1/auth/token"] = {"get": op(
    "Browser login: poll (at most twice a second) until the code is approved; then a new personal token of the approver, once",
    {**ok("The token (shown once)", ref("LoginToken")), **errors("400", "403", "404"),
     "429": problem("Polled faster than twice a second")},
    [{**query("code", "The code from /api/v1/auth/code", {"type": "string", "maxLength": 40}), "required": True}],
    secured=False, tags=BENTO)}
paths["/api_tokens"] = {"get": op(
    "Browser login: the page a client opens; sends the browser on to the console's approval page",
    {"303": {"description": "To /console/cli-login?code=CODE"}},
    [query("code", "The code from /api/v1/auth/code", {"type": "string", "maxLength": 40})], secured=False, tags=BENTO)}

S = lambda **kw: {"type": "string", **kw}
I = {"type": "integer", "format": "int64"}
B = {"type": "boolean"}
A = lambda item: {"type": "array", "items": item}
def nullable(schema): return {"oneOf": [schema, {"type": "null"}]}
token_props = {
    "tokenUUID": S(format="uuid"), "tokenExpiration": nullable(I), "createdDate": I, "username": S(), "createdBy": S(),
    "name": S(), "groups": A(S()), "isSystemToken": B, "isExpired": B, "isLegacy": B, "organization": S(),
    "kind": S(enum=["personal", "organization"]), "description": nullable(S()), "scopes": A(S()),
    "status": S(enum=["active", "inactive", "revoked"]), "revokedReason": nullable(S()), "revokedDate": nullable(I),
    "updatedDate": I, "lastUsedDate": nullable(I), "tokenPrefix": S(),
}
scope = {"type": "object", "required": ["name"], "properties": {"name": S(pattern="^[a-z][a-z0-9_.:-]{0,63}$"), "description": S(), "adminOnly": B, "implies": A(S())}}
# Input constraints the server enforces, so generated requests that pass the schema pass the
# server's shape checks too (business rules such as "expiration in the future" stay in prose).
NAME = S(minLength=1, maxLength=200, pattern="^[^\\u0000-\\u001f]*$")
GROUPS = {**A(S(minLength=1, maxLength=200)), "maxItems": 100}
SCOPES = {**A(S(pattern="^[a-z][a-z0-9_.:-]{0,63}$")), "minItems": 1, "maxItems": 100}
DAYS = {"type": "integer", "minimum": 1, "maximum": 36500}
USERNAME_S = S(pattern="^[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}$")
org_props = {"slug": S(), "displayName": S(), "defaultTokenLifetimeDays": I, "maxTokenLifetimeDays": nullable(I), "allowNonExpiringTokens": B,
             "idleTimeoutDays": nullable(I), "apiGroup": nullable(S()), "userTokensEnabled": B, "defaultScopes": A(S()), "scopes": A(scope),
             "personalTokenLimit": I, "createdDate": I, "updatedDate": I}
schemas = {
    "Problem": {"type": "object", "required": ["type", "title", "status", "detail", "message"], "properties": {
        "type": S(), "title": S(), "status": {"type": "integer"}, "detail": S(), "message": S(),
        "errors": A({"type": "object", "properties": {"field": S(), "message": S()}})}},
    "Status": {"type": "object", "properties": {"status": S()}},
    "CreateTokenRequest": {"type": "object", "required": ["name"], "properties": {
        "name": NAME, "groups": GROUPS, "isSystemToken": B,
        "tokenExpiration": {"oneOf": [I, {"type": "null"}], "description": "Epoch seconds; default now + the org's defaultTokenLifetimeDays; null: never expires (only where the org allows it and sets no maximum)"},
        "description": S(maxLength=1000), "scopes": SCOPES}},
    "RotateRequest": {"type": "object", "properties": {"overlapSeconds": {"type": "integer", "minimum": 0, "maximum": 86400}}},
    "TokenPatch": {"type": "object", "properties": {"name": S(minLength=1, maxLength=200), "description": nullable(S(maxLength=1000)),
                                                     "status": S(enum=["active", "inactive"])}},
    "TokenInfo": {"type": "object", "required": list(token_props), "properties": token_props},
    "CreatedToken": {"type": "object", "required": ["token"] + list(token_props), "properties": {"token": S(description="Shown once"), **token_props}},
    "TokenList": {"type": "object", "required": ["tokens"], "properties": {"tokens": A(ref("TokenInfo")), "nextCursor": S(description="Absent on the last page")}},
    "Deleted": {"type": "object", "required": ["message", "tokenUUID"], "properties": {"message": S(), "tokenUUID": S(format="uuid")}},
    "Index": {"type": "object", "required": ["name", "links"], "properties": {
        "name": S(), "description": S(), "links": {"type": "object", "additionalProperties": S()}}},
    "Message": {"type": "object", "required": ["message"], "properties": {"message": S()}},
    "Organization": {"type": "object", "required": list(org_props), "properties": org_props},
    "OrganizationList": {"type": "object", "properties": {"organizations": A(ref("Organization"))}},
    "CreateOrganizationRequest": {"type": "object", "required": ["slug"], "properties": {"slug": S(pattern="^[a-z0-9][a-z0-9-]{1,62}$"), "displayName": NAME}},
    "OrganizationPatch": {"type": "object", "properties": {
        "displayName": NAME, "defaultTokenLifetimeDays": DAYS,
        "maxTokenLifetimeDays": {**nullable(DAYS), "description": "Longest lifetime a token may have (null: no cap). A cap set "
                                 "without defaultTokenLifetimeDays lowers a larger default to the cap; giving both with the default above the cap is 400"},
        "allowNonExpiringTokens": B, "idleTimeoutDays": nullable(DAYS), "apiGroup": nullable(NAME), "userTokensEnabled": B,
        "defaultScopes": SCOPES, "scopes": A(scope),
        "personalTokenLimit": {"type": "integer", "minimum": 1, "maximum": 1000,
                               "description": "Live personal tokens a member may hold in the org (1: LISA's rule)"}}},
    "AuditEvent": {"type": "object", "properties": {
        "id": S(), "occurredDate": I, "actor": nullable(S()), "actorKind": S(enum=["token", "jwt", "cli", "system", "console"]),
        "actorTokenUUID": nullable(S()), "action": S(), "tokenUUID": nullable(S()), "username": nullable(S()),
        "sourceIP": nullable(S()), "details": {"type": "object", "additionalProperties": S()}}},
    "AuditPage": {"type": "object", "properties": {"events": A(ref("AuditEvent")), "nextCursor": S()}},
    "Member": {"type": "object", "properties": {"username": S(), "role": S(enum=["admin", "member"]), "groups": A(S()), "status": S(), "createdDate": I}},
    "MemberList": {"type": "object", "properties": {"members": A(ref("Member"))}},
    "MemberRequest": {"type": "object", "properties": {"role": S(enum=["admin", "member"]), "groups": GROUPS}},
    "User": {"type": "object", "properties": {"username": S(), "status": S(enum=["active", "disabled"]), "platformAdmin": B, "createdDate": I}},
    "CreateUserRequest": {"type": "object", "required": ["username"], "properties": {"username": USERNAME_S, "platformAdmin": B}},
    "Introspection": {"type": "object", "required": ["active"], "properties": {
        "active": B, "scope": S(), "username": S(), "sub": S(), "token_type": S(), "exp": I, "iat": I, "iss": S(),
        "org": S(), "token_id": S(), "kind": S(enum=["personal", "organization"]), "groups": A(S())}},
    "LoginCode": {"type": "object", "required": ["code", "url", "expires_in"],
                  "properties": {"code": S(pattern="^[A-Z2-9]{4}(-[A-Z2-9]{4}){3}$"), "url": S(), "expires_in": I}},
    "LoginToken": {"type": "object", "required": ["token", "name", "organization", "username"],
                   "properties": {"token": S(), "name": S(), "organization": S(), "username": S()}},
    "BentoUser": {"type": "object", "required": ["name", "email", "first_name", "last_name"],
                  "properties": {"name": S(), "email": S(), "first_name": S(), "last_name": S()}},
    "BentoOrganization": {"type": "object", "required": ["uid", "name", "description", "created_at", "updated_at", "deleted_at", "resource_type", "labels"],
                          "properties": {"uid": S(format="uuid"), "name": S(), "description": S(), "created_at": S(format="date-time"),
                                         "updated_at": S(format="date-time"), "deleted_at": nullable(S(format="date-time")),
                                         "resource_type": S(enum=["organization"]), "labels": A(S())}},
    "BentoToken": {"type": "object", "required": ["uid", "created_at", "updated_at", "deleted_at", "name", "resource_type", "labels", "description",
                                                  "scopes", "user", "organization", "expired_at", "last_used_at", "is_expired", "is_api_token",
                                                  "is_organization_token", "is_global_access"],
                   "properties": {"uid": S(format="uuid"), "created_at": S(format="date-time"), "updated_at": S(format="date-time"),
                                  "deleted_at": nullable(S(format="date-time")), "name": S(), "resource_type": S(enum=["api_token"]),
                                  "labels": A(S()), "description": S(), "scopes": A(S()), "user": ref("BentoUser"),
                                  "organization": ref("BentoOrganization"), "expired_at": nullable(S(format="date-time")),
                                  "last_used_at": nullable(S(format="date-time")), "is_expired": B, "is_api_token": B,
                                  "is_organization_token": B, "is_global_access": B, "token": S(description="Only in the create answer")}},
    "BentoTokenList": {"type": "object", "required": ["start", "count", "total", "items"],
                       "properties": {"start": I, "count": I, "total": I, "items": A(ref("BentoToken"))}},
    "BentoCreateRequest": {"type": "object", "required": ["name"], "properties": {
        "name": NAME, "description": nullable(S(maxLength=1000)),
        "scopes": nullable({**SCOPES}), "expired_at": nullable(S(maxLength=40, description="2026-12-23 19:10:05.952036 (UTC) or RFC 3339"))}},
    "Webhook": {"type": "object", "required": ["id", "url", "events", "active", "createdDate", "createdBy", "updatedDate"], "properties": {
        "id": S(format="uuid"), "url": S(), "description": nullable(S()), "events": A(S(enum=WEBHOOK_EVENTS)), "active": B,
        "createdDate": I, "createdBy": S(), "updatedDate": I,
        "secret": S(description="whsec_…: only in the answer that created or rotated it")}},
    "WebhookList": {"type": "object", "required": ["webhooks"], "properties": {"webhooks": A(ref("Webhook"))}},
    "CreateWebhookRequest": {"type": "object", "required": ["url"], "properties": {
        "url": S(maxLength=2048, description="http:// or https://"), "events": {**A(S(enum=WEBHOOK_EVENTS)), "minItems": 1, "description": "Default: all"},
        "description": S(maxLength=1000), "secret": S(description="Your own whsec_ + base64 of 24-64 bytes; default: generated"), "active": B}},
    "WebhookPatch": {"type": "object", "properties": {
        "url": S(maxLength=2048), "events": {**A(S(enum=WEBHOOK_EVENTS)), "minItems": 1}, "description": S(maxLength=1000),
        "active": B, "rotateSecret": B}},
    "WebhookDelivery": {"type": "object", "required": ["id", "event", "status", "attempts", "createdDate", "payload"], "properties": {
        "id": S(format="uuid", description="The webhook-id header"), "event": S(enum=WEBHOOK_EVENTS),
        "status": S(enum=["pending", "delivered", "failed"]), "attempts": I, "createdDate": I,
        "nextAttemptDate": nullable(I), "lastAttemptDate": nullable(I), "lastStatus": nullable(I), "lastError": nullable(S()),
        "deliveredDate": nullable(I), "payload": S(description="The JSON body sent")}},
    "WebhookDeliveryList": {"type": "object", "required": ["deliveries"], "properties": {"deliveries": A(ref("WebhookDelivery"))}},
    "CredentialsReport": {"type": "object", "required": ["credentials"], "properties": {
        "credentials": {**A(S()), "maxItems": 1000}}},
    "WebhookEvent": {"type": "object", "required": ["type", "timestamp", "data"], "properties": {
        "type": S(enum=WEBHOOK_EVENTS), "timestamp": S(format="date-time"),
        "data": {"type": "object", "properties": {
            "organization": S(), "actor": {"type": "object", "properties": {"username": nullable(S()), "kind": S()}},
            "occurredDate": I, "reason": S(description="token.revoked, token.leaked: deleted_by_admin, deleted_by_owner, leaked, owner_left_org, …"),
            "member": S(description="member.removed"), "left": B,
            "notice": S(enum=["60d", "30d", "7d", "expired"]), "daysLeft": I,
            "token": {"type": "object", "properties": {
                "tokenUUID": S(format="uuid"), "name": S(), "kind": S(enum=["personal", "organization"]), "username": S(),
                "tokenPrefix": S(), "scopes": A(S()), "status": S(), "expirationDate": nullable(I), "createdDate": I, "createdBy": S()}}}}}},
    "UserPatch": {"type": "object", "properties": {"status": S(enum=["active", "disabled"]), "platformAdmin": B}},
}
WEBHOOK_EXAMPLES = {
    "token.created": {"organization": "acme", "actor": {"username": "root", "kind": "token"}, "occurredDate": 1764000000,
                      "token": {"tokenUUID": "0b9c6d8e-3f41-4c1a-9d2e-5a7b8c9d0e1f", "name": "ci", "kind": "organization", "username": "ci-bot",
                                "tokenPrefix": "tso_3f9a2c1b", "scopes": ["api:read"], "status": "active", "expirationDate": 1771776000,
                                "createdDate": 1764000000, "createdBy": "root"}},
}
WEBHOOK_EXAMPLES["token.revoked"] = {**WEBHOOK_EXAMPLES["token.created"], "reason": "deleted_by_admin"}
WEBHOOK_EXAMPLES["token.leaked"] = {**WEBHOOK_EXAMPLES["token.created"], "actor": {"username": "credentials/revoke", "kind": "system"}, "reason": "leaked"}
WEBHOOK_EXAMPLES["token.expiring"] = {"organization": "acme", "token": WEBHOOK_EXAMPLES["token.created"]["token"], "notice": "7d", "daysLeft": 7}
WEBHOOK_EXAMPLES["token.expired"] = {"organization": "acme", "token": WEBHOOK_EXAMPLES["token.created"]["token"], "notice": "expired", "daysLeft": 0}
WEBHOOK_EXAMPLES["member.removed"] = {"organization": "acme", "actor": {"username": "root", "kind": "token"}, "occurredDate": 1764000000,
                                      "member": "alice", "left": False}
webhooks = {event: {"post": {
    "summary": f"{event}: sent to each active webhook of the organization that asked for it, signed the Standard Webhooks way "
               "(webhook-id, webhook-timestamp, webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>)",
    "requestBody": {"required": True, "content": {"application/json": {
        "schema": ref("WebhookEvent"),
        "example": {"type": event, "timestamp": "2026-11-24T16:00:00.000000Z", "data": WEBHOOK_EXAMPLES[event]}}}},
    "responses": {"2XX": {"description": "Acknowledged; anything else (or no answer in 10 s) is retried with backoff for 26 hours"}}}}
    for event in WEBHOOK_EVENTS}
document = {
    "openapi": "3.1.0",
    "info": {"title": "Tessera", "version": "0.1.0",
             "description": "Multi-tenant organization tokens. LISA-compatible /api-tokens routes plus organizations, members and users."},
    "paths": paths,
    "webhooks": webhooks,
    "components": {"schemas": schemas, "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer", "description": "A Tessera token (tsp_/tso_), or an OIDC JWT when configured. A bare `Authorization: <token>` also works."},
        "apiKey": {"type": "apiKey", "in": "header", "name": "Api-Key"},
        "yataiToken": {"type": "apiKey", "in": "header", "name": "X-YATAI-API-TOKEN", "description": "BentoCloud's clients"}}},
}
text = json.dumps(document, indent=1, sort_keys=True)
root = pathlib.Path(__file__).resolve().parent.parent
swift = ('// Generated by scripts/openapi.py: edit that file, not this one.\n\n'
         '/// The OpenAPI 3.1 document served at `/openapi.json` and `/api-tokens/openapi.json`.\n'
         'enum OpenAPIDocument {\n    static let json = #"""\n' + text + '\n"""#\n}\n')
(root / "Sources/TesseraHTTP/OpenAPIDocument.swift").write_text(swift)
print(f"{len(paths)} paths, {sum(len(v) for v in paths.values())} operations")
