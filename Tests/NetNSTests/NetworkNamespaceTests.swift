import Foundation
import Testing
import NetNS
import TestSupport

@Suite("NetworkNamespace")
struct NetworkNamespaceTests {
    @Test func missingPathIsNotFound() {
        #expect(throws: NetworkNamespace.Error.notFound(path: "/run/netns/dnfvt-does-not-exist")) {
            try NetworkNamespace.run(path: "/run/netns/dnfvt-does-not-exist") { 1 }
        }
    }

    @Test func regularFileIsNotANamespace() throws {
        let path = NSTemporaryDirectory() + "dnfvt-not-ns-\(getpid())"
        #expect(FileManager.default.createFile(atPath: path, contents: Data("x".utf8)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: NetworkNamespace.Error.notANetworkNamespace(path: path, detail: "not a namespace file")) {
            try NetworkNamespace.run(path: path) { 1 }
        }
    }

    @Test(.enabled(if: TestEnv.isRoot)) func otherNamespaceTypeIsRejected() {
        #expect(throws: NetworkNamespace.Error.notANetworkNamespace(path: "/proc/self/ns/mnt", detail: "a namespace of another type")) {
            try NetworkNamespace.run(path: "/proc/self/ns/mnt") { 1 }
        }
    }

    @Test func bodyErrorsPassThrough() throws {
        struct Marker: Error, Equatable {}
        #expect(throws: Marker()) { try NetworkNamespace.run(path: "/proc/self/ns/net") { throw Marker() } }
    }

    @Test(.enabled(if: TestEnv.privileged))
    func runsInsideTheNamespaceAndLeavesTheCallerAlone() throws {
        try withNamespaces(["netns"]) { namespaces in
            let ns = namespaces[0]
            let callerBefore = try String(contentsOfFile: "/proc/thread-self/net/dev", encoding: .utf8)
            // Inside: only lo exists.
            let inside = try NetworkNamespace.run(path: ns.path) {
                try String(contentsOfFile: "/proc/thread-self/net/dev", encoding: .utf8)
            }
            let interfaces = inside.split(separator: "\n").dropFirst(2).map { $0.split(separator: ":")[0].trimmingCharacters(in: .whitespaces) }
            #expect(interfaces == ["lo"])
            // The calling thread is still where it was.
            let callerAfter = try String(contentsOfFile: "/proc/thread-self/net/dev", encoding: .utf8)
            #expect(callerBefore.split(separator: "\n").count == callerAfter.split(separator: "\n").count)
            var st = stat()
            #expect(stat(ns.path, &st) == 0)
            #expect(try readlink("/proc/thread-self/ns/net") != "net:[\(st.st_ino)]")
            #expect(try NetworkNamespace.run(path: ns.path) { try readlink("/proc/thread-self/ns/net") } == "net:[\(st.st_ino)]")
        }
    }

    @Test(.enabled(if: TestEnv.privileged))
    func runByDescriptor() throws {
        try withNamespaces(["fd"]) { namespaces in
            let fd = open(namespaces[0].path, O_RDONLY)
            #expect(fd >= 0)
            defer { close(fd) }
            let inside = try NetworkNamespace.run(fd: fd) { try readlink("/proc/thread-self/ns/net") }
            var st = stat()
            #expect(stat(namespaces[0].path, &st) == 0)
            #expect(inside == "net:[\(st.st_ino)]")
        }
    }

    @Test(.enabled(if: !TestEnv.isRoot)) func unprivilegedEntryIsPermissionDenied() {
        #expect {
            try NetworkNamespace.run(path: "/proc/1/ns/net") { 1 }
        } throws: { error in
            guard let error = error as? NetworkNamespace.Error else { return false }
            if case .permissionDenied = error { return true }
            return false
        }
    }

    func readlink(_ path: String) throws -> String {
        try FileManager.default.destinationOfSymbolicLink(atPath: path)
    }
}
