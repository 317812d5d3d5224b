// Maps a method and path to a handler, by exact path or by path prefix (for paths with secrets).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace mp::http {

namespace beast_http = boost::beast::http;
using Request = beast_http::request<beast_http::string_body>;
using Response = beast_http::response<beast_http::string_body>;

struct RequestContext {
  boost::asio::ip::address peer;
  std::string_view route;        // the route's name, safe to log (paths may carry secrets)
  std::string_view path_rest;    // for prefix routes: the part of the path after the prefix
  std::uint16_t local_port = 0;  // the server's port the request arrived on
};

using Handler =
    std::function<boost::asio::awaitable<Response>(const Request&, const RequestContext&)>;

class Router {
 public:
  // `route` names the route in logs and metrics, e.g. "healthz" or "ews_notify".
  void add(beast_http::verb method, std::string path, std::string route, Handler handler);
  void add_prefix(beast_http::verb method, std::string prefix, std::string route, Handler handler);

  struct Match {
    const Handler* handler = nullptr;  // null: no route for this method and path
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
  };
  std::vector<Entry> entries_;
};

// Small builders for the common replies.
Response make_response(const Request& req, beast_http::status status, std::string_view content_type,
                       std::string body);
Response json_response(const Request& req, beast_http::status status, std::string body);

}  // namespace mp::http
