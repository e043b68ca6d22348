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
    ///
    /// `handingOff`: for a process that exits right after (the CNI plugin), the wait is not
    /// spent in it at all, when a socket sent removals (`release(mayWait:)`). The sockets' last references go to a detached process (double fork,
    /// so this one reaps its only child at once): it closes standard input and output — the
    /// caller sees the output end as soon as this process exits — and exits, and the kernel's
    /// close of the sockets waits there. Nothing of the kernel's state is pending by then: every
    /// change was committed, only the freeing of removed objects remains. If fork fails, the
    /// sockets are closed here, waiting as before.
    public static func together<T, E: Error>(handingOff: Bool = false, _ body: () throws(E) -> T) throws(E) -> T {
        registry.enter()
        defer { registry.leave(handingOff: handingOff) }
        return try body()
    }

    /// Gives the sockets `closes` would close to a detached process, then drops this process's references.
    static func handOff(_ closes: [() -> Void]) {
        let child = fork()
        if child == 0 {
            // A fork of a threaded process: only async-signal-safe calls until _exit.
            if fork() != 0 { _exit(0) }
            _ = setsid()
            for descriptor: Int32 in 0...2 { _ = close(descriptor) }
            _exit(0) // the kernel closes the inherited sockets (and waits) here
        }
        if child > 0 {
            var status: Int32 = 0
            while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        }
        for close in closes { close() } // the detached process holds the sockets now: no wait here
    }

    /// Closes now, or at the end of the enclosing `together`. `close` must be safe on any thread.
    /// `mayWait`: this socket sent nf_tables removals, so the close will probably wait.
    public static func release(mayWait: Bool = false, _ close: @escaping () -> Void) {
        if !registry.keep(close, mayWait: mayWait) { close() }
    }

    static let registry = Registry()

    // One lock around a depth and a list; touched by the threads that enter namespaces.
    final class Registry: @unchecked Sendable {
        private var mutex = pthread_mutex_t()
        private var depth = 0
        private var pending: [() -> Void] = []
        private var pendingMayWait = false

        init() { pthread_mutex_init(&mutex, nil) }

        func enter() {
            pthread_mutex_lock(&mutex); depth += 1; pthread_mutex_unlock(&mutex)
        }

        func leave(handingOff: Bool) {
            pthread_mutex_lock(&mutex)
            depth -= 1
            let closes = depth == 0 ? pending : []
            let mayWait = depth == 0 && pendingMayWait
            if depth == 0 { pending = []; pendingMayWait = false }
            pthread_mutex_unlock(&mutex)
            // Every netfilter socket's close waits while the removals are pending, so all go.
            if handingOff && mayWait { NetlinkRelease.handOff(closes); return }
            for close in closes { close() }
        }

        func keep(_ close: @escaping () -> Void, mayWait: Bool) -> Bool {
            pthread_mutex_lock(&mutex)
            defer { pthread_mutex_unlock(&mutex) }
            guard depth > 0 else { return false }
            pending.append(close)
            pendingMayWait = pendingMayWait || mayWait
            return true
        }
    }
}
