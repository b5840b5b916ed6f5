import NIOCore
import NIOPosix
import Synchronization

public struct TimeoutError: Error, CustomStringConvertible {
    public let duration: Duration
    public var description: String { "timed out after \(duration)" }
    public init(duration: Duration) { self.duration = duration }
}

/// Runs `operation`, giving up after `duration`: a pool waiting for an unreachable database would
/// otherwise hold the request forever. At the deadline the operation is cancelled and the caller
/// gets ``TimeoutError`` at once, even if the operation is slow to notice.
///
/// The deadline is an event-loop timer, not a sleeping child task: a `Task.sleep` that is
/// cancelled early keeps its memory until its deadline (swiftlang/swift#60441), so one per
/// request would pile up under load (issue #14); a cancelled NIO timer is freed at once.
public func withTimeout<Result: Sendable>(
    _ duration: Duration, _ operation: @escaping @Sendable () async throws -> Result
) async throws -> Result {
    let race = TimeoutRace<Result>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            if let ended = race.begin(continuation) { return continuation.resume(with: ended) }
            let timer = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: TimeAmount(duration)) {
                race.finish(.failure(TimeoutError(duration: duration)))
            }
            race.start(
                Task {
                    do {
                        race.finish(.success(try await operation()))
                    } catch {
                        race.finish(.failure(error))
                    }
                }, timer: timer)
        }
    } onCancel: {
        race.finish(.failure(CancellationError()))
    }
}

/// The one answer of ``withTimeout(_:_:)``: the first of the operation, the timer and the
/// caller's cancellation wins; the others find the continuation gone and only clean up.
private final class TimeoutRace<Result: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Result, any Error>?
        var task: Task<Void, Never>?
        var timer: Scheduled<Void>?
        var finished: Swift.Result<Result, any Error>?
    }
    private let state = Mutex(State())

    /// Nil, or the outcome when the caller was cancelled before the race began.
    func begin(_ continuation: CheckedContinuation<Result, any Error>) -> Swift.Result<Result, any Error>? {
        state.withLock { state in
            if let finished = state.finished { return finished }
            state.continuation = continuation
            return nil
        }
    }

    /// Called once the task and timer exist; if the race already ended, they are stopped now.
    func start(_ task: Task<Void, Never>, timer: Scheduled<Void>) {
        let ended = state.withLock { state -> Bool in
            state.task = task
            state.timer = timer
            return state.finished != nil
        }
        if ended { stop(task: task, timer: timer) }
    }

    func finish(_ outcome: Swift.Result<Result, any Error>) {
        let (continuation, task, timer) = state.withLock { state in
            if state.finished == nil { state.finished = outcome }
            defer { state.continuation = nil }
            return (state.continuation, state.task, state.timer)
        }
        guard let continuation else { return }
        stop(task: task, timer: timer)
        continuation.resume(with: outcome)
    }

    private func stop(task: Task<Void, Never>?, timer: Scheduled<Void>?) {
        timer?.cancel()
        task?.cancel()
    }
}
