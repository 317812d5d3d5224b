// apns-sim fault settings: what the simulator does wrong on purpose, and their JSON form.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace apns_sim {

struct FaultSettings {
  // Device token (lowercase hex) -> the `timestamp` (ms since the epoch) of its 410 Unregistered.
  std::map<std::string, std::int64_t> unregistered;
  // Device tokens (lowercase hex) answered 400 BadDeviceToken, as APNs answers a token of the
  // other environment.
  std::set<std::string> bad_device_tokens;
  // Fraction (0..1) of valid requests answered 429 TooManyRequests, 500 InternalServerError,
  // 503 ServiceUnavailable; drawn independently of everything else.
  double rate_429 = 0;
  double rate_500 = 0;
  double rate_503 = 0;
  // Statuses (429, 500, 503) that the next valid requests get, one each, before anything else:
  // a deterministic version of the rates for tests.
  std::vector<int> next_statuses;
  // GOAWAY(NO_ERROR) once a connection has begun this many streams, with the last one as
  // last-stream-id; later streams are refused unprocessed. 0 = never.
  std::uint32_t goaway_after_streams = 0;
  // TCP close, no GOAWAY and no TLS close_notify, once this many responses were written on a
  // connection. 0 = never.
  std::uint32_t close_after_streams = 0;
  // SETTINGS_MAX_CONCURRENT_STREAMS announced to every connection (sent again on change).
  std::uint32_t max_concurrent_streams = 1000;
  // Added before each response, per stream, without holding up the others.
  std::chrono::milliseconds latency{0};
  // Client certificates (SHA-256 fingerprint in hex, colons optional, or the full subject as
  // shown in /accepted) answered 403 BadCertificate on every request.
  std::vector<std::string> bad_certificate;
  // Client certificates refused at the TLS handshake (alert certificate_revoked).
  std::vector<std::string> revoked;
  // Stop answering anything (frames, PING, SETTINGS) on every connection, existing and new.
  // A connection that went silent stays silent: its HTTP/2 state is lost.
  bool silent = false;
};

// Applies the keys present in `patch` (the POST /faults body, or --faults) to `faults`; absent
// keys keep their value. Throws std::invalid_argument with a message naming the bad key.
void apply_fault_patch(FaultSettings& faults, const nlohmann::json& patch);

nlohmann::json to_json(const FaultSettings& faults);

// True if `entry` (a fingerprint or a subject, see bad_certificate) names this certificate.
bool names_certificate(const std::string& entry, const std::string& sha256_hex,
                       const std::string& subject);
bool names_any_certificate(const std::vector<std::string>& entries, const std::string& sha256_hex,
                           const std::string& subject);

}  // namespace apns_sim
