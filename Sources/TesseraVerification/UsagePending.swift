import Foundation
import TesseraCore

/// What verifications left behind since the last flush of a ``UsageRecorder``: one compact record
/// per token (96 bytes: its org, the hour counted, six counters, last use and the recent
/// addresses, the first one inline), so a replica can wait a whole flush interval with nearly a
/// hundred thousand distinct tokens and still write each token at most once (DESIGN §5: last use
/// coalesced to at most one write a minute per token).
struct UsagePending {
    /// A token and an hour (seconds since 1970 / 3600): the key of a `token_usage` row.
    struct Key: Hashable {
        var tokenID: UUID
        var hour: Int64
    }

    /// Verifications of one token in one hour, by outcome (``UsageOutcome``'s order).
    struct Counts {
        var orgID: UUID
        var values: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0, 0, 0)

        init(orgID: UUID) { self.orgID = orgID }

        var isEmpty: Bool { values == (0, 0, 0, 0, 0, 0) }

        func value(_ outcome: UsageOutcome) -> Int64 {
            switch outcome {
            case .valid: Int64(values.0)
            case .insufficientScope: Int64(values.1)
            case .expired: Int64(values.2)
            case .inactive: Int64(values.3)
            case .revoked: Int64(values.4)
            case .address: Int64(values.5)
            }
        }

        /// Adds `count` (saturating: a counter of one hour of one replica stays far below 2³²).
        mutating func add(_ outcome: UsageOutcome, _ count: UInt32 = 1) {
            func plus(_ value: inout UInt32) {
                value = value.addingReportingOverflow(count).overflow ? .max : value + count
            }
            switch outcome {
            case .valid: plus(&values.0)
            case .insufficientScope: plus(&values.1)
            case .expired: plus(&values.2)
            case .inactive: plus(&values.3)
            case .revoked: plus(&values.4)
            case .address: plus(&values.5)
            }
        }

        mutating func add(_ other: Counts) {
            for outcome in UsageOutcome.allCases { add(outcome, UInt32(clamping: other.value(outcome))) }
        }
    }

    /// The last distinct client addresses of a token, most recent last, at most `kept`; the most
    /// recent inline (the usual token is seen from one address: no allocation).
    struct RecentAddresses {
        private var latest: (address: String, at: Date)?
        private var older: [(address: String, at: Date)] = []

        mutating func note(_ address: String, at date: Date, kept: Int) {
            guard let current = latest else {
                latest = (address, date)
                return
            }
            if current.address != address {
                if let index = older.firstIndex(where: { $0.address == address }) {
                    older.remove(at: index)
                } else if older.count == kept - 1 {
                    older.removeFirst()
                }
                older.append(current)
            }
            latest = (address, date)
        }

        /// Oldest first.
        var all: [(address: String, at: Date)] { latest.map { older + [$0] } ?? [] }
        var mostRecent: String? { latest?.address }
    }

    struct Token {
        var hour: Int64
        var counts: Counts
        /// The last successful verification in this interval; nil when only refusals were counted.
        var lastUse: Date?
        var addresses = RecentAddresses()
    }

    var tokens: [UUID: Token] = [:]
    /// Counts of an earlier hour of a token that went on verifying into the next hour within one
    /// interval (or that a failed write gave back): rare, so kept apart.
    var spilled: [Key: Counts] = [:]
    /// Most tokens (and most spilled rows) held: a token not yet here when this many are is not
    /// recorded (``dropped`` counts it), so memory stays bounded when writes fall behind.
    let limit: Int
    /// Records not kept because of ``limit`` since this value was made.
    private(set) var dropped = 0

    init(limit: Int = .max) { self.limit = limit }

    var isEmpty: Bool { tokens.isEmpty && spilled.isEmpty }

    /// Counts `outcome` for the token in `hour`; a successful verification also sets last use and
    /// notes the address (when `counting`, addresses are written too).
    mutating func note(
        _ tokenID: UUID, orgID: UUID, _ outcome: UsageOutcome?, hour: Int64, use: Date?, address: String?,
        keptAddresses: Int
    ) {
        if tokens.count >= limit, tokens[tokenID] == nil {
            dropped += 1
            return
        }
        let earlier = tokens[tokenID, default: Token(hour: hour, counts: Counts(orgID: orgID))].record(
            outcome, hour: hour, use: use, address: address, keptAddresses: keptAddresses)
        if let earlier { spill(earlier.counts, of: tokenID, hour: earlier.hour) }
    }

    private mutating func spill(_ counts: Counts, of tokenID: UUID, hour: Int64) {
        let key = Key(tokenID: tokenID, hour: hour)
        if spilled.count >= limit, spilled[key] == nil {
            dropped += 1
            return
        }
        spilled[key, default: Counts(orgID: counts.orgID)].add(counts)
    }

    /// The rows `token_usage` gets: one per token and hour, sorted by token then hour (the order
    /// replicas lock rows in).
    func countRows() -> [(key: Key, counts: Counts)] {
        var rows: [(key: Key, counts: Counts)] = []
        rows.reserveCapacity(tokens.count + spilled.count)
        var spilled = self.spilled
        for (id, token) in tokens where !token.counts.isEmpty {
            let key = Key(tokenID: id, hour: token.hour)
            var counts = token.counts
            if !spilled.isEmpty, let earlier = spilled.removeValue(forKey: key) { counts.add(earlier) }
            rows.append((key, counts))
        }
        for (key, counts) in spilled { rows.append((key, counts)) }
        rows.sort { ($0.key.tokenID, $0.key.hour) < ($1.key.tokenID, $1.key.hour) }
        return rows
    }

    /// Tokens used successfully, sorted by id, with their last use and most recent address.
    func useRows() -> [(id: UUID, token: Token)] {
        tokens.compactMap { id, token in token.lastUse == nil ? nil : (id, token) }.sorted { $0.id < $1.id }
    }

    /// Gives back what a failed write took: counts add up; a last use is kept where none newer
    /// arrived meanwhile.
    mutating func restore(counts rows: [(key: Key, counts: Counts)]) {
        for (key, counts) in rows {
            if var token = tokens[key.tokenID], token.hour == key.hour {
                token.counts.add(counts)
                tokens[key.tokenID] = token
            } else {
                spill(counts, of: key.tokenID, hour: key.hour)
            }
        }
    }

    mutating func restore(uses rows: [(id: UUID, token: Token)]) {
        for (id, old) in rows {
            if var token = tokens[id] {
                guard token.lastUse == nil else { continue }
                token.lastUse = old.lastUse
                token.addresses = old.addresses
                tokens[id] = token
            } else if tokens.count < limit {
                var token = old
                token.counts = Counts(orgID: old.counts.orgID)
                tokens[id] = token
            } else {
                dropped += 1
            }
        }
    }
}

extension UsagePending.Token {
    /// Returns the counts of an earlier hour this token had pending, which the caller keeps apart.
    fileprivate mutating func record(
        _ outcome: UsageOutcome?, hour: Int64, use: Date?, address: String?, keptAddresses: Int
    ) -> (hour: Int64, counts: UsagePending.Counts)? {
        var earlier: (hour: Int64, counts: UsagePending.Counts)?
        if hour != self.hour {
            if !counts.isEmpty {
                earlier = (self.hour, counts)
                counts = UsagePending.Counts(orgID: counts.orgID)
            }
            self.hour = hour
        }
        if let outcome { counts.add(outcome) }
        if let use {
            lastUse = use
            if let address { addresses.note(address, at: use, kept: keptAddresses) }
        }
        return earlier
    }
}
