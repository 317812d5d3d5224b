// HTTP/1.1 over a net::TlsSocket: Beast's request parser fed with the bytes we read (as
// beast::http::async_read does over a stream), and responses serialised to bytes to write.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/system/error_code.hpp>
#include <string>

#include "http/router.hpp"
#include "net/tls_socket.hpp"

namespace mp::http {

using RequestParser = beast_http::request_parser<beast_http::string_body>;
enum class ReadUntil { header, message };

// Reads from `socket` into `buffer` and feeds `parser` until it holds the whole header or the
// whole message. Bytes past the message stay in `buffer` (a pipelined request): parse them before
// reading the socket again. Errors are Beast's: end_of_stream when the peer closed before sending
// a byte, partial_message when it closed mid-message, the parser's own (header_limit, body_limit,
// bad_*; bad_method as soon as the first bytes cannot start a request line) and the socket's.
boost::asio::awaitable<boost::system::error_code> async_read_request(
    net::TlsSocket& socket, boost::beast::flat_buffer& buffer, RequestParser& parser,
    ReadUntil until);

// The bytes of a response, as beast::http::write would send them.
std::string serialize(Response& response);
std::string serialize(beast_http::response<beast_http::empty_body>& response);

}  // namespace mp::http
