// docknfv: the CNI plugin. Reads the network configuration on stdin and the CNI_* variables,
// runs one command, prints the result (or the spec's error) on stdout. No Foundation and no
// argument parser: runtimes start it for every container, so start-up time counts.
import CNIPlugin
import ShortProcess
#if canImport(Glibc)
import Glibc
#endif

func readStdin() -> [UInt8] {
    var input: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = read(0, &buffer, buffer.count)
        if count < 0 && errno == EINTR { continue }
        if count <= 0 { break }
        input.append(contentsOf: buffer[..<count])
    }
    return input
}

func writeStdout(_ output: [UInt8]) {
    var written = 0
    while written < output.count {
        let count = output[written...].withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        if count <= 0 { break }
        written += count
    }
}

// VERSION is probed often: answer it before building anything else.
if let command = getenv("CNI_COMMAND"), String(cString: command) == "VERSION" {
    writeStdout(Plugin.versionReply(readStdin()))
    exit(0)
}

ShortProcess.begin()

var environment: [String: String] = [:]
environment.reserveCapacity(64)
var cursor = environ
while let entry = cursor.pointee {
    let text = String(cString: entry)
    if let equals = text.firstIndex(of: "=") { environment[String(text[..<equals])] = String(text[text.index(after: equals)...]) }
    cursor += 1
}

var plugin = Plugin(environment: environment)
plugin.handOffSockets = true // this process exits right after the run
let (output, status) = plugin.run(stdin: readStdin())
writeStdout(output)
exit(status)
