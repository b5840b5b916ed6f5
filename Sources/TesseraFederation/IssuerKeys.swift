import AsyncHTTPClient
import Foundation
import JWTKit
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import TesseraWebhooks

/// An issuer's signing keys, found by OIDC discovery (`jwks_uri`) and cached as the issuer's
/// HTTP cache headers say (DESIGN §13). A `kid` the cache does not know makes one refetch, at
/// most once per ``FederationSettings/unknownKeyRefetchInterval`` per issuer, so a flood of
/// made-up key ids cannot hammer the issuer; concurrent exchanges share one fetch. When a refresh
/// fails, keys fetched in the last day keep working (the issuer being down should not stop CI).
actor IssuerKeys {
    struct KeySet: Sendable {
        var keys: [String: JWK]
        var collection: JWTKeyCollection
        var fetchedAt: Date
        var freshUntil: Date
    }

    private var sets: [String: KeySet] = [:]
    private var fetching: [String: Task<KeySet, any Error>] = [:]
    private var lastUnknownKeyFetch: [String: Date] = [:]
    private var failedAt: [String: Date] = [:]
    private let fetcher: IssuerFetcher
    private let refetchInterval: TimeInterval
    private let logger: Logger
    private let fetches = Counter(label: "tessera_federation_key_fetches_total")

    static let staleLimit: TimeInterval = 86_400

    init(settings: FederationSettings, logger: Logger) {
        fetcher = IssuerFetcher(
            policy: WebhookTargetPolicy(allowPrivate: settings.allowHTTPIssuers),
            requireHTTPS: !settings.allowHTTPIssuers, timeout: settings.fetchTimeout)
        refetchInterval = settings.unknownKeyRefetchInterval
        self.logger = logger
    }

    /// The key `kid` of `issuer` with the collection that verifies with it.
    func key(issuer: String, kid: String) async throws(ExchangeRefusal) -> (JWK, JWTKeyCollection) {
        let now = Date()
        if let set = sets[issuer] {
            if let key = set.keys[kid] {
                if now < set.freshUntil { return (key, set.collection) }
                // Stale: refresh, and keep the old keys for a day if the issuer does not answer.
                if let fresh = try? await refresh(issuer), let key = fresh.keys[kid] { return (key, fresh.collection) }
                if now.timeIntervalSince(set.fetchedAt) < Self.staleLimit { return (key, set.collection) }
                throw .grant("the issuer's keys could not be fetched")
            }
            // An unknown kid: perhaps a rotation. Refetch, but not more often than the interval.
            if let last = lastUnknownKeyFetch[issuer], now.timeIntervalSince(last) < refetchInterval {
                throw .grant("the subject token is signed with a key the issuer does not publish")
            }
            lastUnknownKeyFetch[issuer] = now
        } else if fetching[issuer] == nil, let failed = failedAt[issuer],
            now.timeIntervalSince(failed) < refetchInterval
        {
            // The first fetch failed a moment ago: do not ask again at once.
            throw .grant("the issuer's keys could not be fetched")
        }
        let fresh: KeySet
        do {
            fresh = try await refresh(issuer)
        } catch {
            if sets[issuer] == nil { failedAt[issuer] = now }
            logger.warning(
                "federation: fetching the keys of an issuer failed",
                metadata: ["issuer": "\(issuer)", "error": "\(error)"])
            throw .grant("the issuer's keys could not be fetched")
        }
        guard let key = fresh.keys[kid] else {
            throw .grant("the subject token is signed with a key the issuer does not publish")
        }
        return (key, fresh.collection)
    }

    /// One fetch per issuer at a time; every waiter gets its result.
    private func refresh(_ issuer: String) async throws -> KeySet {
        if let running = fetching[issuer] { return try await running.value }
        let task = Task { [fetcher] in try await fetcher.keySet(issuer: issuer) }
        fetching[issuer] = task
        defer { fetching[issuer] = nil }
        fetches.increment()
        let set = try await task.value
        sets[issuer] = set
        failedAt[issuer] = nil
        return set
    }
}

/// Fetches an issuer's discovery document and JWKS, over https to public addresses only (unless
/// allowed), connecting to the address that was checked, following no redirect, reading at most
/// 256 KiB.
struct IssuerFetcher: Sendable {
    let policy: WebhookTargetPolicy
    let requireHTTPS: Bool
    let timeout: TimeInterval

    static let bodyLimit = 256 * 1024

    struct FetchError: Error, CustomStringConvertible {
        let description: String
    }

    func keySet(issuer: String) async throws -> IssuerKeys.KeySet {
        let base = issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer
        let (discovery, _) = try await get(base + "/.well-known/openid-configuration")
        guard let object = try? JSONSerialization.jsonObject(with: discovery) as? [String: Any],
            let jwksURI = object["jwks_uri"] as? String
        else { throw FetchError(description: "the discovery document has no jwks_uri") }
        guard object["issuer"] as? String == issuer else {
            throw FetchError(description: "the discovery document names another issuer")
        }
        let (body, maxAge) = try await get(jwksURI)
        let jwks: JWKS
        do {
            jwks = try JSONDecoder().decode(JWKS.self, from: body)
        } catch {
            throw FetchError(description: "the JWKS document does not parse")
        }
        var keys: [String: JWK] = [:]
        let collection = JWTKeyCollection()
        for jwk in jwks.keys {
            // Only signature keys of the two accepted kinds, each with its kid.
            guard let kid = jwk.keyIdentifier?.string, jwk.keyType == .rsa || jwk.keyType == .ecdsa else { continue }
            do {
                try await collection.add(jwk: jwk)
                keys[kid] = jwk
            } catch {
                continue
            }
        }
        let now = Date()
        return .init(keys: keys, collection: collection, fetchedAt: now, freshUntil: now.addingTimeInterval(maxAge))
    }

    /// The body of `url`, and how long it may be cached (`Cache-Control: max-age`, within a minute
    /// and a day; 15 minutes when the issuer does not say).
    func get(_ url: String) async throws -> (Data, TimeInterval) {
        let target: WebhookTargetPolicy.Target
        do {
            target = try policy.target(url)
        } catch {
            throw FetchError(description: "\(url) \(error)")
        }
        if requireHTTPS && target.url.scheme?.lowercased() != "https" {
            throw FetchError(description: "\(url) is not https")
        }
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: .milliseconds(Int64(timeout * 1000)), read: .milliseconds(Int64(timeout * 1000))))
        if let address = target.address, let host = target.url.host { configuration.dnsOverride = [host: address] }
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        defer { Task { try? await client.shutdown() } }
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Accept", value: "application/json")
        let response = try await client.execute(request, timeout: .milliseconds(Int64(timeout * 1000)))
        guard response.status == .ok else {
            throw FetchError(description: "\(url) answered \(response.status.code)")
        }
        let body = try await response.body.collect(upTo: Self.bodyLimit)
        return (Data(body.readableBytesView), Self.maxAge(response.headers))
    }

    static func maxAge(_ headers: HTTPHeaders) -> TimeInterval {
        let directives = headers["Cache-Control"].flatMap { $0.split(separator: ",") }.map {
            $0.trimmingCharacters(in: .whitespaces).lowercased()
        }
        if directives.contains("no-store") || directives.contains("no-cache") { return 60 }
        guard let maxAge = directives.first(where: { $0.hasPrefix("max-age=") }).flatMap({ Double($0.dropFirst(8)) })
        else { return 900 }
        let age = headers.first(name: "Age").flatMap(Double.init) ?? 0
        return min(max(maxAge - age, 60), 86_400)
    }
}
