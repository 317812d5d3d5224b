// The listener's own certificate chain and private key (PEM): parsed, checked that they belong
// together, and their facts. Validity against a clock value is a separate check, so the daemon
// decides what an expired pair means at start and at a reload. Pure: bytes in, facts or a refusal
// out; no files, no logging, and never a byte of the key in a message.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace mp::certs {

enum class ServerPairProblem {
  too_large,       // a file over the size limit (checked before parsing)
  no_certificate,  // no PEM certificate in the chain file (garbage, empty, half written)
  no_private_key,  // no unencrypted PEM private key in the key file
  key_mismatch,    // the key is not the leaf certificate's
  expired,
  not_yet_valid,
};
// "key_mismatch", ...: the log's reason field.
const char* server_pair_problem_name(ServerPairProblem problem) noexcept;
// Whether the problem lies in the key file (else in the certificate file, or in both).
bool is_key_problem(ServerPairProblem problem) noexcept;

struct ServerPairRefused {
  ServerPairProblem problem = ServerPairProblem::no_certificate;
  std::string message;  // for a person: what is wrong and what to do
};

struct ServerCertificate {
  std::string subject;                 // RFC 2253, printable ASCII only
  std::string serial_hex;              // lower-case
  std::string fingerprint_sha256_hex;  // of the leaf's DER, lower-case
  std::chrono::system_clock::time_point not_before, not_after;
  std::string not_before_utc, not_after_utc;  // "2027-01-31 12:00" (UTC), for messages
  std::size_t chain_certificates = 0;         // intermediates after the leaf
};

using ServerPairResult = std::variant<ServerCertificate, ServerPairRefused>;

inline constexpr std::size_t kMaxServerPemBytes = 1024 * 1024;

// `cert_pem`: the leaf first, then its chain; `key_pem`: an unencrypted private key.
ServerPairResult inspect_server_pair(std::string_view cert_pem, std::string_view key_pem,
                                     std::size_t max_bytes = kMaxServerPemBytes);

// The facts of the first certificate in `cert_pem` alone (what a listener served, say).
ServerPairResult inspect_server_certificate(std::string_view cert_pem,
                                            std::size_t max_bytes = kMaxServerPemBytes);

// Nothing when `now` lies in [not_before, not_after]; else `expired` or `not_yet_valid`.
std::optional<ServerPairRefused> check_validity(const ServerCertificate& certificate,
                                                std::chrono::system_clock::time_point now);

}  // namespace mp::certs
