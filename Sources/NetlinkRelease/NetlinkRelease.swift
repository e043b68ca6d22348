import CDockNFVShim
#if canImport(Glibc)
import Glibc
#endif

/// Closing a netfilter netlink socket makes nf_tables finish its deferred destruction of what
/// earlier commits removed if that work has not run yet (`nft_rcv_nl_event`): the close waits for
/// an RCU grace period, 5–20 ms here, holding the namespace's commit mutex, so the next commit
/// there waits too. A commit that removes something leaves such work behind for about a grace
/// period (one that only adds does not). Inside `together`, sockets are closed at its end, all at once:
/// one command that commits in the host and in a container namespace waits once, not per socket.
public enum NetlinkRelease {
    /// Runs `body`; sockets released meanwhile are closed when it returns (or throws).
    ///
    /// `handingOff`, for a process that exits right after (the CNI plugin, docknfvctl): when a
    /// socket committed removals (`release(mayWait:)`), nobody waits. The sockets' last references
    /// go to a detached process (a double fork: this process reaps its only child at once). It
    /// closes standard input and output at once — the caller sees the output end when this
    /// process exits — waits until this process has dropped its own references, then lingers
    /// `linger` (by then the kernel has done the deferred work by itself, so the close has
    /// nothing to flush and holds no mutex) and exits, closing the sockets. Every change was
    /// committed before; only the kernel's freeing remains. If fork fails, the sockets are closed
    /// here, waiting as before.
    public static func together<T, E: Error>(handingOff: Bool = false, _ body: () throws(E) -> T) throws(E) -> T {
        registry.enter()
        defer { registry.leave(handingOff: handingOff) }
        return try body()
    }

    /// How long the detached process keeps the sockets: several grace periods.
    static let linger = timespec(tv_sec: 0, tv_nsec: 100_000_000)

    /// A socket to close: its descriptor (kept open by the detached process) and how to close it
    /// here (which also frees what the library allocated with it).
    struct Pending {
        var descriptor: Int32
        var close: () -> Void
    }

    /// Gives the sockets to a detached process, then drops this process's references.
    static func handOff(_ sockets: [Pending]) {
        // The detached process reads until this process closes the write end: only then are its
        // own references the last. Close-on-exec: a process another thread starts meanwhile must
        // not hold it.
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { for socket in sockets { socket.close() }; return }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        let keep = Set(sockets.map(\.descriptor) + [ends[0]])
        let others = openDescriptors().filter { !keep.contains($0) }
        // The detached process runs C only (a fork of a threaded process may make only
        // async-signal-safe calls; Swift code could take a runtime lock another thread held).
        // Every other descriptor goes at once — standard output first: the caller waits for its
        // end — so it holds nothing else of this process's, a lock, a pipe.
        _ = others.withUnsafeBufferPointer { closing in
            dnfv_spawn_lingering(closing.baseAddress, closing.count, ends[0], Int(linger.tv_nsec) + Int(linger.tv_sec) * 1_000_000_000)
        }
        _ = close(ends[0])
        // When the fork worked these are not the last references (no wait here); when it failed
        // they are, and this process waits as without a hand-off.
        for socket in sockets { socket.close() }
        _ = close(ends[1])
    }

    /// The process's open descriptors (from /proc/self/fd; the standard three when it cannot be
    /// read). Listed rather than tried one by one: the limit may be a million.
    static func openDescriptors() -> [Int32] {
        guard let directory = opendir("/proc/self/fd") else { return [0, 1, 2] }
        defer { closedir(directory) }
        let own = dirfd(directory)
        var out: [Int32] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if let descriptor = Int32(name), descriptor != own { out.append(descriptor) }
        }
        return out.sorted()
    }

    /// Closes now, or at the end of the enclosing `together`. `close` must be safe on any thread.
    /// `descriptor` is the socket's. `mayWait`: it committed nf_tables removals, so its close
    /// will probably wait.
    public static func release(descriptor: Int32, mayWait: Bool = false, _ close: @escaping () -> Void) {
        if !registry.keep(Pending(descriptor: descriptor, close: close), mayWait: mayWait) { close() }
    }

    static let registry = Registry()

    // One lock around a depth and a list; touched by the threads that enter namespaces.
    final class Registry: @unchecked Sendable {
        private var mutex = pthread_mutex_t()
        private var depth = 0
        private var pending: [Pending] = []
        private var pendingMayWait = false

        init() { pthread_mutex_init(&mutex, nil) }

        func enter() {
            pthread_mutex_lock(&mutex); depth += 1; pthread_mutex_unlock(&mutex)
        }

        func leave(handingOff: Bool) {
            pthread_mutex_lock(&mutex)
            depth -= 1
            let sockets = depth == 0 ? pending : []
            let mayWait = depth == 0 && pendingMayWait
            if depth == 0 { pending = []; pendingMayWait = false }
            pthread_mutex_unlock(&mutex)
            // Every netfilter socket's close waits while that work is pending, so all go.
            if handingOff && mayWait { NetlinkRelease.handOff(sockets); return }
            for socket in sockets { socket.close() }
        }

        func keep(_ socket: Pending, mayWait: Bool) -> Bool {
            pthread_mutex_lock(&mutex)
            defer { pthread_mutex_unlock(&mutex) }
            guard depth > 0 else { return false }
            pending.append(socket)
            pendingMayWait = pendingMayWait || mayWait
            return true
        }
    }
}
