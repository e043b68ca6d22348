#if canImport(Glibc)
import Glibc
#endif

/// docknfv's state directory, checked so that only root or the current user can change what is
/// in it: every component of the path (symlinks resolved) must be a directory owned by root or
/// the current user; a parent may be group/other-writable only when sticky (like `/tmp`), the
/// state directory itself never. Whoever else could write there could plant or swap state files
/// that root then applies.
public enum StateDirectory {
    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        case invalidPath(path: String, reason: String)
        case notADirectory(path: String, component: String)
        case writableByOthers(path: String, component: String, mode: mode_t)
        case foreignOwner(path: String, component: String, uid: uid_t)
        case tooManySymlinks(path: String)
        case io(path: String, component: String, call: String, errno: Int32)

        public var description: String {
            switch self {
            case .invalidPath(let path, let reason):
                return path.isEmpty ? "the state directory path is empty" : "state directory \"\(path)\" \(reason)"
            case .notADirectory(let path, let component):
                return component == path ? "state directory \(path) is not a directory"
                    : "state directory \(path): \(component) is not a directory"
            case .writableByOthers(let path, let component, let mode):
                let what = component == path ? "state directory \(path)" : "state directory \(path): \(component)"
                return "\(what) is writable by group or others (mode \(String(mode & 0o7777, radix: 8))); "
                    + "refusing it, since they could replace docknfv's state (chmod go-w \(component))"
            case .foreignOwner(let path, let component, let uid):
                return "state directory \(path): \(component) is owned by uid \(uid), not by root or the current user"
            case .tooManySymlinks(let path):
                return "state directory \(path): too many levels of symbolic links"
            case .io(let path, let component, let call, let errno):
                return "state directory \(path): \(call) \(component) failed: \(errnoText(errno)) (errno \(errno))"
            }
        }
    }

    /// Syntax only: non-empty, absolute, no NUL byte.
    public static func validatePath(_ path: String) throws(Error) {
        if path.isEmpty { throw .invalidPath(path: path, reason: "is empty") }
        if path.utf8.contains(0) { throw .invalidPath(path: path, reason: "contains a NUL byte") }
        if !path.hasPrefix("/") { throw .invalidPath(path: path, reason: "is not an absolute path") }
    }

    /// For writers: checks the path and creates what is missing — the state directory itself mode
    /// 0700 and missing parents 0755, exactly, whatever the umask.
    public static func prepare(_ path: String) throws(Error) {
        _ = try walk(path, create: true)
    }

    /// For readers, who need no write access (a read-only directory or file system is fine):
    /// checks the path and returns whether the directory exists. A missing directory means nothing
    /// was persisted.
    @discardableResult
    public static func checkReadable(_ path: String) throws(Error) -> Bool {
        try walk(path, create: false)
    }

    static func walk(_ path: String, create: Bool) throws(Error) -> Bool {
        try validatePath(path)
        var pending = Array(components(path).reversed())
        var resolved = ""
        var links = 0
        try checkTrusted(path: path, component: "/", final: false)
        while let name = pending.popLast() {
            if name == "." { continue }
            if name == ".." {
                resolved = String(resolved[..<(resolved.lastIndex(of: "/") ?? resolved.startIndex)])
                continue
            }
            let current = resolved + "/" + name
            var info = stat()
            if lstat(current, &info) != 0 {
                guard errno == ENOENT else { throw .io(path: path, component: current, call: "lstat", errno: errno) }
                guard create else { return false }
                let mode: mode_t = pending.isEmpty ? 0o700 : 0o755
                if mkdir(current, mode) != 0 && errno != EEXIST {
                    throw .io(path: path, component: current, call: "mkdir", errno: errno)
                }
                guard lstat(current, &info) == 0 else { throw .io(path: path, component: current, call: "lstat", errno: errno) }
                // mkdir applied the umask; a directory we just made gets exactly `mode`.
                if info.st_mode & S_IFMT == S_IFDIR && info.st_uid == geteuid() && info.st_mode & 0o7777 != mode {
                    guard chmod(current, mode) == 0 else { throw .io(path: path, component: current, call: "chmod", errno: errno) }
                    info.st_mode = (info.st_mode & ~0o7777) | mode
                }
            }
            if info.st_mode & S_IFMT == S_IFLNK {
                // The directory holding the link is trusted; in a sticky one, so must its owner be.
                guard info.st_uid == 0 || info.st_uid == geteuid() else {
                    throw .foreignOwner(path: path, component: current, uid: info.st_uid)
                }
                links += 1
                guard links <= 40 else { throw .tooManySymlinks(path: path) }
                let target = try readLink(current, path: path)
                if target.hasPrefix("/") { resolved = "" }
                pending.append(contentsOf: components(target).reversed())
                continue
            }
            guard info.st_mode & S_IFMT == S_IFDIR else { throw .notADirectory(path: path, component: current) }
            try check(info, path: path, component: current, final: pending.isEmpty)
            resolved = current
        }
        return true
    }

    static func checkTrusted(path: String, component: String, final: Bool) throws(Error) {
        var info = stat()
        guard stat(component, &info) == 0 else { throw .io(path: path, component: component, call: "stat", errno: errno) }
        try check(info, path: path, component: component, final: final)
    }

    static func check(_ info: stat, path: String, component: String, final: Bool) throws(Error) {
        guard info.st_uid == 0 || info.st_uid == geteuid() else {
            throw .foreignOwner(path: path, component: component, uid: info.st_uid)
        }
        let othersWrite = info.st_mode & 0o022 != 0
        let sticky = info.st_mode & mode_t(S_ISVTX) != 0
        if othersWrite && (final || !sticky) {
            throw .writableByOthers(path: path, component: component, mode: info.st_mode)
        }
    }

    static func components(_ path: String) -> [String] {
        path.split(separator: "/").map(String.init)
    }

    static func readLink(_ link: String, path: String) throws(Error) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(link, &buffer, buffer.count - 1)
        guard count >= 0 else { throw .io(path: path, component: link, call: "readlink", errno: errno) }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
