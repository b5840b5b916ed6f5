import Foundation
import Logging
import PostgresNIO
import TesseraCore

/// A partial update of an organization's policy (JSON merge-patch semantics: nil = unchanged,
/// `.some(nil)` = cleared).
public struct OrganizationPatch: Sendable {
    public var displayName: String?
    public var defaultTokenLifetimeDays: Int?
    public var maxTokenLifetimeDays: Int??
    public var allowNonExpiringTokens: Bool?
    public var idleTimeoutDays: Int??
    public var apiGroup: String??
    /// LISA's adminGroup and userGroup (DESIGN §12): `.some(nil)` turns the mapping off.
    public var adminGroup: String??
    public var userGroup: String??
    public var userTokensEnabled: Bool?
    public var defaultScopes: [String]?
    public var scopes: [ScopeCatalog.Entry]?
    public var personalTokenLimit: Int?

    public init() {}
}
