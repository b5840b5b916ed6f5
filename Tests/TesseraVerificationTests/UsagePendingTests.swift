import Foundation
import Testing

@testable import TesseraVerification

/// What a replica holds between usage flushes: one record per token, rows as PostgreSQL gets them.
@Suite struct UsagePendingTests {
    let org = UUID()
    let start = Date(timeIntervalSince1970: 1_800_000_000)
    var hour: Int64 { Int64(start.timeIntervalSince1970 / 3600) }

    @Test func oneRecordPerTokenAndAnHoursTurnKeepsBothHours() {
        var pending = UsagePending()
        let token = UUID()
        pending.note(token, orgID: org, .valid, hour: hour, use: start, address: "10.0.0.1", keptAddresses: 5)
        pending.note(token, orgID: org, .revoked, hour: hour, use: nil, address: nil, keptAddresses: 5)
        pending.note(token, orgID: org, .valid, hour: hour + 1, use: start + 3600, address: nil, keptAddresses: 5)
        let refused = UUID()
        pending.note(refused, orgID: org, .expired, hour: hour, use: nil, address: nil, keptAddresses: 5)
        #expect(pending.tokens.count == 2 && pending.spilled.count == 1)
        let rows = pending.countRows()
        let mine = rows.filter { $0.key.tokenID == token }
        #expect(mine.map(\.key.hour) == [hour, hour + 1], "sorted by token, then hour")
        #expect(mine.map { $0.counts.value(.valid) } == [1, 1] && mine.first?.counts.value(.revoked) == 1)
        #expect(rows.map(\.key.tokenID) == rows.map(\.key.tokenID).sorted())
        let uses = pending.useRows()
        #expect(uses.map(\.id) == [token], "a token only refused has no last use")
        #expect(uses.first?.token.lastUse == start + 3600)
    }

    @Test func aBoundKeepsWhatIsHeldAndCountsWhatIsNot() {
        var pending = UsagePending(limit: 2)
        let (a, b, c) = (UUID(), UUID(), UUID())
        for token in [a, b, c] {
            pending.note(token, orgID: org, .valid, hour: hour, use: start, address: nil, keptAddresses: 5)
        }
        #expect(Set(pending.tokens.keys) == [a, b] && pending.dropped == 1, "a third token does not fit")
        pending.note(a, orgID: org, .valid, hour: hour, use: start + 1, address: nil, keptAddresses: 5)
        #expect(pending.tokens[a]?.counts.value(.valid) == 2, "a token already held still counts")
        #expect(pending.dropped == 1)

        // A failed write gives back only what fits beside what arrived meanwhile.
        var next = UsagePending(limit: 2)
        next.note(c, orgID: org, .valid, hour: hour, use: start + 2, address: nil, keptAddresses: 5)
        next.restore(uses: pending.useRows())
        #expect(next.tokens.count == 2 && next.dropped == 1)
    }

    @Test func addressesKeepTheLastFiveDistinctMostRecentLast() {
        var addresses = UsagePending.RecentAddresses()
        for (offset, address) in ["a", "b", "a", "c", "d", "e", "f", "b"].enumerated() {
            addresses.note(address, at: start + Double(offset), kept: 5)
        }
        #expect(addresses.all.map(\.address) == ["c", "d", "e", "f", "b"], "the oldest fall out; b comes back last")
        #expect(addresses.all.map(\.at) == [3, 4, 5, 6, 7].map { start + $0 })
        #expect(addresses.mostRecent == "b")
    }

    @Test func aFailedWriteGivesItsRowsBackWithoutLosingNewerOnes() {
        var first = UsagePending()
        let token = UUID()
        first.note(token, orgID: org, .valid, hour: hour, use: start, address: "10.0.0.1", keptAddresses: 5)
        let counts = first.countRows()
        let uses = first.useRows()
        var pending = UsagePending()
        pending.note(token, orgID: org, .valid, hour: hour, use: start + 5, address: "10.0.0.2", keptAddresses: 5)
        pending.restore(counts: counts)
        pending.restore(uses: uses)
        #expect(pending.countRows().map { $0.counts.value(.valid) } == [2], "counts add up")
        #expect(pending.useRows().first?.token.lastUse == start + 5, "the newer last use stays")
        var empty = UsagePending()
        empty.restore(counts: counts)
        empty.restore(uses: uses)
        #expect(empty.countRows().map { $0.counts.value(.valid) } == [1], "counted once, not twice")
        #expect(empty.useRows().first?.token.addresses.mostRecent == "10.0.0.1")
    }

    @Test func countersSaturateInsteadOfTrapping() {
        var counts = UsagePending.Counts(orgID: org)
        counts.add(.valid, .max - 1)
        counts.add(.valid, 5)
        #expect(counts.value(.valid) == Int64(UInt32.max))
    }
}
