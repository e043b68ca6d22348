#if canImport(Glibc)
import Glibc
#endif

/// Closing the last netfilter netlink socket of a process makes nf_tables finish its deferred
/// destruction of what earlier commits removed — an RCU grace period, 5–20 ms here — if that work
/// has not run yet (`nft_rcv_nl_event`). One command that commits in the host and in a container
/// namespace would wait once per socket. Inside `together`, sockets are closed at its end, all at
/// once: the first close waits for the destruction of everything committed, the others find
/// nothing left to wait for.
public enum NetlinkRelease {
    /// Runs `body`; sockets released meanwhile are closed when it returns (or throws).
    public static func together<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        registry.enter()
        defer { registry.leave() }
        return try body()
    }

    /// Closes now, or at the end of the enclosing `together`. `close` must be safe on any thread.
    public static func release(_ close: @escaping () -> Void) {
        if !registry.keep(close) { close() }
    }

    static let registry = Registry()

    // One lock around a depth and a list; touched by the threads that enter namespaces.
    final class Registry: @unchecked Sendable {
        private var mutex = pthread_mutex_t()
        private var depth = 0
        private var pending: [() -> Void] = []

        init() { pthread_mutex_init(&mutex, nil) }

        func enter() {
            pthread_mutex_lock(&mutex); depth += 1; pthread_mutex_unlock(&mutex)
        }

        func leave() {
            pthread_mutex_lock(&mutex)
            depth -= 1
            let closes = depth == 0 ? pending : []
            if depth == 0 { pending = [] }
            pthread_mutex_unlock(&mutex)
            for close in closes { close() }
        }

        func keep(_ close: @escaping () -> Void) -> Bool {
            pthread_mutex_lock(&mutex)
            defer { pthread_mutex_unlock(&mutex) }
            guard depth > 0 else { return false }
            pending.append(close)
            return true
        }
    }
}
