#if canImport(Glibc)
import Glibc
#endif

/// Whole-file reads and crash-safe replacement: a reader sees either the old content or the new,
/// never a mixture, and after `write` returns the new content survives a power cut.
public enum AtomicFile {
    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        case io(path: String, call: String, errno: Int32)
        public var description: String {
            switch self {
            case .io(let path, let call, let errno):
                return "\(path): \(call) failed: \(String(cString: strerror(errno))) (errno \(errno))"
            }
        }
    }

    /// The file's bytes, or nil when it does not exist.
    public static func read(_ path: String) throws -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw Error.io(path: path, call: "open", errno: errno)
        }
        defer { close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = Glibc.read(fd, &buffer, buffer.count)
            if count < 0 {
                if errno == EINTR { continue }
                throw Error.io(path: path, call: "read", errno: errno)
            }
            if count == 0 { return out }
            out.append(contentsOf: buffer[..<count])
        }
    }

    public static func readString(_ path: String) throws -> String? {
        try read(path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Writes a temporary file beside `path`, fsyncs it, renames it over `path` and fsyncs the
    /// directory. On failure the temporary file is removed and `path` is untouched.
    public static func write(_ path: String, contents: [UInt8], mode: mode_t = 0o644) throws {
        let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        let name = path.split(separator: "/").last.map(String.init) ?? path
        let temporary = (directory.isEmpty ? "" : directory + "/") + ".\(name).tmp.\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw Error.io(path: temporary, call: "open", errno: errno) }
        var ok = false
        defer { if !ok { unlink(temporary) } }
        do {
            defer { close(fd) }
            var offset = 0
            while offset < contents.count {
                let written = contents[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                if written < 0 {
                    if errno == EINTR { continue }
                    throw Error.io(path: temporary, call: "write", errno: errno)
                }
                offset += written
            }
            guard fchmod(fd, mode) == 0 else { throw Error.io(path: temporary, call: "fchmod", errno: errno) }
            guard fsync(fd) == 0 else { throw Error.io(path: temporary, call: "fsync", errno: errno) }
        }
        guard rename(temporary, path) == 0 else { throw Error.io(path: path, call: "rename", errno: errno) }
        ok = true
        let dirfd = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirfd >= 0 {
            _ = fsync(dirfd)
            close(dirfd)
        }
    }

    public static func write(_ path: String, string: String, mode: mode_t = 0o644) throws {
        try write(path, contents: Array(string.utf8), mode: mode)
    }
}
