import Foundation
import Logging
import PostgresNIO
import TesseraCore
import TesseraPostgres
import TesseraVerification
import TesseraWebhooks

/// What the API and the console do with webhooks: validated, one transaction each with its
/// audit event. (The cache is not concerned: `WriteJournal.note()` with no target.)
public struct WebhookService: Sendable {
    let store: TesseraStore
    let policy: WebhookTargetPolicy

    public init(store: TesseraStore, policy: WebhookTargetPolicy) {
        self.store = store
        self.policy = policy
    }

    public struct Draft: Sendable {
        public var url: String
        public var events: [String]?
        public var description: String?
        public var secret: String?
        public var active: Bool?

        public init(
            url: String, events: [String]? = nil, description: String? = nil, secret: String? = nil,
            active: Bool? = nil
        ) {
            self.url = url
            self.events = events
            self.description = description
            self.secret = secret
            self.active = active
        }
    }

    public struct Change: Sendable {
        public var url: String?
        public var events: [String]?
        public var description: String?
        public var active: Bool?
        public var rotateSecret = false

        public init(
            url: String? = nil, events: [String]? = nil, description: String? = nil, active: Bool? = nil,
            rotateSecret: Bool = false
        ) {
            self.url = url
            self.events = events
            self.description = description
            self.active = active
            self.rotateSecret = rotateSecret
        }
    }

    public static let notFound = DomainError.notFound("Webhook not found")

    public func list(org: OrganizationRecord, logger: Logger) async throws -> [WebhookRecord] {
        try await store.withConnection { try await WebhookRepository($0, logger: logger).list(orgID: org.id) }
    }

    public func webhook(_ id: UUID, org: OrganizationRecord, logger: Logger) async throws -> WebhookRecord {
        guard
            let record = try await store.withConnection({
                try await WebhookRepository($0, logger: logger).find(id: id, orgID: org.id)
            })
        else { throw Self.notFound }
        return record
    }

    /// The new webhook, with its secret (the caller shows it once).
    public func create(_ draft: Draft, org: OrganizationRecord, actor: AuditActor, logger: Logger) async throws
        -> WebhookRecord
    {
        let url = try checkedURL(draft.url)
        let events = try Self.checkedEvents(draft.events ?? WebhookEvent.names)
        let description = try Self.checkedDescription(draft.description)
        var secret = WebhookSecret.generate()
        if let own = draft.secret {
            do {
                secret = try WebhookSecret(parsing: own)
            } catch {
                throw DomainError.invalidField("secret", error.description)
            }
        }
        let record = try await store.transaction { connection in
            let record = try await WebhookRepository(connection, logger: logger).insert(
                orgID: org.id, url: url, description: description, events: events, secret: secret.encoded,
                active: draft.active ?? true, createdBy: actor.username ?? "unknown")
            try await AuditRepository(connection, logger: logger).record(
                actor.event(
                    orgID: org.id, action: .webhookCreated,
                    details: ["id": record.id.uuidString.lowercased(), "url": url]))
            return record
        }
        WriteJournal.note()
        return record
    }

    public func update(_ id: UUID, _ change: Change, org: OrganizationRecord, actor: AuditActor, logger: Logger)
        async throws
        -> WebhookRecord
    {
        let url = try change.url.map(checkedURL)
        let events = try change.events.map(Self.checkedEvents)
        let description = try change.description.map { try Self.checkedDescription($0) }
        let secret = change.rotateSecret ? WebhookSecret.generate() : nil
        let record = try await store.transaction { connection -> WebhookRecord? in
            guard
                let record = try await WebhookRepository(connection, logger: logger).update(
                    id: id, orgID: org.id, url: url, description: description, events: events, secret: secret?.encoded,
                    active: change.active)
            else { return nil }
            var details = ["id": id.uuidString.lowercased()]
            if secret != nil { details["secret"] = "rotated" }
            if let active = change.active { details["active"] = String(active) }
            try await AuditRepository(connection, logger: logger).record(
                actor.event(orgID: org.id, action: .webhookUpdated, details: details))
            return record
        }
        guard let record else { throw Self.notFound }
        WriteJournal.note()
        return record
    }

    public func delete(_ id: UUID, org: OrganizationRecord, actor: AuditActor, logger: Logger) async throws {
        let deleted = try await store.transaction { connection in
            guard try await WebhookRepository(connection, logger: logger).delete(id: id, orgID: org.id) else {
                return false
            }
            try await AuditRepository(connection, logger: logger).record(
                actor.event(orgID: org.id, action: .webhookDeleted, details: ["id": id.uuidString.lowercased()]))
            return true
        }
        guard deleted else { throw Self.notFound }
        WriteJournal.note()
    }

    public func deliveries(of webhook: WebhookRecord, limit: Int, logger: Logger) async throws
        -> [WebhookDeliveryRecord]
    {
        try await store.withConnection {
            try await WebhookRepository($0, logger: logger).deliveries(webhookID: webhook.id, limit: limit)
        }
    }

    public func redeliver(
        _ delivery: UUID, of webhook: WebhookRecord, org: OrganizationRecord, actor: AuditActor, logger: Logger
    ) async throws {
        let found = try await store.transaction { connection in
            guard
                try await WebhookRepository(connection, logger: logger).redeliver(
                    deliveryID: delivery, webhookID: webhook.id)
            else {
                return false
            }
            try await AuditRepository(connection, logger: logger).record(
                actor.event(
                    orgID: org.id, action: .webhookRedelivered, details: ["delivery": delivery.uuidString.lowercased()])
            )
            return true
        }
        guard found else { throw DomainError.notFound("No such delivery of this webhook") }
        WriteJournal.note()
    }

    public func checkedURL(_ url: String) throws -> String {
        do {
            return try policy.check(url).absoluteString
        } catch {
            throw DomainError.invalidField("url", error.description)
        }
    }

    public static func checkedEvents(_ events: [String]) throws -> [String] {
        let unique = Array(Set(events)).sorted()
        guard !unique.isEmpty, unique.allSatisfy(WebhookEvent.names.contains) else {
            throw DomainError.invalidField(
                "events", "must be a non-empty list of: \(WebhookEvent.names.joined(separator: ", "))")
        }
        return unique
    }

    public static func checkedDescription(_ description: String?) throws -> String? {
        guard let description, !description.isEmpty else { return nil }
        try Limits.checkDescription(description)
        return description
    }
}
