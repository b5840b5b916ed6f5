import Foundation
import TesseraCore
import TesseraPostgres
import TesseraTestSupport
import TesseraVerification
import Testing

/// Expiry warnings 60, 30 and 7 days before, and at expiry (issue #16), with the clock moved by
/// the test: each notice once per token, the most urgent one only when several are due, and
/// once in all however many replicas sweep at the same moment.
@Suite struct ExpiryNoticeTests {
    @Test func eachNoticeOnceAtItsTime() async throws {
        let url = try await TestPostgres.shared.makeDatabase()
        try await withRunningClient(url) { client, logger in
            let store = TesseraStore(client: client, logger: logger)
            let boot = try await store.bootstrap(organization: "acme", admin: "root")
            let orgID = try await store.verify(boot.token.plaintext).get().orgID
            try await client.query(
                """
                INSERT INTO webhooks (org_id, url, events, secret, created_by)
                VALUES (\(orgID), 'http://127.0.0.1:9/', '{token.expiring,token.expired}', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'root')
                """)
            // The bootstrap token expires with the org's default lifetime: out of the way.
            try await client.query(
                "UPDATE tokens SET expires_at = now() + interval '400 days' WHERE id = \(boot.tokenUUID)")
            let start = Date()
            let day: TimeInterval = 86_400
            func token(_ name: String, expiresIn days: Double) async throws {
                _ = try await store.transaction { connection in
                    try await TokenRepository(connection, logger: logger).insert(
                        NewTokenRow(
                            orgID: orgID, kind: .organization, ownerUserID: nil, username: name, name: name,
                            description: nil,
                            scopes: ["api:read"], groups: [], secret: .generate(kind: .organization),
                            expiresAt: start.addingTimeInterval(days * day), createdAt: start, createdBy: "root",
                            createdByUserID: nil))
                }
            }
            func sweep(_ days: Double) async throws -> Int {
                try await store.withConnection {
                    try await WebhookRepository($0, logger: logger).sweepExpiry(
                        at: start.addingTimeInterval(days * day))
                }
            }
            try await token("quarterly", expiresIn: 90)
            try await token("soon", expiresIn: 5)

            #expect(try await sweep(0) == 1, "soon: only the 7-day notice, not 60 and 30 as well")
            #expect(try await sweep(0) == 0)
            #expect(try await sweep(29) == 0, "quarterly has 61 days left")
            #expect(try await sweep(31) == 1, "quarterly: 60 days")
            #expect(try await sweep(32) == 0)
            #expect(try await sweep(61) == 1, "quarterly: 30 days, and soon expired long ago: no news")
            #expect(try await sweep(84) == 1, "quarterly: 7 days")
            #expect(try await sweep(90.5) == 1, "quarterly: expired")
            #expect(try await sweep(91) == 0)

            let events = try await client.values(
                "SELECT payload->'data'->>'notice' FROM webhook_deliveries ORDER BY created_at", as: String.self)
            #expect(events == ["7d", "60d", "30d", "7d", "expired"])
            let types = try await client.values(
                "SELECT event FROM webhook_deliveries ORDER BY created_at", as: String.self)
            #expect(types.filter { $0 == "token.expired" }.count == 1)

            // Replicas sweeping at once: each notice still goes out once.
            try await token("raced", expiresIn: 20)
            let counts = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<4 { group.addTask { try await sweep(1) } }
                return try await group.reduce(0, +)
            }
            #expect(counts == 1)

            // A sweep in batches smaller than what is due still sends every notice, once.
            for index in 0..<5 { try await token("batch-\(index)", expiresIn: 40) }
            let batched = try await store.withConnection {
                try await WebhookRepository($0, logger: logger).sweepExpiry(
                    at: start.addingTimeInterval(day), batch: 2)
            }
            #expect(batched == 5)
            #expect(try await sweep(1) == 0)
            let sixty = try await client.values(
                "SELECT count(*)::int FROM webhook_deliveries WHERE payload->'data'->'token'->>'name' LIKE 'batch-%'",
                as: Int32.self)
            #expect(sixty == [5])
            // The previous release's one-argument form (a replica mid-upgrade) finds nothing more.
            let legacy = try await client.values(
                "SELECT tessera_sweep_expiry(\(start.addingTimeInterval(day)))", as: Int32.self)
            #expect(legacy == [0])
        }
    }
}
