// TEMPORARY: replaced by the HTTP and Symbolization helpers' code at merge.
enum ListenAddress: Sendable, Hashable { case tcp(host: String, port: Int); case unix(path: String) }
struct HTTPRequest: Sendable {
    var method: String; var target: String; var path: String; var rawQuery: String
    var headers: [(name: String, value: String)]; var body: [UInt8]
    func header(_ name: String) -> String? { nil }
    func queryValue(_ name: String) -> String? { nil }
}
struct HTTPResponse: Sendable {
    var status: Int; var headers: [(name: String, value: String)]; var body: [UInt8]
    init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) { self.status = status; self.headers = headers; self.body = body }
}
final class HTTPClientConnection: Sendable { func isPeerGone() -> Bool { false } }
struct HTTPServerConfiguration: Sendable { var address: ListenAddress }
enum HTTPServerError: Error, Equatable { case invalidAddress(String); case addressInUse(String); case permissionDenied(String); case alreadyStarted; case system(String) }
final class HTTPServer: Sendable {
    init(configuration: HTTPServerConfiguration, handler: @escaping @Sendable (HTTPRequest, HTTPClientConnection) -> HTTPResponse) {}
    func start() throws -> ListenAddress { .tcp(host: "", port: 0) }
    func stop() {}
}
