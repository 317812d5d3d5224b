// apns-sim's pure request checks: an HTTP/2 request and the client certificate in, Apple's
// verdict (status + reason) out. No sockets, no state; the faults are applied elsewhere.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "client_cert.hpp"

namespace apns_sim {

inline constexpr std::size_t kMaxPayloadBytes = 4096;
inline constexpr std::size_t kMaxCollapseIdBytes = 64;
inline constexpr std::size_t kMinTokenHexChars = 64;
inline constexpr std::size_t kMaxTokenHexChars = 200;

enum class Environment { development, production };

struct H2Request {
  std::string method, path, scheme, authority;
  std::vector<std::pair<std::string, std::string>> headers;  // regular headers, lowercase names
  std::string body;            // at most kMaxPayloadBytes + 1 bytes are kept
  std::size_t body_bytes = 0;  // how many arrived
};

struct Rejection {
  int status = 0;
  std::string reason;  // Apple's reason, e.g. "BadDeviceToken"
};

struct CheckedRequest {
  std::string token;    // lowercase hex
  std::string topic;    // from apns-topic, or the certificate's only topic
  std::string apns_id;  // the client's apns-id header (lowercase), empty when none
};

struct RequestVerdict {
  std::optional<Rejection> rejection;  // empty: APNs would accept it
  CheckedRequest request;
};

// `cert` is null in --no-client-cert mode: then the topic comes from the header alone and the
// certificate checks (environment, topics) are skipped.
RequestVerdict check_request(const H2Request& request, const ClientCertFacts* cert,
                             Environment environment);

// The value of header `name` (the first one), or nullopt.
std::optional<std::string_view> find_header(const H2Request& request, std::string_view name);

const char* environment_name(Environment e);

}  // namespace apns_sim
