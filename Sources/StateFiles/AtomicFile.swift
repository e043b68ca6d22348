#if canImport(Glibc)
import Glibc
#endif

/// Whole-file reads and crash-safe replacement: a reader sees either the old content or the new,
/// never a mixture, and after `write` returns the new content survives a power cut.
///
/// The temporary file is created with `O_EXCL` under an unpredictable name, so another user who
/// can write the directory can neither hand root a file of theirs (which would keep their
/// ownership and let them edit it later) nor redirect the write through a symlink.
public enum AtomicFile {
    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        case io(path: String, call: String, errno: Int32)
        public var description: String {
            switch self {
            case .io(let path, let call, let errno):
                return "\(path): \(call) failed: \(errnoText(errno)) (errno \(errno))"
            }
        }
    }

    /// The file's bytes, or nil when it does not exist.
    public static func read(_ path: String) throws -> [UInt8]? {
        var info = stat()
        return try read(path, status: &info)
    }

    /// The file's bytes, or nil when it does not exist; `status` is the opened file's (which file
    /// was read, when another process may rename a new one into place meanwhile).
    public static func read(_ path: String, status info: inout stat) throws -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw Error.io(path: path, call: "open", errno: errno)
        }
        defer { close(fd) }
        guard fstat(fd, &info) == 0 else { throw Error.io(path: path, call: "fstat", errno: errno) }
        // Read straight into an array sized from fstat; a file that grew meanwhile (or a /proc
        // file, which reports size 0) is read on in chunks.
        let expected = Int(info.st_size)
        var failure: Int32 = 0
        func readAll(into buffer: UnsafeMutableBufferPointer<UInt8>) -> Int {
            var filled = 0
            while filled < buffer.count {
                let count = Glibc.read(fd, buffer.baseAddress! + filled, buffer.count - filled)
                if count < 0 { if errno == EINTR { continue }; failure = errno; break }
                if count == 0 { break }
                filled += count
            }
            return filled
        }
        var out = [UInt8](unsafeUninitializedCapacity: expected + 1) { buffer, count in count = readAll(into: buffer) }
        while failure == 0, out.count >= expected + 1 {
            let before = out.count
            let chunk = [UInt8](unsafeUninitializedCapacity: 1 << 16) { buffer, count in count = readAll(into: buffer) }
            out += chunk
            if out.count - before < 1 << 16 { break }
        }
        if failure != 0 { throw Error.io(path: path, call: "read", errno: failure) }
        return out
    }

    public static func readString(_ path: String) throws -> String? {
        try read(path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Writes a fresh temporary file beside `path` (owned by the caller, exactly `mode` whatever
    /// the umask), fsyncs it, renames it over `path` and fsyncs the directory. On failure the
    /// temporary file is removed and `path` is untouched. Temporaries that a killed earlier run
    /// left for the same name are removed first (only ours: our pattern, our uid, a dead pid).
    /// `durable: false` skips both fsyncs: readers still see the old file or the new one, never a
    /// mix, but a power loss may lose the change — for records of kernel state, which a power
    /// loss wipes anyway.
    public static func write(_ path: String, contents: [UInt8], mode: mode_t = 0o644, durable: Bool = true) throws {
        let (directory, name) = split(path)
        guard !name.isEmpty else { throw Error.io(path: path, call: "open", errno: EISDIR) }
        let dirfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dirfd >= 0 else { throw Error.io(path: directory, call: "open", errno: errno) }
        defer { close(dirfd) }
        removeLeftovers(of: name, in: dirfd)

        var temporary = ""
        var fd: Int32 = -1
        for _ in 0..<16 where fd < 0 {
            temporary = temporaryName(for: name)
            // O_EXCL: never an existing file, never through a symlink.
            fd = openat(dirfd, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            if fd < 0 && errno != EEXIST { break }
        }
        let shown = (directory == "/" ? "" : directory) + "/" + temporary
        guard fd >= 0 else { throw Error.io(path: shown, call: "open", errno: errno) }
        var ok = false
        defer { if !ok { unlinkat(dirfd, temporary, 0) } }
        do {
            defer { close(fd) }
            var offset = 0
            while offset < contents.count {
                let written = contents[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                if written < 0 {
                    if errno == EINTR { continue }
                    throw Error.io(path: shown, call: "write", errno: errno)
                }
                offset += written
            }
            guard fchmod(fd, mode) == 0 else { throw Error.io(path: shown, call: "fchmod", errno: errno) }
            guard !durable || fsync(fd) == 0 else { throw Error.io(path: shown, call: "fsync", errno: errno) }
        }
        // rename replaces a symlink at `path` itself; it never writes through one.
        guard renameat(dirfd, temporary, dirfd, name) == 0 else { throw Error.io(path: path, call: "rename", errno: errno) }
        ok = true
        if durable { _ = fsync(dirfd) }
    }

    public static func write(_ path: String, string: String, mode: mode_t = 0o644) throws {
        try write(path, contents: Array(string.utf8), mode: mode)
    }

    // MARK: Temporary names

    static let temporaryInfix = ".tmp."

    /// `.NAME.tmp.PID.RANDOM` — the pid lets a later run tell a dead writer's leftover from a live
    /// writer's file; the 64 random bits make the name unguessable.
    static func temporaryName(for name: String) -> String {
        let random = String(UInt64.random(in: .min ... .max), radix: 16)
        return "." + name + temporaryInfix + "\(getpid())." + String(repeating: "0", count: 16 - random.count) + random
    }

    /// The pid in `candidate` when it is one of our temporaries of `name`: `.NAME.tmp.PID` (the
    /// older form) or `.NAME.tmp.PID.HEX16`.
    static func temporaryOwnerPid(_ candidate: String, name: String) -> pid_t? {
        let prefix = "." + name + temporaryInfix
        guard candidate.hasPrefix(prefix) else { return nil }
        let parts = candidate.dropFirst(prefix.count).split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let pid = pid_t(parts[0]), pid > 0, String(pid) == parts[0] else { return nil }
        if parts.count == 2 {
            guard parts[1].utf8.count == 16, parts[1].utf8.allSatisfy({ isxdigit(Int32($0)) != 0 }) else { return nil }
        }
        return pid
    }

    /// Removes regular files of our temporary pattern for `name`, owned by us, whose writer is gone.
    static func removeLeftovers(of name: String, in dirfd: Int32) {
        let listing = dup(dirfd)
        guard listing >= 0, let dir = fdopendir(listing) else { if listing >= 0 { close(listing) }; return }
        defer { closedir(dir) }
        var stale: [String] = []
        while let entry = readdir(dir) {
            let candidate = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let pid = temporaryOwnerPid(candidate, name: name), pid != getpid() else { continue }
            var info = stat()
            guard fstatat(dirfd, candidate, &info, AT_SYMLINK_NOFOLLOW) == 0,
                  info.st_mode & S_IFMT == S_IFREG, info.st_uid == geteuid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { stale.append(candidate) }
        }
        for candidate in stale { unlinkat(dirfd, candidate, 0) }
    }

    /// The directory (absolute or relative, "/" for the root) and the last component of `path`.
    static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }
}

/// `strerror` as a Swift string.
func errnoText(_ code: Int32) -> String { String(cString: strerror(code)) }
