// Apple's documented request rules, checked in roughly the order APNs reports them.
#include "apns_rules.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <map>
#include <nlohmann/json.hpp>

namespace apns_sim {
namespace {

constexpr std::string_view kDevicePrefix = "/3/device/";

constexpr std::array<std::string_view, 11> kPushTypes = {
    "alert", "background",   "location",   "voip",    "complication", "fileprovider",
    "mdm",   "liveactivity", "pushtotalk", "widgets", "controls"};

bool is_hex(char c) {
  return std::isxdigit(static_cast<unsigned char>(c)) != 0;
}

bool all_digits(std::string_view s) {
  return !s.empty() && s.size() <= 18 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !is_hex(s[i])) return false;
  }
  return true;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

Rejection reject(int status, const char* reason) {
  return {status, reason};
}

std::optional<Rejection> check_certificate(const ClientCertFacts& cert, Environment env) {
  if (!cert.development && !cert.production) return reject(403, "BadCertificate");
  const bool fits = env == Environment::development ? cert.development : cert.production;
  if (!fits) return reject(403, "BadCertificateEnvironment");
  return std::nullopt;
}

std::optional<Rejection> check_topic(const H2Request& req, const ClientCertFacts* cert,
                                     std::string& topic) {
  const auto header = find_header(req, "apns-topic");
  if (!cert) {
    if (!header || header->empty()) return reject(400, "MissingTopic");
    topic = std::string(*header);
    return std::nullopt;
  }
  const auto allowed = cert->allowed_topics();
  if (!header || header->empty()) {
    // Apple defaults to the certificate's topic unless the certificate has several.
    if (allowed.size() != 1) return reject(400, "MissingTopic");
    topic = allowed.front();
    return std::nullopt;
  }
  topic = std::string(*header);
  if (std::find(allowed.begin(), allowed.end(), topic) == allowed.end()) {
    return reject(400, "TopicDisallowed");
  }
  return std::nullopt;
}

std::optional<Rejection> check_headers(const H2Request& req) {
  std::map<std::string_view, int> seen;
  for (const auto& [name, value] : req.headers) {
    if (name.starts_with("apns-") && ++seen[name] > 1) return reject(400, "DuplicateHeaders");
  }
  if (const auto type = find_header(req, "apns-push-type")) {
    if (std::find(kPushTypes.begin(), kPushTypes.end(), *type) == kPushTypes.end()) {
      return reject(400, "InvalidPushType");
    }
  }
  if (const auto prio = find_header(req, "apns-priority")) {
    if (*prio != "10" && *prio != "5" && *prio != "1") return reject(400, "BadPriority");
  }
  if (const auto exp = find_header(req, "apns-expiration")) {
    if (!all_digits(*exp)) return reject(400, "BadExpirationDate");
  }
  if (const auto collapse = find_header(req, "apns-collapse-id")) {
    if (collapse->size() > kMaxCollapseIdBytes) return reject(400, "BadCollapseId");
  }
  if (const auto id = find_header(req, "apns-id")) {
    if (!is_uuid(*id)) return reject(400, "BadMessageId");
  }
  return std::nullopt;
}

std::optional<Rejection> check_payload(const H2Request& req) {
  if (req.body_bytes > kMaxPayloadBytes) return reject(413, "PayloadTooLarge");
  if (req.body_bytes == 0) return reject(400, "PayloadEmpty");
  const auto doc = nlohmann::json::parse(req.body, nullptr, false);
  // Apple documents no reason for malformed JSON; this one is the simulator's own.
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("aps") || !doc["aps"].is_object()) {
    return reject(400, "BadPayload");
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string_view> find_header(const H2Request& request, std::string_view name) {
  for (const auto& [k, v] : request.headers) {
    if (k == name) return std::string_view(v);
  }
  return std::nullopt;
}

const char* environment_name(Environment e) {
  return e == Environment::development ? "development" : "production";
}

RequestVerdict check_request(const H2Request& req, const ClientCertFacts* cert,
                             Environment environment) {
  RequestVerdict v;
  auto& out = v.request;
  if (req.method != "POST") {
    v.rejection = reject(405, "MethodNotAllowed");
    return v;
  }
  std::string_view path = req.path;
  path = path.substr(0, path.find('?'));
  if (!path.starts_with(kDevicePrefix)) {
    v.rejection = reject(404, "BadPath");
    return v;
  }
  const std::string_view token = path.substr(kDevicePrefix.size());
  if (token.empty()) {
    v.rejection = reject(400, "MissingDeviceToken");
    return v;
  }
  if (token.find('/') != std::string_view::npos) {
    v.rejection = reject(404, "BadPath");
    return v;
  }
  if (cert) {
    if (auto r = check_certificate(*cert, environment)) {
      v.rejection = std::move(r);
      return v;
    }
  }
  if (auto r = check_headers(req)) {
    v.rejection = std::move(r);
    return v;
  }
  if (token.size() < kMinTokenHexChars || token.size() > kMaxTokenHexChars ||
      token.size() % 2 != 0 || !std::all_of(token.begin(), token.end(), is_hex)) {
    v.rejection = reject(400, "BadDeviceToken");
    return v;
  }
  out.token = lower(token);
  if (auto r = check_topic(req, cert, out.topic)) {
    v.rejection = std::move(r);
    return v;
  }
  if (auto r = check_payload(req)) {
    v.rejection = std::move(r);
    return v;
  }
  if (const auto id = find_header(req, "apns-id")) out.apns_id = lower(*id);
  return v;
}

}  // namespace apns_sim
