import Foundation

/// Wall clock seam: production uses the system time, tests inject a fixed or advancing one
/// (expiration, idle timeout).
public protocol WallClock: Sendable {
    func now() -> Date
}

public struct SystemWallClock: WallClock {
    public init() {}
    public func now() -> Date { Date() }
}
