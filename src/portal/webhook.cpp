// Beast HTTP/1.1 client for webhooks: one request per connection, Connection: close.
#include "portal/webhook.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

namespace mp::portal {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

Result<WebhookTarget> parse_webhook_url(const std::string& url) {
  WebhookTarget t;
  std::string_view rest(url);
  if (rest.starts_with("https://")) {
    t.tls = true;
    rest.remove_prefix(8);
  } else if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else {
    return make_error(Errc::invalid_argument, "webhook URL must start with http:// or https://");
  }
  // The authority ends at the path, the query or the fragment, whichever comes first.
  const auto end = rest.find_first_of("/?#");
  const std::string_view authority = rest.substr(0, end);
  if (end == std::string_view::npos) {
    t.target = "/";
  } else {
    t.target =
        rest[end] == '/' ? std::string(rest.substr(end)) : "/" + std::string(rest.substr(end));
    if (const auto hash = t.target.find('#'); hash != std::string::npos) t.target.resize(hash);
  }
  if (authority.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                  ".-:[]") != std::string_view::npos) {
    return make_error(Errc::invalid_argument, "webhook URL has an invalid host");
  }
  const auto colon = authority.rfind(':');
  if (colon != std::string_view::npos && authority.find(']') == std::string_view::npos) {
    t.host = std::string(authority.substr(0, colon));
    t.port = std::string(authority.substr(colon + 1));
  } else {
    t.host = std::string(authority);
    t.port = t.tls ? "443" : "80";
  }
  if (t.host.empty() || t.port.empty())
    return make_error(Errc::invalid_argument, "webhook URL has no host");
  return t;
}

namespace {

template <class Stream>
asio::awaitable<Status> exchange(Stream& stream, const WebhookTarget& t, const std::string& body) {
  bhttp::request<bhttp::string_body> req{bhttp::verb::post, t.target, 11};
  req.set(bhttp::field::host, t.host);
  req.set(bhttp::field::user_agent, "mailpush-expiry-check");
  req.set(bhttp::field::content_type, "application/json");
  req.set(bhttp::field::connection, "close");
  req.body() = body;
  req.prepare_payload();
  auto [wec, wn] = co_await bhttp::async_write(stream, req, asio::as_tuple(asio::use_awaitable));
  (void)wn;
  if (wec) co_return make_error(Errc::unavailable, "webhook: cannot send: " + wec.message());
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(64 * 1024);
  auto [rec, rn] =
      co_await bhttp::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
  (void)rn;
  if (rec) co_return make_error(Errc::unavailable, "webhook: no answer: " + rec.message());
  const unsigned status = parser.get().result_int();
  if (status < 200 || status >= 300) {
    co_return make_error(Errc::unavailable,
                         "webhook: answered HTTP " + std::to_string(status) + " (not 2xx)");
  }
  co_return Status{};
}

}  // namespace

asio::awaitable<Status> post_json_once(const WebhookTarget& t, const std::string& body,
                                       std::chrono::milliseconds timeout) {
  auto executor = co_await asio::this_coro::executor;
  asio::ip::tcp::resolver resolver(executor);
  auto [rec, endpoints] =
      co_await resolver.async_resolve(t.host, t.port, asio::as_tuple(asio::use_awaitable));
  if (rec) {
    co_return make_error(Errc::unavailable,
                         "webhook: cannot resolve " + t.host + ": " + rec.message());
  }
  beast::tcp_stream tcp(executor);
  tcp.expires_after(timeout);
  auto [cec, ep] = co_await tcp.async_connect(endpoints, asio::as_tuple(asio::use_awaitable));
  (void)ep;
  if (cec) {
    co_return make_error(Errc::unavailable, "webhook: cannot connect to " + t.host + ":" + t.port +
                                                ": " + cec.message());
  }
  if (!t.tls) co_return co_await exchange(tcp, t, body);

  asio::ssl::context ctx(asio::ssl::context::tls_client);
  ctx.set_default_verify_paths();
  ctx.set_verify_mode(asio::ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> tls(std::move(tcp), ctx);
  if (!SSL_set_tlsext_host_name(tls.native_handle(), t.host.c_str()) ||
      !SSL_set1_host(tls.native_handle(), t.host.c_str())) {
    co_return make_error(Errc::internal, "webhook: cannot set the TLS host name");
  }
  auto [hec] = co_await tls.async_handshake(asio::ssl::stream_base::client,
                                            asio::as_tuple(asio::use_awaitable));
  if (hec) {
    co_return make_error(Errc::unavailable,
                         "webhook: TLS handshake with " + t.host + " failed: " + hec.message());
  }
  co_return co_await exchange(tls, t, body);
}

asio::awaitable<Status> post_json(const WebhookTarget& target, const std::string& body,
                                  int attempts, std::chrono::milliseconds timeout) {
  Status last;
  std::chrono::seconds wait(1);
  for (int i = 1; i <= attempts; ++i) {
    last = co_await post_json_once(target, body, timeout);
    if (last || i == attempts) break;
    asio::steady_timer timer(co_await asio::this_coro::executor);
    timer.expires_after(wait);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    wait *= 2;
  }
  co_return last;
}

}  // namespace mp::portal
