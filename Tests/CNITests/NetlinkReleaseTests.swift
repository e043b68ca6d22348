import Foundation
import Testing
import NetlinkRelease

/// Deferred socket closes (`NetlinkRelease`): inside `together` they happen at its end; with
/// `handingOff` and a socket that may wait, the last reference goes to a detached process, and
/// this process only drops its own. A pipe's write end stands in for the socket: its reader sees
/// the end of the data once no process holds it any more.
@Suite("Netlink socket release")
struct NetlinkReleaseTests {
    /// A pipe; the write end is what gets "released".
    func pipeEnds() throws -> (read: Int32, write: Int32) {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw POSIXError(.EIO) }
        return (ends[0], ends[1])
    }

    /// Whether the read end reaches end of file within five seconds.
    func endsSoon(_ descriptor: Int32) -> Bool {
        var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, 5000) == 1 else { return false }
        var byte: UInt8 = 0
        return read(descriptor, &byte, 1) == 0
    }

    @Test func closesWaitForTheEndOfTogether() throws {
        let (reader, writer) = try pipeEnds()
        defer { close(reader) }
        var closed = 0
        NetlinkRelease.together {
            NetlinkRelease.release(mayWait: true) { close(writer); closed += 1 }
            #expect(closed == 0, "kept until the end of together")
        }
        #expect(closed == 1)
        #expect(endsSoon(reader))
    }

    @Test func outsideTogetherACloseIsImmediate() throws {
        let (reader, writer) = try pipeEnds()
        defer { close(reader) }
        var closed = 0
        NetlinkRelease.release(mayWait: true) { close(writer); closed += 1 }
        #expect(closed == 1)
        #expect(endsSoon(reader))
    }

    @Test(arguments: [false, true])
    func handingOffDropsThisProcesssReferencesAndTheOtherGoes(mayWait: Bool) throws {
        let (reader, writer) = try pipeEnds()
        let (otherReader, otherWriter) = try pipeEnds()
        defer { close(reader); close(otherReader) }
        var closed = 0
        NetlinkRelease.together(handingOff: true) {
            NetlinkRelease.release(mayWait: mayWait) { close(writer); closed += 1 }
            NetlinkRelease.release { close(otherWriter); closed += 1 }
        }
        // Both of this process's copies are closed either way; with mayWait the detached
        // process held the other copies and has let them go by the time it is gone.
        #expect(closed == 2)
        #expect(endsSoon(reader))
        #expect(endsSoon(otherReader))
        // This process and its output are untouched: standard output still works.
        #expect(fcntl(1, F_GETFD) >= 0)
    }
}
