import CLibMNL
import NetTypes
import NetlinkRelease
#if canImport(Glibc)
import Glibc
#endif

/// Conntrack entries over ctnetlink (libmnl), in the current thread's network namespace.
/// Used to forget the flows of a port mapping that is removed: a UDP "connection" that keeps
/// sending would otherwise keep its old DNAT until it goes idle.
public enum Conntrack {
    public struct Error: Swift.Error, CustomStringConvertible, Sendable {
        public var call: String
        public var errno: Int32
        public var description: String { "conntrack \(call): \(String(cString: strerror(errno))) (errno \(errno))" }
    }

    /// One entry's identity: the original tuple as the kernel sent it (echoed back to delete it).
    struct Entry {
        var family: UInt8
        var proto: UInt8
        var originalDestinationPort: UInt16
        var replySource: IPAddress?
        var deleteAttributes: [UInt8]
    }

    // ctnetlink numbers (linux/netfilter/nfnetlink_conntrack.h); stable kernel ABI.
    static let subsystem: UInt16 = 1 // NFNL_SUBSYS_CTNETLINK
    static let msgGet: UInt16 = 1, msgDelete: UInt16 = 2
    static let tupleOrig: UInt16 = 1, tupleReply: UInt16 = 2, zone: UInt16 = 18
    static let tupleIP: UInt16 = 1, tupleProto: UInt16 = 2
    static let ipV4Src: UInt16 = 1, ipV6Src: UInt16 = 3
    static let protoNum: UInt16 = 1, protoDstPort: UInt16 = 3

    /// Deletes the entries of protocol `proto` whose original destination port is `port` and whose
    /// reply comes from one of `sources` (the container's addresses). Returns how many went.
    @discardableResult
    public static func delete(proto: UInt8, originalDestinationPort port: UInt16, replySources sources: Set<IPAddress>) throws -> Int {
        guard !sources.isEmpty else { return 0 }
        let socket = try Socket()
        var deleted = 0
        for family in Set(sources.map(\.family)) {
            let entries = try socket.dump(family: family == .v4 ? UInt8(AF_INET) : UInt8(AF_INET6))
            for entry in entries where entry.proto == proto && entry.originalDestinationPort == port && entry.replySource.map(sources.contains) == true {
                if try socket.delete(entry) { deleted += 1 }
            }
        }
        return deleted
    }

    /// Walks netlink attributes in `bytes`: (type without flags, payload range).
    static func attributes(_ bytes: UnsafeRawBufferPointer, _ body: (UInt16, Range<Int>) -> Void) {
        var offset = 0
        while offset + 4 <= bytes.count {
            let length = Int(bytes.load(fromByteOffset: offset, as: UInt16.self))
            let type = bytes.load(fromByteOffset: offset + 2, as: UInt16.self) & 0x3fff
            guard length >= 4, offset + length <= bytes.count else { return }
            body(type, offset + 4..<offset + length)
            offset += (length + 3) & ~3
        }
    }

    static func parse(_ payload: UnsafeRawBufferPointer, family: UInt8) -> Entry {
        var entry = Entry(family: family, proto: 0, originalDestinationPort: 0, replySource: nil, deleteAttributes: [])
        attributes(payload) { type, range in
            let whole = (range.lowerBound - 4)..<range.upperBound
            switch type {
            case tupleOrig:
                entry.deleteAttributes += Array(payload[whole]) + Array(repeating: 0, count: (4 - whole.count % 4) % 4)
                attributes(UnsafeRawBufferPointer(rebasing: payload[range])) { inner, innerRange in
                    guard inner == tupleProto else { return }
                    let proto = UnsafeRawBufferPointer(rebasing: payload[range][(range.lowerBound + innerRange.lowerBound)..<(range.lowerBound + innerRange.upperBound)])
                    attributes(proto) { field, fieldRange in
                        if field == protoNum, fieldRange.count >= 1 { entry.proto = proto[fieldRange.lowerBound] }
                        if field == protoDstPort, fieldRange.count >= 2 { entry.originalDestinationPort = UInt16(proto[fieldRange.lowerBound]) << 8 | UInt16(proto[fieldRange.lowerBound + 1]) }
                    }
                }
            case tupleReply:
                attributes(UnsafeRawBufferPointer(rebasing: payload[range])) { inner, innerRange in
                    guard inner == tupleIP else { return }
                    let ip = UnsafeRawBufferPointer(rebasing: payload[range][(range.lowerBound + innerRange.lowerBound)..<(range.lowerBound + innerRange.upperBound)])
                    attributes(ip) { field, fieldRange in
                        if field == ipV4Src, fieldRange.count == 4 { entry.replySource = IPAddress(family: .v4, bytes: Array(ip[fieldRange])) }
                        if field == ipV6Src, fieldRange.count == 16 { entry.replySource = IPAddress(family: .v6, bytes: Array(ip[fieldRange])) }
                    }
                }
            case zone:
                entry.deleteAttributes += Array(payload[whole]) + Array(repeating: 0, count: (4 - whole.count % 4) % 4)
            default: break
            }
        }
        return entry
    }

    final class Socket {
        let socket: OpaquePointer
        var sequence = UInt32(truncatingIfNeeded: time(nil))
        var buffer = [UInt8](repeating: 0, count: 1 << 16)

        init() throws {
            guard let socket = mnl_socket_open(NETLINK_NETFILTER) else { throw Error(call: "socket", errno: errno) }
            guard mnl_socket_bind(socket, 0, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
                let code = errno
                mnl_socket_close(socket)
                throw Error(call: "bind", errno: code)
            }
            self.socket = socket
        }

        deinit {
            let address = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(socket)))
            NetlinkRelease.release(descriptor: mnl_socket_get_fd(socket)) { mnl_socket_close(OpaquePointer(bitPattern: address)) }
        }

        /// Builds a ctnetlink message: header, nfgenmsg, then `attributes` as they are.
        func send(type: UInt16, flags: Int32, family: UInt8, attributes: [UInt8] = []) throws -> UInt32 {
            sequence &+= 1
            var message = [UInt8](repeating: 0, count: 20 + attributes.count)
            let length = UInt32(message.count)
            message.withUnsafeMutableBytes { raw in
                raw.storeBytes(of: length, toByteOffset: 0, as: UInt32.self)
                raw.storeBytes(of: (Conntrack.subsystem << 8) | type, toByteOffset: 4, as: UInt16.self)
                raw.storeBytes(of: UInt16(flags), toByteOffset: 6, as: UInt16.self)
                raw.storeBytes(of: sequence, toByteOffset: 8, as: UInt32.self)
                raw[16] = family // nfgenmsg: family, version 0, res_id 0
            }
            message.replaceSubrange(20..., with: attributes)
            guard message.withUnsafeBytes({ mnl_socket_sendto(socket, $0.baseAddress, $0.count) }) >= 0 else { throw Error(call: "send", errno: errno) }
            return sequence
        }

        /// Receives until the answer to `seq` is complete; `each` sees every data message's payload.
        func receive(_ seq: UInt32, family: UInt8, each: (UnsafeRawBufferPointer) -> Void) throws -> Int32 {
            while true {
                let received = buffer.withUnsafeMutableBytes { mnl_socket_recvfrom(socket, $0.baseAddress, $0.count) }
                guard received > 0 else { throw Error(call: "receive", errno: errno) }
                var result: Int32?
                buffer.withUnsafeMutableBytes { raw in
                    var offset = 0
                    while offset + 16 <= received {
                        let length = Int(raw.load(fromByteOffset: offset, as: UInt32.self))
                        let type = raw.load(fromByteOffset: offset + 4, as: UInt16.self)
                        let messageSeq = raw.load(fromByteOffset: offset + 8, as: UInt32.self)
                        guard length >= 16, offset + length <= received else { break }
                        if messageSeq == seq {
                            if Int32(type) == NLMSG_DONE { result = 0 }
                            else if Int32(type) == NLMSG_ERROR { result = -raw.load(fromByteOffset: offset + 16, as: Int32.self) }
                            else if length > 20 { each(UnsafeRawBufferPointer(rebasing: raw[(offset + 20)..<(offset + length)])) }
                        }
                        offset += (length + 3) & ~3
                    }
                }
                if let result { return result }
            }
        }

        func dump(family: UInt8) throws -> [Entry] {
            let seq = try send(type: Conntrack.msgGet, flags: NLM_F_REQUEST | NLM_F_DUMP, family: family)
            var entries: [Entry] = []
            let code = try receive(seq, family: family) { entries.append(Conntrack.parse($0, family: family)) }
            guard code == 0 else { throw Error(call: "dump", errno: code) }
            return entries
        }

        /// Deletes one entry; false when it was gone already.
        func delete(_ entry: Entry) throws -> Bool {
            let seq = try send(type: Conntrack.msgDelete, flags: NLM_F_REQUEST | NLM_F_ACK, family: entry.family, attributes: entry.deleteAttributes)
            let code = try receive(seq, family: entry.family) { _ in }
            if code == ENOENT { return false }
            guard code == 0 else { throw Error(call: "delete", errno: code) }
            return true
        }
    }
}
