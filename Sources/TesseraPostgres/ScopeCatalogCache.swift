import Foundation
import Logging
import Synchronization
import TesseraCore

/// Scope catalogs per organization, shared by verification (effective scopes on a miss) and token
/// creation (the scope check): catalogs change rarely, and a changed or removed scope notifies
/// `o:`, which drops the org's catalog here (``invalidate(_:)``). A minute's TTL bounds a lost
/// notification. Adding a scope notifies nothing: token creation re-reads a catalog that lacks a
/// requested scope before refusing it, and the database's own trigger refuses a scope that left.
public final class ScopeCatalogCache: Sendable {
    struct State {
        var catalogs: [UUID: (catalog: ScopeCatalog, expires: Date)] = [:]
        /// Bumped by every drop: a read that started before one is not kept after it.
        var generation: UInt64 = 0
    }

    public static let ttl: TimeInterval = 60
    private let state = Mutex(State())

    public init() {}

    /// The org's catalog, from here when read less than ``ttl`` ago (unless `fresh`), else by
    /// `read` (and kept, unless a drop happened meanwhile).
    public func catalog(
        for orgID: UUID, now: Date, fresh: Bool = false, read: @Sendable () async throws -> ScopeCatalog
    ) async throws -> ScopeCatalog {
        let (cached, generation) = state.withLock { state in
            (state.catalogs[orgID].flatMap { $0.expires > now && !fresh ? $0.catalog : nil }, state.generation)
        }
        if let cached { return cached }
        let catalog = try await read()
        state.withLock { state in
            if state.generation == generation { state.catalogs[orgID] = (catalog, now.addingTimeInterval(Self.ttl)) }
        }
        return catalog
    }

    public func invalidate(_ orgID: UUID) {
        state.withLock { state in
            state.catalogs[orgID] = nil
            state.generation &+= 1
        }
    }

    public func removeAll() {
        state.withLock { state in
            state.catalogs.removeAll()
            state.generation &+= 1
        }
    }
}

extension TesseraStore {
    /// The org's scope catalog through ``catalogs``: read from the database when not cached (or
    /// when `fresh`), within `timeout` when one is given.
    public func scopeCatalog(
        orgID: UUID, now: Date, fresh: Bool = false, timeout: Duration? = nil, logger: Logger? = nil
    ) async throws -> ScopeCatalog {
        try await catalogs.catalog(for: orgID, now: now, fresh: fresh) { [self] in
            let read: @Sendable () async throws -> ScopeCatalog = { [self] in
                ScopeCatalog(
                    try await withConnection {
                        try await OrganizationRepository($0, logger: logger ?? self.logger).scopeCatalog(orgID: orgID)
                    })
            }
            guard let timeout else { return try await read() }
            return try await withTimeout(timeout, read)
        }
    }
}
