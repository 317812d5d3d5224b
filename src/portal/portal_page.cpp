// Serves the embedded page files with their security headers, and the region facts as JSON.
#include "portal/portal_page.hpp"

#include <boost/beast/http/field.hpp>
#include <cstddef>
#include <nlohmann/json.hpp>
#include <vector>

namespace mp::portal {
namespace bhttp = boost::beast::http;

// Generated from src/portal/page/ by embed_page.cmake.
struct EmbeddedPageFile {
  const char* name;
  const char* text;
};
extern const EmbeddedPageFile kEmbeddedPageFiles[];
extern const std::size_t kEmbeddedPageFileCount;

namespace {

constexpr std::string_view kAssetsPrefix = "/portal/assets/";

std::string_view content_type_of(std::string_view name) {
  if (name.ends_with(".html")) return "text/html; charset=utf-8";
  if (name.ends_with(".js")) return "text/javascript; charset=utf-8";
  if (name.ends_with(".css")) return "text/css; charset=utf-8";
  if (name.ends_with(".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

boost::asio::awaitable<http::Response> serve_file(const http::Request& req, std::string_view name) {
  const PageFile* file = PortalPage::find_file(name);
  // index.html is only served as /portal/; the assets folder holds the rest.
  if (file == nullptr || name == "index.html") {
    auto res = http::make_response(req, bhttp::status::not_found, "text/plain; charset=utf-8",
                                   "not found\n");
    PortalPage::set_security_headers(res);
    co_return res;
  }
  auto res =
      http::make_response(req, bhttp::status::ok, content_type_of(name), std::string(file->text));
  PortalPage::set_security_headers(res);
  co_return res;
}

}  // namespace

PortalPage::PortalPage(const PortalOptions& options)
    : region_(options.region), other_regions_(options.other_regions) {}

void PortalPage::set_security_headers(http::Response& res) {
  res.set("Content-Security-Policy",
          "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
          "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
  res.set("X-Content-Type-Options", "nosniff");
  res.set("Referrer-Policy", "no-referrer");
  res.set("X-Frame-Options", "DENY");
  res.set("Cross-Origin-Opener-Policy", "same-origin");
  res.set(bhttp::field::cache_control, "no-store");
}

const PageFile* PortalPage::find_file(std::string_view name) {
  static const std::vector<PageFile> files = [] {
    std::vector<PageFile> v;
    for (std::size_t i = 0; i < kEmbeddedPageFileCount; ++i) {
      v.push_back({kEmbeddedPageFiles[i].name, kEmbeddedPageFiles[i].text});
    }
    return v;
  }();
  for (const auto& f : files) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

std::string PortalPage::info_json() const {
  nlohmann::json others = nlohmann::json::object();
  for (const auto& [region, host] : other_regions_) others[region] = host;
  return nlohmann::json{{"region", region_}, {"other_regions", others}}.dump();
}

void PortalPage::add_routes(http::Router& router) {
  router.add(bhttp::verb::get, "/portal", "portal_page",
             [](const http::Request& req,
                const http::RequestContext&) -> boost::asio::awaitable<http::Response> {
               auto res = http::make_response(req, bhttp::status::permanent_redirect,
                                              "text/plain; charset=utf-8", "/portal/\n");
               res.set(bhttp::field::location, "/portal/");
               PortalPage::set_security_headers(res);
               co_return res;
             });
  router.add(bhttp::verb::get, "/portal/", "portal_page",
             [](const http::Request& req,
                const http::RequestContext&) -> boost::asio::awaitable<http::Response> {
               const PageFile* index = PortalPage::find_file("index.html");
               auto res = http::make_response(req, bhttp::status::ok, content_type_of("index.html"),
                                              std::string(index ? index->text : ""));
               PortalPage::set_security_headers(res);
               co_return res;
             });
  router.add_prefix(bhttp::verb::get, std::string(kAssetsPrefix), "portal_asset",
                    [](const http::Request& req, const http::RequestContext& ctx) {
                      return serve_file(req, ctx.path_rest);
                    });
  router.add(bhttp::verb::get, "/portal/v1/info", "portal_info",
             [this](const http::Request& req,
                    const http::RequestContext&) -> boost::asio::awaitable<http::Response> {
               auto res = http::json_response(req, bhttp::status::ok, info_json());
               PortalPage::set_security_headers(res);
               co_return res;
             });
}

}  // namespace mp::portal
