import Foundation
import Testing
import NetNS
import Routing
import TestSupport

/// Issue 8 item 15: libnl maps every errno it has no code for (ENETUNREACH among them) to
/// NLE_FAILURE, "Unspecific failure (NLE 1)". The kernel's own reason is kept and shown.
@Suite("libnl errors carry the kernel's reason", .enabled(if: TestEnv.privileged))
struct NetlinkErrorTests {
    @Test func anUnreachableGatewayIsNamedAsSuch() throws {
        try withNamespaces(["nlerr", "peer"]) { ns in
            try connect(ns[0], "left0", ["10.10.0.2/24"], ns[1], "peer0", ["10.10.0.1/24"])
            try NetworkNamespace.run(path: ns[0].path) {
                let backend = try LibNLRouting()
                let route = Route(table: 254, destination: IPPrefix("10.20.30.0/24")!, gateway: IPAddress("192.168.99.1")!, interface: "left0")
                do {
                    try backend.addRoute(route, replace: false)
                    Issue.record("a route via an off-link gateway was accepted")
                } catch let error as RoutingError {
                    #expect(error.description.contains("Network is unreachable (errno \(ENETUNREACH))"), "\(error)")
                    #expect(!error.description.contains("Unspecific failure"), "\(error)")
                    #expect(error.netlinkCode == .failure)
                }
                // Codes libnl knows keep their own text, and a later error is not confused with the earlier one.
                let onLink = Route(table: 254, destination: IPPrefix("10.20.31.0/24")!, gateway: IPAddress("10.10.0.1")!, interface: "left0")
                try backend.addRoute(onLink, replace: false)
                do {
                    try backend.addRoute(onLink, replace: false)
                    Issue.record("adding the same route twice was accepted")
                } catch let error as RoutingError {
                    #expect(error.netlinkCode == .exists, "\(error)")
                    #expect(error.description.contains("(NLE \(NetlinkCode.exists.rawValue))"), "\(error)")
                }
            }
            #expect(try ns[0].ip("-4 route show 10.20.30.0/24").isEmpty)
        }
    }
}
