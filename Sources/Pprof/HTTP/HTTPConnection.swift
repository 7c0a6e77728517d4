import Glibc

/// Serves the requests of one accepted connection, in order, on the
/// connection's own thread: reads a head, then its body, calls the handler,
/// writes the response, and again while the connection is kept alive.
final class HTTPConnection {
    private let client: HTTPClientConnection
    private let configuration: HTTPServerConfiguration
    private let handler: @Sendable (HTTPRequest, HTTPClientConnection) -> HTTPResponse
    private let timeoutSeconds: Int
    private var buffer: [UInt8] = []
    private var scratch = [UInt8](repeating: 0, count: 16 << 10)
    private var scanner: HTTPHeadScanner

    /// How the serving loop ended.
    private enum Ending {
        /// The peer closed, or the socket failed: just close.
        case abort
        /// The server is done with the connection (after `Connection: close`,
        /// an error response, a timeout): half-close, drain, then close.
        case finish
    }

    /// After the last response: how long, and how much, to read and drop
    /// while waiting for the client to close first.
    static let lingerMilliseconds = 2000
    static let lingerMaxBytes = 1 << 20

    init(client: HTTPClientConnection, configuration: HTTPServerConfiguration,
         handler: @escaping @Sendable (HTTPRequest, HTTPClientConnection) -> HTTPResponse) {
        self.client = client
        self.configuration = configuration
        self.handler = handler
        self.timeoutSeconds = max(1, configuration.idleTimeoutSeconds)
        self.scanner = HTTPHeadScanner(
            maxRequestLineBytes: HTTPServerConfiguration.maxRequestLineBytes,
            maxHeaderBytes: max(1, configuration.maxHeaderBytes),
            maxHeaderCount: max(1, configuration.maxHeaderCount))
    }

    /// Serves until the connection ends, then closes the socket.
    func run() {
        let fd = client.descriptor
        SocketIO.setSendTimeout(fd, seconds: timeoutSeconds)
        if !client.isUnixSocket {
            SocketIO.setIntOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
        }
        if serveRequests() == .finish {
            _ = shutdown(fd, Int32(SHUT_WR))
            SocketIO.drain(fd, maxBytes: Self.lingerMaxBytes,
                           until: Deadline.now().adding(milliseconds: Self.lingerMilliseconds))
        }
        client.close()
    }

    private func serveRequests() -> Ending {
        while true {
            if client.isStopping { return .finish }
            // Idle wait, then a fresh deadline for the request once its first byte is in.
            var deadline = Deadline.secondsFromNow(timeoutSeconds)
            var requestStarted = scanner.sawRequestBytes
            let headRange: Range<Int>
            readingHead: while true {
                do throws(HTTPParseError) {
                    if let range = try scanner.scan(buffer) {
                        headRange = range
                        break readingHead
                    }
                } catch {
                    return sendError(.plainText(status: error.status))
                }
                if !requestStarted && scanner.sawRequestBytes {
                    requestStarted = true
                    deadline = Deadline.secondsFromNow(timeoutSeconds)
                }
                switch SocketIO.receive(client.descriptor, appendingTo: &buffer, scratch: &scratch, until: deadline) {
                case .bytes: continue
                case .endOfStream, .failed: return .abort
                case .timedOut:
                    return scanner.sawRequestBytes ? sendError(.plainText(status: 408)) : .finish
                }
            }

            var head: HTTPRequestHead
            do throws(HTTPParseError) {
                head = try HTTPRequestParser.parseHead(buffer[headRange])
            } catch {
                return sendError(.plainText(status: error.status))
            }
            guard head.contentLength <= max(0, configuration.maxRequestBodyBytes) else {
                return sendError(.plainText(status: HTTPParseError.payloadTooLarge.status))
            }

            let bodyStart = headRange.upperBound
            let bodyEnd = bodyStart + head.contentLength
            if head.expectsContinue && buffer.count < bodyEnd {
                let interim = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
                guard SocketIO.sendAll(client.descriptor, interim, stallSeconds: timeoutSeconds) else { return .abort }
            }
            while buffer.count < bodyEnd {
                switch SocketIO.receive(client.descriptor, appendingTo: &buffer, scratch: &scratch, until: deadline) {
                case .bytes: continue
                case .endOfStream, .failed: return .abort
                case .timedOut: return sendError(.plainText(status: 408))
                }
            }
            let body = Array(buffer[bodyStart..<bodyEnd])
            buffer.removeSubrange(0..<bodyEnd)
            scanner.reset()

            let request = HTTPRequest(method: head.method, target: head.target, path: head.path,
                                      rawQuery: head.rawQuery, headers: head.headers, body: body)
            let response = handler(request, client)
            head.keepAlive = head.keepAlive && !response.requestsClose && !client.isStopping
            guard write(response, keepAlive: head.keepAlive, minorVersion: head.minorVersion,
                        omitBody: head.method == "HEAD") else { return .abort }
            if !head.keepAlive { return .finish }
        }
    }

    /// Answers a request the server refuses, then ends the connection.
    private func sendError(_ response: HTTPResponse) -> Ending {
        write(response, keepAlive: false, minorVersion: 1, omitBody: false) ? .finish : .abort
    }

    private func write(_ response: HTTPResponse, keepAlive: Bool, minorVersion: Int, omitBody: Bool) -> Bool {
        var bytes = response.encodedHead(keepAlive: keepAlive, requestMinorVersion: minorVersion)
        guard !omitBody && response.allowsBody && !response.body.isEmpty else {
            return SocketIO.sendAll(client.descriptor, bytes, stallSeconds: timeoutSeconds)
        }
        if response.body.count <= 32 << 10 {
            bytes.append(contentsOf: response.body)
            return SocketIO.sendAll(client.descriptor, bytes, stallSeconds: timeoutSeconds)
        }
        return SocketIO.sendAll(client.descriptor, bytes, more: true, stallSeconds: timeoutSeconds)
            && SocketIO.sendAll(client.descriptor, response.body, stallSeconds: timeoutSeconds)
    }
}
