import RuleEngine
import StateFiles
#if canImport(Glibc)
import Glibc
#endif

/// `rules.journal`: rules appended since the snapshot (`rules.json`) was written, so that adding
/// one rule to thousands neither reads nor rewrites them all.
///
/// One JSON object per line. The first line names the snapshot it extends (inode, size and
/// modification time: every save renames a new file into place, so a journal left from before a
/// save no longer matches and is ignored — its rules are in that snapshot). Each later line holds
/// the rules one command appended. Every line also carries a `Summary` of the state as it stands
/// after it: what an append needs to know (chains, sets, rule counts, ids, backend, kernel mark)
/// without the rules, so a command reads only the first line and the last.
///
/// A line is written with one `write(2)` and synced before the command reports success. A last
/// line without its newline is a write that a killed command never finished (and never reported):
/// it is not part of the state, and the next full save replaces the journal.
struct Journal {
    /// Which snapshot file a journal extends.
    struct SnapshotIdentity: Equatable {
        var inode: UInt64, size: Int64, modified: Int64

        init(_ info: stat) {
            inode = UInt64(info.st_ino)
            size = Int64(info.st_size)
            modified = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
        }
        init(inode: UInt64, size: Int64, modified: Int64) { self.inode = inode; self.size = size; self.modified = modified }

        /// The identity of the file at `path` now (nil when it does not exist).
        static func of(_ path: String) -> SnapshotIdentity? {
            var info = stat()
            return stat(path, &info) == 0 ? SnapshotIdentity(info) : nil
        }
    }

    /// The state without its rules and set elements: enough to validate and apply an append.
    struct Summary: Equatable {
        var backend: BackendKind?
        var kernelMark: KernelMark?
        var nextID: Int
        var userChains: Set<DesiredState.ChainRef>
        /// Rules per chain (chains without rules are absent).
        var counts: [DesiredState.ChainRef: Int]
        /// Set name → (type, family).
        var sets: [String: (type: SetType, family: IPFamily)]

        init(_ state: DesiredState) {
            backend = state.backend
            kernelMark = state.kernelMark
            nextID = state.nextID
            userChains = state.userChains
            counts = [:]
            for rule in state.rules { counts[DesiredState.ChainRef(rule.key, rule.chain), default: 0] += 1 }
            sets = state.sets.mapValues { ($0.type, $0.family) }
        }

        static func == (a: Summary, b: Summary) -> Bool {
            a.backend == b.backend && a.kernelMark == b.kernelMark && a.nextID == b.nextID && a.userChains == b.userChains
                && a.counts == b.counts && a.sets.mapValues { "\($0.type.rawValue)/\($0.family.rawValue)" } == b.sets.mapValues { "\($0.type.rawValue)/\($0.family.rawValue)" }
        }

        /// The sets as specs without elements (what validating and translating a rule needs).
        var setSpecs: [String: SetSpec] { sets.mapValues { SetSpec(type: $0.type, family: $0.family) } }

        var json: JSON {
            func chain(_ ref: DesiredState.ChainRef) -> [JSON] {
                [.string(ref.key.family.rawValue), .string(ref.key.table.rawValue), .string(ref.chain)]
            }
            var members: [(String, JSON)] = []
            if let backend { members.append(("backend", .string(backend.rawValue))) }
            if let kernelMark {
                members.append(("kernel", .array([.number(Int(truncatingIfNeeded: kernelMark.namespace)), .number(Int(kernelMark.generation))])))
            }
            members.append(("nextId", .number(nextID)))
            members.append(("chains", .array(userChains.sorted().map { .array(chain($0)) })))
            members.append(("counts", .array(counts.keys.sorted().map { .array(chain($0) + [.number(counts[$0]!)]) })))
            members.append(("sets", .array(sets.keys.sorted().map { name in
                .array([.string(name), .string(sets[name]!.type.rawValue), .string(sets[name]!.family.rawValue)])
            })))
            return .object(members)
        }

        init(json: JSON) throws {
            func chain(_ item: JSON) throws -> DesiredState.ChainRef {
                guard let parts = item.array, parts.count >= 3, let family = parts[0].string.flatMap(IPFamily.init(rawValue:)),
                      let table = parts[1].string.flatMap(NetfilterTable.init(rawValue:)), let name = parts[2].string,
                      table.builtinChains.contains(name) || ChainNames.isValidUserChain(name) else { throw Failure.bad("a chain in the summary") }
                return DesiredState.ChainRef(TableKey(family, table), name)
            }
            if let name = json["backend"] {
                guard let kind = name.string.flatMap(BackendKind.init(rawValue:)) else { throw Failure.bad("backend") }
                backend = kind
            }
            if let mark = json["kernel"] {
                guard let parts = mark.array, parts.count == 2, let namespace = parts[0].int, let generation = parts[1].int.flatMap(UInt32.init(exactly:)) else {
                    throw Failure.bad("kernel mark")
                }
                kernelMark = KernelMark(namespace: UInt64(truncatingIfNeeded: namespace), generation: generation)
            }
            guard let next = json["nextId"]?.int, next >= 1, next <= StateStore.maxID + 1 else { throw Failure.bad("nextId") }
            nextID = next
            userChains = []
            for item in json["chains"]?.array ?? [] { userChains.insert(try chain(item)) }
            counts = [:]
            for item in json["counts"]?.array ?? [] {
                guard let parts = item.array, parts.count == 4, let count = parts[3].int, count > 0 else { throw Failure.bad("a rule count") }
                counts[try chain(item)] = count
            }
            sets = [:]
            for item in json["sets"]?.array ?? [] {
                guard let parts = item.array, parts.count == 3, let name = parts[0].string, Names.isValidSetName(name),
                      let type = parts[1].string.flatMap(SetType.init(rawValue:)), let family = parts[2].string.flatMap(IPFamily.init(rawValue:)) else {
                    throw Failure.bad("a set")
                }
                sets[name] = (type, family)
            }
        }
    }

    /// A journal line that cannot be read.
    enum Failure: Error {
        case bad(String)
    }

    /// Rules one command appended, as stored.
    struct Record {
        var added: [StoredRule]
        var summary: Summary
    }

    /// The journal as read: the snapshot it extends and its records (whole reads only).
    var snapshot: SnapshotIdentity
    var headerSummary: Summary
    var records: [Record]
    /// The file ends in the middle of a line (a write that never finished).
    var torn: Bool
    /// Bytes in the file.
    var size: Int

    /// The summary after the last record.
    var summary: Summary { records.last?.summary ?? headerSummary }

    // MARK: Lines

    static func headerLine(_ snapshot: SnapshotIdentity, _ summary: Summary) -> [UInt8] {
        JSON.object([("journal", .number(1)),
                     ("snapshot", .array([.number(Int(truncatingIfNeeded: snapshot.inode)), .number(Int(snapshot.size)), .number(Int(snapshot.modified))])),
                     ("summary", summary.json)]).compact() + [0x0a]
    }

    static func recordLine(_ added: [StoredRule], _ summary: Summary) -> [UInt8] {
        JSON.object([("add", .array(added.map { rule in
            .array([.string(rule.id), .string(rule.family.rawValue), .string(rule.table.rawValue), .string(rule.chain), .string(rule.text)])
        })), ("summary", summary.json)]).compact() + [0x0a]
    }

    /// Parses a journal file. `wholeRecords: false` reads only the first and the last line (what
    /// an append needs); the records then hold only the last one. (A line between them that was
    /// damaged is found by the next whole read, which every command but an append does.)
    static func parse(_ bytes: [UInt8], wholeRecords: Bool) throws -> Journal {
        var lines: [Range<Int>] = []
        var start = 0
        for (index, byte) in bytes.enumerated() where byte == 0x0a {
            lines.append(start..<index)
            start = index + 1
        }
        let torn = start < bytes.count
        guard let first = lines.first else { throw Failure.bad("no header line") }
        func object(_ range: Range<Int>, _ number: Int) throws -> JSON {
            let value: JSON
            do { value = try JSON.parse(Array(bytes[range])) } catch { throw Failure.bad("line \(number): \(error)") }
            guard value.members != nil else { throw Failure.bad("line \(number) is not an object") }
            return value
        }
        let header = try object(first, 1)
        guard header["journal"]?.int == 1 else { throw Failure.bad("line 1: not a version 1 journal header") }
        guard let parts = header["snapshot"]?.array, parts.count == 3, let inode = parts[0].int, let size = parts[1].int, let modified = parts[2].int else {
            throw Failure.bad("line 1: snapshot")
        }
        guard let headerSummary = header["summary"] else { throw Failure.bad("line 1: no summary") }
        var journal = Journal(snapshot: SnapshotIdentity(inode: UInt64(truncatingIfNeeded: inode), size: Int64(size), modified: Int64(modified)),
                              headerSummary: try Summary(json: headerSummary), records: [], torn: torn, size: bytes.count)
        let recordLines = wholeRecords ? Array(lines.enumerated().dropFirst()) : (lines.count > 1 ? [(lines.count - 1, lines[lines.count - 1])] : [])
        for (index, range) in recordLines {
            let line = try object(range, index + 1)
            guard let summary = line["summary"] else { throw Failure.bad("line \(index + 1): no summary") }
            var record = Record(added: [], summary: try Summary(json: summary))
            do {
                guard let added = line["add"]?.array else { throw Failure.bad("line \(index + 1): no rules") }
                for item in added {
                    guard let fields = item.array, fields.count == 5, let id = fields[0].string, let family = fields[1].string.flatMap(IPFamily.init(rawValue:)),
                          let table = fields[2].string.flatMap(NetfilterTable.init(rawValue:)), let chain = fields[3].string, let text = fields[4].string else {
                        throw Failure.bad("line \(index + 1): a rule")
                    }
                    record.added.append(StoredRule(id: id, table: table, chain: chain, entry: RuleEntry(text: text, family: family, trusted: true)))
                }
            }
            journal.records.append(record)
        }
        return journal
    }

    // MARK: Files

    /// Appends one line with a single write and syncs it. A short write is undone (truncated
    /// back), so the file never keeps half a line that this process knows about.
    static func append(_ line: [UInt8], to path: String) throws {
        let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        guard fd >= 0 else { throw AtomicFile.Error.io(path: path, call: "open", errno: errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw AtomicFile.Error.io(path: path, call: "fstat", errno: errno) }
        let written = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == line.count, fdatasync(fd) == 0 else {
            let code = written < 0 ? errno : (written == line.count ? errno : EIO)
            _ = ftruncate(fd, info.st_size)
            throw AtomicFile.Error.io(path: path, call: written == line.count ? "fdatasync" : "write", errno: code)
        }
    }
}
