/// A webhook: never its secret, except once in the answer that made it (create, or a PATCH with
/// `rotateSecret`).
public struct WebhookInfo: Codable, Sendable {
    public var id: String
    public var url: String
    public var description: String?
    public var events: [String]
    public var active: Bool
    public var createdDate: Int64
    public var createdBy: String
    public var updatedDate: Int64
    public var secret: String?

    public init(
        id: String, url: String, description: String?, events: [String], active: Bool, createdDate: Int64,
        createdBy: String, updatedDate: Int64, secret: String?
    ) {
        self.id = id
        self.url = url
        self.description = description
        self.events = events
        self.active = active
        self.createdDate = createdDate
        self.createdBy = createdBy
        self.updatedDate = updatedDate
        self.secret = secret
    }
}

/// `GET /orgs/{org}/webhooks`.
public struct WebhookList: Codable, Sendable {
    public var webhooks: [WebhookInfo]

    public init(webhooks: [WebhookInfo]) {
        self.webhooks = webhooks
    }
}

/// `POST /orgs/{org}/webhooks`.
public struct WebhookCreateRequest: Codable, Sendable {
    public var url: String
    public var events: [String]?
    public var description: String?
    public var secret: String?
    public var active: Bool?

    public init(
        url: String, events: [String]? = nil, description: String? = nil, secret: String? = nil, active: Bool? = nil
    ) {
        self.url = url
        self.events = events
        self.description = description
        self.secret = secret
        self.active = active
    }
}

/// `PATCH /orgs/{org}/webhooks/{id}`: absent fields are unchanged.
public struct WebhookUpdateRequest: Codable, Sendable {
    public var url: String?
    public var events: [String]?
    public var description: String?
    public var active: Bool?
    public var rotateSecret: Bool?

    public init(
        url: String? = nil, events: [String]? = nil, description: String? = nil, active: Bool? = nil,
        rotateSecret: Bool? = nil
    ) {
        self.url = url
        self.events = events
        self.description = description
        self.active = active
        self.rotateSecret = rotateSecret
    }
}

/// One delivery of a webhook's event, with its last attempt.
public struct WebhookDeliveryInfo: Codable, Sendable {
    /// Lower case, as in the `webhook-id` header.
    public var id: String
    public var event: String
    public var status: String
    public var attempts: Int
    public var createdDate: Int64
    public var nextAttemptDate: Int64?
    public var lastAttemptDate: Int64?
    public var lastStatus: Int?
    public var lastError: String?
    public var deliveredDate: Int64?
    public var payload: String

    public init(
        id: String, event: String, status: String, attempts: Int, createdDate: Int64, nextAttemptDate: Int64?,
        lastAttemptDate: Int64?, lastStatus: Int?, lastError: String?, deliveredDate: Int64?, payload: String
    ) {
        self.id = id
        self.event = event
        self.status = status
        self.attempts = attempts
        self.createdDate = createdDate
        self.nextAttemptDate = nextAttemptDate
        self.lastAttemptDate = lastAttemptDate
        self.lastStatus = lastStatus
        self.lastError = lastError
        self.deliveredDate = deliveredDate
        self.payload = payload
    }
}

/// `GET /orgs/{org}/webhooks/{id}/deliveries`.
public struct DeliveryList: Codable, Sendable {
    public var deliveries: [WebhookDeliveryInfo]

    public init(deliveries: [WebhookDeliveryInfo]) {
        self.deliveries = deliveries
    }
}
