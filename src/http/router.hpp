// Maps a method and path to a handler, by exact path or by path prefix (for paths with secrets).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mp::http {

namespace beast_http = boost::beast::http;
using Request = beast_http::request<beast_http::string_body>;
using Response = beast_http::response<beast_http::string_body>;

struct RequestContext {
  // The client: the TCP peer, or the one a trusted load balancer's PROXY header named (an
  // X-Forwarded-For from trusted_proxies is judged by request_caller).
  boost::asio::ip::address peer;
  std::string_view route;        // the route's name, safe to log (paths may carry secrets)
  std::string_view path_rest;    // for prefix routes: the part of the path after the prefix
  std::uint16_t local_port = 0;  // the server's port the request arrived on
};

using Handler =
    std::function<boost::asio::awaitable<Response>(const Request&, const RequestContext&)>;
using RequestHeader = beast_http::request_header<>;
// Runs when a request's header is complete, before its body is read (e.g. the EWS listener's
// secret lookup): an answer here goes out at once and, if a body was announced, the connection
// is closed with the body unread.
using HeaderCheck = std::function<boost::asio::awaitable<std::optional<Response>>(
    const RequestHeader&, const RequestContext&)>;

struct RouteOptions {
  // The largest body the route takes, checked against Content-Length before any of it is read
  // (and while reading a chunked one). Unset: the server's max_body_bytes, or none at all for GET
  // and HEAD.
  std::optional<std::uint64_t> max_body_bytes;
  HeaderCheck header_check;
};

class Router {
 public:
  // `route` names the route in logs and metrics, e.g. "healthz" or "ews_notify".
  void add(beast_http::verb method, std::string path, std::string route, Handler handler,
           RouteOptions options = {});
  void add_prefix(beast_http::verb method, std::string prefix, std::string route, Handler handler,
                  RouteOptions options = {});

  struct Match {
    const Handler* handler = nullptr;       // null: no route for this method and path
    const RouteOptions* options = nullptr;  // with handler
    std::string_view route = "unmatched";
    std::string_view path_rest;
    std::string allow;  // non-empty: the path exists for these other methods (405)
  };
  // `target` is the request target; its query string is ignored.
  Match match(beast_http::verb method, std::string_view target) const;

 private:
  struct Entry {
    beast_http::verb method;
    std::string path;
    bool prefix;
    std::string route;
    Handler handler;
    RouteOptions options;
  };
  std::vector<Entry> entries_;
};

// Whether the client keeps the connection open after this request (HTTP/1.1 unless it says
// "close"; HTTP/1.0 only if it says "keep-alive").
bool wants_keep_alive(const RequestHeader& req);

// Small builders for the common replies (a Request is a RequestHeader).
Response make_response(const RequestHeader& req, beast_http::status status,
                       std::string_view content_type, std::string body);
Response json_response(const RequestHeader& req, beast_http::status status, std::string body);

}  // namespace mp::http
