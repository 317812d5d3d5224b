// Route matching and reply builders.
#include "http/router.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>

namespace mp::http {

void Router::add(beast_http::verb method, std::string path, std::string route, Handler handler,
                 RouteOptions options) {
  entries_.push_back(
      {method, std::move(path), false, std::move(route), std::move(handler), std::move(options)});
}

void Router::add_prefix(beast_http::verb method, std::string prefix, std::string route,
                        Handler handler, RouteOptions options) {
  entries_.push_back(
      {method, std::move(prefix), true, std::move(route), std::move(handler), std::move(options)});
}

Router::Match Router::match(beast_http::verb method, std::string_view target) const {
  const std::string_view path = target.substr(0, target.find('?'));
  Match found;
  for (const auto& e : entries_) {
    const bool path_matches = e.prefix ? path.starts_with(e.path) : path == e.path;
    if (!path_matches) continue;
    if (e.method == method) {
      found.handler = &e.handler;
      found.options = &e.options;
      found.route = e.route;
      found.path_rest = e.prefix ? path.substr(e.path.size()) : std::string_view{};
      found.allow.clear();
      return found;
    }
    if (!found.allow.empty()) found.allow += ", ";
    found.allow += std::string(beast_http::to_string(e.method));
    found.route = e.route;
  }
  return found;
}

bool wants_keep_alive(const RequestHeader& req) {
  // Connection is a comma-separated list of tokens, in any case.
  bool close = false;
  bool keep = false;
  for (auto [it, end] = req.equal_range(beast_http::field::connection); it != end; ++it) {
    std::string_view list = it->value();
    while (!list.empty()) {
      const auto comma = list.find(',');
      std::string_view token = list.substr(0, comma);
      while (!token.empty() && (token.front() == ' ' || token.front() == '\t'))
        token.remove_prefix(1);
      while (!token.empty() && (token.back() == ' ' || token.back() == '\t'))
        token.remove_suffix(1);
      close = close || boost::beast::iequals(token, "close");
      keep = keep || boost::beast::iequals(token, "keep-alive");
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
  }
  return req.version() >= 11 ? !close : keep && !close;
}

Response make_response(const RequestHeader& req, beast_http::status status,
                       std::string_view content_type, std::string body) {
  Response res{status, req.version()};
  res.set(beast_http::field::content_type, content_type);
  res.set(beast_http::field::cache_control, "no-store");
  res.keep_alive(wants_keep_alive(req));
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

Response json_response(const RequestHeader& req, beast_http::status status, std::string body) {
  return make_response(req, status, "application/json", std::move(body));
}

}  // namespace mp::http
