// A credential tried against APNs before it is trusted: one connection through an
// ApnsConnectionPool of its own (the TLS, HTTP/2 and timeouts every send uses) and, when asked,
// one send that APNs judges without delivering anything.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "apns/connection_pool.hpp"
#include "apns/credential.hpp"

namespace mp::apns {

// A token no device has (APNs answers BadDeviceToken), sent with apns-expiration 0 (tried once,
// never stored) and priority 5: enough for APNs to judge the certificate, the environment and
// the topic, which a TLS handshake alone does not.
inline constexpr std::string_view kProbeToken =
    "0000000000000000000000000000000000000000000000000000000000000000";

struct ProbeTarget {
  std::string host;
  std::uint16_t port = 443;
  std::chrono::milliseconds timeout{10'000};  // for the connection and for the answer
};

struct CredentialProbe {
  std::string handshake_error;       // empty when the TLS + HTTP/2 connection opened
  std::optional<SendResult> answer;  // APNs' answer to the probe send, when one was asked for
};

// Connects to `target` with `credential`; when `topic` is set and the connection opened, sends
// a badge of 0 to kProbeToken on that topic. The pool is closed before this returns.
boost::asio::awaitable<CredentialProbe> probe_credential(ApnsCredential credential,
                                                         ProbeTarget target,
                                                         std::optional<std::string> topic);

}  // namespace mp::apns
