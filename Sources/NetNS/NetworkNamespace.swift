import CDockNFVShim
#if canImport(Glibc)
import Glibc
#endif

/// Runs code inside a Linux network namespace.
///
/// `setns(2)` moves only the calling thread, and a thread that switched namespace must
/// never go back to a pool where unrelated work would inherit it. So every call here
/// starts a dedicated POSIX thread, switches it into the namespace, runs the body,
/// and lets the thread exit. Sockets (netlink included) must be opened inside the body.
public enum NetworkNamespace {
    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        /// The namespace path does not exist.
        case notFound(path: String)
        /// The path (or descriptor) exists but is not a network namespace.
        case notANetworkNamespace(path: String, detail: String)
        /// Opening or entering the namespace was refused (not root / no CAP_SYS_ADMIN).
        case permissionDenied(path: String, call: String, errno: Int32)
        /// Any other system-call failure.
        case systemCall(path: String, call: String, errno: Int32)

        public var description: String {
            switch self {
            case .notFound(let path):
                return "network namespace \(path): no such file"
            case .notANetworkNamespace(let path, let detail):
                return "\(path) is not a network namespace (\(detail))"
            case .permissionDenied(let path, let call, let errno):
                // Root can be refused too: root of a user namespace, or a container without CAP_SYS_ADMIN.
                let needs = geteuid() == 0 ? "needs CAP_SYS_ADMIN over that namespace, which this root lacks" : "needs root or CAP_SYS_ADMIN"
                return "network namespace \(path): \(call) refused: \(errnoText(errno)) (\(needs))"
            case .systemCall(let path, let call, let errno):
                return "network namespace \(path): \(call) failed: \(errnoText(errno))"
            }
        }
    }

    /// Where `ip netns add NAME` puts its namespaces.
    public static func path(named name: String) -> String { "/run/netns/\(name)" }

    /// Runs `body` on a new thread that has entered the network namespace at `path`.
    /// Errors thrown by `body` are rethrown unchanged.
    public static func run<T>(path: String, _ body: () throws -> T) throws -> T {
        try onDedicatedThread {
            let fd = try open(path: path)
            defer { close(fd) }
            try enter(fd: fd, label: path)
            return try body()
        }
    }

    /// Runs `body` on a new thread that has entered the namespace open at `fd`.
    /// The descriptor stays owned by the caller.
    public static func run<T>(fd: Int32, _ body: () throws -> T) throws -> T {
        try onDedicatedThread {
            try enter(fd: fd, label: "fd \(fd)")
            return try body()
        }
    }

    /// Switches the *calling thread* into the namespace at `path`. Only for a process that
    /// has started no other thread yet (e.g. first thing in a single-threaded `main`); threads
    /// it creates afterwards inherit the namespace.
    public static func enterCurrentThread(path: String) throws {
        let fd = try open(path: path)
        defer { close(fd) }
        try enter(fd: fd, label: path)
    }

    /// Checks that `path` names a network namespace, without entering it.
    public static func validate(path: String) throws {
        let fd = try open(path: path)
        close(fd)
    }

    // MARK: - Internals

    static func open(path: String) throws -> Int32 {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let err = errno
            switch err {
            case ENOENT, ENOTDIR: throw Error.notFound(path: path)
            case EACCES, EPERM: throw Error.permissionDenied(path: path, call: "open", errno: err)
            default: throw Error.systemCall(path: path, call: "open", errno: err)
            }
        }
        let type = dnfv_ns_type(fd)
        if type < 0 {
            let err = errno
            close(fd)
            if err == ENOTTY || err == EINVAL {
                throw Error.notANetworkNamespace(path: path, detail: "not a namespace file")
            }
            throw Error.systemCall(path: path, call: "ioctl(NS_GET_NSTYPE)", errno: err)
        }
        if type != dnfv_clone_newnet() {
            close(fd)
            throw Error.notANetworkNamespace(path: path, detail: "a namespace of another type")
        }
        return fd
    }

    static func enter(fd: Int32, label: String) throws {
        if dnfv_setns_net(fd) != 0 {
            let err = errno
            switch err {
            case EPERM: throw Error.permissionDenied(path: label, call: "setns", errno: err)
            case EINVAL, EBADF: throw Error.notANetworkNamespace(path: label, detail: "setns: \(errnoText(err))")
            default: throw Error.systemCall(path: label, call: "setns", errno: err)
            }
        }
    }

    /// Runs `body` on a fresh POSIX thread and waits for it. The thread ends with the body,
    /// so a namespace switch made inside it can never leak into other work.
    static func onDedicatedThread<T>(_ body: () throws -> T) throws -> T {
        var result: Result<T, any Swift.Error>?
        try withoutActuallyEscaping(body) { escapable in
            let task = ThreadTask { result = Result { try escapable() } }
            let context = Unmanaged.passRetained(task).toOpaque()
            var thread = pthread_t()
            let rc = pthread_create(&thread, nil, { raw in
                Unmanaged<ThreadTask>.fromOpaque(raw!).takeRetainedValue().work()
                return nil
            }, context)
            if rc != 0 {
                Unmanaged<ThreadTask>.fromOpaque(context).release()
                throw Error.systemCall(path: "-", call: "pthread_create", errno: rc)
            }
            pthread_join(thread, nil)
        }
        return try result!.get()
    }
}

/// Carries the work to the dedicated thread.
/// `@unchecked Sendable`: the caller blocks in `pthread_join` while the thread runs, so the two
/// never touch captured state at the same time; the join orders the thread's writes before the
/// caller's reads.
private final class ThreadTask: @unchecked Sendable {
    let work: () -> Void
    init(_ work: @escaping () -> Void) { self.work = work }
}

func errnoText(_ code: Int32) -> String {
    "\(String(cString: strerror(code))) (errno \(code))"
}
