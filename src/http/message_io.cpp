// Reading requests from and serialising responses for a TlsSocket with Beast's parser/serializer.
#include "http/message_io.hpp"

#include <algorithm>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/buffers_range.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/serializer.hpp>
#include <cstdint>
#include <span>

#include "http/first_bytes.hpp"

namespace mp::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
using boost::system::error_code;

namespace {

// Socket reads of at least one small request, at most what Beast itself reads at once.
constexpr std::size_t kMinRead = 4096;
constexpr std::size_t kMaxRead = 65536;

bool is_eof(const error_code& ec) {
  return ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
}

template <class Body>
std::string serialize_message(beast_http::response<Body>& response) {
  beast_http::serializer<false, Body> serializer{response};
  std::string out;
  error_code ec;
  while (!serializer.is_done() && !ec) {
    serializer.next(ec, [&](error_code&, const auto& buffers) {
      for (const auto buffer : beast::buffers_range_ref(buffers)) {
        out.append(static_cast<const char*>(buffer.data()), buffer.size());
      }
      serializer.consume(beast::buffer_bytes(buffers));
    });
  }
  return out;  // string and empty bodies cannot fail
}

std::string_view as_view(const beast::flat_buffer& buffer) {
  return {static_cast<const char*>(buffer.data().data()), buffer.size()};
}

}  // namespace

asio::awaitable<error_code> async_read_request(net::TlsSocket& socket, beast::flat_buffer& buffer,
                                               RequestParser& parser, ReadUntil until) {
  if (until == ReadUntil::message) parser.eager(true);
  const auto done = [&] {
    return until == ReadUntil::header ? parser.is_header_done() : parser.is_done();
  };
  while (!done()) {
    if (buffer.size() > 0) {
      if (!parser.got_some() && check_start_line(as_view(buffer)) == StartLine::not_http) {
        co_return beast_http::error::bad_method;
      }
      error_code ec;
      buffer.consume(parser.put(buffer.data(), ec));
      if (!ec) continue;
      if (ec != beast_http::error::need_more) co_return ec;
    }
    const std::size_t room = buffer.capacity() - buffer.size();
    const auto space = buffer.prepare(std::clamp(room, kMinRead, kMaxRead));
    auto [ec, n] = co_await socket.async_read_some(
        std::span<std::uint8_t>(static_cast<std::uint8_t*>(space.data()), space.size()));
    if (is_eof(ec)) {
      if (!parser.got_some()) co_return beast_http::error::end_of_stream;
      error_code eof;
      parser.put_eof(eof);  // a message that ends only with the connection, or partial_message
      co_return eof;
    }
    if (ec) co_return ec;
    buffer.commit(n);
  }
  co_return error_code{};
}

std::string serialize(Response& response) {
  return serialize_message(response);
}

std::string serialize(beast_http::response<beast_http::empty_body>& response) {
  return serialize_message(response);
}

}  // namespace mp::http
