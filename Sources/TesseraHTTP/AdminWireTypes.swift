import Foundation
import Hummingbird
import TesseraCore
import TesseraPostgres
import TesseraServices

/// Wire form of an organization: policy and scope catalog (DESIGN §2).
struct OrganizationInfo: ResponseEncodable {
    let record: OrganizationRecord
    let scopes: [ScopeCatalog.Entry]

    init(_ details: OrganizationService.Details) {
        record = details.record
        scopes = details.scopes
    }

    enum Key: String, CodingKey {
        case slug, displayName, defaultTokenLifetimeDays, maxTokenLifetimeDays, allowNonExpiringTokens, idleTimeoutDays
        case apiGroup, userTokensEnabled, defaultScopes, scopes, personalTokenLimit, createdDate, updatedDate
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(record.slug, forKey: .slug)
        try c.encode(record.displayName, forKey: .displayName)
        try c.encode(record.defaultTokenLifetimeDays, forKey: .defaultTokenLifetimeDays)
        try c.encode(record.maxTokenLifetimeDays, forKey: .maxTokenLifetimeDays)
        try c.encode(record.allowNonExpiringTokens, forKey: .allowNonExpiringTokens)
        try c.encode(record.idleTimeoutDays, forKey: .idleTimeoutDays)
        try c.encode(record.apiGroup, forKey: .apiGroup)
        try c.encode(record.userTokensEnabled, forKey: .userTokensEnabled)
        try c.encode(record.defaultScopes, forKey: .defaultScopes)
        try c.encode(record.personalTokenLimit, forKey: .personalTokenLimit)
        try c.encode(scopes, forKey: .scopes)
        try c.encode(Int64(record.createdAt.timeIntervalSince1970), forKey: .createdDate)
        try c.encode(Int64(record.updatedAt.timeIntervalSince1970), forKey: .updatedDate)
    }
}

struct MemberInfo: ResponseEncodable {
    let username: String
    let role: String
    let groups: [String]
    let status: String
    let createdDate: Int64

    init(_ member: MemberRecord) {
        username = member.username
        role = member.role.rawValue
        groups = member.groups
        status = member.userStatus.rawValue
        createdDate = Int64(member.createdAt.timeIntervalSince1970)
    }
}

struct UserInfo: ResponseEncodable {
    let username: String
    let status: String
    let platformAdmin: Bool
    let createdDate: Int64

    init(_ user: UserRecord) {
        username = user.username
        status = user.status.rawValue
        platformAdmin = user.platformAdmin
        createdDate = Int64(user.createdAt.timeIntervalSince1970)
    }
}

struct Message: ResponseEncodable {
    let message: String
}
