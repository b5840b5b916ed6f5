import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOHTTP1
import Synchronization
import Testing

@testable import TesseraWebhooks

/// The HTTP side of webhook delivery against a real server on loopback: a name is reached at the
/// address the target check saw (not resolved again), redirects are not followed, and an answer's
/// body is not read past the limit. (The hostile 1 GiB answer is `make webhooks`' scenario 7.)
@Suite struct WebhookTransportTests {
    /// What the receiver got: each request's path and Host header.
    final class Seen: Sendable {
        private let requests = Mutex<[(path: String, host: String)]>([])
        func note(_ request: Request) {
            requests.withLock { $0.append((request.uri.path, request.head.authority ?? "")) }
        }
        var paths: [String] { requests.withLock { $0.map(\.path) } }
        var hosts: [String] { requests.withLock { $0.map(\.host) } }
    }

    static func receiver(_ seen: Seen) -> some ApplicationProtocol {
        let router = Router()
        router.post("hook") { request, _ -> HTTPResponse.Status in
            seen.note(request)
            return .noContent
        }
        router.post("moved") { request, _ -> Response in
            seen.note(request)
            return Response(status: .temporaryRedirect, headers: [.location: "/hook"])
        }
        router.post("chatty") { request, _ -> Response in
            seen.note(request)
            // A body of unknown length (chunked), longer than the limit.
            let chunk = ByteBuffer(repeating: UInt8(ascii: "x"), count: 16 * 1024)
            return Response(
                status: .ok,
                body: ResponseBody { writer in
                    for _ in 0..<64 { try await writer.write(chunk) }
                    try await writer.finish(nil)
                })
        }
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    }

    static let headers = HTTPHeaders([("Content-Type", "application/json")])

    /// Runs `body`, then shuts the transports down whatever happened (an HTTPClient left running
    /// traps in its deinit in debug builds, which would end the whole test run).
    static func shuttingDown(_ transports: [WebhookTransport], _ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch {
            for transport in transports { await transport.shutdown() }
            throw error
        }
        for transport in transports { await transport.shutdown() }
    }

    @Test func aNameIsReachedAtTheCheckedAddress() async throws {
        let seen = Seen()
        let transport = WebhookTransport(timeout: .seconds(30))
        // Short: the unpinned attempt below waits it out, AsyncHTTPClient retrying the lookup.
        let impatient = WebhookTransport(timeout: .seconds(2))
        try await Self.shuttingDown([transport, impatient]) {
            try await Self.receiver(seen).test(.live) { client in
                let port = try #require(client.port)
                // `.invalid` never resolves (RFC 6761): the request can only arrive through the pin.
                let target = WebhookTargetPolicy.Target(
                    url: URL(string: "http://hook.invalid:\(port)/hook")!, address: "127.0.0.1")
                let outcome = await transport.post(to: target, headers: Self.headers, body: Data("{}".utf8))
                #expect(outcome == .answered(204))
                // Twice: the pinned client is reused.
                #expect(
                    await transport.post(to: target, headers: Self.headers, body: Data("{}".utf8)) == .answered(204))
                #expect(seen.hosts == ["hook.invalid:\(port)", "hook.invalid:\(port)"])

                let unpinned = WebhookTargetPolicy.Target(
                    url: URL(string: "http://hook.invalid:\(port)/hook")!, address: nil)
                guard case .failed = await impatient.post(to: unpinned, headers: Self.headers, body: Data("{}".utf8))
                else {
                    Issue.record("an unpinned .invalid name must not resolve")
                    return
                }
            }
        }
    }

    @Test func redirectsAreNotFollowedAndLongBodiesNotRead() async throws {
        let seen = Seen()
        let transport = WebhookTransport(timeout: .seconds(30))
        try await Self.shuttingDown([transport]) {
            try await Self.receiver(seen).test(.live) { client in
                let port = try #require(client.port)
                let moved = WebhookTargetPolicy.Target(
                    url: URL(string: "http://127.0.0.1:\(port)/moved")!, address: nil)
                #expect(await transport.post(to: moved, headers: Self.headers, body: Data("{}".utf8)) == .answered(307))
                #expect(seen.paths == ["/moved"], "the redirect's target was not asked")

                let chatty = WebhookTargetPolicy.Target(
                    url: URL(string: "http://127.0.0.1:\(port)/chatty")!, address: nil)
                #expect(
                    await transport.post(to: chatty, headers: Self.headers, body: Data("{}".utf8)) == .answered(200))
            }
        }
    }

    @Test func theCheckKeepsTheAddressOfANameOnly() throws {
        let policy = WebhookTargetPolicy(allowPrivate: false)
        #expect(try policy.target("https://8.8.8.8/hook").address == nil)
        #expect(try policy.target("https://[2001:4860:4860::8888]/hook").address == nil)
        #expect(WebhookTargetPolicy.text([8, 8, 4, 4]) == "8.8.4.4")
        #expect(WebhookTargetPolicy.text(WebhookTargetPolicy.parse("2001:db8::1")!) == "2001:db8::1")
        #expect(WebhookTargetPolicy.parse("example.com") == nil)
        #expect(try WebhookTargetPolicy(allowPrivate: true).target("http://localhost:8080/x").address == nil)
    }
}
