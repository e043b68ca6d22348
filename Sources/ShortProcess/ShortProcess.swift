import CDockNFVShim

/// Settings for an executable that runs one command and exits (docknfvctl, the CNI plugin),
/// where the user waits for the whole process. Libraries ask it what to do; in-process callers
/// (tests, the agent, docknfv-init) never call `begin`, so nothing changes for them.
///
/// - One malloc arena: the work runs on a dedicated thread (`NetworkNamespace.run`), and glibc
///   gives a process's second thread an arena of its own that grows one page at a time (an
///   `mprotect` and a page fault each: 266 of them to import 1,000 rules).
/// - Large values kept until the exit: freeing a parsed configuration or a state of ten
///   thousand rules one object at a time took a fifth of a CNI ADD's and an eighth of a
///   `rule list`'s instructions, before the process could end; the exit reclaims them at once.
public enum ShortProcess {
    /// `nonisolated(unsafe)`: set once, first thing in `main`, before any other thread exists;
    /// `kept` is appended to by the command's one thread at a time and never read.
    nonisolated(unsafe) public private(set) static var isActive = false
    nonisolated(unsafe) private static var kept: [Any] = []

    /// Call first in `main` of a short-lived executable.
    public static func begin() {
        isActive = true
        _ = dnfv_malloc_one_arena()
    }

    /// Keeps `value` alive until the process exits, in a short-lived process; nothing otherwise.
    public static func keepUntilExit(_ value: Any) {
        if isActive { kept.append(value) }
    }
}
