import Testing
import DualHome
import InitSupervisor
import Routing
import TestSupport

@Suite("Waiting for interfaces")
struct InterfaceWaiterTests {
    let both = [InterfaceRequirement(name: "eth1", needsAddress: true), InterfaceRequirement(name: "eth0", needsAddress: true)]

    @Test func readyInterfacesPassAtOnce() throws {
        try InterfaceWaiter.wait(for: both, backend: InMemoryRouting.vnf(), timeout: 0)
    }

    @Test func timeoutSaysExactlyWhatIsMissing() {
        let backend = InMemoryRouting.vnf()
        backend.linkList.removeFirst()                       // eth1 gone
        backend.linkList[0].isUp = false                     // eth0 down
        backend.addressList = [LinkAddress(interface: "eth0", address: InterfaceAddress("fe80::1/64")!)]
        #expect(throws: WaitError.timedOut(seconds: 0.2, missing: ["eth1 does not exist", "eth0 is down",
                                                                    "eth0 has no IPv4 or global IPv6 address"])) {
            try InterfaceWaiter.wait(for: both, backend: backend, timeout: 0.2, interval: 0.05)
        }
    }

    @Test func tentativeIPv6AddressDoesNotCount() throws {
        let backend = InMemoryRouting.vnf()
        backend.addressList = [LinkAddress(interface: "eth1", address: InterfaceAddress("fd01::2/64")!, isTentative: true),
                               LinkAddress(interface: "eth0", address: InterfaceAddress("10.2.0.2/24")!)]
        #expect(try InterfaceWaiter.missing(both, backend: backend) == ["eth1 has no IPv4 or global IPv6 address"])
    }

    @Test func vpnModeNeedsOnlyTheLeftInterfaceToExist() throws {
        var config = DualHomeConfig()
        config.mode = .vpn
        let backend = InMemoryRouting.vnf()
        backend.addressList.removeAll { $0.interface == "eth1" }
        #expect(try InterfaceWaiter.missing(InterfaceRequirement.forConfig(config), backend: backend).isEmpty)
    }

    @Test func aSignalInterruptsTheWait() {
        let backend = InMemoryRouting.vnf()
        backend.linkList.removeAll()
        #expect(throws: WaitError.interrupted(signal: 15)) {
            try InterfaceWaiter.wait(for: both, backend: backend, timeout: 10, pause: { _ in 15 })
        }
    }

    @Test func waitsUntilTheInterfaceAppears() throws {
        let backend = InMemoryRouting.vnf()
        let eth1 = backend.linkList.removeFirst()
        var polls = 0
        try InterfaceWaiter.wait(for: both, backend: backend, timeout: 5, pause: { _ in
            polls += 1
            if polls == 3 { backend.linkList.append(eth1) }
            return nil
        })
        #expect(polls == 3)
    }
}
