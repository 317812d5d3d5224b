// A JSON POST to an operator's webhook (expiry warnings): http or https, verified TLS, bounded
// in time, retried a few times. The URL may hold a token in its path: it is never logged whole.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <string>

#include "common/result.hpp"

namespace mp::portal {

struct WebhookTarget {
  bool tls = false;
  std::string host;
  std::string port;
  std::string target;  // path and query
};
// http(s)://host[:port][/path]; the region config checked the form already.
Result<WebhookTarget> parse_webhook_url(const std::string& url);

// Sends once; 2xx is success, anything else an error naming the status (not the URL's path).
boost::asio::awaitable<Status> post_json_once(const WebhookTarget& target, const std::string& body,
                                              std::chrono::milliseconds timeout);

// Up to `attempts` tries, waiting 1 s, 2 s, 4 s... between them.
boost::asio::awaitable<Status> post_json(const WebhookTarget& target, const std::string& body,
                                         int attempts, std::chrono::milliseconds timeout);

}  // namespace mp::portal
