import CLibNFTNL
import NetlinkRelease
import RuleEngine
#if canImport(Glibc)
import Glibc
#endif

/// One nfnetlink socket to nf_tables in the current thread's network namespace: dumps and
/// atomic batches. Requests are built by libnftnl; the socket is libmnl's.
final class NFNetlink {
    private let socket: OpaquePointer
    private let portID: UInt32
    private var sequence: UInt32
    private var receiveBuffer = [UInt8](repeating: 0, count: 1 << 16)

    init() throws {
        guard let socket = mnl_socket_open(NETLINK_NETFILTER) else {
            throw EngineError(.kernel, "cannot open a netlink socket to nf_tables: \(Self.errorText(errno))", cause: KernelErrno(errno))
        }
        guard mnl_socket_bind(socket, 0, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            let e = errno
            mnl_socket_close(socket)
            throw EngineError(.kernel, "cannot bind a netlink socket to nf_tables: \(Self.errorText(e))", cause: KernelErrno(e))
        }
        self.socket = socket
        portID = mnl_socket_get_portid(socket)
        sequence = UInt32(truncatingIfNeeded: time(nil))
    }

    deinit {
        // An OpaquePointer is not Sendable, its bit pattern is (the socket is ours alone now).
        let address = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(socket)))
        NetlinkRelease.release(descriptor: mnl_socket_get_fd(socket), mayWait: sentRemovals) { mnl_socket_close(OpaquePointer(bitPattern: address)) }
    }

    /// A batch that removed something went through this socket: nf_tables frees what a commit
    /// removed after an RCU grace period, and a close before then waits for it (see
    /// `NetlinkRelease`). A commit that only adds leaves nothing to wait for (measured: its
    /// close returns at once).
    private var sentRemovals = false

    static func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }

    /// The network namespace this socket belongs to, as an identity that is never reused: its
    /// cookie (SO_NETNS_COOKIE, Linux 5.14; older kernels: its inode) — a namespace created after
    /// another one was deleted can have its inode number, never its cookie — combined with this
    /// boot's id, since cookies (and nf_tables generations) start again at every boot.
    var namespaceIdentity: UInt64 {
        var cookie: UInt64 = 0
        var length = socklen_t(MemoryLayout<UInt64>.size)
        let soNetnsCookie: Int32 = 71
        if getsockopt(mnl_socket_get_fd(socket), SOL_SOCKET, soNetnsCookie, &cookie, &length) != 0 || cookie == 0 {
            cookie = NFTablesBackend.namespaceInode()
        }
        return cookie ^ Self.boot
    }

    /// FNV-1a of the kernel's boot id (0 when it cannot be read).
    static let boot: UInt64 = {
        let fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 64)
        let count = read(fd, &bytes, bytes.count)
        guard count > 0 else { return 0 }
        return bytes[..<count].reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }()

    func nextSequence() -> UInt32 { sequence &+= 1; return sequence }

    /// The ruleset's generation (changes with every committed batch, by anyone).
    func generation() throws -> UInt32 {
        var generation: UInt32 = 0
        try request(type: UInt16(NFT_MSG_GETGEN.rawValue), family: UInt16(NFPROTO_UNSPEC), flags: 0, build: { _ in }) { message in
            guard let gen = nftnl_gen_alloc() else { return }
            defer { nftnl_gen_free(gen) }
            if nftnl_gen_nlmsg_parse(message, gen) >= 0 { generation = nftnl_gen_get_u32(gen, UInt16(NFTNL_GEN_ID)) }
        }
        return generation
    }

    /// Sends a GET request (a dump when `flags` has NLM_F_DUMP) and calls `each` with every reply
    /// message. A missing table (ENOENT) is an empty answer.
    func request(type: UInt16, family: UInt16, flags: UInt16, build: (UnsafeMutablePointer<nlmsghdr>) -> Void,
                 each: (UnsafeMutablePointer<nlmsghdr>) throws -> Void) throws {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let seq = nextSequence()
        let length: Int = buffer.withUnsafeMutableBytes { raw in
            let nlh = nftnl_nlmsg_build_hdr(raw.baseAddress!.assumingMemoryBound(to: CChar.self), type, family, UInt16(NLM_F_ACK) | flags, seq)!
            build(nlh)
            return Int(nlh.pointee.nlmsg_len)
        }
        guard buffer.withUnsafeBytes({ mnl_socket_sendto(socket, $0.baseAddress, length) }) >= 0 else {
            throw EngineError(.kernel, "nf_tables request failed: \(Self.errorText(errno))", cause: KernelErrno(errno))
        }
        while true {
            let received = receiveBuffer.withUnsafeMutableBytes { mnl_socket_recvfrom(socket, $0.baseAddress, $0.count) }
            guard received > 0 else { throw EngineError(.kernel, "nf_tables reply failed: \(Self.errorText(errno))", cause: KernelErrno(errno)) }
            var done = false
            try receiveBuffer.withUnsafeMutableBytes { raw in
                var remaining = Int32(received)
                var nlh = raw.baseAddress!.assumingMemoryBound(to: nlmsghdr.self)
                while mnl_nlmsg_ok(nlh, remaining) {
                    defer { nlh = mnl_nlmsg_next(nlh, &remaining) }
                    guard nlh.pointee.nlmsg_seq == seq else { continue }
                    switch Int32(nlh.pointee.nlmsg_type) {
                    case NLMSG_DONE: done = true
                    case NLMSG_ERROR:
                        let code = -mnl_nlmsg_get_payload(nlh).assumingMemoryBound(to: Int32.self).pointee
                        done = true
                        if code == 0 || code == ENOENT { continue }
                        if code == EPERM { throw EngineError(.permission, "nf_tables: \(Self.errorText(code)) (needs CAP_NET_ADMIN)", cause: KernelErrno(code)) }
                        throw EngineError(.kernel, "nf_tables: \(Self.errorText(code))", cause: KernelErrno(code))
                    default:
                        try each(nlh)
                    }
                }
            }
            if done { return }
        }
    }

    /// Sends the batch as one transaction, only if the ruleset is still at `generation`. Returns
    /// the failing message's index and errno, or nil on success.
    func commit(_ batch: Batch, generation: UInt32) throws -> (index: Int, code: Int32)? {
        batch.finish(generation: generation)
        if batch.removes { sentRemovals = true }
        let fd = mnl_socket_get_fd(socket)
        var size = Int32(batch.length + (1 << 16))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size))
        guard mnl_socket_sendto(socket, batch.bytes, batch.length) >= 0 else {
            throw EngineError(.kernel, "nf_tables batch could not be sent: \(Self.errorText(errno))", cause: KernelErrno(errno))
        }
        // nfnetlink processes a batch while sending it: every error is queued by now.
        var failure: (Int, Int32)?
        while true {
            let received = receiveBuffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if received <= 0 { break }
            receiveBuffer.withUnsafeMutableBytes { raw in
                var remaining = Int32(received)
                var nlh = raw.baseAddress!.assumingMemoryBound(to: nlmsghdr.self)
                while mnl_nlmsg_ok(nlh, remaining) {
                    defer { nlh = mnl_nlmsg_next(nlh, &remaining) }
                    guard Int32(nlh.pointee.nlmsg_type) == NLMSG_ERROR else { continue }
                    let code = -mnl_nlmsg_get_payload(nlh).assumingMemoryBound(to: Int32.self).pointee
                    if code != 0, failure == nil, let index = batch.index(ofSequence: nlh.pointee.nlmsg_seq) { failure = (index, code) }
                    else if code != 0, failure == nil { failure = (-1, code) }
                }
            }
        }
        return failure
    }
}

/// An errno as an Error (the cause inside an EngineError).
struct KernelErrno: Error, Sendable, CustomStringConvertible {
    var code: Int32
    init(_ code: Int32) { self.code = code }
    var description: String { "\(String(cString: strerror(code))) (errno \(code))" }
}

/// An nf_tables transaction being built: BATCH_BEGIN (with the generation it expects), the
/// messages, BATCH_END. Each message gets its own sequence number, so an error names its message.
final class Batch {
    private var storage: UnsafeMutableRawPointer
    private var capacity: Int
    private(set) var length = 0
    private let firstSequence: UInt32
    private var sequence: UInt32
    /// What each message does, for error messages.
    private(set) var descriptions: [String] = []
    /// The largest message docknfv builds (rules, and set elements in chunks) fits in this.
    private static let headroom = 1 << 17

    /// Where BATCH_BEGIN's generation attribute's value is, filled in by finish().
    private let generationOffset: Int

    init(sequence: UInt32) {
        capacity = 1 << 18
        storage = malloc(capacity)!
        firstSequence = sequence
        self.sequence = sequence
        let begin = nftnl_batch_begin(storage.assumingMemoryBound(to: CChar.self), sequence)!
        mnl_attr_put_u32(begin, UInt16(NFNL_BATCH_GENID.rawValue), 0)
        length = Int(begin.pointee.nlmsg_len)
        generationOffset = length - 4
    }

    deinit { free(storage) }

    var bytes: UnsafeRawPointer { UnsafeRawPointer(storage) }
    var isEmpty: Bool { descriptions.isEmpty }
    var count: Int { descriptions.count }

    /// Appends one message: `build` fills the payload of the header it is given.
    func add(_ type: nf_tables_msg_types, family: UInt16, flags: Int32, _ description: String,
             _ build: (UnsafeMutablePointer<nlmsghdr>) -> Void) {
        if capacity - length < Self.headroom {
            capacity *= 2
            storage = realloc(storage, capacity)!
        }
        sequence &+= 1
        let nlh = nftnl_nlmsg_build_hdr(storage.advanced(by: length).assumingMemoryBound(to: CChar.self), UInt16(type.rawValue), family,
                                        UInt16(flags), sequence)!
        build(nlh)
        length += Int(nlh.pointee.nlmsg_len + 3) & ~3
        descriptions.append(description)
        switch type {
        case NFT_MSG_DELTABLE, NFT_MSG_DELCHAIN, NFT_MSG_DELRULE, NFT_MSG_DELSET, NFT_MSG_DELSETELEM: removes = true
        default: break
        }
    }

    /// Whether the batch removes anything.
    private(set) var removes = false

    func index(ofSequence seq: UInt32) -> Int? {
        let index = Int(seq &- firstSequence) - 1
        return descriptions.indices.contains(index) ? index : nil
    }

    func finish(generation: UInt32) {
        // NFNL_BATCH_GENID: the kernel refuses the batch (ERESTART) if anyone committed since
        // `generation` was read, so a plan made from a stale dump never lands.
        storage.storeBytes(of: generation.bigEndian, toByteOffset: generationOffset, as: UInt32.self)
        if capacity - length < 64 { capacity += 64; storage = realloc(storage, capacity)! }
        let end = nftnl_batch_end(storage.advanced(by: length).assumingMemoryBound(to: CChar.self), sequence &+ 1)!
        length += Int(end.pointee.nlmsg_len)
    }
}
