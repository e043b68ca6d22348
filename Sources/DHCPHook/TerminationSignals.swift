#if canImport(Glibc)
import Glibc
#endif

/// SIGTERM, SIGINT, SIGHUP and SIGQUIT, held back while the hook changes routes and the push file:
/// the runner polls for them between steps and rolls back, and one arriving after the file was
/// replaced lets the run finish. Either way no half-applied route set is left next to the old file.
public enum TerminationSignals {
    public static let held: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT]

    static var set: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in held { sigaddset(&set, signal) }
        return set
    }

    /// Blocks them in the calling thread and in every thread it starts afterwards. Call it first
    /// thing in `main`, before any other thread exists, or a signal may go to a thread that does
    /// not block it.
    public static func hold() {
        var set = Self.set
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Takes one pending held signal without waiting; nil when none is pending.
    public static func take() -> Int32? {
        var set = Self.set
        var zero = timespec(tv_sec: 0, tv_nsec: 0)
        let signal = sigtimedwait(&set, nil, &zero)
        return signal > 0 ? signal : nil
    }

    public static func name(_ signal: Int32) -> String {
        switch signal {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        case SIGHUP: return "SIGHUP"
        case SIGQUIT: return "SIGQUIT"
        default: return "signal \(signal)"
        }
    }
}
