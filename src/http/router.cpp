// Route matching and reply builders.
#include "http/router.hpp"

#include <boost/beast/http/field.hpp>

namespace mp::http {

void Router::add(beast_http::verb method, std::string path, std::string route, Handler handler) {
  entries_.push_back({method, std::move(path), false, std::move(route), std::move(handler)});
}

void Router::add_prefix(beast_http::verb method, std::string prefix, std::string route,
                        Handler handler) {
  entries_.push_back({method, std::move(prefix), true, std::move(route), std::move(handler)});
}

Router::Match Router::match(beast_http::verb method, std::string_view target) const {
  const std::string_view path = target.substr(0, target.find('?'));
  Match found;
  for (const auto& e : entries_) {
    const bool path_matches = e.prefix ? path.starts_with(e.path) : path == e.path;
    if (!path_matches) continue;
    if (e.method == method) {
      found.handler = &e.handler;
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

Response make_response(const Request& req, beast_http::status status, std::string_view content_type,
                       std::string body) {
  Response res{status, req.version()};
  res.set(beast_http::field::content_type, content_type);
  res.set(beast_http::field::cache_control, "no-store");
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

Response json_response(const Request& req, beast_http::status status, std::string body) {
  return make_response(req, status, "application/json", std::move(body));
}

}  // namespace mp::http
