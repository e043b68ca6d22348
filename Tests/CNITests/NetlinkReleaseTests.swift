import Foundation
import Testing
@testable import NetlinkRelease

/// Deferred socket closes (`NetlinkRelease`): inside `together` they happen at its end; with
/// `handingOff` and a socket that may wait, the last reference goes to a detached process, and
/// this process only drops its own. A pipe's write end stands in for the socket: its reader sees
/// the end of the data once no process holds it any more. Each test has a registry of its own
/// (the shared one is used by whatever else runs in this test process at the same time).
@Suite("Netlink socket release")
struct NetlinkReleaseTests {
    /// A pipe; the write end is what gets "released".
    func pipeEnds() throws -> (read: Int32, write: Int32) {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw POSIXError(.EIO) }
        // Processes other tests start meanwhile do not keep them past their exec.
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        return (ends[0], ends[1])
    }

    /// Whether the read end reaches end of file within five seconds.
    func endsSoon(_ descriptor: Int32) -> Bool {
        var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, 5000) == 1 else { return false }
        var byte: UInt8 = 0
        return read(descriptor, &byte, 1) == 0
    }

    /// Whether the read end is at end of file right now.
    func endedNow(_ descriptor: Int32) -> Bool {
        var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, 0) == 1
    }

    @Test func closesWaitForTheEndOfTogether() throws {
        let registry = NetlinkRelease.Registry()
        let (reader, writer) = try pipeEnds()
        defer { close(reader) }
        var closed = 0
        registry.enter()
        #expect(registry.keep(.init(descriptor: writer) { close(writer); closed += 1 }, mayWait: true))
        #expect(closed == 0, "kept until the end of together")
        registry.leave(handingOff: false)
        #expect(closed == 1)
        #expect(endedNow(reader))
    }

    @Test func outsideTogetherNothingIsKept() {
        #expect(!NetlinkRelease.Registry().keep(.init(descriptor: -1) {}, mayWait: true))
    }

    @Test(arguments: [false, true])
    func handingOffDropsThisProcesssReferencesAndTheOtherGoes(mayWait: Bool) throws {
        let registry = NetlinkRelease.Registry()
        let (reader, writer) = try pipeEnds()
        let (otherReader, otherWriter) = try pipeEnds()
        let (bystanderReader, bystanderWriter) = try pipeEnds()
        defer { close(reader); close(otherReader); close(bystanderReader) }
        var closed = 0
        registry.enter()
        _ = registry.keep(.init(descriptor: writer) { close(writer); closed += 1 }, mayWait: mayWait)
        _ = registry.keep(.init(descriptor: otherWriter) { close(otherWriter); closed += 1 }, mayWait: false)
        registry.leave(handingOff: true)
        #expect(closed == 2, "this process's own copies are closed either way")
        // A descriptor that is not one of the sockets is not kept by the detached process: once
        // this process closes it, its reader sees the end — while (with mayWait) the detached
        // process still holds the sockets, a tenth of a second longer. Without mayWait nothing
        // was handed off and nothing else holds them.
        close(bystanderWriter)
        #expect(endsSoon(bystanderReader))
        #expect(endedNow(reader) == !mayWait, "end of file at once exactly when nothing was handed off")
        #expect(endsSoon(reader))
        #expect(endsSoon(otherReader))
        // This process and its output are untouched: standard output still works.
        #expect(fcntl(1, F_GETFD) >= 0)
    }
}
