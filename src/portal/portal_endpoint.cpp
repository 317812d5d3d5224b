// The portal API: validation and authorisation here, certificate checks in certs, sealing in
// keys, rows in store (each change one transaction with its audit row).
#include "portal/portal_endpoint.hpp"

#include <boost/asio/this_coro.hpp>
#include <ctime>
#include <nlohmann/json.hpp>

#include "apns/credential.hpp"
#include "apns/credential_probe.hpp"
#include "certs/push_certificate.hpp"
#include "common/log.hpp"
#include "common/text.hpp"
#include "credentials/credential_material.hpp"
#include "http/multipart.hpp"
#include "keys/envelope.hpp"
#include "store/customers.hpp"

namespace mp::portal {
namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using nlohmann::json;

namespace {

constexpr std::string_view kCustomersPath = "/portal/v1/customers";
constexpr std::string_view kCustomerPrefix = "/portal/v1/customers/";
constexpr std::size_t kMaxFieldBytes = 1024;  // text fields: App ID, password, codes, names

// A failed attempt of a caller (wrong key or code, refused certificate) or not.
enum class Blame { caller, none };

struct Refusal {
  Refusal(bhttp::status s, std::string c, std::string m, Blame b = Blame::none,
          std::string retry = {})
      : status(s),
        code(std::move(c)),
        message(std::move(m)),
        blame(b),
        retry_after(std::move(retry)) {}
  bhttp::status status;
  std::string code;
  std::string message;
  Blame blame;
  std::string retry_after;  // seconds, for 429 and 503
};

std::string sql_time(std::chrono::system_clock::time_point t) {
  return store::sql_datetime(t);
}

std::string iso_time(std::chrono::system_clock::time_point t) {
  std::string s = sql_time(t);
  s[10] = 'T';
  return s + "Z";
}

// Whole days left, rounded down; negative once past.
std::int64_t days_left(std::int64_t seconds_left) {
  return seconds_left >= 0 ? seconds_left / 86400 : -((-seconds_left + 86399) / 86400);
}

std::string environments_text(bool development, bool production) {
  if (development && production) return "development,production";
  return development ? "development" : "production";
}

// Bundle ids: letters, digits, '-' and '.', as Apple allows them in App IDs.
bool valid_app_id(std::string_view s) {
  if (s.empty() || s.size() > 155 || s.front() == '.' || s.back() == '.') return false;
  return s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") ==
         std::string_view::npos;
}

// Valid UTF-8 (the database stores utf8mb4; JSON answers need it too) without control characters.
bool valid_display_name(std::string_view s) {
  return s.size() <= 200 && is_valid_utf8(s) && !has_ascii_control(s);
}

// "<prefix>-<20 base32>": what a customer's administrator types into the app's policy.
bool valid_customer_id(std::string_view s) {
  return !s.empty() && s.size() <= 64 &&
         s.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") == std::string_view::npos;
}

std::string bearer_token(const http::Request& req) {
  const std::string_view auth = req[bhttp::field::authorization];
  constexpr std::string_view kBearer = "Bearer ";
  if (auth.size() <= kBearer.size() || auth.substr(0, kBearer.size()) != kBearer) return {};
  return std::string(auth.substr(kBearer.size()));
}

json certificate_json(const store::CredentialRow& k) {
  return {{"topic", k.topic},
          {"environments", environments_text(k.development, k.production)},
          {"state", k.state},
          {"not_after", k.not_after},
          {"days_left", days_left(k.seconds_left)},
          {"fingerprint_sha256", k.fingerprint_hex},
          {"last_success_at", k.last_success_at.empty() ? json(nullptr) : json(k.last_success_at)},
          {"last_failure_at", k.last_failure_at.empty() ? json(nullptr) : json(k.last_failure_at)},
          {"last_failure_reason",
           k.last_failure_reason.empty() ? json(nullptr) : json(k.last_failure_reason)}};
}

// What a person should know about a certificate just accepted.
json warnings_for(const certs::PushCertificate& c, std::chrono::system_clock::time_point now) {
  json w = json::array();
  const auto left = std::chrono::duration_cast<std::chrono::seconds>(c.not_after - now).count();
  if (days_left(left) < 30) {
    w.push_back("the certificate expires in " + std::to_string(days_left(left)) +
                " days: create its successor in the Apple Developer portal and renew here soon");
  }
  if (!c.production) {
    w.push_back("this certificate only reaches the APNs sandbox (development builds of the app)");
  }
  return w;
}

store::NewCredential new_credential(const certs::PushCertificate& c, keys::Sealed sealed) {
  store::NewCredential k;
  k.topic = c.topic;
  k.development = c.development;
  k.production = c.production;
  k.subject = c.subject;
  k.issuer = c.issuer;
  k.serial_hex = c.serial_hex;
  auto fp = hex_decode(c.fingerprint_sha256_hex);
  if (fp) k.fingerprint_sha256 = std::move(*fp);
  k.not_before = sql_time(c.not_before);
  k.not_after = sql_time(c.not_after);
  k.kek_id = std::move(sealed.kek_id);
  k.wrapped_data_key = std::move(sealed.wrapped_data_key);
  k.sealed_material = std::move(sealed.sealed_material);
  return k;
}

// The checked fields of an upload form.
struct Upload {
  std::vector<http::FormPart> parts;
  const http::FormPart* certificate = nullptr;
  std::string password;
};

}  // namespace

// The limiter counts per IPv4 address and per IPv6 /64 (one subscriber's network holds 2^64
// addresses, so counting single IPv6 addresses would limit nothing).
std::string limiter_key(const boost::asio::ip::address& peer) {
  if (peer.is_v6() && !peer.to_v6().is_v4_mapped()) {
    auto bytes = peer.to_v6().to_bytes();
    std::fill(bytes.begin() + 8, bytes.end(), 0);
    return boost::asio::ip::address_v6(bytes).to_string() + "/64";
  }
  if (peer.is_v6())
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, peer.to_v6()).to_string();
  return peer.to_string();
}

// Request-scoped helpers shared by the handlers.
class PortalRequest {
 public:
  PortalRequest(const http::Request& req, const http::RequestContext& ctx,
                prometheus::Family<prometheus::Counter>& outcomes, FailureLimiter& limiter,
                std::string_view action)
      : req_(req),
        outcomes_(outcomes),
        limiter_(limiter),
        action_(action),
        peer_(ctx.peer.to_string()),
        limiter_key_(limiter_key(ctx.peer)) {}

  const std::string& peer() const { return peer_; }

  std::optional<Refusal> rate_limited() {
    if (auto wait = limiter_.blocked(limiter_key_, FailureLimiter::Clock::now())) {
      return Refusal{bhttp::status::too_many_requests, "too_many_failures",
                     "too many failed attempts from this address: try again in " +
                         std::to_string(wait->count()) + " seconds",
                     Blame::none, std::to_string(wait->count())};
    }
    return std::nullopt;
  }

  http::Response refuse(const Refusal& r) {
    if (r.blame == Blame::caller) {
      limiter_.record_failure(limiter_key_, FailureLimiter::Clock::now());
    }
    outcomes_.Add({{"action", std::string(action_)}, {"result", r.code}}).Increment();
    log::warn("portal.refused", {{"action", action_},
                                 {"reason", r.code},
                                 {"status", static_cast<int>(r.status)},
                                 {"peer", peer_},
                                 {"message", r.message}});
    auto res =
        http::json_response(req_, r.status, json{{"error", r.code}, {"message", r.message}}.dump());
    if (!r.retry_after.empty()) res.set(bhttp::field::retry_after, r.retry_after);
    res.set(bhttp::field::cache_control, "no-store");
    return res;
  }

  http::Response ok(bhttp::status status, const json& body) {
    outcomes_.Add({{"action", std::string(action_)}, {"result", "ok"}}).Increment();
    auto res = http::json_response(req_, status, body.dump());
    // Answers may hold keys shown once: never cached by a browser or a proxy.
    res.set(bhttp::field::cache_control, "no-store");
    return res;
  }

  // Parses the multipart form and checks the certificate and password fields are there.
  std::variant<Upload, Refusal> upload(std::size_t max_upload_bytes,
                                       std::initializer_list<std::string_view> known) {
    // The form around the file is small: anything much larger than the file cap is refused
    // before parsing, and a file part over the cap gets the same answer after.
    const std::size_t slack = 16 * 1024;
    if (req_.body().size() > max_upload_bytes + slack) return too_large(max_upload_bytes);
    http::MultipartLimits limits;
    limits.max_part_bytes = max_upload_bytes + slack;
    auto parts = http::parse_multipart(req_[bhttp::field::content_type], req_.body(), limits);
    if (!parts) {
      return Refusal{bhttp::status::bad_request, "malformed_form", parts.error().message,
                     Blame::caller};
    }
    Upload u;
    u.parts = std::move(*parts);
    for (const auto& p : u.parts) {
      if (std::find(known.begin(), known.end(), p.name) == known.end()) {
        std::string names;
        for (auto k : known) names += (names.empty() ? "" : ", ") + std::string(k);
        const bool printable = is_printable_ascii(p.name);
        return Refusal{bhttp::status::bad_request, "unknown_field",
                       (printable ? "unknown form field '" + p.name + "'"
                                  : std::string("a form field with an unknown name")) +
                           " (known: " + names + ")",
                       Blame::none};
      }
      if (p.name != "certificate" && p.data.size() > kMaxFieldBytes) {
        return Refusal{bhttp::status::bad_request, "field_too_long",
                       "the field '" + p.name + "' is longer than " +
                           std::to_string(kMaxFieldBytes) + " bytes",
                       Blame::none};
      }
    }
    u.certificate = http::find_part(u.parts, "certificate");
    if (u.certificate == nullptr || u.certificate->data.empty()) {
      return Refusal{bhttp::status::bad_request, "missing_certificate",
                     "attach the .p12 file exported from Keychain as the field 'certificate'",
                     Blame::none};
    }
    if (u.certificate->data.size() > max_upload_bytes) return too_large(max_upload_bytes);
    const auto* password = http::find_part(u.parts, "password");
    if (password == nullptr) {
      return Refusal{bhttp::status::bad_request, "missing_password",
                     "give the password the .p12 was exported with as the field 'password'",
                     Blame::none};
    }
    u.password = password->data;
    return u;
  }

 private:
  static Refusal too_large(std::size_t max_upload_bytes) {
    return Refusal{bhttp::status::payload_too_large, "too_large",
                   "the certificate file is larger than " + std::to_string(max_upload_bytes) +
                       " bytes: a push certificate .p12 is a few KiB; export only the "
                       "certificate and its key",
                   Blame::caller};
  }

  const http::Request& req_;
  prometheus::Family<prometheus::Counter>& outcomes_;
  FailureLimiter& limiter_;
  std::string_view action_;
  std::string peer_;
  std::string limiter_key_;
};

namespace {

std::optional<std::string> field(const Upload& u, std::string_view name) {
  const auto* p = http::find_part(u.parts, name);
  if (p == nullptr) return std::nullopt;
  return p->data;
}

Refusal from_certificate_refusal(const certs::Refused& r) {
  const bool conflict = r.reason == certs::Refusal::topic_mismatch;
  return Refusal{conflict ? bhttp::status::conflict : bhttp::status::unprocessable_entity,
                 certs::refusal_name(r.reason), r.message, Blame::caller};
}

// What inspect_p12 accepted but the relay cannot keep: more chain certificates than stored.
std::optional<Refusal> unstorable(const certs::PushCertificate& c) {
  if (c.chain_der.size() <= credentials::kMaxChainCertificates) return std::nullopt;
  return Refusal{bhttp::status::unprocessable_entity, "too_many_certificates",
                 "the file holds " + std::to_string(c.chain_der.size()) +
                     " certificates besides the push certificate (at most " +
                     std::to_string(credentials::kMaxChainCertificates) +
                     "): export only the push certificate and its key from Keychain",
                 Blame::caller};
}

Refusal database_refusal(const Error& e) {
  if (e.code == Errc::unavailable || e.code == Errc::busy) {
    return Refusal{bhttp::status::service_unavailable, "unavailable",
                   "the region's database is unavailable: nothing was changed; try again in a "
                   "minute",
                   Blame::none, "30"};
  }
  return Refusal{bhttp::status::internal_server_error, "internal",
                 "the request failed inside the relay: nothing was changed; the operators have "
                 "the details",
                 Blame::none};
}

// The uploaded .p12 checked for `topic` at `now`, and fit to be kept; or the refusal.
std::variant<certs::PushCertificate, Refusal> inspect_upload(
    const PortalOptions& options, const Upload& upload, const std::string& topic,
    std::chrono::system_clock::time_point now) {
  certs::InspectOptions inspect;
  inspect.expected_topic = topic;
  inspect.trust_anchors_pem = options.trust_anchors_pem;
  inspect.now = now;
  inspect.max_bytes = options.max_upload_bytes;
  auto inspected = certs::inspect_p12(upload.certificate->data, upload.password, inspect);
  if (auto* refused = std::get_if<certs::Refused>(&inspected)) {
    return from_certificate_refusal(*refused);
  }
  auto& cert = std::get<certs::PushCertificate>(inspected);
  if (auto refusal = unstorable(cert)) return *refusal;
  return std::move(cert);
}

// The certificate's material sealed for the customer's row; a failure is the relay's (500).
std::variant<keys::Sealed, Refusal> seal_credential(const keys::KeyRing& ring,
                                                    const std::string& customer_id,
                                                    const certs::PushCertificate& cert) {
  auto sealed = keys::seal(ring, credentials::pack_material(cert).view(),
                           credentials::credential_aad(customer_id, cert.fingerprint_sha256_hex));
  if (!sealed) {
    log::error("portal.seal_failed", {{"error", sealed.error().message}});
    return database_refusal(make_error(Errc::internal, "seal"));
  }
  return std::move(*sealed);
}

}  // namespace

PortalEndpoint::PortalEndpoint(PortalOptions options, store::PortalStore& store,
                               const keys::KeyRing* ring, prometheus::Registry& registry)
    : options_(std::move(options)),
      store_(store),
      ring_(ring),
      limiter_(options_.failed_attempts_per_15_minutes, std::chrono::minutes(15)),
      outcomes_(prometheus::BuildCounter()
                    .Name("mailpush_portal_requests_total")
                    .Help("Portal API requests by action and result (ok or the error code)")
                    .Register(registry)) {}

void PortalEndpoint::add_routes(http::Router& router) {
  router.add(bhttp::verb::post, std::string(kCustomersPath), "portal_create",
             [this](const http::Request& req, const http::RequestContext& ctx) {
               return create(req, ctx);
             });
  router.add_prefix(bhttp::verb::get, std::string(kCustomerPrefix), "portal_status",
                    [this](const http::Request& req, const http::RequestContext& ctx) {
                      return status(req, ctx);
                    });
  router.add_prefix(bhttp::verb::post, std::string(kCustomerPrefix), "portal_change",
                    [this](const http::Request& req, const http::RequestContext& ctx) {
                      return customer_action(req, ctx);
                    });
  router.add_prefix(bhttp::verb::delete_, std::string(kCustomerPrefix), "portal_delete",
                    [this](const http::Request& req, const http::RequestContext& ctx) {
                      return remove(req, ctx);
                    });
}

Result<std::vector<Bytes>> PortalEndpoint::load_admin_token_hashes(const std::string& text) {
  std::vector<Bytes> out;
  std::size_t line_no = 0;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t end = std::min(text.find('\n', start), text.size());
    std::string_view line(text.data() + start, end - start);
    ++line_no;
    start = end + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;
    auto bytes = hex_decode(line);
    if (!bytes || bytes->size() != 48) {
      return make_error(Errc::invalid_argument,
                        "admin token file, line " + std::to_string(line_no) +
                            ": expected the SHA-384 of a token as 96 hex digits (the token "
                            "itself never belongs in this file)");
    }
    out.push_back(std::move(*bytes));
  }
  return out;
}

namespace {

bool is_admin_token(const std::vector<Bytes>& hashes, const std::string& token) {
  if (token.empty()) return false;
  const Bytes h = sha384(token);
  bool match = false;
  for (const auto& known : hashes) match = constant_time_equal(h, known) || match;
  return match;
}

}  // namespace

namespace {

const Refusal kNoKeyFile{bhttp::status::service_unavailable, "not_configured",
                         "this region cannot store certificates: its key file is not configured "
                         "(portal.kek_file); tell the relay operators",
                         Blame::none, "3600"};

// The form's region, App ID and display name checked; the refusal for the first that is not fit.
std::optional<Refusal> check_new_customer_fields(const PortalOptions& options,
                                                 const Upload& upload) {
  const std::string region = field(upload, "region").value_or("");
  if (region != options.region) {
    const auto other = options.other_regions.find(region);
    if (other != options.other_regions.end()) {
      return Refusal{bhttp::status::misdirected_request, "wrong_region",
                     "this is the portal of " + options.region + "; you chose " + region +
                         ": upload at https://" + other->second + "/portal/",
                     Blame::none};
    }
    return Refusal{bhttp::status::bad_request, "unknown_region",
                   region.empty()
                       ? "choose the region your Exchange servers are in (field 'region'); "
                         "this portal is " +
                             options.region
                       : "unknown region (field 'region'); this portal is " + options.region,
                   Blame::none};
  }
  if (!valid_app_id(field(upload, "app_id").value_or(""))) {
    return Refusal{bhttp::status::bad_request, "invalid_app_id",
                   "the App ID (field 'app_id') must be the app's bundle id, e.g. "
                   "com.example.mail: letters, digits, '.' and '-'",
                   Blame::none};
  }
  if (!valid_display_name(field(upload, "display_name").value_or(""))) {
    return Refusal{bhttp::status::bad_request, "invalid_display_name",
                   "the display name must be at most 200 characters without control "
                   "characters",
                   Blame::none};
  }
  return std::nullopt;
}

// Who creates a customer: the region admin, or the holder of an invite code (its hash).
struct Creator {
  std::string actor_name;
  std::optional<Bytes> invite_hash;
};

// Who may create: the region admin token, or a one-time invite code still usable.
asio::awaitable<std::variant<Creator, Refusal>> creator_of(
    store::PortalStore& store, const std::vector<Bytes>& admin_token_hashes,
    const std::string& token, const std::optional<std::string>& invite) {
  if (!token.empty()) {
    if (!is_admin_token(admin_token_hashes, token)) {
      co_return Refusal{bhttp::status::unauthorized, "invalid_token",
                        "the admin token is not valid for this region", Blame::caller};
    }
    co_return Creator{"portal:region-admin", std::nullopt};
  }
  if (!invite || invite->empty()) {
    co_return Refusal{bhttp::status::unauthorized, "missing_invite",
                      "an invite code from your relay operator is needed (field "
                      "'invite_code')",
                      Blame::none};
  }
  Bytes invite_hash = sha384(*invite);
  auto usable = co_await store.invite_usable(invite_hash);
  if (!usable) co_return database_refusal(usable.error());
  if (!*usable) {
    co_return Refusal{bhttp::status::forbidden, "invalid_invite",
                      "the invite code is not valid: it is unknown, used or expired; ask "
                      "your relay operator for a new one",
                      Blame::caller};
  }
  co_return Creator{"portal:invite", std::move(invite_hash)};
}

// The answer to a created customer: its keys, shown this once, and its certificate's facts.
json created_answer(const std::string& region, const store::NewCustomer& customer,
                    const std::string& registration_key, const std::string& admin_key,
                    const certs::PushCertificate& cert, std::chrono::system_clock::time_point now) {
  const auto left = std::chrono::duration_cast<std::chrono::seconds>(cert.not_after - now).count();
  return {{"customer_id", customer.customer_id},
          {"region", region},
          {"app_id", customer.app_id},
          {"registration_key", registration_key},
          {"admin_key", admin_key},
          {"certificate",
           {{"topic", cert.topic},
            {"environments", environments_text(cert.development, cert.production)},
            {"not_after", iso_time(cert.not_after)},
            {"days_left", days_left(left)},
            {"fingerprint_sha256", cert.fingerprint_sha256_hex}}},
          {"warnings", warnings_for(cert, now)},
          {"notice",
           "Keep the registration key (for the app's policy) and the admin key (for renewals and "
           "status): they are shown only once."}};
}

}  // namespace

asio::awaitable<http::Response> PortalEndpoint::create(const http::Request& req,
                                                       const http::RequestContext& ctx) {
  PortalRequest r(req, ctx, outcomes_, limiter_, "create");
  if (auto limited = r.rate_limited()) co_return r.refuse(*limited);
  if (ring_ == nullptr) co_return r.refuse(kNoKeyFile);
  auto parsed = r.upload(options_.max_upload_bytes, {"certificate", "password", "app_id", "region",
                                                     "invite_code", "display_name"});
  if (auto* refusal = std::get_if<Refusal>(&parsed)) co_return r.refuse(*refusal);
  const Upload& upload = std::get<Upload>(parsed);
  if (auto refusal = check_new_customer_fields(options_, upload)) co_return r.refuse(*refusal);
  const std::string app_id = field(upload, "app_id").value_or("");

  const std::string token = bearer_token(req);
  const auto invite = field(upload, "invite_code");
  auto creator = co_await creator_of(store_, options_.admin_token_hashes, token, invite);
  if (auto* refusal = std::get_if<Refusal>(&creator)) co_return r.refuse(*refusal);
  const Creator& by = std::get<Creator>(creator);

  const auto now = options_.now();
  auto inspected = inspect_upload(options_, upload, app_id, now);
  if (auto* refusal = std::get_if<Refusal>(&inspected)) co_return r.refuse(*refusal);
  const certs::PushCertificate& cert = std::get<certs::PushCertificate>(inspected);

  store::NewCustomer customer;
  customer.customer_id = options_.customer_id_prefix + "-" + base32_lower_encode(random_bytes(12));
  customer.display_name = field(upload, "display_name").value_or("");
  customer.app_id = app_id;
  const std::string registration_key = random_token("rk_", 32);
  const std::string admin_key = random_token("ak_", 32);
  customer.registration_key_hash = sha384(registration_key);
  customer.admin_key_hash = sha384(admin_key);
  customer.invite_code_hash = by.invite_hash;
  auto sealed = seal_credential(*ring_, customer.customer_id, cert);
  if (auto* refusal = std::get_if<Refusal>(&sealed)) co_return r.refuse(*refusal);
  const store::Actor actor{by.actor_name, r.peer()};
  const store::NewCredential credential =
      new_credential(cert, std::move(std::get<keys::Sealed>(sealed)));
  auto created = co_await store_.create_customer(customer, credential, actor);
  if (!created && created.error().code == Errc::not_found) {
    // The invite was used or expired between the check and the transaction.
    co_return r.refuse(
        {bhttp::status::forbidden, "invalid_invite", created.error().message, Blame::caller});
  }
  if (!created) co_return r.refuse(database_refusal(created.error()));

  log::info("portal.customer_created", {{"customer", customer.customer_id},
                                        {"topic", cert.topic},
                                        {"not_after", iso_time(cert.not_after)},
                                        {"by", by.actor_name},
                                        {"peer", r.peer()}});
  co_return r.ok(bhttp::status::created,
                 created_answer(options_.region, customer, registration_key, admin_key, cert, now));
}

namespace {

// Who calls /portal/v1/customers/{id}...: the region admin token or a customer admin key.
struct Caller {
  std::string id;  // the Customer ID of the path
  bool admin = false;
  Bytes key_hash;  // SHA-384 of the bearer key
};

// The path's Customer ID and the bearer key, or the refusal for a malformed id or no key.
std::variant<Caller, Refusal> caller_of(const http::Request& req, std::string_view id,
                                        const std::vector<Bytes>& admin_token_hashes) {
  if (!valid_customer_id(id)) {
    return Refusal{bhttp::status::not_found, "not_found", "no such customer", Blame::none};
  }
  const std::string token = bearer_token(req);
  if (token.empty()) {
    return Refusal{bhttp::status::unauthorized, "missing_key",
                   "send the customer admin key as 'Authorization: Bearer <key>'", Blame::none};
  }
  return Caller{std::string(id), is_admin_token(admin_token_hashes, token), sha384(token)};
}

// Whom the store looks up for the caller: the Customer ID alone for the admin token, with the key
// otherwise (store::PortalCaller).
store::PortalCaller portal_caller(const Caller& caller) {
  store::PortalCaller out;
  out.customer_id = caller.id;
  if (!caller.admin) out.admin_key_hash = caller.key_hash;
  return out;
}

const Refusal kInvalidKey{bhttp::status::forbidden, "invalid_key",
                          "the key is not valid for this customer", Blame::caller};
// For the region admin token, which opens every customer: this one does not exist (or is deleted).
const Refusal kNoSuchCustomer{bhttp::status::not_found, "not_found", "no such customer",
                              Blame::none};

const Refusal& not_authorised(const Caller& caller) {
  return caller.admin ? kNoSuchCustomer : kInvalidKey;
}

}  // namespace

asio::awaitable<http::Response> PortalEndpoint::status(const http::Request& req,
                                                       const http::RequestContext& ctx) {
  PortalRequest r(req, ctx, outcomes_, limiter_, "status");
  if (auto limited = r.rate_limited()) co_return r.refuse(*limited);
  auto who = caller_of(req, ctx.path_rest, options_.admin_token_hashes);
  if (auto* refusal = std::get_if<Refusal>(&who)) co_return r.refuse(*refusal);
  const store::PortalCaller caller = portal_caller(std::get<Caller>(who));
  auto view = co_await store_.find_customer_credentials(caller);
  if (!view) co_return r.refuse(database_refusal(view.error()));
  if (!*view) co_return r.refuse(not_authorised(std::get<Caller>(who)));
  json creds = json::array();
  json active = nullptr;
  json warnings = json::array();
  for (const auto& k : (*view)->credentials) {
    creds.push_back(certificate_json(k));
    if (k.state == "active" && active.is_null()) {
      active = certificate_json(k);
      const auto days = days_left(k.seconds_left);
      if (days < 30) {
        warnings.push_back("the certificate expires in " + std::to_string(days) +
                           " days: renew it");
      }
    }
    if (k.state == "expired" && active.is_null()) {
      warnings.push_back("the certificate expired on " + k.not_after +
                         ": no notification is sent until you renew it");
    }
  }
  co_return r.ok(bhttp::status::ok, {{"customer_id", (*view)->customer.customer_id},
                                     {"region", options_.region},
                                     {"app_id", (*view)->customer.app_id},
                                     {"display_name", (*view)->customer.display_name},
                                     {"state", (*view)->customer.state},
                                     {"created_at", (*view)->customer.created_at},
                                     {"certificate", active},
                                     {"certificates", creds},
                                     {"warnings", warnings}});
}

asio::awaitable<http::Response> PortalEndpoint::customer_action(const http::Request& req,
                                                                const http::RequestContext& ctx) {
  const std::string_view rest = ctx.path_rest;
  const auto slash = rest.find('/');
  const std::string id(rest.substr(0, slash));
  const std::string_view what = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
  PortalRequest r(req, ctx, outcomes_, limiter_,
                  what == "certificate" ? "renew"
                  : what == "disable"   ? "disable"
                                        : "enable");
  if (auto limited = r.rate_limited()) co_return r.refuse(*limited);
  if (what != "certificate" && what != "disable" && what != "enable") {
    co_return r.refuse({bhttp::status::not_found, "not_found",
                        "no such resource: POST /portal/v1/customers/{id}/certificate, "
                        "/disable or /enable",
                        Blame::none});
  }
  auto who = caller_of(req, id, options_.admin_token_hashes);
  if (auto* refusal = std::get_if<Refusal>(&who)) co_return r.refuse(*refusal);
  const bool admin = std::get<Caller>(who).admin;
  const store::PortalCaller caller = portal_caller(std::get<Caller>(who));
  auto found = co_await store_.find_customer(caller);
  if (!found) co_return r.refuse(database_refusal(found.error()));
  if (!*found) co_return r.refuse(not_authorised(std::get<Caller>(who)));
  const store::CustomerRow customer = **found;
  const store::Actor actor{admin ? "portal:region-admin" : "portal:customer-admin", r.peer()};
  if (what == "certificate") co_return co_await renew_certificate(r, customer, actor);
  const std::string state = what == "disable" ? "disabled" : "active";
  co_return co_await set_customer_state(r, customer, actor, state);
}

asio::awaitable<http::Response> PortalEndpoint::set_customer_state(
    PortalRequest& r, const store::CustomerRow& customer, const store::Actor& actor,
    const std::string& state) {
  const std::string& id = customer.customer_id;
  auto changed = co_await store_.set_customer_state(customer.id, state, actor);
  if (!changed) co_return r.refuse(database_refusal(changed.error()));
  log::info("portal.customer_state",
            {{"customer", id}, {"state", state}, {"changed", *changed}, {"by", actor.name}});
  co_return r.ok(bhttp::status::ok, {{"customer_id", id}, {"state", state}, {"changed", *changed}});
}

namespace {

// The refusal when `cert` would switch environments from the current (or expired) credential's
// and the caller did not allow it.
std::optional<Refusal> environment_switch_refusal(const std::vector<store::CredentialRow>& existing,
                                                  const certs::PushCertificate& cert,
                                                  bool allow_env_change) {
  for (const auto& k : existing) {
    if (k.state != "active" && k.state != "expired") continue;
    if ((k.development != cert.development || k.production != cert.production) &&
        !allow_env_change) {
      return Refusal{
          bhttp::status::conflict, "environment_changed",
          "the new certificate serves " + environments_text(cert.development, cert.production) +
              " but the current one serves " + environments_text(k.development, k.production) +
              ": to switch, send allow_environment_change=true",
          Blame::none};
    }
    break;
  }
  return std::nullopt;
}

// The answer to a renewal: the new certificate's facts.
json renewed_answer(const std::string& customer_id, const certs::PushCertificate& cert,
                    std::chrono::system_clock::time_point now) {
  const auto left = std::chrono::duration_cast<std::chrono::seconds>(cert.not_after - now).count();
  return {{"customer_id", customer_id},
          {"certificate",
           {{"topic", cert.topic},
            {"environments", environments_text(cert.development, cert.production)},
            {"state", "active"},
            {"not_after", iso_time(cert.not_after)},
            {"days_left", days_left(left)},
            {"fingerprint_sha256", cert.fingerprint_sha256_hex}}},
          {"warnings", warnings_for(cert, now)}};
}

}  // namespace

asio::awaitable<http::Response> PortalEndpoint::renew_certificate(
    PortalRequest& r, const store::CustomerRow& customer, const store::Actor& actor) {
  // The new certificate must be valid for the customer's App ID; the old one keeps sending
  // until the new one is stored, in one transaction that retires it.
  if (ring_ == nullptr) co_return r.refuse(kNoKeyFile);
  auto parsed =
      r.upload(options_.max_upload_bytes,
               {"certificate", "password", "allow_environment_change", "test_connection"});
  if (auto* refusal = std::get_if<Refusal>(&parsed)) co_return r.refuse(*refusal);
  const Upload& upload = std::get<Upload>(parsed);
  const bool allow_env_change = field(upload, "allow_environment_change").value_or("") == "true";

  const auto now = options_.now();
  auto inspected = inspect_upload(options_, upload, customer.app_id, now);
  if (auto* refusal = std::get_if<Refusal>(&inspected)) co_return r.refuse(*refusal);
  const certs::PushCertificate& cert = std::get<certs::PushCertificate>(inspected);

  auto existing = co_await store_.customer_credentials(customer.id);
  if (!existing) co_return r.refuse(database_refusal(existing.error()));
  if (auto refusal = environment_switch_refusal(*existing, cert, allow_env_change)) {
    co_return r.refuse(*refusal);
  }
  // Asked for: a TLS + HTTP/2 connection to APNs with the new certificate before it replaces
  // the old one (Apple refuses revoked or wrong-environment certificates at the handshake).
  if (field(upload, "test_connection").value_or("") == "true") {
    auto tested = co_await test_apns_connection(customer.customer_id, cert);
    if (!tested) {
      co_return r.refuse({bhttp::status::unprocessable_entity, "apns_test_failed",
                          tested.error().message + "; the current certificate stays active",
                          Blame::none});
    }
  }
  auto sealed = seal_credential(*ring_, customer.customer_id, cert);
  if (auto* refusal = std::get_if<Refusal>(&sealed)) co_return r.refuse(*refusal);
  const store::NewCredential credential =
      new_credential(cert, std::move(std::get<keys::Sealed>(sealed)));
  auto replaced = co_await store_.replace_credential(customer.id, credential, actor);
  if (!replaced) co_return r.refuse(database_refusal(replaced.error()));
  log::info("portal.credential_renewed", {{"customer", customer.customer_id},
                                          {"topic", cert.topic},
                                          {"not_after", iso_time(cert.not_after)},
                                          {"by", actor.name}});
  co_return r.ok(bhttp::status::ok, renewed_answer(customer.customer_id, cert, now));
}

asio::awaitable<Status> PortalEndpoint::test_apns_connection(const std::string& customer_id,
                                                             const certs::PushCertificate& cert) {
  const bool production = cert.production;
  const char* env_name = production ? "production" : "sandbox";
  auto identity = h2::ClientIdentity::from_der(cert.certificate_der, cert.private_key_der.view());
  if (!identity) co_return make_error(Errc::invalid_argument, identity.error().message);
  h2::TlsClientOptions trust;
  trust.ca_file = options_.apns.ca_file;
  auto credential = apns::make_apns_credential(
      customer_id,
      production ? apns::ApnsEnvironment::production : apns::ApnsEnvironment::development,
      *identity, trust);
  if (!credential) co_return make_error(Errc::invalid_argument, credential.error().message);
  // Through a pool of one connection: the TLS, HTTP/2 and timeouts the dispatcher's sends use.
  apns::ProbeTarget target;
  target.host = production ? options_.apns.production_host : options_.apns.sandbox_host;
  target.port = production ? options_.apns.production_port : options_.apns.sandbox_port;
  target.timeout = options_.apns.timeout;
  const apns::CredentialProbe probe =
      co_await apns::probe_credential(std::move(*credential), target, std::nullopt);
  if (!probe.handshake_error.empty()) {
    log::warn(
        "portal.apns_test_failed",
        {{"customer", customer_id}, {"environment", env_name}, {"error", probe.handshake_error}});
    co_return make_error(Errc::unavailable, std::string("the test connection to APNs (") +
                                                env_name + ") failed: " + probe.handshake_error);
  }
  log::info("portal.apns_test_ok", {{"customer", customer_id}, {"environment", env_name}});
  co_return Status{};
}

asio::awaitable<http::Response> PortalEndpoint::remove(const http::Request& req,
                                                       const http::RequestContext& ctx) {
  PortalRequest r(req, ctx, outcomes_, limiter_, "delete");
  if (auto limited = r.rate_limited()) co_return r.refuse(*limited);
  auto who = caller_of(req, ctx.path_rest, options_.admin_token_hashes);
  if (auto* refusal = std::get_if<Refusal>(&who)) co_return r.refuse(*refusal);
  const Caller& caller = std::get<Caller>(who);
  const std::string id = caller.id;
  const store::Actor actor{caller.admin ? "portal:region-admin" : "portal:customer-admin",
                           r.peer()};
  const store::PortalCaller opens = portal_caller(caller);
  auto deleted = co_await store_.delete_customer(opens, actor);
  if (!deleted) co_return r.refuse(database_refusal(deleted.error()));
  if (!*deleted) co_return r.refuse(not_authorised(caller));
  log::info("portal.customer_deleted", {{"customer", id}, {"by", actor.name}});
  co_return r.ok(bhttp::status::ok, {{"customer_id", id}, {"state", "deleted"}});
}

}  // namespace mp::portal
