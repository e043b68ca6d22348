#if canImport(Glibc)
import Glibc
#endif

/// An flock(2) on a lock file, held until `release()` or deinit (closing the descriptor drops it).
/// The file is opened with `O_NOFOLLOW` — a symlinked lock file is refused, not followed — and
/// must be a regular file owned by root or the current user.
public final class LockFile {
    public enum Kind: Sendable { case exclusive, shared }

    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        /// Another process held the lock for the whole wait: try again later.
        case timeout(path: String, seconds: Double)
        /// The lock file cannot be created here (read-only file system or directory). A caller that
        /// only reads may go on without the lock: nobody can be writing there either.
        case readOnly(path: String, errno: Int32)
        case symlink(path: String)
        case notARegularFile(path: String)
        case foreignOwner(path: String, uid: uid_t)
        case io(path: String, call: String, errno: Int32)

        public var isTimeout: Bool { if case .timeout = self { return true } else { return false } }

        public var description: String {
            switch self {
            case .timeout(let path, let seconds):
                return "\(path) is locked by another docknfv process (waited \(seconds) s); try again later"
            case .readOnly(let path, let errno):
                return "cannot create lock file \(path): \(errnoText(errno))"
            case .symlink(let path): return "lock file \(path) is a symbolic link; refusing to follow it"
            case .notARegularFile(let path): return "lock file \(path) is not a regular file"
            case .foreignOwner(let path, let uid): return "lock file \(path) is owned by uid \(uid), not by root or the current user"
            case .io(let path, let call, let errno): return "lock file \(path): \(call) failed: \(errnoText(errno)) (errno \(errno))"
            }
        }
    }

    public let path: String
    private var fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    deinit { release() }

    /// Drops the lock (idempotent). LOCK_UN first: a child forked meanwhile holds a copy of the
    /// descriptor until it execs, and closing ours alone would leave the lock held through that copy.
    public func release() {
        if fd >= 0 { flock(fd, LOCK_UN); close(fd); fd = -1 }
    }

    /// Opens (creating it 0600 if missing) and locks `path`, waiting at most `timeout` seconds.
    public static func acquire(_ path: String, timeout: Double, kind: Kind = .exclusive) throws(Error) -> LockFile {
        // O_NONBLOCK: opening a FIFO planted in place of the lock must not hang.
        let fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0o600)
        guard fd >= 0 else {
            switch errno {
            case ELOOP: throw .symlink(path: path)
            case EROFS, EACCES, EPERM: throw .readOnly(path: path, errno: errno)
            case let code: throw .io(path: path, call: "open", errno: code)
            }
        }
        let lock = LockFile(path: path, fd: fd)
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .io(path: path, call: "fstat", errno: errno) }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .notARegularFile(path: path) }
        guard info.st_uid == 0 || info.st_uid == geteuid() else { throw .foreignOwner(path: path, uid: info.st_uid) }
        let operation = (kind == .exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB
        let deadline = ContinuousClock.now + .milliseconds(Int64(max(0, timeout) * 1000))
        while flock(fd, operation) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR else { throw .io(path: path, call: "flock", errno: errno) }
            if ContinuousClock.now >= deadline { throw .timeout(path: path, seconds: timeout) }
            usleep(2_000)
        }
        return lock
    }
}
