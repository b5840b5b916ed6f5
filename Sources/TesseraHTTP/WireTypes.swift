import Foundation
import Hummingbird
import TesseraAPI
import TesseraCore
import TesseraPostgres
import TesseraServices

// The server's side of the wire types in TesseraAPI (shared with the CLI client and the tests):
// how a record becomes what the API sends. The types themselves, and their key sets, live there.

extension TokenInfo: ResponseEncodable {}
extension TokenList: ResponseEncodable {}
extension TokenDeleted: ResponseEncodable {}
extension Message: ResponseEncodable {}
extension OrganizationInfo: ResponseEncodable {}
extension OrganizationList: ResponseEncodable {}
extension MemberInfo: ResponseEncodable {}
extension MemberList: ResponseEncodable {}
extension UserInfo: ResponseEncodable {}
extension AuditPage: ResponseEncodable {}
extension WebhookInfo: ResponseEncodable {}
extension WebhookList: ResponseEncodable {}
extension DeliveryList: ResponseEncodable {}
extension LoginCode: ResponseEncodable {}
extension LoginIssued: ResponseEncodable {}

/// Whole seconds since the epoch, as every date on the wire.
package func epoch(_ date: Date) -> Int64 { Int64(date.timeIntervalSince1970.rounded(.down)) }

extension TokenInfo {
    /// `token`: the secret, only in the answer that made it.
    package init(record: TokenRecord, now: Date, token: String? = nil) {
        self.init(
            token: token, tokenUUID: record.id.uuidString.lowercased(), tokenExpiration: record.expiresAt.map(epoch),
            createdDate: epoch(record.createdAt), username: record.username, createdBy: record.createdBy,
            name: record.name, groups: record.groups, isSystemToken: record.kind == .organization,
            isExpired: record.isExpired(at: now), organization: record.orgSlug, kind: record.kind.rawValue,
            description: record.description, scopes: record.scopes, status: record.status.rawValue,
            revokedReason: record.revokedReason, revokedDate: record.revokedAt.map(epoch),
            updatedDate: epoch(record.updatedAt), lastUsedDate: record.lastUsedAt.map(epoch),
            tokenPrefix: record.tokenPrefix, source: record.source.rawValue,
            federation: record.federation.map {
                TokenFederationInfo(
                    trustPolicyId: $0.trustPolicyID.uuidString.lowercased(), issuer: $0.issuer, subject: $0.subject,
                    jti: $0.jti)
            }, accessRules: record.accessRules.map { AccessRuleInfo(method: $0.method, path: $0.path, host: $0.host) },
            allowedCidrs: record.allowedCidrs.map(\.text))
    }
}

extension TokenService.CreateRequest {
    /// What a create body asks for.
    package init(_ body: TokenCreateRequest) {
        self.init(
            name: body.name, description: body.description, scopes: body.scopes, tokenExpiration: body.tokenExpiration,
            neverExpires: body.neverExpires, isSystemToken: body.isSystemToken, groups: body.groups)
        accessRules = body.accessRules?.map { ($0.method, $0.path, $0.host) }
        allowedCidrs = body.allowedCidrs
    }
}

extension OrganizationInfo {
    package init(_ details: OrganizationService.Details) {
        let record = details.record
        self.init(
            slug: record.slug, displayName: record.displayName,
            defaultTokenLifetimeDays: record.defaultTokenLifetimeDays,
            maxTokenLifetimeDays: record.maxTokenLifetimeDays, allowNonExpiringTokens: record.allowNonExpiringTokens,
            idleTimeoutDays: record.idleTimeoutDays, apiGroup: record.apiGroup, adminGroup: record.adminGroup,
            userGroup: record.userGroup,
            userTokensEnabled: record.userTokensEnabled, defaultScopes: record.defaultScopes,
            personalTokenLimit: record.personalTokenLimit,
            scopes: details.scopes.map {
                ScopeInfo(name: $0.name, description: $0.description, adminOnly: $0.adminOnly, implies: $0.implies)
            },
            createdDate: epoch(record.createdAt), updatedDate: epoch(record.updatedAt))
    }
}

extension MemberInfo {
    package init(_ member: MemberRecord) {
        self.init(
            username: member.username, role: member.role.rawValue, groups: member.groups,
            status: member.userStatus.rawValue, createdDate: epoch(member.createdAt))
    }
}

extension UserInfo {
    package init(_ user: UserRecord) {
        self.init(
            username: user.username, status: user.status.rawValue, platformAdmin: user.platformAdmin,
            createdDate: epoch(user.createdAt))
    }
}

extension WebhookInfo {
    /// The secret only when `showingSecret` (the answer that made it).
    package init(_ record: WebhookRecord, showingSecret: Bool = false) {
        self.init(
            id: record.id.uuidString.lowercased(), url: record.url, description: record.description,
            events: record.events, active: record.active, createdDate: epoch(record.createdAt),
            createdBy: record.createdBy, updatedDate: epoch(record.updatedAt),
            secret: showingSecret ? record.secret : nil)
    }
}

extension WebhookDeliveryInfo {
    package init(_ record: WebhookDeliveryRecord) {
        self.init(
            id: record.id.uuidString.lowercased(), event: record.event, status: record.status,
            attempts: record.attempts, createdDate: epoch(record.createdAt),
            nextAttemptDate: record.nextAttemptAt.map(epoch), lastAttemptDate: record.lastAttemptAt.map(epoch),
            lastStatus: record.lastStatus, lastError: record.lastError, deliveredDate: record.deliveredAt.map(epoch),
            payload: record.payload)
    }
}
