/// What an audit event records. The raw values are stored in `audit_events.action`, and
/// `sql/0009_webhooks.sql` matches some of them to enqueue webhooks (`AuditActionTests` proves every
/// string it matches is a case here): rename a case only with a migration.
public enum AuditAction: String, Sendable, CaseIterable, Codable {
    case orgBootstrapped = "org.bootstrapped"
    case orgCreated = "org.created"
    case orgPolicyUpdated = "org.policy_updated"
    case orgDeleted = "org.deleted"

    case memberAdded = "member.added"
    case memberUpdated = "member.updated"
    /// An admin removed the member (or their user was deleted); webhook `member.removed`.
    case memberRemoved = "member.removed"
    /// The member left by themselves; webhook `member.removed` with `left: true`.
    case memberLeft = "member.left"
    /// The membership was suspended (SCIM `active: false`, or out of the org's userGroup): its
    /// personal tokens are revoked (`owner_deprovisioned`).
    case memberSuspended = "member.suspended"
    /// A suspended membership is active again (no token comes back).
    case memberReactivated = "member.reactivated"

    case groupCreated = "group.created"
    case groupUpdated = "group.updated"
    case groupDeleted = "group.deleted"

    case userCreated = "user.created"
    case userUpdated = "user.updated"
    case userDeleted = "user.deleted"

    case tokenCreated = "token.created"
    case tokenUpdated = "token.updated"
    case tokenStatusChanged = "token.status_changed"
    case tokenRotated = "token.rotated"
    /// A token already rotated away was rotated again: its whole family is revoked.
    case tokenRotationReuse = "token.rotation_reuse"
    case tokenRevoked = "token.revoked"
    case tokenDeleted = "token.deleted"

    case webhookCreated = "webhook.created"
    case webhookUpdated = "webhook.updated"
    case webhookDeleted = "webhook.deleted"
    case webhookRedelivered = "webhook.redelivered"

    case trustPolicyCreated = "trust_policy.created"
    case trustPolicyUpdated = "trust_policy.updated"
    /// The policy's live tokens are revoked with it (`trust_policy_deleted`).
    case trustPolicyDeleted = "trust_policy.deleted"

    case consoleSignedIn = "console.signed_in"
    case cliLoginApproved = "cli_login.approved"
}

/// The event types a webhook may ask for (DESIGN §11). The raw values travel in payloads and are
/// written by `sql/0009_webhooks.sql` (`AuditActionTests` holds the two together).
public enum WebhookEvent: String, Sendable, CaseIterable, Codable {
    case tokenCreated = "token.created"
    case tokenRevoked = "token.revoked"
    case tokenExpiring = "token.expiring"
    case tokenExpired = "token.expired"
    case tokenLeaked = "token.leaked"
    case memberRemoved = "member.removed"
    case trustPolicyCreated = "trust_policy.created"
    case trustPolicyUpdated = "trust_policy.updated"
    case trustPolicyDeleted = "trust_policy.deleted"

    /// Every event type's name, in the order the API documents them.
    public static let names = allCases.map(\.rawValue)
}

/// A user's global status (DESIGN §2): a disabled user's personal tokens are revoked everywhere.
public enum UserStatus: String, Sendable, CaseIterable, Codable {
    case active
    case disabled
}
