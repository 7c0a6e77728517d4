import Glibc

/// One accepted connection as the event loop sees it: the bytes read so far,
/// where its current request stands, what is left to write, and its
/// deadline. Only the event-loop thread touches it, and nothing here
/// blocks: every read and write is non-blocking, and a step that cannot
/// finish now waits for the next poll. The handler sees the connection
/// through `client` only.
///
/// Requests are served in order; while one is with a worker the socket is
/// not read (pipelined requests wait in the kernel or in `buffer`).
final class HTTPConnection {
    enum Phase {
        /// Waiting for (the rest of) a request head.
        case readingHead
        /// Head parsed, waiting for its body.
        case readingBody(HTTPRequestHead, HTTPBodyReader)
        /// The request is with a worker; the socket is not polled.
        case processing(HTTPRequestHead)
        /// Writing a response; then the next request (keep-alive) or the end.
        case writing(keepAlive: Bool)
        /// Half-closed after the last response: what the client still sends
        /// is dropped until it closes, so that no reset destroys the answer.
        case lingering
    }

    /// What the event loop must do after a step.
    enum Step {
        case wait
        /// Hand this request to a worker.
        case dispatch(HTTPRequest)
        case close
    }

    let id: Int
    let client: HTTPClientConnection
    /// The peer's address, for the per-client limit.
    let peer: String
    private let configuration: HTTPServerConfiguration
    private(set) var phase = Phase.readingHead
    private var buffer: [UInt8] = []
    private var scanner: HTTPHeadScanner
    private var outbound: [[UInt8]] = []
    private var outboundOffset = 0
    private var lingered = 0
    /// Between keep-alive requests with no byte of the next one yet: the
    /// idle deadline applies, and the head deadline starts with the first byte.
    private var idleWait = false
    /// When the current phase gives up (not used while processing).
    private(set) var deadline: Deadline
    /// When the connection last became idle; the oldest goes first when
    /// room is needed.
    private(set) var idleSince: Deadline

    /// After the last response: how long, and how much, to read and drop
    /// while waiting for the client to close first.
    static let lingerMilliseconds = 2000
    static let lingerMaxBytes = 1 << 20

    init(id: Int, client: HTTPClientConnection, peer: String, configuration: HTTPServerConfiguration) {
        self.id = id
        self.client = client
        self.peer = peer
        self.configuration = configuration
        self.scanner = HTTPHeadScanner(
            maxRequestLineBytes: HTTPServerConfiguration.maxRequestLineBytes,
            maxHeaderBytes: max(1, configuration.maxHeaderBytes),
            maxHeaderCount: max(1, configuration.maxHeaderCount))
        let now = Deadline.now()
        self.idleSince = now
        self.deadline = now.adding(milliseconds: configuration.headTimeoutMilliseconds)
    }

    /// A connection refused over the limit: it gets `response` and is ended
    /// without its request being read.
    convenience init(id: Int, refusing client: HTTPClientConnection, with response: HTTPResponse,
                     configuration: HTTPServerConfiguration) {
        self.init(id: id, client: client, peer: "", configuration: configuration)
        queue(response, keepAlive: false, minorVersion: 1, omitBody: false)
        phase = .writing(keepAlive: false)
    }

    /// The poll(2) events to wait for; 0 while a worker has the request.
    var pollEvents: Int16 {
        switch phase {
        case .readingHead, .readingBody:
            outbound.isEmpty ? Int16(POLLIN) : Int16(POLLIN) | Int16(POLLOUT)  // a 100 Continue to send
        case .processing: 0
        case .writing: Int16(POLLOUT)
        case .lingering: Int16(POLLIN)
        }
    }

    /// Whether closing it now loses nothing the client was promised: it is
    /// between requests, still sending a head, or lingering.
    var isEvictable: Bool {
        switch phase {
        case .readingHead, .lingering: true
        default: false
        }
    }

    // MARK: Events

    /// The socket is readable (or hung up).
    func readable(scratch: inout [UInt8]) -> Step {
        if case .lingering = phase { return drain(scratch: &scratch) }
        let n = scratch.withUnsafeMutableBytes { recv(client.descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n > 0 {
            buffer.append(contentsOf: scratch[0..<n])
            return advance()
        }
        if n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) { return .wait }
        return .close  // the peer closed or reset
    }

    /// The socket is writable (or failed).
    func writable() -> Step {
        while outboundOffset < (outbound.first?.count ?? 0) || outbound.count > 1 {
            let more = outbound.count > 1 ? Int32(MSG_MORE) : 0
            let n = outbound[0].withUnsafeBytes { bytes in
                send(client.descriptor, bytes.baseAddress! + outboundOffset, bytes.count - outboundOffset,
                     Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT) | more)
            }
            if n > 0 {
                outboundOffset += n
                if outboundOffset == outbound[0].count {
                    outbound.removeFirst()
                    outboundOffset = 0
                }
                if case .writing = phase { deadline = Self.idleDeadline(configuration) }
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return .wait }
            return .close
        }
        outbound.removeAll()
        outboundOffset = 0
        guard case let .writing(keepAlive) = phase else { return .wait }
        if keepAlive && !client.isStopping {
            phase = .readingHead
            idleSince = Deadline.now()
            idleWait = true
            deadline = Self.idleDeadline(configuration)
            return advance()  // a pipelined request may be buffered already
        }
        return finish()
    }

    /// The deadline passed.
    func expire() -> Step {
        switch phase {
        case .readingHead: scanner.sawRequestBytes ? refuse(status: 408) : finish()
        case .readingBody: refuse(status: 408)
        case .processing: .wait
        case .writing, .lingering: .close
        }
    }

    /// The worker's answer to the request being processed.
    func deliver(_ response: HTTPResponse) -> Step {
        guard case let .processing(head) = phase else { return .wait }
        let keepAlive = head.keepAlive && !response.requestsClose && !client.isStopping
        queue(response, keepAlive: keepAlive, minorVersion: head.minorVersion, omitBody: head.method == "HEAD")
        phase = .writing(keepAlive: keepAlive)
        deadline = Self.idleDeadline(configuration)
        return writable()
    }

    // MARK: Requests

    /// Moves through the buffered bytes as far as they go.
    private func advance() -> Step {
        while true {
            switch phase {
            case .readingHead:
                let range: Range<Int>?
                do throws(HTTPParseError) {
                    range = try scanner.scan(buffer)
                } catch {
                    return refuse(status: error.status)
                }
                if idleWait && scanner.sawRequestBytes {
                    idleWait = false
                    deadline = headDeadline()
                }
                guard let range else { return .wait }
                let head: HTTPRequestHead
                let body: HTTPBodyReader
                do throws(HTTPParseError) {
                    head = try HTTPRequestParser.parseHead(buffer[range])
                    body = try HTTPBodyReader(head, maxBytes: max(0, configuration.maxRequestBodyBytes))
                } catch {
                    return refuse(status: error.status)
                }
                buffer.removeSubrange(0..<range.upperBound)
                scanner.reset()
                idleWait = false
                deadline = Self.idleDeadline(configuration)
                phase = .readingBody(head, body)
                if head.expectsContinue && !body.isComplete(buffer) {
                    outbound.append(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
                }
            case .readingBody(let head, var reader):
                let body: [UInt8]
                do throws(HTTPParseError) {
                    guard let complete = try reader.take(from: &buffer) else {
                        phase = .readingBody(head, reader)
                        return .wait
                    }
                    body = complete
                } catch {
                    return refuse(status: error.status)
                }
                phase = .processing(head)
                return .dispatch(HTTPRequest(method: head.method, target: head.target, path: head.path,
                                             rawQuery: head.rawQuery, headers: head.headers, body: body))
            default:
                return .wait
            }
        }
    }

    /// Answers a request the server refuses, then ends the connection.
    private func refuse(status: Int) -> Step {
        outbound.removeAll()
        outboundOffset = 0
        queue(.plainText(status: status), keepAlive: false, minorVersion: 1, omitBody: false)
        phase = .writing(keepAlive: false)
        deadline = Self.idleDeadline(configuration)
        return writable()
    }

    private func queue(_ response: HTTPResponse, keepAlive: Bool, minorVersion: Int, omitBody: Bool) {
        outbound.append(response.encodedHead(keepAlive: keepAlive, requestMinorVersion: minorVersion))
        if !omitBody && response.allowsBody && !response.body.isEmpty {
            outbound.append(response.body)
        }
    }

    // MARK: Ending

    /// Half-closes and lingers for the client to close first.
    private func finish() -> Step {
        _ = shutdown(client.descriptor, Int32(SHUT_WR))
        phase = .lingering
        deadline = Deadline.now().adding(milliseconds: Self.lingerMilliseconds)
        return .wait
    }

    private func drain(scratch: inout [UInt8]) -> Step {
        while lingered < Self.lingerMaxBytes {
            let n = scratch.withUnsafeMutableBytes { recv(client.descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { lingered += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return .wait }
            return .close
        }
        return .close
    }

    private func headDeadline() -> Deadline {
        Deadline.now().adding(milliseconds: configuration.headTimeoutMilliseconds)
    }

    private static func idleDeadline(_ configuration: HTTPServerConfiguration) -> Deadline {
        Deadline.now().adding(milliseconds: configuration.idleTimeoutMilliseconds)
    }
}
