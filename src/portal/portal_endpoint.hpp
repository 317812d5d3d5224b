// The certificate portal's JSON API (DESIGN.md flows 1, 2, 6) on the region's HTTPS server:
//
//   POST   /portal/v1/customers                     create: .p12 + password + App ID + region,
//                                                   with an invite code or the region admin token
//   GET    /portal/v1/customers/{id}                status (customer admin key or admin token)
//   POST   /portal/v1/customers/{id}/certificate    renew with a new .p12 (customer admin key)
//   POST   /portal/v1/customers/{id}/disable|enable (customer admin key or admin token)
//   DELETE /portal/v1/customers/{id}                (customer admin key or admin token)
//
// Keys travel as "Authorization: Bearer <key>". Every refusal is JSON {"error": code, "message":
// text a person can act on}; no answer, log line or audit row holds a password, a key, a code or
// certificate material.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "certs/push_certificate.hpp"
#include "common/crypto.hpp"
#include "http/router.hpp"
#include "keys/key_ring.hpp"
#include "portal/failure_limiter.hpp"
#include "store/customers.hpp"
#include "store/portal_store.hpp"

namespace mp::portal {

// Where a renewal's optional test connection goes: the region's APNs endpoints and trust.
struct ApnsTestTarget {
  std::string production_host;
  std::uint16_t production_port = 443;
  std::string sandbox_host;
  std::uint16_t sandbox_port = 443;
  std::optional<std::filesystem::path> ca_file;  // APNs server trust; system store when absent
  std::chrono::milliseconds timeout{10'000};
};

struct PortalOptions {
  std::string region;              // this region's name, e.g. "eu-west-1"
  std::string customer_id_prefix;  // e.g. "euw1": Customer IDs are "<prefix>-<20 base32>"
  std::map<std::string, std::string> other_regions;  // region -> portal host
  std::vector<std::string> trust_anchors_pem;        // CAs that issue push certificates
  std::vector<Bytes> admin_token_hashes;             // SHA-384 of the region admin tokens
  std::size_t max_upload_bytes = 64 * 1024;          // the .p12 itself
  std::uint32_t failed_attempts_per_15_minutes = 10;
  ApnsTestTarget apns;  // for renewals sent with test_connection=true
  // The clock certificates are checked against; tests move it.
  std::function<std::chrono::system_clock::time_point()> now = [] {
    return std::chrono::system_clock::now();
  };
};

class PortalRequest;  // one request's refusals, answers and limiter (portal_endpoint.cpp)

class PortalEndpoint {
 public:
  // `ring` may be null: the region has no key file, and uploads are refused with 503 and a
  // message for the operator (status and state changes still work).
  PortalEndpoint(PortalOptions options, store::PortalStore& store, const keys::KeyRing* ring,
                 prometheus::Registry& registry);

  void add_routes(http::Router& router);

  // Reads a file of admin token hashes: one SHA-384 hex per line, '#' comments.
  static Result<std::vector<Bytes>> load_admin_token_hashes(const std::string& text);

 private:
  boost::asio::awaitable<http::Response> create(const http::Request& req,
                                                const http::RequestContext& ctx);
  boost::asio::awaitable<http::Response> status(const http::Request& req,
                                                const http::RequestContext& ctx);
  // POST /portal/v1/customers/{id}/certificate, /disable or /enable: the caller authorised for
  // the customer, then renew_certificate or set_customer_state.
  boost::asio::awaitable<http::Response> customer_action(const http::Request& req,
                                                         const http::RequestContext& ctx);
  boost::asio::awaitable<http::Response> renew_certificate(PortalRequest& r,
                                                           const store::CustomerRow& customer,
                                                           const store::Actor& actor);
  // "disabled" or "active".
  boost::asio::awaitable<http::Response> set_customer_state(PortalRequest& r,
                                                            const store::CustomerRow& customer,
                                                            const store::Actor& actor,
                                                            const std::string& state);
  boost::asio::awaitable<http::Response> remove(const http::Request& req,
                                                const http::RequestContext& ctx);

  boost::asio::awaitable<Status> test_apns_connection(const std::string& customer_id,
                                                      const certs::PushCertificate& cert);

  PortalOptions options_;
  store::PortalStore& store_;
  const keys::KeyRing* ring_;
  FailureLimiter limiter_;
  prometheus::Family<prometheus::Counter>& outcomes_;
};

}  // namespace mp::portal
